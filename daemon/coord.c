/* The coordinator (see coord.h). One libuv loop owns the run: the
 * rendezvous and the workers' control links (coord_join.c), their reports
 * (coord_reports.c), the batches (coord_feed.c), the collection of states
 * (coord_collect.c), replacements (coord_replace.c), spawned children
 * (coord_spawn.c), signals, the RPC and a watchdog. Frames leave through
 * outboxes, one thread per link, so the loop never waits on a send; the
 * loop sends a batch only while fewer than `window` sent ones wait for the
 * last module's report, so at most `window` batches are in the pipeline,
 * whatever the speeds. This file sets the run up, watches it and ends it. */
#include "coord.h"
#include "clock.h"
#include "coord_state.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include "ctl.h"
#include "endpoint.h"
#include "module.h"
#include "report.h"
#include "startup.h"

#define STALL_WARN_S 60.0 /* no report for this long: say who is behind */
#define REOPEN_S 2.0      /* a joined worker not heard on its control link: open it again */

void coord_fail(struct coord *c, int code, const char *fmt, ...)
{
    if (c->finished)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err->msg, sizeof c->err->msg, fmt, ap);
    va_end(ap);
    coord_finish(c, code);
}

bool coord_request_checkpoint(struct coord *c, uint64_t *ret_step)
{
    if (c->finished || c->collecting || !c->started || c->stop_requested)
        return false;
    c->ckpt_requested = true;
    *ret_step = c->feeder.next_step; /* the next boundary, or the one after */
    return true;
}

bool coord_request_stop(struct coord *c)
{
    if (c->finished || c->collecting || !c->started)
        return false;
    c->stop_requested = true;
    c->phase = SILA__RUN_PHASE__STOPPING;
    printf("stop requested: finishing the batches in flight, then saving the model\n");
    fflush(stdout);
    coord_check_drained(c);
    return true;
}

static void send_stop(struct coord *c, const char *reason, bool failed)
{
    Sila__Stop st = SILA__STOP__INIT;
    st.reason = (char *)reason;
    st.failed = failed;
    Sila__Control m = SILA__CONTROL__INIT;
    m.msg_case = SILA__CONTROL__MSG_STOP;
    m.stop = &st;
    for (int i = 0; i < c->npeers; i++)
        if (c->peers[i]->ready) {
            outbox_cancel(c->peers[i]->out);
            coord_peer_send(c, c->peers[i], &m, NULL, 0);
        }
}

/* systemd's view (systemctl status): a STATUS= line with the progress;
 * sd_notify does nothing when silad was not started by systemd. */
static void notify_status(const struct coord *c)
{
    const struct report *rep = &c->run->rep;
    if (!c->started) {
        sd_notifyf(0, "STATUS=waiting for workers (%d modules) at %s", c->K, c->base_url);
        return;
    }
    const struct sila_plan *pl = &c->run->feed.plan;
    char acc[64] = "";
    if (rep->nevals)
        snprintf(acc, sizeof acc, ", last accuracy %.2f%%",
                 100.0 * rep->evals[rep->nevals - 1].accuracy[c->K - 1]);
    uint64_t epoch = c->trained[c->K - 1] / pl->steps_per_epoch + 1;
    if (epoch > (uint64_t)c->job->epochs)
        epoch = (uint64_t)c->job->epochs;
    sd_notifyf(0, "STATUS=%s epoch %llu/%d, step %llu/%llu, %.0f samples/s%s",
               c->paused ? "paused at" : "training,", (unsigned long long)epoch, c->job->epochs,
               (unsigned long long)c->trained[c->K - 1], (unsigned long long)pl->total_steps,
               report_rate(rep), acc);
}

/* Heartbeats to every ready worker; a worker silent for the timeout is lost,
 * and the run stops (its newest checkpoint can be resumed). */
static void beat(struct coord *c)
{
    Sila__Heartbeat hb = SILA__HEARTBEAT__INIT;
    Sila__Control m = SILA__CONTROL__INIT;
    m.msg_case = SILA__CONTROL__MSG_HEARTBEAT;
    m.heartbeat = &hb;
    double now = sila_clock_s();
    for (int i = 0; i < c->npeers && !c->finished; i++) {
        struct peer *p = c->peers[i];
        if (p->lost)
            continue;
        coord_peer_send(c, p, &m, NULL, 0);
        /* before the start, a worker that joined and went silent is only
         * waited for; a replacement that does is lost like any other */
        if (!p->ready && now - p->last_message >= REOPEN_S && now - p->opened >= REOPEN_S)
            coord_reopen_control(c, p);
        if ((!p->ready && !c->started) || now - p->last_message <= c->o->worker_timeout)
            continue;
        char why[64];
        snprintf(why, sizeof why, "is lost: no message for %.0f s", now - p->last_message);
        coord_lose_peer(c, p, why);
    }
    if (c->halted && now - c->halted_since > c->o->replace_timeout) {
        char mods[128] = "";
        for (int i = 0; i < c->npeers; i++)
            if (c->peers[i]->lost) {
                size_t n = strlen(mods);
                snprintf(mods + n, sizeof mods - n, "%s%d-%d", n ? ", " : "",
                         c->peers[i]->first + 1, c->peers[i]->last + 1);
            }
        coord_fail(c, -ETIMEDOUT,
                   "no replacement for modules %s within %d s (--replace-timeout)%s%s", mods,
                   c->o->replace_timeout, *c->last_checkpoint ? "; resume from " : "",
                   c->last_checkpoint);
    }
}

/* Says, at most every 10 s per link, which messages were dropped for
 * failing authentication. */
static void say_rejections(struct coord *c)
{
    double now = sila_clock_s();
    struct sila_err e;
    if (sila_link_rejections(&c->rdv, "the rendezvous", now, 10.0, &e))
        fprintf(stderr, "silad: %s\n", e.msg);
    if (c->rpc_open && sila_link_rejections(&c->rpc.link, "the RPC", now, 10.0, &e))
        fprintf(stderr, "silad: %s\n", e.msg);
    for (int i = 0; i < c->npeers; i++) {
        char what[64], mods[32];
        struct peer *p = c->peers[i];
        snprintf(what, sizeof what, "the control link of %s",
                 sila_modules_text(p->first, p->last, mods, sizeof mods));
        struct sila_link *l = coord_peer_link(p);
        if (l && sila_link_rejections(l, what, now, 10.0, &e))
            fprintf(stderr, "silad: %s\n", e.msg);
    }
}

static void on_watchdog(uv_timer_t *t)
{
    struct coord *c = t->data;
    beat(c);
    say_rejections(c);
    if (++c->ticks % 5)
        return;
    notify_status(c);
    double idle = sila_clock_s() - c->last_report;
    if (!c->started || idle < STALL_WARN_S || c->paused)
        return;
    fprintf(stderr, "silad: no report from the workers for %.0f s (%llu steps done)\n", idle,
            (unsigned long long)c->trained[c->K - 1]);
    c->last_report = sila_clock_s();
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct coord *c = s->data;
    coord_fail(c, -EINTR, "stopped by %s", strsignal(signum));
}

static void close_handle(uv_handle_t *h)
{
    if (h->loop && !uv_is_closing(h))
        uv_close(h, NULL);
}

/* Decides the outcome once: stops the feeding and the workers, and closes
 * every handle but the children's, which close when they exit. */
void coord_finish(struct coord *c, int status)
{
    if (c->finished)
        return;
    c->finished = true;
    c->status = status;
    c->phase = status ? SILA__RUN_PHASE__FAILED : SILA__RUN_PHASE__FINISHED;
    sd_notifyf(0, "STOPPING=1\nSTATUS=%s%.200s", status ? "failed: " : "finished",
               status ? c->err->msg : "");
    outbox_free(c->feeder.data, false);
    c->feeder.data = NULL;
    send_stop(c, status ? c->err->msg : "finished", status != 0);
    for (int i = 0; i < c->npeers; i++)
        coord_close_control(c->peers[i], true); /* the Stop sent first */
    if (c->rdv_polling)
        close_handle((uv_handle_t *)&c->rdv_poll);
    close_handle((uv_handle_t *)&c->sigint);
    close_handle((uv_handle_t *)&c->sigterm);
    close_handle((uv_handle_t *)&c->watchdog);
    metrics_http_close(&c->http);
    rpc_close(&c->rpc);
    c->rpc_open = false;
    for (int i = 0; i < c->nchildren; i++)
        if (c->children[i].running && status)
            uv_process_kill(&c->children[i].proc, SIGTERM);
}

/* Each module's body sizes (a collected state must have them) and the
 * receive limits of the links: a collected state travels whole on the
 * control link, and nanomsg would drop a frame above the link's limit
 * without a word. */
static int plan_bodies(struct coord *c)
{
    for (int k = 0; k < c->K; k++) {
        struct sila_module_layout l;
        int r = sila_module_job_layout(c->job, k, &l, c->err);
        if (r)
            return r;
        c->body_params[k] = l.body_params;
        c->body_buffers[k] = l.body_buffers;
        size_t floats = l.params + l.optimizer + l.buffers;
        if (sila_ctl_frame_limit(floats) > c->ctl_limit)
            c->ctl_limit = sila_ctl_frame_limit(floats);
    }
    /* a Done of the last module carries collab's logits */
    size_t logits = (size_t)c->job->batch * c->job->nclasses;
    if (sila_job_uses_collab(c->job) && sila_ctl_frame_limit(logits) > c->ctl_limit)
        c->ctl_limit = sila_ctl_frame_limit(logits);
    return sila_plan_max_frame(c->job, &c->max_frame, c->err);
}

static int choose_base(struct coord *c)
{
    if (c->o->listen)
        snprintf(c->base_url, sizeof c->base_url, "%s", c->o->listen);
    else {
        const char *tmp = getenv("XDG_RUNTIME_DIR");
        snprintf(c->rundir, sizeof c->rundir, "%s/sila-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(c->rundir))
            return sila_err_set(c->err, -errno, "%s: cannot create: %s", c->rundir,
                                strerror(errno));
        snprintf(c->base_url, sizeof c->base_url, "ipc://%s/sila", c->rundir);
    }
    return sila_url_parse(c->base_url, &c->base, c->err);
}

static int open_loop(struct coord *c)
{
    int r;
    if ((r = uv_signal_init(&c->loop, &c->sigint)) || (r = uv_signal_init(&c->loop, &c->sigterm)) ||
        (r = uv_timer_init(&c->loop, &c->watchdog)))
        return sila_err_set(c->err, -EIO, "event loop: %s", uv_strerror(r));
    c->sigint.data = c->sigterm.data = c->watchdog.data = c;
    uv_signal_start(&c->sigint, on_signal, SIGINT);
    uv_signal_start(&c->sigterm, on_signal, SIGTERM);
    uv_timer_start(&c->watchdog, on_watchdog, 1000, 1000);
    if ((r = coord_join_open(c)))
        return r;
    if ((r = rpc_serve(&c->rpc, &c->loop, &c->o->rpc, coord_rpc_handle, c, &c->rpc_open, c->err)))
        return r;
    return metrics_http_serve(&c->http, &c->loop, c->o->rpc.metrics, &c->rpc, c->err);
}

static void cleanup(struct coord *c)
{
    for (int i = 0; i < c->npeers; i++)
        free(c->peers[i]); /* their outboxes ended with the loop */
    while (c->retired) {
        struct peer *p = c->retired;
        c->retired = p->next_retired;
        free(p);
    }
    for (int k = 0; k < c->K; k++)
        free(c->collected[k].state);
    feed_order_fini(&c->learn_order);
    coord_feed_fini(c);
    sila_link_close(&c->rdv);
    if (*c->rundir) {
        char path[SILA_PATH_MAX];
        static const char *const kinds[] = {"", ".ctl-", ".data-"};
        for (size_t i = 0; i < 3; i++)
            for (int k = i ? 1 : 0; k <= (i ? c->K : 0); k++) {
                if (i)
                    snprintf(path, sizeof path, "%s/sila%s%d", c->rundir, kinds[i], k);
                else
                    snprintf(path, sizeof path, "%s/sila", c->rundir);
                unlink(path);
            }
        rmdir(c->rundir);
    }
}

int coord_run(const struct sila_job *job, struct startup *run, const char *out_dir,
              const struct coord_options *o, struct sila_err *err)
{
    struct coord *c = calloc(1, sizeof *c);
    if (!c)
        return sila_err_set(err, -ENOMEM, "out of memory");
    *c = (struct coord){.job = job,
                        .run = run,
                        .o = o,
                        .out_dir = out_dir,
                        .K = job->nmodules,
                        .err = err,
                        .phase = SILA__RUN_PHASE__JOINING,
                        .evaluated_round = -1};
    for (int k = 0; k < SILA_MAX_MODULES; k++)
        c->owner[k] = -1;
    c->rdv.sock = -1;
    const struct sila_plan *pl = &run->feed.plan;
    for (int k = 0; k < c->K; k++)
        c->trained[k] = run->rep.first_step;
    for (uint32_t q = sila_plan_round_of(pl, run->rep.first_step); q < sila_plan_rounds(pl); q++)
        c->evaluations_left += sila_plan_evaluates(pl, q);
    int r = uv_loop_init(&c->loop);
    if (r) {
        free(c);
        return sila_err_set(err, r, "cannot set up the coordinator's event loop: %s",
                            uv_strerror(r));
    }
    c->loop.data = c;
    if (collab_on(&run->collab) && feed_order_init(&c->learn_order, pl))
        r = sila_err_set(err, -ENOMEM, "out of memory");
    if (r == 0 && (r = plan_bodies(c)) == 0 && (r = choose_base(c)) == 0 &&
        (r = coord_feed_init(c)) == 0)
        r = open_loop(c);
    if (r == 0 && o->spawn)
        r = coord_spawn_workers(c);
    else if (r == 0)
        printf("waiting for workers for modules 1-%d at %s\n", c->K, c->base_url);
    if (r == 0) {
        sd_notify(0, "READY=1");
        notify_status(c);
    }
    fflush(stdout);
    if (r)
        coord_finish(c, r);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    r = c->status;
    uv_loop_close(&c->loop);
    cleanup(c);
    free(c);
    return r;
}
