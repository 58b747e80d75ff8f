/* ResNet basic block (He et al., 2016) as one layer: a main path
 * conv3x3(stride)+BN+ReLU, conv3x3+BN [, drop-path], a shortcut that is the
 * identity or a 1x1 conv(stride)+BN projection, and a ReLU after the sum.
 *
 * Inside the block every tensor stays in the layout its convolutions work
 * in (with oneDNN's AVX-512 kernels nChw16c; kernels.h's sila_layout):
 * the forward pass reorders its input into it once and its output back to
 * NCHW once, the backward pass dout in and din out once each. Between the
 * convolutions, batch norm (the first ReLU fused into it) runs as oneDNN's
 * primitive on the blocked tensors (blocked.c), and drop-path, the sum and
 * the last ReLU as element-wise loops, which need no layout (padded
 * channels hold zeros and stay zero). The convolutions are conv layers
 * (layer_kinds.c) planned for those layouts; their tensors and the batch
 * norms' are named as PyTorch's block names them (conv1, bn1, conv2, bn2,
 * shortcut.0, shortcut.1) and stored in NCHW/OIHW as every layer's. */
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

/* One batch norm of the block: its tensors, its primitives on the block's
 * layout, and what a train forward saves for the backward pass. */
struct norm {
    struct sila_layer L; /* spec, shapes and tensor offsets */
    struct sila_blocked_bn g;
    float *mean, *var; /* (C) batch statistics of the last train forward */
    void *mask;        /* its fused ReLU's, NULL without one */
};

struct sila_block {
    struct sila_layer conv1, conv2, sc; /* sc: the projection's 1x1 conv, when proj */
    struct norm bn1, bn2, sc_bn;        /* bn1 with the first ReLU fused */
    bool proj;
    enum sila_layout lx, la;     /* of the block's input copy, of every other tensor */
    struct sila_relayout rx, ra; /* NCHW from and to lx (input), la (output) */
    /* Activations, each (max_batch, C, H, W) in its layout, padding
     * included. The convs' outputs are their layers' y. */
    float *xb;   /* the input in lx, saved for dW; NULL (as dx) when lx is NCHW */
    float *a1;   /* bn1+ReLU, conv2's input, saved */
    float *sum;  /* the output before its reorder, saved: the last ReLU's mask */
    float *keep; /* (max_batch) drop-path's per-sample scales */
    /* Gradients in la (g at the sum; ga, gb along the paths; ga holds the
     * projection's batch norm output during the forward pass) and in lx
     * (dx, dxs: the input's from the main path and from the projection). */
    float *g, *ga, *gb, *dx, *dxs;
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
    s.bn_momentum = blk->bn_momentum;
    s.bn_eps = blk->bn_eps;
    return s;
}

/* Zeroed activations (max_batch, s) in layout l, into *ret. */
static int act_alloc(float **ret, const struct sila_builder *b, enum sila_layout l,
                     struct sila_shape s)
{
    *ret = sila_floats_alloc(sila_layout_floats(l, b->max_batch, s.c, s.h, s.w));
    return *ret ? 0 : -ENOMEM;
}

static void need_work(struct sila_builder *b, size_t floats)
{
    if (floats > b->work_floats)
        b->work_floats = floats;
}

/* Conv sub-layer `name` on input `in` held in src, output in dst. */
static int add_conv(struct sila_layer *L, const struct sila_layer_spec *spec, struct sila_shape in,
                    enum sila_layout src, enum sila_layout dst, const char *prefix,
                    const char *name, struct sila_builder *b, struct sila_err *err)
{
    char full[64];
    snprintf(full, sizeof full, "%s.%s", prefix, name);
    memset(L, 0, sizeof *L);
    L->spec = *spec;
    L->in = in;
    int r = sila_conv_layer_build(L, full, b, src, dst, err);
    if (r)
        return r;
    L->y_owned = true;
    return act_alloc(&L->y, b, dst, L->out);
}

/* Batch norm sub-layer `name` over `shape` in layout l. */
static int add_norm(struct norm *n, const struct sila_layer_spec *blk, struct sila_shape shape,
                    enum sila_layout l, bool relu, const char *prefix, const char *name,
                    struct sila_builder *b, struct sila_err *err)
{
    char full[64];
    snprintf(full, sizeof full, "%s.%s", prefix, name);
    memset(n, 0, sizeof *n);
    n->L.spec = sub_spec(blk, SILA_LAYER_BATCHNORM, 0, 1);
    n->L.in = n->L.out = shape;
    int r = sila_bn_layer_tensors(&n->L, full, b, err);
    if (r)
        return r;
    n->g = (struct sila_blocked_bn){.B = b->max_batch,
                                    .C = shape.c,
                                    .H = shape.h,
                                    .W = shape.w,
                                    .layout = l,
                                    .eps = n->L.spec.bn_eps,
                                    .relu = relu,
                                    .threads = omp_get_max_threads()};
    if ((r = sila_blocked_bn_plan_new(&n->g)))
        return r == -ENOMEM ? r
                            : sila_err_set(err, r,
                                           "layer %s (batchnorm): no batch norm of the math "
                                           "library for %dx%dx%d",
                                           full, shape.c, shape.h, shape.w);
    need_work(b, sila_blocked_bn_work_floats(&n->g));
    n->mean = calloc(shape.c, sizeof *n->mean);
    n->var = calloc(shape.c, sizeof *n->var);
    size_t mask = sila_blocked_bn_mask_bytes(&n->g);
    n->mask = mask ? sila_floats_alloc((mask + sizeof(float) - 1) / sizeof(float)) : NULL;
    return n->mean && n->var && (n->mask || !mask) ? 0 : -ENOMEM;
}

static void norm_fini(struct norm *n)
{
    sila_layer_fini(&n->L);
    sila_blocked_bn_plan_free(&n->g);
    free(n->mean);
    free(n->var);
    free(n->mask);
}

/* Reorders of (max_batch, s) between NCHW and l. */
static int add_relayout(struct sila_relayout *g, struct sila_shape s, enum sila_layout l,
                        struct sila_builder *b)
{
    *g = (struct sila_relayout){.B = b->max_batch,
                                .C = s.c,
                                .H = s.h,
                                .W = s.w,
                                .layout = l,
                                .threads = omp_get_max_threads()};
    int r = sila_relayout_plan_new(g);
    if (!r)
        need_work(b, sila_relayout_work_floats(g));
    return r;
}

/* The layouts: conv1's output as the library's forward convolution picks
 * it (lx the same, for the identity shortcut's sum; else conv1's input as
 * picked). NCHW when the convolution has none (the conv's build says why). */
static void pick_layouts(struct sila_block *k, const struct sila_layer *L, int max_batch)
{
    struct sila_conv_geom g;
    k->lx = k->la = SILA_LAYOUT_NCHW;
    if (sila_conv_geom_init(&g, max_batch, L->in.c, L->in.h, L->in.w, L->spec.out, 3,
                            L->spec.stride, 1) ||
        sila_conv_layouts(&g, &k->lx, &k->la))
        k->lx = k->la = SILA_LAYOUT_NCHW;
    if (!k->proj)
        k->lx = k->la;
}

/* The sub-layers, their tensors registered in PyTorch's order. */
static int build_paths(struct sila_block *k, const struct sila_layer *L, const char *prefix,
                       struct sila_builder *b, struct sila_err *err)
{
    const struct sila_layer_spec *s = &L->spec;
    const struct sila_layer_spec c1 = sub_spec(s, SILA_LAYER_CONV2D, 3, s->stride),
                                 c2 = sub_spec(s, SILA_LAYER_CONV2D, 3, 1),
                                 sc = sub_spec(s, SILA_LAYER_CONV2D, 1, s->stride);
    int r;
    if ((r = add_conv(&k->conv1, &c1, L->in, k->lx, k->la, prefix, "conv1", b, err)))
        return r;
    struct sila_shape out = k->conv1.out;
    if ((r = add_norm(&k->bn1, s, out, k->la, true, prefix, "bn1", b, err)) ||
        (r = add_conv(&k->conv2, &c2, out, k->la, k->la, prefix, "conv2", b, err)) ||
        (r = add_norm(&k->bn2, s, out, k->la, false, prefix, "bn2", b, err)))
        return r;
    if (!k->proj)
        return 0;
    if ((r = add_conv(&k->sc, &sc, L->in, k->lx, k->la, prefix, "shortcut.0", b, err)))
        return r;
    return add_norm(&k->sc_bn, s, out, k->la, false, prefix, "shortcut.1", b, err);
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
    k->proj = s->stride != 1 || s->out != L->in.c;
    pick_layouts(k, L, b->max_batch);
    int r = build_paths(k, L, prefix, b, err);
    if (r)
        return r;
    L->out = k->conv1.out;
    if ((r = add_relayout(&k->ra, L->out, k->la, b)) ||
        (k->lx != SILA_LAYOUT_NCHW && (r = add_relayout(&k->rx, L->in, k->lx, b))))
        return r == -ENOMEM ? r
                            : sila_err_set(err, r,
                                           "layer %s (block): no reorder of the math "
                                           "library for its tensors",
                                           prefix);
    L->y = sila_floats_alloc((size_t)b->max_batch * sila_shape_size(L->out));
    L->y_owned = true;
    k->keep = calloc(b->max_batch, sizeof *k->keep);
    if (!L->y || !k->keep || act_alloc(&k->a1, b, k->la, L->out) ||
        act_alloc(&k->sum, b, k->la, L->out) || act_alloc(&k->g, b, k->la, L->out) ||
        act_alloc(&k->ga, b, k->la, L->out) || act_alloc(&k->gb, b, k->la, L->out) ||
        (k->proj && act_alloc(&k->dxs, b, k->lx, L->in)))
        return -ENOMEM;
    if (k->lx == SILA_LAYOUT_NCHW) /* the input and din serve as they are */
        return 0;
    return act_alloc(&k->xb, b, k->lx, L->in) || act_alloc(&k->dx, b, k->lx, L->in) ? -ENOMEM : 0;
}

void sila_block_free(struct sila_block *k)
{
    if (!k)
        return;
    sila_layer_fini(&k->conv1);
    sila_layer_fini(&k->conv2);
    sila_layer_fini(&k->sc);
    norm_fini(&k->bn1);
    norm_fini(&k->bn2);
    norm_fini(&k->sc_bn);
    sila_relayout_plan_free(&k->rx);
    sila_relayout_plan_free(&k->ra);
    float *bufs[] = {k->xb, k->a1, k->sum, k->keep, k->g, k->ga, k->gb, k->dx, k->dxs};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(k);
}

/* Every plan of the block (the convs set theirs) to batch B. */
static void set_batch(struct sila_block *k, int B)
{
    k->rx.B = k->ra.B = B;
    k->bn1.g.B = k->bn2.g.B = k->sc_bn.g.B = B;
}

/* Floats of the batch's output in the block's layout. */
static size_t out_floats(const struct sila_layer *L, int B)
{
    return sila_layout_floats(L->block->la, B, L->out.c, L->out.h, L->out.w);
}

static void norm_forward(struct norm *n, const float *in, float *out, const struct sila_ctx *ctx)
{
    const struct sila_layer *L = &n->L;
    const float *P = ctx->params;
    float *buf = ctx->buffers;
    if (ctx->train)
        sila_blocked_bn_forward_train(out, n->mean, n->var, n->mask, buf + L->rm_off,
                                      buf + L->rv_off, in, P + L->w_off, P + L->b_off,
                                      L->spec.bn_momentum, &n->g, ctx->work);
    else
        sila_blocked_bn_forward_eval(out, in, P + L->w_off, P + L->b_off, buf + L->rm_off,
                                     buf + L->rv_off, &n->g, ctx->work);
}

static void norm_backward(struct norm *n, const float *in, const float *dout, float *din,
                          const struct sila_ctx *ctx)
{
    const struct sila_layer *L = &n->L;
    const float *P = ctx->params;
    float *G = ctx->grads;
    sila_blocked_bn_backward(din, G ? G + L->w_off : NULL, G ? G + L->b_off : NULL, dout, in,
                             n->mean, n->var, n->mask, P + L->w_off, P + L->b_off, &n->g,
                             ctx->work);
}

/* y := relu(y + s), n floats. */
static void add_relu(float *y, const float *s, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= SILA_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n; i++) {
        float v = y[i] + s[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

/* y += s, n floats. */
static void add_into(float *y, const float *s, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= SILA_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n; i++)
        y[i] += s[i];
}

void sila_block_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    struct sila_block *k = L->block;
    set_batch(k, ctx->B);
    const float *x = in;
    if (k->xb) {
        sila_relayout_to(k->xb, in, &k->rx, ctx->work);
        x = k->xb;
    }
    sila_layer_forward(&k->conv1, x, ctx);
    norm_forward(&k->bn1, k->conv1.y, k->a1, ctx);
    sila_layer_forward(&k->conv2, k->a1, ctx);
    norm_forward(&k->bn2, k->conv2.y, k->sum, ctx);
    size_t n = out_floats(L, ctx->B);
    if (ctx->train && L->spec.p > 0.0f)
        sila_droppath_forward(k->sum, k->keep, k->sum, ctx->B, n / (size_t)ctx->B, L->spec.p,
                              ctx->rng);
    const float *s = x;
    if (k->proj) {
        sila_layer_forward(&k->sc, x, ctx);
        norm_forward(&k->sc_bn, k->sc.y, k->ga, ctx);
        s = k->ga;
    }
    add_relu(k->sum, s, n);
    sila_relayout_from(L->y, k->sum, &k->ra, ctx->work);
}

void sila_block_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                         const struct sila_ctx *ctx)
{
    struct sila_block *k = L->block;
    set_batch(k, ctx->B);
    const float *x = k->xb ? k->xb : in;
    float *dx = din && k->xb ? k->dx : din; /* conv1's input gradient, in lx */
    size_t n = out_floats(L, ctx->B);
    sila_relayout_to(k->g, dout, &k->ra, ctx->work);
    sila_relu_backward(k->g, k->g, k->sum, n);
    const float *gm = k->g;
    if (L->spec.p > 0.0f) {
        sila_droppath_backward(k->ga, k->g, k->keep, ctx->B, n / (size_t)ctx->B);
        gm = k->ga;
    }
    norm_backward(&k->bn2, k->conv2.y, gm, k->gb, ctx);
    sila_layer_backward(&k->conv2, k->a1, k->gb, k->ga, ctx);
    norm_backward(&k->bn1, k->conv1.y, k->ga, k->gb, ctx);
    sila_layer_backward(&k->conv1, x, k->gb, dx, ctx);
    if (k->proj) {
        norm_backward(&k->sc_bn, k->sc.y, k->g, k->ga, ctx);
        sila_layer_backward(&k->sc, x, k->ga, din ? k->dxs : NULL, ctx);
    }
    if (!din)
        return;
    size_t nx = sila_layout_floats(k->lx, ctx->B, L->in.c, L->in.h, L->in.w);
    add_into(dx, k->proj ? k->dxs : k->g, nx);
    if (k->xb)
        sila_relayout_from(din, dx, &k->rx, ctx->work);
}
