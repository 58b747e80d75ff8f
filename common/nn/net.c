/* A net: layers in sequence over one parameter block (see net.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

struct sila_net {
    struct sila_layer *layers; /* owned, n of them */
    struct sila_layer_spec *specs;
    int n;
    struct sila_shape in, out;
    int max_batch;
    struct sila_builder bld;         /* tensors and sizes, kept after building */
    float *params, *grads, *buffers; /* bound, not owned */
    float *work;                     /* conv scratch, owned unless borrowed */
    float *g_a, *g_b;                /* (max_batch, largest activation) ping-pong, as work */
    bool borrowed;                   /* work, g_a and g_b are another net's */
};

static int build_layers(struct sila_net *net, const struct sila_layer_spec *specs,
                        size_t *ret_max_act, struct sila_err *err)
{
    struct sila_shape shape = net->in;
    float *in_buf = NULL;
    size_t max_act = sila_shape_size(shape);
    for (int i = 0; i < net->n; i++) {
        char prefix[16];
        snprintf(prefix, sizeof prefix, "%d", i);
        int r = sila_layer_build(&net->layers[i], &specs[i], shape, in_buf, prefix, &net->bld, err);
        if (r)
            return r;
        shape = net->layers[i].out;
        in_buf = net->layers[i].y;
        if (sila_shape_size(shape) > max_act)
            max_act = sila_shape_size(shape);
    }
    net->out = shape;
    *ret_max_act = max_act;
    return 0;
}

/* sila_net_new, with the scratch of `scratch_of` borrowed when it is not
 * NULL (sila_net_new_like) instead of allocated. */
static int net_new(struct sila_net **ret_net, const struct sila_layer_spec *specs, int n,
                   struct sila_shape in, int max_batch, const struct sila_net *scratch_of,
                   struct sila_err *err)
{
    if (n < 1 || max_batch < 1)
        return sila_err_set(err, -EINVAL, "a net needs at least one layer and max_batch >= 1");
    struct sila_net *net = calloc(1, sizeof *net);
    if (!net)
        return sila_err_set(err, -ENOMEM, "out of memory");
    net->n = n;
    net->in = in;
    net->max_batch = max_batch;
    net->bld.max_batch = max_batch;
    net->layers = calloc(n, sizeof *net->layers);
    net->specs = malloc(sizeof *net->specs * n);
    int r = -ENOMEM;
    size_t max_act;
    if (!net->layers || !net->specs)
        goto fail;
    memcpy(net->specs, specs, sizeof *specs * n);
    if ((r = build_layers(net, specs, &max_act, err)))
        goto fail;
    if (scratch_of) {
        net->work = scratch_of->work;
        net->g_a = scratch_of->g_a;
        net->g_b = scratch_of->g_b;
        net->borrowed = true;
        *ret_net = net;
        return 0;
    }
    r = -ENOMEM;
    net->work = sila_floats_alloc(net->bld.work_floats);
    net->g_a = sila_floats_alloc(max_act * max_batch);
    net->g_b = sila_floats_alloc(max_act * max_batch);
    if (!net->work || !net->g_a || !net->g_b)
        goto fail;
    *ret_net = net;
    return 0;
fail:
    if (r == -ENOMEM)
        sila_err_set(err, r, "out of memory for a net of %d layers and batches of %d", n,
                     max_batch);
    sila_net_free(net);
    return r;
}

void sila_net_free(struct sila_net *net)
{
    if (!net)
        return;
    for (int i = 0; net->layers && i < net->n; i++)
        sila_layer_fini(&net->layers[i]);
    free(net->layers);
    free(net->specs);
    free(net->bld.tensors);
    if (!net->borrowed) {
        free(net->work);
        free(net->g_a);
        free(net->g_b);
    }
    free(net);
}

int sila_net_new(struct sila_net **ret_net, const struct sila_layer_spec *specs, int n,
                 struct sila_shape in, int max_batch, struct sila_err *err)
{
    return net_new(ret_net, specs, n, in, max_batch, NULL, err);
}

int sila_net_new_like(struct sila_net **ret_net, const struct sila_net *like, struct sila_err *err)
{
    return net_new(ret_net, like->specs, like->n, like->in, like->max_batch, like, err);
}

size_t sila_net_param_count(const struct sila_net *net)
{
    return net->bld.nparams;
}

size_t sila_net_buffer_count(const struct sila_net *net)
{
    return net->bld.nbuffers;
}

struct sila_shape sila_net_in_shape(const struct sila_net *net)
{
    return net->in;
}

struct sila_shape sila_net_out_shape(const struct sila_net *net)
{
    return net->out;
}

int sila_net_max_batch(const struct sila_net *net)
{
    return net->max_batch;
}

int sila_net_layer_count(const struct sila_net *net)
{
    return net->n;
}

const struct sila_layer_spec *sila_net_layer_spec(const struct sila_net *net, int i)
{
    return &net->specs[i];
}

struct sila_shape sila_net_layer_out_shape(const struct sila_net *net, int i)
{
    return net->layers[i].out;
}

uint64_t sila_net_macs(const struct sila_net *net)
{
    uint64_t macs = 0;
    for (int i = 0; i < net->bld.ntensors; i++) {
        const struct sila_tensor *t = &net->bld.tensors[i];
        if (t->role != SILA_TENSOR_WEIGHT)
            continue;
        /* a tensor's name starts with its layer's index; a block's convs
         * all produce the block's output positions */
        struct sila_shape out = net->layers[atoi(t->name)].out;
        macs += (uint64_t)t->n * (uint64_t)out.h * (uint64_t)out.w;
    }
    return macs;
}

int sila_net_tensor_count(const struct sila_net *net)
{
    return net->bld.ntensors;
}

const struct sila_tensor *sila_net_tensor(const struct sila_net *net, int i)
{
    return &net->bld.tensors[i];
}

void sila_net_bind(struct sila_net *net, float *params, float *grads, float *buffers)
{
    net->params = params;
    net->grads = grads;
    net->buffers = buffers;
}

static void init_tensor(float *x, const struct sila_tensor *t, struct sila_rng *rng)
{
    float bound = t->fan_in > 0 ? 1.0f / sqrtf((float)t->fan_in) : 0.0f;
    for (size_t i = 0; i < t->n; i++) {
        switch (t->role) {
        case SILA_TENSOR_WEIGHT:
        case SILA_TENSOR_BIAS:
            x[i] = bound * (2.0f * sila_rng_uniform(rng) - 1.0f);
            break;
        case SILA_TENSOR_BN_GAMMA:
        case SILA_TENSOR_RUNNING_VAR:
            x[i] = 1.0f;
            break;
        case SILA_TENSOR_BN_BETA:
        case SILA_TENSOR_RUNNING_MEAN:
            x[i] = 0.0f;
            break;
        }
    }
}

void sila_net_init_params(struct sila_net *net, struct sila_rng *rng)
{
    for (int i = 0; i < net->bld.ntensors; i++) {
        const struct sila_tensor *t = &net->bld.tensors[i];
        float *base = sila_tensor_is_buffer(t) ? net->buffers : net->params;
        init_tensor(base + t->offset, t, rng);
    }
}

static struct sila_ctx make_ctx(const struct sila_net *net, int B, bool train, struct sila_rng *rng)
{
    return (struct sila_ctx){.params = net->params,
                             .grads = net->grads,
                             .buffers = net->buffers,
                             .work = net->work,
                             .rng = rng,
                             .train = train,
                             .B = B};
}

const float *sila_net_forward(struct sila_net *net, const float *x, int B, bool train,
                              struct sila_rng *rng)
{
    struct sila_ctx ctx = make_ctx(net, B, train, rng);
    const float *in = x;
    for (int i = 0; i < net->n; i++) {
        sila_layer_forward(&net->layers[i], in, &ctx);
        in = net->layers[i].y;
    }
    return in;
}

const float *sila_net_output(const struct sila_net *net)
{
    return net->layers[net->n - 1].y;
}

/* The backward pass with ctx (its grads NULL: none computed). */
static void backward(struct sila_net *net, const struct sila_ctx *ctx, const float *x,
                     const float *dout, float *din)
{
    const float *g = dout;
    for (int i = net->n - 1; i >= 0; i--) {
        float *dst = i == 0 ? din : (g == net->g_a ? net->g_b : net->g_a);
        sila_layer_backward(&net->layers[i], i ? net->layers[i - 1].y : x, g, dst, ctx);
        g = dst;
    }
}

void sila_net_backward(struct sila_net *net, const float *x, const float *dout, float *din, int B)
{
    struct sila_ctx ctx = make_ctx(net, B, true, NULL);
    backward(net, &ctx, x, dout, din);
}

void sila_net_backward_input(struct sila_net *net, const float *x, const float *dout, float *din,
                             int B)
{
    struct sila_ctx ctx = make_ctx(net, B, true, NULL);
    ctx.grads = NULL;
    backward(net, &ctx, x, dout, din);
}
