/* 2-D convolution on oneDNN (see kernels.h): every shape, forward, dX and
 * dW, runs as oneDNN's convolution primitives with the memory layouts they
 * choose (format "any": on AVX-512 or AVX2 machines its JIT kernels on
 * channel-blocked layouts, nChw16c or nChw8c), with reorders from and to
 * sila's NCHW tensors around them. docs/performance.md has the measurements
 * behind the choice.
 *
 * A plan holds, for each batch size met, the three primitives and the
 * reorders they need, created on the first call with that size (a job
 * meets two or three: the batch, the last batch of an epoch, the last
 * test batch) and kept, the least recently used replaced beyond
 * PLAN_VARIANTS. Primitives run in user-scratchpad mode: their scratch,
 * and every reordered tensor, live in the caller's work buffer, so nothing
 * is allocated per call once a batch size has been met.
 *
 * Threads: primitives run on g->threads OpenMP threads. Results may
 * depend on the thread count (dW sums over the threads' shares of the
 * batch) and on the instruction set the library dispatches to, never on
 * timing: --inproc and workers on one machine at one thread count give the
 * same bits. */
#include <errno.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* Batch sizes a plan keeps primitives for. */
#define PLAN_VARIANTS 4

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
                                 .bias = false};
    g->OH = (H + 2 * pad - K) / stride + 1;
    g->OW = (W + 2 * pad - K) / stride + 1;
    return 0;
}

/* One tensor of a primitive: the NCHW (or OIHW, or vector) view the caller
 * holds and the layout the primitive wants; when they differ, a reorder
 * between them (caller to primitive for an input, back for an output) and
 * the primitive's copy at `off` floats into the work buffer. */
struct tensor {
    dnnl_memory_t plain, used; /* used == plain when no reorder is needed */
    dnnl_primitive_t reorder;  /* NULL when no reorder is needed */
    size_t off;                /* the reordered copy, in floats into work */
    bool input;                /* read by the primitive (else written) */
};

/* One primitive with its tensors (up to four) and scratchpad. */
struct pass {
    dnnl_primitive_t prim;
    dnnl_memory_t scratch;
    size_t scratch_off;
    struct tensor t[4];
    int args[4]; /* DNNL_ARG_* of each tensor */
    int nt;
    size_t floats; /* work this pass uses */
};

enum { FWD, BWD_DATA, BWD_WEIGHTS, NPASS };

struct variant {
    int B;             /* 0: unused */
    bool share_dy;     /* dW reads the dY dX's pass reordered (shares_diff_dst) */
    unsigned long use; /* last use, for replacement */
    struct pass pass[NPASS];
};

struct sila_conv_plan {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    struct sila_conv_geom g;
    size_t cap; /* work floats of the largest pass at the plan's batch */
    unsigned long clock;
    struct variant v[PLAN_VARIANTS];
};

static int status_errno(dnnl_status_t s)
{
    return s == dnnl_success ? 0 : s == dnnl_out_of_memory ? -ENOMEM : -EINVAL;
}

static size_t floats_of(const dnnl_memory_desc_t *md)
{
    return (dnnl_memory_desc_get_size(md) + sizeof(float) - 1) / sizeof(float);
}

/* Round up to 16 floats (64 bytes) so that every copy is cache-line aligned
 * when the work buffer is. */
static size_t aligned(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

/* t for a tensor the caller holds as `plain` and the primitive uses as
 * `want`; input: reorder plain -> want, else want -> plain. Its copy (if
 * any) goes at *off, which advances. */
static int tensor_init(struct tensor *t, dnnl_engine_t e, const dnnl_memory_desc_t *plain,
                       const dnnl_memory_desc_t *want, bool input, size_t *off)
{
    t->input = input;
    dnnl_status_t s = dnnl_memory_create(&t->plain, plain, e, DNNL_MEMORY_NONE);
    if (s != dnnl_success)
        return status_errno(s);
    if (dnnl_memory_desc_equal(plain, want)) {
        t->used = t->plain;
        return 0;
    }
    if ((s = dnnl_memory_create(&t->used, want, e, DNNL_MEMORY_NONE)) != dnnl_success)
        return status_errno(s);
    t->off = *off;
    *off += aligned(floats_of(want));
    dnnl_primitive_desc_t pd;
    s = input ? dnnl_reorder_primitive_desc_create(&pd, plain, e, want, e, NULL)
              : dnnl_reorder_primitive_desc_create(&pd, want, e, plain, e, NULL);
    if (s != dnnl_success)
        return status_errno(s);
    s = dnnl_primitive_create(&t->reorder, pd);
    dnnl_primitive_desc_destroy(pd);
    return status_errno(s);
}

static void tensor_fini(struct tensor *t)
{
    if (t->reorder)
        dnnl_primitive_destroy(t->reorder);
    if (t->used && t->used != t->plain)
        dnnl_memory_destroy(t->used);
    if (t->plain)
        dnnl_memory_destroy(t->plain);
    memset(t, 0, sizeof *t);
}

static void pass_fini(struct pass *p)
{
    for (int i = 0; i < p->nt; i++)
        tensor_fini(&p->t[i]);
    if (p->prim)
        dnnl_primitive_destroy(p->prim);
    if (p->scratch)
        dnnl_memory_destroy(p->scratch);
    memset(p, 0, sizeof *p);
}

/* The plain descriptors of a batch of B: src (B, C, H, W), weights
 * (OC, C, K, K), bias (OC), dst (B, OC, OH, OW). */
struct plain_mds {
    dnnl_memory_desc_t src, wei, bias, dst;
};

static int plain_mds_init(struct plain_mds *m, const struct sila_conv_geom *g, int B,
                          dnnl_format_tag_t act, dnnl_format_tag_t wei)
{
    dnnl_dims_t src = {B, g->C, g->H, g->W}, w = {g->OC, g->C, g->K, g->K}, b = {g->OC},
                dst = {B, g->OC, g->OH, g->OW};
    dnnl_status_t s;
    if ((s = dnnl_memory_desc_init_by_tag(&m->src, 4, src, dnnl_f32, act)) ||
        (s = dnnl_memory_desc_init_by_tag(&m->wei, 4, w, dnnl_f32, wei)) ||
        (s = dnnl_memory_desc_init_by_tag(&m->bias, 1, b, dnnl_f32, dnnl_a)) ||
        (s = dnnl_memory_desc_init_by_tag(&m->dst, 4, dst, dnnl_f32, act)))
        return status_errno(s);
    return 0;
}

/* The pass's primitive from pd, its scratchpad at *off (advanced). */
static int pass_prim(struct pass *p, dnnl_engine_t e, dnnl_primitive_desc_t pd, size_t *off)
{
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    dnnl_status_t s;
    if (smd && dnnl_memory_desc_get_size(smd) > 0) {
        if ((s = dnnl_memory_create(&p->scratch, smd, e, DNNL_MEMORY_NONE)) != dnnl_success)
            return status_errno(s);
        p->scratch_off = *off;
        *off += aligned(floats_of(smd));
    }
    return status_errno(dnnl_primitive_create(&p->prim, pd));
}

/* Adds tensor `arg` of pass p: the caller's `plain`, the primitive's
 * descriptor of query (q, index). */
static int pass_tensor(struct pass *p, dnnl_engine_t e, dnnl_primitive_desc_t pd, int arg,
                       const dnnl_memory_desc_t *plain, dnnl_query_t q, int index, bool input,
                       size_t *off)
{
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, q, index);
    p->args[p->nt] = arg;
    return tensor_init(&p->t[p->nt++], e, plain, want, input, off);
}

/* Fills the passes of v from their primitive descriptors. Work of each
 * pass starts at 0: the passes never run at once. Both backward passes put
 * dY first, so that dW can use the copy dX's pass left at the start of
 * work when their layouts agree (shares_diff_dst). */
static int variant_passes(struct variant *v, dnnl_engine_t e, const struct plain_mds *m,
                          bool bias, dnnl_primitive_desc_t fpd, dnnl_primitive_desc_t dpd,
                          dnnl_primitive_desc_t wpd)
{
    struct pass *f = &v->pass[FWD], *d = &v->pass[BWD_DATA], *w = &v->pass[BWD_WEIGHTS];
    size_t fo = 0, d_off = 0, wo = 0;
    int r;
    if ((r = pass_tensor(f, e, fpd, DNNL_ARG_SRC, &m->src, dnnl_query_src_md, 0, true, &fo)) ||
        (r = pass_tensor(f, e, fpd, DNNL_ARG_WEIGHTS, &m->wei, dnnl_query_weights_md, 0, true,
                         &fo)) ||
        (bias && (r = pass_tensor(f, e, fpd, DNNL_ARG_BIAS, &m->bias, dnnl_query_weights_md, 1,
                                  true, &fo))) ||
        (r = pass_tensor(f, e, fpd, DNNL_ARG_DST, &m->dst, dnnl_query_dst_md, 0, false, &fo)) ||
        (r = pass_prim(f, e, fpd, &fo)))
        return r;
    if ((r = pass_tensor(d, e, dpd, DNNL_ARG_DIFF_DST, &m->dst, dnnl_query_diff_dst_md, 0, true,
                         &d_off)) ||
        (r = pass_tensor(d, e, dpd, DNNL_ARG_WEIGHTS, &m->wei, dnnl_query_weights_md, 0, true,
                         &d_off)) ||
        (r = pass_tensor(d, e, dpd, DNNL_ARG_DIFF_SRC, &m->src, dnnl_query_diff_src_md, 0, false,
                         &d_off)) ||
        (r = pass_prim(d, e, dpd, &d_off)))
        return r;
    if ((r = pass_tensor(w, e, wpd, DNNL_ARG_DIFF_DST, &m->dst, dnnl_query_diff_dst_md, 0, true,
                         &wo)) ||
        (r = pass_tensor(w, e, wpd, DNNL_ARG_SRC, &m->src, dnnl_query_src_md, 0, true, &wo)) ||
        (r = pass_tensor(w, e, wpd, DNNL_ARG_DIFF_WEIGHTS, &m->wei, dnnl_query_diff_weights_md, 0,
                         false, &wo)) ||
        (bias && (r = pass_tensor(w, e, wpd, DNNL_ARG_DIFF_BIAS, &m->bias,
                                  dnnl_query_diff_weights_md, 1, false, &wo))) ||
        (r = pass_prim(w, e, wpd, &wo)))
        return r;
    f->floats = fo, d->floats = d_off, w->floats = wo;
    return 0;
}

/* Floats of work the variant's largest pass uses. */
static size_t variant_floats(const struct variant *v)
{
    size_t n = 0;
    for (int k = 0; k < NPASS; k++)
        if (v->pass[k].floats > n)
            n = v->pass[k].floats;
    return n;
}

static void variant_fini(struct variant *v)
{
    for (int i = 0; i < NPASS; i++)
        pass_fini(&v->pass[i]);
    v->B = 0;
}

/* True when dW's pass can take dY as dX's pass left it in work: both
 * reorder it, into the same layout. */
static bool shares_diff_dst(const struct variant *v)
{
    const struct tensor *d = &v->pass[BWD_DATA].t[0], *w = &v->pass[BWD_WEIGHTS].t[0];
    const dnnl_memory_desc_t *dmd, *wmd;
    return d->reorder && w->reorder && !dnnl_memory_get_memory_desc(d->used, &dmd) &&
           !dnnl_memory_get_memory_desc(w->used, &wmd) && dnnl_memory_desc_equal(dmd, wmd);
}

/* The three passes for batch size B. */
static int variant_init(struct variant *v, const struct sila_conv_plan *pl, int B)
{
    const struct sila_conv_geom *g = &pl->g;
    struct plain_mds plain, any;
    dnnl_dims_t strides = {g->stride, g->stride}, pad = {g->pad, g->pad};
    dnnl_convolution_desc_t fd, dd, wd;
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    int r;
    if ((r = plain_mds_init(&plain, g, B, dnnl_nchw, dnnl_oihw)) ||
        (r = plain_mds_init(&any, g, B, dnnl_format_tag_any, dnnl_format_tag_any)))
        return r;
    any.bias = plain.bias;
    const dnnl_memory_desc_t *bias = g->bias ? &any.bias : NULL;
    dnnl_engine_t e = pl->engine;
    if ((r = status_errno(dnnl_primitive_attr_create(&attr))) ||
        (r = status_errno(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user))) ||
        (r = status_errno(dnnl_convolution_forward_desc_init(
             &fd, dnnl_forward_training, dnnl_convolution_direct, &any.src, &any.wei, bias,
             &any.dst, strides, pad, pad))) ||
        (r = status_errno(dnnl_primitive_desc_create(&fpd, &fd, attr, e, NULL))) ||
        (r = status_errno(dnnl_convolution_backward_data_desc_init(
             &dd, dnnl_convolution_direct, &any.src, &any.wei, &any.dst, strides, pad, pad))) ||
        (r = status_errno(dnnl_primitive_desc_create(&dpd, &dd, attr, e, fpd))) ||
        (r = status_errno(dnnl_convolution_backward_weights_desc_init(
             &wd, dnnl_convolution_direct, &any.src, &any.wei, bias, &any.dst, strides, pad,
             pad))) ||
        (r = status_errno(dnnl_primitive_desc_create(&wpd, &wd, attr, e, fpd))))
        goto done;
    r = variant_passes(v, e, &plain, g->bias, fpd, dpd, wpd);
    v->B = B;
    v->share_dy = !r && shares_diff_dst(v);
done:
    if (r)
        variant_fini(v);
    if (fpd)
        dnnl_primitive_desc_destroy(fpd);
    if (dpd)
        dnnl_primitive_desc_destroy(dpd);
    if (wpd)
        dnnl_primitive_desc_destroy(wpd);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return r;
}

/* The variant of batch size B, created (replacing the least recently used)
 * when new; NULL when creation failed. */
static struct variant *variant_for(struct sila_conv_plan *pl, int B)
{
    struct variant *pick = &pl->v[0];
    for (int i = 0; i < PLAN_VARIANTS; i++) {
        struct variant *v = &pl->v[i];
        if (v->B == B) {
            v->use = ++pl->clock;
            return v;
        }
        if (v->use < pick->use)
            pick = v;
    }
    variant_fini(pick);
    if (variant_init(pick, pl, B))
        return NULL;
    if (pl->cap && variant_floats(pick) > pl->cap) { /* more work than was planned */
        variant_fini(pick);
        return NULL;
    }
    pick->use = ++pl->clock;
    return pick;
}

int sila_conv_plan_new(struct sila_conv_geom *g)
{
    struct sila_conv_plan *pl = calloc(1, sizeof *pl);
    if (!pl)
        return -ENOMEM;
    pl->g = *g;
    int r = status_errno(dnnl_engine_create(&pl->engine, dnnl_cpu, 0));
    if (!r)
        r = status_errno(dnnl_stream_create(&pl->stream, pl->engine, dnnl_stream_default_flags));
    struct variant *v = r ? NULL : variant_for(pl, g->B);
    g->plan = pl;
    if (!v) {
        sila_conv_plan_free(g);
        return r ? r : -ENOMEM;
    }
    pl->cap = variant_floats(v);
    return 0;
}

void sila_conv_plan_free(struct sila_conv_geom *g)
{
    struct sila_conv_plan *pl = g->plan;
    if (!pl)
        return;
    for (int i = 0; i < PLAN_VARIANTS; i++)
        variant_fini(&pl->v[i]);
    if (pl->stream)
        dnnl_stream_destroy(pl->stream);
    if (pl->engine)
        dnnl_engine_destroy(pl->engine);
    free(pl);
    g->plan = NULL;
}

/* The plain weights and bias of dW at the end of the work a backward pass
 * uses: OC·C·K·K (+ OC with a bias) floats. */
static size_t grad_floats(const struct sila_conv_geom *g)
{
    return aligned((size_t)g->OC * g->C * g->K * g->K) + (g->bias ? aligned((size_t)g->OC) : 0);
}

size_t sila_conv_work_floats(const struct sila_conv_geom *g)
{
    return (g->plan ? g->plan->cap : 0) + grad_floats(g);
}

/* Runs pass p with the caller's tensors ptr[i] in work; `reordered`: its
 * first input is already in work in the primitive's layout. */
static void pass_run(struct sila_conv_plan *pl, struct pass *p, void *const ptr[4], float *work,
                     bool reordered)
{
    dnnl_exec_arg_t args[5];
    int n = 0;
    for (int i = 0; i < p->nt; i++) {
        struct tensor *t = &p->t[i];
        dnnl_memory_set_data_handle(t->plain, ptr[i]);
        if (t->used != t->plain)
            dnnl_memory_set_data_handle(t->used, work + t->off);
        args[n++] = (dnnl_exec_arg_t){p->args[i], t->used};
    }
    if (p->scratch) {
        dnnl_memory_set_data_handle(p->scratch, work + p->scratch_off);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
    }
    for (int i = reordered ? 1 : 0; i < p->nt; i++) /* inputs into the primitive's layouts */
        if (p->t[i].reorder && p->t[i].input) {
            dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, p->t[i].plain}, {DNNL_ARG_TO, p->t[i].used}};
            dnnl_primitive_execute(p->t[i].reorder, pl->stream, 2, ra);
        }
    dnnl_primitive_execute(p->prim, pl->stream, n, args);
    for (int i = 0; i < p->nt; i++) /* outputs back to the caller's */
        if (p->t[i].reorder && !p->t[i].input) {
            dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, p->t[i].used}, {DNNL_ARG_TO, p->t[i].plain}};
            dnnl_primitive_execute(p->t[i].reorder, pl->stream, 2, ra);
        }
    dnnl_stream_wait(pl->stream);
}

/* The plan's variant for g->B on g->threads threads. A variant is created
 * only at a batch size's first call; failing then (memory exhausted in
 * the library) leaves nothing to compute with. */
static struct variant *ready(const struct sila_conv_geom *g)
{
    if (omp_get_max_threads() != g->threads)
        omp_set_num_threads(g->threads);
    struct variant *v = variant_for(g->plan, g->B);
    if (!v)
        abort();
    return v;
}

void sila_conv2d_forward(float *out, const float *in, const float *w, const float *b,
                         const struct sila_conv_geom *g, float *work)
{
    struct variant *v = ready(g);
    /* the pass's tensors in order (the bias only when there is one); oneDNN
     * reads inputs through non-const handles and never writes them */
    void *ptr[4] = {(void *)in, (void *)w};
    int n = 2;
    if (g->bias)
        ptr[n++] = (void *)b;
    ptr[n] = out;
    pass_run(g->plan, &v->pass[FWD], ptr, work, false);
}

void sila_conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, const struct sila_conv_geom *g, float *work)
{
    struct variant *v = ready(g);
    if (din) {
        void *const ptr[4] = {(void *)dout, (void *)w, din, NULL};
        pass_run(g->plan, &v->pass[BWD_DATA], ptr, work, false);
    }
    if (!dw && !db)
        return;
    const size_t nw = (size_t)g->OC * g->C * g->K * g->K;
    float *gw = work + v->pass[BWD_WEIGHTS].floats, *gb = gw + aligned(nw);
    void *const ptr[4] = {(void *)dout, (void *)in, gw, gb};
    pass_run(g->plan, &v->pass[BWD_WEIGHTS], ptr, work, din && v->share_dy);
    for (size_t i = 0; dw && i < nw; i++)
        dw[i] += gw[i];
    for (int oc = 0; db && oc < g->OC; oc++)
        db[oc] += gb[oc];
}
