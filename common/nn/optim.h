/* Optimizers and learning-rate schedules.
 *
 * An optimizer updates one contiguous block of parameters from the matching
 * block of gradients, keeping its state (momentum, Adam moments) in a third
 * block of sila_optim_state_floats() floats that the caller owns and zeroes
 * before the first step. The update rules follow PyTorch's SGD and AdamW
 * exactly (weight decay included), so runs can be compared with it. */
#ifndef SILA_OPTIM_H
#define SILA_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sila_optim_kind {
    SILA_OPTIM_SGD = 1,
    SILA_OPTIM_ADAMW = 2,
};

struct sila_optim_cfg {
    enum sila_optim_kind kind;
    float momentum;     /* SGD; 0 disables the momentum buffer */
    bool nesterov;      /* SGD; needs momentum > 0 */
    float weight_decay; /* SGD: L2 added to the gradient; AdamW: decoupled */
    float beta1, beta2; /* AdamW */
    float eps;          /* AdamW */
};

/* Floats of optimizer state for n parameters. */
size_t sila_optim_state_floats(const struct sila_optim_cfg *cfg, size_t n);

/* One update of params (n) from grads (n) with learning rate lr; `step` is
 * the 1-based count of updates made with this state (AdamW's bias
 * correction). state holds sila_optim_state_floats(cfg, n) floats. */
void sila_optim_step(const struct sila_optim_cfg *cfg, float lr, uint64_t step, float *params,
                     const float *grads, float *state, size_t n);

enum sila_sched_kind {
    SILA_SCHED_CONSTANT = 1,
    SILA_SCHED_STEP = 2,   /* lr · gamma^floor(t / step_size) */
    SILA_SCHED_COSINE = 3, /* min_lr + (lr - min_lr)(1 + cos(π t / T)) / 2 */
};

struct sila_sched_cfg {
    enum sila_sched_kind kind;
    float lr;              /* base learning rate */
    float min_lr;          /* cosine floor */
    uint64_t step_size;    /* step schedule: steps between decays */
    float gamma;           /* step schedule: decay factor */
    uint64_t warmup_steps; /* linear warm-up from lr/warmup_steps to lr */
    uint64_t total_steps;  /* length of the run, in optimizer steps */
};

/* Learning rate for the 0-based optimizer step t. During the first
 * warmup_steps steps the rate rises linearly: lr·(t+1)/warmup_steps. After
 * warm-up, the schedule runs on t' = t - warmup_steps over
 * T = total_steps - warmup_steps steps. */
float sila_sched_lr(const struct sila_sched_cfg *s, uint64_t t);

#endif
