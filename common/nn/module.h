/* A module: one slice of the network (its body) plus its auxiliary head,
 * with every parameter, gradient and optimizer state in one arena, and the
 * three kinds of step a worker performs on it.
 *
 * The body of the last module ends in the classifier and has no aux head:
 * its loss is the network's. Modules never talk to each other: the caller
 * (the in-process trainer or a worker) carries activations and gradients. */
#ifndef SILA_MODULE_H
#define SILA_MODULE_H

#include <stdbool.h>
#include <stdint.h>

#include "dataset.h"
#include "job.h"
#include "net.h"
#include "optim.h"
#include "rng.h"

struct sila_module {
    int index, count;      /* k of K */
    struct sila_net *body; /* owned */
    struct sila_net *head; /* owned; NULL for the last module */
    struct sila_net *twin; /* owned: the head's siamese twin (objective sila), else NULL */
    /* owned: InfoPro's decoder from the body output to the network's input
     * (logits of its pixels), when the module reconstructs; else NULL */
    struct sila_net *decoder;
    /* Objective cosub: nets of the second pass, bound to the parameters of
     * body and head (owned; else NULL). */
    struct sila_net *body2, *head2;
    struct sila_objective obj; /* of its local steps */
    int nclasses;
    float *arena;          /* owned: params | grads | optimizer states (below) */
    size_t nparams;        /* body + head + twin + decoder */
    size_t body_params;    /* the first body_params of params belong to the body */
    size_t head_params;    /* then the head's, then the twin's and the decoder's */
    float *params, *grads; /* views into arena */
    /* Optimizer state, body's then head's: one set, and a second for global
     * steps when the job asks for separate global state (else NULL). */
    float *opt_state, *opt_state_global;
    bool heads_in_global; /* heads learn in global steps on detached inputs */
    float *buffers;       /* owned: body buffers | head buffers */
    size_t body_buffers;
    struct sila_optim_cfg optim;
    /* optimizer steps taken per state set (AdamW bias correction) */
    uint64_t body_updates[2], head_updates[2]; /* [0] local/shared, [1] global */
    struct sila_rng rng;                       /* dropout / drop-path masks of this module */
    float *dhead;                              /* owned: (max_batch, nclasses) loss gradient */
    float *dz; /* owned: (max_batch, body out) gradient at the output */
    /* Owned, for objectives other than ce (else NULL): the gradient of the
     * twin's or the second pass's logits (max_batch, nclasses) and output
     * (max_batch, body out), and the loss terms' scratch. */
    float *dpeer, *dz2, *scratch;
    /* InfoPro (docs/methods.md): the weights of the reconstruction and of
     * the head's loss at this module's depth (0 and 1 when plain); with a
     * decoder, the normalisation the image is undone by, and owned
     * buffers: the image's pixels (max_batch, input), the gradient of the
     * decoder's output (same) and of its input (max_batch, aux path input). */
    float recon_weight, task_weight;
    struct sila_norm norm;
    float *recon_target, *drecon, *dz_recon;
    /* MAN (docs/methods.md), when the module's objective asks: its head
     * reads y = lb(z) + ema(z), lb a trainable copy of the next module's
     * first unit (params the head's first: it learns with the head), ema a
     * frozen one (owned nets). ema's params follow `target`, the newest
     * snapshot of that unit taken up: ema <- mom ema + (1 - mom) target
     * after every update (its backward computes no weight gradient).
     * Owned: y, its gradient dy and ema's input gradient, (max_batch, unit
     * out / in). */
    struct sila_net *lb, *ema;
    float *y, *dy, *dz_ema;
    /* Views into the buffers, so that a module's state carries them: ema's
     * params and target (take_floats each, when lb), and `sent`, the last
     * snapshot of this module's own first unit (sent_floats, when the
     * module before it runs MAN; else NULL). */
    float *ema_params, *target, *sent;
    size_t take_floats, sent_floats;
    /* Owned when the job's global steps are late (job.global_lag) and the
     * module is not the last: room for its parameters while a late
     * backward runs on the parameters of its step (nparams floats). */
    float *late_save;
};

/* Builds module k of job for batches of up to max_batch, with its input
 * shape following from the modules before it, and initialises its
 * parameters from (job seed, k). Errors: -EINVAL, -ENOMEM, with err set. */
int sila_module_new(struct sila_module **ret_m, const struct sila_job *job, int k, int max_batch,
                    struct sila_err *err);
/* Frees m and all it owns; NULL is safe. */
void sila_module_free(struct sila_module *m);

/* The whole state of a module, what it needs to continue exactly: floats
 * laid out params (body then head) | optimizer state (all sets) | buffers
 * (body then head), and counters: body and head update counts per state
 * set, then the RNG's words. */
#define SILA_MODULE_COUNTERS 8
struct sila_module_layout {
    size_t params, optimizer, buffers; /* floats of each part */
    size_t body_params, body_buffers;
};
struct sila_module_layout sila_module_layout(const struct sila_module *m);
/* The layout of module k of job (built for one sample to count its
 * floats). Errors as sila_module_new. */
int sila_module_job_layout(const struct sila_job *job, int k, struct sila_module_layout *ret,
                           struct sila_err *err);
/* Copies the state into state (params + optimizer + buffers floats) and
 * counters (SILA_MODULE_COUNTERS). */
void sila_module_get_state(const struct sila_module *m, float *state, uint64_t *counters);
/* Restores a state from sila_module_get_state of the same module. */
void sila_module_set_state(struct sila_module *m, const float *state, const uint64_t *counters);

/* MAN's snapshots (docs/methods.md): module k + 1 copies its first unit
 * into `sent` after every training step it learns that brings its count of
 * steps to a multiple of module k's man_period P, and module k takes up,
 * after every step it learns that brings its own count to a multiple t of
 * P, the snapshot taken at t - P (stage.c holds them between). */
/* Whether module m runs MAN (takes snapshots up), and whether it sends
 * them (the module before it runs MAN). */
static inline bool sila_module_man_takes(const struct sila_module *m)
{
    return m->lb != NULL;
}
static inline bool sila_module_man_sends(const struct sila_module *m)
{
    return m->sent != NULL;
}
/* Copies the module's first unit into its `sent` snapshot and returns it
 * (m->sent_floats floats). Only for a module that sends. */
const float *sila_module_man_snapshot(struct sila_module *m);
/* The snapshot ema follows from now on: m->take_floats floats, copied.
 * Only for a module that takes. */
void sila_module_man_take(struct sila_module *m, const float *snapshot);

/* Result of one step on one module. */
struct sila_step_stats {
    double loss; /* the module's own loss (aux head, or the network's for the last);
                    NaN when the step computed none */
    int correct; /* samples its head classified right */
};

/* The local objective of m (its job module's, docs/methods.md) on x (B, in)
 * with labels and, for collab, soft targets (B, nclasses; rows of zeros for
 * samples without one; NULL: none at all), and, for a module that
 * reconstructs (m->decoder), the network's input batch `image` (B, the
 * job's input shape, normalised; else unused, may be NULL): forward in
 * train mode through body and head (twice for cosub, the twin for sila,
 * the decoder for InfoPro), backward within the module. Writes every parameter's gradient into
 * m->grads (zeroed first) and the value and the head's hits into *ret_stats; updates nothing else
 * but the batch-norm running statistics and m->rng. Returns the body output (B, out) of the first
 * pass, valid until the next forward. */
const float *sila_module_local_grad(struct sila_module *m, const float *x, const int32_t *labels,
                                    const float *targets, const float *image, int B,
                                    float smoothing, struct sila_step_stats *ret_stats);

/* Local step (greedy, DGL): sila_module_local_grad, then the update of
 * body, head and twin. Returns the body output as above. */
const float *sila_module_local_step(struct sila_module *m, const float *x, const int32_t *labels,
                                    const float *targets, const float *image, int B, float lr,
                                    float smoothing, struct sila_step_stats *ret_stats);

/* Global step, forward half: body forward in train mode. Returns z (B, out). */
const float *sila_module_global_forward(struct sila_module *m, const float *x, int B);
/* Global step, backward half. dz (B, out) is d(loss)/dz from the module
 * above, or NULL for the last module, whose own CE loss starts the pass.
 * With local_weight mu > 0 (modules with a head), mu x the head's CE loss
 * is added to the objective; with mu = 0 and heads_in_global, the head
 * learns its CE on the detached output. Writes d(loss)/dx into din (B, in)
 * unless NULL, then, when `apply`, updates (with the global state set when
 * separate). Without `apply` the module only passes the gradient on: a
 * distributed pipeline replaying a step this module has already learned
 * from (docs/protocol.md, "Replacing a worker"). */
void sila_module_global_backward(struct sila_module *m, const float *x, const float *dz,
                                 const int32_t *labels, int B, float lr, float smoothing, float mu,
                                 bool apply, float *din, struct sila_step_stats *ret_stats);

/* What a late global backward (job.global_lag, docs/methods.md) keeps of
 * the module from its step's forward: every parameter as it was (params,
 * m->nparams floats) and a body of its own (the body's layers, bound to
 * the module's blocks) that ran the forward and holds its activations. */
struct sila_module_then {
    float *params;
    struct sila_net *body;
};
/* Allocates *then for m (its body borrows the scratch of m's:
 * sila_net_new_like); on failure it is left for sila_module_then_fini.
 * Errors: -ENOMEM, those of sila_net_new. */
int sila_module_then_init(const struct sila_module *m, struct sila_module_then *then,
                          struct sila_err *err);
void sila_module_then_fini(struct sila_module_then *then);
/* Global step, forward half, when its backward comes later: the
 * parameters into then->params, then the forward of
 * sila_module_global_forward through then->body. x must stay as it is
 * until sila_module_global_late (a block keeps its input for its
 * backward). Returns z (B, out). */
const float *sila_module_global_forward_kept(struct sila_module *m, const float *x, int B,
                                             struct sila_module_then *then);
/* Global step, backward half, steps after its forward (job.global_lag):
 * the gradient sila_module_global_backward would have computed right after
 * sila_module_global_forward_kept (through then->body, on the parameters
 * of then), applied when `apply` to the module's parameters as they are
 * now. x is the forward's input; arguments otherwise as
 * sila_module_global_backward. Only for a module with late_save. */
void sila_module_global_late(struct sila_module *m, const struct sila_module_then *then,
                             const float *x, const float *dz, const int32_t *labels, int B,
                             float lr, float smoothing, float mu, bool apply, float *din,
                             struct sila_step_stats *ret_stats);
/* Whether a global step with local weight mu involves m's aux head (its
 * loss in the objective, or its learning with heads_in_global). Without
 * it, the input pass of a late step changes nothing of m that outlives
 * the step (m->grads are cleared at every step), so it may run any time
 * between the step's forward and the parameter pass. */
bool sila_module_global_uses_head(const struct sila_module *m, float mu);
/* The same step in two passes, for a module whose input gradient leaves
 * for another worker: sila_module_late_input writes din (not NULL) the way
 * sila_module_global_late does, without the parameter gradients, so that
 * it can be sent before they are computed; sila_module_late_params then
 * computes them and, when `apply`, updates as sila_module_global_late
 * does (nothing without `apply`). Between the two nothing else may run on
 * m: *ret_pass points into its scratch (or at dz, which must stay). The
 * two passes write the weights and din of sila_module_global_late, bit for
 * bit (the layers' input gradients do not depend on whether their
 * parameter gradients are computed; distributed.sh checks it). */
struct sila_late_pass {
    const float *dout; /* d(loss)/d(body output): dz, or with the head's part added */
    bool head_used;
};
void sila_module_late_input(struct sila_module *m, const struct sila_module_then *then,
                            const float *x, const float *dz, const int32_t *labels, int B,
                            float smoothing, float mu, float *din, struct sila_late_pass *ret_pass,
                            struct sila_step_stats *ret_stats);
void sila_module_late_params(struct sila_module *m, const struct sila_module_then *then,
                             const float *x, const struct sila_late_pass *p, int B, float lr,
                             bool apply);

/* Checks that a training step of module m, step `step`, left finite values
 * in its output z (B samples) and in the gradient of its input din, each
 * unless NULL: a NaN or an infinity means the training has diverged.
 * Errors: -ERANGE, with err naming the module and the step. */
int sila_module_check(const struct sila_module *m, const float *z, const float *din, int B,
                      uint64_t step, struct sila_err *err);

/* Eval: forward x in eval mode; counts head (or classifier) hits in
 * *ret_correct and returns the body output. */
const float *sila_module_eval(struct sila_module *m, const float *x, const int32_t *labels, int B,
                              int *ret_correct);

#endif
