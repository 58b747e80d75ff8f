/* Forward (and, where a naive loop is as easy, backward) kernels of
 * common/nn/kernels.h against naive double-precision references written here:
 * direct 7-loop convolution, window loops for pooling (PyTorch semantics:
 * max pool pads with -inf, average pool counts padded cells), batch-norm
 * statistics, and the statistics of the dropout masks; the reorders to
 * and from the channel-blocked layouts against the layouts' definition, a
 * convolution on them against the same on NCHW, and batch norm on them
 * (with and without its fused ReLU) against the references; the residual
 * block, whose inner tensors are blocked, against its formula. Also the
 * nets' eval mode: deterministic, dropout and drop-path the identity,
 * batch norm on the running statistics (PyTorch's momentum update with
 * the unbiased batch variance).
 *
 * Bounds: a float sum of n terms differs from the exact sum by at most
 * about n·2^-24·Σ|term| whatever the order, so float results are compared
 * with their double references within (n+2)·2^-24·Σ|term| (the reference
 * computes Σ|term| alongside). Any indexing error moves a result by a whole
 * term, far above that bound. Statistical checks of random masks use 5
 * standard deviations with fixed seeds. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "testfill.h"
#include "kernels.h"
#include "net.h"
#include "layer.h"

#define U32 (1.0 / 16777216.0) /* 2^-24, float unit round-off */

/* ck_assert_msg for per-element loops: a passing Check assertion writes a
 * location mark to the runner (one syscall); this only calls Check on
 * failure. */
#define expect(expr, ...) ((expr) ? (void)0 : ck_abort_msg(__VA_ARGS__))

static float *falloc(size_t n)
{
    float *p = malloc(sizeof *p * (n ? n : 1));
    ck_assert_ptr_nonnull(p);
    return p;
}

static double *dalloc(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void fill_const(float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        x[i] = v;
}

/* got[i] within (terms+2)·u·abs[i] of want[i] (plus `base` added to both:
 * the accumulate contract, exact up to one rounding of base + sum). */
static void assert_sums(const float *got, const double *want, const double *abs, size_t n,
                        double terms, double base, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double w = base + want[i];
        double tol = (terms + 2.0) * U32 * abs[i] + 2.0 * U32 * fabs(w) + 1e-30;
        expect(fabs(got[i] - w) <= tol, "%s[%zu] = %.9g, want %.9g (tol %.3g)", what, i, got[i], w,
               tol);
    }
}

/* ---- conv2d ------------------------------------------------------------------ */

struct conv_case {
    int B, C, H, W, OC, K, stride, pad;
    bool bias;
};

/* out (B, OC, OH, OW) = Σ w·x + b in double, with Σ|w·x| + |b| in abs. */
static void ref_conv_forward(double *out, double *abs, const double *x, const float *w,
                             const float *b, const struct sila_conv_geom *g)
{
    for (int n = 0; n < g->B; n++)
        for (int oc = 0; oc < g->OC; oc++)
            for (int oh = 0; oh < g->OH; oh++)
                for (int ow = 0; ow < g->OW; ow++) {
                    double acc = b ? b[oc] : 0.0, aa = b ? fabs(b[oc]) : 0.0;
                    for (int c = 0; c < g->C; c++)
                        for (int ki = 0; ki < g->K; ki++)
                            for (int kj = 0; kj < g->K; kj++) {
                                int ih = oh * g->stride - g->pad + ki;
                                int iw = ow * g->stride - g->pad + kj;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                                    continue;
                                double t = w[((oc * g->C + c) * g->K + ki) * g->K + kj] *
                                           x[(((size_t)n * g->C + c) * g->H + ih) * g->W + iw];
                                acc += t;
                                aa += fabs(t);
                            }
                    size_t o = (((size_t)n * g->OC + oc) * g->OH + oh) * g->OW + ow;
                    out[o] = acc;
                    abs[o] = aa;
                }
}

/* Gradients of Σ out·dout: din, dw, db with their absolute sums. */
static void ref_conv_backward(double *din, double *din_abs, double *dw, double *dw_abs, double *db,
                              double *db_abs, const float *dout, const float *x, const float *w,
                              const struct sila_conv_geom *g)
{
    for (int n = 0; n < g->B; n++)
        for (int oc = 0; oc < g->OC; oc++)
            for (int oh = 0; oh < g->OH; oh++)
                for (int ow = 0; ow < g->OW; ow++) {
                    double d = dout[(((size_t)n * g->OC + oc) * g->OH + oh) * g->OW + ow];
                    db[oc] += d;
                    db_abs[oc] += fabs(d);
                    for (int c = 0; c < g->C; c++)
                        for (int ki = 0; ki < g->K; ki++)
                            for (int kj = 0; kj < g->K; kj++) {
                                int ih = oh * g->stride - g->pad + ki;
                                int iw = ow * g->stride - g->pad + kj;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                                    continue;
                                size_t wi = ((size_t)(oc * g->C + c) * g->K + ki) * g->K + kj;
                                size_t xi = (((size_t)n * g->C + c) * g->H + ih) * g->W + iw;
                                din[xi] += w[wi] * d;
                                din_abs[xi] += fabs(w[wi] * d);
                                dw[wi] += x[xi] * d;
                                dw_abs[wi] += fabs(x[xi] * d);
                            }
                }
}

/* Forward and backward of one geometry against the references, with a
 * scratch buffer of exactly sila_conv_work_floats floats (valgrind sees any
 * overrun), on `threads` threads. The plan is made for one sample more
 * than the batch that runs, as a job's last batch is. The backward's dw
 * and db are pre-filled (they accumulate), din with garbage (it is
 * overwritten). */
static float *relayout(float *y, const float *x, bool to, enum sila_layout l, int B, int C, int H,
                       int W);

/* cc at batch cc->B on a plan made for batch plan_B >= cc->B; `blocked`:
 * with the tensors in the layouts the convolution picks (as a residual
 * block holds them), else NCHW. */
static void check_conv(const struct conv_case *cc, int plan_B, bool blocked, uint64_t seed,
                       int threads)
{
    struct sila_conv_geom g;
    ck_assert_int_eq(
        sila_conv_geom_init(&g, plan_B, cc->C, cc->H, cc->W, cc->OC, cc->K, cc->stride, cc->pad),
        0);
    g.threads = threads;
    g.bias = cc->bias;
    if (blocked)
        ck_assert_int_eq(sila_conv_layouts(&g, &g.src_layout, &g.dst_layout), 0);
    ck_assert_int_eq(sila_conv_plan_new(&g), 0);
    size_t work_n = sila_conv_work_floats(&g);
    g.B = cc->B;
    size_t nx = (size_t)g.B * g.C * g.H * g.W, ny = (size_t)g.B * g.OC * g.OH * g.OW;
    size_t nw = (size_t)g.OC * g.C * g.K * g.K;
    float *x = falloc(nx), *w = falloc(nw), *b = falloc(g.OC), *y = falloc(ny);
    float *dy = falloc(ny), *dx = falloc(nx), *dw = falloc(nw), *db = falloc(g.OC);
    float *work = falloc(work_n);
    double *ry = dalloc(ny), *ry_abs = dalloc(ny), *rdx = dalloc(nx), *rdx_abs = dalloc(nx);
    double *rdw = dalloc(nw), *rdw_abs = dalloc(nw), *rdb = dalloc(g.OC), *rdb_abs = dalloc(g.OC);
    fill_normal(x, nx, 1.0f, seed);
    fill_normal(w, nw, 0.3f, seed + 1);
    fill_normal(b, g.OC, 0.5f, seed + 2);
    fill_normal(dy, ny, 1.0f, seed + 3);
    const float *bias = cc->bias ? b : NULL;

    /* the tensors as the convolution is given them */
    float *xl = relayout(NULL, x, true, g.src_layout, g.B, g.C, g.H, g.W);
    float *dyl = relayout(NULL, dy, true, g.dst_layout, g.B, g.OC, g.OH, g.OW);
    float *yl = falloc(sila_layout_floats(g.dst_layout, g.B, g.OC, g.OH, g.OW));
    const size_t nxl = sila_layout_floats(g.src_layout, g.B, g.C, g.H, g.W);
    float *dxl = falloc(nxl);
    sila_conv2d_forward(yl, xl, w, bias, &g, work);
    relayout(y, yl, false, g.dst_layout, g.B, g.OC, g.OH, g.OW);
    double *xd = dalloc(nx);
    for (size_t i = 0; i < nx; i++)
        xd[i] = x[i];
    ref_conv_forward(ry, ry_abs, xd, w, bias, &g);
    free(xd);
    assert_sums(y, ry, ry_abs, ny, (double)g.C * g.K * g.K + 1, 0.0, "conv out");

    fill_const(dx, nx, NAN);
    fill_const(dw, nw, 0.25f);
    fill_const(db, g.OC, -0.5f);
    sila_conv2d_backward(dxl, dw, cc->bias ? db : NULL, dyl, xl, w, &g, work);
    relayout(dx, dxl, false, g.src_layout, g.B, g.C, g.H, g.W);
    ref_conv_backward(rdx, rdx_abs, rdw, rdw_abs, rdb, rdb_abs, dy, x, w, &g);
    assert_sums(dx, rdx, rdx_abs, nx, (double)g.OC * g.K * g.K, 0.0, "conv din");
    assert_sums(dw, rdw, rdw_abs, nw, (double)g.B * g.OH * g.OW, 0.25, "conv dw");
    if (cc->bias)
        assert_sums(db, rdb, rdb_abs, g.OC, (double)g.B * g.OH * g.OW, -0.5, "conv db");

    /* din NULL (first layer): the parameter gradients are the same */
    fill_const(dw, nw, 0.25f);
    sila_conv2d_backward(NULL, dw, NULL, dyl, xl, w, &g, work);
    assert_sums(dw, rdw, rdw_abs, nw, (double)g.B * g.OH * g.OW, 0.25, "conv dw (din NULL)");
    /* dw and db NULL (a frozen net): the same din, bit for bit */
    float *dx2 = falloc(nxl);
    sila_conv2d_backward(dx2, NULL, NULL, dyl, xl, w, &g, work);
    ck_assert_mem_eq(dx2, dxl, sizeof *dx * nxl);
    free(dx2);

    sila_conv_plan_free(&g);
    ck_assert_ptr_null(g.plan);
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db), free(work);
    free(xl), free(dyl), free(yl), free(dxl);
    free(ry), free(ry_abs), free(rdx), free(rdx_abs), free(rdw), free(rdw_abs), free(rdb),
        free(rdb_abs);
}

START_TEST(test_conv_geom)
{
    struct sila_conv_geom g;
    /* PyTorch: OH = floor((H + 2p - K) / s) + 1 */
    ck_assert_int_eq(sila_conv_geom_init(&g, 2, 3, 7, 6, 4, 3, 2, 1), 0);
    ck_assert_int_eq(g.OH, 4);
    ck_assert_int_eq(g.OW, 3);
    ck_assert_int_eq(sila_conv_geom_init(&g, 1, 1, 5, 9, 1, 5, 1, 0), 0);
    ck_assert_int_eq(g.OH, 1);
    ck_assert_int_eq(g.OW, 5);
    ck_assert_int_eq(sila_conv_geom_init(&g, 1, 1, 3, 3, 1, 1, 1, 2), 0);
    ck_assert_int_eq(g.OH, 7);
    ck_assert_int_eq(sila_conv_geom_init(&g, 1, 1, 4, 9, 1, 5, 1, 0), -EINVAL);
    ck_assert_int_eq(sila_conv_geom_init(&g, 1, 1, 5, 5, 1, 3, 0, 1), -EINVAL);
    ck_assert_int_eq(sila_conv_geom_init(&g, 0, 1, 5, 5, 1, 3, 1, 1), -EINVAL);
    ck_assert_int_eq(sila_conv_geom_init(&g, 1, 1, 5, 5, 1, 3, 1, -1), -EINVAL);
}
END_TEST

static const struct conv_case conv_cases[] = {
    {2, 3, 5, 6, 4, 3, 1, 1, true},   {3, 2, 7, 5, 3, 3, 2, 1, false},
    {2, 4, 6, 7, 5, 1, 1, 0, true},   {2, 3, 6, 6, 2, 1, 2, 0, true},
    {1, 2, 9, 8, 3, 5, 2, 2, true},   {2, 1, 5, 5, 1, 5, 1, 0, false},
    {3, 5, 4, 4, 6, 3, 1, 2, true},   {2, 3, 8, 5, 4, 3, 3, 1, true},
    {1, 1, 1, 1, 1, 1, 1, 0, true},   {4, 2, 3, 7, 3, 3, 1, 1, false},
    {1, 1, 12, 10, 8, 5, 1, 2, true}, /* din's scratch exceeds the forward's */
};

START_TEST(test_conv_small)
{
    check_conv(&conv_cases[_i], conv_cases[_i].B + 1, false, 100 + (uint64_t)_i * 10, 1);
}
END_TEST

/* The shapes of the shipped jobs' layers at small batches (the library
 * picks its blocked kernels for them, the small cases above may run its
 * reference ones), odd sizes, and two threads. */
static const struct conv_case job_cases[] = {
    {3, 1, 28, 28, 16, 3, 1, 1, false},  /* ResNet stem */
    {3, 16, 28, 28, 16, 3, 1, 1, false}, /* ResNet's 16-channel block */
    {2, 16, 28, 28, 32, 3, 2, 1, false}, /* stride 2 */
    {2, 16, 28, 28, 32, 1, 2, 0, false}, /* its 1x1 projection */
    {2, 32, 14, 14, 64, 3, 2, 1, false}, {3, 64, 7, 7, 64, 3, 1, 1, false},
    {2, 32, 28, 28, 32, 3, 1, 1, true},                                       /* the CNN's */
    {2, 32, 14, 14, 64, 3, 1, 1, true},  {3, 16, 11, 13, 16, 3, 1, 1, false}, /* odd, non-square */
    {7, 24, 13, 10, 16, 3, 1, 1, true},
};

START_TEST(test_conv_jobs)
{
    check_conv(&job_cases[_i], job_cases[_i].B + 1, false, 200 + (uint64_t)_i * 10, 1 + _i % 2);
}
END_TEST

/* The last test batch of a ResNet run (44 of 300 samples) on the plan of
 * its batch of 128, in a block's layouts: a Winograd shape whose small
 * batch needs more scratch than the plan's batch runs direct (conv.c). */
START_TEST(test_conv_batch_below_plan)
{
    static const struct conv_case cc = {44, 64, 7, 7, 64, 3, 1, 1, false};
    check_conv(&cc, 128, true, 300, 2);
}
END_TEST

/* ---- pooling ----------------------------------------------------------------- */

struct pool_case {
    int B, C, H, W, K, stride, pad;
    bool ties; /* the input rounded to whole numbers: windows with equal cells */
};

static const struct pool_case pool_cases[] = {
    {2, 3, 6, 6, 2, 2, 0, false},
    {2, 2, 7, 6, 3, 2, 1, false},
    {1, 2, 5, 5, 3, 1, 1, false},
    {3, 1, 5, 7, 2, 2, 0, false},
    {2, 2, 4, 5, 3, 2, 0, false},
    {1, 3, 6, 4, 2, 1, 1, false},
    {2, 1, 9, 9, 5, 3, 2, false},
    {1, 1, 1, 1, 1, 1, 0, false},
    {1, 2, 7, 8, 2, 3, 0, false},
    {2, 2, 8, 7, 3, 3, 0, false},     /* windows tiling the plane but for a remainder */
    {1, 2, 65, 40, 2, 2, 0, false},   /* more rows than an average pool's flat pass takes */
    {3, 3, 28, 28, 14, 14, 0, false}, /* an aux head's windows, planes in groups and a rest */
    /* 2x2 max pools' rows eight windows at a time: rows of 7 (the CNN's
     * 14x14), 15, 8 (planes of odd height, one by one), more rows than a
     * thread takes at once, and ties between a window's cells */
    {2, 3, 14, 14, 2, 2, 0, false},
    {2, 2, 28, 30, 2, 2, 0, false},
    {1, 3, 15, 16, 2, 2, 0, false},
    {4, 40, 14, 14, 2, 2, 0, false},
    {3, 5, 14, 14, 2, 2, 0, true},
    {2, 2, 28, 28, 2, 2, 0, true},
};

static void init_pool(struct sila_pool_geom *g, const struct pool_case *pc)
{
    ck_assert_int_eq(sila_pool_geom_init(g, pc->B, pc->C, pc->H, pc->W, pc->K, pc->stride, pc->pad),
                     0);
    ck_assert_int_eq(g->OH, (pc->H + 2 * pc->pad - pc->K) / pc->stride + 1);
    ck_assert_int_eq(g->OW, (pc->W + 2 * pc->pad - pc->K) / pc->stride + 1);
}

START_TEST(test_pool_geom)
{
    struct sila_pool_geom g;
    ck_assert_int_eq(sila_pool_geom_init(&g, 1, 1, 7, 6, 3, 2, 1), 0);
    ck_assert_int_eq(g.OH, 4);
    ck_assert_int_eq(g.OW, 3);
    ck_assert_int_eq(sila_pool_geom_init(&g, 1, 1, 6, 6, 3, 2, 2), -EINVAL); /* pad > K/2 */
    ck_assert_int_eq(sila_pool_geom_init(&g, 1, 1, 2, 6, 3, 1, 0), -EINVAL); /* no fit */
    ck_assert_int_eq(sila_pool_geom_init(&g, 1, 1, 6, 6, 2, 0, 0), -EINVAL);
}
END_TEST

START_TEST(test_maxpool)
{
    const struct pool_case *pc = &pool_cases[_i];
    struct sila_pool_geom g;
    init_pool(&g, pc);
    size_t nx = (size_t)g.B * g.C * g.H * g.W, ny = (size_t)g.B * g.C * g.OH * g.OW;
    float *x = falloc(nx), *y = falloc(ny), *dy = falloc(ny), *dx = falloc(nx);
    int32_t *arg = malloc(sizeof *arg * ny);
    double *rdx = dalloc(nx), *rdx_abs = dalloc(nx);
    ck_assert_ptr_nonnull(arg);
    fill_normal(x, nx, 1.0f, 300 + (uint64_t)_i);
    for (size_t i = 0; pc->ties && i < nx; i++)
        x[i] = rintf(x[i]);
    /* the first window of the first plane all negative: a padded cell must
     * never win (PyTorch pads max pooling with -inf) */
    for (int ih = 0; ih < g.K - g.pad && ih < g.H; ih++)
        for (int iw = 0; iw < g.K - g.pad && iw < g.W; iw++)
            x[ih * g.W + iw] = -50.0f - (float)(ih + 2 * iw);
    fill_normal(dy, ny, 1.0f, 310 + (uint64_t)_i);
    sila_maxpool_forward(y, arg, x, &g);
    for (int p = 0; p < g.B * g.C; p++)
        for (int oh = 0; oh < g.OH; oh++)
            for (int ow = 0; ow < g.OW; ow++) {
                double best = -INFINITY;
                int at = -1;
                for (int i = 0; i < g.K; i++)
                    for (int j = 0; j < g.K; j++) {
                        int ih = oh * g.stride - g.pad + i, iw = ow * g.stride - g.pad + j;
                        if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W &&
                            x[((size_t)p * g.H + ih) * g.W + iw] > best) {
                            best = x[((size_t)p * g.H + ih) * g.W + iw];
                            at = ih * g.W + iw;
                        }
                    }
                size_t o = ((size_t)p * g.OH + oh) * g.OW + ow;
                expect(y[o] == (float)best, "out[%zu] = %g, want %g", o, y[o], best);
                expect(arg[o] == at, "argmax[%zu] = %d, want %d", o, arg[o], at);
                rdx[(size_t)p * g.H * g.W + at] += dy[o];
                rdx_abs[(size_t)p * g.H * g.W + at] += fabs(dy[o]);
            }
    fill_const(dx, nx, NAN);
    sila_maxpool_backward(dx, dy, arg, &g);
    assert_sums(dx, rdx, rdx_abs, nx, (double)g.K * g.K, 0.0, "maxpool din");
    free(x), free(y), free(dy), free(dx), free(arg), free(rdx), free(rdx_abs);
}
END_TEST

START_TEST(test_avgpool)
{
    /* PyTorch's count_include_pad=True: every window divides by K·K, padded
     * cells counting as zeros. */
    const struct pool_case *pc = &pool_cases[_i];
    struct sila_pool_geom g;
    init_pool(&g, pc);
    size_t nx = (size_t)g.B * g.C * g.H * g.W, ny = (size_t)g.B * g.C * g.OH * g.OW;
    float *x = falloc(nx), *y = falloc(ny), *dy = falloc(ny), *dx = falloc(nx);
    double *ry = dalloc(ny), *ry_abs = dalloc(ny), *rdx = dalloc(nx), *rdx_abs = dalloc(nx);
    fill_normal(x, nx, 1.0f, 400 + (uint64_t)_i);
    fill_normal(dy, ny, 1.0f, 410 + (uint64_t)_i);
    for (int p = 0; p < g.B * g.C; p++)
        for (int oh = 0; oh < g.OH; oh++)
            for (int ow = 0; ow < g.OW; ow++) {
                size_t o = ((size_t)p * g.OH + oh) * g.OW + ow;
                for (int i = 0; i < g.K; i++)
                    for (int j = 0; j < g.K; j++) {
                        int ih = oh * g.stride - g.pad + i, iw = ow * g.stride - g.pad + j;
                        if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W)
                            continue;
                        size_t xi = ((size_t)p * g.H + ih) * g.W + iw;
                        ry[o] += (double)x[xi] / (g.K * g.K);
                        ry_abs[o] += fabs(x[xi]) / (g.K * g.K);
                        rdx[xi] += (double)dy[o] / (g.K * g.K);
                        rdx_abs[xi] += fabs(dy[o]) / (g.K * g.K);
                    }
            }
    sila_avgpool_forward(y, x, &g);
    assert_sums(y, ry, ry_abs, ny, (double)g.K * g.K + 1, 0.0, "avgpool out");
    fill_const(dx, nx, NAN);
    sila_avgpool_backward(dx, dy, &g);
    assert_sums(dx, rdx, rdx_abs, nx, (double)g.K * g.K + 1, 0.0, "avgpool din");
    free(x), free(y), free(dy), free(dx), free(ry), free(ry_abs), free(rdx), free(rdx_abs);
}
END_TEST

START_TEST(test_avgpool_counts_padding)
{
    /* hand case: 2x2 of ones, K3 s1 p1: each output sees 4 ones out of 9 */
    struct sila_pool_geom g;
    ck_assert_int_eq(sila_pool_geom_init(&g, 1, 1, 2, 2, 3, 1, 1), 0);
    const float x[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    float y[4];
    sila_avgpool_forward(y, x, &g);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq_tol(y[i], 4.0f / 9.0f, 1e-7f);
}
END_TEST

START_TEST(test_gap)
{
    enum { B = 3, C = 4, HW = 15 };
    float x[B * C * HW], y[B * C], dy[B * C], dx[B * C * HW];
    fill_normal(x, B * C * HW, 1.0f, 500);
    fill_normal(dy, B * C, 1.0f, 501);
    sila_gap_forward(y, x, B, C, HW);
    fill_const(dx, B * C * HW, NAN);
    sila_gap_backward(dx, dy, B, C, HW);
    for (int p = 0; p < B * C; p++) {
        double s = 0.0, a = 0.0;
        for (int i = 0; i < HW; i++) {
            s += x[p * HW + i];
            a += fabs(x[p * HW + i]);
        }
        ck_assert_double_le(fabs(y[p] - s / HW), (HW + 2) * U32 * a / HW);
        for (int i = 0; i < HW; i++)
            ck_assert_double_le(fabs(dx[p * HW + i] - dy[p] / HW), 2 * U32 * fabs(dy[p]));
    }
}
END_TEST

/* ---- linear and ReLU ------------------------------------------------------------ */

START_TEST(test_linear)
{
    enum { B = 5, IN = 7, OUT = 4 };
    float x[B * IN], w[OUT * IN], b[OUT], y[B * OUT], dy[B * OUT], dx[B * IN], dw[OUT * IN],
        db[OUT];
    double ry[B * OUT], ry_abs[B * OUT], rdx[B * IN] = {0}, rdx_abs[B * IN] = {0};
    double rdw[OUT * IN] = {0}, rdw_abs[OUT * IN] = {0}, rdb[OUT] = {0}, rdb_abs[OUT] = {0};
    fill_normal(x, B * IN, 1.0f, 600);
    fill_normal(w, OUT * IN, 0.4f, 601);
    fill_normal(b, OUT, 0.5f, 602);
    fill_normal(dy, B * OUT, 1.0f, 603);
    for (int n = 0; n < B; n++)
        for (int o = 0; o < OUT; o++) {
            double acc = b[o], a = fabs(b[o]);
            for (int i = 0; i < IN; i++) {
                acc += (double)x[n * IN + i] * w[o * IN + i];
                a += fabs((double)x[n * IN + i] * w[o * IN + i]);
                rdx[n * IN + i] += (double)dy[n * OUT + o] * w[o * IN + i];
                rdx_abs[n * IN + i] += fabs((double)dy[n * OUT + o] * w[o * IN + i]);
                rdw[o * IN + i] += (double)dy[n * OUT + o] * x[n * IN + i];
                rdw_abs[o * IN + i] += fabs((double)dy[n * OUT + o] * x[n * IN + i]);
            }
            ry[n * OUT + o] = acc;
            ry_abs[n * OUT + o] = a;
            rdb[o] += dy[n * OUT + o];
            rdb_abs[o] += fabs(dy[n * OUT + o]);
        }
    sila_linear_forward(y, x, w, b, B, IN, OUT);
    assert_sums(y, ry, ry_abs, B * OUT, IN + 1, 0.0, "linear out");
    sila_linear_forward(y, x, w, NULL, B, IN, OUT);
    for (int i = 0; i < B * OUT; i++)
        ry[i] -= b[i % OUT];
    assert_sums(y, ry, ry_abs, B * OUT, IN + 1, 0.0, "linear out (no bias)");
    fill_const(dx, B * IN, NAN);
    fill_const(dw, OUT * IN, 0.25f);
    fill_const(db, OUT, -0.5f);
    sila_linear_backward(dx, dw, db, dy, x, w, B, IN, OUT);
    assert_sums(dx, rdx, rdx_abs, B * IN, OUT, 0.0, "linear din");
    assert_sums(dw, rdw, rdw_abs, OUT * IN, B, 0.25, "linear dw");
    assert_sums(db, rdb, rdb_abs, OUT, B, -0.5, "linear db");
    float dx2[B * IN]; /* dw and db NULL: the same din */
    sila_linear_backward(dx2, NULL, NULL, dy, x, w, B, IN, OUT);
    ck_assert_mem_eq(dx2, dx, sizeof *dx * B * IN);
}
END_TEST

START_TEST(test_relu)
{
    enum { N = 64 };
    float x[N], y[N], dy[N], dx[N];
    fill_normal(x, N, 1.0f, 700);
    fill_normal(dy, N, 1.0f, 701);
    x[0] = 0.0f;
    sila_relu_forward(y, x, N);
    sila_relu_backward(dx, dy, y, N);
    for (int i = 0; i < N; i++) {
        ck_assert_float_eq(y[i], x[i] > 0.0f ? x[i] : 0.0f);
        ck_assert_float_eq(dx[i], x[i] > 0.0f ? dy[i] : 0.0f);
    }
    /* in place, both ways */
    memcpy(y, x, sizeof x);
    sila_relu_forward(y, y, N);
    memcpy(dx, dy, sizeof dy);
    sila_relu_backward(dx, dx, y, N);
    for (int i = 0; i < N; i++) {
        ck_assert_float_eq(y[i], x[i] > 0.0f ? x[i] : 0.0f);
        ck_assert_float_eq(dx[i], x[i] > 0.0f ? dy[i] : 0.0f);
    }
}
END_TEST

/* ---- batch norm -------------------------------------------------------------------- */

struct bn_dims {
    int B, C, HW;
};

/* HW 30: vector lanes plus a tail; 1001: many lanes per plane, odd tail
 * (the plane two samples on, the one the passes would prefetch, lies past
 * the batch); 600 over 3 samples: the third sample's plane prefetched;
 * 1: no lane at all, statistics across samples only. */
static const struct bn_dims bn_cases[] = {{4, 3, 30}, {2, 2, 1001}, {3, 2, 600}, {16, 5, 1}};

static size_t bn_size(const struct bn_dims *d)
{
    return (size_t)d->B * d->C * d->HW;
}

/* Per-channel mean and biased variance in double. */
static void ref_stats(const float *x, const struct bn_dims *d, int c, double *ret_mean,
                      double *ret_var)
{
    double s = 0.0, ss = 0.0, n = (double)d->B * d->HW;
    for (int b = 0; b < d->B; b++)
        for (int i = 0; i < d->HW; i++)
            s += x[((size_t)b * d->C + c) * d->HW + i];
    double m = s / n;
    for (int b = 0; b < d->B; b++)
        for (int i = 0; i < d->HW; i++) {
            double e = x[((size_t)b * d->C + c) * d->HW + i] - m;
            ss += e * e;
        }
    *ret_mean = m;
    *ret_var = ss / n;
}

/* Channels with distinct means (3, 1, -1, ...) and spreads, far from 0. */
static float *bn_input(const struct bn_dims *d, uint64_t seed)
{
    size_t n = bn_size(d);
    float *x = falloc(n);
    fill_normal(x, n, 1.0f, seed);
    for (size_t i = 0; i < n; i++) {
        int c = (int)((i / d->HW) % d->C);
        x[i] = 3.0f - 2.0f * c + (0.5f + c) * x[i];
    }
    return x;
}

static float bn_gamma(int c)
{
    return c % 3 == 0 ? 1.5f : c % 3 == 1 ? 0.7f : -0.4f;
}

static float bn_beta(int c)
{
    return 0.2f - 0.6f * c;
}

START_TEST(test_bn_train)
{
    const struct bn_dims *d = &bn_cases[_i];
    const int C = d->C;
    const size_t N = bn_size(d);
    const double n = (double)d->B * d->HW;
    const float momentum = 0.1f, eps = 1e-5f;
    float *gamma = falloc(C), *beta = falloc(C), *mean = falloc(C), *invstd = falloc(C);
    float *rm = falloc(C), *rv = falloc(C), *rm0 = falloc(C), *rv0 = falloc(C);
    for (int c = 0; c < C; c++) {
        gamma[c] = bn_gamma(c);
        beta[c] = bn_beta(c);
        rm[c] = rm0[c] = 0.5f - 0.75f * c;
        rv[c] = rv0[c] = 1.0f + 0.5f * c;
    }
    float *x = bn_input(d, 800 + (uint64_t)_i), *y = falloc(N);
    sila_bn_forward_train(y, mean, invstd, rm, rv, x, gamma, beta, momentum, eps, d->B, C, d->HW);
    for (int c = 0; c < C; c++) {
        double m, v;
        ref_stats(x, d, c, &m, &v);
        ck_assert_double_le(fabs(mean[c] - m), 1e-6 * (fabs(m) + 1.0));
        ck_assert_double_le(fabs(invstd[c] - 1.0 / sqrt(v + eps)), 1e-6 / sqrt(v + eps));
        /* running statistics: PyTorch's update with the UNBIASED variance */
        double want_rm = (1.0 - momentum) * rm0[c] + momentum * m;
        double want_rv = (1.0 - momentum) * rv0[c] + momentum * v * n / (n - 1);
        ck_assert_msg(fabs(rm[c] - want_rm) <= 1e-6 * (1.0 + fabs(want_rm)),
                      "running_mean[%d] = %.9g, want %.9g", c, rm[c], want_rm);
        ck_assert_msg(fabs(rv[c] - want_rv) <= 1e-6 * want_rv, "running_var[%d] = %.9g, want %.9g",
                      c, rv[c], want_rv);
        /* each value gamma·(x-m)/sqrt(v+eps) + beta; per channel, mean beta
         * and biased std |gamma|·sqrt(v/(v+eps)) */
        double s = 0.0, ss = 0.0;
        for (int b = 0; b < d->B; b++)
            for (int i = 0; i < d->HW; i++) {
                size_t k = ((size_t)b * C + c) * d->HW + i;
                double want = gamma[c] * (x[k] - m) / sqrt(v + eps) + beta[c];
                expect(fabs(y[k] - want) <= 1e-5 * (fabs(want) + fabs(gamma[c]) + 1.0),
                       "out[%zu] = %.9g, want %.9g", k, y[k], want);
                s += y[k];
            }
        double ym = s / n;
        for (int b = 0; b < d->B; b++)
            for (int i = 0; i < d->HW; i++) {
                double e = y[((size_t)b * C + c) * d->HW + i] - ym;
                ss += e * e;
            }
        ck_assert_double_le(fabs(ym - beta[c]), 1e-5);
        ck_assert_double_le(fabs(sqrt(ss / n) - fabs(gamma[c]) * sqrt(v / (v + eps))), 1e-5);
    }
    /* out may alias in: the same output and statistics */
    float *inplace = falloc(N), *mean2 = falloc(C), *invstd2 = falloc(C);
    memcpy(inplace, x, sizeof *x * N);
    memcpy(rm, rm0, sizeof *rm * C);
    memcpy(rv, rv0, sizeof *rv * C);
    sila_bn_forward_train(inplace, mean2, invstd2, rm, rv, inplace, gamma, beta, momentum, eps,
                          d->B, C, d->HW);
    ck_assert_mem_eq(inplace, y, sizeof *y * N);
    ck_assert_mem_eq(mean2, mean, sizeof *mean * C);
    free(gamma), free(beta), free(mean), free(invstd), free(rm), free(rv), free(rm0), free(rv0);
    free(x), free(y), free(inplace), free(mean2), free(invstd2);
}
END_TEST

START_TEST(test_bn_eval)
{
    const struct bn_dims *d = &bn_cases[_i];
    const int C = d->C;
    const size_t N = bn_size(d);
    const float eps = 1e-3f;
    float *gamma = falloc(C), *beta = falloc(C), *rm = falloc(C), *rv = falloc(C);
    for (int c = 0; c < C; c++) {
        gamma[c] = bn_gamma(c);
        beta[c] = bn_beta(c);
        rm[c] = 0.5f - 0.75f * c;
        rv[c] = 1.0f + 0.5f * c;
    }
    float *x = bn_input(d, 810 + (uint64_t)_i), *y = falloc(N), *inplace = falloc(N);
    sila_bn_forward_eval(y, x, gamma, beta, rm, rv, eps, d->B, C, d->HW);
    for (size_t k = 0; k < N; k++) {
        int c = (int)((k / d->HW) % C);
        double want = gamma[c] * (x[k] - (double)rm[c]) / sqrt((double)rv[c] + eps) + beta[c];
        expect(fabs(y[k] - want) <= 1e-5 * (fabs(want) + 1.0), "out[%zu] = %.9g, want %.9g", k,
               y[k], want);
    }
    memcpy(inplace, x, sizeof *x * N);
    sila_bn_forward_eval(inplace, inplace, gamma, beta, rm, rv, eps, d->B, C, d->HW);
    ck_assert_mem_eq(inplace, y, sizeof *y * N);
    free(gamma), free(beta), free(rm), free(rv), free(x), free(y), free(inplace);
}
END_TEST

START_TEST(test_bn_backward)
{
    /* dgamma = Σ dy·x̂ and dbeta = Σ dy (accumulated); din against the naive
     * double formula γ/σ·(dy - mean(dy) - x̂·mean(dy·x̂)); din may alias dout. */
    const struct bn_dims *d = &bn_cases[_i];
    const int C = d->C;
    const size_t N = bn_size(d);
    const double n = (double)d->B * d->HW, eps = 1e-5;
    float *gamma = falloc(C), *beta = falloc(C), *mean = falloc(C), *invstd = falloc(C);
    float *rm = falloc(C), *rv = falloc(C), *dg = falloc(C), *dbt = falloc(C);
    float *dg2 = falloc(C), *db2 = falloc(C);
    for (int c = 0; c < C; c++) {
        gamma[c] = bn_gamma(c);
        beta[c] = bn_beta(c);
        rm[c] = 0.0f, rv[c] = 1.0f;
        dg[c] = 0.25f, dbt[c] = -0.5f, dg2[c] = db2[c] = 0.0f;
    }
    float *x = bn_input(d, 820 + (uint64_t)_i), *y = falloc(N), *dy = falloc(N), *dx = falloc(N);
    float *alias = falloc(N);
    fill_normal(dy, N, 1.0f, 821 + (uint64_t)_i);
    sila_bn_forward_train(y, mean, invstd, rm, rv, x, gamma, beta, 0.1f, (float)eps, d->B, C,
                          d->HW);
    fill_const(dx, N, NAN);
    sila_bn_backward(dx, dg, dbt, dy, x, mean, invstd, gamma, d->B, C, d->HW);
    memcpy(alias, dy, sizeof *dy * N);
    sila_bn_backward(alias, dg2, db2, alias, x, mean, invstd, gamma, d->B, C, d->HW);
    ck_assert_mem_eq(alias, dx, sizeof *dx * N);
    sila_bn_backward(alias, NULL, NULL, dy, x, mean, invstd, gamma, d->B, C, d->HW);
    ck_assert_mem_eq(alias, dx, sizeof *dx * N); /* no dgamma, dbeta: the same din */
    for (int c = 0; c < C; c++) {
        double m, v, sg = 0.0, sb = 0.0, ag = 0.0, ab = 0.0;
        ref_stats(x, d, c, &m, &v);
        double is = 1.0 / sqrt(v + eps);
        for (int b = 0; b < d->B; b++)
            for (int i = 0; i < d->HW; i++) {
                size_t k = ((size_t)b * C + c) * d->HW + i;
                double xh = (x[k] - m) * is;
                sg += dy[k] * xh;
                ag += fabs(dy[k] * xh);
                sb += dy[k];
                ab += fabs(dy[k]);
            }
        ck_assert_double_le(fabs(dg[c] - 0.25 - sg), 1e-5 * ag + 1e-6);
        ck_assert_double_le(fabs(dbt[c] + 0.5 - sb), 1e-5 * ab + 1e-6);
        ck_assert_float_eq(dg2[c] + 0.25f, dg[c]);
        /* the terms of din are O(|γ|·is·(|dy| + mean|dy| + |x̂|·mean|dy·x̂|)) */
        for (int b = 0; b < d->B; b++)
            for (int i = 0; i < d->HW; i++) {
                size_t k = ((size_t)b * C + c) * d->HW + i;
                double xh = (x[k] - m) * is;
                double want = gamma[c] * is * (dy[k] - sb / n - xh * sg / n);
                double scale = fabs(gamma[c]) * is * (fabs(dy[k]) + ab / n + fabs(xh) * ag / n);
                expect(fabs(dx[k] - want) <= 1e-5 * scale, "din[%zu] = %.9g, want %.9g", k, dx[k],
                       want);
            }
    }
    free(gamma), free(beta), free(mean), free(invstd), free(rm), free(rv), free(dg), free(dbt);
    free(dg2), free(db2), free(x), free(y), free(dy), free(dx), free(alias);
}
END_TEST

/* ---- on channel-blocked layouts ---------------------------------------------------- */

/* The blocked layouts with a channel count that fills its blocks (16),
 * one that pads them (5), and one that does both (20). */
struct blocked_case {
    enum sila_layout layout;
    int B, C, HW;
};
static const struct blocked_case blocked_cases[] = {
    {SILA_LAYOUT_NCHW16C, 4, 5, 30}, {SILA_LAYOUT_NCHW16C, 2, 16, 49},
    {SILA_LAYOUT_NCHW16C, 3, 20, 9}, {SILA_LAYOUT_NCHW8C, 4, 5, 30},
    {SILA_LAYOUT_NCHW8C, 3, 20, 9},
};

static int layout_block(enum sila_layout l)
{
    return l == SILA_LAYOUT_NCHW16C ? 16 : l == SILA_LAYOUT_NCHW8C ? 8 : 1;
}

/* Where element (b, c, i) of (B, C, HW) lies in layout l, by the layout's
 * definition: (B, ceil(C/k), HW, k). */
static size_t blocked_at(enum sila_layout l, int C, int HW, int b, int c, int i)
{
    size_t k = (size_t)layout_block(l), cb = ((size_t)C + k - 1) / k;
    return (((size_t)b * cb + (size_t)c / k) * HW + i) * k + (size_t)c % k;
}

/* x (B, C, HW) in NCHW: each element's blocked copy where the layout puts
 * it, and zeros in every padded channel. */
static void assert_blocked(const float *xb, const float *x, const struct blocked_case *bc,
                           const char *what)
{
    size_t n = sila_layout_floats(bc->layout, bc->B, bc->C, bc->HW, 1);
    char *seen = calloc(n, 1);
    ck_assert_ptr_nonnull(seen);
    for (int b = 0; b < bc->B; b++)
        for (int c = 0; c < bc->C; c++)
            for (int i = 0; i < bc->HW; i++) {
                size_t at = blocked_at(bc->layout, bc->C, bc->HW, b, c, i);
                ck_assert_uint_lt(at, n);
                float want = x[((size_t)b * bc->C + c) * bc->HW + i];
                expect(xb[at] == want, "%s (%d,%d,%d) = %.9g, want %.9g", what, b, c, i, xb[at],
                       want);
                seen[at] = 1;
            }
    for (size_t i = 0; i < n; i++)
        expect(seen[i] || xb[i] == 0.0f, "%s: padding [%zu] = %g", what, i, xb[i]);
    free(seen);
}

/* Reorders of (B, C, H, W) between NCHW and l, planned. */
static struct sila_relayout relayout_new(enum sila_layout l, int B, int C, int H, int W,
                                         int threads)
{
    struct sila_relayout r = {.B = B, .C = C, .H = H, .W = W, .layout = l, .threads = threads};
    ck_assert_int_eq(sila_relayout_plan_new(&r), 0);
    return r;
}

static struct sila_relayout relayout_of(const struct blocked_case *bc, int threads)
{
    return relayout_new(bc->layout, bc->B, bc->C, bc->HW, 1, threads);
}

START_TEST(test_relayout)
{
    /* NCHW -> layout writes every element where the layout's definition
     * puts it and zeros the padding (the buffer starts as NaN); back to
     * NCHW gives the same bits. */
    const struct blocked_case *bc = &blocked_cases[_i];
    struct sila_relayout r = relayout_of(bc, 2);
    size_t n = (size_t)bc->B * bc->C * bc->HW;
    size_t nb = sila_layout_floats(bc->layout, bc->B, bc->C, bc->HW, 1);
    ck_assert_uint_eq(nb % ((size_t)bc->B * layout_block(bc->layout) * bc->HW), 0);
    float *x = falloc(n), *xb = falloc(nb), *back = falloc(n);
    float *work = falloc(sila_relayout_work_floats(&r));
    fill_normal(x, n, 1.0f, 1400 + (uint64_t)_i);
    fill_const(xb, nb, NAN);
    sila_relayout_to(xb, x, &r, work);
    assert_blocked(xb, x, bc, "blocked");
    fill_const(back, n, NAN);
    sila_relayout_from(back, xb, &r, work);
    ck_assert_mem_eq(back, x, sizeof *x * n);
    sila_relayout_plan_free(&r);
    ck_assert_ptr_null(r.plan);
    free(x), free(xb), free(back), free(work);
}
END_TEST

/* x (B, C, H, W) from NCHW into layout l (to), or back (!to), into y
 * (allocated when NULL); l NCHW: a copy. */
static float *relayout(float *y, const float *x, bool to, enum sila_layout l, int B, int C, int H,
                       int W)
{
    struct sila_relayout r = relayout_new(l, B, C, H, W, 1);
    float *work = falloc(sila_relayout_work_floats(&r));
    if (!y)
        y = falloc(sila_layout_floats(to ? l : SILA_LAYOUT_NCHW, B, C, H, W));
    (to ? sila_relayout_to : sila_relayout_from)(y, x, &r, work);
    sila_relayout_plan_free(&r);
    free(work);
    return y;
}

START_TEST(test_conv_in_layouts)
{
    /* A convolution given its tensors in the layouts its kernels pick
     * computes what it computes from NCHW, bit for bit: the same kernels,
     * without the reorders around them. */
    const struct conv_case *cc = &job_cases[_i];
    struct sila_conv_geom p, b;
    ck_assert_int_eq(
        sila_conv_geom_init(&p, cc->B, cc->C, cc->H, cc->W, cc->OC, cc->K, cc->stride, cc->pad), 0);
    p.threads = 2;
    p.bias = cc->bias;
    b = p;
    ck_assert_int_eq(sila_conv_layouts(&p, &b.src_layout, &b.dst_layout), 0);
    ck_assert_int_eq(sila_conv_plan_new(&p), 0);
    ck_assert_int_eq(sila_conv_plan_new(&b), 0);
    size_t nx = (size_t)p.B * p.C * p.H * p.W, ny = (size_t)p.B * p.OC * p.OH * p.OW;
    size_t nw = (size_t)p.OC * p.C * p.K * p.K;
    size_t wn = sila_conv_work_floats(&p) > sila_conv_work_floats(&b) ? sila_conv_work_floats(&p)
                                                                      : sila_conv_work_floats(&b);
    float *x = falloc(nx), *w = falloc(nw), *bias = falloc(p.OC), *dy = falloc(ny);
    float *y = falloc(ny), *yb = falloc(ny), *dx = falloc(nx), *dxb = falloc(nx);
    float *dw = falloc(nw), *dwb = falloc(nw), *db = falloc(p.OC), *dbb = falloc(p.OC);
    float *work = falloc(wn);
    fill_normal(x, nx, 1.0f, 1440 + (uint64_t)_i);
    fill_normal(w, nw, 0.3f, 1441 + (uint64_t)_i);
    fill_normal(bias, p.OC, 0.5f, 1442 + (uint64_t)_i);
    fill_normal(dy, ny, 1.0f, 1443 + (uint64_t)_i);
    float *xl = relayout(NULL, x, true, b.src_layout, p.B, p.C, p.H, p.W);
    float *dyl = relayout(NULL, dy, true, b.dst_layout, p.B, p.OC, p.OH, p.OW);
    float *yl = falloc(sila_layout_floats(b.dst_layout, p.B, p.OC, p.OH, p.OW));
    float *dxl = falloc(sila_layout_floats(b.src_layout, p.B, p.C, p.H, p.W));
    sila_conv2d_forward(y, x, w, bias, &p, work);
    sila_conv2d_forward(yl, xl, w, bias, &b, work);
    relayout(yb, yl, false, b.dst_layout, p.B, p.OC, p.OH, p.OW);
    ck_assert_mem_eq(yb, y, sizeof *y * ny);
    fill_const(dw, nw, 0.0f), fill_const(dwb, nw, 0.0f);
    fill_const(db, p.OC, 0.0f), fill_const(dbb, p.OC, 0.0f);
    sila_conv2d_backward(dx, dw, cc->bias ? db : NULL, dy, x, w, &p, work);
    sila_conv2d_backward(dxl, dwb, cc->bias ? dbb : NULL, dyl, xl, w, &b, work);
    relayout(dxb, dxl, false, b.src_layout, p.B, p.C, p.H, p.W);
    ck_assert_mem_eq(dxb, dx, sizeof *dx * nx);
    ck_assert_mem_eq(dwb, dw, sizeof *dw * nw);
    ck_assert_mem_eq(dbb, db, sizeof *db * p.OC);
    sila_conv_plan_free(&p);
    sila_conv_plan_free(&b);
    free(x), free(w), free(bias), free(dy), free(y), free(yb), free(dx), free(dxb), free(dw);
    free(dwb), free(db), free(dbb), free(work), free(xl), free(dyl), free(yl), free(dxl);
}
END_TEST

/* A blocked batch norm's run: inputs in NCHW and blocked, the plan, the
 * parameters of bn_gamma and bn_beta, running statistics (rm, rv) and
 * their values before the run (rm0, rv0). */
struct bbn {
    const struct blocked_case *bc;
    struct bn_dims d;
    struct sila_relayout r;
    struct sila_blocked_bn g;
    size_t n, nb;
    float *x, *xb, *gamma, *beta, *rm, *rv, *rm0, *rv0, *work;
};

static void bbn_open(struct bbn *t, const struct blocked_case *bc, bool relu, float eps,
                     uint64_t seed)
{
    memset(t, 0, sizeof *t);
    t->bc = bc;
    t->d = (struct bn_dims){bc->B, bc->C, bc->HW};
    t->r = relayout_of(bc, 2);
    t->g = (struct sila_blocked_bn){.B = bc->B,
                                    .C = bc->C,
                                    .H = bc->HW,
                                    .W = 1,
                                    .layout = bc->layout,
                                    .eps = eps,
                                    .relu = relu,
                                    .threads = 2};
    ck_assert_int_eq(sila_blocked_bn_plan_new(&t->g), 0);
    t->n = bn_size(&t->d);
    t->nb = sila_layout_floats(bc->layout, bc->B, bc->C, bc->HW, 1);
    size_t w = sila_blocked_bn_work_floats(&t->g), wr = sila_relayout_work_floats(&t->r);
    t->work = falloc(w > wr ? w : wr);
    t->x = bn_input(&t->d, seed);
    t->xb = falloc(t->nb);
    sila_relayout_to(t->xb, t->x, &t->r, t->work);
    t->gamma = falloc(bc->C), t->beta = falloc(bc->C), t->rm = falloc(bc->C), t->rv = falloc(bc->C);
    t->rm0 = falloc(bc->C), t->rv0 = falloc(bc->C);
    for (int c = 0; c < bc->C; c++) {
        t->gamma[c] = bn_gamma(c);
        t->beta[c] = bn_beta(c);
        t->rm[c] = t->rm0[c] = 0.5f - 0.75f * c;
        t->rv[c] = t->rv0[c] = 1.0f + 0.5f * c;
    }
}

static void bbn_close(struct bbn *t)
{
    sila_relayout_plan_free(&t->r);
    sila_blocked_bn_plan_free(&t->g);
    free(t->x), free(t->xb), free(t->gamma), free(t->beta), free(t->rm), free(t->rv);
    free(t->rm0), free(t->rv0), free(t->work);
}

/* yb (blocked) in NCHW, its padding checked to be zero. */
static float *bbn_plain(struct bbn *t, const float *yb, const char *what)
{
    float *y = falloc(t->n);
    sila_relayout_from(y, yb, &t->r, t->work);
    assert_blocked(yb, y, t->bc, what);
    return y;
}

START_TEST(test_blocked_bn_train)
{
    /* Train mode on the layout, with and without the fused ReLU: the batch
     * mean and BIASED variance saved, PyTorch's running update with the
     * unbiased one, each output gamma·(x-m)/sqrt(v+eps) + beta (then
     * ReLU), against double references. */
    const float momentum = 0.1f, eps = 1e-5f;
    for (int relu = 0; relu < 2; relu++) {
        struct bbn t;
        bbn_open(&t, &blocked_cases[_i], relu, eps, 1410 + (uint64_t)_i);
        const int C = t.d.C;
        const double n = (double)t.d.B * t.d.HW;
        float *yb = falloc(t.nb), *mean = falloc(C), *var = falloc(C);
        void *mask = calloc(sila_blocked_bn_mask_bytes(&t.g) + 1, 1);
        ck_assert(relu ? sila_blocked_bn_mask_bytes(&t.g) > 0
                       : sila_blocked_bn_mask_bytes(&t.g) == 0);
        fill_const(yb, t.nb, NAN);
        sila_blocked_bn_forward_train(yb, mean, var, relu ? mask : NULL, t.rm, t.rv, t.xb, t.gamma,
                                      t.beta, momentum, &t.g, t.work);
        float *y = bbn_plain(&t, yb, "bn out");
        for (int c = 0; c < C; c++) {
            double m, v;
            ref_stats(t.x, &t.d, c, &m, &v);
            ck_assert_double_le(fabs(mean[c] - m), 1e-6 * (fabs(m) + 1.0));
            ck_assert_double_le(fabs(var[c] - v), 1e-5 * v);
            double want_rm = (1.0 - momentum) * t.rm0[c] + momentum * m;
            double want_rv = (1.0 - momentum) * t.rv0[c] + momentum * v * n / (n - 1);
            ck_assert_msg(fabs(t.rm[c] - want_rm) <= 1e-6 * (1.0 + fabs(want_rm)),
                          "running_mean[%d] = %.9g, want %.9g", c, t.rm[c], want_rm);
            ck_assert_msg(fabs(t.rv[c] - want_rv) <= 1e-5 * want_rv,
                          "running_var[%d] = %.9g, want %.9g", c, t.rv[c], want_rv);
            for (int b = 0; b < t.d.B; b++)
                for (int i = 0; i < t.d.HW; i++) {
                    size_t k = ((size_t)b * C + c) * t.d.HW + i;
                    double want = t.gamma[c] * (t.x[k] - m) / sqrt(v + eps) + t.beta[c];
                    if (relu && want < 0.0)
                        want = 0.0;
                    expect(fabs(y[k] - want) <= 1e-5 * (fabs(want) + fabs(t.gamma[c]) + 1.0),
                           "relu %d out[%zu] = %.9g, want %.9g", relu, k, y[k], want);
                }
        }
        free(yb), free(mean), free(var), free(mask), free(y);
        bbn_close(&t);
    }
}
END_TEST

START_TEST(test_blocked_bn_eval)
{
    /* Eval mode normalises with the running statistics (then ReLU) and
     * leaves them as they are. */
    const float eps = 1e-3f;
    for (int relu = 0; relu < 2; relu++) {
        struct bbn t;
        bbn_open(&t, &blocked_cases[_i], relu, eps, 1420 + (uint64_t)_i);
        const int C = t.d.C;
        float *yb = falloc(t.nb);
        fill_const(yb, t.nb, NAN);
        sila_blocked_bn_forward_eval(yb, t.xb, t.gamma, t.beta, t.rm, t.rv, &t.g, t.work);
        float *y = bbn_plain(&t, yb, "bn eval out");
        for (size_t k = 0; k < t.n; k++) {
            int c = (int)((k / t.d.HW) % C);
            double want =
                t.gamma[c] * (t.x[k] - (double)t.rm[c]) / sqrt((double)t.rv[c] + eps) + t.beta[c];
            if (relu && want < 0.0)
                want = 0.0;
            expect(fabs(y[k] - want) <= 1e-5 * (fabs(want) + 1.0), "out[%zu] = %.9g, want %.9g", k,
                   y[k], want);
        }
        ck_assert_mem_eq(t.rm, t.rm0, sizeof *t.rm * C);
        ck_assert_mem_eq(t.rv, t.rv0, sizeof *t.rv * C);
        free(yb), free(y);
        bbn_close(&t);
    }
}
END_TEST

START_TEST(test_blocked_bn_backward)
{
    /* dgamma = Σ g·x̂ and dbeta = Σ g (accumulated), din = γ/σ·(g - mean(g)
     * - x̂·mean(g·x̂)), with g = dy, or dy where the ReLU's output is
     * positive when it is fused; without dgamma and dbeta the same din. */
    const double eps = 1e-5;
    for (int relu = 0; relu < 2; relu++) {
        struct bbn t;
        bbn_open(&t, &blocked_cases[_i], relu, (float)eps, 1430 + (uint64_t)_i);
        const int C = t.d.C;
        const double n = (double)t.d.B * t.d.HW;
        float *yb = falloc(t.nb), *mean = falloc(C), *var = falloc(C), *dy = falloc(t.n);
        float *dyb = falloc(t.nb), *dxb = falloc(t.nb), *dxb2 = falloc(t.nb);
        float *dg = falloc(C), *dbt = falloc(C);
        void *mask = calloc(sila_blocked_bn_mask_bytes(&t.g) + 1, 1);
        fill_const(dg, C, 0.25f);
        fill_const(dbt, C, -0.5f);
        fill_normal(dy, t.n, 1.0f, 1431 + (uint64_t)_i);
        sila_relayout_to(dyb, dy, &t.r, t.work);
        sila_blocked_bn_forward_train(yb, mean, var, mask, t.rm, t.rv, t.xb, t.gamma, t.beta, 0.1f,
                                      &t.g, t.work);
        float *y = bbn_plain(&t, yb, "bn out");
        fill_const(dxb, t.nb, NAN);
        sila_blocked_bn_backward(dxb, dg, dbt, dyb, t.xb, mean, var, mask, t.gamma, t.beta, &t.g,
                                 t.work);
        sila_blocked_bn_backward(dxb2, NULL, NULL, dyb, t.xb, mean, var, mask, t.gamma, t.beta,
                                 &t.g, t.work);
        ck_assert_mem_eq(dxb2, dxb, sizeof *dxb * t.nb);
        float *dx = bbn_plain(&t, dxb, "bn din");
        for (int c = 0; c < C; c++) {
            double m, v, sg = 0.0, sb = 0.0, ag = 0.0, ab = 0.0;
            ref_stats(t.x, &t.d, c, &m, &v);
            double is = 1.0 / sqrt(v + eps);
            for (int b = 0; b < t.d.B; b++)
                for (int i = 0; i < t.d.HW; i++) {
                    size_t k = ((size_t)b * C + c) * t.d.HW + i;
                    double g = relu && y[k] <= 0.0f ? 0.0 : dy[k], xh = (t.x[k] - m) * is;
                    sg += g * xh;
                    ag += fabs(g * xh);
                    sb += g;
                    ab += fabs(g);
                }
            ck_assert_double_le(fabs(dg[c] - 0.25 - sg), 1e-5 * ag + 1e-6);
            ck_assert_double_le(fabs(dbt[c] + 0.5 - sb), 1e-5 * ab + 1e-6);
            for (int b = 0; b < t.d.B; b++)
                for (int i = 0; i < t.d.HW; i++) {
                    size_t k = ((size_t)b * C + c) * t.d.HW + i;
                    double g = relu && y[k] <= 0.0f ? 0.0 : dy[k], xh = (t.x[k] - m) * is;
                    double want = t.gamma[c] * is * (g - sb / n - xh * sg / n);
                    double scale = fabs(t.gamma[c]) * is * (fabs(g) + ab / n + fabs(xh) * ag / n);
                    expect(fabs(dx[k] - want) <= 1e-5 * scale + 1e-7,
                           "relu %d din[%zu] = %.9g, want %.9g", relu, k, dx[k], want);
                }
        }
        free(yb), free(mean), free(var), free(dy), free(dyb), free(dxb), free(dxb2), free(dg);
        free(dbt), free(mask), free(y), free(dx);
        bbn_close(&t);
    }
}
END_TEST

/* ---- residual block -------------------------------------------------------------- */

struct bound_net {
    struct sila_net *net;
    float *params, *grads, *buffers;
    size_t np, nb;
};

static void open_net(struct bound_net *bn, const struct sila_layer_spec *specs, int n,
                     struct sila_shape in, int max_batch)
{
    struct sila_err err = {{0}};
    int r = sila_net_new(&bn->net, specs, n, in, max_batch, &err);
    ck_assert_msg(r == 0, "sila_net_new: %d %s", r, err.msg);
    bn->np = sila_net_param_count(bn->net);
    bn->nb = sila_net_buffer_count(bn->net);
    bn->params = falloc(bn->np);
    bn->grads = falloc(bn->np);
    bn->buffers = falloc(bn->nb);
    sila_net_bind(bn->net, bn->params, bn->grads, bn->buffers);
}

static void close_net(struct bound_net *bn)
{
    sila_net_free(bn->net);
    free(bn->params), free(bn->grads), free(bn->buffers);
}

static struct sila_layer_spec spec(enum sila_layer_kind kind, int out, float p)
{
    struct sila_layer_spec s = sila_layer_spec_default(kind);
    s.out = out;
    s.p = p;
    return s;
}

/* The tensor called `name` (PyTorch state_dict naming) in its block. */
static float *tensor(const struct bound_net *bn, const char *name, size_t n)
{
    for (int i = 0; i < sila_net_tensor_count(bn->net); i++) {
        const struct sila_tensor *t = sila_net_tensor(bn->net, i);
        if (strcmp(t->name, name) == 0) {
            ck_assert_uint_eq(t->n, n);
            return (sila_tensor_is_buffer(t) ? bn->buffers : bn->params) + t->offset;
        }
    }
    ck_abort_msg("no tensor %s", name);
    return NULL;
}

/* Batch norm of x (B, C, HW) in double: batch statistics in train mode,
 * running ones in eval mode. In train mode, ret_run (2C) receives the
 * running mean and variance the forward pass should leave (momentum 0.1,
 * the unbiased batch variance). */
static void ref_bn(double *y, double *ret_run, const double *x, int B, int C, int HW,
                   const struct bound_net *bn, const char *prefix, bool train, double eps)
{
    char name[64];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const float *gamma = tensor(bn, name, C);
    snprintf(name, sizeof name, "%s.bias", prefix);
    const float *beta = tensor(bn, name, C);
    snprintf(name, sizeof name, "%s.running_mean", prefix);
    const float *rm = tensor(bn, name, C);
    snprintf(name, sizeof name, "%s.running_var", prefix);
    const float *rv = tensor(bn, name, C);
    for (int c = 0; c < C; c++) {
        double m = 0.0, v = 0.0, n = (double)B * HW;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++)
                m += x[((size_t)b * C + c) * HW + i] / n;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                double e = x[((size_t)b * C + c) * HW + i] - m;
                v += e * e / n;
            }
        if (train) {
            ret_run[c] = 0.9 * rm[c] + 0.1 * m;
            ret_run[C + c] = 0.9 * rv[c] + 0.1 * v * n / (n - 1);
        } else {
            m = rm[c], v = rv[c];
        }
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                size_t k = ((size_t)b * C + c) * HW + i;
                y[k] = gamma[c] * (x[k] - m) / sqrt(v + eps) + beta[c];
            }
    }
}

struct block_case {
    int B, C, H, W, out, stride;
};

/* identity; projection for stride 2 with a channel change; projection for
 * the channel change alone; projection for stride 2 alone; then the
 * ResNet's blocks, whose channels fill the blocked layouts' blocks */
static const struct block_case block_cases[] = {
    {2, 4, 5, 5, 4, 1}, {2, 3, 6, 5, 6, 2},   {3, 3, 4, 4, 5, 1},
    {2, 4, 7, 6, 4, 2}, {2, 16, 6, 5, 16, 1}, {2, 16, 7, 7, 32, 2},
};

/* The running statistics of batch norm `prefix` (C channels) are `want`
 * (2C: means, variances). */
static void assert_running(const struct bound_net *bn, const char *prefix, const double *want,
                           int C)
{
    char name[64];
    snprintf(name, sizeof name, "%s.running_mean", prefix);
    const float *rm = tensor(bn, name, C);
    snprintf(name, sizeof name, "%s.running_var", prefix);
    const float *rv = tensor(bn, name, C);
    for (int c = 0; c < C; c++) {
        expect(fabs(rm[c] - want[c]) <= 1e-4 * (1.0 + fabs(want[c])),
               "%s.running_mean[%d] = %.7g, want %.7g", prefix, c, rm[c], want[c]);
        expect(fabs(rv[c] - want[C + c]) <= 1e-4 * want[C + c],
               "%s.running_var[%d] = %.7g, want %.7g", prefix, c, rv[c], want[C + c]);
    }
}

START_TEST(test_block_forward)
{
    /* y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), conv1 3x3
     * stride s pad 1, conv2 3x3, shortcut x or bn(conv1x1 stride s), no
     * biases, in train (batch statistics, then the running statistics
     * updated) and eval (running statistics) mode, against the same
     * formula in double. */
    const struct block_case *bc = &block_cases[_i];
    const struct sila_layer_spec s = {.kind = SILA_LAYER_BLOCK,
                                      .out = bc->out,
                                      .stride = bc->stride,
                                      .bn_momentum = 0.1f,
                                      .bn_eps = 1e-3f};
    const struct sila_shape in = {bc->C, bc->H, bc->W};
    struct bound_net bn;
    open_net(&bn, &s, 1, in, bc->B);
    struct sila_rng r;
    sila_rng_seed(&r, 1300 + (uint64_t)_i, 0);
    sila_net_init_params(bn.net, &r);
    for (size_t i = 0; i < bn.np; i++) /* gammas and betas too */
        bn.params[i] += 0.2f * sila_rng_normal(&r);
    for (size_t i = 0; i < bn.nb; i++) /* running means and (positive) variances */
        bn.buffers[i] = 0.5f + sila_rng_uniform(&r);
    const bool proj = bc->stride != 1 || bc->out != bc->C;
    struct sila_conv_geom g1, g2, gs;
    ck_assert_int_eq(
        sila_conv_geom_init(&g1, bc->B, bc->C, bc->H, bc->W, bc->out, 3, bc->stride, 1), 0);
    ck_assert_int_eq(sila_conv_geom_init(&g2, bc->B, bc->out, g1.OH, g1.OW, bc->out, 3, 1, 1), 0);
    ck_assert_int_eq(
        sila_conv_geom_init(&gs, bc->B, bc->C, bc->H, bc->W, bc->out, 1, bc->stride, 0), 0);
    const struct sila_shape out = sila_net_out_shape(bn.net);
    ck_assert_int_eq(out.c, bc->out);
    ck_assert_int_eq(out.h, g1.OH);
    ck_assert_int_eq(out.w, g1.OW);
    const int hw = g1.OH * g1.OW;
    const size_t nx = (size_t)bc->B * bc->C * bc->H * bc->W, ny = (size_t)bc->B * bc->out * hw;
    float *x = falloc(nx);
    fill_normal(x, nx, 1.0f, 1310 + (uint64_t)_i);
    double *xd = dalloc(nx), *h = dalloc(ny), *a = dalloc(ny), *sc = dalloc(ny), *abs = dalloc(ny);
    double *run1 = dalloc(2 * bc->out), *run2 = dalloc(2 * bc->out), *runs = dalloc(2 * bc->out);
    for (size_t i = 0; i < nx; i++)
        xd[i] = x[i];
    for (int mode = 0; mode < 2; mode++) {
        bool train = mode == 0;
        ref_conv_forward(h, abs, xd, tensor(&bn, "0.conv1.weight", (size_t)bc->out * bc->C * 9),
                         NULL, &g1);
        ref_bn(a, run1, h, bc->B, bc->out, hw, &bn, "0.bn1", train, 1e-3);
        for (size_t i = 0; i < ny; i++)
            a[i] = a[i] > 0.0 ? a[i] : 0.0;
        ref_conv_forward(h, abs, a, tensor(&bn, "0.conv2.weight", (size_t)bc->out * bc->out * 9),
                         NULL, &g2);
        ref_bn(a, run2, h, bc->B, bc->out, hw, &bn, "0.bn2", train, 1e-3);
        if (proj) {
            ref_conv_forward(
                h, abs, xd, tensor(&bn, "0.shortcut.0.weight", (size_t)bc->out * bc->C), NULL, &gs);
            ref_bn(sc, runs, h, bc->B, bc->out, hw, &bn, "0.shortcut.1", train, 1e-3);
        } else {
            ck_assert_int_eq(sila_net_tensor_count(bn.net), 10); /* no shortcut tensors */
            memcpy(sc, xd, sizeof *sc * ny);
        }
        const float *y = sila_net_forward(bn.net, x, bc->B, train, NULL);
        for (size_t i = 0; i < ny; i++) {
            double want = a[i] + sc[i] > 0.0 ? a[i] + sc[i] : 0.0;
            expect(fabs(y[i] - want) <= 1e-4 * (1.0 + fabs(want)), "%s out[%zu] = %.7g, want %.7g",
                   train ? "train" : "eval", i, y[i], want);
        }
        if (!train)
            continue;
        assert_running(&bn, "0.bn1", run1, bc->out);
        assert_running(&bn, "0.bn2", run2, bc->out);
        if (proj)
            assert_running(&bn, "0.shortcut.1", runs, bc->out);
    }
    free(x), free(xd), free(h), free(a), free(sc), free(abs), free(run1), free(run2), free(runs);
    close_net(&bn);
}
END_TEST

/* ---- dropout and drop-path ------------------------------------------------------- */

static const float drop_ps[] = {0.1f, 0.3f, 0.5f, 0.9f};

START_TEST(test_dropout)
{
    enum { N = 200000 };
    const float p = drop_ps[_i];
    float *x = falloc(N), *y = falloc(N), *mask = falloc(N), *dy = falloc(N), *dx = falloc(N);
    fill_normal(x, N, 1.0f, 900);
    fill_normal(dy, N, 1.0f, 901);
    struct sila_rng r;
    sila_rng_seed(&r, 902 + (uint64_t)_i, 0);
    sila_dropout_forward(y, mask, x, N, p, &r);
    const double keep = 1.0 / (1.0 - p);
    size_t kept = 0;
    for (size_t i = 0; i < N; i++) {
        expect(mask[i] == 0.0f || fabs(mask[i] - keep) <= 2 * U32 * keep, "mask[%zu] = %g", i,
               mask[i]);
        double want = mask[i] == 0.0f ? 0.0 : x[i] * keep;
        expect(fabs(y[i] - want) <= 4 * U32 * fabs(want), "out[%zu] = %g, want %g", i, y[i], want);
        kept += mask[i] != 0.0f;
    }
    double frac = (double)kept / N, sd = sqrt(p * (1.0 - p) / N);
    ck_assert_msg(fabs(frac - (1.0 - p)) <= 5 * sd, "kept %.5f, want %.5f ± %.5f", frac, 1.0 - p,
                  5 * sd);
    /* neighbours independent: both of a pair dropped with probability p² */
    size_t both = 0;
    for (size_t i = 0; i + 1 < N; i += 2)
        both += mask[i] == 0.0f && mask[i + 1] == 0.0f;
    double pair = (double)both / (N / 2), psd = sqrt(p * p * (1.0 - p * p) / (N / 2));
    ck_assert_msg(fabs(pair - p * p) <= 5 * psd, "pairs dropped %.5f, want %.5f ± %.5f", pair,
                  p * p, 5 * psd);
    /* backward: dout times the mask; in place */
    sila_dropout_backward(dx, dy, mask, N);
    for (size_t i = 0; i < N; i++)
        expect(dx[i] == dy[i] * mask[i], "din[%zu] = %g, want %g", i, dx[i], dy[i] * mask[i]);
    sila_dropout_backward(dy, dy, mask, N);
    ck_assert_mem_eq(dy, dx, sizeof *dx * N);
    /* same seed, same mask, even in place; another seed, another mask */
    float *y2 = falloc(N), *mask2 = falloc(N);
    memcpy(y2, x, sizeof *x * N);
    sila_rng_seed(&r, 902 + (uint64_t)_i, 0);
    sila_dropout_forward(y2, mask2, y2, N, p, &r);
    ck_assert_mem_eq(mask2, mask, sizeof *mask * N);
    ck_assert_mem_eq(y2, y, sizeof *y * N);
    sila_rng_seed(&r, 999, 0);
    sila_dropout_forward(y2, mask2, x, N, p, &r);
    ck_assert_int_ne(memcmp(mask2, mask, sizeof *mask * N), 0);
    free(x), free(y), free(mask), free(dy), free(dx), free(y2), free(mask2);
}
END_TEST

START_TEST(test_dropout_p0)
{
    enum { N = 1000 };
    float x[N], y[N], mask[N];
    fill_normal(x, N, 1.0f, 910);
    struct sila_rng r;
    sila_rng_seed(&r, 911, 0);
    sila_dropout_forward(y, mask, x, N, 0.0f, &r);
    ck_assert_mem_eq(y, x, sizeof x);
}
END_TEST

START_TEST(test_droppath)
{
    enum { B = 4000, PER = 6 };
    const float p = drop_ps[_i];
    float *x = falloc(B * PER), *y = falloc(B * PER), *dy = falloc(B * PER), *dx = falloc(B * PER);
    float keep[B];
    fill_normal(x, B * PER, 1.0f, 920);
    fill_normal(dy, B * PER, 1.0f, 921);
    struct sila_rng r;
    sila_rng_seed(&r, 922 + (uint64_t)_i, 0);
    sila_droppath_forward(y, keep, x, B, PER, p, &r);
    const double scale = 1.0 / (1.0 - p);
    int kept = 0;
    for (int b = 0; b < B; b++) {
        expect(keep[b] == 0.0f || fabs(keep[b] - scale) <= 2 * U32 * scale, "keep[%d] = %g", b,
               keep[b]);
        kept += keep[b] != 0.0f;
        /* the whole sample is dropped or kept and scaled */
        for (int i = 0; i < PER; i++) {
            double want = keep[b] == 0.0f ? 0.0 : x[b * PER + i] * scale;
            expect(fabs(y[b * PER + i] - want) <= 4 * U32 * fabs(want),
                   "sample %d [%d] = %g, want %g", b, i, y[b * PER + i], want);
        }
    }
    double frac = (double)kept / B, sd = sqrt(p * (1.0 - p) / B);
    ck_assert_msg(fabs(frac - (1.0 - p)) <= 5 * sd, "kept %.4f, want %.4f ± %.4f", frac, 1.0 - p,
                  5 * sd);
    sila_droppath_backward(dx, dy, keep, B, PER);
    for (int i = 0; i < B * PER; i++)
        expect(dx[i] == dy[i] * keep[i / PER], "din[%d] = %g", i, dx[i]);
    free(x), free(y), free(dy), free(dx);
}
END_TEST

/* ---- nets in eval mode ------------------------------------------------------------ */

START_TEST(test_net_eval_deterministic)
{
    /* The same net with and without its dropout/drop-path: identical
     * parameter layouts, and identical eval outputs, whatever the rng (even
     * NULL), while the running statistics stay untouched. */
    struct sila_layer_spec conv = spec(SILA_LAYER_CONV2D, 4, 0.0f);
    conv.pad = 1;
    struct sila_layer_spec down = spec(SILA_LAYER_BLOCK, 6, 0.3f), down0 = down;
    down.stride = down0.stride = 2;
    down0.p = 0.0f;
    const struct sila_layer_spec with[] = {
        conv,
        spec(SILA_LAYER_BATCHNORM, 0, 0.0f),
        spec(SILA_LAYER_RELU, 0, 0.0f),
        spec(SILA_LAYER_DROPOUT, 0, 0.5f),
        spec(SILA_LAYER_BLOCK, 4, 0.3f),
        down,
        spec(SILA_LAYER_DROPPATH, 0, 0.4f),
        spec(SILA_LAYER_GAP, 0, 0.0f),
        spec(SILA_LAYER_FLATTEN, 0, 0.0f),
        spec(SILA_LAYER_LINEAR, 5, 0.0f),
        spec(SILA_LAYER_DROPOUT, 0, 0.4f),
    };
    const struct sila_layer_spec without[] = {
        with[0], with[1], with[2], spec(SILA_LAYER_BLOCK, 4, 0.0f),
        down0,   with[7], with[8], with[9],
    };
    enum { B = 3 };
    const struct sila_shape in = {3, 6, 6};
    struct bound_net a, b;
    open_net(&a, with, 11, in, B);
    open_net(&b, without, 8, in, B);
    ck_assert_uint_eq(a.np, b.np);
    ck_assert_uint_eq(a.nb, b.nb);
    struct sila_rng r;
    sila_rng_seed(&r, 1000, 0);
    sila_net_init_params(a.net, &r);
    float x[B * 3 * 6 * 6];
    fill_normal(x, B * 3 * 6 * 6, 1.0f, 1001);
    for (int i = 0; i < 3; i++) /* move the running statistics off 0 and 1 */
        sila_net_forward(a.net, x, B, true, &r);
    memcpy(b.params, a.params, sizeof *a.params * a.np);
    memcpy(b.buffers, a.buffers, sizeof *a.buffers * a.nb);
    float *saved = falloc(a.nb);
    memcpy(saved, a.buffers, sizeof *saved * a.nb);

    const size_t ny = B * 5;
    float ya[B * 5], yb[B * 5], y2[B * 5];
    memcpy(yb, sila_net_forward(b.net, x, B, false, NULL), sizeof yb);
    sila_rng_seed(&r, 1, 0);
    memcpy(ya, sila_net_forward(a.net, x, B, false, &r), sizeof ya);
    sila_rng_seed(&r, 2, 0);
    memcpy(y2, sila_net_forward(a.net, x, B, false, &r), sizeof y2);
    ck_assert_mem_eq(ya, y2, sizeof ya);
    ck_assert_mem_eq(ya, yb, sizeof ya);
    memcpy(y2, sila_net_forward(a.net, x, B, false, NULL), sizeof y2);
    ck_assert_mem_eq(ya, y2, sizeof ya);
    ck_assert_mem_eq(a.buffers, saved, sizeof *saved * a.nb);
    /* and train mode does draw masks: two seeds, two outputs */
    sila_rng_seed(&r, 1, 0);
    memcpy(y2, sila_net_forward(a.net, x, B, true, &r), sizeof y2);
    sila_rng_seed(&r, 2, 0);
    const float *y3 = sila_net_forward(a.net, x, B, true, &r);
    ck_assert_int_ne(memcmp(y2, y3, sizeof *y3 * ny), 0);
    free(saved);
    close_net(&a);
    close_net(&b);
}
END_TEST

START_TEST(test_net_bn_running_stats)
{
    /* A batch-norm net: three train batches update the running statistics
     * as PyTorch does (momentum 0.2, unbiased variance); eval then uses them. */
    const struct bn_dims *d = &bn_cases[0];
    const int C = d->C;
    const size_t N = bn_size(d);
    struct sila_layer_spec bn = spec(SILA_LAYER_BATCHNORM, 0, 0.0f);
    bn.bn_momentum = 0.2f;
    bn.bn_eps = 1e-4f;
    const struct sila_shape in = {C, 5, 6};
    ck_assert_int_eq(d->HW, 30);
    struct bound_net net;
    open_net(&net, &bn, 1, in, d->B);
    ck_assert_uint_eq(net.np, 2 * C);
    ck_assert_uint_eq(net.nb, 2 * C);
    struct sila_rng r;
    sila_rng_seed(&r, 1100, 0);
    sila_net_init_params(net.net, &r);
    size_t g_off = 0, b_off = 0, m_off = 0, v_off = 0;
    for (int i = 0; i < sila_net_tensor_count(net.net); i++) {
        const struct sila_tensor *t = sila_net_tensor(net.net, i);
        size_t *off = t->role == SILA_TENSOR_BN_GAMMA       ? &g_off
                      : t->role == SILA_TENSOR_BN_BETA      ? &b_off
                      : t->role == SILA_TENSOR_RUNNING_MEAN ? &m_off
                                                            : &v_off;
        *off = t->offset;
    }
    for (int c = 0; c < C; c++) { /* PyTorch's initial values */
        ck_assert_float_eq(net.params[g_off + c], 1.0f);
        ck_assert_float_eq(net.params[b_off + c], 0.0f);
        ck_assert_float_eq(net.buffers[m_off + c], 0.0f);
        ck_assert_float_eq(net.buffers[v_off + c], 1.0f);
        net.params[g_off + c] = 0.5f + c;
        net.params[b_off + c] = 1.0f - c;
    }
    double rm[8], rv[8];
    for (int c = 0; c < C; c++)
        rm[c] = 0.0, rv[c] = 1.0;
    const double n = (double)d->B * d->HW;
    for (int step = 0; step < 3; step++) {
        float *x = bn_input(d, 1101 + (uint64_t)step);
        sila_net_forward(net.net, x, d->B, true, NULL);
        for (int c = 0; c < C; c++) {
            double m, v;
            ref_stats(x, d, c, &m, &v);
            rm[c] = 0.8 * rm[c] + 0.2 * m;
            rv[c] = 0.8 * rv[c] + 0.2 * v * n / (n - 1);
        }
        free(x);
    }
    for (int c = 0; c < C; c++) {
        ck_assert_msg(fabs(net.buffers[m_off + c] - rm[c]) <= 1e-5 * (1.0 + fabs(rm[c])),
                      "running_mean[%d] = %.9g, want %.9g", c, net.buffers[m_off + c], rm[c]);
        ck_assert_msg(fabs(net.buffers[v_off + c] - rv[c]) <= 1e-5 * rv[c],
                      "running_var[%d] = %.9g, want %.9g", c, net.buffers[v_off + c], rv[c]);
    }
    float *x = bn_input(d, 1200);
    const float *y = sila_net_forward(net.net, x, d->B, false, NULL);
    for (size_t k = 0; k < N; k++) {
        int c = (int)((k / d->HW) % C);
        double want = (0.5 + c) * (x[k] - rm[c]) / sqrt(rv[c] + 1e-4) + (1.0 - c);
        expect(fabs(y[k] - want) <= 1e-4 * (fabs(want) + 1.0), "eval out[%zu] = %.9g, want %.9g", k,
               y[k], want);
    }
    free(x);
    close_net(&net);
}
END_TEST

/* Every kind has a whole descriptor: the job reader finds it by its name,
 * model files by its proto kind, a net builds and runs it, and a key it
 * requires is one it takes. */
START_TEST(test_layer_descriptors)
{
    for (int k = SILA_LAYER_LINEAR; k <= SILA_LAYER_KIND_MAX; k++) {
        const struct sila_layer_desc *d = sila_layer_desc((enum sila_layer_kind)k);
        ck_assert_msg(d && d->name && d->build && d->forward && d->backward, "kind %d", k);
        enum sila_layer_kind back = 0;
        ck_assert_int_eq(sila_layer_kind_parse(d->name, &back), 0);
        ck_assert_int_eq(back, k);
        back = 0;
        ck_assert_int_eq(sila_layer_kind_from_proto(d->proto_kind, &back), 0);
        ck_assert_int_eq(back, k);
        ck_assert_int_eq(d->defaults.kind, k);
        ck_assert_uint_eq(d->required & ~d->keys, 0);
    }
    ck_assert_ptr_null(sila_layer_desc(0));
    ck_assert_ptr_null(sila_layer_desc((enum sila_layer_kind)(SILA_LAYER_KIND_MAX + 1)));
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 60); /* test_conv_jobs takes ~1 s, minutes under valgrind */
    tcase_add_test(tc, test_conv_geom);
    tcase_add_loop_test(tc, test_conv_small, 0, (int)(sizeof conv_cases / sizeof conv_cases[0]));
    tcase_add_loop_test(tc, test_conv_jobs, 0, (int)(sizeof job_cases / sizeof job_cases[0]));
    tcase_add_test(tc, test_conv_batch_below_plan);

    tcase_add_test(tc, test_pool_geom);
    tcase_add_loop_test(tc, test_maxpool, 0, (int)(sizeof pool_cases / sizeof pool_cases[0]));
    tcase_add_loop_test(tc, test_avgpool, 0, (int)(sizeof pool_cases / sizeof pool_cases[0]));
    tcase_add_test(tc, test_avgpool_counts_padding);
    tcase_add_test(tc, test_gap);
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_relu);
    tcase_add_loop_test(tc, test_bn_train, 0, (int)(sizeof bn_cases / sizeof bn_cases[0]));
    tcase_add_loop_test(tc, test_bn_eval, 0, (int)(sizeof bn_cases / sizeof bn_cases[0]));
    tcase_add_loop_test(tc, test_bn_backward, 0, (int)(sizeof bn_cases / sizeof bn_cases[0]));
    tcase_add_loop_test(tc, test_relayout, 0,
                        (int)(sizeof blocked_cases / sizeof blocked_cases[0]));
    tcase_add_loop_test(tc, test_conv_in_layouts, 0, (int)(sizeof job_cases / sizeof job_cases[0]));
    tcase_add_loop_test(tc, test_blocked_bn_train, 0,
                        (int)(sizeof blocked_cases / sizeof blocked_cases[0]));
    tcase_add_loop_test(tc, test_blocked_bn_eval, 0,
                        (int)(sizeof blocked_cases / sizeof blocked_cases[0]));
    tcase_add_loop_test(tc, test_blocked_bn_backward, 0,
                        (int)(sizeof blocked_cases / sizeof blocked_cases[0]));
    tcase_add_loop_test(tc, test_block_forward, 0,
                        (int)(sizeof block_cases / sizeof block_cases[0]));
    tcase_add_loop_test(tc, test_dropout, 0, 4);
    tcase_add_test(tc, test_dropout_p0);
    tcase_add_loop_test(tc, test_droppath, 0, 4);
    tcase_add_test(tc, test_net_eval_deterministic);
    tcase_add_test(tc, test_net_bn_running_stats);
    tcase_add_test(tc, test_layer_descriptors);
    suite_add_tcase(s, tc);
    return s;
}
