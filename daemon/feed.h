/* The data side of a run: the datasets, the plan they make of the job, and
 * the batches in the order every trainer feeds them (per-epoch shuffle,
 * augmentation, then the test split in order). Used by the in-process
 * trainer and by the coordinator, so both feed bit-identical batches. */
#ifndef SILA_FEED_H
#define SILA_FEED_H

#include <stdint.h>

#include "dataset.h"
#include "err.h"
#include "job.h"
#include "plan.h"
#include "rng.h"

/* The training samples of one epoch in the order its steps take them. */
struct feed_order {
    uint32_t *idx; /* owned: (ntrain) */
    int epoch;     /* whose order idx holds, -1 before any */
};

struct feed {
    struct sila_dataset train, test;
    struct sila_norm norm;
    struct sila_plan plan;
    struct feed_order order; /* of the current epoch */
    /* owned: (ntest + nholdout) the test split's samples 0, 1, ..., then
     * the held-out ones' (in the training split) */
    uint32_t *eval_idx;
    struct sila_augment aug;
    struct sila_rng aug_rng;
};

/* Opens job's datasets and plans the run. Errors from reading the data or
 * planning, with err set. */
int feed_open(struct feed *f, const struct sila_job *job, struct sila_err *err);
/* Frees what f owns; safe after a failed feed_open. */
void feed_close(struct feed *f);

/* An order for plan's ntrain samples, holding none yet. Errors: -ENOMEM. */
int feed_order_init(struct feed_order *o, const struct sila_plan *plan);
void feed_order_fini(struct feed_order *o);

/* The sample indices of training step t of plan (job->batch of them): the
 * order of t's epoch, which o computes first when it holds another's.
 * Valid until o holds another epoch. */
const uint32_t *feed_order_step(struct feed_order *o, const struct sila_plan *plan, uint64_t t);

/* Writes the batch of training step t (job->batch samples) into x and
 * labels. Steps must come in increasing order (augmentation draws are
 * sequential). Returns the batch's sample indices (job->batch), owned by f
 * and valid until a batch of another epoch. */
const uint32_t *feed_train_batch(struct feed *f, uint64_t t, float *x, int32_t *labels);

/* Writes evaluation batch i (< plan.eval_batches: test batches, then
 * held-out ones) into x and labels; returns its sample count. */
int feed_eval_batch(const struct feed *f, uint32_t i, float *x, int32_t *labels);

#endif
