/* The consensus soft targets of the collab objective (docs/methods.md):
 * per training sample, a moving average of the classifier's softened
 * softmax over the steps that trained on it. The in-process trainer and the
 * coordinator keep one table each, fill every training batch's targets
 * from it and learn from the classifier's logits of that batch, so both
 * kinds of run see the same targets.
 *
 * A sample's target is q = p the first time, then q = (1 - rate) q + rate p,
 * p = softmax(logits / T) with rate and T of the job's [objective]. A row of
 * zeros is a sample without a target yet (the objective then uses CE). The
 * target sent with a batch of epoch e averages the classifier's outputs
 * for that sample in epochs before e (each sample is in one batch per
 * epoch), which is what makes the table independent of timing: a trainer
 * learns every batch of an epoch before it fills the next epoch's. */
#ifndef SILA_COLLAB_H
#define SILA_COLLAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "job.h"

struct collab {
    float *q; /* owned: (n, C); NULL when the job does not use collab */
    uint32_t n;
    int C;
    float rate, T;
};

/* Opens the table of job for its ntrain training samples, all without a
 * target; a job without collab gets an empty table (q NULL) on which every
 * call below is a no-op. Errors: -ENOMEM with err set. */
int collab_open(struct collab *c, const struct sila_job *job, uint32_t ntrain,
                struct sila_err *err);
void collab_close(struct collab *c);

static inline bool collab_on(const struct collab *c)
{
    return c->q != NULL;
}

/* Floats of the whole table (n C), 0 without collab. */
static inline size_t collab_floats(const struct collab *c)
{
    return c->q ? (size_t)c->n * c->C : 0;
}

/* Takes up a table of n floats read from the checkpoint at path (for
 * messages). Errors: -EINVAL when n is not collab_floats(c) (another job's
 * table, or a table where the job keeps none), with err naming path. */
int collab_restore(struct collab *c, const float *q, size_t n, const char *path,
                   struct sila_err *err);

/* Writes the targets of the B samples idx (each < n) into out (B, C). */
void collab_targets(const struct collab *c, const uint32_t *idx, int B, float *out);

/* Learns the classifier's logits (B, C) of the B samples idx. */
void collab_learn(struct collab *c, const uint32_t *idx, int B, const float *logits);

#endif
