/* ResNet basic block (He et al., 2016) as one layer: a main path
 * conv3x3(stride)+BN+ReLU, conv3x3+BN [, drop-path], a shortcut that is the
 * identity or a 1x1 conv(stride)+BN projection, and a ReLU after the sum.
 * Sub-layers are ordinary layers (layer.c); the block only wires them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

struct sila_block {
    struct sila_layer main[6]; /* conv1 bn1 relu conv2 bn2 [droppath] */
    int nmain;
    struct sila_layer sc[2]; /* projection conv1x1 bn, when nsc == 2 */
    int nsc;
    float *g_sum;     /* (max_batch, out): gradient at the sum */
    float *g_a, *g_b; /* (max_batch, out): main-path ping-pong */
    float *g_in;      /* (max_batch, in): projection's input gradient */
};

static struct sila_layer_spec sub_spec(const struct sila_layer_spec *blk, enum sila_layer_kind kind,
                                       int kernel, int stride)
{
    struct sila_layer_spec s = sila_layer_spec_default(kind);
    s.out = blk->out;
    s.kernel = kernel;
    s.stride = stride;
    s.pad = kernel / 2;
    s.bias = false;
    s.p = blk->p;
    s.bn_momentum = blk->bn_momentum;
    s.bn_eps = blk->bn_eps;
    return s;
}

/* Appends a sub-layer to a path; its input is the previous sub-layer's
 * output, or the block's input (never written) for the first. */
static int add_sub(struct sila_layer *path, int *n, struct sila_layer_spec spec,
                   struct sila_shape in, const char *prefix, const char *name,
                   struct sila_builder *b, struct sila_err *err)
{
    char full[64];
    snprintf(full, sizeof full, "%s.%s", prefix, name);
    struct sila_shape sin = *n ? path[*n - 1].out : in;
    float *in_buf = *n ? path[*n - 1].y : NULL;
    int r = sila_layer_build(&path[*n], &spec, sin, in_buf, full, b, err);
    (*n)++; /* counted even on failure so that fini frees what was built */
    return r;
}

static int build_paths(struct sila_block *k, const struct sila_layer *L, const char *prefix,
                       struct sila_builder *b, struct sila_err *err)
{
    const struct sila_layer_spec *s = &L->spec;
    int r;
    if ((r = add_sub(k->main, &k->nmain, sub_spec(s, SILA_LAYER_CONV2D, 3, s->stride), L->in,
                     prefix, "conv1", b, err)) ||
        (r = add_sub(k->main, &k->nmain, sub_spec(s, SILA_LAYER_BATCHNORM, 0, 1), L->in, prefix,
                     "bn1", b, err)) ||
        (r = add_sub(k->main, &k->nmain, sub_spec(s, SILA_LAYER_RELU, 0, 1), L->in, prefix, "relu1",
                     b, err)) ||
        (r = add_sub(k->main, &k->nmain, sub_spec(s, SILA_LAYER_CONV2D, 3, 1), L->in, prefix,
                     "conv2", b, err)) ||
        (r = add_sub(k->main, &k->nmain, sub_spec(s, SILA_LAYER_BATCHNORM, 0, 1), L->in, prefix,
                     "bn2", b, err)))
        return r;
    if (s->p > 0.0f && (r = add_sub(k->main, &k->nmain, sub_spec(s, SILA_LAYER_DROPPATH, 0, 1),
                                    L->in, prefix, "drop_path", b, err)))
        return r;
    if (s->stride == 1 && s->out == L->in.c)
        return 0;
    if ((r = add_sub(k->sc, &k->nsc, sub_spec(s, SILA_LAYER_CONV2D, 1, s->stride), L->in, prefix,
                     "shortcut.0", b, err)) ||
        (r = add_sub(k->sc, &k->nsc, sub_spec(s, SILA_LAYER_BATCHNORM, 0, 1), L->in, prefix,
                     "shortcut.1", b, err)))
        return r;
    return 0;
}

int sila_block_build(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                     struct sila_err *err)
{
    const struct sila_layer_spec *s = &L->spec;
    if (s->out < 1 || s->stride < 1 || !(s->p >= 0.0f && s->p < 1.0f))
        return sila_err_set(err, -EINVAL, "layer %s (block): needs out, stride >= 1, 0 <= p < 1",
                            prefix);
    struct sila_block *k = calloc(1, sizeof *k);
    if (!k)
        return -ENOMEM;
    L->block = k;
    int r = build_paths(k, L, prefix, b, err);
    if (r)
        return r;
    L->out = k->main[k->nmain - 1].out;
    size_t n_out = (size_t)b->max_batch * sila_shape_size(L->out);
    L->y = malloc(sizeof *L->y * n_out);
    L->y_owned = true;
    k->g_sum = malloc(sizeof *k->g_sum * n_out);
    k->g_a = malloc(sizeof *k->g_a * n_out);
    k->g_b = malloc(sizeof *k->g_b * n_out);
    k->g_in = malloc(sizeof *k->g_in * b->max_batch * sila_shape_size(L->in));
    return L->y && k->g_sum && k->g_a && k->g_b && k->g_in ? 0 : -ENOMEM;
}

void sila_block_free(struct sila_block *k)
{
    if (!k)
        return;
    for (int i = 0; i < k->nmain; i++)
        sila_layer_fini(&k->main[i]);
    for (int i = 0; i < k->nsc; i++)
        sila_layer_fini(&k->sc[i]);
    free(k->g_sum);
    free(k->g_a);
    free(k->g_b);
    free(k->g_in);
    free(k);
}

static const float *path_forward(struct sila_layer *path, int n, const float *in,
                                 const struct sila_ctx *ctx)
{
    for (int i = 0; i < n; i++) {
        sila_layer_forward(&path[i], in, ctx);
        in = path[i].y;
    }
    return in;
}

void sila_block_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    struct sila_block *k = L->block;
    const float *m = path_forward(k->main, k->nmain, in, ctx);
    const float *s = k->nsc ? path_forward(k->sc, k->nsc, in, ctx) : in;
    size_t n = (size_t)ctx->B * sila_shape_size(L->out);
    for (size_t i = 0; i < n; i++) {
        float v = m[i] + s[i];
        L->y[i] = v > 0.0f ? v : 0.0f;
    }
}

/* Backward through a path from gradient g at its output; the first layer's
 * input gradient goes to din (may be NULL). Uses ga/gb as ping-pong. */
static void path_backward(struct sila_layer *path, int n, const float *in, const float *g,
                          float *din, float *ga, float *gb, const struct sila_ctx *ctx)
{
    for (int i = n - 1; i >= 0; i--) {
        float *dst = i == 0 ? din : (g == ga ? gb : ga);
        sila_layer_backward(&path[i], i ? path[i - 1].y : in, g, dst, ctx);
        g = dst;
    }
}

void sila_block_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                         const struct sila_ctx *ctx)
{
    struct sila_block *k = L->block;
    size_t n_out = (size_t)ctx->B * sila_shape_size(L->out);
    size_t n_in = (size_t)ctx->B * sila_shape_size(L->in);
    sila_relu_backward(k->g_sum, dout, L->y, n_out);
    path_backward(k->main, k->nmain, in, k->g_sum, din, k->g_a, k->g_b, ctx);
    if (k->nsc) {
        path_backward(k->sc, k->nsc, in, k->g_sum, din ? k->g_in : NULL, k->g_a, k->g_b, ctx);
        if (din)
            for (size_t i = 0; i < n_in; i++)
                din[i] += k->g_in[i];
    } else if (din) {
        for (size_t i = 0; i < n_in; i++)
            din[i] += k->g_sum[i];
    }
}
