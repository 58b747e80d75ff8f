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

struct feed {
    struct sila_dataset train, test;
    struct sila_norm norm;
    struct sila_plan plan;
    uint32_t *order;    /* owned: (ntrain) the current epoch's order */
    uint32_t *eval_idx; /* owned: (ntest) 0, 1, 2, ... */
    int order_epoch;    /* epoch whose order is in order[], -1 before any */
    struct sila_augment aug;
    struct sila_rng aug_rng;
};

/* Opens job's datasets and plans the run. Errors from reading the data or
 * planning, with err set. */
int feed_open(struct feed *f, const struct sila_job *job, struct sila_err *err);
/* Frees what f owns; safe after a failed feed_open. */
void feed_close(struct feed *f);

/* Writes the batch of training step t (job->batch samples) into x and
 * labels. Steps must come in increasing order (augmentation draws are
 * sequential). Returns the batch's sample indices (job->batch), owned by f
 * and valid until a batch of another epoch. */
const uint32_t *feed_train_batch(struct feed *f, uint64_t t, float *x, int32_t *labels);

/* Writes evaluation batch i (< plan.eval_batches) into x and labels;
 * returns its sample count. */
int feed_eval_batch(const struct feed *f, uint32_t i, float *x, int32_t *labels);

#endif
