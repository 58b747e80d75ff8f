/* One layer of a net: shape inference, tensor layout, and dispatch of the
 * forward and backward passes to the kernels (see layer.h). */
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

static const char *const kind_names[] = {
    [SILA_LAYER_LINEAR] = "linear",
    [SILA_LAYER_CONV2D] = "conv2d",
    [SILA_LAYER_BATCHNORM] = "batchnorm",
    [SILA_LAYER_RELU] = "relu",
    [SILA_LAYER_MAXPOOL] = "maxpool",
    [SILA_LAYER_AVGPOOL] = "avgpool",
    [SILA_LAYER_GAP] = "gap",
    [SILA_LAYER_FLATTEN] = "flatten",
    [SILA_LAYER_BLOCK] = "block",
    [SILA_LAYER_DROPOUT] = "dropout",
    [SILA_LAYER_DROPPATH] = "droppath",
    [SILA_LAYER_ADAPTIVE_AVGPOOL] = "adaptive_avgpool",
    [SILA_LAYER_UPSAMPLE] = "upsample",
};

const char *sila_layer_kind_name(enum sila_layer_kind kind)
{
    if (kind < SILA_LAYER_LINEAR || kind > SILA_LAYER_KIND_MAX)
        return NULL;
    return kind_names[kind];
}

int sila_layer_kind_parse(const char *name, enum sila_layer_kind *ret_kind)
{
    for (int k = SILA_LAYER_LINEAR; k <= SILA_LAYER_KIND_MAX; k++)
        if (strcmp(name, kind_names[k]) == 0) {
            *ret_kind = (enum sila_layer_kind)k;
            return 0;
        }
    return -EINVAL;
}

struct sila_layer_spec sila_layer_spec_default(enum sila_layer_kind kind)
{
    struct sila_layer_spec s = {.kind = kind, .stride = 1, .bn_momentum = 0.1f, .bn_eps = 1e-5f};
    s.bias = kind == SILA_LAYER_LINEAR || kind == SILA_LAYER_CONV2D;
    if (kind == SILA_LAYER_MAXPOOL || kind == SILA_LAYER_AVGPOOL)
        s.kernel = s.stride = 2;
    if (kind == SILA_LAYER_CONV2D)
        s.kernel = 3;
    return s;
}

int sila_builder_add_tensor(struct sila_builder *b, const char *prefix, const char *suffix,
                            enum sila_tensor_role role, int fan_in, int ndim, const int *shape,
                            size_t *ret_offset, struct sila_err *err)
{
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (uint64_t)shape[i]; /* each <= SILA_MAX_DIM: no overflow before the check */
    if (n > SILA_MAX_TENSOR)
        return sila_err_set(err, -EINVAL, "layer %s: tensor %s has %llu values, more than %llu",
                            prefix, suffix, (unsigned long long)n,
                            (unsigned long long)SILA_MAX_TENSOR);
    if (b->ntensors == b->cap) {
        int cap = b->cap ? 2 * b->cap : 16;
        struct sila_tensor *t = realloc(b->tensors, sizeof *t * cap);
        if (!t)
            return -ENOMEM;
        b->tensors = t;
        b->cap = cap;
    }
    struct sila_tensor *t = &b->tensors[b->ntensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s.%s", prefix, suffix);
    t->role = role;
    t->fan_in = fan_in;
    t->ndim = ndim;
    t->n = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->n *= (size_t)shape[i];
    }
    size_t *count = sila_tensor_is_buffer(t) ? &b->nbuffers : &b->nparams;
    t->offset = *count;
    *count += t->n;
    *ret_offset = t->offset;
    return 0;
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

static int add_bn_tensors(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                          struct sila_err *err)
{
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
    L->mean = calloc(L->in.c, sizeof *L->mean);
    L->invstd = calloc(L->in.c, sizeof *L->invstd);
    return L->mean && L->invstd ? 0 : -ENOMEM;
}

static int shape_error(struct sila_err *err, const char *prefix, const struct sila_layer *L,
                       const char *why)
{
    return sila_err_set(err, -EINVAL, "layer %s (%s): %s (input %dx%dx%d)", prefix,
                        sila_layer_kind_name(L->spec.kind), why, L->in.c, L->in.h, L->in.w);
}

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

static int build_conv(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                      struct sila_err *err)
{
    const struct sila_layer_spec *s = &L->spec;
    if (s->out < 1 || s->kernel < 1 || s->stride < 1 || s->pad < 0)
        return shape_error(err, prefix, L, "needs out, kernel, stride >= 1 and pad >= 0");
    if (sila_conv_geom_init(&L->conv, b->max_batch, L->in.c, L->in.h, L->in.w, s->out, s->kernel,
                            s->stride, s->pad))
        return shape_error(err, prefix, L, "kernel larger than the padded input");
    L->conv.threads = omp_get_max_threads();
    L->out = (struct sila_shape){s->out, L->conv.OH, L->conv.OW};
    size_t work = sila_conv_work_floats(&L->conv);
    if (work > b->work_floats)
        b->work_floats = work;
    int shape[4] = {s->out, L->in.c, s->kernel, s->kernel};
    return add_weights(L, prefix, b, 4, shape, err);
}

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

static int build_dropout(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                         struct sila_err *err)
{
    if (!(L->spec.p >= 0.0f && L->spec.p < 1.0f))
        return shape_error(err, prefix, L, "needs 0 <= p < 1");
    L->out = L->in;
    size_t n = L->spec.kind == SILA_LAYER_DROPOUT ? sila_shape_size(L->in) : 1;
    L->mask = calloc(n * b->max_batch, sizeof *L->mask);
    return L->mask ? 0 : -ENOMEM;
}

static int build_kind(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                      struct sila_err *err)
{
    switch (L->spec.kind) {
    case SILA_LAYER_LINEAR:
        return build_linear(L, prefix, b, err);
    case SILA_LAYER_CONV2D:
        return build_conv(L, prefix, b, err);
    case SILA_LAYER_BATCHNORM:
        if (!(L->spec.bn_eps > 0.0f && L->spec.bn_momentum >= 0.0f && L->spec.bn_momentum <= 1.0f))
            return shape_error(err, prefix, L, "needs eps > 0 and 0 <= momentum <= 1");
        L->out = L->in;
        return add_bn_tensors(L, prefix, b, err);
    case SILA_LAYER_MAXPOOL:
    case SILA_LAYER_AVGPOOL:
        return build_pool(L, prefix, b, err);
    case SILA_LAYER_GAP:
        L->out = (struct sila_shape){L->in.c, 1, 1};
        return 0;
    case SILA_LAYER_ADAPTIVE_AVGPOOL:
    case SILA_LAYER_UPSAMPLE:
        if (L->spec.out < 1)
            return shape_error(err, prefix, L, "needs out >= 1");
        L->out = (struct sila_shape){L->in.c, L->spec.out, L->spec.out};
        return 0;
    case SILA_LAYER_RELU:
    case SILA_LAYER_FLATTEN:
        L->out = L->spec.kind == SILA_LAYER_RELU
                     ? L->in
                     : (struct sila_shape){(int)sila_shape_size(L->in), 1, 1};
        return 0;
    case SILA_LAYER_DROPOUT:
    case SILA_LAYER_DROPPATH:
        return build_dropout(L, prefix, b, err);
    case SILA_LAYER_BLOCK:
        return sila_block_build(L, prefix, b, err);
    }
    return sila_err_set(err, -EINVAL, "layer %s: unknown kind %d", prefix, (int)L->spec.kind);
}

/* Every dimension in 1..SILA_MAX_DIM and at most SILA_MAX_ACTIVATION values. */
static bool shape_ok(struct sila_shape s)
{
    if (s.c < 1 || s.h < 1 || s.w < 1 || s.c > SILA_MAX_DIM || s.h > SILA_MAX_DIM ||
        s.w > SILA_MAX_DIM)
        return false;
    return (uint64_t)s.c * (uint64_t)s.h * (uint64_t)s.w <= SILA_MAX_ACTIVATION;
}

static bool spec_ints_ok(const struct sila_layer_spec *s)
{
    int v[4] = {s->out, s->kernel, s->stride, s->pad};
    for (int i = 0; i < 4; i++)
        if (v[i] < 0 || v[i] > SILA_MAX_DIM)
            return false;
    return true;
}

static bool works_in_place(enum sila_layer_kind kind)
{
    return kind == SILA_LAYER_RELU || kind == SILA_LAYER_DROPOUT || kind == SILA_LAYER_DROPPATH;
}

int sila_layer_build(struct sila_layer *L, const struct sila_layer_spec *spec, struct sila_shape in,
                     float *in_buf, const char *prefix, struct sila_builder *b,
                     struct sila_err *err)
{
    memset(L, 0, sizeof *L);
    L->spec = *spec;
    L->in = in;
    if (!shape_ok(in))
        return sila_err_set(err, -EINVAL,
                            "layer %s: input shape %dx%dx%d is empty or too large "
                            "(each dimension 1..%d, at most %llu values)",
                            prefix, in.c, in.h, in.w, SILA_MAX_DIM,
                            (unsigned long long)SILA_MAX_ACTIVATION);
    if (!spec_ints_ok(spec))
        return sila_err_set(err, -EINVAL,
                            "layer %s (%s): out, kernel, stride and pad must lie "
                            "in 0..%d",
                            prefix, sila_layer_kind_name(spec->kind), SILA_MAX_DIM);
    int r = build_kind(L, prefix, b, err);
    if (r)
        return r;
    if (!shape_ok(L->out))
        return sila_err_set(err, -EINVAL,
                            "layer %s (%s): output shape %dx%dx%d is empty or too "
                            "large (each dimension 1..%d, at most %llu values)",
                            prefix, sila_layer_kind_name(spec->kind), L->out.c, L->out.h, L->out.w,
                            SILA_MAX_DIM, (unsigned long long)SILA_MAX_ACTIVATION);
    if (spec->kind == SILA_LAYER_FLATTEN || (in_buf && works_in_place(spec->kind))) {
        L->y = in_buf; /* NULL for flatten of the caller's input: set per forward */
        return 0;
    }
    if (spec->kind == SILA_LAYER_BLOCK)
        return 0; /* the block allocated its own output */
    L->y = malloc(sizeof *L->y * b->max_batch * sila_shape_size(L->out));
    L->y_owned = true;
    return L->y ? 0 : -ENOMEM;
}

void sila_layer_fini(struct sila_layer *L)
{
    if (L->y_owned)
        free(L->y);
    free(L->mean);
    free(L->invstd);
    free(L->argmax);
    free(L->mask);
    sila_block_free(L->block);
    memset(L, 0, sizeof *L);
}

static const float *bias_of(const struct sila_layer *L, const float *base)
{
    return L->spec.bias ? base + L->b_off : NULL;
}

void sila_layer_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    const float *P = ctx->params;
    float *buf = ctx->buffers;
    int B = ctx->B;
    size_t n_in = (size_t)B * sila_shape_size(L->in);
    switch (L->spec.kind) {
    case SILA_LAYER_LINEAR:
        sila_linear_forward(L->y, in, P + L->w_off, bias_of(L, P), B, L->in.c, L->out.c);
        break;
    case SILA_LAYER_CONV2D:
        L->conv.B = B;
        sila_conv2d_forward(L->y, in, P + L->w_off, bias_of(L, P), &L->conv, ctx->work);
        break;
    case SILA_LAYER_BATCHNORM:
        if (ctx->train)
            sila_bn_forward_train(L->y, L->mean, L->invstd, buf + L->rm_off, buf + L->rv_off, in,
                                  P + L->w_off, P + L->b_off, L->spec.bn_momentum, L->spec.bn_eps,
                                  B, L->in.c, L->in.h * L->in.w);
        else
            sila_bn_forward_eval(L->y, in, P + L->w_off, P + L->b_off, buf + L->rm_off,
                                 buf + L->rv_off, L->spec.bn_eps, B, L->in.c, L->in.h * L->in.w);
        break;
    case SILA_LAYER_RELU:
        sila_relu_forward(L->y, in, n_in);
        break;
    case SILA_LAYER_MAXPOOL:
        L->pool.B = B;
        sila_maxpool_forward(L->y, L->argmax, in, &L->pool);
        break;
    case SILA_LAYER_AVGPOOL:
        L->pool.B = B;
        sila_avgpool_forward(L->y, in, &L->pool);
        break;
    case SILA_LAYER_GAP:
        sila_gap_forward(L->y, in, B, L->in.c, L->in.h * L->in.w);
        break;
    case SILA_LAYER_ADAPTIVE_AVGPOOL:
        sila_adapool_forward(L->y, in, B, L->in.c, L->in.h, L->in.w, L->out.h, L->out.w);
        break;
    case SILA_LAYER_UPSAMPLE:
        sila_upsample_forward(L->y, in, B, L->in.c, L->in.h, L->in.w, L->out.h, L->out.w);
        break;
    case SILA_LAYER_FLATTEN:
        L->y = (float *)in; /* a view: flatten never writes */
        break;
    case SILA_LAYER_DROPOUT:
    case SILA_LAYER_DROPPATH:
        if (!ctx->train || L->spec.p == 0.0f) {
            if (L->y != in)
                memcpy(L->y, in, sizeof *in * n_in);
        } else if (L->spec.kind == SILA_LAYER_DROPOUT) {
            sila_dropout_forward(L->y, L->mask, in, n_in, L->spec.p, ctx->rng);
        } else {
            sila_droppath_forward(L->y, L->mask, in, B, sila_shape_size(L->in), L->spec.p,
                                  ctx->rng);
        }
        break;
    case SILA_LAYER_BLOCK:
        sila_block_forward(L, in, ctx);
        break;
    }
}

void sila_layer_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                         const struct sila_ctx *ctx)
{
    const float *P = ctx->params;
    float *G = ctx->grads;
    int B = ctx->B;
    size_t n_in = (size_t)B * sila_shape_size(L->in);
    switch (L->spec.kind) {
    case SILA_LAYER_LINEAR:
        sila_linear_backward(din, G + L->w_off, L->spec.bias ? G + L->b_off : NULL, dout, in,
                             P + L->w_off, B, L->in.c, L->out.c);
        return;
    case SILA_LAYER_CONV2D:
        L->conv.B = B;
        sila_conv2d_backward(din, G + L->w_off, L->spec.bias ? G + L->b_off : NULL, dout, in,
                             P + L->w_off, &L->conv, ctx->work);
        return;
    case SILA_LAYER_BATCHNORM:
        sila_bn_backward(din, G + L->w_off, G + L->b_off, dout, in, L->mean, L->invstd,
                         P + L->w_off, B, L->in.c, L->in.h * L->in.w);
        return;
    case SILA_LAYER_BLOCK:
        sila_block_backward(L, in, dout, din, ctx);
        return;
    default:
        break;
    }
    if (!din)
        return; /* the remaining kinds have no parameters */
    switch (L->spec.kind) {
    case SILA_LAYER_RELU:
        sila_relu_backward(din, dout, L->y, n_in);
        break;
    case SILA_LAYER_MAXPOOL:
        L->pool.B = B;
        sila_maxpool_backward(din, dout, L->argmax, &L->pool);
        break;
    case SILA_LAYER_AVGPOOL:
        L->pool.B = B;
        sila_avgpool_backward(din, dout, &L->pool);
        break;
    case SILA_LAYER_GAP:
        sila_gap_backward(din, dout, B, L->in.c, L->in.h * L->in.w);
        break;
    case SILA_LAYER_ADAPTIVE_AVGPOOL:
        sila_adapool_backward(din, dout, B, L->in.c, L->in.h, L->in.w, L->out.h, L->out.w);
        break;
    case SILA_LAYER_UPSAMPLE:
        sila_upsample_backward(din, dout, B, L->in.c, L->in.h, L->in.w, L->out.h, L->out.w);
        break;
    case SILA_LAYER_FLATTEN:
        memcpy(din, dout, sizeof *din * n_in);
        break;
    case SILA_LAYER_DROPOUT:
    case SILA_LAYER_DROPPATH:
        if (L->spec.p == 0.0f)
            memcpy(din, dout, sizeof *din * n_in);
        else if (L->spec.kind == SILA_LAYER_DROPOUT)
            sila_dropout_backward(din, dout, L->mask, n_in);
        else
            sila_droppath_backward(din, dout, L->mask, B, sila_shape_size(L->in));
        break;
    default:
        break;
    }
}
