/* Modules of a job and their local, global and eval steps (see module.h). */
#include "module.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "loss.h"
#include "plan.h"

#define MAX_HEAD_LAYERS 12

int sila_aux_head_specs(enum sila_aux_kind kind, int hidden, struct sila_shape in, int nclasses,
                        struct sila_layer_spec *specs, int *ret_n)
{
    int n = 0;
    bool flat = in.h == 1 && in.w == 1;
    if (kind == SILA_AUX_CONV) {
        if (flat)
            return -EINVAL;
        specs[n] = sila_layer_spec_default(SILA_LAYER_CONV2D);
        specs[n].out = in.c, specs[n].pad = 1, specs[n++].bias = false;
        specs[n++] = sila_layer_spec_default(SILA_LAYER_BATCHNORM);
        specs[n++] = sila_layer_spec_default(SILA_LAYER_RELU);
    }
    if (kind == SILA_AUX_MLP) {
        if (!flat) {
            if (in.h < 2 || in.w < 2 || in.h != in.w)
                return -EINVAL;
            specs[n] = sila_layer_spec_default(SILA_LAYER_AVGPOOL);
            specs[n].kernel = specs[n].stride = in.h / 2;
            n++;
        }
        specs[n++] = sila_layer_spec_default(SILA_LAYER_FLATTEN);
        for (int i = 0; i < 2; i++) {
            specs[n] = sila_layer_spec_default(SILA_LAYER_LINEAR);
            specs[n++].out = hidden;
            specs[n++] = sila_layer_spec_default(SILA_LAYER_BATCHNORM);
            specs[n++] = sila_layer_spec_default(SILA_LAYER_RELU);
        }
    } else {
        specs[n++] = sila_layer_spec_default(SILA_LAYER_GAP);
    }
    specs[n] = sila_layer_spec_default(SILA_LAYER_LINEAR);
    specs[n++].out = nclasses;
    *ret_n = n;
    return 0;
}

static int build_nets(struct sila_module *m, const struct sila_job *job, int k, int max_batch,
                      struct sila_err *err)
{
    const struct sila_job_module *jm = &job->modules[k];
    struct sila_shape in;
    int r = sila_plan_edge_shape(job, k, &in, err);
    if (r)
        return r;
    r = sila_net_new(&m->body, job->layers + jm->first_layer, jm->nlayers, in, max_batch, err);
    if (r || k == job->nmodules - 1)
        return r;
    struct sila_layer_spec specs[MAX_HEAD_LAYERS];
    int n;
    struct sila_shape z = sila_net_out_shape(m->body);
    if (sila_aux_head_specs(jm->aux, jm->aux_hidden, z, job->nclasses, specs, &n))
        return sila_err_set(err, -EINVAL, "module %d: a %s head cannot take input %dx%dx%d", k + 1,
                            sila_aux_kind_name(jm->aux), z.c, z.h, z.w);
    return sila_net_new(&m->head, specs, n, z, max_batch, err);
}

/* One arena for params | grads | optimizer state(s); buffers apart. */
static int alloc_blocks(struct sila_module *m, int max_batch, bool separate_global)
{
    size_t hp = m->head ? sila_net_param_count(m->head) : 0;
    size_t hb = m->head ? sila_net_buffer_count(m->head) : 0;
    m->body_params = sila_net_param_count(m->body);
    m->body_buffers = sila_net_buffer_count(m->body);
    m->nparams = m->body_params + hp;
    size_t nstate =
        sila_optim_state_floats(&m->optim, m->body_params) + sila_optim_state_floats(&m->optim, hp);
    size_t nsets = separate_global ? 2 : 1;
    m->arena = calloc(2 * m->nparams + nsets * nstate + 1, sizeof *m->arena);
    m->buffers = calloc(m->body_buffers + hb + 1, sizeof *m->buffers);
    size_t nout = sila_shape_size(sila_net_out_shape(m->body));
    m->dhead = malloc(sizeof *m->dhead * max_batch * m->nclasses);
    m->dz = malloc(sizeof *m->dz * max_batch * nout);
    if (!m->arena || !m->buffers || !m->dhead || !m->dz)
        return -ENOMEM;
    m->params = m->arena;
    m->grads = m->arena + m->nparams;
    m->opt_state = m->arena + 2 * m->nparams;
    m->opt_state_global = separate_global ? m->opt_state + nstate : NULL;
    sila_net_bind(m->body, m->params, m->grads, m->buffers);
    if (m->head)
        sila_net_bind(m->head, m->params + m->body_params, m->grads + m->body_params,
                      m->buffers + m->body_buffers);
    return 0;
}

int sila_module_new(struct sila_module **ret_m, const struct sila_job *job, int k, int max_batch,
                    struct sila_err *err)
{
    struct sila_module *m = calloc(1, sizeof *m);
    if (!m)
        return sila_err_set(err, -ENOMEM, "out of memory");
    m->index = k;
    m->count = job->nmodules;
    m->nclasses = job->nclasses;
    m->optim = job->optim;
    int r = build_nets(m, job, k, max_batch, err);
    m->heads_in_global = job->heads_in_global;
    if (r == 0 && (r = alloc_blocks(m, max_batch, job->global_state == SILA_GLOBAL_SEPARATE)))
        sila_err_set(err, r, "module %d: out of memory", k + 1);
    if (r) {
        sila_module_free(m);
        return r;
    }
    struct sila_rng init;
    sila_rng_seed(&init, job->seed, 1000 + (uint64_t)k);
    sila_net_init_params(m->body, &init);
    if (m->head)
        sila_net_init_params(m->head, &init);
    sila_rng_seed(&m->rng, job->seed, 2000 + (uint64_t)k);
    *ret_m = m;
    return 0;
}

void sila_module_free(struct sila_module *m)
{
    if (!m)
        return;
    sila_net_free(m->body);
    sila_net_free(m->head);
    free(m->arena);
    free(m->buffers);
    free(m->dhead);
    free(m->dz);
    free(m);
}

/* CE of logits against labels: loss value, hits, and scale·dL/dlogits
 * written (not added) into m->dhead. */
static double head_loss(struct sila_module *m, const float *logits, const int32_t *labels, int B,
                        float smoothing, float scale, int *ret_correct)
{
    memset(m->dhead, 0, sizeof *m->dhead * B * m->nclasses);
    *ret_correct = sila_count_correct(logits, labels, B, m->nclasses);
    return sila_ce_loss(m->dhead, logits, labels, B, m->nclasses, smoothing, scale);
}

/* Optimizer step of the body, and of the head when it took part. Body and
 * head keep separate state and step counts (a head sits out global steps
 * with mu = 0, as a PyTorch parameter without a gradient would); global
 * steps use the second state set when the job keeps one. */
static void update(struct sila_module *m, float lr, bool with_head, bool global)
{
    size_t nb = m->body_params, nh = m->nparams - nb;
    int set = global && m->opt_state_global ? 1 : 0;
    float *state = set ? m->opt_state_global : m->opt_state;
    m->body_updates[set]++;
    sila_optim_step(&m->optim, lr, m->body_updates[set], m->params, m->grads, state, nb);
    if (!with_head || !m->head)
        return;
    m->head_updates[set]++;
    sila_optim_step(&m->optim, lr, m->head_updates[set], m->params + nb, m->grads + nb,
                    state + sila_optim_state_floats(&m->optim, nb), nh);
}

const float *sila_module_local_step(struct sila_module *m, const float *x, const int32_t *labels,
                                    int B, float lr, float smoothing,
                                    struct sila_step_stats *ret_stats)
{
    memset(m->grads, 0, sizeof *m->grads * m->nparams);
    const float *z = sila_net_forward(m->body, x, B, true, &m->rng);
    if (!m->head) {
        ret_stats->loss = head_loss(m, z, labels, B, smoothing, 1.0f, &ret_stats->correct);
        sila_net_backward(m->body, x, m->dhead, NULL, B);
    } else {
        const float *a = sila_net_forward(m->head, z, B, true, &m->rng);
        ret_stats->loss = head_loss(m, a, labels, B, smoothing, 1.0f, &ret_stats->correct);
        sila_net_backward(m->head, z, m->dhead, m->dz, B);
        sila_net_backward(m->body, x, m->dz, NULL, B);
    }
    update(m, lr, true, false);
    return z;
}

const float *sila_module_global_forward(struct sila_module *m, const float *x, int B)
{
    return sila_net_forward(m->body, x, B, true, &m->rng);
}

void sila_module_global_backward(struct sila_module *m, const float *x, const float *dz,
                                 const int32_t *labels, int B, float lr, float smoothing, float mu,
                                 bool apply, float *din, struct sila_step_stats *ret_stats)
{
    memset(m->grads, 0, sizeof *m->grads * m->nparams);
    *ret_stats = (struct sila_step_stats){.loss = NAN};
    const float *z = sila_net_output(m->body);
    size_t nout = (size_t)B * sila_shape_size(sila_net_out_shape(m->body));
    const float *g = dz;
    bool head_used = false;
    if (!dz) {
        ret_stats->loss = head_loss(m, z, labels, B, smoothing, 1.0f, &ret_stats->correct);
        g = m->dhead;
    } else if (m->head && mu > 0.0f) {
        const float *a = sila_net_forward(m->head, z, B, true, &m->rng);
        ret_stats->loss = head_loss(m, a, labels, B, smoothing, mu, &ret_stats->correct);
        sila_net_backward(m->head, z, m->dhead, m->dz, B);
        for (size_t i = 0; i < nout; i++)
            m->dz[i] += dz[i];
        g = m->dz;
        head_used = true;
    } else if (m->head && m->heads_in_global) {
        const float *a = sila_net_forward(m->head, z, B, true, &m->rng);
        ret_stats->loss = head_loss(m, a, labels, B, smoothing, 1.0f, &ret_stats->correct);
        sila_net_backward(m->head, z, m->dhead, NULL, B); /* detached: z gets nothing */
        head_used = true;
    }
    sila_net_backward(m->body, x, g, din, B);
    if (apply)
        update(m, lr, head_used, true);
}

int sila_module_check(const struct sila_module *m, const float *z, const float *din, int B,
                      uint64_t step, struct sila_err *err)
{
    const char *what = NULL;
    if (z && !sila_all_finite(z, (size_t)B * sila_shape_size(sila_net_out_shape(m->body))))
        what = "output";
    else if (din && !sila_all_finite(din, (size_t)B * sila_shape_size(sila_net_in_shape(m->body))))
        what = "input gradient";
    if (!what)
        return 0;
    return sila_err_set(err, -ERANGE,
                        "module %d: NaN or infinite values in its %s at step %llu: the training "
                        "diverged (a lower learning rate may help; the newest checkpoint is from "
                        "before)",
                        m->index + 1, what, (unsigned long long)step);
}

const float *sila_module_eval(struct sila_module *m, const float *x, const int32_t *labels, int B,
                              int *ret_correct)
{
    const float *z = sila_net_forward(m->body, x, B, false, NULL);
    const float *a = m->head ? sila_net_forward(m->head, z, B, false, NULL) : z;
    *ret_correct = sila_count_correct(a, labels, B, m->nclasses);
    return z;
}

struct sila_module_layout sila_module_layout(const struct sila_module *m)
{
    size_t nb = m->body_params, nh = m->nparams - nb;
    size_t nstate = sila_optim_state_floats(&m->optim, nb) + sila_optim_state_floats(&m->optim, nh);
    size_t hb = m->head ? sila_net_buffer_count(m->head) : 0;
    return (struct sila_module_layout){.params = m->nparams,
                                       .optimizer = nstate * (m->opt_state_global ? 2 : 1),
                                       .buffers = m->body_buffers + hb,
                                       .body_params = nb,
                                       .body_buffers = m->body_buffers};
}

void sila_module_get_state(const struct sila_module *m, float *state, uint64_t *counters)
{
    struct sila_module_layout l = sila_module_layout(m);
    memcpy(state, m->params, sizeof *state * l.params);
    memcpy(state + l.params, m->opt_state, sizeof *state * l.optimizer);
    memcpy(state + l.params + l.optimizer, m->buffers, sizeof *state * l.buffers);
    counters[0] = m->body_updates[0], counters[1] = m->body_updates[1];
    counters[2] = m->head_updates[0], counters[3] = m->head_updates[1];
    memcpy(counters + 4, m->rng.s, sizeof m->rng.s);
}

void sila_module_set_state(struct sila_module *m, const float *state, const uint64_t *counters)
{
    struct sila_module_layout l = sila_module_layout(m);
    memcpy(m->params, state, sizeof *state * l.params);
    memcpy(m->opt_state, state + l.params, sizeof *state * l.optimizer);
    memcpy(m->buffers, state + l.params + l.optimizer, sizeof *state * l.buffers);
    m->body_updates[0] = counters[0], m->body_updates[1] = counters[1];
    m->head_updates[0] = counters[2], m->head_updates[1] = counters[3];
    memcpy(m->rng.s, counters + 4, sizeof m->rng.s);
}

int sila_module_state_floats(const struct sila_job *job, int k, size_t *ret_floats,
                             struct sila_err *err)
{
    struct sila_module *m;
    int r = sila_module_new(&m, job, k, 1, err);
    if (r)
        return r;
    struct sila_module_layout l = sila_module_layout(m);
    *ret_floats = l.params + l.optimizer + l.buffers;
    sila_module_free(m);
    return 0;
}
