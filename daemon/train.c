/* In-process training loop: every module stepped in the order a pipeline
 * of workers would see the batches, the evaluation of every head, and the
 * reassembled model (see train.h). */
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "clock.h"
#include "collab.h"
#include "feed.h"
#include "reassemble.h"
#include "report.h"
#include "stage.h"
#include "startup.h"
#include "train_rpc.h"

struct trainer {
    const struct sila_job *job;
    struct startup *run;     /* borrowed: the datasets, collab's table, the report */
    struct sila_stage stage; /* every module */
    int K;
    float *x;                /* (batch, input) */
    int32_t *labels;         /* (batch) */
    float *targets;          /* (batch, classes) of the batch, when collab */
    struct eval_tally tally; /* the open evaluation's hits */
    uint32_t eval_batch;     /* the batch of it being evaluated */
    const char *out_dir;
    double last_checkpoint;   /* sila_clock_s() of the last one, or of the start */
    uint64_t checkpoint_step; /* steps done at the last one; UINT64_MAX: none */
    struct train_rpc ctl;
};

/* The stage's sink for training steps: each module's loss and head
 * accuracy to the report, of the step after those it has counted. */
static int step_done(void *ctx, int k, const struct sila_step_stats *st, struct sila_err *err)
{
    (void)err;
    struct trainer *tr = ctx;
    struct report *rep = &tr->run->rep;
    report_step_loss(rep, k, rep->step + 1, st->loss, (double)st->correct / tr->job->batch);
    return 0;
}

/* The stage's sink for evaluation batches: each head's hits. */
static int eval_done(void *ctx, int k, const struct sila_step_stats *st, struct sila_err *err)
{
    (void)err;
    struct trainer *tr = ctx;
    eval_tally_add(&tr->tally, &tr->run->feed.plan, k, tr->eval_batch, st->correct);
    return 0;
}

static int train_step(struct trainer *tr, int B, uint64_t t, struct sila_err *err)
{
    const struct sila_plan *plan = &tr->run->feed.plan;
    const struct sila_stage_sink sink = {.done = step_done, .ctx = tr};
    float lr = sila_plan_lr(plan, t), smoothing = tr->job->label_smoothing;
    const float *z, *din;
    if (!sila_plan_step_global(plan, t)) {
        const struct sila_batch_side side = {tr->labels, tr->targets, tr->x};
        return sila_stage_local(&tr->stage, tr->x, &side, B, t, lr, smoothing, &sink, &z, err);
    }
    float mu = sila_plan_local_weight(plan, t);
    if (tr->job->global_lag > 0)
        return sila_stage_global_late(&tr->stage, tr->x, tr->labels, B, t, lr, smoothing, mu, &sink,
                                      &z, err);
    int r = sila_stage_global_forward(&tr->stage, tr->x, B, t, &z, err);
    return r ? r
             : sila_stage_global_backward(&tr->stage, NULL, tr->labels, B, t, lr, smoothing, mu,
                                          &sink, &din, err);
}

/* The accuracy of every exit on the test and the held-out splits after
 * round q, reported. */
static void evaluate(struct trainer *tr, uint32_t q)
{
    const struct sila_plan *plan = &tr->run->feed.plan;
    const struct sila_stage_sink sink = {.done = eval_done, .ctx = tr};
    tr->ctl.phase = SILA__RUN_PHASE__EVALUATING;
    for (uint32_t i = 0; i < plan->eval_batches; i++) {
        train_rpc_serve(&tr->ctl);
        tr->eval_batch = i;
        int nb = feed_eval_batch(&tr->run->feed, i, tr->x, tr->labels);
        const float *z;
        struct sila_err none;
        sila_stage_eval(&tr->stage, tr->x, tr->labels, nb, (uint64_t)q * plan->eval_batches + i,
                        &sink, &z, &none);
    }
    tr->ctl.phase = SILA__RUN_PHASE__TRAINING;
    struct report_eval ev = eval_tally_close(&tr->tally, plan, tr->K, q);
    report_eval(&tr->run->rep, &ev);
}

static int checkpoint(struct trainer *tr, uint64_t done, struct sila_err *err)
{
    struct checkpoint c = checkpoint_at(done, &tr->run->rep, &tr->run->feed.aug_rng, tr->K);
    c.collab = tr->run->collab.q;
    c.ncollab = collab_floats(&tr->run->collab);
    int r = 0;
    for (int k = 0; k < tr->K && r == 0; k++) {
        struct checkpoint_module *m = &c.mods[k];
        m->layout = sila_module_layout(tr->stage.mods[k]);
        m->state = malloc(sizeof *m->state *
                          (m->layout.params + m->layout.optimizer + m->layout.buffers + 1));
        if (!m->state)
            r = sila_err_set(err, -ENOMEM, "out of memory for a checkpoint");
        else
            sila_module_get_state(tr->stage.mods[k], m->state, m->counters);
    }
    char path[SILA_PATH_MAX];
    if (r == 0 && (r = checkpoint_write(tr->out_dir, tr->job, &c, path, sizeof path, err)) == 0) {
        report_checkpoint(&tr->run->rep, path, done);
        snprintf(tr->ctl.last_checkpoint, sizeof tr->ctl.last_checkpoint, "%s", path);
        tr->checkpoint_step = done;
    }
    for (int k = 0; k < tr->K; k++)
        free(c.mods[k].state);
    tr->last_checkpoint = sila_clock_s();
    return r;
}

/* At a step boundary, done steps in: the checkpoint the job schedules,
 * then the RPC's requests (a checkpoint asked for, a pause). Returns 0, 1
 * when a Stop asks to end here, or -errno with err set. */
static int boundary(struct trainer *tr, uint64_t done, bool scheduled, struct sila_err *err)
{
    const struct sila_plan *plan = &tr->run->feed.plan;
    int r;
    if (scheduled &&
        checkpoint_due(tr->job, done, plan->total_steps, sila_clock_s() - tr->last_checkpoint) &&
        (r = checkpoint(tr, done, err)))
        return r;
    for (;;) {
        train_rpc_serve(&tr->ctl);
        if (tr->ctl.checkpoint) {
            tr->ctl.checkpoint = false;
            if (tr->checkpoint_step != done && (r = checkpoint(tr, done, err)))
                return r;
        }
        if (tr->ctl.stop)
            return 1;
        if (!tr->ctl.paused)
            return 0;
    }
}

/* Trains steps [first, end) (a round's); checkpoints within them.
 * Returns 0, 1 when stopped by a request, or -errno. */
static int train_steps(struct trainer *tr, uint64_t first, uint64_t end, struct sila_err *err)
{
    const struct sila_plan *plan = &tr->run->feed.plan;
    int B = tr->job->batch;
    for (uint64_t t = first; t < end; t++) {
        uint64_t s = t % plan->steps_per_epoch;
        const uint32_t *idx = feed_train_batch(&tr->run->feed, t, tr->x, tr->labels);
        collab_targets(&tr->run->collab, idx, B, tr->targets);
        int r = train_step(tr, B, t, err);
        if (r)
            return r;
        collab_learn(&tr->run->collab, idx, B, sila_net_output(tr->stage.mods[tr->K - 1]->body));
        report_step(&tr->run->rep, (int)(t / plan->steps_per_epoch), s, B, sila_plan_lr(plan, t),
                    sila_plan_step_global(plan, t));
        if ((r = boundary(tr, t + 1, t + 1 < end, err)))
            return r;
    }
    return 0;
}

/* Gives every module its state from the checkpoint resumed from (checked
 * against the job by startup_open), then frees the states. */
static void resume(struct trainer *tr)
{
    struct checkpoint *c = &tr->run->resume;
    for (int k = 0; k < tr->K; k++) {
        sila_module_set_state(tr->stage.mods[k], c->mods[k].state, c->mods[k].counters);
        sila_stage_resume(&tr->stage, k, c->step, 0);
    }
    checkpoint_free(c); /* the evaluations live on in the report */
}

static int build_modules(struct trainer *tr, struct sila_err *err)
{
    const struct sila_job *job = tr->job;
    tr->K = job->nmodules;
    int r = sila_stage_init(&tr->stage, job, 0, tr->K - 1, job->batch, err);
    if (r)
        return r;
    size_t in = sila_shape_size(job->input);
    tr->x = malloc(sizeof *tr->x * in * job->batch);
    tr->labels = malloc(sizeof *tr->labels * job->batch);
    if (!tr->x || !tr->labels ||
        (collab_on(&tr->run->collab) &&
         !(tr->targets = malloc(sizeof *tr->targets * job->batch * job->nclasses))))
        return sila_err_set(err, -ENOMEM, "out of memory");
    return 0;
}

static void trainer_fini(struct trainer *tr)
{
    sila_stage_fini(&tr->stage);
    free(tr->x);
    free(tr->labels);
    free(tr->targets);
}

static int save_model(struct trainer *tr, const char *path, struct deploy_exit *ret,
                      struct sila_err *err)
{
    struct body_state bodies[SILA_MAX_MODULES];
    for (int k = 0; k < tr->K; k++) {
        const struct sila_module *m = tr->stage.mods[k];
        struct sila_module_layout l = sila_module_layout(m);
        bodies[k] = (struct body_state){m->params,  l.body_params,  l.params,
                                        m->buffers, l.body_buffers, l.buffers};
    }
    return reassemble_save(tr->job, bodies, report_last_eval(&tr->run->rep), path, ret, err);
}

static int train_all(struct trainer *tr, bool resuming, const struct rpc_endpoint *ep,
                     struct sila_err *err)
{
    const struct sila_job *job = tr->job;
    const struct sila_plan *plan = &tr->run->feed.plan;
    int r = build_modules(tr, err);
    if (r)
        return r;
    if (resuming)
        resume(tr);
    sila_stage_man_start(&tr->stage);
    if ((r = train_rpc_open(&tr->ctl, ep, job, &tr->run->rep, plan, tr->out_dir, err)))
        return r;
    report_start(&tr->run->rep, job, plan, "in process");
    tr->last_checkpoint = sila_clock_s();
    uint64_t t = tr->run->rep.first_step;
    for (uint32_t q = sila_plan_round_of(plan, t); q < sila_plan_rounds(plan); q++) {
        uint64_t end = sila_plan_round_end(plan, q);
        if ((r = train_steps(tr, t, end, err)) < 0)
            return r;
        if (r == 1)
            break;
        t = end;
        if (sila_plan_evaluates(plan, q))
            evaluate(tr, q);
        if ((r = boundary(tr, end, true, err)) < 0)
            return r;
        if (r == 1)
            break;
    }
    char path[SILA_PATH_MAX];
    snprintf(path, sizeof path, "%s/model.sila", tr->out_dir);
    struct deploy_exit x;
    if ((r = save_model(tr, path, &x, err)))
        return r;
    report_saved(&tr->run->rep, path, &x);
    tr->ctl.phase = SILA__RUN_PHASE__FINISHED;
    return 0;
}

int train_inproc(const struct sila_job *job, struct startup *run, const char *out_dir, bool resume,
                 const struct rpc_endpoint *rpc, struct sila_err *err)
{
    struct trainer tr = {.job = job, .run = run, .out_dir = out_dir, .checkpoint_step = UINT64_MAX};
    int r = train_all(&tr, resume, rpc, err);
    train_rpc_close(&tr.ctl);
    trainer_fini(&tr);
    return r;
}
