/* The plan of a run: what a job and the size of its data make of it, the
 * same for the in-process trainer, the coordinator and every worker: steps
 * per epoch, the learning-rate schedule, which steps are global, when to
 * evaluate, and the shape of every pipeline edge. */
#ifndef SILA_PLAN_H
#define SILA_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "job.h"

struct sila_plan {
    const struct sila_job *job; /* borrowed */
    uint32_t ntrain, ntest;     /* samples used, after the holdout and the job's limits */
    /* The held-out split (job.holdout): training samples holdout_first ..
     * holdout_first + nholdout - 1, the last of the training set, never
     * trained on and evaluated after the test split. */
    uint32_t nholdout, holdout_first;
    uint64_t steps_per_epoch; /* full batches only: a last partial one is dropped */
    uint64_t total_steps;
    /* Batches of one evaluation: the test split's (the last may be
     * partial), then the held-out split's (the same), eval_batches in all. */
    uint32_t test_batches, eval_batches;
    struct sila_sched_cfg sched; /* the job's, with step counts filled in */
};

/* Plans job over the ntrain/ntest samples of its data files (the holdout
 * and the limits taken here). Errors: -EINVAL when the holdout leaves no
 * training sample, or fewer than one batch. */
int sila_plan_init(struct sila_plan *pl, const struct sila_job *job, uint32_t ntrain,
                   uint32_t ntest, struct sila_err *err);

/* Whether global step t is a global (end-to-end) step: always under e2e,
 * never under local; under pgl iff t mod P >= P - G (G ramping up from 0
 * to 2G over the run under global_ramp), or t is among the last
 * global_epoch_end steps of its epoch. */
bool sila_plan_step_global(const struct sila_plan *pl, uint64_t t);

/* mu at step t: local_weight, decaying linearly to 0 under local_weight_decay. */
float sila_plan_local_weight(const struct sila_plan *pl, uint64_t t);

float sila_plan_lr(const struct sila_plan *pl, uint64_t t);

/* The run's rounds: every epoch cut into job.evals_per_epoch runs of
 * consecutive steps, as even as the steps allow, an evaluation (when the
 * epoch evaluates) closing each. With one evaluation per epoch the rounds
 * are the epochs. sila_plan_rounds: how many in the run; round_end: the
 * count of steps done when round r (0-based) ends; round_of: the round
 * step t (0-based) belongs to. */
uint32_t sila_plan_rounds(const struct sila_plan *pl);
uint64_t sila_plan_round_end(const struct sila_plan *pl, uint32_t r);
uint32_t sila_plan_round_of(const struct sila_plan *pl, uint64_t t);

/* Whether the run evaluates after round r: the rounds of every
 * eval_every-th epoch and of the last. */
bool sila_plan_evaluates(const struct sila_plan *pl, uint32_t r);

/* Per-sample shape entering module k (0-based; k = K is the classifier's
 * output). Errors: -EINVAL, from building the prefix of the network. */
int sila_plan_edge_shape(const struct sila_job *job, int k, struct sila_shape *ret_shape,
                         struct sila_err *err);

/* Floats per sample of the network's input that the local training batches
 * entering module k (1 <= k < K) carry along: the input's size when module
 * k or a later one reconstructs it (InfoPro), else 0. Module 0's input is
 * the network's. */
uint32_t sila_plan_edge_image(const struct sila_job *job, int k);

/* How the training frames entering module k carry their tensor: the job's
 * wire_dtype between modules (1 <= k < K), f32 into module 0 (the network's
 * input, from the coordinator). */
enum sila_dtype sila_plan_edge_dtype(const struct sila_job *job, int k);

/* The floats of the MAN snapshots that travel upstream on edge k (from
 * module k to module k - 1, which runs MAN: the params of module k's first
 * unit) into *ret_floats, 0 when module k - 1 runs none. Errors as
 * sila_net_new. */
int sila_plan_edge_snapshot(const struct sila_job *job, int k, uint32_t *ret_floats,
                            struct sila_err *err);

/* The largest data frame (activations with labels and, for collab, soft
 * targets, for InfoPro the input, or gradients) on any edge of job's
 * pipeline, in bytes. */
int sila_plan_max_frame(const struct sila_job *job, size_t *ret_bytes, struct sila_err *err);

#endif
