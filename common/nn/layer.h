/* Internal to common/: one built layer, and the builder that lays out a
 * net's tensors and scratch while layers are built. net.c chains layers;
 * block.c composes them into a residual block. Not installed, not used by
 * the programs. */
#ifndef SILA_LAYER_H
#define SILA_LAYER_H

#include "kernels.h"
#include "net.h"

struct sila_builder {
    int max_batch;
    struct sila_tensor *tensors; /* owned, grown by sila_builder_add_tensor */
    int ntensors, cap;
    size_t nparams, nbuffers;
    size_t work_floats; /* largest conv scratch of any layer */
};

/* Appends tensor `prefix.suffix` of the given role and shape (ndim <= 4),
 * placing it after the parameters or buffers registered so far; its offset
 * is written to *ret_offset. Returns 0, -EINVAL (more than SILA_MAX_TENSOR
 * floats; err says so) or -ENOMEM. */
int sila_builder_add_tensor(struct sila_builder *b, const char *prefix, const char *suffix,
                            enum sila_tensor_role role, int fan_in, int ndim, const int *shape,
                            size_t *ret_offset, struct sila_err *err);

/* What a forward or backward pass works on: the bound blocks, the shared
 * conv scratch and the batch. */
struct sila_ctx {
    float *params, *grads, *buffers, *work;
    struct sila_rng *rng;
    bool train;
    int B;
};

struct sila_block;

struct sila_layer {
    struct sila_layer_spec spec;
    struct sila_shape in, out;
    size_t w_off, b_off;   /* weight/gamma and bias/beta in the params block */
    size_t rm_off, rv_off; /* running statistics in the buffers block */
    float *y;              /* (max_batch, out); aliases the input when !y_owned */
    bool y_owned;
    struct sila_conv_geom conv; /* B = max_batch; set per call */
    struct sila_pool_geom pool;
    float *mean, *invstd; /* batch norm, (out.c) each */
    int32_t *argmax;      /* max pool, (max_batch, out) */
    float *mask;          /* dropout (max_batch, out) or drop-path (max_batch) */
    struct sila_block *block;
};

/* Builds layer L for input shape `in`, registering its tensors under
 * `prefix`. in_buf is the buffer holding the layer's input (NULL when it is
 * the caller's input, which must never be written): element-wise layers
 * (relu, dropout, drop-path) then work in place and flatten aliases it.
 * Errors: -EINVAL (message names prefix, kind and shapes), -ENOMEM. */
int sila_layer_build(struct sila_layer *L, const struct sila_layer_spec *spec, struct sila_shape in,
                     float *in_buf, const char *prefix, struct sila_builder *b,
                     struct sila_err *err);
/* Frees what L owns; safe on a zeroed or partly built layer. */
void sila_layer_fini(struct sila_layer *L);
/* in (B, L->in) -> L->y (B, L->out). */
void sila_layer_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx);
/* Adds parameter gradients; writes din (B, L->in) unless NULL. din must not
 * alias dout. */
void sila_layer_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                         const struct sila_ctx *ctx);

/* Residual basic block (block.c), used through the layer functions above. */
int sila_block_build(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                     struct sila_err *err);
void sila_block_free(struct sila_block *blk);
void sila_block_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx);
void sila_block_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                         const struct sila_ctx *ctx);

#endif
