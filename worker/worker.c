/* A worker's life: join, build its modules, then step them on every batch
 * that arrives from upstream until the coordinator stops the run (see
 * worker.h and docs/protocol.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "module.h"
#include "worker_state.h"

/* What module k reports with a training step it learned: the classifier's
 * logits when the coordinator learns collab's soft targets from them. */
static const float *learned_logits(const struct worker *w, int k)
{
    if (k != w->job.nmodules - 1 || !w->up_lim.collab)
        return NULL;
    return sila_net_output(w->stage.mods[k]->body);
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
    return wlink_send_done(d->w, k, d->h, st->loss, st->correct, logits, err);
}

static int send_snapshot(void *ctx, uint64_t tag, const float *v, size_t n, struct sila_err *err)
{
    return wlink_send_snapshot(((struct done_ctx *)ctx)->w, tag, v, n, err);
}

static int await_snapshot(void *ctx, uint64_t want, struct sila_err *err)
{
    return wlink_await_snapshot(((struct done_ctx *)ctx)->w, want, err);
}

static int send_gradient(void *ctx, uint64_t step, int B, const float *din, struct sila_err *err)
{
    return wlink_send_gradient(((struct done_ctx *)ctx)->w, step, B, din, err);
}

static int await_gradient(void *ctx, uint64_t step, struct sila_err *err)
{
    return wlink_await_gradient(((struct done_ctx *)ctx)->w, step, err);
}

/* The sink of a batch's steps: Done reports, MAN's snapshots and late
 * global steps' gradients. */
static struct sila_stage_sink batch_sink(struct done_ctx *d)
{
    return (struct sila_stage_sink){.done = module_done,
                                    .snapshot = send_snapshot,
                                    .await_snapshot = await_snapshot,
                                    .gradient = send_gradient,
                                    .await_gradient = await_gradient,
                                    .ctx = d};
}

int worker_man_start(struct worker *w, struct sila_err *err)
{
    sila_stage_man_start(&w->stage);
    return w->down_lim.snapshot ? wlink_ask_snapshot(w, err) : 0;
}

/* The worker upstream asks for module first's newest snapshot (it does at
 * every start, on the connection its frames will come by). */
static int offer_snapshot(struct worker *w, struct sila_err *err)
{
    struct done_ctx d = {w, NULL};
    const struct sila_stage_sink sink = batch_sink(&d);
    return sila_stage_man_offer_up(&w->stage, &sink, err);
}

/* Sends x, the stage's output on the frame in hand v, downstream with v's
 * header and labels and the given soft targets and network input (each
 * NULL: none); nothing for the last worker. */
static int pass_down(struct worker *w, const struct sila_frame_view *v, const float *targets,
                     const float *image, const float *x, struct sila_err *err)
{
    if (!worker_has_down(w))
        return 0;
    return wlink_send_frame(w, &w->down, &w->down_out, &v->hdr, false, worker_out_shape(w),
                            v->labels, targets, image, x, err);
}

static int local_step(struct worker *w, const struct sila_frame_view *v, struct sila_err *err)
{
    const struct sila_frame_hdr *h = &v->hdr;
    struct done_ctx d = {w, h};
    const struct sila_stage_sink sink = batch_sink(&d);
    const struct sila_batch_side side = {v->labels, v->targets, network_input(w, v)};
    const float *x;
    int r =
        sila_stage_local(&w->stage, v->x, &side, (int)h->n, h->batch,
                         sila_plan_lr(&w->plan, h->batch), w->job.label_smoothing, &sink, &x, err);
    if (r)
        return r;
    const float *image =
        sila_plan_edge_image(&w->job, w->stage.last + 1) ? network_input(w, v) : NULL;
    return pass_down(w, v, v->targets, image, x, err);
}

/* A global step whose backward comes later (job.global_lag): the stage's
 * forward, and its output sent on without waiting for the gradient. */
static int late_global_step(struct worker *w, const struct sila_frame_view *v, struct sila_err *err)
{
    const struct sila_frame_hdr *h = &v->hdr;
    const struct sila_plan *pl = &w->plan;
    struct done_ctx d = {w, h};
    const struct sila_stage_sink sink = batch_sink(&d);
    const float *x;
    int r = sila_stage_global_late(&w->stage, v->x, v->labels, (int)h->n, h->batch,
                                   sila_plan_lr(pl, h->batch), w->job.label_smoothing,
                                   sila_plan_local_weight(pl, h->batch), &sink, &x, err);
    return r ? r : pass_down(w, v, v->targets, NULL, x, err);
}

static int global_step(struct worker *w, const struct sila_frame_view *v, struct sila_err *err)
{
    const struct sila_frame_hdr *h = &v->hdr;
    const struct sila_plan *pl = &w->plan;
    if (w->job.global_lag > 0)
        return late_global_step(w, v, err);
    const float *x;
    int r = sila_stage_global_forward(&w->stage, v->x, (int)h->n, h->batch, &x, err);
    if (r)
        return r;
    uint8_t *gbuf = NULL;
    struct sila_frame_view g = {0};
    if (worker_has_down(w)) {
        r = pass_down(w, v, v->targets, NULL, x, err);
        double t0 = sila_clock_s();
        if (r == 0 && !w->stopped)
            r = wlink_recv_down(w, &gbuf, &g, err);
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
    const struct sila_stage_sink sink = batch_sink(&d);
    const float *din;
    r = sila_stage_global_backward(&w->stage, gbuf ? g.x : NULL, v->labels, (int)h->n, h->batch,
                                   sila_plan_lr(pl, h->batch), w->job.label_smoothing,
                                   sila_plan_local_weight(pl, h->batch), &sink, &din, err);
    sila_link_release(gbuf);
    if (r || w->stage.first == 0)
        return r;
    return wlink_send_gradient(w, h->batch, (int)h->n, din, err);
}

static int eval_batch(struct worker *w, const struct sila_frame_view *v, struct sila_err *err)
{
    const struct sila_frame_hdr *h = &v->hdr;
    struct done_ctx d = {w, h};
    const struct sila_stage_sink sink = batch_sink(&d);
    const float *x;
    int r = sila_stage_eval(&w->stage, v->x, v->labels, (int)h->n,
                            (uint64_t)h->round * w->plan.eval_batches + h->batch, &sink, &x, err);
    return r ? r : pass_down(w, v, NULL, NULL, x, err);
}

static int on_batch(struct worker *w, const struct sila_frame_view *v, struct sila_err *err)
{
    const struct sila_frame_hdr *h = &v->hdr;
    if (h->phase == SILA_PHASE_HELLO)
        return wlink_answer_hello(w, err);
    if (h->phase == SILA_PHASE_SNAPSHOT)
        return offer_snapshot(w, err);
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

/* Late global steps: the input gradients module first can send now go
 * upstream (sila_stage_late_send), counted as time in global steps. */
static int send_late_gradients(struct worker *w, struct sila_err *err)
{
    if (w->job.global_lag == 0 || w->stage.first == 0 || w->stopped)
        return 0;
    struct done_ctx d = {w, NULL};
    const struct sila_stage_sink sink = batch_sink(&d);
    double t0 = sila_clock_s();
    int r = sila_stage_late_send(&w->stage, &sink, err);
    double dt = sila_clock_s() - t0;
    w->handling_s += dt;
    w->global_s += dt;
    return r;
}

static int serve(struct worker *w, struct sila_err *err)
{
    const struct sila_link *links[3] = {&w->ctl, &w->up, &w->down};
    while (!w->stopped) {
        bool ready[3];
        int r = wlink_keep_alive(w, err);
        if (r)
            return r;
        /* late global steps' gradients are taken as they come */
        bool late = worker_takes_down(w);
        r = sila_link_poll(links, late ? 3 : 2, TICK_MS, ready);
        if (r == -EINTR || r == 0)
            continue;
        if (r < 0)
            return sila_err_set(err, r, "poll: %s", strerror(-r));
        r = ready[0] ? wlink_drain_control(w, err) : 0;
        if (r == 0 && late && ready[2] && !w->stopped && (r = wlink_take_down(w, err)) == 0)
            r = send_late_gradients(w, err);
        if (r == -ECANCELED && w->stopped)
            r = 0;
        if (r == -ERESTART && (r = wjoin_halt(w, err)) == 0)
            continue;
        if (r)
            return r;
        if (!ready[1] || w->stopped)
            continue;
        uint8_t *buf;
        struct sila_frame_view v;
        r = wlink_recv_frame(w, &w->up, &w->up_lim, &w->up_in, &buf, &v, err);
        if (r == -ERESTART && (r = wjoin_halt(w, err)) == 0)
            continue;
        if (r)
            return r;
        if (w->stopped) {
            sila_link_release(buf);
            break;
        }
        double t0 = sila_clock_s();
        if (!w->first_batch && v.hdr.phase != SILA_PHASE_HELLO)
            w->first_batch = t0;
        r = on_batch(w, &v, err);
        if (r == -ECANCELED && w->stopped)
            r = 0; /* stopped while it waited for a snapshot */
        double dt = sila_clock_s() - t0;
        w->handling_s += dt;
        if (v.hdr.phase == SILA_PHASE_GLOBAL)
            w->global_s += dt;
        sila_link_release(buf);
        if (r == 0)
            r = send_late_gradients(w, err);
        if (r == -ERESTART)
            r = wjoin_halt(w, err);
        if (r)
            return r;
    }
    return 0;
}

static int join_and_serve(struct worker *w, struct sila_err *err)
{
    int r = sila_url_parse(w->o->connect, &w->base, err);
    if (r || (r = wjoin_addresses(w, err)))
        return r;
    struct sila_ctl_msg m;
    if ((r = wjoin_ask(w, &m, err)))
        return r;
    if (m.msg->msg_case == SILA__CONTROL__MSG_REFUSAL)
        r = sila_err_set(err, -EPERM, "%s refused this worker: %s", w->o->connect,
                         m.msg->refusal->reason);
    else if (m.msg->msg_case != SILA__CONTROL__MSG_WELCOME)
        r = sila_err_set(err, -EPROTO, "%s answered with message %d, not a welcome", w->o->connect,
                         (int)m.msg->msg_case);
    else
        r = wjoin_take_plan(w, m.msg->welcome, err);
    sila_ctl_msg_free(&m);
    if (r)
        return r;
    if ((r = sila_plan_max_frame(&w->job, &w->max_frame, err)) || (r = wjoin_connect(w, err)))
        return r;
    char mods[32];
    sila_modules_text(w->stage.first, w->stage.last, mods, sizeof mods);
    printf("silaworker: %s of %s joined %s (generation %u%s)\n", mods, w->job.name, w->o->connect,
           w->gen, w->sealed ? ", links sealed" : "");
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
    free(w.up_x);
    free(w.down_x);
    sila_stage_fini(&w.stage);
    sila_job_fini(&w.job);
    return r;
}
