/* A worker's links: the control link to the coordinator (heartbeats,
 * reports, module states, the coordinator's orders) and the data edges to
 * its neighbours (frames checked against the plan, numbered per edge). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "clock.h"
#include "greet.h"
#include "module.h"
#include "worker_state.h"

struct sila_link_auth wlink_auth(const struct worker *w, char ch[32], const char *fmt, int k)
{
    snprintf(ch, 32, fmt, k);
    return (struct sila_link_auth){
        .key = w->o->key, .channel = ch, .window_ms = w->o->auth_window_ms, .seal = w->sealed};
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

int wlink_send_ctl(struct worker *w, Sila__Control *c, const float *tail, size_t ntail,
                   struct sila_err *err)
{
    c->generation = w->gen;
    for (;;) {
        int r = sila_ctl_send(&w->ctl, c, tail, ntail, TICK_MS, err);
        if (r != -ETIMEDOUT && r != -EAGAIN)
            return r;
        if ((r = wlink_keep_alive(w, err)))
            return r;
    }
}

int wlink_send_done(struct worker *w, int k, const struct sila_frame_hdr *h, double loss,
                    int correct, const float *logits, struct sila_err *err)
{
    Sila__Done d = SILA__DONE__INIT;
    d.module = (uint32_t)k + 1;
    d.phase = (Sila__Phase)h->phase;
    d.round = h->round;
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
    return wlink_send_ctl(w, &c, logits, d.logits, err);
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
    int r = wlink_send_ctl(w, &c, tail, n, err);
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

int wlink_on_control(struct worker *w, const struct sila_ctl_msg *m, struct sila_err *err)
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

int wlink_keep_alive(struct worker *w, struct sila_err *err)
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

int wlink_recv_ctl(struct worker *w, int timeout_ms, struct sila_ctl_msg *m, struct sila_err *err)
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

int wlink_drain_control(struct worker *w, struct sila_err *err)
{
    int r = wlink_keep_alive(w, err);
    if (r)
        return r;
    for (;;) {
        struct sila_ctl_msg m;
        r = wlink_recv_ctl(w, 0, &m, err);
        if (r == -EAGAIN)
            return 0;
        if (r)
            return r;
        r = wlink_on_control(w, &m, err);
        sila_ctl_msg_free(&m);
        if (r || w->stopped)
            return r;
    }
}

/* Sends the len bytes of buf (taken, whatever happens; `what` names it in
 * an error) on l, waiting as long as the receiver needs and watching the
 * control link meanwhile. */
static int send_buf(struct worker *w, struct sila_link *l, uint8_t *buf, size_t len,
                    const char *what, struct sila_err *err)
{
    double t0 = sila_clock_s();
    /* with late global steps, what downstream sends meanwhile is taken
     * often: it may be waiting for this worker to read */
    bool late = worker_takes_down(w);
    for (;;) {
        int r = sila_link_send(l, buf, len, late ? TAKE_DOWN_MS : TICK_MS);
        if (r == 0)
            break;
        if (r != -ETIMEDOUT && r != -EAGAIN) {
            sila_link_release(buf);
            return sila_err_set(err, r, "cannot send %s %s: %s", what,
                                l == &w->up ? "upstream" : "downstream", strerror(-r));
        }
        if ((r = wlink_drain_control(w, err)) || w->stopped ||
            (late && (r = wlink_take_down(w, err)))) {
            sila_link_release(buf);
            return r == -ECANCELED && w->stopped ? 0 : r;
        }
    }
    w->bytes_out += len;
    w->waiting_s += sila_clock_s() - t0;
    return 0;
}

int wlink_send_frame(struct worker *w, struct sila_link *l, uint64_t *seq,
                     const struct sila_frame_hdr *of, bool gradient, struct sila_shape s,
                     const int32_t *labels, const float *targets, const float *image,
                     const float *x, struct sila_err *err)
{
    /* the dtype the edge's receiver expects (the stage rounded training
     * tensors to it: half.h) */
    const struct sila_frame_limits *edge = l == &w->down ? &w->down_lim : &w->up_lim;
    struct sila_frame_hdr h = {.generation = w->pipeline,
                               .seq = *seq,
                               .batch = of->batch,
                               .round = of->round,
                               .phase = of->phase,
                               .gradient = gradient,
                               .n = of->n,
                               .c = (uint32_t)s.c,
                               .h = (uint32_t)s.h,
                               .w = (uint32_t)s.w,
                               .nlabels = labels ? of->n : 0,
                               .target_classes = targets ? (uint32_t)w->job.nclasses : 0,
                               .image_size = image ? (uint32_t)sila_shape_size(w->job.input) : 0,
                               .dtype = sila_frame_dtype(edge, of->phase)};
    size_t len = sila_frame_size(&h);
    uint8_t *buf = sila_link_alloc(len);
    if (!buf)
        return sila_err_set(err, -ENOMEM, "out of memory for a frame");
    sila_frame_encode(buf, &h, labels, targets, image, x);
    char what[40];
    snprintf(what, sizeof what, "batch %llu", (unsigned long long)h.batch);
    int r = send_buf(w, l, buf, len, what, err);
    *seq += r == 0;
    return r;
}

int wlink_answer_hello(struct worker *w, struct sila_err *err)
{
    size_t len;
    uint8_t *buf = sila_greet_frame(w->pipeline, true, &len);
    return buf ? send_buf(w, &w->up, buf, len, "a greeting's answer", err)
               : sila_err_set(err, -ENOMEM, "out of memory for a greeting's answer");
}

/* Between the attempts of a greeting: the control link's errors, and 1
 * for a stop. */
static int greet_wait(void *ctx, struct sila_err *err)
{
    struct worker *w = ctx;
    int r = wlink_drain_control(w, err);
    return r ? r : w->stopped;
}

int wlink_greet_down(struct worker *w, struct sila_err *err)
{
    int r = sila_greet(&w->down, w->pipeline, greet_wait, w, err);
    w->down_greeted = r == 0;
    return r == 1 ? 0 : r;
}

/* wlink_recv_frame, or with `wait` false -EAGAIN (err untouched) as soon
 * as no frame is there. */
static int recv_frame(struct worker *w, struct sila_link *l, const struct sila_frame_limits *lim,
                      uint64_t *seq, bool wait, uint8_t **buf, struct sila_frame_view *v,
                      struct sila_err *err)
{
    const char *edge = lim->gradient ? "downstream" : "upstream";
    for (;;) {
        size_t len;
        int r = sila_link_recv(l, buf, &len, wait ? TICK_MS : 0);
        if (r == -ETIMEDOUT || r == -EAGAIN) {
            if (!wait)
                return -EAGAIN;
            if ((r = wlink_drain_control(w, err)) || w->stopped)
                return r;
            continue;
        }
        if (r)
            return sila_err_set(err, r, "cannot receive from %s: %s", edge, strerror(-r));
        if ((r = sila_frame_decode(*buf, len, lim, v, err))) {
            sila_link_release(*buf);
            return sila_err_set(err, r, "%s: %.400s", edge, err->msg);
        }
        if (v->x16) { /* a training frame in the edge's 16-bit dtype */
            float *x = l == &w->up ? w->up_x : w->down_x;
            const struct sila_frame_hdr *h = &v->hdr;
            sila_dtype_unpack(h->dtype, v->x16, x, (size_t)h->n * h->c * h->h * h->w);
            v->x = x;
        }
        /* a greeting is answered, and its late answers dropped, whatever
         * their pipeline (greet.h) */
        if (v->hdr.phase == SILA_PHASE_HELLO)
            return 0;
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
        /* MAN's request for a snapshot travels outside the sequence */
        if (v->hdr.phase == SILA_PHASE_SNAPSHOT && !v->hdr.gradient)
            return 0;
        if (v->hdr.seq != *seq) {
            sila_link_release(*buf);
            return sila_err_set(err, -EPROTO, "%s: frame %llu arrived, expected frame %llu", edge,
                                (unsigned long long)v->hdr.seq, (unsigned long long)*seq);
        }
        (*seq)++;
        return 0;
    }
}

int wlink_recv_frame(struct worker *w, struct sila_link *l, const struct sila_frame_limits *lim,
                     uint64_t *seq, uint8_t **buf, struct sila_frame_view *v, struct sila_err *err)
{
    return recv_frame(w, l, lim, seq, true, buf, v, err);
}

int wlink_ask_snapshot(struct worker *w, struct sila_err *err)
{
    static const float zero = 0.0f;
    const struct sila_frame_hdr ask = {.phase = SILA_PHASE_SNAPSHOT, .n = 1};
    uint64_t unsequenced = 0;
    return wlink_send_frame(w, &w->down, &unsequenced, &ask, false, (struct sila_shape){1, 1, 1},
                            NULL, NULL, NULL, &zero, err);
}

int wlink_send_snapshot(struct worker *w, uint64_t tag, const float *v, size_t n,
                        struct sila_err *err)
{
    const struct sila_frame_hdr of = {.batch = tag, .phase = SILA_PHASE_SNAPSHOT, .n = 1};
    return wlink_send_frame(w, &w->up, &w->up_out, &of, true, (struct sila_shape){(int)n, 1, 1},
                            NULL, NULL, NULL, v, err);
}

/* Receives one frame from downstream into *buf and *v (without `wait`,
 * -EAGAIN when none is there); a snapshot and a late global step's
 * gradient go into the stage, a greeting's late answer is dropped, and
 * either way (*ret_taken) *buf is released. */
static int recv_down_one(struct worker *w, bool wait, uint8_t **buf, struct sila_frame_view *v,
                         bool *ret_taken, struct sila_err *err)
{
    int r = recv_frame(w, &w->down, &w->down_lim, &w->down_in, wait, buf, v, err);
    if (r)
        return r;
    if (w->stopped) {
        sila_link_release(*buf);
        return -ECANCELED;
    }
    const struct sila_frame_hdr *h = &v->hdr;
    bool late = w->job.global_lag > 0 && h->phase == SILA_PHASE_GLOBAL;
    *ret_taken = late || h->phase == SILA_PHASE_SNAPSHOT || h->phase == SILA_PHASE_HELLO;
    if (!*ret_taken)
        return 0;
    if (h->phase == SILA_PHASE_SNAPSHOT)
        r = sila_stage_man_put(&w->stage, h->batch, v->x, h->c, err);
    else if (late)
        r = sila_stage_late_put(&w->stage, h->batch, v->x, (size_t)h->n * h->c * h->h * h->w, err);
    sila_link_release(*buf);
    return r ? sila_err_set(err, r, "downstream: %.400s", err->msg) : 0;
}

int wlink_recv_down(struct worker *w, uint8_t **buf, struct sila_frame_view *v,
                    struct sila_err *err)
{
    for (bool taken = true; taken;) {
        int r = recv_down_one(w, true, buf, v, &taken, err);
        if (r)
            return r;
    }
    return 0;
}

/* Receives from downstream, taking every frame into the stage, until
 * still(w, want) is false; `what` names what module last waits for. */
static int await_down(struct worker *w, bool (*still)(const struct worker *, uint64_t),
                      uint64_t want, const char *what, struct sila_err *err)
{
    double t0 = sila_clock_s();
    int r = 0;
    while (r == 0 && still(w, want)) {
        uint8_t *buf;
        struct sila_frame_view v;
        bool taken;
        r = recv_down_one(w, true, &buf, &v, &taken, err);
        if (r == 0 && !taken) {
            sila_link_release(buf);
            r = sila_err_set(err, -EPROTO,
                             "downstream: batch %llu arrived while module %d waits for the %s of "
                             "step %llu",
                             (unsigned long long)v.hdr.batch, w->stage.last + 1, what,
                             (unsigned long long)want);
        }
    }
    w->waiting_s += sila_clock_s() - t0;
    return r;
}

static bool lacks_snapshot(const struct worker *w, uint64_t want)
{
    return !sila_stage_man_holds(&w->stage, want);
}

int wlink_await_snapshot(struct worker *w, uint64_t want, struct sila_err *err)
{
    return await_down(w, lacks_snapshot, want, "snapshot", err);
}

static bool lacks_gradient(const struct worker *w, uint64_t step)
{
    return sila_stage_late_awaits(&w->stage, step);
}

int wlink_await_gradient(struct worker *w, uint64_t step, struct sila_err *err)
{
    return await_down(w, lacks_gradient, step, "gradient of global", err);
}

int wlink_send_gradient(struct worker *w, uint64_t step, int B, const float *din,
                        struct sila_err *err)
{
    const struct sila_frame_hdr of = {.batch = step,
                                      .round = sila_plan_round_of(&w->plan, step),
                                      .phase = SILA_PHASE_GLOBAL,
                                      .n = (uint32_t)B};
    struct sila_shape s = sila_net_in_shape(w->stage.mods[w->stage.first]->body);
    return wlink_send_frame(w, &w->up, &w->up_out, &of, true, s, NULL, NULL, NULL, din, err);
}

int wlink_take_down(struct worker *w, struct sila_err *err)
{
    for (;;) {
        uint8_t *buf;
        struct sila_frame_view v;
        bool taken;
        int r = recv_down_one(w, false, &buf, &v, &taken, err);
        if (r)
            return r == -EAGAIN ? 0 : r;
        if (!taken) {
            sila_link_release(buf);
            return sila_err_set(err, -EPROTO, "downstream: batch %llu arrived unasked",
                                (unsigned long long)v.hdr.batch);
        }
    }
}
