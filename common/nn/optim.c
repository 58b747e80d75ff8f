/* SGD and AdamW updates and the learning-rate schedules (see optim.h).
 *
 * The updates follow torch.optim.SGD (dampening 0, maximize off) and
 * torch.optim.AdamW term by term: per-element arithmetic in float as PyTorch
 * does for float32 tensors, step-wide scalars (bias corrections, step size,
 * decay factor) in double as PyTorch computes them in Python. */
#include "optim.h"

#include <assert.h>
#include <math.h>

size_t sila_optim_state_floats(const struct sila_optim_cfg *cfg, size_t n)
{
    switch (cfg->kind) {
    case SILA_OPTIM_SGD:
        return cfg->momentum > 0.0f ? n : 0;
    case SILA_OPTIM_ADAMW:
        return 2 * n;
    }
    return 0;
}

/* SGD without momentum: p -= lr (g + wd p). Uses no state. */
static void sgd_plain(const struct sila_optim_cfg *cfg, float lr, float *params, const float *grads,
                      size_t n)
{
    float wd = cfg->weight_decay;
    for (size_t i = 0; i < n; i++)
        params[i] -= lr * (grads[i] + wd * params[i]);
}

/* SGD with momentum buffer buf (n, zeroed before step 1): buf = mu buf + d,
 * then p -= lr buf, or p -= lr (d + mu buf) with Nesterov. A zeroed buffer
 * makes the first step buf = d, which is PyTorch's initialisation. */
static void sgd_momentum(const struct sila_optim_cfg *cfg, float lr, float *params,
                         const float *grads, float *buf, size_t n)
{
    float wd = cfg->weight_decay;
    float mu = cfg->momentum;
    for (size_t i = 0; i < n; i++) {
        float d = grads[i] + wd * params[i];
        buf[i] = mu * buf[i] + d;
        if (cfg->nesterov)
            d = d + mu * buf[i];
        else
            d = buf[i];
        params[i] -= lr * d;
    }
}

/* AdamW with moments m (n) and v (n), zeroed before step 1; step >= 1. */
static void adamw(const struct sila_optim_cfg *cfg, float lr, uint64_t step, float *params,
                  const float *grads, float *m, float *v, size_t n)
{
    assert(step >= 1);
    double b1 = cfg->beta1, b2 = cfg->beta2;
    double bc1 = 1.0 - pow(b1, (double)step);
    double bc2 = 1.0 - pow(b2, (double)step);
    float decay = (float)(1.0 - (double)lr * cfg->weight_decay);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float c1 = (float)(1.0 - b1), c2 = (float)(1.0 - b2);
    float fb1 = cfg->beta1, fb2 = cfg->beta2, eps = cfg->eps;
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        params[i] *= decay;
        m[i] = fb1 * m[i] + c1 * g;
        v[i] = fb2 * v[i] + c2 * g * g;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        params[i] -= step_size * m[i] / denom;
    }
}

void sila_optim_step(const struct sila_optim_cfg *cfg, float lr, uint64_t step, float *params,
                     const float *grads, float *state, size_t n)
{
    switch (cfg->kind) {
    case SILA_OPTIM_SGD:
        /* Nesterov without momentum has no buffer: it is plain SGD. */
        if (cfg->momentum > 0.0f)
            sgd_momentum(cfg, lr, params, grads, state, n);
        else
            sgd_plain(cfg, lr, params, grads, n);
        return;
    case SILA_OPTIM_ADAMW:
        adamw(cfg, lr, step, params, grads, state, state + n, n);
        return;
    }
    assert(!"unknown optimizer kind");
}

/* Schedule value at t steps after warm-up, over a post-warm-up run of T steps.
 * Cosine holds min_lr from t >= T on (also when T is 0); a step schedule with
 * step_size 0 never decays. */
static double sched_after_warmup(const struct sila_sched_cfg *s, uint64_t t, uint64_t T)
{
    switch (s->kind) {
    case SILA_SCHED_CONSTANT:
        return s->lr;
    case SILA_SCHED_STEP:
        if (s->step_size == 0)
            return s->lr;
        return s->lr * pow(s->gamma, (double)(t / s->step_size));
    case SILA_SCHED_COSINE:
        if (t >= T)
            return s->min_lr;
        return s->min_lr +
               ((double)s->lr - s->min_lr) * (1.0 + cos(M_PI * (double)t / (double)T)) / 2.0;
    }
    assert(!"unknown schedule kind");
    return s->lr;
}

float sila_sched_lr(const struct sila_sched_cfg *s, uint64_t t)
{
    if (t < s->warmup_steps)
        return (float)((double)s->lr * (double)(t + 1) / (double)s->warmup_steps);
    uint64_t T = s->total_steps > s->warmup_steps ? s->total_steps - s->warmup_steps : 0;
    return (float)sched_after_warmup(s, t - s->warmup_steps, T);
}
