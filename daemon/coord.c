/* The coordinator (see coord.h). One libuv loop handles the rendezvous,
 * every worker's control link, signals, spawned children and a watchdog;
 * one feeder thread sends the batches, since nanomsg may block on large
 * frames and the loop must never wait. The feeder takes a credit per batch
 * and the loop returns it when the last module reports the batch done, so
 * at most `window` batches are in the pipeline, whatever the speeds. */
#include "coord.h"
#include "clock.h"
#include "coord_state.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include "ctl.h"
#include "endpoint.h"
#include "feed.h"
#include "frame.h"
#include "kernels.h"
#include "module.h"
#include "reassemble.h"
#include "report.h"
#include "transport.h"

#define TICK_MS 1000
#define MAX_RESPAWNS 10   /* per spawned worker: more is a crash loop */
#define STALL_WARN_S 60.0 /* no report for this long: say who is behind */

static void finish(struct coord *c, int status);

static void fail(struct coord *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct coord *c, int code, const char *fmt, ...)
{
    if (c->finished)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err->msg, sizeof c->err->msg, fmt, ap);
    va_end(ap);
    finish(c, code);
}

static void collect(struct coord *c, bool for_checkpoint);
static void try_restart(struct coord *c);
static void lose_peer(struct coord *c, struct peer *p, const char *why);

/* Once every module has finished every batch sent: after the last
 * evaluation or a stop request (the feeder has ended), collect the modules
 * for the model; for a pending checkpoint (the feeder waits), for the
 * checkpoint. */
static void check_drained(struct coord *c)
{
    bool stop =
        c->evaluations_left == 0 || (atomic_load(&c->stop_requested) && c->feeder_ended_seen);
    if ((!stop && !c->ckpt_pending) || c->collecting || c->finished || atomic_load(&c->halted))
        return;
    uint64_t fed = atomic_load(&c->fed);
    for (int k = 0; k < c->K; k++)
        if (c->done[k] < fed)
            return;
    collect(c, !stop);
}

static void on_ckpt_async(uv_async_t *a)
{
    struct coord *c = a->data;
    c->ckpt_pending = true;
    check_drained(c);
}

bool coord_request_checkpoint(struct coord *c, uint64_t *ret_step)
{
    if (c->finished || c->collecting || !c->started || atomic_load(&c->stop_requested))
        return false;
    atomic_store(&c->ckpt_requested, true);
    *ret_step = atomic_load(&c->train_fed); /* the feeder's next boundary, or the one after */
    return true;
}

static void on_feeder_ended(uv_async_t *a)
{
    struct coord *c = a->data;
    c->feeder_ended_seen = true;
    if (c->feed_status)
        fail(c, c->feed_status, "%s", c->feed_error);
    else
        check_drained(c);
}

bool coord_request_stop(struct coord *c)
{
    if (c->finished || c->collecting || !c->started)
        return false;
    atomic_store(&c->stop_requested, true);
    c->phase = SILA__RUN_PHASE__STOPPING;
    uv_sem_post(&c->credits.sem);   /* a feeder waiting for a credit looks again */
    uv_sem_post(&c->evaluated.sem); /* or for an evaluation */
    uv_sem_post(&c->learned.sem);   /* or for collab's last epoch */
    printf("stop requested: finishing the batches in flight, then saving the model\n");
    fflush(stdout);
    return true;
}

/* ---- control messages to workers ---- */

static int peer_send(struct peer *p, Sila__Control *m)
{
    struct sila_err e;
    m->generation = p->gen;
    int r = sila_ctl_send(&p->ctl, m, NULL, 0, TICK_MS, &e);
    char buf[32];
    if (r)
        fprintf(stderr, "silad: the worker for %s: %s\n",
                sila_modules_text(p->first, p->last, buf, sizeof buf), e.msg);
    return r;
}

static void send_stop(struct coord *c, const char *reason, bool failed)
{
    Sila__Stop st = SILA__STOP__INIT;
    st.reason = (char *)reason;
    st.failed = failed;
    Sila__Control m = SILA__CONTROL__INIT;
    m.msg_case = SILA__CONTROL__MSG_STOP;
    m.stop = &st;
    bool sent = false;
    for (int i = 0; i < c->npeers; i++)
        if (c->peers[i]->ready)
            sent |= peer_send(c->peers[i], &m) == 0;
    if (sent) /* nothing acknowledges a Stop: let it leave before the links close */
        sila_link_settle();
}

/* Asks every module for its whole state, for a checkpoint or for the end. */
static void collect(struct coord *c, bool for_checkpoint)
{
    c->collecting = true;
    c->collect_for_checkpoint = for_checkpoint;
    for (int k = 0; k < c->K; k++) {
        Sila__Collect col = SILA__COLLECT__INIT;
        col.module = (uint32_t)k + 1;
        Sila__Control m = SILA__CONTROL__INIT;
        m.msg_case = SILA__CONTROL__MSG_COLLECT;
        m.collect = &col;
        if (peer_send(c->peers[c->owner[k]], &m)) {
            fail(c, -EIO, "cannot ask module %d for its state", k + 1);
            return;
        }
    }
}

/* ---- reports from workers ---- */

static void on_eval_done(struct coord *c, int k, const Sila__Done *d)
{
    const struct sila_plan *pl = &c->feed.plan;
    c->tested[k] = (uint64_t)d->epoch * pl->eval_batches + d->batch + 1;
    c->eval_done[k]++;
    c->eval_correct[k] += d->correct;
    for (int j = 0; j < c->K; j++)
        if (c->eval_done[j] < pl->eval_batches)
            return;
    for (int j = 0; j < c->K; j++) {
        c->accuracy[j] = pl->ntest ? (double)c->eval_correct[j] / pl->ntest : 0.0;
        c->eval_done[j] = 0;
        c->eval_correct[j] = 0;
    }
    report_eval(&c->rep, (int)d->epoch, (uint64_t)(d->epoch + 1) * pl->steps_per_epoch,
                c->accuracy);
    uv_sem_post(&c->evaluated.sem);
    c->evaluations_left--;
}

/* Why the logits a Done carries (d->logits floats at logits) are not what
 * module k's report of a batch needs, or NULL: the classifier's (batch,
 * classes), all finite, with each training step of the last module when
 * the run learns collab's soft targets; none with any other report. */
static const char *bad_logits(const struct coord *c, int k, bool eval, const Sila__Done *d,
                              const float *logits, char *buf, size_t len)
{
    uint32_t want = collab_on(&c->collab) && !eval && k == c->K - 1
                        ? (uint32_t)c->job->batch * (uint32_t)c->job->nclasses
                        : 0;
    if (d->logits != want)
        snprintf(buf, len, "%u logits, expected %u", d->logits, want);
    else if (want && !sila_all_finite(logits, want))
        snprintf(buf, len, "logits that are not all finite");
    else
        return NULL;
    return buf;
}

/* collab: learns the soft targets of step t's samples from the
 * classifier's logits (batch, classes); after the last step of an epoch,
 * lets the feeder fill the next epoch's targets. */
static void learn_step(struct coord *c, uint64_t t, const float *logits)
{
    if (!collab_on(&c->collab))
        return;
    const uint32_t *idx = feed_order_step(&c->learn_order, &c->feed.plan, t);
    collab_learn(&c->collab, idx, c->job->batch, logits);
    if ((t + 1) % c->feed.plan.steps_per_epoch == 0)
        uv_sem_post(&c->learned.sem);
}

/* A Done of p's, with d->logits floats at logits (the frame's tail). */
static void on_done(struct coord *c, struct peer *p, const Sila__Done *d, const float *logits)
{
    const struct sila_plan *pl = &c->feed.plan;
    int k = (int)d->module - 1;
    if (k < p->first || k > p->last || d->epoch >= (uint32_t)c->job->epochs) {
        p->bad_messages++;
        return;
    }
    /* every step and test batch is reported once per module, in order */
    bool eval = d->phase == SILA__PHASE__EVAL;
    uint64_t got = eval ? (uint64_t)d->epoch * pl->eval_batches + d->batch : d->batch;
    if (eval ? got < c->tested[k] : got != c->trained[k]) {
        fail(c, -EPROTO, "module %d reported %s %llu, expected %s%llu", k + 1,
             eval ? "test batch" : "step", (unsigned long long)got, eval ? "at least " : "",
             (unsigned long long)(eval ? c->tested[k] : c->trained[k]));
        return;
    }
    char why[96];
    if (bad_logits(c, k, eval, d, logits, why, sizeof why)) {
        fail(c, -EPROTO, "module %d reported %s %llu with %s", k + 1, eval ? "test batch" : "step",
             (unsigned long long)got, why);
        return;
    }
    c->last_report = sila_clock_s();
    c->done[k]++;
    c->samples[k] += d->samples;
    p->active_s = d->active_s;
    p->busy_s = d->busy_s;
    p->peak_rss_kb = d->peak_rss_kb;
    if (c->phase == SILA__RUN_PHASE__TRAINING || c->phase == SILA__RUN_PHASE__EVALUATING)
        c->phase =
            d->phase == SILA__PHASE__EVAL ? SILA__RUN_PHASE__EVALUATING : SILA__RUN_PHASE__TRAINING;
    if (eval) {
        if (k == c->K - 1)
            uv_sem_post(&c->credits.sem);
        on_eval_done(c, k, d);
    } else {
        uint64_t t = c->trained[k]++;
        report_step_loss(&c->rep, k, d->loss);
        if (k == p->last) {
            p->loss = d->loss;
            if (d->samples)
                p->accuracy = 0.9 * p->accuracy + 0.1 * d->correct / d->samples;
        }
        if (k == c->K - 1) {
            learn_step(c, t, logits);
            uv_sem_post(&c->credits.sem);
            report_step(&c->rep, (int)(t / pl->steps_per_epoch), t % pl->steps_per_epoch,
                        c->job->batch, sila_plan_lr(pl, t), sila_plan_step_global(pl, t));
        }
    }
    check_drained(c);
}

static void save_and_stop(struct coord *c)
{
    struct body_state bodies[SILA_MAX_MODULES];
    for (int k = 0; k < c->K; k++) {
        const struct checkpoint_module *m = &c->collected[k];
        bodies[k] = (struct body_state){m->state, m->layout.body_params,
                                        m->state + m->layout.params + m->layout.optimizer,
                                        m->layout.body_buffers};
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.sila", c->out_dir);
    double acc = c->accuracy[c->K - 1];
    int r = reassemble_save(c->job, bodies, path, acc, c->err);
    if (r) {
        finish(c, r);
        return;
    }
    report_saved(&c->rep, path, c->rep.nevals ? acc : NAN);
    for (int i = 0; i < c->npeers; i++)
        report_worker(&c->rep, &c->peers[i]->summary, c->samples[c->peers[i]->first]);
    finish(c, 0);
}

/* Frees the module states collected so far and ends the collection. */
static void drop_collected(struct coord *c)
{
    for (int k = 0; k < c->K; k++) {
        free(c->collected[k].state);
        c->collected[k].state = NULL;
    }
    c->states = 0;
    c->collecting = false;
}

/* Writes the collected states as a checkpoint and lets the feeder go on. */
static void write_checkpoint(struct coord *c)
{
    uint64_t step = atomic_load(&c->ckpt_step);
    /* the feeder waits: its augmentation RNG is at the boundary */
    struct checkpoint ck = checkpoint_at(step, &c->rep, &c->feed.aug_rng, c->K);
    memcpy(ck.mods, c->collected, sizeof *ck.mods * (size_t)c->K);
    ck.collab = c->collab.q; /* every step fed is learned: drained */
    ck.ncollab = collab_floats(&c->collab);
    char path[4200];
    struct sila_err e;
    if (checkpoint_write(c->out_dir, c->job, &ck, path, sizeof path, &e) == 0) {
        report_checkpoint(&c->rep, path, step);
        snprintf(c->last_checkpoint, sizeof c->last_checkpoint, "%s", path);
    } else
        fprintf(stderr, "silad: checkpoint after step %llu not written: %s\n",
                (unsigned long long)step, e.msg);
    drop_collected(c);
    c->ckpt_pending = false;
    uv_sem_post(&c->ckpt_done.sem);
}

static void on_state(struct coord *c, struct peer *p, const Sila__ModuleState *st,
                     const float *tail)
{
    int k = (int)st->module - 1;
    if (atomic_load(&c->halted))
        return; /* of a collection a lost worker interrupted: asked for again */
    if (!c->collecting || k < p->first || k > p->last || c->collected[k].state ||
        st->body_params != c->body_params[k] || st->body_buffers != c->body_buffers[k] ||
        st->n_counters != SILA_MODULE_COUNTERS) {
        char mods[32];
        fail(c, -EPROTO, "the worker for %s sent an unexpected or inconsistent state of module %u",
             sila_modules_text(p->first, p->last, mods, sizeof mods), st->module);
        return;
    }
    struct checkpoint_module *m = &c->collected[k];
    m->layout = (struct sila_module_layout){st->params, st->optimizer, st->buffers, st->body_params,
                                            st->body_buffers};
    size_t n = st->params + st->optimizer + st->buffers;
    m->state = malloc(sizeof *tail * (n + 1));
    if (!m->state) {
        fail(c, -ENOMEM, "out of memory for module %d's state", k + 1);
        return;
    }
    memcpy(m->state, tail, sizeof *tail * n);
    memcpy(m->counters, st->counters, sizeof m->counters);
    p->summary = (struct worker_summary){p->first,     p->last,       st->active_s,   st->busy_s,
                                         st->global_s, st->bytes_out, st->peak_rss_kb};
    if (++c->states < c->K)
        return;
    if (c->collect_for_checkpoint)
        write_checkpoint(c);
    else
        save_and_stop(c);
}

static void start_run(struct coord *c);
static void restore_replacement(struct coord *c, struct peer *p);

static void on_ready(struct coord *c, struct peer *p, const Sila__Ready *r)
{
    if (r->generation != p->gen || r->first_module != (uint32_t)p->first + 1 || p->ready) {
        p->bad_messages++;
        return;
    }
    p->ready = true;
    char buf[32];
    printf("worker for %s ready (%s, pid %u, generation %u)\n",
           sila_modules_text(p->first, p->last, buf, sizeof buf), p->host, p->pid, p->gen);
    fflush(stdout);
    if (c->started) { /* a replacement: waits, like the others, for the restart */
        p->halted = true;
        restore_replacement(c, p);
        try_restart(c);
        return;
    }
    for (int k = 0; k < c->K; k++)
        if (c->owner[k] < 0 || !c->peers[c->owner[k]]->ready)
            return;
    start_run(c);
}

static void on_peer_message(struct coord *c, struct peer *p, const struct sila_ctl_msg *m)
{
    const Sila__Control *msg = m->msg;
    if (msg->generation != p->gen) { /* from a worker since replaced */
        p->bad_messages++;
        return;
    }
    p->last_message = sila_clock_s();
    switch (msg->msg_case) {
    case SILA__CONTROL__MSG_READY:
        on_ready(c, p, msg->ready);
        break;
    case SILA__CONTROL__MSG_DONE:
        if (c->started)
            on_done(c, p, msg->done, m->tail);
        else
            p->bad_messages++;
        break;
    case SILA__CONTROL__MSG_STATE:
        on_state(c, p, msg->state, m->tail);
        break;
    case SILA__CONTROL__MSG_HEARTBEAT:
        break;
    case SILA__CONTROL__MSG_HALT:
        if (!atomic_load(&c->halted) || msg->halt->pipeline != atomic_load(&c->pipeline) + 1) {
            p->bad_messages++;
            break;
        }
        p->halted = true;
        try_restart(c);
        break;
    case SILA__CONTROL__MSG_STOP: {
        char mods[32];
        fail(c, -ECANCELED, "the worker for %s failed: %.400s",
             sila_modules_text(p->first, p->last, mods, sizeof mods), msg->stop->reason);
        break;
    }
    default:
        p->bad_messages++;
        break;
    }
}

static void on_peer_readable(uv_poll_t *h, int status, int events)
{
    struct peer *p = h->data;
    struct coord *c = h->loop->data;
    (void)status, (void)events;
    while (!c->finished) {
        struct sila_ctl_msg m;
        struct sila_err e;
        int r = sila_ctl_recv(&p->ctl, 0, &m, &e);
        if (r == -EAGAIN)
            return;
        if (r) {
            p->bad_messages++;
            char buf[32];
            fprintf(stderr, "silad: dropped a message from the worker for %s: %s\n",
                    sila_modules_text(p->first, p->last, buf, sizeof buf),
                    r == -EBADMSG ? e.msg : strerror(-r));
            continue;
        }
        on_peer_message(c, p, &m);
        sila_ctl_msg_free(&m);
    }
}

/* ---- joining ---- */

struct sila_link_auth coord_link_auth(const struct coord *c, const char *channel)
{
    return (struct sila_link_auth){
        .key = c->o->key, .channel = channel, .window_ms = c->o->auth_window_ms};
}

static int poll_link(struct coord *c, uv_poll_t *h, const struct sila_link *l, void *data,
                     uv_poll_cb cb)
{
    int rfd, sfd;
    int r = sila_link_fds(l, &rfd, &sfd);
    if (r)
        return r;
    if ((r = uv_poll_init(&c->loop, h, rfd)))
        return r;
    h->data = data;
    return uv_poll_start(h, UV_READABLE, cb);
}

/* Why a Hello cannot join, or NULL when it can. */
static const char *refusal(struct coord *c, const Sila__Hello *h, char *buf, size_t len)
{
    uint8_t hash[SILA_PLAN_HASH_BYTES];
    if (h->version != SILA_WIRE_VERSION)
        snprintf(buf, len, "wire protocol version %u, this coordinator speaks %u", h->version,
                 SILA_WIRE_VERSION);
    else if (h->first_module < 1 || h->last_module < h->first_module ||
             h->last_module > (uint32_t)c->K)
        snprintf(buf, len, "modules %u-%u asked for, the job %s has modules 1-%d", h->first_module,
                 h->last_module, c->job->name, c->K);
    else if (h->max_frame < c->max_frame)
        snprintf(buf, len, "the job needs frames of %zu bytes, the worker accepts %llu",
                 c->max_frame, (unsigned long long)h->max_frame);
    else if (h->plan_hash.len &&
             (sila_job_plan_hash(c->job, hash),
              h->plan_hash.len != sizeof hash || memcmp(h->plan_hash.data, hash, sizeof hash)))
        snprintf(buf, len, "the worker's job plan differs from %.300s", c->job->path);
    else if (c->started) {
        const struct peer *p = c->peers[c->owner[h->first_module - 1]];
        if (c->collecting || atomic_load(&c->stop_requested))
            snprintf(buf, len, "the run is ending; it takes no new workers");
        else if (!p->lost)
            snprintf(buf, len,
                     "module %u is served by the worker on %s (pid %u, generation %u); a worker "
                     "is replaced once it has been silent for %d s",
                     h->first_module, p->host, p->pid, p->gen, c->o->worker_timeout);
        else if (p->first != (int)h->first_module - 1 || p->last != (int)h->last_module - 1)
            snprintf(buf, len, "modules %d-%d were lost together: a replacement takes all of them",
                     p->first + 1, p->last + 1);
        else
            return NULL;
    } else {
        for (uint32_t k = h->first_module - 1; k < h->last_module; k++)
            if (c->owner[k] >= 0) {
                const struct peer *p = c->peers[c->owner[k]];
                snprintf(buf, len, "module %u is taken by the worker on %s (pid %u, generation %u)",
                         k + 1, p->host, p->pid, p->gen);
                return buf;
            }
        return NULL;
    }
    return buf;
}

/* Accepts h: a control link for it and a Welcome. */
static int admit(struct coord *c, const Sila__Hello *h, Sila__Welcome *w, char *why, size_t len)
{
    struct peer *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(why, len, "the coordinator is out of memory");
        return -ENOMEM;
    }
    p->first = (int)h->first_module - 1;
    p->last = (int)h->last_module - 1;
    p->gen = ++c->generation[p->first];
    p->pid = h->pid;
    snprintf(p->host, sizeof p->host, "%s", *h->host ? h->host : "?");
    char url[SILA_URL_MAX + 64];
    sila_endpoint_control(&c->base, p->first + 1, url, sizeof url);
    struct sila_err e;
    char channel[32];
    snprintf(channel, sizeof channel, "control-%d", p->first + 1);
    struct sila_link_auth la = coord_link_auth(c, channel);
    int r = sila_link_open(&p->ctl, SILA_LINK_PAIR, url, true, c->ctl_limit, &la, &e);
    if (r == 0 && (r = poll_link(c, &p->poll, &p->ctl, p, on_peer_readable)) == 0)
        p->polling = true;
    else if (p->ctl.sock >= 0) /* the link opened, polling it failed */
        snprintf(e.msg, sizeof e.msg, "event loop: %s", uv_strerror(r));
    if (r) {
        snprintf(why, len, "the coordinator cannot open its control link: %.300s", e.msg);
        sila_link_close(&p->ctl);
        free(p);
        return r;
    }
    p->loss = NAN;
    p->last_message = sila_clock_s();
    if (c->started) { /* replaces the lost worker of the same modules */
        struct peer *old = c->peers[c->owner[p->first]];
        old->next_retired = c->retired;
        c->retired = old;
        c->peers[c->owner[p->first]] = p;
        p->fresh = true;
        c->replacements++;
    } else {
        c->peers[c->npeers] = p;
        for (int k = p->first; k <= p->last; k++)
            c->owner[k] = c->npeers;
        c->npeers++;
    }
    w->version = SILA_WIRE_VERSION;
    w->generation = p->gen;
    w->job_path = (char *)c->job->path;
    w->job_text = c->job->text;
    w->overrides = c->job->overrides;
    w->n_overrides = (size_t)c->job->noverrides;
    w->train_samples = c->feed.plan.ntrain;
    w->test_samples = c->feed.plan.ntest;
    char buf[32];
    printf("worker for %s joined from %s (pid %u)\n", sila_modules_text(p->first, p->last, buf, 32),
           p->host, p->pid);
    fflush(stdout);
    return 0;
}

static void answer_hello(struct coord *c, const struct sila_ctl_msg *m, const char *bad)
{
    char why[512];
    uint8_t hash[SILA_PLAN_HASH_BYTES];
    Sila__Welcome w = SILA__WELCOME__INIT;
    Sila__Refusal ref = SILA__REFUSAL__INIT;
    Sila__Control out = SILA__CONTROL__INIT;
    const char *no = bad;
    if (!no && m->msg->msg_case != SILA__CONTROL__MSG_HELLO)
        no = "expected a hello";
    if (!no)
        no = refusal(c, m->msg->hello, why, sizeof why);
    if (!no && admit(c, m->msg->hello, &w, why, sizeof why))
        no = why;
    if (no) {
        ref.reason = (char *)no;
        out.msg_case = SILA__CONTROL__MSG_REFUSAL;
        out.refusal = &ref;
        fprintf(stderr, "silad: refused a worker: %s\n", no);
    } else {
        sila_job_plan_hash(c->job, hash);
        w.plan_hash.data = hash;
        w.plan_hash.len = sizeof hash;
        out.msg_case = SILA__CONTROL__MSG_WELCOME;
        out.welcome = &w;
    }
    struct sila_err e;
    if (sila_ctl_send(&c->rdv, &out, NULL, 0, TICK_MS, &e))
        fprintf(stderr, "silad: cannot answer a worker: %s\n", e.msg);
}

static void on_rdv_readable(uv_poll_t *h, int status, int events)
{
    struct coord *c = h->data;
    (void)status, (void)events;
    while (!c->finished) {
        struct sila_ctl_msg m;
        struct sila_err e;
        int r = sila_ctl_recv(&c->rdv, 0, &m, &e);
        if (r == -EAGAIN)
            return;
        if (r && r != -EBADMSG) {
            fprintf(stderr, "silad: rendezvous: %s\n", strerror(-r));
            return;
        }
        answer_hello(c, &m, r ? e.msg : NULL);
        sila_ctl_msg_free(&m);
    }
}

/* ---- the run ---- */

/* Sends modules first..last their states from checkpoint ck. */
static int restore_modules(struct coord *c, const struct checkpoint *ck, int first, int last)
{
    for (int k = first; k <= last; k++) {
        const struct checkpoint_module *m = &ck->mods[k];
        Sila__ModuleState st = SILA__MODULE_STATE__INIT;
        st.module = (uint32_t)k + 1;
        st.params = m->layout.params;
        st.optimizer = m->layout.optimizer;
        st.buffers = m->layout.buffers;
        st.body_params = m->layout.body_params;
        st.body_buffers = m->layout.body_buffers;
        st.counters = (uint64_t *)m->counters;
        st.n_counters = SILA_MODULE_COUNTERS;
        Sila__Control msg = SILA__CONTROL__INIT;
        struct peer *p = c->peers[c->owner[k]];
        msg.generation = p->gen;
        msg.msg_case = SILA__CONTROL__MSG_STATE;
        msg.state = &st;
        struct sila_err e;
        int r = sila_ctl_send(&p->ctl, &msg, m->state,
                              m->layout.params + m->layout.optimizer + m->layout.buffers,
                              30 * TICK_MS, &e);
        if (r)
            return sila_err_set(c->err, r, "restoring module %d: %s", k + 1, e.msg);
    }
    return 0;
}

/* Sends p its Start: where its downstream is, the pipeline generation, and
 * how far each of its modules has come. */
static int send_start(struct coord *c, struct peer *p)
{
    char url[SILA_URL_MAX + 64];
    uint64_t trained[SILA_MAX_MODULES], tested[SILA_MAX_MODULES];
    Sila__Start st = SILA__START__INIT;
    st.downstream_url = "";
    if (p->last + 1 < c->K) {
        const struct peer *d = c->peers[c->owner[p->last + 1]];
        sila_endpoint_data(&c->base, d->first + 1, d->host, false, url, sizeof url);
        st.downstream_url = url;
        st.reconnect = d->fresh;
    }
    st.pipeline = atomic_load(&c->pipeline);
    for (int k = p->first; k <= p->last; k++) {
        trained[k - p->first] = c->trained[k];
        tested[k - p->first] = c->tested[k];
    }
    st.trained = trained;
    st.n_trained = (size_t)(p->last - p->first + 1);
    st.evaluated = tested;
    st.n_evaluated = st.n_trained;
    Sila__Control m = SILA__CONTROL__INIT;
    m.msg_case = SILA__CONTROL__MSG_START;
    m.start = &st;
    return peer_send(p, &m);
}

static void start_run(struct coord *c)
{
    char url[SILA_URL_MAX + 64];
    if (c->o->resume) {
        int r = restore_modules(c, &c->resume_from, 0, c->K - 1);
        checkpoint_free(&c->resume_from); /* the evaluations live on in the report */
        if (r) {
            finish(c, r);
            return;
        }
    }
    for (int i = 0; i < c->npeers; i++) {
        if (send_start(c, c->peers[i])) {
            fail(c, -EIO, "cannot start the worker of module %d", c->peers[i]->first + 1);
            return;
        }
    }
    const struct peer *p0 = c->peers[c->owner[0]];
    sila_endpoint_data(&c->base, 1, p0->host, false, url, sizeof url);
    struct sila_link_auth la = coord_link_auth(c, "data-1");
    int r = sila_link_open(&c->data, SILA_LINK_PAIR, url, false, 4096, &la, c->err);
    if (r) {
        finish(c, r);
        return;
    }
    c->started = true;
    c->phase = SILA__RUN_PHASE__TRAINING;
    c->last_report = sila_clock_s();
    char where[64];
    snprintf(where, sizeof where, "on %d worker%s", c->npeers, c->npeers > 1 ? "s" : "");
    report_start(&c->rep, c->job, &c->feed.plan, where);
    if ((r = uv_thread_create(&c->feeder, coord_feeder_main, c)))
        fail(c, -EAGAIN, "cannot start the feeder thread: %s", uv_strerror(r));
    else
        c->feeder_running = true;
}

/* ---- replacing a lost worker (docs/protocol.md) ---- */

/* A worker is gone. While training, the pipeline halts and waits for a
 * replacement of the worker's modules; the other workers keep their state.
 * Before the start or while the modules' states are collected, the run
 * fails instead (its newest checkpoint can be resumed). */
static void lose_peer(struct coord *c, struct peer *p, const char *why)
{
    if (c->finished || p->lost)
        return;
    char mods[32];
    sila_modules_text(p->first, p->last, mods, sizeof mods);
    if (!c->started) {
        fail(c, -ETIMEDOUT, "the worker for %s on %s (pid %u) %s", mods, p->host, p->pid, why);
        return;
    }
    if (c->collecting) /* collected again once the pipeline is whole */
        drop_collected(c);
    p->lost = true;
    p->ready = p->halted = false;
    if (p->polling) {
        uv_poll_stop(&p->poll);
        uv_close((uv_handle_t *)&p->poll, NULL);
        p->polling = false;
    }
    sila_link_close(&p->ctl);
    fprintf(stderr,
            "silad: the worker for %s on %s (pid %u, generation %u) %s: waiting for a "
            "replacement (silaworker --module %d-%d --connect %s)\n",
            mods, p->host, p->pid, p->gen, why, p->first + 1, p->last + 1, c->base_url);
    if (atomic_load(&c->halted))
        return;
    atomic_store(&c->halted, true);
    c->halted_since = sila_clock_s();
    c->phase = SILA__RUN_PHASE__RECOVERING;
    coord_wake_feeder(c);
    Sila__Halt h = SILA__HALT__INIT;
    h.pipeline = atomic_load(&c->pipeline) + 1;
    Sila__Control m = SILA__CONTROL__INIT;
    m.msg_case = SILA__CONTROL__MSG_HALT;
    m.halt = &h;
    for (int i = 0; i < c->npeers; i++)
        if (c->peers[i]->ready)
            peer_send(c->peers[i], &m);
}

/* A replacement is ready: its modules get their state from the run's
 * newest checkpoint, or keep their initial weights when there is none. */
static void restore_replacement(struct coord *c, struct peer *p)
{
    char mods[32], path[4200];
    sila_modules_text(p->first, p->last, mods, sizeof mods);
    struct checkpoint ck;
    struct sila_err e;
    /* a checkpoint of this run: written by it, or the one it resumed */
    int r = *c->last_checkpoint || c->o->resume
                ? checkpoint_read_latest(c->out_dir, c->job, &ck, path, sizeof path, &e)
                : -ENOENT;
    if (r == -ENOENT) {
        printf("%s start again from their initial weights (no checkpoint yet)\n", mods);
        return;
    }
    if (r) {
        fail(c, r, "cannot restore %s for their replacement: %s", mods, e.msg);
        return;
    }
    r = restore_modules(c, &ck, p->first, p->last);
    if (r == 0)
        printf("%s restored from %s (step %llu)\n", mods, path, (unsigned long long)ck.step);
    checkpoint_free(&ck);
    if (r)
        finish(c, r);
}

/* Once every module has a ready worker and every old one has halted:
 * restarts the pipeline from the oldest batch the last module has not
 * finished, as a new generation of it. */
static void try_restart(struct coord *c)
{
    if (!atomic_load(&c->halted) || c->finished)
        return;
    for (int i = 0; i < c->npeers; i++)
        if (!c->peers[i]->ready || !c->peers[i]->halted)
            return;
    if (c->feeder_ended_seen && atomic_load(&c->fed) > c->done[c->K - 1]) {
        fail(c, -EIO, "batches in the pipeline were lost after the last was fed%s%s",
             *c->last_checkpoint ? "; resume from " : "", c->last_checkpoint);
        return;
    }
    const struct peer *p0 = c->peers[c->owner[0]];
    sila_endpoint_data(&c->base, 1, p0->host, false, c->data_url, sizeof c->data_url);
    atomic_store(&c->reopen_data, p0->fresh);
    /* from the oldest batch a module has not reported: the last module's,
     * or one a lost worker finished but whose report died with it */
    uint64_t from = c->done[c->K - 1];
    for (int k = 0; k < c->K; k++)
        from = c->done[k] < from ? c->done[k] : from;
    atomic_store(&c->restart_pos, from);
    atomic_fetch_add(&c->pipeline, 1);
    for (int i = 0; i < c->npeers; i++)
        if (send_start(c, c->peers[i])) {
            fail(c, -EIO, "cannot restart the worker of module %d", c->peers[i]->first + 1);
            return;
        }
    for (int i = 0; i < c->npeers; i++)
        c->peers[i]->fresh = c->peers[i]->halted = false;
    c->phase = SILA__RUN_PHASE__TRAINING;
    c->last_report = sila_clock_s();
    printf("pipeline restarted (generation %u) from batch %llu, after %.1f s\n",
           atomic_load(&c->pipeline), (unsigned long long)from, sila_clock_s() - c->halted_since);
    fflush(stdout);
    atomic_store(&c->halted, false);
    check_drained(c); /* a collection the loss interrupted, with nothing in flight */
}

/* systemd's view (systemctl status): a STATUS= line with the progress;
 * sd_notify does nothing when silad was not started by systemd. */
static void notify_status(const struct coord *c)
{
    const struct report *rep = &c->rep;
    if (!c->started) {
        sd_notifyf(0, "STATUS=waiting for workers (%d modules) at %s", c->K, c->base_url);
        return;
    }
    const struct sila_plan *pl = &c->feed.plan;
    char acc[64] = "";
    if (rep->nevals)
        snprintf(acc, sizeof acc, ", last accuracy %.2f%%",
                 100.0 * rep->evals[rep->nevals - 1].accuracy[c->K - 1]);
    uint64_t epoch = c->trained[c->K - 1] / pl->steps_per_epoch + 1;
    if (epoch > (uint64_t)c->job->epochs)
        epoch = (uint64_t)c->job->epochs;
    sd_notifyf(0, "STATUS=%s epoch %llu/%d, step %llu/%llu, %.0f samples/s%s",
               atomic_load(&c->paused) ? "paused at" : "training,", (unsigned long long)epoch,
               c->job->epochs, (unsigned long long)c->trained[c->K - 1],
               (unsigned long long)pl->total_steps, report_rate(rep), acc);
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
        struct sila_err ignored;
        m.generation = p->gen;
        sila_ctl_send(&p->ctl, &m, NULL, 0, 0, &ignored); /* a full queue says enough */
        /* before the start, a worker that joined and went silent is only
         * waited for; a replacement that does is lost like any other */
        if ((!p->ready && !c->started) || now - p->last_message <= c->o->worker_timeout)
            continue;
        char why[64];
        snprintf(why, sizeof why, "is lost: no message for %.0f s", now - p->last_message);
        lose_peer(c, p, why);
    }
    if (atomic_load(&c->halted) && now - c->halted_since > c->o->replace_timeout) {
        char mods[128] = "";
        for (int i = 0; i < c->npeers; i++)
            if (c->peers[i]->lost) {
                size_t n = strlen(mods);
                snprintf(mods + n, sizeof mods - n, "%s%d-%d", n ? ", " : "",
                         c->peers[i]->first + 1, c->peers[i]->last + 1);
            }
        fail(c, -ETIMEDOUT, "no replacement for modules %s within %d s (--replace-timeout)%s%s",
             mods, c->o->replace_timeout, *c->last_checkpoint ? "; resume from " : "",
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
        if (sila_link_rejections(&p->ctl, what, now, 10.0, &e))
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
    if (!c->started || idle < STALL_WARN_S || atomic_load(&c->paused))
        return;
    fprintf(stderr, "silad: no report from the workers for %.0f s (%llu steps done)\n", idle,
            (unsigned long long)c->trained[c->K - 1]);
    c->last_report = sila_clock_s();
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct coord *c = s->data;
    fail(c, -EINTR, "stopped by %s", strsignal(signum));
}

static void close_handle(uv_handle_t *h)
{
    if (h->loop && !uv_is_closing(h))
        uv_close(h, NULL);
}

/* Decides the outcome once: stops the feeder and the workers, and closes
 * every handle but the children's, which close when they exit. */
static void finish(struct coord *c, int status)
{
    if (c->finished)
        return;
    c->finished = true;
    c->status = status;
    c->phase = status ? SILA__RUN_PHASE__FAILED : SILA__RUN_PHASE__FINISHED;
    sd_notifyf(0, "STOPPING=1\nSTATUS=%s%.200s", status ? "failed: " : "finished",
               status ? c->err->msg : "");
    atomic_store(&c->stopping, true);
    for (int i = 0; i < 2 * c->o->window + 2; i++) {
        uv_sem_post(&c->credits.sem);
        uv_sem_post(&c->evaluated.sem);
    }
    uv_sem_post(&c->learned.sem);
    uv_sem_post(&c->ckpt_done.sem);
    send_stop(c, status ? c->err->msg : "finished", status != 0);
    if (c->feeder_running)
        uv_thread_join(&c->feeder);
    c->feeder_running = false;
    for (int i = 0; i < c->npeers; i++)
        if (c->peers[i]->polling)
            close_handle((uv_handle_t *)&c->peers[i]->poll);
    if (c->rdv_polling)
        close_handle((uv_handle_t *)&c->rdv_poll);
    close_handle((uv_handle_t *)&c->sigint);
    close_handle((uv_handle_t *)&c->sigterm);
    close_handle((uv_handle_t *)&c->watchdog);
    if (c->async_open) {
        close_handle((uv_handle_t *)&c->feeder_ended);
        close_handle((uv_handle_t *)&c->ckpt_async);
    }
    if (c->rpc_open)
        rpc_close(&c->rpc);
    c->rpc_open = false;
    for (int i = 0; i < c->nchildren; i++)
        if (c->children[i].running && status)
            uv_process_kill(&c->children[i].proc, SIGTERM);
}

/* ---- spawned workers ---- */

static int spawn_child(struct coord *c, struct child *ch);

/* A child's handle is closed: a lost worker's slot starts a new one. */
static void on_child_closed(uv_handle_t *h)
{
    struct child *ch = h->data;
    struct coord *c = h->loop->data;
    if (!ch->respawn || c->finished)
        return;
    ch->respawn = false;
    ch->respawns++;
    char mods[32];
    printf("starting a new worker for %s (restart %d of at most %d)\n",
           sila_modules_text(ch->first, ch->last, mods, sizeof mods), ch->respawns, MAX_RESPAWNS);
    fflush(stdout);
    int r = spawn_child(c, ch);
    if (r)
        finish(c, r);
}

/* A spawned worker ended. One killed by a signal during training is lost
 * and started again (at most MAX_RESPAWNS times); one that exited with an
 * error failed on its own, for a reason another would meet too (it said
 * which on its control link and its stderr): the run fails. */
static void on_child_exit(uv_process_t *proc, int64_t status, int signum)
{
    struct child *ch = proc->data;
    struct coord *c = proc->loop->data;
    ch->running = false;
    uv_close((uv_handle_t *)proc, on_child_closed);
    if (c->finished || (!status && !signum))
        return;
    char mods[32], why[96];
    sila_modules_text(ch->first, ch->last, mods, sizeof mods);
    if (signum)
        snprintf(why, sizeof why, "was killed by signal %d", signum);
    else
        snprintf(why, sizeof why, "exited with status %lld", (long long)status);
    struct peer *p = c->owner[ch->first] >= 0 ? c->peers[c->owner[ch->first]] : NULL;
    if (p && p->polling) /* its last words first */
        on_peer_readable(&p->poll, 0, UV_READABLE);
    if (c->finished)
        return;
    if (!signum || !p || p->pid != (uint32_t)proc->pid || ch->respawns >= MAX_RESPAWNS) {
        fail(c, -ECHILD, "the worker for %s (pid %d) %s%s", mods, proc->pid, why,
             ch->respawns >= MAX_RESPAWNS ? " (restarted too often)" : "");
        return;
    }
    lose_peer(c, p, why);
    ch->respawn = !c->finished;
}

/* silaworker next to silad (installed, or in the build tree), or $SILAWORKER. */
static int find_worker(char *out, size_t len)
{
    const char *env = getenv("SILAWORKER");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return access(out, X_OK) == 0 ? 0 : -errno;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0)
        return -errno;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    *slash = 0;
    static const char *const rel[] = {"silaworker", "../worker/silaworker", "../bin/silaworker"};
    for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
        if ((size_t)snprintf(out, len, "%s/%s", self, rel[i]) < len && access(out, X_OK) == 0)
            return 0;
    }
    return -ENOENT;
}

/* The key options of a spawned worker into args (room for 5, NULL-ended). */
static void spawn_auth_args(const struct coord *c, char **args, char *win, size_t len)
{
    int n = 0;
    if (c->o->key) {
        args[n++] = "--key";
        args[n++] = (char *)c->o->key_path;
    } else if (c->o->insecure) {
        args[n++] = "--insecure";
    }
    if (c->o->auth_window_ms) {
        snprintf(win, len, "%u", (unsigned)(c->o->auth_window_ms / 1000));
        args[n++] = "--auth-window";
        args[n++] = win;
    }
    args[n] = NULL;
}

/* Starts the worker of child slot ch (modules ch->first..ch->last). */
static int spawn_child(struct coord *c, struct child *ch)
{
    char mods[32], thr[16], win[16];
    snprintf(mods, sizeof mods, "%d-%d", ch->first + 1, ch->last + 1);
    snprintf(thr, sizeof thr, "%d", c->worker_threads);
    char *args[16] = {c->worker_exe, "--module",          mods, "--connect",
                      c->base_url,   "--threads",         thr,  "--join-timeout",
                      "60",          "--exit-with-parent"};
    spawn_auth_args(c, args + 10, win, sizeof win);
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                     {.flags = UV_INHERIT_FD, .data.fd = 1},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t po = {.exit_cb = on_child_exit,
                               .file = c->worker_exe,
                               .args = args,
                               .stdio_count = 3,
                               .stdio = stdio};
    ch->proc.data = ch;
    int r = uv_spawn(&c->loop, &ch->proc, &po);
    if (r)
        return sila_err_set(c->err, -ECHILD, "cannot start %s: %s", c->worker_exe, uv_strerror(r));
    ch->running = true;
    return 0;
}

static int spawn_workers(struct coord *c)
{
    if (find_worker(c->worker_exe, sizeof c->worker_exe))
        return sila_err_set(c->err, -ENOENT,
                            "cannot find silaworker next to silad (set "
                            "SILAWORKER to its path)");
    int n = c->o->spawn > c->K ? c->K : c->o->spawn;
    int threads = c->o->threads ? c->o->threads : (c->o->cores / n > 1 ? c->o->cores / n : 1);
    c->worker_threads = threads;
    for (int i = 0; i < n; i++) {
        struct child *ch = &c->children[i];
        ch->first = i * c->K / n;
        ch->last = (i + 1) * c->K / n - 1;
        int r = spawn_child(c, ch);
        if (r)
            return r;
        c->nchildren++;
    }
    printf("started %d local worker%s with %d thread%s each\n", n, n > 1 ? "s" : "", threads,
           threads > 1 ? "s" : "");
    if (n * threads > c->o->cores)
        printf("note: %d workers x %d threads on %d cores; --spawn=%d would not oversubscribe "
               "them\n",
               n, threads, c->o->cores, c->o->cores / threads > 0 ? c->o->cores / threads : 1);
    fflush(stdout);
    return 0;
}

/* ---- setup ---- */

static int plan_bodies(struct coord *c)
{
    for (int k = 0; k < c->K; k++) {
        const struct sila_job_module *jm = &c->job->modules[k];
        struct sila_shape in;
        struct sila_net *body;
        int r = sila_plan_edge_shape(c->job, k, &in, c->err);
        if (r ||
            (r = sila_net_new(&body, c->job->layers + jm->first_layer, jm->nlayers, in, 1, c->err)))
            return r;
        c->body_params[k] = sila_net_param_count(body);
        c->body_buffers[k] = sila_net_buffer_count(body);
        sila_net_free(body);
        /* a collected state travels whole on the control link: nanomsg
         * would drop a frame above the link's limit without a word */
        size_t floats;
        if ((r = sila_module_state_floats(c->job, k, &floats, c->err)))
            return r;
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
        (r = uv_timer_init(&c->loop, &c->watchdog)) ||
        (r = uv_async_init(&c->loop, &c->feeder_ended, on_feeder_ended)) ||
        (r = uv_async_init(&c->loop, &c->ckpt_async, on_ckpt_async)))
        return sila_err_set(c->err, -EIO, "event loop: %s", uv_strerror(r));
    c->async_open = true;
    c->sigint.data = c->sigterm.data = c->watchdog.data = c->feeder_ended.data = c;
    c->ckpt_async.data = c;
    uv_signal_start(&c->sigint, on_signal, SIGINT);
    uv_signal_start(&c->sigterm, on_signal, SIGTERM);
    uv_timer_start(&c->watchdog, on_watchdog, 1000, 1000);
    struct sila_link_auth la = coord_link_auth(c, "rendezvous");
    if ((r = sila_link_open(&c->rdv, SILA_LINK_REPLY, c->base_url, true, sila_ctl_frame_limit(0),
                            &la, c->err)))
        return r;
    if ((r = poll_link(c, &c->rdv_poll, &c->rdv, c, on_rdv_readable)))
        return sila_err_set(c->err, -EIO, "event loop: %s", uv_strerror(r));
    c->rdv_polling = true;
    return rpc_serve(&c->rpc, &c->loop, &c->o->rpc, coord_rpc_handle, c, &c->rpc_open, c->err);
}

static void cleanup(struct coord *c)
{
    for (int i = 0; i < c->npeers; i++) {
        sila_link_close(&c->peers[i]->ctl);
        free(c->peers[i]);
    }
    while (c->retired) {
        struct peer *p = c->retired;
        c->retired = p->next_retired;
        free(p);
    }
    for (int k = 0; k < c->K; k++)
        free(c->collected[k].state);
    checkpoint_free(&c->resume_from);
    collab_close(&c->collab);
    feed_order_fini(&c->learn_order);
    uv_sem_destroy(&c->ckpt_done.sem);
    uv_sem_destroy(&c->learned.sem);
    sila_link_close(&c->data);
    sila_link_close(&c->rdv);
    uv_sem_destroy(&c->credits.sem);
    uv_sem_destroy(&c->evaluated.sem);
    feed_close(&c->feed);
    if (c->rep_open)
        report_close(&c->rep);
    if (*c->rundir) {
        char path[512];
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

/* --resume: the newest checkpoint in the output directory, for the report
 * (rr), the feeder (augmentation RNG), collab's soft targets and, at the
 * start, the workers. */
static int take_checkpoint(struct coord *c, struct report_resume *rr)
{
    char path[4200];
    int r = checkpoint_read_latest(c->out_dir, c->job, &c->resume_from, path, sizeof path, c->err);
    if (r)
        return r;
    for (int k = 0; k < c->K; k++)
        if (c->resume_from.mods[k].layout.body_params != c->body_params[k] ||
            c->resume_from.mods[k].layout.body_buffers != c->body_buffers[k])
            return sila_err_set(c->err, -EINVAL, "%s: module %d does not fit the job", path, k + 1);
    if ((r = collab_restore(&c->collab, c->resume_from.collab, c->resume_from.ncollab, path,
                            c->err)))
        return r;
    memcpy(c->feed.aug_rng.s, c->resume_from.aug_rng, sizeof c->resume_from.aug_rng);
    *rr = (struct report_resume){c->resume_from.metrics_bytes, c->resume_from.step,
                                 c->resume_from.evals, c->resume_from.nevals};
    printf("resuming from %s: %llu steps done\n", path, (unsigned long long)c->resume_from.step);
    return 0;
}

int coord_run(const struct sila_job *job, const char *out_dir, const struct coord_options *o,
              struct sila_err *err)
{
    struct coord *c = calloc(1, sizeof *c);
    if (!c)
        return sila_err_set(err, -ENOMEM, "out of memory");
    *c = (struct coord){.job = job,
                        .o = o,
                        .out_dir = out_dir,
                        .K = job->nmodules,
                        .err = err,
                        .phase = SILA__RUN_PHASE__JOINING};
    for (int k = 0; k < SILA_MAX_MODULES; k++)
        c->owner[k] = -1;
    c->data.sock = c->rdv.sock = -1;
    int r;
    if ((r = uv_sem_init(&c->credits.sem, (unsigned)o->window)) ||
        (r = uv_sem_init(&c->evaluated.sem, 0)) || (r = uv_sem_init(&c->ckpt_done.sem, 0)) ||
        (r = uv_sem_init(&c->learned.sem, 0)) || (r = uv_loop_init(&c->loop))) {
        free(c); /* a failed run ends the process: what was set up goes with it */
        return sila_err_set(err, r, "cannot set up the coordinator's event loop: %s",
                            uv_strerror(r));
    }
    c->loop.data = c;
    r = feed_open(&c->feed, job, err);
    struct report_resume rr;
    if (r == 0 && (r = collab_open(&c->collab, job, c->feed.plan.ntrain, err)) == 0 &&
        collab_on(&c->collab) && feed_order_init(&c->learn_order, &c->feed.plan))
        r = sila_err_set(err, -ENOMEM, "out of memory");
    if (r == 0 && (r = plan_bodies(c)) == 0 && (r = choose_base(c)) == 0 &&
        (!o->resume || (r = take_checkpoint(c, &rr)) == 0))
        r = report_open(&c->rep, out_dir, c->K, job->epochs, c->feed.plan.steps_per_epoch,
                        o->resume ? &rr : NULL, err);
    c->rep_open = r == 0;
    const struct sila_plan *pl = &c->feed.plan;
    for (int k = 0; k < c->K; k++)
        c->trained[k] = c->rep.first_step;
    if (c->rep.nevals)
        memcpy(c->accuracy, c->rep.evals[c->rep.nevals - 1].accuracy, sizeof c->accuracy);
    for (int e = (int)(c->rep.first_step / pl->steps_per_epoch); e < job->epochs; e++)
        c->evaluations_left += sila_plan_evaluates(pl, e);
    if (r == 0)
        r = open_loop(c);
    if (r == 0 && o->spawn)
        r = spawn_workers(c);
    else if (r == 0)
        printf("waiting for workers for modules 1-%d at %s\n", c->K, c->base_url);
    if (r == 0) {
        sd_notify(0, "READY=1");
        notify_status(c);
    }
    fflush(stdout);
    if (r)
        finish(c, r);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    r = c->status;
    uv_loop_close(&c->loop);
    cleanup(c);
    free(c);
    return r;
}
