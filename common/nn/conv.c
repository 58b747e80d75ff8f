/* 2-D convolution on oneDNN (see kernels.h): every shape, forward, dX and
 * dW, runs as oneDNN's convolution primitives with the memory layouts they
 * choose (format "any": on AVX-512 or AVX2 machines its JIT kernels on
 * channel-blocked layouts, nChw16c or nChw8c). The caller holds the
 * activations in the layouts the geometry names (NCHW unless it asks for
 * the primitives' own, as the residual block does); where the two differ,
 * reorders run around the primitives (onednn.h's passes).
 * The algorithm is chosen per shape: 3x3 stride-1 convolutions of at
 * least 32 input channels into 64 channels or more, or into 32 over a
 * 28x28 output or larger, run forward and dX as Winograd F(4x4, 3x3)
 * where the library has it (its AVX-512 kernels; elsewhere they stay
 * direct), dW always direct: measured faster at those shapes of the jobs,
 * no faster at 32 output channels at 14x14, slower at 16 and for dW.
 * docs/performance.md has the measurements behind these choices.
 *
 * A plan holds, for each batch size met, the three primitives and the
 * reorders they need, created on the first call with that size and kept
 * (onednn.h's plans). Primitives run in user-scratchpad mode: their
 * scratch, and every reordered tensor, live in the caller's work buffer,
 * so nothing is allocated per call once a batch size has been met.
 *
 * Threads: primitives run on g->threads OpenMP threads. Results may
 * depend on the thread count (dW sums over the threads' shares of the
 * batch) and on the instruction set the library dispatches to, never on
 * timing: --inproc and workers on one machine at one thread count give the
 * same bits. */
#include <errno.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "onednn.h"

int sila_conv_geom_init(struct sila_conv_geom *g, int B, int C, int H, int W, int OC, int K,
                        int stride, int pad)
{
    if (B < 1 || C < 1 || H < 1 || W < 1 || OC < 1 || K < 1 || stride < 1 || pad < 0)
        return -EINVAL;
    if (H + 2 * pad < K || W + 2 * pad < K)
        return -EINVAL;
    *g = (struct sila_conv_geom){.B = B,
                                 .C = C,
                                 .H = H,
                                 .W = W,
                                 .OC = OC,
                                 .K = K,
                                 .stride = stride,
                                 .pad = pad,
                                 .threads = 1,
                                 .bias = false,
                                 .src_layout = SILA_LAYOUT_NCHW,
                                 .dst_layout = SILA_LAYOUT_NCHW};
    g->OH = (H + 2 * pad - K) / stride + 1;
    g->OW = (W + 2 * pad - K) / stride + 1;
    return 0;
}

enum { FWD, BWD_DATA, BWD_WEIGHTS };

struct sila_conv_plan {
    struct sila_dnnl_plan core; /* first: the passes of each batch size */
    struct sila_conv_geom g;
};

/* The descriptors of a batch of B: src (B, C, H, W), weights
 * (OC, C, K, K), bias (OC), dst (B, OC, OH, OW); `any` leaves src, weights
 * and dst to the primitive, else they are as the caller holds them. */
struct conv_mds {
    dnnl_memory_desc_t src, wei, bias, dst;
};

static int conv_mds_init(struct conv_mds *m, const struct sila_conv_geom *g, int B, bool any)
{
    dnnl_dims_t src = {B, g->C, g->H, g->W}, w = {g->OC, g->C, g->K, g->K}, b = {g->OC},
                dst = {B, g->OC, g->OH, g->OW};
    const dnnl_format_tag_t a = dnnl_format_tag_any;
    int r;
    if ((r = sila_dnnl_errno(
             dnnl_memory_desc_init_by_tag(&m->wei, 4, w, dnnl_f32, any ? a : dnnl_oihw))) ||
        (r = sila_dnnl_errno(dnnl_memory_desc_init_by_tag(&m->bias, 1, b, dnnl_f32, dnnl_a))))
        return r;
    if (any) {
        if ((r = sila_dnnl_errno(dnnl_memory_desc_init_by_tag(&m->src, 4, src, dnnl_f32, a))))
            return r;
        return sila_dnnl_errno(dnnl_memory_desc_init_by_tag(&m->dst, 4, dst, dnnl_f32, a));
    }
    if ((r = sila_dnnl_act_md(&m->src, B, g->C, g->H, g->W, g->src_layout)))
        return r;
    return sila_dnnl_act_md(&m->dst, B, g->OC, g->OH, g->OW, g->dst_layout);
}

/* Fills the passes of v from their primitive descriptors. Work of each
 * pass starts at 0: the passes never run at once. Both backward passes put
 * dY first, so that dW can use the copy dX's pass left at the start of
 * work when their layouts agree (shares_diff_dst). */
static int fill_passes(struct sila_pass *pass, dnnl_engine_t e, const struct conv_mds *m, bool bias,
                       dnnl_primitive_desc_t fpd, dnnl_primitive_desc_t dpd,
                       dnnl_primitive_desc_t wpd)
{
    struct sila_pass *f = &pass[FWD], *d = &pass[BWD_DATA], *w = &pass[BWD_WEIGHTS];
    size_t fo = 0, d_off = 0, wo = 0;
    int r;
    if ((r = sila_pass_tensor(f, e, fpd, DNNL_ARG_SRC, &m->src, true, &fo)) ||
        (r = sila_pass_tensor(f, e, fpd, DNNL_ARG_WEIGHTS, &m->wei, true, &fo)) ||
        (bias && (r = sila_pass_tensor(f, e, fpd, DNNL_ARG_BIAS, &m->bias, true, &fo))) ||
        (r = sila_pass_tensor(f, e, fpd, DNNL_ARG_DST, &m->dst, false, &fo)) ||
        (r = sila_pass_prim(f, e, fpd, &fo)))
        return r;
    if ((r = sila_pass_tensor(d, e, dpd, DNNL_ARG_DIFF_DST, &m->dst, true, &d_off)) ||
        (r = sila_pass_tensor(d, e, dpd, DNNL_ARG_WEIGHTS, &m->wei, true, &d_off)) ||
        (r = sila_pass_tensor(d, e, dpd, DNNL_ARG_DIFF_SRC, &m->src, false, &d_off)) ||
        (r = sila_pass_prim(d, e, dpd, &d_off)))
        return r;
    if ((r = sila_pass_tensor(w, e, wpd, DNNL_ARG_DIFF_DST, &m->dst, true, &wo)) ||
        (r = sila_pass_tensor(w, e, wpd, DNNL_ARG_SRC, &m->src, true, &wo)) ||
        (r = sila_pass_tensor(w, e, wpd, DNNL_ARG_DIFF_WEIGHTS, &m->wei, false, &wo)) ||
        (bias && (r = sila_pass_tensor(w, e, wpd, DNNL_ARG_DIFF_BIAS, &m->bias, false, &wo))))
        return r;
    return sila_pass_prim(w, e, wpd, &wo);
}

/* True when dW's pass can take dY as dX's pass left it in work: both
 * reorder it, into the same layout. */
static bool shares_diff_dst(const struct sila_pass *pass)
{
    const struct sila_pass_tensor *d = &pass[BWD_DATA].t[0], *w = &pass[BWD_WEIGHTS].t[0];
    const dnnl_memory_desc_t *dmd, *wmd;
    return d->reorder && w->reorder && !dnnl_memory_get_memory_desc(d->used, &dmd) &&
           !dnnl_memory_get_memory_desc(w->used, &wmd) && dnnl_memory_desc_equal(dmd, wmd);
}

/* True for the shapes whose forward and dX try Winograd first. */
static bool winograd_shape(const struct sila_conv_geom *g)
{
    return g->K == 3 && g->stride == 1 && g->C >= 32 &&
           (g->OC >= 64 || (g->OC >= 32 && g->OH * g->OW >= 28 * 28));
}

/* The forward primitive descriptor of algorithm alg for a batch of B with
 * the layouts left to the library (*ret_fpd: the caller destroys it). */
static int forward_pd_of(dnnl_primitive_desc_t *ret_fpd, dnnl_alg_kind_t alg,
                         const struct sila_conv_geom *g, int B, dnnl_engine_t e,
                         const_dnnl_primitive_attr_t attr)
{
    struct conv_mds any;
    dnnl_dims_t strides = {g->stride, g->stride}, pad = {g->pad, g->pad};
    dnnl_convolution_desc_t fd;
    int r = conv_mds_init(&any, g, B, true);
    if (!r)
        r = sila_dnnl_errno(dnnl_convolution_forward_desc_init(
            &fd, dnnl_forward_training, alg, &any.src, &any.wei, g->bias ? &any.bias : NULL,
            &any.dst, strides, pad, pad));
    if (!r)
        r = sila_dnnl_errno(dnnl_primitive_desc_create(ret_fpd, &fd, attr, e, NULL));
    return r;
}

/* The forward primitive descriptor to run: Winograd when `winograd` and
 * the library has it, else direct. */
static int forward_pd(dnnl_primitive_desc_t *ret_fpd, const struct sila_conv_geom *g, int B,
                      bool winograd, dnnl_engine_t e, const_dnnl_primitive_attr_t attr)
{
    if (winograd &&
        !forward_pd_of(ret_fpd, dnnl_convolution_winograd, g, B, e, attr))
        return 0;
    return forward_pd_of(ret_fpd, dnnl_convolution_direct, g, B, e, attr);
}

/* dX's primitive descriptor of algorithm alg, hinted by the forward
 * hint (*ret_dpd: the caller destroys it). */
static int backward_data_pd_of(dnnl_primitive_desc_t *ret_dpd, dnnl_alg_kind_t alg,
                               const struct sila_conv_geom *g, const struct conv_mds *any,
                               dnnl_engine_t e, const_dnnl_primitive_attr_t attr,
                               const_dnnl_primitive_desc_t hint)
{
    dnnl_dims_t strides = {g->stride, g->stride}, pad = {g->pad, g->pad};
    dnnl_convolution_desc_t dd;
    int r = sila_dnnl_errno(dnnl_convolution_backward_data_desc_init(
        &dd, alg, &any->src, &any->wei, &any->dst, strides, pad, pad));
    return r ? r : sila_dnnl_errno(dnnl_primitive_desc_create(ret_dpd, &dd, attr, e, hint));
}

/* dX's primitive descriptor to run: Winograd, hinted by the forward fpd,
 * when `winograd` and the library has it, else direct, hinted by the
 * direct forward dfpd. */
static int backward_data_pd(dnnl_primitive_desc_t *ret_dpd, const struct sila_conv_geom *g,
                            const struct conv_mds *any, bool winograd, dnnl_engine_t e,
                            const_dnnl_primitive_attr_t attr, const_dnnl_primitive_desc_t fpd,
                            const_dnnl_primitive_desc_t dfpd)
{
    if (winograd &&
        !backward_data_pd_of(ret_dpd, dnnl_convolution_winograd, g, any, e, attr, fpd))
        return 0;
    return backward_data_pd_of(ret_dpd, dnnl_convolution_direct, g, any, e, attr, dfpd);
}

/* The three passes for batch size B, forward and dX on Winograd when
 * `winograd` (and the library has it). */
static int passes_of(struct sila_dnnl_plan *core, struct sila_pass *pass, int B, bool winograd)
{
    const struct sila_conv_geom *g = &((struct sila_conv_plan *)core)->g;
    struct conv_mds plain, any;
    dnnl_dims_t strides = {g->stride, g->stride}, pad = {g->pad, g->pad};
    dnnl_convolution_desc_t wd;
    dnnl_primitive_desc_t fpd = NULL, dfpd = NULL, dpd = NULL, wpd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_engine_t e = core->dnnl.engine;
    int r;
    if ((r = conv_mds_init(&plain, g, B, false)) || (r = conv_mds_init(&any, g, B, true)) ||
        (r = sila_dnnl_attr_new(&attr)))
        return r;
    const dnnl_memory_desc_t *bias = g->bias ? &any.bias : NULL;
    /* fpd: the forward to run; dfpd: a direct forward, the hint of the
     * direct backward passes */
    if (!(r = forward_pd(&fpd, g, B, winograd, e, attr)) &&
        !(r = forward_pd_of(&dfpd, dnnl_convolution_direct, g, B, e, attr)) &&
        !(r = backward_data_pd(&dpd, g, &any, winograd, e, attr, fpd, dfpd)) &&
        !(r = sila_dnnl_errno(dnnl_convolution_backward_weights_desc_init(
              &wd, dnnl_convolution_direct, &any.src, &any.wei, bias, &any.dst, strides, pad,
              pad))) &&
        !(r = sila_dnnl_errno(dnnl_primitive_desc_create(&wpd, &wd, attr, e, dfpd))))
        r = fill_passes(pass, e, &plain, g->bias, fpd, dpd, wpd);
    if (fpd)
        dnnl_primitive_desc_destroy(fpd);
    if (dfpd)
        dnnl_primitive_desc_destroy(dfpd);
    if (dpd)
        dnnl_primitive_desc_destroy(dpd);
    if (wpd)
        dnnl_primitive_desc_destroy(wpd);
    dnnl_primitive_attr_destroy(attr);
    return r;
}

/* The plan's build: Winograd for winograd_shape. */
static int build_passes(struct sila_dnnl_plan *core, struct sila_pass *pass, int B)
{
    return passes_of(core, pass, B, winograd_shape(&((struct sila_conv_plan *)core)->g));
}

/* Its fallback, all direct: a batch smaller than the plan's can need more
 * work on Winograd than the plan's batch did (the library sizes
 * Winograd's scratch by its own tiling of the batch). The choice depends
 * on the shape, the layouts and the two batch sizes only, so every
 * process makes the same. */
static int build_direct(struct sila_dnnl_plan *core, struct sila_pass *pass, int B)
{
    return passes_of(core, pass, B, false);
}

int sila_conv_layouts(const struct sila_conv_geom *g, enum sila_layout *ret_src,
                      enum sila_layout *ret_dst)
{
    struct sila_dnnl d;
    dnnl_primitive_desc_t fpd = NULL;
    int r = sila_dnnl_open(&d);
    if (!r)
        r = forward_pd(&fpd, g, g->B, winograd_shape(g), d.engine, NULL);
    if (!r) {
        *ret_src = sila_dnnl_layout_of(dnnl_primitive_desc_query_md(fpd, dnnl_query_src_md, 0));
        *ret_dst = sila_dnnl_layout_of(dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0));
        dnnl_primitive_desc_destroy(fpd);
    }
    sila_dnnl_close(&d);
    return r;
}

int sila_conv_plan_new(struct sila_conv_geom *g)
{
    void *pl;
    int r = sila_dnnl_plan_new(&pl, sizeof(struct sila_conv_plan), g,
                               offsetof(struct sila_conv_plan, g), sizeof *g, build_passes,
                               build_direct, g->B, g->threads);
    if (!r)
        g->plan = pl;
    return r;
}

void sila_conv_plan_free(struct sila_conv_geom *g)
{
    sila_dnnl_plan_free(g->plan);
    g->plan = NULL;
}

/* The plain weights and bias of dW at the end of the work a backward pass
 * uses: OC·C·K·K (+ OC with a bias) floats. */
static size_t grad_floats(const struct sila_conv_geom *g)
{
    return sila_dnnl_aligned((size_t)g->OC * g->C * g->K * g->K) +
           (g->bias ? sila_dnnl_aligned((size_t)g->OC) : 0);
}

size_t sila_conv_work_floats(const struct sila_conv_geom *g)
{
    return (g->plan ? g->plan->core.cap : 0) + grad_floats(g);
}

void sila_conv2d_forward(float *out, const float *in, const float *w, const float *b,
                         const struct sila_conv_geom *g, float *work)
{
    struct sila_pass *pass = sila_dnnl_plan_passes(&g->plan->core, g->B, g->threads);
    /* the pass's tensors in order (the bias only when there is one); oneDNN
     * reads inputs through non-const handles and never writes them */
    void *ptr[4] = {(void *)in, (void *)w};
    int n = 2;
    if (g->bias)
        ptr[n++] = (void *)b;
    ptr[n] = out;
    sila_pass_run(&pass[FWD], g->plan->core.dnnl.stream, ptr, work, false);
}

void sila_conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, const struct sila_conv_geom *g, float *work)
{
    struct sila_pass *pass = sila_dnnl_plan_passes(&g->plan->core, g->B, g->threads);
    dnnl_stream_t s = g->plan->core.dnnl.stream;
    if (din) {
        void *const ptr[3] = {(void *)dout, (void *)w, din};
        sila_pass_run(&pass[BWD_DATA], s, ptr, work, false);
    }
    if (!dw && !db)
        return;
    const size_t nw = (size_t)g->OC * g->C * g->K * g->K;
    float *gw = work + pass[BWD_WEIGHTS].floats, *gb = gw + sila_dnnl_aligned(nw);
    void *const ptr[4] = {(void *)dout, (void *)in, gw, gb};
    sila_pass_run(&pass[BWD_WEIGHTS], s, ptr, work, din && shares_diff_dst(pass));
    for (size_t i = 0; dw && i < nw; i++)
        dw[i] += gw[i];
    for (int oc = 0; db && oc < g->OC; oc++)
        db[oc] += gb[oc];
}
