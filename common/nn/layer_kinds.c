/* The layer kinds: for each, how it is built (output shape, tensors,
 * saved state), its forward and backward passes over the kernels, the
 * shape rule a job file is checked against, and at the end the table of
 * descriptors, one entry per kind (kann's kad_op_list[]). Adding a kind is
 * a value in net.h's enum, its functions here and one entry below; the
 * job reader, the net and the model files read everything from the entry. */
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "sila.pb-c.h"

#define MAX_ACT (1 << 24)     /* a job's limit: values per sample of one layer's output */
#define MAX_SCRATCH (1 << 28) /* a job's limit: one conv's unfolded input (C·K·K·OH·OW) per sample */

/* ---- helpers ---- */

static int shape_error(struct sila_err *err, const char *prefix, const struct sila_layer *L,
                       const char *why)
{
    return sila_err_set(err, -EINVAL, "layer %s (%s): %s (input %dx%dx%d)", prefix,
                        sila_layer_kind_name(L->spec.kind), why, L->in.c, L->in.h, L->in.w);
}

/* Weight (and bias) of a linear or conv layer. */
static int add_weights(struct sila_layer *L, const char *prefix, struct sila_builder *b, int ndim,
                       const int *shape, struct sila_err *err)
{
    int r = sila_builder_add_tensor(b, prefix, "weight", SILA_TENSOR_WEIGHT, 0, ndim, shape,
                                    &L->w_off, err);
    if (r)
        return r;
    /* fan_in = weight size / out, < SILA_MAX_TENSOR now that it passed */
    int fan_in = (int)(b->tensors[b->ntensors - 1].n / (size_t)shape[0]);
    b->tensors[b->ntensors - 1].fan_in = fan_in;
    if (L->spec.bias)
        r = sila_builder_add_tensor(b, prefix, "bias", SILA_TENSOR_BIAS, fan_in, 1, shape,
                                    &L->b_off, err);
    return r;
}

static const float *bias_of(const struct sila_layer *L, const float *base)
{
    return L->spec.bias ? base + L->b_off : NULL;
}

static float *grad_bias_of(const struct sila_layer *L, float *grads)
{
    return grads && L->spec.bias ? grads + L->b_off : NULL;
}

/* Where L's weight gradient goes: NULL when the pass computes none. */
static float *grad_weight_of(const struct sila_layer *L, float *grads)
{
    return grads ? grads + L->w_off : NULL;
}

/* Floats of the batch's input. */
static size_t n_in(const struct sila_layer *L, const struct sila_ctx *ctx)
{
    return (size_t)ctx->B * sila_shape_size(L->in);
}

/* Output side of a k x k window with pad and stride over n, or -1. */
static long long window_out(int n, int k, int stride, int pad)
{
    long long span = (long long)n + 2LL * pad - k;
    return span < 0 ? -1 : span / stride + 1;
}

/* ---- linear ---- */

static int build_linear(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                        struct sila_err *err)
{
    if (L->spec.out < 1)
        return shape_error(err, prefix, L, "needs out >= 1");
    if (L->in.h != 1 || L->in.w != 1)
        return shape_error(err, prefix, L, "needs a flat input: add a flatten or gap layer");
    L->out = (struct sila_shape){L->spec.out, 1, 1};
    int shape[2] = {L->spec.out, L->in.c};
    return add_weights(L, prefix, b, 2, shape, err);
}

static void linear_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    const float *P = ctx->params;
    sila_linear_forward(L->y, in, P + L->w_off, bias_of(L, P), ctx->B, L->in.c, L->out.c);
}

static void linear_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                            const struct sila_ctx *ctx)
{
    sila_linear_backward(din, grad_weight_of(L, ctx->grads), grad_bias_of(L, ctx->grads), dout, in,
                         ctx->params + L->w_off, ctx->B, L->in.c, L->out.c);
}

static const char *fit_linear(const struct sila_layer_spec *s, struct sila_shape in,
                              const char **ret_key, char *why, size_t n)
{
    (void)s;
    if (in.h == 1 && in.w == 1)
        return NULL;
    *ret_key = "out";
    snprintf(why, n, "expects a flat input, got %dx%dx%d (add a flatten or gap layer before it)",
             in.c, in.h, in.w);
    return why;
}

/* ---- conv2d (and the shape rule of a block's 3x3 convolutions) ---- */

int sila_conv_layer_build(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                          enum sila_layout src, enum sila_layout dst, struct sila_err *err)
{
    const struct sila_layer_spec *s = &L->spec;
    if (s->out < 1 || s->kernel < 1 || s->stride < 1 || s->pad < 0)
        return shape_error(err, prefix, L, "needs out, kernel, stride >= 1 and pad >= 0");
    if (sila_conv_geom_init(&L->conv, b->max_batch, L->in.c, L->in.h, L->in.w, s->out, s->kernel,
                            s->stride, s->pad))
        return shape_error(err, prefix, L, "kernel larger than the padded input");
    L->conv.threads = omp_get_max_threads();
    L->conv.bias = s->bias;
    L->conv.src_layout = src;
    L->conv.dst_layout = dst;
    L->out = (struct sila_shape){s->out, L->conv.OH, L->conv.OW};
    int r = sila_conv_plan_new(&L->conv);
    if (r == -ENOMEM)
        return r;
    if (r)
        return shape_error(err, prefix, L, "no convolution of the math library for this shape");
    size_t work = sila_conv_work_floats(&L->conv);
    if (work > b->work_floats)
        b->work_floats = work;
    int shape[4] = {s->out, L->in.c, s->kernel, s->kernel};
    return add_weights(L, prefix, b, 4, shape, err);
}

static int build_conv(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                      struct sila_err *err)
{
    return sila_conv_layer_build(L, prefix, b, SILA_LAYOUT_NCHW, SILA_LAYOUT_NCHW, err);
}

static void conv_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    const float *P = ctx->params;
    L->conv.B = ctx->B;
    sila_conv2d_forward(L->y, in, P + L->w_off, bias_of(L, P), &L->conv, ctx->work);
}

static void conv_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                          const struct sila_ctx *ctx)
{
    L->conv.B = ctx->B;
    sila_conv2d_backward(din, grad_weight_of(L, ctx->grads), grad_bias_of(L, ctx->grads), dout, in,
                         ctx->params + L->w_off, &L->conv, ctx->work);
}

/* A k x k convolution with pad on `in`: it must fit, and stay within the
 * job's limits on one sample's output and scratch. */
static const char *fit_window(const struct sila_layer_spec *s, struct sila_shape in, int k, int pad,
                              const char **ret_key, char *why, size_t n)
{
    long long oh = window_out(in.h, k, s->stride, pad), ow = window_out(in.w, k, s->stride, pad);
    if (oh < 0 || ow < 0) {
        *ret_key = "kernel";
        snprintf(why, n, "a %dx%d kernel does not fit the %dx%dx%d input padded by %d", k, k, in.c,
                 in.h, in.w, pad);
        return why;
    }
    if ((long long)s->out * oh * ow > MAX_ACT) {
        *ret_key = "out";
        snprintf(why, n, "the output %dx%lldx%lld exceeds %d values per sample", s->out, oh, ow,
                 MAX_ACT);
        return why;
    }
    long long scratch = (long long)in.c * k * k * oh * ow;
    if (scratch <= MAX_SCRATCH)
        return NULL;
    *ret_key = "kernel";
    snprintf(why, n, "the %dx%dx%d input needs %lld floats of scratch (at most %d)", in.c, in.h,
             in.w, scratch, MAX_SCRATCH);
    return why;
}

static const char *fit_conv(const struct sila_layer_spec *s, struct sila_shape in,
                            const char **ret_key, char *why, size_t n)
{
    return fit_window(s, in, s->kernel, s->pad, ret_key, why, n);
}

static const char *fit_block(const struct sila_layer_spec *s, struct sila_shape in,
                             const char **ret_key, char *why, size_t n)
{
    return fit_window(s, in, 3, 1, ret_key, why, n);
}

/* ---- batchnorm ---- */

int sila_bn_layer_tensors(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                          struct sila_err *err)
{
    if (!(L->spec.bn_eps > 0.0f && L->spec.bn_momentum >= 0.0f && L->spec.bn_momentum <= 1.0f))
        return shape_error(err, prefix, L, "needs eps > 0 and 0 <= momentum <= 1");
    L->out = L->in;
    int c[1] = {L->in.c}, r;
    if ((r = sila_builder_add_tensor(b, prefix, "weight", SILA_TENSOR_BN_GAMMA, 0, 1, c, &L->w_off,
                                     err)) ||
        (r = sila_builder_add_tensor(b, prefix, "bias", SILA_TENSOR_BN_BETA, 0, 1, c, &L->b_off,
                                     err)) ||
        (r = sila_builder_add_tensor(b, prefix, "running_mean", SILA_TENSOR_RUNNING_MEAN, 0, 1, c,
                                     &L->rm_off, err)) ||
        (r = sila_builder_add_tensor(b, prefix, "running_var", SILA_TENSOR_RUNNING_VAR, 0, 1, c,
                                     &L->rv_off, err)))
        return r;
    return 0;
}

static int build_bn(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                    struct sila_err *err)
{
    int r = sila_bn_layer_tensors(L, prefix, b, err);
    if (r)
        return r;
    L->mean = calloc(L->in.c, sizeof *L->mean);
    L->invstd = calloc(L->in.c, sizeof *L->invstd);
    return L->mean && L->invstd ? 0 : -ENOMEM;
}

static void bn_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    const float *P = ctx->params;
    float *buf = ctx->buffers;
    if (ctx->train)
        sila_bn_forward_train(L->y, L->mean, L->invstd, buf + L->rm_off, buf + L->rv_off, in,
                              P + L->w_off, P + L->b_off, L->spec.bn_momentum, L->spec.bn_eps,
                              ctx->B, L->in.c, L->in.h * L->in.w);
    else
        sila_bn_forward_eval(L->y, in, P + L->w_off, P + L->b_off, buf + L->rm_off, buf + L->rv_off,
                             L->spec.bn_eps, ctx->B, L->in.c, L->in.h * L->in.w);
}

static void bn_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                        const struct sila_ctx *ctx)
{
    float *G = ctx->grads;
    sila_bn_backward(din, grad_weight_of(L, G), G ? G + L->b_off : NULL, dout, in, L->mean,
                     L->invstd, ctx->params + L->w_off, ctx->B, L->in.c, L->in.h * L->in.w);
}

/* ---- element-wise and reshaping kinds: relu, gap, flatten ---- */

static int build_same(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                      struct sila_err *err)
{
    (void)prefix, (void)b, (void)err;
    L->out = L->in;
    return 0;
}

static void relu_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    sila_relu_forward(L->y, in, n_in(L, ctx));
}

static void relu_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                          const struct sila_ctx *ctx)
{
    (void)in;
    sila_relu_backward(din, dout, L->y, n_in(L, ctx));
}

static int build_gap(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                     struct sila_err *err)
{
    (void)prefix, (void)b, (void)err;
    L->out = (struct sila_shape){L->in.c, 1, 1};
    return 0;
}

static void gap_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    sila_gap_forward(L->y, in, ctx->B, L->in.c, L->in.h * L->in.w);
}

static void gap_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                         const struct sila_ctx *ctx)
{
    (void)in;
    sila_gap_backward(din, dout, ctx->B, L->in.c, L->in.h * L->in.w);
}

static int build_flatten(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                         struct sila_err *err)
{
    (void)prefix, (void)b, (void)err;
    L->out = (struct sila_shape){(int)sila_shape_size(L->in), 1, 1};
    return 0;
}

static void flatten_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    (void)ctx;
    L->y = (float *)in; /* a view: flatten never writes */
}

static void copy_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                          const struct sila_ctx *ctx)
{
    (void)in;
    memcpy(din, dout, sizeof *din * n_in(L, ctx));
}

/* ---- pooling ---- */

static int build_pool(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                      struct sila_err *err)
{
    const struct sila_layer_spec *s = &L->spec;
    if (sila_pool_geom_init(&L->pool, b->max_batch, L->in.c, L->in.h, L->in.w, s->kernel, s->stride,
                            s->pad))
        return shape_error(err, prefix, L,
                           "needs kernel, stride >= 1, pad <= kernel/2 and a window that fits");
    L->out = (struct sila_shape){L->in.c, L->pool.OH, L->pool.OW};
    if (s->kind == SILA_LAYER_MAXPOOL) {
        L->argmax = calloc((size_t)b->max_batch * sila_shape_size(L->out), sizeof *L->argmax);
        if (!L->argmax)
            return -ENOMEM;
    }
    return 0;
}

static void maxpool_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    L->pool.B = ctx->B;
    sila_maxpool_forward(L->y, L->argmax, in, &L->pool);
}

static void maxpool_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                             const struct sila_ctx *ctx)
{
    (void)in;
    L->pool.B = ctx->B;
    sila_maxpool_backward(din, dout, L->argmax, &L->pool);
}

static void avgpool_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    L->pool.B = ctx->B;
    sila_avgpool_forward(L->y, in, &L->pool);
}

static void avgpool_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                             const struct sila_ctx *ctx)
{
    (void)in;
    L->pool.B = ctx->B;
    sila_avgpool_backward(din, dout, &L->pool);
}

static const char *fit_pool(const struct sila_layer_spec *s, struct sila_shape in,
                            const char **ret_key, char *why, size_t n)
{
    if (2 * s->pad > s->kernel) {
        *ret_key = "pad";
        snprintf(why, n, "%d exceeds half the kernel (at most %d for kernel %d)", s->pad,
                 s->kernel / 2, s->kernel);
        return why;
    }
    if (window_out(in.h, s->kernel, s->stride, s->pad) >= 0 &&
        window_out(in.w, s->kernel, s->stride, s->pad) >= 0)
        return NULL;
    *ret_key = "kernel";
    snprintf(why, n, "a %dx%d window does not fit the %dx%dx%d input", s->kernel, s->kernel, in.c,
             in.h, in.w);
    return why;
}

/* ---- resizing to a side of `out`: adaptive average pool, bilinear upsample ---- */

static int build_resize(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                        struct sila_err *err)
{
    (void)b;
    if (L->spec.out < 1)
        return shape_error(err, prefix, L, "needs out >= 1");
    L->out = (struct sila_shape){L->in.c, L->spec.out, L->spec.out};
    return 0;
}

static void adapool_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    sila_adapool_forward(L->y, in, ctx->B, L->in.c, L->in.h, L->in.w, L->out.h, L->out.w);
}

static void adapool_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                             const struct sila_ctx *ctx)
{
    (void)in;
    sila_adapool_backward(din, dout, ctx->B, L->in.c, L->in.h, L->in.w, L->out.h, L->out.w);
}

static void upsample_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    sila_upsample_forward(L->y, in, ctx->B, L->in.c, L->in.h, L->in.w, L->out.h, L->out.w);
}

static void upsample_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                              const struct sila_ctx *ctx)
{
    (void)in;
    sila_upsample_backward(din, dout, ctx->B, L->in.c, L->in.h, L->in.w, L->out.h, L->out.w);
}

/* ---- dropout and drop-path ---- */

static int build_dropout(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                         struct sila_err *err)
{
    if (!(L->spec.p >= 0.0f && L->spec.p < 1.0f))
        return shape_error(err, prefix, L, "needs 0 <= p < 1");
    L->out = L->in;
    size_t n = L->spec.kind == SILA_LAYER_DROPOUT ? sila_shape_size(L->in) : 1;
    L->mask = sila_floats_alloc(n * b->max_batch);
    return L->mask ? 0 : -ENOMEM;
}

/* In evaluation or at p = 0 nothing is dropped: the output is the input
 * (copied unless in place), and true is returned. */
static bool passes_through(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    if (ctx->train && L->spec.p != 0.0f)
        return false;
    if (L->y != in)
        memcpy(L->y, in, sizeof *in * n_in(L, ctx));
    return true;
}

static void dropout_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    if (!passes_through(L, in, ctx))
        sila_dropout_forward(L->y, L->mask, in, n_in(L, ctx), L->spec.p, ctx->rng);
}

static void dropout_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                             const struct sila_ctx *ctx)
{
    if (L->spec.p == 0.0f)
        copy_backward(L, in, dout, din, ctx);
    else
        sila_dropout_backward(din, dout, L->mask, n_in(L, ctx));
}

static void droppath_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    if (!passes_through(L, in, ctx))
        sila_droppath_forward(L->y, L->mask, in, ctx->B, sila_shape_size(L->in), L->spec.p,
                              ctx->rng);
}

static void droppath_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                              const struct sila_ctx *ctx)
{
    if (L->spec.p == 0.0f)
        copy_backward(L, in, dout, din, ctx);
    else
        sila_droppath_backward(din, dout, L->mask, ctx->B, sila_shape_size(L->in));
}

/* ---- the table ---- */

/* Every kind's spec starts from these (stride 1 but for the pools), and
 * each entry adds its own. */
#define DEFAULTS(k, s) .kind = (k), .stride = (s), .bn_momentum = 0.1f, .bn_eps = 1e-5f
#define WINDOW_KEYS (SILA_LAYER_KEY_KERNEL | SILA_LAYER_KEY_STRIDE | SILA_LAYER_KEY_PAD)

/* One entry per kind: name, proto kind; job keys, the required ones,
 * defaults; flags; shape rule; build, forward, backward. */
/* clang-format off */
static const struct sila_layer_desc kinds[SILA_LAYER_KIND_MAX + 1] = {
    [SILA_LAYER_LINEAR] = {
        .name = "linear", .proto_kind = SILA__LAYER_KIND__LINEAR,
        .keys = SILA_LAYER_KEY_OUT | SILA_LAYER_KEY_BIAS, .required = SILA_LAYER_KEY_OUT,
        .defaults = {DEFAULTS(SILA_LAYER_LINEAR, 1), .bias = true},
        .flags = SILA_LAYER_PARAMS, .fit = fit_linear,
        .build = build_linear, .forward = linear_forward, .backward = linear_backward},
    [SILA_LAYER_CONV2D] = {
        .name = "conv2d", .proto_kind = SILA__LAYER_KIND__CONV2D,
        .keys = SILA_LAYER_KEY_OUT | WINDOW_KEYS | SILA_LAYER_KEY_BIAS,
        .required = SILA_LAYER_KEY_OUT,
        .defaults = {DEFAULTS(SILA_LAYER_CONV2D, 1), .kernel = 3, .bias = true},
        .flags = SILA_LAYER_PARAMS | SILA_LAYER_FILTERS, .fit = fit_conv,
        .build = build_conv, .forward = conv_forward, .backward = conv_backward},
    [SILA_LAYER_BATCHNORM] = {
        .name = "batchnorm", .proto_kind = SILA__LAYER_KIND__BATCHNORM,
        .keys = SILA_LAYER_KEY_MOMENTUM | SILA_LAYER_KEY_EPS,
        .defaults = {DEFAULTS(SILA_LAYER_BATCHNORM, 1)}, .flags = SILA_LAYER_PARAMS,
        .build = build_bn, .forward = bn_forward, .backward = bn_backward},
    [SILA_LAYER_RELU] = {
        .name = "relu", .proto_kind = SILA__LAYER_KIND__RELU,
        .defaults = {DEFAULTS(SILA_LAYER_RELU, 1)}, .flags = SILA_LAYER_IN_PLACE,
        .build = build_same, .forward = relu_forward, .backward = relu_backward},
    [SILA_LAYER_MAXPOOL] = {
        .name = "maxpool", .proto_kind = SILA__LAYER_KIND__MAXPOOL, .keys = WINDOW_KEYS,
        .defaults = {DEFAULTS(SILA_LAYER_MAXPOOL, 2), .kernel = 2},
        .flags = SILA_LAYER_STRIDE_IS_KERNEL, .fit = fit_pool,
        .build = build_pool, .forward = maxpool_forward, .backward = maxpool_backward},
    [SILA_LAYER_AVGPOOL] = {
        .name = "avgpool", .proto_kind = SILA__LAYER_KIND__AVGPOOL, .keys = WINDOW_KEYS,
        .defaults = {DEFAULTS(SILA_LAYER_AVGPOOL, 2), .kernel = 2},
        .flags = SILA_LAYER_STRIDE_IS_KERNEL, .fit = fit_pool,
        .build = build_pool, .forward = avgpool_forward, .backward = avgpool_backward},
    [SILA_LAYER_GAP] = {
        .name = "gap", .proto_kind = SILA__LAYER_KIND__GLOBAL_AVGPOOL,
        .defaults = {DEFAULTS(SILA_LAYER_GAP, 1)},
        .build = build_gap, .forward = gap_forward, .backward = gap_backward},
    [SILA_LAYER_FLATTEN] = {
        .name = "flatten", .proto_kind = SILA__LAYER_KIND__FLATTEN,
        .defaults = {DEFAULTS(SILA_LAYER_FLATTEN, 1)}, .flags = SILA_LAYER_VIEW,
        .build = build_flatten, .forward = flatten_forward, .backward = copy_backward},
    [SILA_LAYER_BLOCK] = {
        .name = "block", .proto_kind = SILA__LAYER_KIND__BASIC_BLOCK,
        .keys = SILA_LAYER_KEY_OUT | SILA_LAYER_KEY_STRIDE | SILA_LAYER_KEY_P |
                SILA_LAYER_KEY_MOMENTUM | SILA_LAYER_KEY_EPS,
        .required = SILA_LAYER_KEY_OUT, .defaults = {DEFAULTS(SILA_LAYER_BLOCK, 1)},
        .flags = SILA_LAYER_PARAMS | SILA_LAYER_OWN_OUTPUT | SILA_LAYER_FILTERS |
                 SILA_LAYER_DROPS_PATHS,
        .fit = fit_block,
        .build = sila_block_build, .forward = sila_block_forward,
        .backward = sila_block_backward},
    [SILA_LAYER_DROPOUT] = {
        .name = "dropout", .proto_kind = SILA__LAYER_KIND__DROPOUT, .keys = SILA_LAYER_KEY_P,
        .defaults = {DEFAULTS(SILA_LAYER_DROPOUT, 1)}, .flags = SILA_LAYER_IN_PLACE,
        .build = build_dropout, .forward = dropout_forward, .backward = dropout_backward},
    [SILA_LAYER_DROPPATH] = {
        .name = "droppath", .proto_kind = SILA__LAYER_KIND__DROP_PATH, .keys = SILA_LAYER_KEY_P,
        .defaults = {DEFAULTS(SILA_LAYER_DROPPATH, 1)},
        .flags = SILA_LAYER_IN_PLACE | SILA_LAYER_DROPS_PATHS,
        .build = build_dropout, .forward = droppath_forward, .backward = droppath_backward},
    [SILA_LAYER_ADAPTIVE_AVGPOOL] = {
        .name = "adaptive_avgpool", .proto_kind = SILA__LAYER_KIND__ADAPTIVE_AVGPOOL,
        .keys = SILA_LAYER_KEY_OUT, .required = SILA_LAYER_KEY_OUT,
        .defaults = {DEFAULTS(SILA_LAYER_ADAPTIVE_AVGPOOL, 1)},
        .build = build_resize, .forward = adapool_forward, .backward = adapool_backward},
    [SILA_LAYER_UPSAMPLE] = {
        .name = "upsample", .proto_kind = SILA__LAYER_KIND__UPSAMPLE,
        .keys = SILA_LAYER_KEY_OUT, .required = SILA_LAYER_KEY_OUT,
        .defaults = {DEFAULTS(SILA_LAYER_UPSAMPLE, 1)},
        .build = build_resize, .forward = upsample_forward, .backward = upsample_backward},
};
/* clang-format on */

const struct sila_layer_desc *sila_layer_desc(enum sila_layer_kind kind)
{
    if (kind < SILA_LAYER_LINEAR || kind > SILA_LAYER_KIND_MAX || !kinds[kind].name)
        return NULL;
    return &kinds[kind];
}
