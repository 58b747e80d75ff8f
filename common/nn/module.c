/* A module's local, global and eval steps (see module.h; building one:
 * module_build.c). */
#include "module.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "loss.h"
#include "objective.h"

/* CE of logits against labels: loss value, hits, and scale·dL/dlogits
 * written (not added) into m->dhead. */
static double head_loss(struct sila_module *m, const float *logits, const int32_t *labels, int B,
                        float smoothing, float scale, int *ret_correct)
{
    memset(m->dhead, 0, sizeof *m->dhead * B * m->nclasses);
    *ret_correct = sila_count_correct(logits, labels, B, m->nclasses);
    return sila_ce_loss(m->dhead, logits, labels, B, m->nclasses, smoothing, scale);
}

/* Optimizer step of the body, and of the head (and in local steps the
 * twin and the decoder) when it took part. Body and head keep separate state and step
 * counts (a head sits out global steps with mu = 0, as a PyTorch parameter
 * without a gradient would); the twin learns in local steps only and
 * counts the head's steps (AdamW's bias correction then lags by the head's
 * global steps, if any). Global steps use the second state set when the
 * job keeps one. */
static void update(struct sila_module *m, float lr, bool with_head, bool global)
{
    size_t nb = m->body_params, nh = m->head_params, nt = m->nparams - nb - nh;
    int set = global && m->opt_state_global ? 1 : 0;
    float *state = set ? m->opt_state_global : m->opt_state;
    m->body_updates[set]++;
    sila_optim_step(&m->optim, lr, m->body_updates[set], m->params, m->grads, state, nb);
    if (m->lb) {
        float mom = m->obj.man_momentum;
        for (size_t i = 0; i < m->take_floats; i++)
            m->ema_params[i] = mom * m->ema_params[i] + (1.0f - mom) * m->target[i];
    }
    if (!with_head || !m->head)
        return;
    uint64_t n = ++m->head_updates[set];
    state += sila_optim_state_floats(&m->optim, nb);
    sila_optim_step(&m->optim, lr, n, m->params + nb, m->grads + nb, state, nh);
    if (global || nt == 0)
        return;
    state += sila_optim_state_floats(&m->optim, nh);
    sila_optim_step(&m->optim, lr, n, m->params + nb + nh, m->grads + nb + nh, state, nt);
}

/* The loss of the objective on the logits a (the head's, or the
 * classifier's) and on the peer's (the twin's, or the second pass's; NULL
 * when the objective has none): gradients written into m->dhead and
 * m->dpeer. */
static double head_objective_loss(struct sila_module *m, const float *a, const float *peer,
                                  const int32_t *labels, const float *targets, int B,
                                  float smoothing)
{
    const struct sila_objective *o = &m->obj;
    int C = m->nclasses;
    memset(m->dhead, 0, sizeof *m->dhead * B * C);
    if (peer)
        memset(m->dpeer, 0, sizeof *m->dpeer * B * C);
    if (o->kind == SILA_OBJ_SILA && peer)
        return sila_dml_pair_loss(m->dhead, m->dpeer, a, peer, labels, B, C, smoothing,
                                  o->sila_weight, o->dml_weight, o->temperature, m->scratch);
    if (o->kind == SILA_OBJ_COLLAB && targets)
        return sila_collab_loss(m->dhead, a, targets, labels, B, C, smoothing, o->collab_beta,
                                o->temperature);
    if (o->kind == SILA_OBJ_COSUB && peer)
        return sila_cosub_loss(m->dhead, m->dpeer, a, peer, labels, B, C, smoothing,
                               o->cosub_weight, m->scratch);
    return sila_ce_loss(m->dhead, a, labels, B, C, smoothing, 1.0f);
}

/* head_objective_loss weighted by the module's task weight (InfoPro's
 * lambda_y; 1 leaves it untouched). */
static double objective_loss(struct sila_module *m, const float *a, const float *peer,
                             const int32_t *labels, const float *targets, int B, float smoothing)
{
    double v = head_objective_loss(m, a, peer, labels, targets, B, smoothing);
    float w = m->task_weight;
    if (w == 1.0f)
        return v;
    size_t n = (size_t)B * m->nclasses;
    for (size_t i = 0; i < n; i++)
        m->dhead[i] *= w;
    for (size_t i = 0; peer && i < n; i++)
        m->dpeer[i] *= w;
    return w * v;
}

/* InfoPro's term: the decoder's reconstruction of the network's input
 * image (B, input, normalised) from the aux path's input z, as the sigmoid
 * binary cross-entropy against the image's pixels in [0, 1], averaged over
 * every pixel and weighted by m->recon_weight. Adds its gradient into dz;
 * returns its weighted value. */
static double reconstruction(struct sila_module *m, const float *z, const float *image, int B,
                             float *dz)
{
    struct sila_shape in = sila_net_out_shape(m->decoder);
    size_t hw = (size_t)in.h * in.w, n = sila_shape_size(in);
    for (size_t b = 0; b < (size_t)B; b++)
        for (int c = 0; c < in.c; c++)
            for (size_t i = 0; i < hw; i++) {
                size_t at = b * n + c * hw + i;
                m->recon_target[at] = image[at] * m->norm.std[c] + m->norm.mean[c];
            }
    const float *r = sila_net_forward(m->decoder, z, B, true, &m->rng);
    float w = m->recon_weight;
    memset(m->drecon, 0, sizeof *m->drecon * B * n);
    double v = sila_bce_logits_loss(m->drecon, r, m->recon_target, B, (int)n, w);
    sila_net_backward(m->decoder, z, m->drecon, m->dz_recon, B);
    size_t nz = (size_t)B * sila_shape_size(sila_net_in_shape(m->decoder));
    for (size_t i = 0; i < nz; i++)
        dz[i] += m->dz_recon[i];
    return w * v;
}

/* What the aux path reads of the body output z: z itself, or with MAN
 * y = lb(z) + ema(z). */
static const float *aux_input(struct sila_module *m, const float *z, int B, bool train)
{
    if (!m->lb)
        return z;
    const float *a = sila_net_forward(m->lb, z, B, train, &m->rng);
    const float *b = sila_net_forward(m->ema, z, B, train, &m->rng);
    size_t n = (size_t)B * sila_shape_size(sila_net_out_shape(m->lb));
    for (size_t i = 0; i < n; i++)
        m->y[i] = a[i] + b[i];
    return m->y;
}

/* The gradient of the aux path's input, where the head's backward writes:
 * dz without MAN, else MAN's dy (aux_input_backward takes it on to dz). */
static float *aux_grad(struct sila_module *m, float *dz)
{
    return m->lb ? m->dy : dz;
}

/* MAN's backward from m->dy: lb learns; d(loss)/dz through both copies
 * (ema's weights do not learn: no gradient of theirs is computed) written
 * into dz, unless NULL (the path's input is detached). Nothing without
 * MAN. */
static void aux_input_backward(struct sila_module *m, const float *z, float *dz, int B)
{
    if (!m->lb)
        return;
    sila_net_backward(m->lb, z, m->dy, dz, B);
    if (!dz)
        return;
    sila_net_backward_input(m->ema, z, m->dy, m->dz_ema, B);
    size_t n = (size_t)B * sila_shape_size(sila_net_in_shape(m->lb));
    for (size_t i = 0; i < n; i++)
        dz[i] += m->dz_ema[i];
}

const float *sila_module_man_snapshot(struct sila_module *m)
{
    memcpy(m->sent, m->params, sizeof *m->sent * m->sent_floats);
    return m->sent;
}

void sila_module_man_take(struct sila_module *m, const float *snapshot)
{
    memcpy(m->target, snapshot, sizeof *m->target * m->take_floats);
}

/* Adds the filter-similarity penalty of every conv weight of the body into
 * the gradients; returns its weighted value. */
static double filter_penalty(struct sila_module *m)
{
    double v = 0.0;
    float w = m->obj.kernel_similarity;
    for (int i = 0; i < sila_net_tensor_count(m->body); i++) {
        const struct sila_tensor *t = sila_net_tensor(m->body, i);
        if (!sila_tensor_is_filter_bank(t))
            continue;
        int oc = t->shape[0];
        v += w * sila_filter_similarity(m->grads + t->offset, m->params + t->offset, oc,
                                        (int)(t->n / (size_t)oc), w, m->scratch);
    }
    return v;
}

const float *sila_module_local_grad(struct sila_module *m, const float *x, const int32_t *labels,
                                    const float *targets, const float *image, int B,
                                    float smoothing, struct sila_step_stats *ret_stats)
{
    const struct sila_objective *o = &m->obj;
    memset(m->grads, 0, sizeof *m->grads * m->nparams);
    const float *z = sila_net_forward(m->body, x, B, true, &m->rng);
    const float *z2 = m->body2 ? sila_net_forward(m->body2, x, B, true, &m->rng) : NULL;
    const float *a = z, *peer = z2, *y = z;
    if (m->head) {
        y = aux_input(m, z, B, true);
        a = sila_net_forward(m->head, y, B, true, &m->rng);
        peer = m->twin ? sila_net_forward(m->twin, z, B, true, &m->rng)
               : z2    ? sila_net_forward(m->head2, z2, B, true, &m->rng)
                       : NULL;
    }
    ret_stats->correct = sila_count_correct(a, labels, B, m->nclasses);
    double loss = objective_loss(m, a, peer, labels, targets, B, smoothing);
    const float *g = m->dhead, *g2 = m->dpeer;
    if (m->head) {
        size_t nout = (size_t)B * sila_shape_size(sila_net_out_shape(m->body));
        float *dy = aux_grad(m, m->dz);
        sila_net_backward(m->head, y, m->dhead, dy, B);
        if (m->twin) { /* never with MAN: dy is dz */
            sila_net_backward(m->twin, z, m->dpeer, m->dz2, B);
            for (size_t i = 0; i < nout; i++)
                m->dz[i] += m->dz2[i];
        } else if (z2) {
            sila_net_backward(m->head2, z2, m->dpeer, m->dz2, B);
        }
        if (m->decoder)
            loss += reconstruction(m, y, image, B, dy);
        aux_input_backward(m, z, m->dz, B);
        if (o->redundancy > 0.0f)
            loss +=
                o->redundancy * sila_redundancy_penalty(m->dz, z, B, sila_net_out_shape(m->body),
                                                        o->redundancy, m->scratch);
        g = m->dz, g2 = m->dz2;
    }
    sila_net_backward(m->body, x, g, NULL, B);
    if (z2)
        sila_net_backward(m->body2, x, g2, NULL, B);
    if (o->kernel_similarity > 0.0f)
        loss += filter_penalty(m);
    ret_stats->loss = loss;
    return z;
}

const float *sila_module_local_step(struct sila_module *m, const float *x, const int32_t *labels,
                                    const float *targets, const float *image, int B, float lr,
                                    float smoothing, struct sila_step_stats *ret_stats)
{
    const float *z = sila_module_local_grad(m, x, labels, targets, image, B, smoothing, ret_stats);
    update(m, lr, true, false);
    return z;
}

const float *sila_module_global_forward(struct sila_module *m, const float *x, int B)
{
    return sila_net_forward(m->body, x, B, true, &m->rng);
}

bool sila_module_global_uses_head(const struct sila_module *m, float mu)
{
    return m->head && (mu > 0.0f || m->heads_in_global);
}

/* The head's part of a global step's backward half (see
 * sila_module_global_backward), after the forward of `body` (m->body, or a
 * late step's): clears m->grads, adds the head's gradients into them and
 * returns d(loss)/d(body output) (dz itself, or m's scratch); *head_used
 * says whether the head took part. */
static const float *global_dout(struct sila_module *m, struct sila_net *body, const float *dz,
                                const int32_t *labels, int B, float smoothing, float mu,
                                bool *head_used, struct sila_step_stats *ret_stats)
{
    memset(m->grads, 0, sizeof *m->grads * m->nparams);
    *ret_stats = (struct sila_step_stats){.loss = NAN};
    *head_used = false;
    const float *z = sila_net_output(body);
    size_t nout = (size_t)B * sila_shape_size(sila_net_out_shape(body));
    if (!dz) {
        ret_stats->loss = head_loss(m, z, labels, B, smoothing, 1.0f, &ret_stats->correct);
        return m->dhead;
    }
    if (!sila_module_global_uses_head(m, mu))
        return dz;
    const float *y = aux_input(m, z, B, true);
    const float *a = sila_net_forward(m->head, y, B, true, &m->rng);
    *head_used = true;
    if (mu > 0.0f) {
        ret_stats->loss = head_loss(m, a, labels, B, smoothing, mu, &ret_stats->correct);
        sila_net_backward(m->head, y, m->dhead, aux_grad(m, m->dz), B);
        aux_input_backward(m, z, m->dz, B);
        for (size_t i = 0; i < nout; i++)
            m->dz[i] += dz[i];
        return m->dz;
    }
    /* heads_in_global, mu = 0: the head learns on the detached output */
    ret_stats->loss = head_loss(m, a, labels, B, smoothing, 1.0f, &ret_stats->correct);
    sila_net_backward(m->head, y, m->dhead, aux_grad(m, NULL), B);
    aux_input_backward(m, z, NULL, B);
    return dz;
}

void sila_module_global_backward(struct sila_module *m, const float *x, const float *dz,
                                 const int32_t *labels, int B, float lr, float smoothing, float mu,
                                 bool apply, float *din, struct sila_step_stats *ret_stats)
{
    bool head_used;
    const float *g = global_dout(m, m->body, dz, labels, B, smoothing, mu, &head_used, ret_stats);
    sila_net_backward(m->body, x, g, din, B);
    if (apply)
        update(m, lr, head_used, true);
}

const float *sila_module_global_forward_kept(struct sila_module *m, const float *x, int B,
                                             struct sila_module_then *then)
{
    memcpy(then->params, m->params, sizeof *m->params * m->nparams);
    return sila_net_forward(then->body, x, B, true, &m->rng);
}

/* The parameters of `then` into m's for a late step's passes (m's own
 * kept in late_save), and back. */
static void late_enter(struct sila_module *m, const struct sila_module_then *then)
{
    memcpy(m->late_save, m->params, sizeof *m->params * m->nparams);
    memcpy(m->params, then->params, sizeof *m->params * m->nparams);
}

static void late_leave(struct sila_module *m)
{
    memcpy(m->params, m->late_save, sizeof *m->params * m->nparams);
}

void sila_module_global_late(struct sila_module *m, const struct sila_module_then *then,
                             const float *x, const float *dz, const int32_t *labels, int B,
                             float lr, float smoothing, float mu, bool apply, float *din,
                             struct sila_step_stats *ret_stats)
{
    late_enter(m, then);
    bool head_used;
    const float *g = global_dout(m, then->body, dz, labels, B, smoothing, mu, &head_used, ret_stats);
    sila_net_backward(then->body, x, g, din, B);
    late_leave(m);
    if (apply)
        update(m, lr, head_used, true);
}

void sila_module_late_input(struct sila_module *m, const struct sila_module_then *then,
                            const float *x, const float *dz, const int32_t *labels, int B,
                            float smoothing, float mu, float *din, struct sila_late_pass *ret_pass,
                            struct sila_step_stats *ret_stats)
{
    late_enter(m, then);
    ret_pass->dout = global_dout(m, then->body, dz, labels, B, smoothing, mu, &ret_pass->head_used,
                                 ret_stats);
    sila_net_backward_input(then->body, x, ret_pass->dout, din, B);
    late_leave(m);
}

void sila_module_late_params(struct sila_module *m, const struct sila_module_then *then,
                             const float *x, const struct sila_late_pass *p, int B, float lr,
                             bool apply)
{
    if (!apply)
        return;
    late_enter(m, then);
    sila_net_backward(then->body, x, p->dout, NULL, B);
    late_leave(m);
    update(m, lr, p->head_used, true);
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
    const float *a =
        m->head ? sila_net_forward(m->head, aux_input(m, z, B, false), B, false, NULL) : z;
    *ret_correct = sila_count_correct(a, labels, B, m->nclasses);
    return z;
}
