/* Forward and backward kernels of every layer, in the manner of llm.c: plain
 * functions over caller-owned float32 arrays, shapes in the comments, NCHW.
 *
 * Conventions shared by every backward kernel:
 *   - parameter gradients (dw, db, dgamma, ...) are ACCUMULATED (+=), so the
 *     caller zeroes them once per step;
 *   - the input gradient `din` is OVERWRITTEN; it may be NULL when not needed
 *     (first layer), and must not alias any other argument unless stated.
 * No kernel allocates, fails, or keeps a pointer after returning. */
#ifndef SILA_KERNELS_H
#define SILA_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rng.h"

/* Elementwise kernels below this many elements run on one thread: the
 * threads' start-up would cost more than they save. */
#define SILA_PARALLEL_MIN_ELEMS 65536

/* True when every value of x (n floats) is finite (no NaN, no infinity). */
bool sila_all_finite(const float *x, size_t n);
/* Σ x[i] for i < n: eight float lanes, four rounds of them at once, in a
 * fixed order (so the result does not depend on the compiler or the
 * instruction set), the lanes added in float, the rest in double. */
double sila_plane_sum(const float *x, int n);

/* ---- the kernels' operands ---------------------------------------------- */
/* Zeroed room for n floats (at least one), aligned to SILA_FLOATS_ALIGN
 * bytes, or NULL when out of memory or n * 4 overflows; the caller owns it
 * and frees it with free(). Pages are zeroed as calloc zeroes fresh ones,
 * at first touch, so that pages never written are never made resident
 * (2 MB pages where an array spans them: floats.c).
 * Every activation, gradient and scratch array of a net comes from here:
 * oneDNN's and the compiler's vector loads then never straddle cache lines
 * (malloc's 16-byte alignment made oneDNN's batch norm at 64x7x7 2.7 times
 * slower). */
#define SILA_FLOATS_ALIGN 64
float *sila_floats_alloc(size_t n);

/* ---- linear: out = in · w^T + b --------------------------------------- */
/* out (B, OUT), in (B, IN), w (OUT, IN), b (OUT) or NULL */
void sila_linear_forward(float *out, const float *in, const float *w, const float *b, int B, int IN,
                         int OUT);
/* Adds into dw and db (each NULL: not computed); writes din unless NULL. */
void sila_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, int B, int IN, int OUT);

/* ---- activation layouts ------------------------------------------------ */
/* How a caller holds activations (B, C, H, W): NCHW, or oneDNN's
 * channel-blocked nChw8c / nChw16c, (B, ceil(C/k), H, W, k) with the
 * channels zero-padded to a multiple of k = 8 or 16 (the layouts its JIT
 * convolutions use on AVX2 and AVX-512 machines). */
enum sila_layout { SILA_LAYOUT_NCHW, SILA_LAYOUT_NCHW8C, SILA_LAYOUT_NCHW16C };

/* Floats of (B, C, H, W) in layout l, padding included. */
size_t sila_layout_floats(enum sila_layout l, int B, int C, int H, int W);

/* ---- conv2d, on oneDNN (conv.c) --------------------------------------- */
struct sila_conv_plan; /* the library's primitives for this geometry */

struct sila_conv_geom {
    int B, C, H, W; /* input (B, C, H, W); B <= the B the plan was made for */
    int OC, K;      /* OC output channels, square K x K kernel */
    int stride, pad;
    int OH, OW;  /* derived by sila_conv_geom_init */
    int threads; /* OpenMP threads of the primitives; 1 from sila_conv_geom_init.
                    Results may depend on it, never on timing. */
    bool bias;   /* has a bias (b and db); false from sila_conv_geom_init */
    /* how the caller holds in and din, out and dout; NCHW from
     * sila_conv_geom_init (weights are always OIHW) */
    enum sila_layout src_layout, dst_layout;
    struct sila_conv_plan *plan; /* owned; NULL until sila_conv_plan_new */
};

/* Fills OH, OW, threads = 1, bias = false, NCHW layouts and plan = NULL;
 * returns 0, or -EINVAL when the kernel does not fit. */
int sila_conv_geom_init(struct sila_conv_geom *g, int B, int C, int H, int W, int OC, int K,
                        int stride, int pad);
/* The layouts the library's forward convolution of g (at batch g->B)
 * works in, for its input and its output (NCHW when it is none of
 * sila_layout's): 0, -ENOMEM, or -EINVAL as sila_conv_plan_new. */
int sila_conv_layouts(const struct sila_conv_geom *g, enum sila_layout *ret_src,
                      enum sila_layout *ret_dst);
/* Creates g->plan for batches of up to g->B (set threads, bias and the
 * layouts first): 0, -ENOMEM, or -EINVAL when the library has no
 * convolution for the shape. */
int sila_conv_plan_new(struct sila_conv_geom *g);
/* Frees g->plan and sets it NULL; safe when it is NULL. */
void sila_conv_plan_free(struct sila_conv_geom *g);
/* Floats of scratch the conv kernels need for batches of up to g->B (the
 * batch the plan was made for). */
size_t sila_conv_work_floats(const struct sila_conv_geom *g);
/* out (B, OC, OH, OW), in (B, C, H, W), each in its layout, w (OC, C, K, K),
 * b (OC) when g->bias (else unread), work: sila_conv_work_floats floats of
 * scratch, B = g->B. */
void sila_conv2d_forward(float *out, const float *in, const float *w, const float *b,
                         const struct sila_conv_geom *g, float *work);
/* din (B, C, H, W), dw (OC, C, K, K) and db (OC, only when g->bias): each
 * NULL when not wanted (dw and db are added into). */
void sila_conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, const struct sila_conv_geom *g, float *work);

/* ---- batch norm over (B, H, W) per channel ------------------------------ */
/* Train mode: normalises with the batch statistics, saves mean (C) and
 * invstd (C) for the backward pass, and updates the running statistics
 * run_mean/run_var (C) with `momentum` (PyTorch convention: unbiased batch
 * variance enters run_var). out may alias in. */
void sila_bn_forward_train(float *out, float *mean, float *invstd, float *run_mean, float *run_var,
                           const float *in, const float *gamma, const float *beta, float momentum,
                           float eps, int B, int C, int HW);
/* PyTorch's update of one channel's running statistics from a batch of n
 * values with mean `mean` and biased variance `var`: the unbiased variance
 * (var·n/(n-1), var when n = 1) enters run_var. */
void sila_bn_running_update(float *run_mean, float *run_var, double mean, double var, double n,
                            float momentum);
/* Eval mode: normalises with run_mean/run_var. out may alias in. */
void sila_bn_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                          const float *run_mean, const float *run_var, float eps, int B, int C,
                          int HW);
/* in is the train-mode input (B, C, HW); mean and invstd as saved by the
 * forward pass. din may alias dout; dgamma and dbeta (added into) both
 * NULL when not wanted. */
void sila_bn_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                      const float *mean, const float *invstd, const float *gamma, int B, int C,
                      int HW);

/* ---- on oneDNN's channel-blocked layouts (blocked.c) ------------------ */
/* Activations (B, C, H, W) in one sila_layout and oneDNN's primitives over
 * them: reorders from and to NCHW, and batch norm (its JIT kernels on the
 * blocked layouts; on NCHW the sila_bn_* kernels above are faster). Plans
 * keep primitives per batch size as conv plans do; primitives run on
 * `threads` OpenMP threads, results may depend on it, never on timing.
 * Padded channels of a blocked tensor stay zero. */
struct sila_relayout_plan;
struct sila_relayout {
    int B, C, H, W; /* B <= the B the plan was made for */
    enum sila_layout layout;
    int threads;
    struct sila_relayout_plan *plan; /* owned; NULL until sila_relayout_plan_new */
};
/* Creates g->plan for batches of up to g->B: 0, -ENOMEM or -EINVAL. */
int sila_relayout_plan_new(struct sila_relayout *g);
/* Frees g->plan and sets it NULL; safe when it is NULL. */
void sila_relayout_plan_free(struct sila_relayout *g);
/* Floats of scratch the reorders need for batches of up to the plan's. */
size_t sila_relayout_work_floats(const struct sila_relayout *g);
/* out (layout) := in (NCHW), batch g->B. */
void sila_relayout_to(float *out, const float *in, const struct sila_relayout *g, float *work);
/* out (NCHW) := in (layout), batch g->B. */
void sila_relayout_from(float *out, const float *in, const struct sila_relayout *g, float *work);

struct sila_blocked_bn_plan;
struct sila_blocked_bn {
    int B, C, H, W; /* B <= the B the plan was made for */
    enum sila_layout layout;
    float eps;
    bool relu; /* a ReLU after the normalisation, fused */
    int threads;
    struct sila_blocked_bn_plan *plan; /* owned; NULL until sila_blocked_bn_plan_new */
};
/* Creates g->plan for batches of up to g->B: 0, -ENOMEM or -EINVAL. */
int sila_blocked_bn_plan_new(struct sila_blocked_bn *g);
/* Frees g->plan and sets it NULL; safe when it is NULL. */
void sila_blocked_bn_plan_free(struct sila_blocked_bn *g);
/* Floats of scratch the passes need for batches of up to the plan's. */
size_t sila_blocked_bn_work_floats(const struct sila_blocked_bn *g);
/* Bytes of the ReLU mask a train forward of the plan's batch saves for the
 * backward pass; 0 without a ReLU. */
size_t sila_blocked_bn_mask_bytes(const struct sila_blocked_bn *g);
/* Train mode, as sila_bn_forward_train but in g->layout, with the biased
 * batch variance var (C) saved instead of invstd, and the ReLU's mask
 * (when g->relu; else NULL) saved for the backward pass. out must not
 * alias in. */
void sila_blocked_bn_forward_train(float *out, float *mean, float *var, void *mask, float *run_mean,
                                   float *run_var, const float *in, const float *gamma,
                                   const float *beta, float momentum,
                                   const struct sila_blocked_bn *g, float *work);
/* Eval mode (then ReLU when g->relu), as sila_bn_forward_eval. */
void sila_blocked_bn_forward_eval(float *out, const float *in, const float *gamma,
                                  const float *beta, const float *run_mean, const float *run_var,
                                  const struct sila_blocked_bn *g, float *work);
/* Backward through the train forward that saved mean, var and mask (and
 * the ReLU when g->relu): din (overwritten, not aliasing dout), dgamma and
 * dbeta (added into; both NULL when not wanted). */
void sila_blocked_bn_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                              const float *in, const float *mean, const float *var,
                              const void *mask, const float *gamma, const float *beta,
                              const struct sila_blocked_bn *g, float *work);

/* ---- ReLU ---------------------------------------------------------------- */
/* out may alias in; din may alias dout. The backward pass reads the OUTPUT. */
void sila_relu_forward(float *out, const float *in, size_t n);
void sila_relu_backward(float *din, const float *dout, const float *out, size_t n);

/* ---- pooling (K x K window, stride, zero padding) ---------------------- */
struct sila_pool_geom {
    int B, C, H, W, K, stride, pad;
    int OH, OW; /* derived by sila_pool_geom_init */
};
/* Fills OH and OW; returns 0, or -EINVAL when the window does not fit or the
 * padding exceeds half the window. */
int sila_pool_geom_init(struct sila_pool_geom *g, int B, int C, int H, int W, int K, int stride,
                        int pad);
/* out (B, C, OH, OW); argmax (B, C, OH, OW) receives the flat input index
 * (within the channel plane) of each maximum, for the backward pass. */
void sila_maxpool_forward(float *out, int32_t *argmax, const float *in,
                          const struct sila_pool_geom *g);
void sila_maxpool_backward(float *din, const float *dout, const int32_t *argmax,
                           const struct sila_pool_geom *g);
/* Average pooling; padded cells count in the divisor (PyTorch's default). */
void sila_avgpool_forward(float *out, const float *in, const struct sila_pool_geom *g);
void sila_avgpool_backward(float *din, const float *dout, const struct sila_pool_geom *g);

/* ---- adaptive average pool: in (B, C, H, W) -> out (B, C, OH, OW) ------ */
/* Output cell (oh, ow) is the mean of input rows [oh*H/OH, ceil((oh+1)*H/OH))
 * and the columns likewise (PyTorch's adaptive_avg_pool2d): windows may
 * overlap, and OH > H repeats rows. Any H, W, OH, OW >= 1. */
void sila_adapool_forward(float *out, const float *in, int B, int C, int H, int W, int OH, int OW);
void sila_adapool_backward(float *din, const float *dout, int B, int C, int H, int W, int OH,
                           int OW);

/* ---- bilinear upsampling: in (B, C, H, W) -> out (B, C, OH, OW) -------- */
/* PyTorch's interpolate(mode='bilinear', align_corners=True): output row o
 * samples input row o (H-1)/(OH-1) (0 when OH = 1), columns likewise. The
 * backward pass writes (not adds) din. Any sizes >= 1. */
void sila_upsample_forward(float *out, const float *in, int B, int C, int H, int W, int OH, int OW);
void sila_upsample_backward(float *din, const float *dout, int B, int C, int H, int W, int OH,
                            int OW);

/* ---- global average pool: out (B, C) = mean over HW of in (B, C, HW) --- */
void sila_gap_forward(float *out, const float *in, int B, int C, int HW);
void sila_gap_backward(float *din, const float *dout, int B, int C, int HW);

/* ---- dropout and drop-path ----------------------------------------------- */
/* Dropout: each element kept with probability 1-p and scaled by 1/(1-p).
 * mask (n) receives the scale applied to each element (0 or 1/(1-p)); the
 * mask takes one number from rng, whatever n and the thread count.
 * out may alias in; din may alias dout. 0 <= p < 1, n < 2^32. */
void sila_dropout_forward(float *out, float *mask, const float *in, size_t n, float p,
                          struct sila_rng *rng);
void sila_dropout_backward(float *din, const float *dout, const float *mask, size_t n);
/* Drop-path (stochastic depth): each sample's whole tensor (per_sample
 * floats) kept with probability 1-p and scaled by 1/(1-p); keep (B)
 * receives the per-sample scale. Same aliasing rules as dropout. */
void sila_droppath_forward(float *out, float *keep, const float *in, int B, size_t per_sample,
                           float p, struct sila_rng *rng);
void sila_droppath_backward(float *din, const float *dout, const float *keep, int B,
                            size_t per_sample);

#endif
