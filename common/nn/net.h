/* Networks: an ordered list of layers with their parameters laid out in one
 * contiguous block.
 *
 * A net is built from layer specs and a per-sample input shape; building
 * checks that the shapes chain and allocates every activation, saved state
 * and scratch buffer for batches of up to max_batch samples, so forward and
 * backward never allocate. Parameters, their gradients and the batch-norm
 * running statistics ("buffers") are NOT owned by the net: the caller binds
 * three blocks of sila_net_param_count / sila_net_param_count /
 * sila_net_buffer_count floats (typically slices of one module arena).
 *
 * Threads: the kernels share each batch among OpenMP threads; convolutions
 * use omp_get_max_threads() as of building the net (their scratch is sized
 * for it) and call sgemm from those threads, so OpenBLAS must be
 * single-threaded. Results depend on the thread count, never on timing. */
#ifndef SILA_NET_H
#define SILA_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"

/* Layer kinds. Each has one descriptor in common/nn/layer_kinds.c (name,
 * job keys, defaults, shape rule, build, forward, backward, its
 * sila.LayerKind): a new kind is a value here and one entry there. The
 * values match sila.LayerKind in proto/sila.proto so far. */
enum sila_layer_kind {
    SILA_LAYER_LINEAR = 1,
    SILA_LAYER_CONV2D = 2,
    SILA_LAYER_BATCHNORM = 3,
    SILA_LAYER_RELU = 4,
    SILA_LAYER_MAXPOOL = 5,
    SILA_LAYER_AVGPOOL = 6,
    SILA_LAYER_GAP = 7,
    SILA_LAYER_FLATTEN = 8,
    SILA_LAYER_BLOCK = 9,
    SILA_LAYER_DROPOUT = 10,
    SILA_LAYER_DROPPATH = 11,
    SILA_LAYER_ADAPTIVE_AVGPOOL = 12,
    SILA_LAYER_UPSAMPLE = 13,
};
#define SILA_LAYER_KIND_MAX SILA_LAYER_UPSAMPLE

/* One layer. Fields used per kind:
 *   linear:    out (features), bias
 *   conv2d:    out (channels), kernel, stride, pad, bias
 *   batchnorm: bn_momentum, bn_eps
 *   maxpool, avgpool: kernel, stride, pad
 *   block:     out (channels), stride, p (drop-path on the residual branch,
 *              0 = off), bn_momentum, bn_eps. A ResNet basic block:
 *              conv3x3(stride)+BN+ReLU, conv3x3+BN, plus the input (identity)
 *              or a 1x1 conv(stride)+BN projection when the shape changes,
 *              then ReLU.
 *   dropout, droppath: p
 *   adaptive_avgpool: out (the output's side: (C, out, out), PyTorch's
 *              adaptive_avg_pool2d)
 *   upsample:  out (the output's side: (C, out, out), bilinear with aligned
 *              corners)
 *   relu, gap (global average pool, output (C,1,1)), flatten: nothing. */
struct sila_layer_spec {
    enum sila_layer_kind kind;
    int out;
    int kernel;
    int stride;
    int pad;
    bool bias;
    float p;
    float bn_momentum;
    float bn_eps;
};

/* Limits a net is checked against when built (from a job or a model file):
 * every dimension, channel count, kernel, stride and padding; the floats of
 * one tensor; the floats of one sample's activation at any layer. */
#define SILA_MAX_DIM 65536
#define SILA_MAX_TENSOR ((uint64_t)1 << 31)
#define SILA_MAX_ACTIVATION ((uint64_t)1 << 28)

/* Per-sample shape (NCHW without N). Flat vectors are (n, 1, 1). */
struct sila_shape {
    int c, h, w;
};

static inline size_t sila_shape_size(struct sila_shape s)
{
    return (size_t)s.c * s.h * s.w;
}

/* Name of a kind ("linear", "conv2d", ...), NULL when out of range; and
 * back, 0 or -EINVAL. */
const char *sila_layer_kind_name(enum sila_layer_kind kind);
int sila_layer_kind_parse(const char *name, enum sila_layer_kind *ret_kind);

/* A spec with every field at its default for `kind` (stride 1, bias on for
 * linear/conv2d, BN momentum 0.1 and eps 1e-5, pooling stride = kernel). */
struct sila_layer_spec sila_layer_spec_default(enum sila_layer_kind kind);

enum sila_tensor_role {
    SILA_TENSOR_WEIGHT = 1,   /* linear/conv weight: U(±1/sqrt(fan_in)) */
    SILA_TENSOR_BIAS,         /* linear/conv bias:   U(±1/sqrt(fan_in)) */
    SILA_TENSOR_BN_GAMMA,     /* 1 */
    SILA_TENSOR_BN_BETA,      /* 0 */
    SILA_TENSOR_RUNNING_MEAN, /* buffer, 0 */
    SILA_TENSOR_RUNNING_VAR,  /* buffer, 1 */
};

/* A named tensor of a net: `n` floats at `offset` in the parameter block
 * (or the buffer block, for running statistics). Names follow PyTorch's
 * state_dict ("3.conv1.weight", "3.bn1.running_var"). */
struct sila_tensor {
    char name[64];
    enum sila_tensor_role role;
    int ndim;
    int shape[4];
    size_t offset;
    size_t n;
    int fan_in;
};

static inline bool sila_tensor_is_buffer(const struct sila_tensor *t)
{
    return t->role == SILA_TENSOR_RUNNING_MEAN || t->role == SILA_TENSOR_RUNNING_VAR;
}

/* Whether t is the filter bank of a convolution, (out channels, in
 * channels, k, k): what the kernel_similarity penalty works on. */
static inline bool sila_tensor_is_filter_bank(const struct sila_tensor *t)
{
    return t->role == SILA_TENSOR_WEIGHT && t->ndim == 4;
}

struct sila_net;

/* Builds a net of n layers for inputs of shape `in` and batches of at most
 * max_batch. Errors: -EINVAL when a spec is invalid, a limit above is
 * exceeded or the shapes do not chain (err names the layer index, kind and
 * shapes), -ENOMEM (err says so). */
int sila_net_new(struct sila_net **ret_net, const struct sila_layer_spec *specs, int n,
                 struct sila_shape in, int max_batch, struct sila_err *err);
/* A net of like's layers whose activations are its own but whose scratch
 * (of one forward or backward pass: the convolutions' work and the
 * backward's gradients) is like's, borrowed: only one of the two may run
 * at a time, and like must outlive it. Errors as sila_net_new. */
int sila_net_new_like(struct sila_net **ret_net, const struct sila_net *like, struct sila_err *err);
/* Frees the net and everything it owns (not the bound blocks); NULL is safe. */
void sila_net_free(struct sila_net *net);

size_t sila_net_param_count(const struct sila_net *net);
size_t sila_net_buffer_count(const struct sila_net *net);
/* Multiply-adds of one sample's forward pass in the convolutions and
 * linear layers (blocks' included): each weight times the output
 * positions it is applied at. Normalisation, activations and pooling are
 * not counted. */
uint64_t sila_net_macs(const struct sila_net *net);
struct sila_shape sila_net_in_shape(const struct sila_net *net);
struct sila_shape sila_net_out_shape(const struct sila_net *net);
int sila_net_max_batch(const struct sila_net *net);
int sila_net_layer_count(const struct sila_net *net);
const struct sila_layer_spec *sila_net_layer_spec(const struct sila_net *net, int i);
/* Output shape of layer i. */
struct sila_shape sila_net_layer_out_shape(const struct sila_net *net, int i);
int sila_net_tensor_count(const struct sila_net *net);
const struct sila_tensor *sila_net_tensor(const struct sila_net *net, int i);

/* Binds the parameter, gradient and buffer blocks (not owned; must outlive
 * every later call). grads may be NULL for a net only evaluated. */
void sila_net_bind(struct sila_net *net, float *params, float *grads, float *buffers);

/* Initialises bound parameters and buffers in tensor order from rng, with
 * PyTorch's default scheme (see enum sila_tensor_role). */
void sila_net_init_params(struct sila_net *net, struct sila_rng *rng);

/* Forward pass of B <= max_batch samples x (B, in). train selects batch
 * statistics (updating the running ones), dropout and drop-path, which draw
 * from rng (unused when !train). Returns the output (B, out), owned by the
 * net and valid until the next forward. */
const float *sila_net_forward(struct sila_net *net, const float *x, int B, bool train,
                              struct sila_rng *rng);

/* The output of the last forward pass (as returned by it). */
const float *sila_net_output(const struct sila_net *net);

/* Backward pass after a train-mode forward of the same x and B: ADDS the
 * parameter gradients into the grads block and writes d(loss)/dx into din
 * (B, in) unless din is NULL. dout (B, out) is d(loss)/d(output). */
void sila_net_backward(struct sila_net *net, const float *x, const float *dout, float *din, int B);
/* The same pass for d(loss)/dx alone (din, not NULL): no parameter
 * gradient is computed or touched (a frozen net's). */
void sila_net_backward_input(struct sila_net *net, const float *x, const float *dout, float *din,
                             int B);

#endif
