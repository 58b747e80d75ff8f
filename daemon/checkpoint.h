/* Checkpoints of a run: everything it needs to continue exactly from a
 * step boundary (every module's whole state, the step, the augmentation
 * RNG, the evaluations and the length of metrics.jsonl so far), in
 * OUT/checkpoints/step-NNNNNNNNNN.ckpt (sealed files, docs/model-format.md)
 * and OUT/checkpoints/MANIFEST, a text file whose last line names the
 * newest complete checkpoint. A checkpoint is written whole under a
 * temporary name before the manifest names it, so a crash at any point
 * leaves the previous one in force. The two newest are kept. */
#ifndef SILA_CHECKPOINT_H
#define SILA_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "job.h"
#include "module.h"
#include "report.h"
#include "rng.h"

struct checkpoint_module {
    struct sila_module_layout layout;
    float *state; /* params | optimizer | buffers */
    uint64_t counters[SILA_MODULE_COUNTERS];
};

struct checkpoint {
    uint64_t step; /* training steps done */
    uint64_t aug_rng[4];
    uint64_t metrics_bytes;
    struct report_eval *evals; /* owned when read */
    size_t nevals;
    int K;
    struct checkpoint_module mods[SILA_MAX_MODULES]; /* states owned when read */
    float *collab; /* collab's soft targets (docs/methods.md), owned when read; NULL: none */
    size_t ncollab;
};

/* Whether a checkpoint is due once `done` of `total` training steps are
 * done, since_last_s seconds after the previous one (or the start): every
 * job->checkpoint_every steps, every job->checkpoint_minutes, never at the
 * end (the model is written then). */
bool checkpoint_due(const struct sila_job *job, uint64_t done, uint64_t total, double since_last_s);

/* A checkpoint after `step` steps of a run with K modules: the report's
 * evaluations and metrics length, the augmentation RNG; the modules' states
 * are the caller's to fill. */
struct checkpoint checkpoint_at(uint64_t step, struct report *rep, const struct sila_rng *aug,
                                int K);

/* Writes c as the newest checkpoint of job under out_dir and names it in
 * the manifest; ret_path (len bytes) receives its path. Errors: -errno of
 * the failed call, -ENOMEM, with err naming the file. */
int checkpoint_write(const char *out_dir, const struct sila_job *job, const struct checkpoint *c,
                     char *ret_path, size_t len, struct sila_err *err);

/* Whether out_dir records a checkpoint (its manifest exists). */
bool checkpoint_recorded(const char *out_dir);

/* Reads the newest complete checkpoint under dir into c (which then owns
 * its arrays), checking it belongs to job. Errors: -ENOENT when there is
 * none, -EINVAL for a damaged one or another job's, with err saying which. */
int checkpoint_read_latest(const char *dir, const struct sila_job *job, struct checkpoint *c,
                           char *ret_path, size_t len, struct sila_err *err);

/* Checks that module k's state in c (read from path) fits the module m of
 * this run. Errors: -EINVAL naming path and the sizes. */
int checkpoint_check_module(const struct checkpoint *c, const char *path, int k,
                            const struct sila_module_layout *m, struct sila_err *err);

/* Frees what a read checkpoint owns. */
void checkpoint_free(struct checkpoint *c);

#endif
