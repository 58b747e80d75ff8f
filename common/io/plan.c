/* The plan of a run (see plan.h). */
#include "plan.h"

#include <errno.h>
#include <math.h>

#include "frame.h"
#include "heads.h"

int sila_plan_init(struct sila_plan *pl, const struct sila_job *job, uint32_t ntrain,
                   uint32_t ntest, struct sila_err *err)
{
    *pl = (struct sila_plan){.job = job, .ntrain = ntrain, .ntest = ntest};
    if (job->holdout >= ntrain)
        return sila_err_set(err, -EINVAL,
                            "%s: holdout %u takes every one of the %u training samples", job->path,
                            job->holdout, ntrain);
    pl->nholdout = job->holdout;
    pl->ntrain = pl->holdout_first = ntrain - job->holdout;
    if (job->train_limit && job->train_limit < pl->ntrain)
        pl->ntrain = job->train_limit;
    if (job->test_limit && job->test_limit < ntest)
        pl->ntest = job->test_limit;
    if (pl->ntrain < (uint32_t)job->batch)
        return sila_err_set(err, -EINVAL, "%s: %u training samples, fewer than one batch of %d",
                            job->path, pl->ntrain, job->batch);
    /* Every step takes a full batch, so all steps weigh the same and batch
     * norm never sees a tiny batch. */
    pl->steps_per_epoch = pl->ntrain / (uint32_t)job->batch;
    if ((uint64_t)job->evals_per_epoch > pl->steps_per_epoch)
        return sila_err_set(
            err, -EINVAL, "%s: evals_per_epoch %d: more than the %llu steps of an epoch", job->path,
            job->evals_per_epoch, (unsigned long long)pl->steps_per_epoch);
    pl->total_steps = (uint64_t)job->epochs * pl->steps_per_epoch;
    uint32_t B = (uint32_t)job->batch;
    pl->test_batches = (pl->ntest + B - 1) / B;
    pl->eval_batches = pl->test_batches + (pl->nholdout + B - 1) / B;
    pl->sched = job->sched;
    pl->sched.total_steps = pl->total_steps;
    pl->sched.warmup_steps = (uint64_t)llround(job->warmup_epochs * pl->steps_per_epoch);
    pl->sched.step_size = (uint64_t)llround(job->step_epochs * pl->steps_per_epoch);
    return 0;
}

bool sila_plan_step_global(const struct sila_plan *pl, uint64_t t)
{
    const struct sila_job *job = pl->job;
    if (job->algorithm != SILA_ALGO_PGL)
        return job->algorithm == SILA_ALGO_E2E;
    uint64_t s = t % pl->steps_per_epoch;
    if (s + (uint64_t)job->global_epoch_end >= pl->steps_per_epoch)
        return true;
    long G = job->global_steps;
    if (job->global_ramp) {
        G = lround(2.0 * G * (double)(t + 1) / (double)pl->total_steps);
        G = G > job->period ? job->period : G;
    }
    return (long)(t % (uint64_t)job->period) >= job->period - G;
}

float sila_plan_local_weight(const struct sila_plan *pl, uint64_t t)
{
    const struct sila_job *job = pl->job;
    if (job->algorithm != SILA_ALGO_PGL)
        return 0.0f;
    if (!job->local_weight_decay)
        return job->local_weight;
    return job->local_weight * (float)(1.0 - (double)t / (double)pl->total_steps);
}

float sila_plan_lr(const struct sila_plan *pl, uint64_t t)
{
    return sila_sched_lr(&pl->sched, t);
}

uint32_t sila_plan_rounds(const struct sila_plan *pl)
{
    return (uint32_t)pl->job->epochs * (uint32_t)pl->job->evals_per_epoch;
}

uint64_t sila_plan_round_end(const struct sila_plan *pl, uint32_t r)
{
    uint64_t N = (uint64_t)pl->job->evals_per_epoch, S = pl->steps_per_epoch;
    return r / N * S + (r % N + 1) * S / N;
}

uint32_t sila_plan_round_of(const struct sila_plan *pl, uint64_t t)
{
    /* the first j with t mod S < floor((j + 1) S / N) */
    uint64_t N = (uint64_t)pl->job->evals_per_epoch, S = pl->steps_per_epoch;
    uint64_t s = t % S;
    return (uint32_t)(t / S * N + ((s + 1) * N + S - 1) / S - 1);
}

bool sila_plan_evaluates(const struct sila_plan *pl, uint32_t r)
{
    int e = (int)(r / (uint32_t)pl->job->evals_per_epoch);
    return (e + 1) % pl->job->eval_every == 0 || e + 1 == pl->job->epochs;
}

int sila_plan_edge_shape(const struct sila_job *job, int k, struct sila_shape *ret_shape,
                         struct sila_err *err)
{
    int first = k < job->nmodules ? job->modules[k].first_layer : job->nlayers;
    if (first == 0) {
        *ret_shape = job->input;
        return 0;
    }
    struct sila_net *prefix;
    int r = sila_net_new(&prefix, job->layers, first, job->input, 1, err);
    if (r)
        return r;
    *ret_shape = sila_net_out_shape(prefix);
    sila_net_free(prefix);
    return 0;
}

uint32_t sila_plan_edge_image(const struct sila_job *job, int k)
{
    for (int j = k > 0 ? k : job->nmodules; j < job->nmodules - 1; j++) {
        float recon, task;
        sila_objective_infopro_weights(&job->modules[j].objective, j, job->nmodules, &recon, &task);
        if (recon > 0.0f)
            return (uint32_t)sila_shape_size(job->input);
    }
    return 0;
}

enum sila_dtype sila_plan_edge_dtype(const struct sila_job *job, int k)
{
    return k > 0 && k < job->nmodules ? job->wire_dtype : SILA_DTYPE_F32;
}

int sila_plan_edge_snapshot(const struct sila_job *job, int k, uint32_t *ret_floats,
                            struct sila_err *err)
{
    *ret_floats = 0;
    if (k < 1 || k >= job->nmodules || job->modules[k - 1].objective.man_momentum == 0.0f)
        return 0;
    struct sila_layer_spec unit[SILA_MAN_MAX_SPECS];
    struct sila_shape s;
    struct sila_net *net;
    int n, r;
    if (sila_man_unit_specs(job, k - 1, unit, &n))
        return sila_err_set(err, -EINVAL, "module %d: no unit for module %d's MAN", k + 1, k);
    if ((r = sila_plan_edge_shape(job, k, &s, err)) || (r = sila_net_new(&net, unit, n, s, 1, err)))
        return r;
    *ret_floats = (uint32_t)sila_net_param_count(net);
    sila_net_free(net);
    return 0;
}

int sila_plan_max_frame(const struct sila_job *job, size_t *ret_bytes, struct sila_err *err)
{
    size_t most = 0;
    for (int k = 0; k < job->nmodules; k++) {
        struct sila_shape s;
        uint32_t snap;
        int r = sila_plan_edge_shape(job, k, &s, err);
        if (r || (r = sila_plan_edge_snapshot(job, k, &snap, err)))
            return r;
        struct sila_frame_hdr h = {.generation = UINT32_MAX,
                                   .seq = UINT64_MAX,
                                   .batch = UINT64_MAX,
                                   .round = UINT32_MAX,
                                   .phase = SILA_PHASE_GLOBAL,
                                   .gradient = true,
                                   .n = (uint32_t)job->batch,
                                   .c = (uint32_t)s.c,
                                   .h = (uint32_t)s.h,
                                   .w = (uint32_t)s.w,
                                   .nlabels = (uint32_t)job->batch,
                                   .target_classes =
                                       sila_job_uses_collab(job) ? (uint32_t)job->nclasses : 0,
                                   .image_size = sila_plan_edge_image(job, k)};
        size_t b = sila_frame_size(&h);
        most = b > most ? b : most;
        /* MAN's snapshots upstream: the same header, one row of their size */
        h.phase = SILA_PHASE_SNAPSHOT;
        h.n = 1, h.c = snap, h.h = h.w = 1;
        h.nlabels = h.target_classes = h.image_size = 0;
        b = sila_frame_size(&h);
        most = snap && b > most ? b : most;
    }
    *ret_bytes = most;
    return 0;
}
