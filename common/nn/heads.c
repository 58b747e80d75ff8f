/* Aux heads and InfoPro's decoder as layer specs (see heads.h). */
#include "heads.h"
#include "layer.h"

#include <errno.h>
#include <math.h>

/* Appends n x (linear or 1x1 conv2d to `out` + BN + ReLU) to specs at *at,
 * with a bias only if `bias` (which the batch norm cancels). */
static void add_bn_relu_layers(struct sila_layer_spec *specs, int *at, int n,
                               enum sila_layer_kind kind, int out, bool bias)
{
    for (int i = 0; i < n; i++) {
        specs[*at] = sila_layer_spec_default(kind);
        specs[*at].out = out, specs[*at].bias = bias;
        if (kind == SILA_LAYER_CONV2D)
            specs[*at].kernel = 1;
        (*at)++;
        specs[(*at)++] = sila_layer_spec_default(SILA_LAYER_BATCHNORM);
        specs[(*at)++] = sila_layer_spec_default(SILA_LAYER_RELU);
    }
}

static struct sila_layer_spec adaptive_pool(int side)
{
    struct sila_layer_spec s = sila_layer_spec_default(SILA_LAYER_ADAPTIVE_AVGPOOL);
    s.out = side;
    return s;
}

/* Whether a layer of the body is a unit AugLocal copies: one with filters
 * (a block or a conv), as job_check.c asks too. */
static bool auglocal_unit(const struct sila_layer_spec *s)
{
    return sila_layer_desc(s->kind)->flags & SILA_LAYER_FILTERS;
}

/* Whether a layer halves the map (or more): what AugLocal's copies redo. */
static bool downsamples(const struct sila_layer_spec *s)
{
    return s->stride > 1 &&
           (auglocal_unit(s) || s->kind == SILA_LAYER_MAXPOOL || s->kind == SILA_LAYER_AVGPOOL);
}

/* Appends a fresh copy of unit s with the given stride: a block without
 * drop-path, or a conv2d without bias + BN + ReLU. */
static void add_unit_copy(struct sila_layer_spec *specs, int *at, const struct sila_layer_spec *s,
                          int stride)
{
    specs[*at] = *s;
    specs[*at].stride = stride;
    specs[*at].p = 0.0f;
    if (s->kind == SILA_LAYER_BLOCK) {
        (*at)++;
        return;
    }
    specs[(*at)++].bias = false;
    specs[(*at)++] = sila_layer_spec_default(SILA_LAYER_BATCHNORM);
    specs[(*at)++] = sila_layer_spec_default(SILA_LAYER_RELU);
}

/* AugLocal's aux net of module k (sila's reading of its code): copies of
 * d of the units (blocks, convs) after the module, uniformly spaced and
 * ending at the last one (all of them when there are at most d); each copy
 * redoes, at stride 2, one of the downsamplings met since the previous
 * copy (any left over pass to the next). d is aux_depth, decaying with
 * depth by aux_pyramid: d_k = max(1, round(d (1 - r) + r)), r = k
 * aux_pyramid / (K - 2). Then gap, BN when d_k is 1, and the linear layer
 * is the caller's. Returns -EINVAL when no unit follows the module. */
static int auglocal_specs(const struct sila_job *job, int k, struct sila_layer_spec *specs, int *at)
{
    const struct sila_objective *o = &job->modules[k].objective;
    const struct sila_layer_spec *later = job->layers + job->modules[k + 1].first_layer;
    int nlater = job->nlayers - job->modules[k + 1].first_layer, units = 0;
    for (int i = 0; i < nlater; i++)
        units += auglocal_unit(&later[i]);
    if (units == 0)
        return -EINVAL;
    float r = job->nmodules > 2 ? (float)k * o->aux_pyramid / (float)(job->nmodules - 2) : 0.0f;
    int d = (int)floorf((float)o->aux_depth * (1.0f - r) + r + 0.5f);
    d = d < 1 ? 1 : d > units ? units : d;
    int unit = 0, next = 1, pending = 0;
    for (int i = 0; i < nlater; i++) {
        pending += downsamples(&later[i]);
        if (!auglocal_unit(&later[i]))
            continue;
        unit++;
        int want = (int)floorf((float)units / (float)d * (float)next + 0.5f);
        if (unit != want)
            continue;
        add_unit_copy(specs, at, &later[i], pending > 0 ? 2 : 1);
        pending -= pending > 0;
        next++;
    }
    specs[(*at)++] = sila_layer_spec_default(SILA_LAYER_GAP);
    if (d == 1)
        specs[(*at)++] = sila_layer_spec_default(SILA_LAYER_BATCHNORM);
    return 0;
}

_Static_assert(3 * SILA_AUX_MAX_DEPTH + 3 <= SILA_AUX_MAX_SPECS, "an auglocal head fits the specs");

int sila_aux_head_specs(const struct sila_job *job, int k, struct sila_shape in,
                        struct sila_layer_spec *specs, int *ret_n)
{
    const struct sila_objective *o = &job->modules[k].objective;
    int n = 0;
    bool flat = in.h == 1 && in.w == 1;
    switch (o->aux) {
    case SILA_AUX_CONV:
        if (flat)
            return -EINVAL;
        specs[n] = sila_layer_spec_default(SILA_LAYER_CONV2D);
        specs[n].out = in.c, specs[n].pad = 1, specs[n++].bias = false;
        specs[n++] = sila_layer_spec_default(SILA_LAYER_BATCHNORM);
        specs[n++] = sila_layer_spec_default(SILA_LAYER_RELU);
        specs[n++] = sila_layer_spec_default(SILA_LAYER_GAP);
        break;
    case SILA_AUX_MLP:
        if (!flat) {
            if (in.h < 2 || in.w < 2 || in.h != in.w)
                return -EINVAL;
            specs[n] = sila_layer_spec_default(SILA_LAYER_AVGPOOL);
            specs[n].kernel = specs[n].stride = in.h / 2;
            n++;
        }
        specs[n++] = sila_layer_spec_default(SILA_LAYER_FLATTEN);
        add_bn_relu_layers(specs, &n, 2, SILA_LAYER_LINEAR, o->aux_hidden, true);
        break;
    case SILA_AUX_INFOPRO:
        if (flat)
            return -EINVAL;
        specs[n] = sila_layer_spec_default(SILA_LAYER_CONV2D);
        specs[n].out = in.h > 8 ? 2 * in.c : in.c;
        specs[n].stride = in.h > 8 ? 2 : 1;
        specs[n].pad = 1, specs[n++].bias = false;
        specs[n++] = sila_layer_spec_default(SILA_LAYER_BATCHNORM);
        specs[n++] = sila_layer_spec_default(SILA_LAYER_RELU);
        specs[n++] = sila_layer_spec_default(SILA_LAYER_GAP);
        specs[n] = sila_layer_spec_default(SILA_LAYER_LINEAR);
        specs[n++].out = o->aux_hidden;
        specs[n++] = sila_layer_spec_default(SILA_LAYER_RELU);
        break;
    case SILA_AUX_DGL:
        if (flat || o->aux_convs > SILA_AUX_MAX_LAYERS || o->aux_mlp > SILA_AUX_MAX_LAYERS)
            return -EINVAL;
        specs[n++] = adaptive_pool(o->aux_grid);
        add_bn_relu_layers(specs, &n, o->aux_convs, SILA_LAYER_CONV2D, in.c, false);
        specs[n++] = adaptive_pool(2);
        specs[n++] = sila_layer_spec_default(SILA_LAYER_FLATTEN);
        add_bn_relu_layers(specs, &n, o->aux_mlp, SILA_LAYER_LINEAR, o->aux_hidden, false);
        break;
    case SILA_AUX_AUGLOCAL:
        if (flat || o->aux_depth > SILA_AUX_MAX_DEPTH || auglocal_specs(job, k, specs, &n))
            return -EINVAL;
        break;
    default:
        specs[n++] = sila_layer_spec_default(SILA_LAYER_GAP);
        break;
    }
    specs[n] = sila_layer_spec_default(SILA_LAYER_LINEAR);
    specs[n++].out = job->nclasses;
    *ret_n = n;
    return 0;
}

int sila_decoder_specs(const struct sila_job *job, int width, struct sila_layer_spec *specs)
{
    struct sila_shape in = job->input;
    if (in.h != in.w)
        return -EINVAL;
    specs[0] = sila_layer_spec_default(SILA_LAYER_UPSAMPLE);
    specs[0].out = in.h;
    specs[1] = sila_layer_spec_default(SILA_LAYER_CONV2D);
    specs[1].out = width, specs[1].pad = 1, specs[1].bias = false;
    specs[2] = sila_layer_spec_default(SILA_LAYER_BATCHNORM);
    specs[3] = sila_layer_spec_default(SILA_LAYER_RELU);
    specs[4] = sila_layer_spec_default(SILA_LAYER_CONV2D);
    specs[4].out = in.c, specs[4].pad = 1;
    return 0;
}

int sila_man_unit_specs(const struct sila_job *job, int k, struct sila_layer_spec *specs,
                        int *ret_n)
{
    const struct sila_job_module *next = &job->modules[k + 1];
    const struct sila_layer_spec *l = job->layers + next->first_layer;
    int n = 0;
    while (n < next->nlayers && n < SILA_MAN_MAX_SPECS - 2 && !auglocal_unit(&l[n]))
        n++;
    if (n == next->nlayers || !auglocal_unit(&l[n]))
        return -EINVAL;
    n++;
    if (n < next->nlayers && l[n].kind == SILA_LAYER_BATCHNORM)
        n++;
    if (n < next->nlayers && l[n].kind == SILA_LAYER_RELU)
        n++;
    for (int i = 0; i < n; i++) {
        specs[i] = l[i];
        specs[i].p = l[i].kind == SILA_LAYER_DROPOUT ? l[i].p : 0.0f;
    }
    *ret_n = n;
    return 0;
}
