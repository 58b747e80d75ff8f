/* Internal to common/: one built layer, the builder that lays out a net's
 * tensors and scratch while layers are built, and the descriptor of each
 * layer kind. net.c chains layers; block.c composes them into a residual
 * block; the job reader and the model files read the descriptors. Not
 * installed, not used by the programs. */
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

/* The keys a job file's layer section may set, one bit per field of
 * struct sila_layer_spec, in the order the job reader lists them. */
enum {
    SILA_LAYER_KEY_OUT = 1 << 0,
    SILA_LAYER_KEY_KERNEL = 1 << 1,
    SILA_LAYER_KEY_STRIDE = 1 << 2,
    SILA_LAYER_KEY_PAD = 1 << 3,
    SILA_LAYER_KEY_BIAS = 1 << 4,
    SILA_LAYER_KEY_P = 1 << 5,
    SILA_LAYER_KEY_MOMENTUM = 1 << 6,
    SILA_LAYER_KEY_EPS = 1 << 7,
};

/* What a kind is, beyond its functions. */
enum {
    SILA_LAYER_PARAMS = 1 << 0,           /* has parameters: backward runs even without din */
    SILA_LAYER_IN_PLACE = 1 << 1,         /* element-wise: works in place on a writable input */
    SILA_LAYER_VIEW = 1 << 2,             /* the output is the input, reshaped (never written) */
    SILA_LAYER_OWN_OUTPUT = 1 << 3,       /* build allocates the output itself */
    SILA_LAYER_STRIDE_IS_KERNEL = 1 << 4, /* a job's stride defaults to the kernel */
    SILA_LAYER_FILTERS = 1 << 5,          /* has conv filters (the kernel_similarity penalty) */
    SILA_LAYER_DROPS_PATHS = 1 << 6,      /* drops whole samples when p > 0 (cosub needs it) */
};

/* The shape rule a job file is checked against, in its words: NULL when
 * spec s fits input `in`, else why not (written into why, n bytes), with
 * the key to blame in *ret_key. The net's own build checks again. */
typedef const char *sila_layer_fit_fn(const struct sila_layer_spec *s, struct sila_shape in,
                                      const char **ret_key, char *why, size_t n);

/* One layer kind, one entry of layer_kinds.c's table: everything a new
 * kind has to say. build sets L->out and registers the tensors (errors as
 * sila_layer_build); forward and backward are sila_layer_forward's and
 * sila_layer_backward's for the kind. */
struct sila_layer_desc {
    const char *name;  /* job file section, messages, `silactl inspect` */
    int proto_kind;    /* its sila.LayerKind in model files */
    unsigned keys;     /* SILA_LAYER_KEY_* a job's section may set */
    unsigned required; /* of those, the ones without a default */
    struct sila_layer_spec defaults;
    unsigned flags;         /* SILA_LAYER_* */
    sila_layer_fit_fn *fit; /* NULL: any input the net accepts */
    int (*build)(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                 struct sila_err *err);
    void (*forward)(struct sila_layer *L, const float *in, const struct sila_ctx *ctx);
    void (*backward)(struct sila_layer *L, const float *in, const float *dout, float *din,
                     const struct sila_ctx *ctx);
};

/* The descriptor of kind, NULL for a value that names none. */
const struct sila_layer_desc *sila_layer_desc(enum sila_layer_kind kind);

/* The kind whose proto_kind is `proto`: 0, or -EINVAL for none. */
int sila_layer_kind_from_proto(int proto, enum sila_layer_kind *ret_kind);

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

/* The parts of the conv and batchnorm kinds' builds that a residual block
 * composes (L's spec and input set, as sila_layer_build sets them; no
 * output buffer). A conv: its weights (and bias) and its plan, with the
 * caller holding its input and output in layouts src and dst. A batch
 * norm: its eps and momentum checked, its four tensors (weight, bias,
 * running_mean, running_var). Errors as sila_layer_build's. */
int sila_conv_layer_build(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                          enum sila_layout src, enum sila_layout dst, struct sila_err *err);
int sila_bn_layer_tensors(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                          struct sila_err *err);

/* Residual basic block (block.c), used through the layer functions above. */
int sila_block_build(struct sila_layer *L, const char *prefix, struct sila_builder *b,
                     struct sila_err *err);
void sila_block_free(struct sila_block *blk);
void sila_block_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx);
void sila_block_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                         const struct sila_ctx *ctx);

#endif
