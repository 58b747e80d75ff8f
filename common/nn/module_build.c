/* Modules of a job: building one (its nets, from the job; one arena for
 * its params, gradients and optimizer state), freeing it, and its whole
 * state as checkpoints and replacements carry it (see module.h). The steps
 * are module.c's. */
#include "module.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "heads.h"
#include "kernels.h"
#include "objective.h"
#include "plan.h"

/* Whether the objective runs a second pass of body and head (cosub). */
static bool second_pass(const struct sila_objective *o)
{
    return o->kind == SILA_OBJ_COSUB && o->cosub_weight > 0.0f;
}

/* Whether the objective gives the head a twin (sila). */
static bool has_twin(const struct sila_objective *o)
{
    return o->kind == SILA_OBJ_SILA && (o->sila_weight > 0.0f || o->dml_weight > 0.0f);
}
/* InfoPro's decoder from the aux path's input z (sila_decoder_specs). */
static int build_decoder(struct sila_module *m, const struct sila_job *job, struct sila_shape z,
                         int max_batch, struct sila_err *err)
{
    struct sila_layer_spec specs[SILA_DECODER_SPECS];
    if (sila_decoder_specs(job, m->obj.recon_width, specs))
        return sila_err_set(err, -EINVAL,
                            "module %d: reconstruction needs a square input, the job's is %dx%d",
                            m->index + 1, job->input.h, job->input.w);
    m->norm = sila_dataset_default_norm(job->dataset);
    return sila_net_new(&m->decoder, specs, SILA_DECODER_SPECS, z, max_batch, err);
}

/* MAN's two copies of module k + 1's first unit on the body output z. */
static int build_man(struct sila_module *m, const struct sila_job *job, int k, struct sila_shape z,
                     int max_batch, struct sila_err *err)
{
    struct sila_layer_spec unit[SILA_MAN_MAX_SPECS];
    int n, r;
    if (sila_man_unit_specs(job, k, unit, &n))
        return sila_err_set(err, -EINVAL, "module %d: MAN finds no unit to copy in module %d",
                            k + 1, k + 2);
    if ((r = sila_net_new(&m->lb, unit, n, z, max_batch, err)) ||
        (r = sila_net_new(&m->ema, unit, n, z, max_batch, err)))
        return r;
    m->take_floats = sila_net_param_count(m->lb);
    return 0;
}

/* The floats of the snapshots module k sends module k - 1 (0: it runs no MAN). */
static int count_sent(struct sila_module *m, const struct sila_job *job, int k,
                      struct sila_err *err)
{
    uint32_t n;
    int r = sila_plan_edge_snapshot(job, k, &n, err);
    m->sent_floats = n;
    return r;
}

static int build_nets(struct sila_module *m, const struct sila_job *job, int k, int max_batch,
                      struct sila_err *err)
{
    const struct sila_job_module *jm = &job->modules[k];
    const struct sila_layer_spec *layers = job->layers + jm->first_layer;
    struct sila_shape in;
    int r = sila_plan_edge_shape(job, k, &in, err);
    if (r || (r = sila_net_new(&m->body, layers, jm->nlayers, in, max_batch, err)))
        return r;
    if (second_pass(&m->obj) &&
        (r = sila_net_new(&m->body2, layers, jm->nlayers, in, max_batch, err)))
        return r;
    if ((r = count_sent(m, job, k, err)))
        return r;
    if (k == job->nmodules - 1)
        return 0;
    struct sila_layer_spec specs[SILA_AUX_MAX_SPECS];
    int n;
    struct sila_shape z = sila_net_out_shape(m->body);
    if (m->obj.man_momentum > 0.0f) {
        if ((r = build_man(m, job, k, z, max_batch, err)))
            return r;
        z = sila_net_out_shape(m->lb);
    }
    if (sila_aux_head_specs(job, k, z, specs, &n))
        return sila_err_set(err, -EINVAL, "module %d: a %s head cannot take input %dx%dx%d", k + 1,
                            sila_aux_kind_name(jm->objective.aux), z.c, z.h, z.w);
    if ((r = sila_net_new(&m->head, specs, n, z, max_batch, err)))
        return r;
    if (has_twin(&m->obj) && (r = sila_net_new(&m->twin, specs, n, z, max_batch, err)))
        return r;
    if (second_pass(&m->obj) && (r = sila_net_new(&m->head2, specs, n, z, max_batch, err)))
        return r;
    if (m->recon_weight > 0.0f)
        r = build_decoder(m, job, z, max_batch, err);
    return r;
}

static size_t param_count(const struct sila_net *net)
{
    return net ? sila_net_param_count(net) : 0;
}

static size_t buffer_count(const struct sila_net *net)
{
    return net ? sila_net_buffer_count(net) : 0;
}

/* Floats of one optimizer state set: body's, head's, twin's and decoder's. */
static size_t state_floats(const struct sila_module *m)
{
    size_t nb = m->body_params, nh = m->head_params, nt = m->nparams - nb - nh;
    return sila_optim_state_floats(&m->optim, nb) + sila_optim_state_floats(&m->optim, nh) +
           sila_optim_state_floats(&m->optim, nt);
}

/* Floats of scratch the objective's loss terms need for batches of max_batch. */
static size_t scratch_floats(const struct sila_module *m, int max_batch)
{
    size_t need = 2 * (size_t)max_batch * m->nclasses;
    if (m->obj.redundancy > 0.0f) {
        size_t r = sila_redundancy_scratch(sila_net_out_shape(m->body));
        need = r > need ? r : need;
    }
    for (int i = 0; m->obj.kernel_similarity > 0.0f && i < sila_net_tensor_count(m->body); i++) {
        const struct sila_tensor *t = sila_net_tensor(m->body, i);
        if (!sila_tensor_is_filter_bank(t))
            continue;
        size_t oc = (size_t)t->shape[0], fan = t->n / oc, f = oc * (fan + oc + 1) + fan;
        need = f > need ? f : need;
    }
    return need;
}

/* The decoder's buffers, for batches of max_batch (see struct sila_module). */
static int alloc_recon(struct sila_module *m, int max_batch)
{
    size_t nin = (size_t)max_batch * sila_shape_size(sila_net_out_shape(m->decoder));
    size_t nout = (size_t)max_batch * sila_shape_size(sila_net_in_shape(m->decoder));
    m->recon_target = sila_floats_alloc(nin);
    m->drecon = sila_floats_alloc(nin);
    m->dz_recon = sila_floats_alloc(nout);
    return m->recon_target && m->drecon && m->dz_recon ? 0 : -ENOMEM;
}

/* MAN's buffers for batches of max_batch (see struct sila_module). */
static int alloc_man(struct sila_module *m, int max_batch)
{
    size_t ny = (size_t)max_batch * sila_shape_size(sila_net_out_shape(m->lb));
    size_t nz = (size_t)max_batch * sila_shape_size(sila_net_in_shape(m->lb));
    m->y = sila_floats_alloc(ny);
    m->dy = sila_floats_alloc(ny);
    m->dz_ema = sila_floats_alloc(nz);
    return m->y && m->dy && m->dz_ema ? 0 : -ENOMEM;
}

/* Floats of the aux side's buffers, after the body's: lb | head | twin |
 * decoder | ema statistics, then MAN's ema params, target and sent. */
static size_t aux_buffer_floats(const struct sila_module *m)
{
    return buffer_count(m->lb) + buffer_count(m->head) + buffer_count(m->twin) +
           buffer_count(m->decoder) + buffer_count(m->ema) + 2 * m->take_floats + m->sent_floats;
}

/* One arena for params | grads | optimizer state(s); buffers apart. Params
 * are laid out body | lb, head | twin | decoder, buffers as
 * aux_buffer_floats says; the second pass's nets share the body's and the
 * head's. */
static int alloc_blocks(struct sila_module *m, int max_batch, bool separate_global)
{
    size_t hb = buffer_count(m->head), tb = buffer_count(m->twin), tp = param_count(m->twin);
    size_t db = buffer_count(m->decoder), lp = param_count(m->lb), lb = buffer_count(m->lb);
    m->body_params = sila_net_param_count(m->body);
    m->head_params = lp + param_count(m->head);
    m->body_buffers = sila_net_buffer_count(m->body);
    m->nparams = m->body_params + m->head_params + tp + param_count(m->decoder);
    size_t nstate = state_floats(m);
    size_t nsets = separate_global ? 2 : 1;
    m->arena = sila_floats_alloc(2 * m->nparams + nsets * nstate);
    m->buffers = sila_floats_alloc(m->body_buffers + aux_buffer_floats(m));
    size_t nout = sila_shape_size(sila_net_out_shape(m->body));
    m->dhead = sila_floats_alloc((size_t)max_batch * m->nclasses);
    m->dz = sila_floats_alloc(max_batch * nout);
    if (!m->arena || !m->buffers || !m->dhead || !m->dz)
        return -ENOMEM;
    if (!sila_objective_is_plain(&m->obj)) {
        m->dpeer = sila_floats_alloc((size_t)max_batch * m->nclasses);
        m->dz2 = sila_floats_alloc(max_batch * nout);
        m->scratch = sila_floats_alloc(scratch_floats(m, max_batch));
        if (!m->dpeer || !m->dz2 || !m->scratch)
            return -ENOMEM;
    }
    if ((m->decoder && alloc_recon(m, max_batch)) || (m->lb && alloc_man(m, max_batch)))
        return -ENOMEM;
    m->params = m->arena;
    m->grads = m->arena + m->nparams;
    m->opt_state = m->arena + 2 * m->nparams;
    m->opt_state_global = separate_global ? m->opt_state + nstate : NULL;
    size_t h = m->body_params + lp, t = m->body_params + m->head_params;
    float *lbuf = m->buffers + m->body_buffers, *hbuf = lbuf + lb;
    sila_net_bind(m->body, m->params, m->grads, m->buffers);
    if (m->body2)
        sila_net_bind(m->body2, m->params, m->grads, m->buffers);
    if (m->head)
        sila_net_bind(m->head, m->params + h, m->grads + h, hbuf);
    if (m->head2)
        sila_net_bind(m->head2, m->params + h, m->grads + h, hbuf);
    if (m->twin)
        sila_net_bind(m->twin, m->params + t, m->grads + t, hbuf + hb);
    if (m->decoder)
        sila_net_bind(m->decoder, m->params + t + tp, m->grads + t + tp, hbuf + hb + tb);
    float *man = hbuf + hb + tb + db + buffer_count(m->ema);
    if (m->lb) {
        sila_net_bind(m->lb, m->params + m->body_params, m->grads + m->body_params, lbuf);
        m->ema_params = man, m->target = man + m->take_floats;
        sila_net_bind(m->ema, m->ema_params, NULL, hbuf + hb + tb + db); /* frozen */
    }
    if (m->sent_floats)
        m->sent = man + 2 * m->take_floats;
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
    m->obj = job->modules[k].objective;
    m->task_weight = 1.0f;
    if (k < job->nmodules - 1)
        sila_objective_infopro_weights(&m->obj, k, job->nmodules, &m->recon_weight,
                                       &m->task_weight);
    int r = build_nets(m, job, k, max_batch, err);
    m->heads_in_global = job->heads_in_global;
    if (r == 0 && (r = alloc_blocks(m, max_batch, job->global_state == SILA_GLOBAL_SEPARATE)))
        sila_err_set(err, r, "module %d: out of memory", k + 1);
    if (r == 0 && job->global_lag > 0 && k < job->nmodules - 1 &&
        !(m->late_save = malloc(sizeof *m->late_save * (m->nparams + 1))))
        r = sila_err_set(err, -ENOMEM, "module %d: out of memory", k + 1);
    if (r) {
        sila_module_free(m);
        return r;
    }
    struct sila_rng init;
    sila_rng_seed(&init, job->seed, 1000 + (uint64_t)k);
    sila_net_init_params(m->body, &init);
    if (m->head)
        sila_net_init_params(m->head, &init);
    if (m->twin)
        sila_net_init_params(m->twin, &init);
    if (m->decoder)
        sila_net_init_params(m->decoder, &init);
    if (m->lb) {
        sila_net_init_params(m->lb, &init);
        sila_net_init_params(m->ema, &init);
        memcpy(m->target, m->ema_params, sizeof *m->target * m->take_floats);
    }
    if (m->sent)
        sila_module_man_snapshot(m);
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
    sila_net_free(m->twin);
    sila_net_free(m->decoder);
    sila_net_free(m->body2);
    sila_net_free(m->head2);
    sila_net_free(m->lb);
    sila_net_free(m->ema);
    free(m->y);
    free(m->dy);
    free(m->dz_ema);
    free(m->arena);
    free(m->buffers);
    free(m->dhead);
    free(m->dz);
    free(m->dpeer);
    free(m->dz2);
    free(m->scratch);
    free(m->recon_target);
    free(m->drecon);
    free(m->dz_recon);
    free(m->late_save);
    free(m);
}

int sila_module_then_init(const struct sila_module *m, struct sila_module_then *then,
                          struct sila_err *err)
{
    memset(then, 0, sizeof *then);
    int r = sila_net_new_like(&then->body, m->body, err);
    if (r)
        return r;
    sila_net_bind(then->body, m->params, m->grads, m->buffers);
    if (!(then->params = malloc(sizeof *then->params * m->nparams)))
        return sila_err_set(err, -ENOMEM, "module %d: out of memory", m->index + 1);
    return 0;
}

void sila_module_then_fini(struct sila_module_then *then)
{
    sila_net_free(then->body);
    free(then->params);
    memset(then, 0, sizeof *then);
}

struct sila_module_layout sila_module_layout(const struct sila_module *m)
{
    return (struct sila_module_layout){.params = m->nparams,
                                       .optimizer = state_floats(m) * (m->opt_state_global ? 2 : 1),
                                       .buffers = m->body_buffers + aux_buffer_floats(m),
                                       .body_params = m->body_params,
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

int sila_module_job_layout(const struct sila_job *job, int k, struct sila_module_layout *ret,
                           struct sila_err *err)
{
    struct sila_module *m;
    int r = sila_module_new(&m, job, k, 1, err);
    if (r)
        return r;
    *ret = sila_module_layout(m);
    sila_module_free(m);
    return 0;
}
