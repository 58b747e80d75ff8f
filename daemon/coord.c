/* The coordinator (see coord.h). One libuv loop handles the rendezvous,
 * every worker's control link, signals, spawned children and a watchdog;
 * one feeder thread sends the batches, since nanomsg may block on large
 * frames and the loop must never wait. The feeder takes a credit per batch
 * and the loop returns it when the last module reports the batch done, so
 * at most `window` batches are in the pipeline, whatever the speeds. */
#include "coord.h"
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
#include "module.h"
#include "reassemble.h"
#include "report.h"
#include "transport.h"

#define TICK_MS 1000
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

/* ---- the feeder thread ---- */

static int feed_send(struct coord *c, uint8_t *buf, size_t len)
{
    for (;;) {
        if (atomic_load(&c->stopping)) {
            sila_link_release(buf);
            return -ECANCELED;
        }
        int r = sila_link_send(&c->data, buf, len, TICK_MS);
        if (r == 0)
            return 0;
        if (r != -ETIMEDOUT && r != -EAGAIN) {
            sila_link_release(buf);
            return r;
        }
    }
}

/* Sends one batch to the first module, after taking a credit (and while
 * the run is paused, waiting). -ECANCELED once the run stops. */
static int feed_batch(struct coord *c, uint64_t *seq, uint64_t batch, int epoch,
                      enum sila_phase phase, int n, const float *x, const int32_t *labels)
{
    uv_sem_wait(&c->credits);
    while (atomic_load(&c->paused) && !atomic_load(&c->stop_requested) &&
           !atomic_load(&c->stopping))
        uv_sleep(50);
    if (atomic_load(&c->stop_requested) || atomic_load(&c->stopping))
        return -ECANCELED;
    struct sila_shape in = c->job->input;
    struct sila_frame_hdr h = {.generation = 0,
                               .seq = *seq,
                               .batch = batch,
                               .epoch = (uint32_t)epoch,
                               .phase = phase,
                               .gradient = false,
                               .n = (uint32_t)n,
                               .c = (uint32_t)in.c,
                               .h = (uint32_t)in.h,
                               .w = (uint32_t)in.w,
                               .nlabels = (uint32_t)n};
    size_t len = sila_frame_size(&h);
    uint8_t *buf = sila_link_alloc(len);
    if (!buf)
        return -ENOMEM;
    sila_frame_encode(buf, &h, labels, x);
    int r = feed_send(c, buf, len);
    if (r == 0) {
        (*seq)++;
        atomic_fetch_add(&c->fed, 1);
        if (phase != SILA_PHASE_EVAL)
            atomic_store(&c->train_fed, batch + 1);
    }
    return r;
}

/* At a step boundary (`done` steps fed and, once drained, done): takes a
 * checkpoint when one is due or asked for, waiting while the loop writes it. */
static void feed_boundary(struct coord *c, uint64_t done, double *last)
{
    bool asked = atomic_exchange(&c->ckpt_requested, false);
    if (done >= c->feed.plan.total_steps || atomic_load(&c->stopping))
        return;
    if (!asked && !ckpt_due(c->job, done, c->feed.plan.total_steps, report_now() - *last))
        return;
    atomic_store(&c->ckpt_step, done);
    uv_async_send(&c->ckpt_async);
    uv_sem_wait(&c->ckpt_done);
    *last = report_now();
}

static int feed_all(struct coord *c, float *x, int32_t *labels)
{
    const struct sila_plan *pl = &c->feed.plan;
    uint64_t seq = 0, t0 = c->rep.first_step;
    double last = report_now();
    atomic_store(&c->train_fed, t0);
    for (int e = (int)(t0 / pl->steps_per_epoch); e < c->job->epochs; e++) {
        uint64_t s0 = (uint64_t)e * pl->steps_per_epoch < t0 ? t0 % pl->steps_per_epoch : 0;
        for (uint64_t s = s0; s < pl->steps_per_epoch; s++) {
            uint64_t t = (uint64_t)e * pl->steps_per_epoch + s;
            if (s > s0)
                feed_boundary(c, t, &last);
            if (atomic_load(&c->stop_requested) || atomic_load(&c->stopping))
                return -ECANCELED;
            feed_train_batch(&c->feed, t, x, labels);
            enum sila_phase ph =
                sila_plan_step_global(pl, t) ? SILA_PHASE_GLOBAL : SILA_PHASE_LOCAL;
            int r = feed_batch(c, &seq, t, e, ph, c->job->batch, x, labels);
            if (r)
                return r;
        }
        if (!sila_plan_evaluates(pl, e)) {
            feed_boundary(c, (uint64_t)(e + 1) * pl->steps_per_epoch, &last);
            continue;
        }
        for (uint32_t i = 0; i < pl->eval_batches; i++) {
            int n = feed_eval_batch(&c->feed, i, x, labels);
            int r = feed_batch(c, &seq, i, e, SILA_PHASE_EVAL, n, x, labels);
            if (r)
                return r;
        }
        /* the next epoch's reports must not mix with this evaluation's */
        uv_sem_wait(&c->evaluated);
        feed_boundary(c, (uint64_t)(e + 1) * pl->steps_per_epoch, &last);
    }
    return 0;
}

static void feeder_main(void *arg)
{
    struct coord *c = arg;
    size_t in = sila_shape_size(c->job->input);
    float *x = malloc(sizeof *x * in * c->job->batch);
    int32_t *labels = malloc(sizeof *labels * c->job->batch);
    int r = x && labels ? feed_all(c, x, labels) : -ENOMEM;
    free(x);
    free(labels);
    c->feed_status = r == -ECANCELED ? 0 : r;
    if (c->feed_status)
        snprintf(c->feed_error, sizeof c->feed_error, "feeding the first module: %s", strerror(-r));
    uv_async_send(&c->feeder_ended);
}

static void collect(struct coord *c, bool for_checkpoint);

/* Once every module has finished every batch sent: after a stop request
 * (the feeder has ended), collect the modules for the model; for a pending
 * checkpoint (the feeder waits), for the checkpoint. */
static void check_drained(struct coord *c)
{
    bool stop = atomic_load(&c->stop_requested) && c->feeder_ended_seen;
    if ((!stop && !c->ckpt_pending) || c->collecting || c->finished)
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
    uv_sem_post(&c->credits);   /* a feeder waiting for a credit looks again */
    uv_sem_post(&c->evaluated); /* or for an evaluation */
    printf("stop requested: finishing the batches in flight, then saving the model\n");
    fflush(stdout);
    return true;
}

/* ---- control messages to workers ---- */

static int peer_send(struct peer *p, Sila__Control *m)
{
    struct sila_err e;
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
    for (int i = 0; i < c->npeers; i++)
        if (c->peers[i]->ready)
            peer_send(c->peers[i], &m);
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
    uv_sem_post(&c->evaluated);
    if (--c->evaluations_left == 0 && !c->collecting)
        collect(c, false);
}

static void on_done(struct coord *c, struct peer *p, const Sila__Done *d)
{
    const struct sila_plan *pl = &c->feed.plan;
    int k = (int)d->module - 1;
    if (k < p->first || k > p->last || d->epoch >= (uint32_t)c->job->epochs) {
        p->bad_messages++;
        return;
    }
    c->last_report = report_now();
    c->done[k]++;
    c->samples[k] += d->samples;
    p->active_s = d->active_s;
    p->busy_s = d->busy_s;
    p->peak_rss_kb = d->peak_rss_kb;
    if (c->phase == SILA__RUN_PHASE__TRAINING || c->phase == SILA__RUN_PHASE__EVALUATING)
        c->phase =
            d->phase == SILA__PHASE__EVAL ? SILA__RUN_PHASE__EVALUATING : SILA__RUN_PHASE__TRAINING;
    if (d->phase == SILA__PHASE__EVAL) {
        if (k == c->K - 1)
            uv_sem_post(&c->credits);
        on_eval_done(c, k, d);
    } else {
        report_step_loss(&c->rep, k, d->loss);
        if (k == p->last) {
            p->steps++;
            p->loss = d->loss;
            if (d->samples)
                p->accuracy = 0.9 * p->accuracy + 0.1 * d->correct / d->samples;
        }
        if (k == c->K - 1) {
            uint64_t t = c->steps_done++;
            uv_sem_post(&c->credits);
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
        const struct ckpt_module *m = &c->collected[k];
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

/* Writes the collected states as a checkpoint and lets the feeder go on. */
static void write_checkpoint(struct coord *c)
{
    uint64_t step = atomic_load(&c->ckpt_step);
    /* the feeder waits: its augmentation RNG is at the boundary */
    struct ckpt ck = ckpt_at(step, &c->rep, &c->feed.aug_rng, c->K);
    memcpy(ck.mods, c->collected, sizeof *ck.mods * (size_t)c->K);
    char path[4200];
    struct sila_err e;
    if (ckpt_write(c->out_dir, c->job, &ck, path, sizeof path, &e) == 0) {
        report_checkpoint(&c->rep, path, step);
        snprintf(c->last_checkpoint, sizeof c->last_checkpoint, "%s", path);
    } else
        fprintf(stderr, "silad: checkpoint after step %llu not written: %s\n",
                (unsigned long long)step, e.msg);
    for (int k = 0; k < c->K; k++) {
        free(c->collected[k].state);
        c->collected[k].state = NULL;
    }
    c->states = 0;
    c->collecting = false;
    c->ckpt_pending = false;
    uv_sem_post(&c->ckpt_done);
}

static void on_state(struct coord *c, struct peer *p, const Sila__ModuleState *st,
                     const float *tail)
{
    int k = (int)st->module - 1;
    if (!c->collecting || k < p->first || k > p->last || c->collected[k].state ||
        st->body_params != c->body_params[k] || st->body_buffers != c->body_buffers[k] ||
        st->n_counters != SILA_MODULE_COUNTERS) {
        char mods[32];
        fail(c, -EPROTO, "the worker for %s sent an unexpected or inconsistent state of module %u",
             sila_modules_text(p->first, p->last, mods, sizeof mods), st->module);
        return;
    }
    struct ckpt_module *m = &c->collected[k];
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
    for (int k = 0; k < c->K; k++)
        if (c->owner[k] < 0 || !c->peers[c->owner[k]]->ready)
            return;
    start_run(c);
}

static void on_peer_message(struct coord *c, struct peer *p, const struct sila_ctl_msg *m)
{
    const Sila__Control *msg = m->msg;
    p->last_message = report_now();
    switch (msg->msg_case) {
    case SILA__CONTROL__MSG_READY:
        on_ready(c, p, msg->ready);
        break;
    case SILA__CONTROL__MSG_DONE:
        if (c->started)
            on_done(c, p, msg->done);
        else
            p->bad_messages++;
        break;
    case SILA__CONTROL__MSG_STATE:
        on_state(c, p, msg->state, m->tail);
        break;
    case SILA__CONTROL__MSG_HEARTBEAT:
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

/* How a link of the coordinator's authenticates: channel names it alike
 * at both ends ("rendezvous", "control-K", "data-K"). */
static struct sila_link_auth link_auth(const struct coord *c, const char *channel)
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
    else if (c->started)
        snprintf(buf, len, "the run has started; it takes no new workers");
    else {
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
    struct sila_link_auth la = link_auth(c, channel);
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
    c->peers[c->npeers] = p;
    for (int k = p->first; k <= p->last; k++)
        c->owner[k] = c->npeers;
    c->npeers++;
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

/* Sends every module its state from the checkpoint being resumed. */
static int restore_modules(struct coord *c)
{
    for (int k = 0; k < c->K; k++) {
        const struct ckpt_module *m = &c->resume_from.mods[k];
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
        msg.msg_case = SILA__CONTROL__MSG_STATE;
        msg.state = &st;
        struct sila_err e;
        int r = sila_ctl_send(&c->peers[c->owner[k]]->ctl, &msg, m->state,
                              m->layout.params + m->layout.optimizer + m->layout.buffers,
                              30 * TICK_MS, &e);
        if (r)
            return sila_err_set(c->err, r, "restoring module %d: %s", k + 1, e.msg);
    }
    return 0;
}

static void start_run(struct coord *c)
{
    char url[SILA_URL_MAX + 64];
    if (c->o->resume) {
        int r = restore_modules(c);
        ckpt_free(&c->resume_from); /* the evaluations live on in the report */
        if (r) {
            finish(c, r);
            return;
        }
    }
    for (int i = 0; i < c->npeers; i++) {
        struct peer *p = c->peers[i];
        Sila__Start st = SILA__START__INIT;
        st.downstream_url = "";
        if (p->first > 0)
            st.upstream_generation = c->peers[c->owner[p->first - 1]]->gen;
        if (p->last + 1 < c->K) {
            const struct peer *d = c->peers[c->owner[p->last + 1]];
            sila_endpoint_data(&c->base, d->first + 1, d->host, false, url, sizeof url);
            st.downstream_url = url;
            st.downstream_generation = d->gen;
        }
        Sila__Control m = SILA__CONTROL__INIT;
        m.msg_case = SILA__CONTROL__MSG_START;
        m.start = &st;
        if (peer_send(p, &m)) {
            fail(c, -EIO, "cannot start the worker of module %d", p->first + 1);
            return;
        }
    }
    const struct peer *p0 = c->peers[c->owner[0]];
    sila_endpoint_data(&c->base, 1, p0->host, false, url, sizeof url);
    struct sila_link_auth la = link_auth(c, "data-1");
    int r = sila_link_open(&c->data, SILA_LINK_PAIR, url, false, 4096, &la, c->err);
    if (r) {
        finish(c, r);
        return;
    }
    c->started = true;
    c->phase = SILA__RUN_PHASE__TRAINING;
    c->last_report = report_now();
    char where[64];
    snprintf(where, sizeof where, "on %d worker%s", c->npeers, c->npeers > 1 ? "s" : "");
    report_start(&c->rep, c->job, &c->feed.plan, where);
    if ((r = uv_thread_create(&c->feeder, feeder_main, c)))
        fail(c, -EAGAIN, "cannot start the feeder thread: %s", uv_strerror(r));
    else
        c->feeder_running = true;
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
    uint64_t epoch = c->steps_done / pl->steps_per_epoch + 1;
    if (epoch > (uint64_t)c->job->epochs)
        epoch = (uint64_t)c->job->epochs;
    sd_notifyf(0, "STATUS=%s epoch %llu/%d, step %llu/%llu, %.0f samples/s%s",
               atomic_load(&c->paused) ? "paused at" : "training,", (unsigned long long)epoch,
               c->job->epochs, (unsigned long long)c->steps_done,
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
    double now = report_now();
    for (int i = 0; i < c->npeers && !c->finished; i++) {
        struct peer *p = c->peers[i];
        if (!p->ready)
            continue;
        struct sila_err ignored;
        sila_ctl_send(&p->ctl, &m, NULL, 0, 0, &ignored); /* a full queue says enough */
        if (now - p->last_message <= c->o->worker_timeout)
            continue;
        char mods[32];
        fail(c, -ETIMEDOUT, "the worker for %s on %s (pid %u) is lost: no message for %.0f s%s%s",
             sila_modules_text(p->first, p->last, mods, sizeof mods), p->host, p->pid,
             now - p->last_message, *c->last_checkpoint ? "; resume from " : "",
             c->last_checkpoint);
    }
}

/* Says, at most every 10 s per link, which messages were dropped for
 * failing authentication. */
static void say_rejections(struct coord *c)
{
    double now = report_now();
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
    double idle = report_now() - c->last_report;
    if (!c->started || idle < STALL_WARN_S || atomic_load(&c->paused))
        return;
    fprintf(stderr, "silad: no report from the workers for %.0f s (%llu steps done)\n", idle,
            (unsigned long long)c->steps_done);
    c->last_report = report_now();
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
        uv_sem_post(&c->credits);
        uv_sem_post(&c->evaluated);
    }
    uv_sem_post(&c->ckpt_done);
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

static void on_child_exit(uv_process_t *proc, int64_t status, int signum)
{
    struct child *ch = proc->data;
    struct coord *c = proc->loop->data;
    ch->running = false;
    uv_close((uv_handle_t *)proc, NULL);
    if (!c->finished && (status || signum)) {
        char buf[32];
        if (signum)
            fail(c, -ECHILD, "the worker for %s (pid %d) was killed by signal %d",
                 sila_modules_text(ch->first, ch->last, buf, sizeof buf), proc->pid, signum);
        else
            fail(c, -ECHILD, "the worker for %s (pid %d) exited with status %lld",
                 sila_modules_text(ch->first, ch->last, buf, sizeof buf), proc->pid,
                 (long long)status);
    }
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

static int spawn_workers(struct coord *c)
{
    char exe[PATH_MAX];
    if (find_worker(exe, sizeof exe))
        return sila_err_set(c->err, -ENOENT,
                            "cannot find silaworker next to silad (set "
                            "SILAWORKER to its path)");
    int n = c->o->spawn > c->K ? c->K : c->o->spawn;
    int threads = c->o->threads ? c->o->threads : (c->o->cores / n > 1 ? c->o->cores / n : 1);
    for (int i = 0; i < n; i++) {
        struct child *ch = &c->children[i];
        ch->first = i * c->K / n;
        ch->last = (i + 1) * c->K / n - 1;
        char mods[32], thr[16], win[16];
        snprintf(mods, sizeof mods, "%d-%d", ch->first + 1, ch->last + 1);
        snprintf(thr, sizeof thr, "%d", threads);
        char *args[16] = {exe,         "--module",          mods, "--connect",
                          c->base_url, "--threads",         thr,  "--join-timeout",
                          "60",        "--exit-with-parent"};
        spawn_auth_args(c, args + 10, win, sizeof win);
        uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                         {.flags = UV_INHERIT_FD, .data.fd = 1},
                                         {.flags = UV_INHERIT_FD, .data.fd = 2}};
        uv_process_options_t po = {
            .exit_cb = on_child_exit, .file = exe, .args = args, .stdio_count = 3, .stdio = stdio};
        ch->proc.data = ch;
        int r = uv_spawn(&c->loop, &ch->proc, &po);
        if (r)
            return sila_err_set(c->err, -ECHILD, "cannot start %s: %s", exe, uv_strerror(r));
        ch->running = true;
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
    struct sila_link_auth la = link_auth(c, "rendezvous");
    if ((r = sila_link_open(&c->rdv, SILA_LINK_REPLY, c->base_url, true, sila_ctl_frame_limit(0),
                            &la, c->err)))
        return r;
    if ((r = poll_link(c, &c->rdv_poll, &c->rdv, c, on_rdv_readable)))
        return sila_err_set(c->err, -EIO, "event loop: %s", uv_strerror(r));
    c->rdv_polling = true;
    if (!c->o->rpc)
        return 0;
    struct sila_err e;
    struct rpc_auth ra = {c->o->key, c->o->rpc_reads_open, c->o->auth_window_ms};
    if ((r = rpc_open(&c->rpc, &c->loop, c->o->rpc, &ra, coord_rpc_handle, c, &e)) == 0) {
        c->rpc_open = true;
        printf("serving the RPC at %s (silactl --connect %s status)\n", c->o->rpc, c->o->rpc);
    } else if (c->o->rpc_explicit) {
        return sila_err_set(c->err, r, "--rpc: %s", e.msg);
    } else {
        fprintf(stderr, "silad: no RPC this run (%s); choose an endpoint with --rpc\n", e.msg);
    }
    return 0;
}

static void cleanup(struct coord *c)
{
    for (int i = 0; i < c->npeers; i++) {
        sila_link_close(&c->peers[i]->ctl);
        free(c->peers[i]);
    }
    for (int k = 0; k < c->K; k++)
        free(c->collected[k].state);
    ckpt_free(&c->resume_from);
    uv_sem_destroy(&c->ckpt_done);
    sila_link_close(&c->data);
    sila_link_close(&c->rdv);
    uv_sem_destroy(&c->credits);
    uv_sem_destroy(&c->evaluated);
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
 * (rr), the feeder (augmentation RNG) and, at the start, the workers. */
static int take_checkpoint(struct coord *c, struct report_resume *rr)
{
    char path[4200];
    int r = ckpt_read_latest(c->out_dir, c->job, &c->resume_from, path, sizeof path, c->err);
    if (r)
        return r;
    for (int k = 0; k < c->K; k++)
        if (c->resume_from.mods[k].layout.body_params != c->body_params[k] ||
            c->resume_from.mods[k].layout.body_buffers != c->body_buffers[k])
            return sila_err_set(c->err, -EINVAL, "%s: module %d does not fit the job", path, k + 1);
    memcpy(c->feed.aug_rng.s, c->resume_from.aug_rng, sizeof c->resume_from.aug_rng);
    *rr = (struct report_resume){c->resume_from.metrics_bytes, c->resume_from.step,
                                 c->resume_from.evals, c->resume_from.nevals};
    printf("resuming from %s: %llu steps done\n", path, (unsigned long long)c->resume_from.step);
    return 0;
}

int train_distributed(const struct sila_job *job, const char *out_dir,
                      const struct coord_options *o, struct sila_err *err)
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
    uv_sem_init(&c->credits, (unsigned)o->window);
    uv_sem_init(&c->evaluated, 0);
    uv_sem_init(&c->ckpt_done, 0);
    uv_loop_init(&c->loop);
    c->loop.data = c;
    int r = feed_open(&c->feed, job, err);
    struct report_resume rr;
    if (r == 0 && (r = plan_bodies(c)) == 0 && (r = choose_base(c)) == 0 &&
        (!o->resume || (r = take_checkpoint(c, &rr)) == 0))
        r = report_open(&c->rep, out_dir, c->K, job->epochs, c->feed.plan.steps_per_epoch,
                        o->resume ? &rr : NULL, err);
    c->rep_open = r == 0;
    const struct sila_plan *pl = &c->feed.plan;
    c->steps_done = c->rep.first_step;
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
