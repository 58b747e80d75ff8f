/* A worker's life: join, build its modules, then step them on every batch
 * that arrives from upstream until the coordinator stops the run (see
 * worker.h and docs/protocol.md). */
#include "worker.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ctl.h"
#include "endpoint.h"
#include "frame.h"
#include "job.h"
#include "module.h"
#include "plan.h"
#include "stage.h"
#include "transport.h"

#define TICK_MS 1000 /* blocking calls wake this often to look at the control link */

struct worker {
    const struct worker_options *o;
    struct sila_url base;
    struct sila_job job;
    struct sila_plan plan;
    /* its modules (first..last), with their progress as the coordinator
     * counted it (docs/protocol.md: a batch learned or reported before a
     * restart is passed on only) */
    struct sila_stage stage;
    struct sila_link ctl, up, down;            /* down.sock < 0 for the last module */
    uint32_t gen;                              /* this worker's, on its control messages */
    uint32_t pipeline;                         /* the pipeline's, on every frame (from Start) */
    uint64_t up_in, up_out, down_in, down_out; /* next sequence number per edge, direction */
    uint32_t halt_pipeline; /* of the Halt received (pipelines after the first count from 1) */
    size_t max_frame;       /* of the job's data frames */
    uint64_t stale_frames;  /* of older pipelines, dropped */
    struct sila_frame_limits up_lim, down_lim; /* up_lim.collab: the job uses collab */
    bool stopped;
    /* where the time goes (reported with the modules' state) */
    double first_batch;           /* when the first batch arrived, 0 before */
    double handling_s, waiting_s; /* in on_batch, and blocked on peers inside it */
    double global_s;
    uint64_t bytes_out;
    double last_heard, last_beat; /* from / to the coordinator, sila_clock_s() */
};

/* How a link of the worker's authenticates: its channel, written into ch
 * (32 bytes) from fmt and k, names it alike at both ends ("rendezvous",
 * "control-K", "data-K"; K the first module of the worker the link leads
 * to, 1-based). */
static struct sila_link_auth link_auth(const struct worker *w, char ch[32], const char *fmt, int k)
{
    snprintf(ch, 32, fmt, k);
    return (struct sila_link_auth){
        .key = w->o->key, .channel = ch, .window_ms = w->o->auth_window_ms};
}

/* Says, at most every 10 s, which messages the links dropped for failing
 * authentication. */
static void say_rejections(struct worker *w, double now)
{
    struct sila_link *links[3] = {&w->ctl, &w->up, &w->down};
    const char *what[3] = {"the control link", "the upstream edge", "the downstream edge"};
    for (int i = 0; i < 3; i++) {
        struct sila_err e;
        if (links[i]->sock >= 0 && sila_link_rejections(links[i], what[i], now, 10.0, &e))
            fprintf(stderr, "silaworker: %s\n", e.msg);
    }
}

static uint64_t peak_rss_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_maxrss : 0;
}

static bool has_down(const struct worker *w)
{
    return w->down.sock >= 0;
}

/* ---- control ---- */

static int keep_alive(struct worker *w, struct sila_err *err);

/* Sends on the control link, waiting as long as the coordinator is alive. */
static int send_ctl(struct worker *w, Sila__Control *c, const float *tail, size_t ntail,
                    struct sila_err *err)
{
    c->generation = w->gen;
    for (;;) {
        int r = sila_ctl_send(&w->ctl, c, tail, ntail, TICK_MS, err);
        if (r != -ETIMEDOUT && r != -EAGAIN)
            return r;
        if ((r = keep_alive(w, err)))
            return r;
    }
}

/* Reports module k's batch h done; logits: for collab, the classifier's
 * (h->n, nclasses) of a training step of the last module, else NULL. */
static int send_done(struct worker *w, int k, const struct sila_frame_hdr *h, double loss,
                     int correct, const float *logits, struct sila_err *err)
{
    Sila__Done d = SILA__DONE__INIT;
    d.module = (uint32_t)k + 1;
    d.phase = (Sila__Phase)h->phase;
    d.epoch = h->epoch;
    d.batch = h->batch;
    d.loss = (float)loss;
    d.correct = (uint32_t)correct;
    d.samples = h->n;
    d.active_s = sila_clock_s() - w->first_batch;
    d.busy_s = w->handling_s - w->waiting_s;
    d.peak_rss_kb = peak_rss_kb();
    d.logits = logits ? h->n * (uint32_t)w->job.nclasses : 0;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_DONE;
    c.done = &d;
    return send_ctl(w, &c, logits, d.logits, err);
}

/* What module k reports with a training step it learned: the classifier's
 * logits when the coordinator learns collab's soft targets from them. */
static const float *learned_logits(const struct worker *w, int k)
{
    if (k != w->job.nmodules - 1 || !w->up_lim.collab)
        return NULL;
    return sila_net_output(w->stage.mods[k]->body);
}

static bool hosts(const struct worker *w, uint32_t module)
{
    return module >= (uint32_t)w->stage.first + 1 && module <= (uint32_t)w->stage.last + 1;
}

/* A module's whole state (sila_module_get_state) as one tail. */
static int send_state(struct worker *w, uint32_t module, struct sila_err *err)
{
    if (!hosts(w, module))
        return sila_err_set(err, -EPROTO, "coordinator asked for module %u, this worker has %d-%d",
                            module, w->stage.first + 1, w->stage.last + 1);
    const struct sila_module *m = w->stage.mods[module - 1];
    struct sila_module_layout l = sila_module_layout(m);
    size_t n = l.params + l.optimizer + l.buffers;
    uint64_t counters[SILA_MODULE_COUNTERS];
    float *tail = malloc(sizeof *tail * (n + 1));
    if (!tail)
        return sila_err_set(err, -ENOMEM, "out of memory");
    sila_module_get_state(m, tail, counters);
    Sila__ModuleState st = SILA__MODULE_STATE__INIT;
    st.module = module;
    st.params = l.params;
    st.optimizer = l.optimizer;
    st.buffers = l.buffers;
    st.body_params = l.body_params;
    st.body_buffers = l.body_buffers;
    st.counters = counters;
    st.n_counters = SILA_MODULE_COUNTERS;
    st.active_s = w->first_batch ? sila_clock_s() - w->first_batch : 0.0;
    st.busy_s = w->handling_s - w->waiting_s;
    st.global_s = w->global_s;
    st.bytes_out = w->bytes_out;
    st.peak_rss_kb = peak_rss_kb();
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_STATE;
    c.state = &st;
    int r = send_ctl(w, &c, tail, n, err);
    free(tail);
    return r;
}

/* Restores a module from the coordinator's checkpoint (before the start). */
static int restore_state(struct worker *w, const Sila__ModuleState *st, const float *tail,
                         struct sila_err *err)
{
    if (!hosts(w, st->module))
        return sila_err_set(err, -EPROTO, "coordinator restores module %u, this worker has %d-%d",
                            st->module, w->stage.first + 1, w->stage.last + 1);
    struct sila_module *m = w->stage.mods[st->module - 1];
    struct sila_module_layout l = sila_module_layout(m);
    if (st->params != l.params || st->optimizer != l.optimizer || st->buffers != l.buffers ||
        st->n_counters != SILA_MODULE_COUNTERS)
        return sila_err_set(err, -EPROTO, "the state of module %u does not fit it", st->module);
    sila_module_set_state(m, tail, st->counters);
    return 0;
}

/* One message on the control link: Collect, Halt or Stop, or before the
 * start a module's state to restore. A Halt returns -ERESTART: the batch in
 * hand is dropped and the worker waits for the next Start (halt()). */
static int on_control(struct worker *w, const struct sila_ctl_msg *m, struct sila_err *err)
{
    const Sila__Control *c = m->msg;
    switch (c->msg_case) {
    case SILA__CONTROL__MSG_HALT:
        w->halt_pipeline = c->halt->pipeline;
        return -ERESTART;
    case SILA__CONTROL__MSG_COLLECT:
        return send_state(w, c->collect->module, err);
    case SILA__CONTROL__MSG_STATE:
        if (w->first_batch)
            return sila_err_set(err, -EPROTO, "the coordinator sent a state during training");
        return restore_state(w, c->state, m->tail, err);
    case SILA__CONTROL__MSG_HEARTBEAT:
        return 0;
    case SILA__CONTROL__MSG_STOP:
        w->stopped = true;
        if (c->stop->failed)
            return sila_err_set(err, -ECANCELED, "the coordinator stopped the run: %s",
                                c->stop->reason);
        return 0;
    default:
        return sila_err_set(err, -EPROTO, "unexpected control message %d from the coordinator",
                            (int)c->msg_case);
    }
}

/* Sends a heartbeat once a second; a coordinator silent for the timeout is
 * lost (-ETIMEDOUT): the worker exits, to be restarted and rejoin. */
static int keep_alive(struct worker *w, struct sila_err *err)
{
    double now = sila_clock_s();
    say_rejections(w, now);
    if (now - w->last_heard > w->o->timeout_s)
        return sila_err_set(err, -ETIMEDOUT,
                            "the coordinator at %s has been silent for %.0f s: "
                            "lost",
                            w->o->connect, now - w->last_heard);
    if (now - w->last_beat < 1.0)
        return 0;
    Sila__Heartbeat hb = SILA__HEARTBEAT__INIT;
    Sila__Control c = SILA__CONTROL__INIT;
    c.generation = w->gen;
    c.msg_case = SILA__CONTROL__MSG_HEARTBEAT;
    c.heartbeat = &hb;
    struct sila_err ignored;
    sila_ctl_send(&w->ctl, &c, NULL, 0, 0, &ignored); /* a full queue says enough */
    w->last_beat = now;
    return 0;
}

/* Receives a control message (waiting up to timeout_ms) and checks that it
 * is for this worker's generation: one for another means this worker was
 * declared lost and replaced (-ESTALE). */
static int recv_ctl(struct worker *w, int timeout_ms, struct sila_ctl_msg *m, struct sila_err *err)
{
    int r = sila_ctl_recv(&w->ctl, timeout_ms, m, err);
    if (r)
        return r;
    w->last_heard = sila_clock_s();
    if (m->msg->generation == w->gen)
        return 0;
    r = sila_err_set(err, -ESTALE,
                     "the coordinator speaks to generation %u of these modules, this worker is "
                     "generation %u: it was declared lost and replaced",
                     m->msg->generation, w->gen);
    sila_ctl_msg_free(m);
    return r;
}

/* Handles whatever waits on the control link, without blocking. */
static int drain_control(struct worker *w, struct sila_err *err)
{
    int r = keep_alive(w, err);
    if (r)
        return r;
    for (;;) {
        struct sila_ctl_msg m;
        r = recv_ctl(w, 0, &m, err);
        if (r == -EAGAIN)
            return 0;
        if (r)
            return r;
        r = on_control(w, &m, err);
        sila_ctl_msg_free(&m);
        if (r || w->stopped)
            return r;
    }
}

/* ---- data frames ---- */

/* Sends a frame of (n, shape) values x on link l, numbered by *seq, with
 * labels, soft targets (n, nclasses) and the network's input (n, input)
 * when not NULL; waits as long as the receiver needs, watching the control
 * link meanwhile. */
static int send_frame(struct worker *w, struct sila_link *l, uint64_t *seq,
                      const struct sila_frame_hdr *of, bool gradient, struct sila_shape s,
                      const int32_t *labels, const float *targets, const float *image,
                      const float *x, struct sila_err *err)
{
    struct sila_frame_hdr h = {.generation = w->pipeline,
                               .seq = *seq,
                               .batch = of->batch,
                               .epoch = of->epoch,
                               .phase = of->phase,
                               .gradient = gradient,
                               .n = of->n,
                               .c = (uint32_t)s.c,
                               .h = (uint32_t)s.h,
                               .w = (uint32_t)s.w,
                               .nlabels = labels ? of->n : 0,
                               .target_classes = targets ? (uint32_t)w->job.nclasses : 0,
                               .image_size = image ? (uint32_t)sila_shape_size(w->job.input) : 0};
    size_t len = sila_frame_size(&h);
    uint8_t *buf = sila_link_alloc(len);
    if (!buf)
        return sila_err_set(err, -ENOMEM, "out of memory for a frame");
    sila_frame_encode(buf, &h, labels, targets, image, x);
    double t0 = sila_clock_s();
    for (;;) {
        int r = sila_link_send(l, buf, len, TICK_MS);
        if (r == 0)
            break;
        if (r != -ETIMEDOUT && r != -EAGAIN) {
            sila_link_release(buf);
            return sila_err_set(err, r, "cannot send batch %llu %s: %s",
                                (unsigned long long)h.batch, gradient ? "upstream" : "downstream",
                                strerror(-r));
        }
        if ((r = drain_control(w, err)) || w->stopped) {
            sila_link_release(buf);
            return r;
        }
    }
    (*seq)++;
    w->bytes_out += len;
    w->waiting_s += sila_clock_s() - t0;
    return 0;
}

/* Receives and checks the next frame on l: limits, pipeline generation
 * (frames of an older one, sent before a restart, are dropped), sequence.
 * The caller releases *buf. */
static int recv_frame(struct worker *w, struct sila_link *l, const struct sila_frame_limits *lim,
                      uint64_t *seq, uint8_t **buf, struct sila_frame_view *v, struct sila_err *err)
{
    const char *edge = lim->gradient ? "downstream" : "upstream";
    for (;;) {
        size_t len;
        int r = sila_link_recv(l, buf, &len, TICK_MS);
        if (r == -ETIMEDOUT || r == -EAGAIN) {
            if ((r = drain_control(w, err)) || w->stopped)
                return r;
            continue;
        }
        if (r)
            return sila_err_set(err, r, "cannot receive from %s: %s", edge, strerror(-r));
        if ((r = sila_frame_decode(*buf, len, lim, v, err))) {
            sila_link_release(*buf);
            return sila_err_set(err, r, "%s: %.400s", edge, err->msg);
        }
        if (v->hdr.generation < w->pipeline) {
            w->stale_frames++;
            sila_link_release(*buf);
            continue;
        }
        if (v->hdr.generation != w->pipeline) {
            sila_link_release(*buf);
            return sila_err_set(err, -EPROTO, "%s: frame of pipeline %u, this worker is at %u",
                                edge, v->hdr.generation, w->pipeline);
        }
        if (v->hdr.seq != *seq) {
            sila_link_release(*buf);
            return sila_err_set(err, -EPROTO, "%s: frame %llu arrived, expected frame %llu", edge,
                                (unsigned long long)v->hdr.seq, (unsigned long long)*seq);
        }
        (*seq)++;
        return 0;
    }
}

/* ---- steps ---- */

static struct sila_shape out_shape(const struct worker *w)
{
    return sila_net_out_shape(w->stage.mods[w->stage.last]->body);
}

/* The network's input of a local batch: the frame's tensor at the first
 * worker, else what the frame carries along (NULL when no module from here
 * on reconstructs it). */
static const float *network_input(const struct worker *w, const struct sila_frame_view *v)
{
    return w->stage.first == 0 ? v->x : v->image;
}

/* Where a stage's module reports: a Done to the coordinator for the frame
 * in hand. */
struct done_ctx {
    struct worker *w;
    const struct sila_frame_hdr *h;
};

static int module_done(void *ctx, int k, const struct sila_step_stats *st, struct sila_err *err)
{
    struct done_ctx *d = ctx;
    const float *logits = d->h->phase == SILA_PHASE_EVAL ? NULL : learned_logits(d->w, k);
    return send_done(d->w, k, d->h, st->loss, st->correct, logits, err);
}

static int local_step(struct worker *w, const struct sila_frame_view *v, struct sila_err *err)
{
    const struct sila_frame_hdr *h = &v->hdr;
    struct done_ctx d = {w, h};
    const struct sila_stage_sink sink = {module_done, &d};
    const struct sila_batch_side side = {v->labels, v->targets, network_input(w, v)};
    const float *x;
    int r =
        sila_stage_local(&w->stage, v->x, &side, (int)h->n, h->batch,
                         sila_plan_lr(&w->plan, h->batch), w->job.label_smoothing, &sink, &x, err);
    if (r || !has_down(w))
        return r;
    const float *image =
        sila_plan_edge_image(&w->job, w->stage.last + 1) ? network_input(w, v) : NULL;
    return send_frame(w, &w->down, &w->down_out, h, false, out_shape(w), v->labels, v->targets,
                      image, x, err);
}

static int global_step(struct worker *w, const struct sila_frame_view *v, struct sila_err *err)
{
    const struct sila_frame_hdr *h = &v->hdr;
    const struct sila_plan *pl = &w->plan;
    const float *x;
    int r = sila_stage_global_forward(&w->stage, v->x, (int)h->n, h->batch, &x, err);
    if (r)
        return r;
    uint8_t *gbuf = NULL;
    struct sila_frame_view g = {0};
    if (has_down(w)) {
        r = send_frame(w, &w->down, &w->down_out, h, false, out_shape(w), v->labels, v->targets,
                       NULL, x, err);
        double t0 = sila_clock_s();
        if (r == 0 && !w->stopped)
            r = recv_frame(w, &w->down, &w->down_lim, &w->down_in, &gbuf, &g, err);
        w->waiting_s += sila_clock_s() - t0;
        if (r || w->stopped)
            return r;
    }
    if (gbuf && (g.hdr.batch != h->batch || g.hdr.phase != SILA_PHASE_GLOBAL)) {
        sila_link_release(gbuf);
        return sila_err_set(err, -EPROTO, "downstream: gradient of batch %llu, expected %llu",
                            (unsigned long long)g.hdr.batch, (unsigned long long)h->batch);
    }
    struct done_ctx d = {w, h};
    const struct sila_stage_sink sink = {module_done, &d};
    const float *din;
    r = sila_stage_global_backward(&w->stage, gbuf ? g.x : NULL, v->labels, (int)h->n, h->batch,
                                   sila_plan_lr(pl, h->batch), w->job.label_smoothing,
                                   sila_plan_local_weight(pl, h->batch), &sink, &din, err);
    sila_link_release(gbuf);
    if (r || w->stage.first == 0)
        return r;
    struct sila_shape s = sila_net_in_shape(w->stage.mods[w->stage.first]->body);
    return send_frame(w, &w->up, &w->up_out, h, true, s, NULL, NULL, NULL, din, err);
}

static int eval_batch(struct worker *w, const struct sila_frame_view *v, struct sila_err *err)
{
    const struct sila_frame_hdr *h = &v->hdr;
    struct done_ctx d = {w, h};
    const struct sila_stage_sink sink = {module_done, &d};
    const float *x;
    int r = sila_stage_eval(&w->stage, v->x, v->labels, (int)h->n,
                            (uint64_t)h->epoch * w->plan.eval_batches + h->batch, &sink, &x, err);
    if (r || !has_down(w))
        return r;
    return send_frame(w, &w->down, &w->down_out, h, false, out_shape(w), v->labels, NULL, NULL, x,
                      err);
}

static int on_batch(struct worker *w, const struct sila_frame_view *v, struct sila_err *err)
{
    const struct sila_frame_hdr *h = &v->hdr;
    if (h->nlabels != h->n)
        return sila_err_set(err, -EPROTO, "upstream: batch %llu without labels",
                            (unsigned long long)h->batch);
    if (h->phase == SILA_PHASE_EVAL)
        return eval_batch(w, v, err);
    if (h->batch >= w->plan.total_steps || h->n != (uint32_t)w->job.batch)
        return sila_err_set(err, -EPROTO,
                            "upstream: training batch %llu of %u samples, the plan "
                            "has %llu steps of %d",
                            (unsigned long long)h->batch, h->n,
                            (unsigned long long)w->plan.total_steps, w->job.batch);
    bool global = sila_plan_step_global(&w->plan, h->batch);
    if (global != (h->phase == SILA_PHASE_GLOBAL))
        return sila_err_set(err, -EPROTO, "upstream: step %llu sent as %s, the plan says %s",
                            (unsigned long long)h->batch, global ? "local" : "global",
                            global ? "global" : "local");
    if (w->up_lim.collab && !v->targets)
        return sila_err_set(err, -EPROTO, "upstream: training batch %llu without soft targets",
                            (unsigned long long)h->batch);
    return global ? global_step(w, v, err) : local_step(w, v, err);
}

/* ---- joining ---- */

static const char *advertised_host(const struct worker *w, char *buf, size_t len)
{
    if (w->o->advertise)
        return w->o->advertise;
    if (!w->base.tcp || sila_url_loopback(&w->base))
        return "127.0.0.1";
    if (gethostname(buf, len) < 0)
        return "localhost";
    buf[len - 1] = 0;
    return buf;
}

/* Why joining timed out, as far as the worker can tell. */
static int join_timed_out(const struct worker *w, const struct sila_link *req, struct sila_err *err)
{
    const struct worker_options *o = w->o;
    char id[9] = "";
    if (o->key)
        sila_key_id_text(o->key->id, id);
    if (!o->key)
        return sila_err_set(err, -ETIMEDOUT,
                            "%s: no coordinator answered within %d s (one with a cluster key "
                            "ignores workers without it: --key FILE)",
                            o->connect, o->join_timeout_s);
    if (req->rejected)
        return sila_err_set(err, -ETIMEDOUT,
                            "%s: no coordinator answered within %d s with a message signed "
                            "with the key in %s (id %s): an answer was dropped (%.150s); a "
                            "wrong key is one possible reason",
                            o->connect, o->join_timeout_s, o->key_path, id, req->rejection);
    return sila_err_set(err, -ETIMEDOUT,
                        "%s: no coordinator answered within %d s (is one running there? a "
                        "wrong key is one possible reason: a coordinator ignores a worker whose "
                        "key differs from its own; this one's is %s, id %s)",
                        o->connect, o->join_timeout_s, o->key_path, id);
}

/* Asks the coordinator to join until it answers (it may not be up yet).
 * On success *ret holds the Welcome. */
static int ask_to_join(struct worker *w, struct sila_ctl_msg *ret, struct sila_err *err)
{
    struct sila_link req;
    char ch[32];
    struct sila_link_auth la = link_auth(w, ch, "rendezvous%.0d", 0);
    int r = sila_link_open(&req, SILA_LINK_REQUEST, w->o->connect, false, sila_ctl_frame_limit(0),
                           &la, err);
    if (r)
        return r;
    char hostbuf[256];
    Sila__Hello hello = SILA__HELLO__INIT;
    hello.version = SILA_WIRE_VERSION;
    hello.first_module = (uint32_t)w->o->first;
    hello.last_module = (uint32_t)w->o->last;
    hello.host = (char *)advertised_host(w, hostbuf, sizeof hostbuf);
    hello.pid = (uint32_t)getpid();
    hello.max_frame = w->o->max_frame;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_HELLO;
    c.hello = &hello;
    double start = sila_clock_s(), said = start;
    for (;;) {
        if (w->o->join_timeout_s && sila_clock_s() - start > w->o->join_timeout_s) {
            r = join_timed_out(w, &req, err);
            break;
        }
        if (sila_clock_s() - said >= 10.0) {
            fprintf(stderr, "silaworker: still waiting for the coordinator at %s\n", w->o->connect);
            said = sila_clock_s();
        }
        struct sila_err e; /* answers dropped: another key, or none */
        if (sila_link_rejections(&req, "the rendezvous", sila_clock_s(), 10.0, &e))
            fprintf(stderr, "silaworker: %s\n", e.msg);
        r = sila_ctl_send(&req, &c, NULL, 0, TICK_MS, err);
        if (r == -ETIMEDOUT || r == -EAGAIN)
            continue;
        if (r)
            break;
        r = sila_ctl_recv(&req, 3 * TICK_MS, ret, err);
        if (r == -ETIMEDOUT || r == -EAGAIN)
            continue;
        if (r == -EBADMSG)
            r = sila_err_set(err, r, "%s: %.400s", w->o->connect, err->msg);
        else if (r)
            r = sila_err_set(err, r, "%s: %s", w->o->connect, strerror(-r));
        break;
    }
    sila_link_close(&req);
    return r;
}

/* Takes the plan of a Welcome: the job, the modules, their edges. */
static int take_plan(struct worker *w, const Sila__Welcome *wel, struct sila_err *err)
{
    if (wel->version != SILA_WIRE_VERSION)
        return sila_err_set(err, -EPROTO, "%s speaks wire protocol %u, this worker %u",
                            w->o->connect, wel->version, SILA_WIRE_VERSION);
    char path[600];
    snprintf(path, sizeof path, "%s (from the coordinator)", wel->job_path);
    int r = sila_job_parse(&w->job, path, wel->job_text, strlen(wel->job_text),
                           (const char *const *)wel->overrides, (int)wel->n_overrides, err);
    if (r)
        return r;
    uint8_t hash[SILA_PLAN_HASH_BYTES];
    sila_job_plan_hash(&w->job, hash);
    if (wel->plan_hash.len != sizeof hash || memcmp(wel->plan_hash.data, hash, sizeof hash))
        return sila_err_set(err, -EPROTO, "the plan received does not match its hash");
    if (w->o->last > w->job.nmodules)
        return sila_err_set(err, -EINVAL, "%s has %d modules, this worker was given %d-%d",
                            wel->job_path, w->job.nmodules, w->o->first, w->o->last);
    if ((r = sila_plan_init(&w->plan, &w->job, wel->train_samples, wel->test_samples, err)))
        return r;
    size_t need;
    if ((r = sila_plan_max_frame(&w->job, &need, err)))
        return r;
    if (need > w->o->max_frame)
        return sila_err_set(err, -EMSGSIZE,
                            "the job needs frames of %zu bytes, this worker "
                            "accepts at most %zu (--max-frame)",
                            need, w->o->max_frame);
    w->gen = wel->generation;
    if ((r = sila_stage_init(&w->stage, &w->job, w->o->first - 1, w->o->last - 1, w->job.batch,
                             err)))
        return r;
    struct sila_shape in = sila_net_in_shape(w->stage.mods[w->stage.first]->body),
                      out = out_shape(w);
    uint32_t B = (uint32_t)w->job.batch, nc = (uint32_t)w->job.nclasses;
    w->up_lim =
        (struct sila_frame_limits){.max_n = B,
                                   .c = (uint32_t)in.c,
                                   .h = (uint32_t)in.h,
                                   .w = (uint32_t)in.w,
                                   .nclasses = nc,
                                   .collab = sila_job_uses_collab(&w->job),
                                   .image_size = sila_plan_edge_image(&w->job, w->stage.first)};
    w->down_lim = (struct sila_frame_limits){.max_n = B,
                                             .c = (uint32_t)out.c,
                                             .h = (uint32_t)out.h,
                                             .w = (uint32_t)out.w,
                                             .nclasses = nc,
                                             .gradient = true};
    return 0;
}

/* Takes a Start: the pipeline generation, the progress of each module,
 * and the downstream link, (re)opened when it is new. Edges count their
 * frames from 0 again. */
static int take_start(struct worker *w, const Sila__Start *st, struct sila_err *err)
{
    size_t n = (size_t)(w->stage.last - w->stage.first + 1);
    bool down = w->stage.last + 1 < w->job.nmodules;
    if (st->n_trained != n || st->n_evaluated != n)
        return sila_err_set(err, -EPROTO,
                            "the coordinator's start has progress for %zu modules, "
                            "this worker has %zu",
                            st->n_trained, n);
    if (!*st->downstream_url == down)
        return sila_err_set(err, -EPROTO, "the coordinator's start %s a downstream address",
                            down ? "lacks" : "has");
    for (size_t i = 0; i < n; i++)
        sila_stage_resume(&w->stage, w->stage.first + (int)i, st->trained[i], st->evaluated[i]);
    if (w->stale_frames)
        fprintf(stderr, "silaworker: dropped %llu frames of pipeline %u\n",
                (unsigned long long)w->stale_frames, w->pipeline);
    w->stale_frames = 0;
    w->pipeline = st->pipeline;
    w->up_in = w->up_out = w->down_in = w->down_out = 0;
    if (!down || (has_down(w) && !st->reconnect))
        return 0;
    sila_link_close(&w->down);
    char ch[32];
    struct sila_link_auth la = link_auth(w, ch, "data-%d", w->stage.last + 2);
    return sila_link_open(&w->down, SILA_LINK_PAIR, st->downstream_url, false, w->max_frame, &la,
                          err);
}

/* Waits for the coordinator's Start, handling what comes before it (the
 * states of restored modules, heartbeats, a Halt, the Stop). */
static int wait_start(struct worker *w, struct sila_err *err)
{
    for (;;) {
        int r = keep_alive(w, err);
        if (r)
            return r;
        struct sila_ctl_msg m;
        r = recv_ctl(w, TICK_MS, &m, err);
        if (r == -ETIMEDOUT || r == -EAGAIN)
            continue;
        if (r)
            return r;
        if (m.msg->msg_case == SILA__CONTROL__MSG_START)
            r = take_start(w, m.msg->start, err);
        else if ((r = on_control(w, &m, err)) == -ERESTART)
            r = 0; /* halted already */
        bool started = m.msg->msg_case == SILA__CONTROL__MSG_START;
        sila_ctl_msg_free(&m);
        if (r || w->stopped || started)
            return r;
    }
}

/* The coordinator halted the pipeline (a worker was lost): says so, after
 * every Done sent before, and waits for the restart. */
static int halt(struct worker *w, struct sila_err *err)
{
    Sila__Halt h = SILA__HALT__INIT;
    h.pipeline = w->halt_pipeline;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_HALT;
    c.halt = &h;
    int r = send_ctl(w, &c, NULL, 0, err);
    return r ? r : wait_start(w, err);
}

/* Opens the control link and the edges, says Ready, waits for Start. */
static int connect_run(struct worker *w, struct sila_err *err)
{
    char url[SILA_URL_MAX + 64], ch[32];
    sila_endpoint_control(&w->base, w->stage.first + 1, url, sizeof url);
    /* restored states arrive on it: the limit holds the largest of ours */
    size_t most = 0;
    for (int k = w->stage.first; k <= w->stage.last; k++) {
        struct sila_module_layout l = sila_module_layout(w->stage.mods[k]);
        most =
            l.params + l.optimizer + l.buffers > most ? l.params + l.optimizer + l.buffers : most;
    }
    struct sila_link_auth la = link_auth(w, ch, "control-%d", w->stage.first + 1);
    int r =
        sila_link_open(&w->ctl, SILA_LINK_PAIR, url, false, sila_ctl_frame_limit(most), &la, err);
    if (r)
        return r;
    w->last_heard = sila_clock_s();
    w->last_beat = 0.0; /* a heartbeat at once: the coordinator times a joining worker too */
    sila_endpoint_data(&w->base, w->stage.first + 1, NULL, true, url, sizeof url);
    la = link_auth(w, ch, "data-%d", w->stage.first + 1);
    /* a worker this one replaces may hold the address until it exits */
    for (int tries = 0;; tries++) {
        r = sila_link_open(&w->up, SILA_LINK_PAIR, url, true, w->max_frame, &la, err);
        if (r != -EADDRINUSE || tries == 60)
            break;
        if (tries == 0)
            fprintf(stderr,
                    "silaworker: %s is in use (by the worker this one replaces?): "
                    "trying again for a minute\n",
                    url);
        for (double t0 = sila_clock_s(); sila_clock_s() - t0 < 1.0;) {
            if ((r = drain_control(w, err)) || w->stopped)
                return r;
            nanosleep(&(struct timespec){0, 100000000}, NULL);
        }
    }
    if (r)
        return r;
    Sila__Ready ready = SILA__READY__INIT;
    ready.first_module = (uint32_t)w->stage.first + 1;
    ready.generation = w->gen;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_READY;
    c.ready = &ready;
    if ((r = send_ctl(w, &c, NULL, 0, err)))
        return r;
    return wait_start(w, err);
}

static int serve(struct worker *w, struct sila_err *err)
{
    const struct sila_link *links[2] = {&w->ctl, &w->up};
    while (!w->stopped) {
        bool ready[2];
        int r = keep_alive(w, err);
        if (r)
            return r;
        r = sila_link_poll(links, 2, TICK_MS, ready);
        if (r == -EINTR || r == 0)
            continue;
        if (r < 0)
            return sila_err_set(err, r, "poll: %s", strerror(-r));
        r = ready[0] ? drain_control(w, err) : 0;
        if (r == -ERESTART && (r = halt(w, err)) == 0)
            continue;
        if (r)
            return r;
        if (!ready[1] || w->stopped)
            continue;
        uint8_t *buf;
        struct sila_frame_view v;
        r = recv_frame(w, &w->up, &w->up_lim, &w->up_in, &buf, &v, err);
        if (r == -ERESTART && (r = halt(w, err)) == 0)
            continue;
        if (r)
            return r;
        if (w->stopped) {
            sila_link_release(buf);
            break;
        }
        double t0 = sila_clock_s();
        if (!w->first_batch)
            w->first_batch = t0;
        r = on_batch(w, &v, err);
        double dt = sila_clock_s() - t0;
        w->handling_s += dt;
        if (v.hdr.phase == SILA_PHASE_GLOBAL)
            w->global_s += dt;
        sila_link_release(buf);
        if (r == -ERESTART)
            r = halt(w, err);
        if (r)
            return r;
    }
    return 0;
}

static int join_and_serve(struct worker *w, struct sila_err *err)
{
    int r = sila_url_parse(w->o->connect, &w->base, err);
    if (r)
        return r;
    struct sila_ctl_msg m;
    if ((r = ask_to_join(w, &m, err)))
        return r;
    if (m.msg->msg_case == SILA__CONTROL__MSG_REFUSAL)
        r = sila_err_set(err, -EPERM, "%s refused this worker: %s", w->o->connect,
                         m.msg->refusal->reason);
    else if (m.msg->msg_case != SILA__CONTROL__MSG_WELCOME)
        r = sila_err_set(err, -EPROTO, "%s answered with message %d, not a welcome", w->o->connect,
                         (int)m.msg->msg_case);
    else
        r = take_plan(w, m.msg->welcome, err);
    sila_ctl_msg_free(&m);
    if (r)
        return r;
    if ((r = sila_plan_max_frame(&w->job, &w->max_frame, err)) || (r = connect_run(w, err)))
        return r;
    char mods[32];
    sila_modules_text(w->stage.first, w->stage.last, mods, sizeof mods);
    printf("silaworker: %s of %s joined %s (generation %u)\n", mods, w->job.name, w->o->connect,
           w->gen);
    fflush(stdout);
    if (w->stopped || (r = serve(w, err)))
        return r;
    printf("silaworker: %s done\n", mods);
    fflush(stdout);
    return 0;
}

int worker_run(const struct worker_options *o, struct sila_err *err)
{
    struct worker w = {.o = o};
    w.ctl.sock = w.up.sock = w.down.sock = -1;
    int r = join_and_serve(&w, err);
    if (r && w.ctl.sock >= 0 && !w.stopped) {
        /* tell the coordinator why, rather than leave it waiting */
        Sila__Stop st = SILA__STOP__INIT;
        st.reason = err->msg;
        st.failed = true;
        Sila__Control c = SILA__CONTROL__INIT;
        c.generation = w.gen;
        c.msg_case = SILA__CONTROL__MSG_STOP;
        c.stop = &st;
        struct sila_err ignored;
        if (sila_ctl_send(&w.ctl, &c, NULL, 0, TICK_MS, &ignored) == 0)
            sila_link_settle(); /* nothing acknowledges it: let it leave first */
    }
    sila_link_close(&w.down);
    sila_link_close(&w.up);
    sila_link_close(&w.ctl);
    sila_stage_fini(&w.stage);
    sila_job_fini(&w.job);
    return r;
}
