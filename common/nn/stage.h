/* A stage: modules first..last of a job, stepped in pipeline order for a
 * local, global or evaluation batch. What a worker hosts; the in-process
 * trainer is all modules in one stage. The step sequence, the checks of
 * every module's output and gradient, and the replay rule after a restart
 * live here once.
 *
 * The replay rule (docs/protocol.md, "Replacing a worker"): a module whose
 * progress (sila_stage_resume) says it has learned a training step already
 * passes that step's batch on without learning from it or reporting it (a
 * local step: forward only; a global step: forward and backward without an
 * update); an evaluation batch it has reported already is evaluated and
 * passed on, not reported again. */
#ifndef SILA_STAGE_H
#define SILA_STAGE_H

#include <stdint.h>

#include "module.h"

/* Snapshots a module running MAN holds at most: the one it waits for and
 * those its neighbour took since (one, as the pipeline goes: it cannot be
 * more than a step ahead), with room to spare. */
#define SILA_MAN_INBOX 4

/* job.global_lag: a global step module k went forward on and has yet to
 * learn from (docs/methods.md, "Global steps that do not drain the
 * pipeline"). The buffers are owned, allocated at first use and kept. */
struct sila_late {
    uint64_t step;
    int B;
    float lr, smoothing, mu; /* the step's */
    bool has_dz;
    bool sent; /* d(loss)/d(its input) has gone upstream (sila_stage_late_send) */
    /* the input of its forward: x_own, or the kept output of module k-1 in
     * the same stage, whose entry outlives this one (late_push) */
    const float *x;
    float *x_own;    /* (max_batch, module input), or NULL until a copy is needed */
    int32_t *labels; /* (max_batch); NULL: the entry's buffers are not allocated */
    float *dz;       /* (max_batch, module output): the gradient from above, once it came */
    struct sila_module_then then;
};

struct sila_stage {
    const struct sila_job *job; /* borrowed */
    int first, last;            /* 0-based module indices */
    int max_batch;
    struct sila_module *mods[SILA_MAX_MODULES]; /* owned, first..last set */
    /* owned, for the modules k >= 1 of the stage: d(loss)/d(input of
     * module k) of a global step, (max_batch, its input) */
    float *din[SILA_MAX_MODULES];
    /* owned when the job's wire_dtype is not f32, for the modules k < K-1
     * of the stage: module k's training output rounded to it (max_batch,
     * its output), what the next module takes (din[k] is rounded in place) */
    float *bound[SILA_MAX_MODULES];
    const float *in[SILA_MAX_MODULES]; /* a global step's inputs, between its halves */
    /* the replay rule: the next training step and evaluation batch (round
     * * eval batches + batch) each module has not learned or reported */
    uint64_t next_step[SILA_MAX_MODULES], next_test[SILA_MAX_MODULES];
    /* MAN: the snapshots module k has received and not yet taken up
     * (tags: the sender's count of steps when it took them) */
    struct sila_man_inbox {
        int n;
        uint64_t tag[SILA_MAN_INBOX];
        float *v[SILA_MAN_INBOX]; /* owned, take_floats each */
    } inbox[SILA_MAX_MODULES];
    /* job.global_lag: module k's global steps awaiting their backward, in
     * order of step, a ring of cap = the lag of module k (owned; none for
     * the last module, which learns at once) */
    struct sila_late_ring {
        int cap, first, n;
        struct sila_late *e;
    } late[SILA_MAX_MODULES];
};

/* What a batch brings besides its input: labels (B), collab's soft targets
 * (B, nclasses; NULL: none) and the network's input (B, the job's input
 * shape: what a reconstructing module's target is; NULL when no module of
 * the stage reconstructs). */
struct sila_batch_side {
    const int32_t *labels;
    const float *targets;
    const float *image;
};

/* Called after each module of the stage learned from a training step (its
 * loss and hits) or evaluated a batch (loss NaN, its head's hits), with
 * the caller's ctx; what it returns other than 0 ends the step with that
 * error. Modules that replay a step are not reported. */
struct sila_stage_sink {
    int (*done)(void *ctx, int k, const struct sila_step_stats *st, struct sila_err *err);
    /* MAN across the stage's edges (NULL for a stage of every module):
     * module `first` sends its snapshot `tag` (v, n floats) to the module
     * before the stage; module `last` must have a snapshot of tag >= `tag`
     * from the module after the stage, which this delivers
     * (sila_stage_man_put) before it returns 0. */
    int (*snapshot)(void *ctx, uint64_t tag, const float *v, size_t n, struct sila_err *err);
    int (*await_snapshot)(void *ctx, uint64_t tag, struct sila_err *err);
    /* Late global steps (job.global_lag) across the stage's edges (NULL
     * for a stage of every module): module `first` sends d(loss)/d(its
     * input) of global step `step` (B samples) to the module before the
     * stage; module `last` must have the gradient at its output
     * of global step `step` from the module after the stage, which this
     * delivers (sila_stage_late_put) before it returns 0. */
    int (*gradient)(void *ctx, uint64_t step, int B, const float *din, struct sila_err *err);
    int (*await_gradient)(void *ctx, uint64_t step, struct sila_err *err);
    void *ctx;
};

/* Builds modules first..last of job (kept borrowed: it must outlive the
 * stage) for batches of up to max_batch, every module yet to learn step 0.
 * On failure the stage is left for sila_stage_fini. Errors as
 * sila_module_new, -ENOMEM. */
int sila_stage_init(struct sila_stage *st, const struct sila_job *job, int first, int last,
                    int max_batch, struct sila_err *err);
/* Frees what the stage owns; safe on a zeroed or partly built stage. */
void sila_stage_fini(struct sila_stage *st);

/* The progress of module k after a restart: its next training step and
 * evaluation batch. Forgets the late global steps module k held (their
 * batches come again, or their gradient is lost: docs/protocol.md). */
void sila_stage_resume(struct sila_stage *st, int k, uint64_t next_step, uint64_t next_test);

/* MAN at a start or restart, after sila_stage_resume: forgets every
 * snapshot received, and has each module after the stage's first that
 * sends snapshots offer its newest (`sent`, tagged with its count of steps
 * rounded down to its receiver's period) to the module before it. */
void sila_stage_man_start(struct sila_stage *st);
/* The same offer of module `first` to the module before the stage, through
 * sink->snapshot (a worker's, when the worker upstream asks). Errors: the
 * sink's. */
int sila_stage_man_offer_up(struct sila_stage *st, const struct sila_stage_sink *sink,
                            struct sila_err *err);
/* A snapshot of tag `tag` (n floats) for module `last` from the module
 * after the stage. Errors: -EPROTO when the module takes none, of another
 * size, or holds SILA_MAN_INBOX already (err says so). */
int sila_stage_man_put(struct sila_stage *st, uint64_t tag, const float *v, size_t n,
                       struct sila_err *err);
/* Whether module `last` holds a snapshot of tag >= want. */
bool sila_stage_man_holds(const struct sila_stage *st, uint64_t want);
/* Floats of the snapshots module `last` takes from the module after the
 * stage (0: none), and that module `first` sends to the one before. */
size_t sila_stage_man_in_floats(const struct sila_stage *st);
size_t sila_stage_man_out_floats(const struct sila_stage *st);

/* Local step `step` of B samples x (B, input of module first): each module
 * first learns from the late global steps due (job.global_lag), then by
 * its local objective (or replays), then the sink hears of it.
 * Writes the last module's output (B, out), valid until its next forward,
 * into *ret_z. Errors: the sink's, or -ERANGE for a diverged module. */
int sila_stage_local(struct sila_stage *st, const float *x, const struct sila_batch_side *side,
                     int B, uint64_t step, float lr, float smoothing,
                     const struct sila_stage_sink *sink, const float **ret_z, struct sila_err *err);

/* Global step `step` when the job's global steps are late
 * (job.global_lag > 0): each module first learns from the late global
 * steps due, then goes forward and keeps what it needs to learn from this
 * one later; the classifier's module learns at once and passes its
 * gradient to the module before it. labels (B) are the step's. The output (B,
 * out) into *ret_z. Errors: the sink's, -ERANGE. */
int sila_stage_global_late(struct sila_stage *st, const float *x, const int32_t *labels, int B,
                           uint64_t step, float lr, float smoothing, float mu,
                           const struct sila_stage_sink *sink, const float **ret_z,
                           struct sila_err *err);
/* The gradient at module `last`'s output of late global step `step` (n
 * floats) from the module after the stage. Errors: -EPROTO when module
 * `last` awaits no gradient of that step, or one of another size. */
int sila_stage_late_put(struct sila_stage *st, uint64_t step, const float *dz, size_t n,
                        struct sila_err *err);
/* Sends, through sink->gradient, d(loss)/d(input of module first) of
 * every late global step whose output gradient module first (> 0) holds
 * and which leaves its aux head out (sila_module_global_uses_head), oldest
 * first: as soon as it can be computed rather than at the step the module
 * learns from it, so that the worker before waits less for it. That
 * gradient depends only on what the step kept, so the bits are those sent
 * at the due step; the module still learns (its parameter pass) at its
 * due step. A distributed worker calls this after each batch and after
 * taking gradients from downstream. Errors: those of sink->gradient,
 * -ERANGE (a gradient that is not finite). */
int sila_stage_late_send(struct sila_stage *st, const struct sila_stage_sink *sink,
                         struct sila_err *err);
/* Whether module `last` awaits the gradient of late global step `step`. */
bool sila_stage_late_awaits(const struct sila_stage *st, uint64_t step);

/* Global step `step`, forward half: every module's body in train mode; the
 * output (B, out) into *ret_z. Errors: -ERANGE for a diverged module. */
int sila_stage_global_forward(struct sila_stage *st, const float *x, int B, uint64_t step,
                              const float **ret_z, struct sila_err *err);
/* Global step `step`, backward half, after the forward half of the same
 * step: dz (B, out) is d(loss)/d(output) from the module after the stage,
 * NULL when the stage ends in the classifier. Each module learns (or
 * replays), then the sink hears of it. Writes d(loss)/d(input of module
 * first) into *ret_din (NULL for module 0, which passes none on). Errors:
 * the sink's, -ERANGE. */
int sila_stage_global_backward(struct sila_stage *st, const float *dz, const int32_t *labels, int B,
                               uint64_t step, float lr, float smoothing, float mu,
                               const struct sila_stage_sink *sink, const float **ret_din,
                               struct sila_err *err);

/* Evaluation batch number pos (round * eval batches + batch) of B samples:
 * every module in eval mode, the sink hearing of each module's hits unless
 * it reported pos before; the output into *ret_z. Errors: the sink's. */
int sila_stage_eval(struct sila_stage *st, const float *x, const int32_t *labels, int B,
                    uint64_t pos, const struct sila_stage_sink *sink, const float **ret_z,
                    struct sila_err *err);

#endif
