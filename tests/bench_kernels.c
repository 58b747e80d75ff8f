/* Benchmark: forward and backward speed of the kernel of every layer type,
 * against the machine's sgemm and memory bandwidth at the same thread count.
 *
 *   bench_kernels [--threads T] [--reps N] [--batch B]
 *
 * T: OpenMP threads of the kernels, set by sila_threads_setup(T) as silad
 * does (OpenBLAS single-threaded inside them); default as silad's. N:
 * repetitions (default 9). B: batch (default 128, the jobs' batch; smaller
 * only for a quick check that the program runs).
 *
 * References, measured first, at the same thread count:
 *   sgemm   T OpenMP threads, each multiplying its own 1024x1024 matrices
 *           with single-threaded cblas_sgemm (how sila's kernels use it):
 *           the sum of their GFLOP/s. Every layer's "of sgemm" is its
 *           fwd+bwd GFLOP/s over this. OpenBLAS's own T threads on one
 *           1024^3 product (the reference of the first version of this
 *           benchmark, bench_conv) are printed for information.
 *   stream  a[i] = b[i] + s*c[i] over three 32 MB arrays shared among T
 *           threads: 12 bytes per element (two reads, one write; write
 *           allocation not counted). Measured at the start and again right
 *           before each memory-bound layer, whose "of stream" is its
 *           fwd+bwd GB/s over the triad measured before it: on a shared
 *           host the triad has read anything from 51 to 88 GB/s within an
 *           hour, so a reference taken minutes earlier misjudged the rows
 *           by as much (the range of the rows' triads is printed at the
 *           end). Tensors at batch 128 are 1.6 to 13 MB, so they can stay
 *           partly in the last-level cache and exceed it.
 *
 * Layers: every conv shape of deploy/jobs/fmnist-cnn-k4.ini and every 3x3
 * and 1x1 conv shape of fmnist-resnet-k8.ini; the linear layers of
 * fmnist-mlp.ini and the CNN's classifier; batch norm (train mode), ReLU,
 * max pool, average pool and global average pool at the shapes where these
 * jobs (or their aux heads) use them; dropout and drop-path (p = 0.1). For
 * the ResNet's blocks, whose inner tensors are channel-blocked (the layout
 * the block's 3x3 convolution picks, "blocked" in the table): batch norm,
 * alone (bn2, the projection's) and with its ReLU fused (bn1), and the
 * reorders at a block's edges (fwd: NCHW to blocked, bwd: back); their
 * convolutions, stem excepted, run on that layout with no reorder, as in
 * training ("block's layout" in the table).
 * A network's first layer does not compute its input gradient, as in
 * training; those rows say "no dX".
 *
 * FLOP counting (per element n of the input, per output element o, B the
 * batch; additions, multiplications and comparisons count 1 each, a
 * multiply-add 2):
 *   conv2d   each product 2*B*OC*OH*OW*C*K*K; fwd: the output; bwd: dW and,
 *            unless "no dX", dX (bias terms not counted)
 *   linear   each product 2*B*IN*OUT; fwd: the output; bwd: dW and, unless
 *            "no dX", dX (bias terms not counted)
 *   batchnorm fwd (train) 6n: sum 1, squared deviation 3, scale and shift 2
 *            (per-channel terms not counted); bwd 11n: the two sums 5,
 *            dX 6
 *   relu     fwd n (one compare-select), bwd n
 *   maxpool  fwd o*K*K comparisons, bwd o additions
 *   avgpool  fwd o*(K*K+1), bwd o*(K*K+1)
 *   gap      fwd n + planes, bwd planes (the backward pass is a broadcast)
 *   dropout, drop-path  fwd n multiplications (random draws not counted),
 *            bwd n
 *   reorder  none (its GFLOP/s read 0)
 * Bytes (memory-bound layers only): the compulsory traffic, each tensor a
 * kernel must read or write counted once at 4 bytes per element even when
 * the kernel passes over it several times (batch norm reads its input
 * three times): a lower bound of the real traffic.
 *   batchnorm fwd x, y; bwd dy, x, dx     relu fwd x, y; bwd dy, y, dx
 *            (with a fused ReLU the same: its bit mask not counted)
 *   reorder  fwd x, y; bwd y, x
 *   maxpool  fwd x, y, argmax; bwd dy, argmax, dx
 *   avgpool, gap  fwd x, y; bwd dy, dx
 *   dropout  fwd x, mask, y; bwd dy, mask, dx
 *   drop-path fwd x, y; bwd dy, dx
 *
 * Timing: one warm-up call of forward and backward, which also sets how
 * many calls one repetition makes (enough for about 2 ms, so that the
 * small kernels are not timed at the clock's resolution; one for the
 * convolutions); then N repetitions, each timing its forward calls and its
 * backward calls; medians over the N repetitions of the time per call.
 * The table is markdown; figures in GFLOP/s, GB/s and milliseconds. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "kernels.h"
#include "rng.h"
#include "threads.h"

#define MIN_REP_S 2e-3
#define MAX_INNER 10000

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (reorders v). */
static double median(double *v, int n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench_kernels: out of memory\n");
        exit(1);
    }
    return p;
}

/* n floats, aligned as training's tensors are (sila_floats_alloc). */
static float *xfloats(size_t n)
{
    float *p = sila_floats_alloc(n);
    if (!p) {
        fprintf(stderr, "bench_kernels: out of memory\n");
        exit(1);
    }
    return p;
}

static struct sila_rng rng;

/* n floats, uniform in [-1, 1). */
static float *random_floats(size_t n)
{
    float *x = xfloats(n);
    for (size_t i = 0; i < n; i++)
        x[i] = 2.0f * sila_rng_uniform(&rng) - 1.0f;
    return x;
}

static float *const_floats(size_t n, float v)
{
    float *x = xfloats(n);
    for (size_t i = 0; i < n; i++)
        x[i] = v;
    return x;
}

/* ---- references ---------------------------------------------------------- */

/* GFLOP/s of T threads, each running single-threaded sgemm on its own
 * n x n x n product at once (OpenBLAS must be single-threaded). */
static double sgemm_per_thread(int n, int threads, int reps)
{
    size_t nn = (size_t)n * n;
    float *a = random_floats(nn), *b = random_floats(nn), *c = random_floats(nn * threads);
    double *t = xmalloc(sizeof *t * reps);
    for (int r = -1; r < reps; r++) {
        double t0 = sila_clock_s();
#pragma omp parallel num_threads(threads)
        {
#pragma omp for schedule(static, 1)
            for (int i = 0; i < threads; i++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n,
                            0.0f, c + nn * i, n);
        }
        if (r >= 0)
            t[r] = sila_clock_s() - t0;
    }
    double g = threads * 2.0 * n * n * (double)n / median(t, reps) * 1e-9;
    free(a), free(b), free(c), free(t);
    return g;
}

/* GFLOP/s of one n x n x n sgemm call with OpenBLAS's current threads. */
static double sgemm_one(int n, int reps)
{
    size_t nn = (size_t)n * n;
    float *a = random_floats(nn), *b = random_floats(nn), *c = random_floats(nn);
    double *t = xmalloc(sizeof *t * reps);
    for (int r = -1; r < reps; r++) {
        double t0 = sila_clock_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        if (r >= 0)
            t[r] = sila_clock_s() - t0;
    }
    double g = 2.0 * n * n * (double)n / median(t, reps) * 1e-9;
    free(a), free(b), free(c), free(t);
    return g;
}

/* GB/s of a triad over three arrays of n floats, shared among the threads. */
static double stream_triad(size_t n, int reps)
{
    float *a = const_floats(n, 0.0f), *b = const_floats(n, 1.0f), *c = const_floats(n, 2.0f);
    double *t = xmalloc(sizeof *t * reps);
    for (int r = -1; r < reps; r++) {
        double t0 = sila_clock_s();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++)
            a[i] = b[i] + 0.5f * c[i];
        if (r >= 0)
            t[r] = sila_clock_s() - t0;
    }
    double g = 12.0 * n / median(t, reps) * 1e-9;
    if (a[n / 2] != 2.0f)
        fprintf(stderr, "bench_kernels: triad check failed\n");
    free(a), free(b), free(c), free(t);
    return g;
}

/* Seconds for a fixed scalar loop in each of n threads at once. */
static double spin_seconds(int n)
{
    double t0 = sila_clock_s();
#pragma omp parallel num_threads(n)
    {
        volatile double x = 0.0;
        for (long i = 0; i < 100000000L; i++)
            x += 1e-9;
    }
    return sila_clock_s() - t0;
}

/* ---- the cases ----------------------------------------------------------- */

/* Buffers of one case; which are used depends on the kind. */
struct ctx {
    int B, C, HW, IN, OUT;
    size_t n, per_sample;
    float p;
    struct sila_conv_geom cg;
    struct sila_pool_geom pg;
    struct sila_blocked_bn bbn; /* batch norm on the blocked layout */
    struct sila_relayout rl;    /* NCHW <-> blocked */
    void *bmask;                /* the fused ReLU's */
    float *in, *out, *dout, *din, *w, *dw, *b, *db, *work;
    float *mean, *invstd, *run_mean, *run_var, *gamma, *beta, *dgamma, *dbeta, *mask;
    int32_t *argmax;
    int need_din;
};

static void conv_f(struct ctx *c)
{
    sila_conv2d_forward(c->out, c->in, c->w, NULL, &c->cg, c->work);
}
static void conv_b(struct ctx *c)
{
    sila_conv2d_backward(c->need_din ? c->din : NULL, c->dw, NULL, c->dout, c->in, c->w, &c->cg,
                         c->work);
}
static void linear_f(struct ctx *c)
{
    sila_linear_forward(c->out, c->in, c->w, c->b, c->B, c->IN, c->OUT);
}
static void linear_b(struct ctx *c)
{
    sila_linear_backward(c->need_din ? c->din : NULL, c->dw, c->db, c->dout, c->in, c->w, c->B,
                         c->IN, c->OUT);
}
static void bn_f(struct ctx *c)
{
    sila_bn_forward_train(c->out, c->mean, c->invstd, c->run_mean, c->run_var, c->in, c->gamma,
                          c->beta, 0.1f, 1e-5f, c->B, c->C, c->HW);
}
static void bn_b(struct ctx *c)
{
    sila_bn_backward(c->din, c->dgamma, c->dbeta, c->dout, c->in, c->mean, c->invstd, c->gamma,
                     c->B, c->C, c->HW);
}
static void bbn_f(struct ctx *c)
{
    sila_blocked_bn_forward_train(c->out, c->mean, c->invstd, c->bmask, c->run_mean, c->run_var,
                                  c->in, c->gamma, c->beta, 0.1f, &c->bbn, c->work);
}
static void bbn_b(struct ctx *c)
{
    sila_blocked_bn_backward(c->din, c->dgamma, c->dbeta, c->dout, c->in, c->mean, c->invstd,
                             c->bmask, c->gamma, c->beta, &c->bbn, c->work);
}
static void relayout_f(struct ctx *c)
{
    sila_relayout_to(c->out, c->in, &c->rl, c->work);
}
static void relayout_b(struct ctx *c)
{
    sila_relayout_from(c->in, c->out, &c->rl, c->work);
}
static void relu_f(struct ctx *c)
{
    sila_relu_forward(c->out, c->in, c->n);
}
static void relu_b(struct ctx *c)
{
    sila_relu_backward(c->din, c->dout, c->out, c->n);
}
static void maxpool_f(struct ctx *c)
{
    sila_maxpool_forward(c->out, c->argmax, c->in, &c->pg);
}
static void maxpool_b(struct ctx *c)
{
    sila_maxpool_backward(c->din, c->dout, c->argmax, &c->pg);
}
static void avgpool_f(struct ctx *c)
{
    sila_avgpool_forward(c->out, c->in, &c->pg);
}
static void avgpool_b(struct ctx *c)
{
    sila_avgpool_backward(c->din, c->dout, &c->pg);
}
static void gap_f(struct ctx *c)
{
    sila_gap_forward(c->out, c->in, c->B, c->C, c->HW);
}
static void gap_b(struct ctx *c)
{
    sila_gap_backward(c->din, c->dout, c->B, c->C, c->HW);
}
static void dropout_f(struct ctx *c)
{
    sila_dropout_forward(c->out, c->mask, c->in, c->n, c->p, &rng);
}
static void dropout_b(struct ctx *c)
{
    sila_dropout_backward(c->din, c->dout, c->mask, c->n);
}
static void droppath_f(struct ctx *c)
{
    sila_droppath_forward(c->out, c->mask, c->in, c->B, c->per_sample, c->p, &rng);
}
static void droppath_b(struct ctx *c)
{
    sila_droppath_backward(c->din, c->dout, c->mask, c->B, c->per_sample);
}

struct result {
    double tf, tb, tt;       /* median seconds per call: fwd, bwd, fwd+bwd */
    double flop_f, flop_b;   /* per call */
    double bytes_f, bytes_b; /* per call; 0: not a memory-bound layer */
    double stream;           /* GB/s of the triad run right before; memory-bound only */
};

static void time_case(struct ctx *c, void (*fwd)(struct ctx *), void (*bwd)(struct ctx *), int reps,
                      struct result *res)
{
    double t0 = sila_clock_s();
    fwd(c);
    bwd(c);
    double warm = sila_clock_s() - t0;
    int inner = warm >= MIN_REP_S ? 1 : (int)ceil(MIN_REP_S / (warm > 1e-7 ? warm : 1e-7));
    if (inner > MAX_INNER)
        inner = MAX_INNER;
    double *tf = xmalloc(sizeof *tf * reps * 3), *tb = tf + reps, *tt = tb + reps;
    for (int r = 0; r < reps; r++) {
        double a = sila_clock_s();
        for (int i = 0; i < inner; i++)
            fwd(c);
        double m = sila_clock_s();
        for (int i = 0; i < inner; i++)
            bwd(c);
        double e = sila_clock_s();
        tf[r] = (m - a) / inner, tb[r] = (e - m) / inner, tt[r] = (e - a) / inner;
    }
    res->tf = median(tf, reps), res->tb = median(tb, reps), res->tt = median(tt, reps);
    free(tf);
}

static void free_ctx(struct ctx *c)
{
    float *f[] = {c->in,      c->out,   c->dout, c->din,    c->w,      c->dw,
                  c->b,       c->db,    c->work, c->mean,   c->invstd, c->run_mean,
                  c->run_var, c->gamma, c->beta, c->dgamma, c->dbeta,  c->mask};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        free(f[i]);
    free(c->argmax);
    free(c->bmask);
    sila_conv_plan_free(&c->cg);
    sila_blocked_bn_plan_free(&c->bbn);
    sila_relayout_plan_free(&c->rl);
}

#define STREAM_FLOATS ((size_t)8 << 20)
static double g_sgemm;
/* the triads run before the memory-bound rows, for the closing line */
static double g_row_stream[64];
static int g_nrow_stream;

static void print_row(const char *layer, const char *job, const char *shape, const struct result *r)
{
    double gf = r->flop_f / r->tf * 1e-9, gb = r->flop_b / r->tb * 1e-9;
    double gt = (r->flop_f + r->flop_b) / r->tt * 1e-9;
    printf("| %s | %s | %s | %.2f | %.2f | %.1f | %.1f | %.1f | %.1f%% |", layer, job, shape,
           1e3 * r->tf, 1e3 * r->tb, gf, gb, gt, 100.0 * gt / g_sgemm);
    if (r->bytes_f > 0)
        printf(" %.1f | %.1f | %.0f%% |\n", r->bytes_f / r->tf * 1e-9, r->bytes_b / r->tb * 1e-9,
               100.0 * (r->bytes_f + r->bytes_b) / r->tt * 1e-9 / r->stream);
    else
        printf(" - | - | - |\n");
    fflush(stdout);
}

/* conv KxK C->OC on HxH input, stride s, pad K/2; `block`: on the layouts
 * a residual block holds its tensors in (those its 3x3 conv1 of C->OC,
 * stride s, picks), else on NCHW with the plan's reorders. */
static void run_conv(const char *job, int B, int C, int H, int OC, int K, int s, int need_din,
                     bool block, int threads, int reps)
{
    struct ctx c = {0};
    struct sila_conv_geom g3;
    if (sila_conv_geom_init(&c.cg, B, C, H, H, OC, K, s, K / 2) ||
        sila_conv_geom_init(&g3, B, C, H, H, OC, 3, s, 1)) {
        fprintf(stderr, "bench_kernels: bad conv shape\n");
        exit(1);
    }
    c.cg.threads = threads;
    if ((block && sila_conv_layouts(&g3, &c.cg.src_layout, &c.cg.dst_layout)) ||
        sila_conv_plan_new(&c.cg)) {
        fprintf(stderr, "bench_kernels: no convolution plan for this shape\n");
        exit(1);
    }
    c.need_din = need_din;
    size_t n_in = sila_layout_floats(c.cg.src_layout, B, C, H, H),
           n_out = sila_layout_floats(c.cg.dst_layout, B, OC, c.cg.OH, c.cg.OW);
    size_t n_w = (size_t)OC * C * K * K;
    c.in = random_floats(n_in), c.out = random_floats(n_out), c.dout = random_floats(n_out);
    c.din = random_floats(n_in), c.w = random_floats(n_w), c.dw = const_floats(n_w, 0.0f);
    c.work = random_floats(sila_conv_work_floats(&c.cg));
    struct result r = {0};
    time_case(&c, conv_f, conv_b, reps, &r);
    double prod = 2.0 * B * OC * c.cg.OH * c.cg.OW * (double)C * K * K;
    r.flop_f = prod, r.flop_b = prod * (need_din ? 2 : 1);
    char layer[64], shape[64];
    snprintf(layer, sizeof layer, "conv%dx%d", K, K);
    if (s > 1)
        snprintf(layer + strlen(layer), sizeof layer - strlen(layer), " stride %d", s);
    if (!need_din)
        snprintf(layer + strlen(layer), sizeof layer - strlen(layer), " (no dX)");
    if (c.cg.src_layout != SILA_LAYOUT_NCHW || c.cg.dst_layout != SILA_LAYOUT_NCHW)
        snprintf(layer + strlen(layer), sizeof layer - strlen(layer), " (block's layout)");
    snprintf(shape, sizeof shape, "%d->%d @%dx%d", C, OC, H, H);
    print_row(layer, job, shape, &r);
    free_ctx(&c);
}

static void run_linear(const char *job, int B, int IN, int OUT, int need_din, int reps)
{
    struct ctx c = {.B = B, .IN = IN, .OUT = OUT, .need_din = need_din};
    c.in = random_floats((size_t)B * IN), c.din = random_floats((size_t)B * IN);
    c.out = random_floats((size_t)B * OUT), c.dout = random_floats((size_t)B * OUT);
    c.w = random_floats((size_t)IN * OUT), c.dw = const_floats((size_t)IN * OUT, 0.0f);
    c.b = random_floats(OUT), c.db = const_floats(OUT, 0.0f);
    struct result r = {0};
    time_case(&c, linear_f, linear_b, reps, &r);
    double prod = 2.0 * B * (double)IN * OUT;
    r.flop_f = prod, r.flop_b = prod * (need_din ? 2 : 1);
    char shape[64];
    snprintf(shape, sizeof shape, "%d->%d", IN, OUT);
    print_row(need_din ? "linear" : "linear (no dX)", job, shape, &r);
    free_ctx(&c);
}

/* The memory-bound layers on a (B, C, H, H) input. */
enum mkind {
    BN,
    BN_BLOCKED,
    BN_RELU_BLOCKED,
    RELAYOUT,
    RELU,
    MAXPOOL,
    AVGPOOL,
    GAP,
    DROPOUT,
    DROPPATH
};

/* The layout a block's 3x3 convolution of C channels at HxH picks for its
 * output (on B samples). */
static enum sila_layout block_layout(int B, int C, int H)
{
    struct sila_conv_geom g;
    enum sila_layout src, dst;
    if (sila_conv_geom_init(&g, B, C, H, H, C, 3, 1, 1) || sila_conv_layouts(&g, &src, &dst)) {
        fprintf(stderr, "bench_kernels: no convolution for %dx%dx%d\n", C, H, H);
        exit(1);
    }
    return dst;
}

/* c's plans of the blocked kinds on (B, C, H, H) and their work buffer;
 * *ret_n: the floats of a tensor in the blocked layout. */
static void blocked_plans(struct ctx *c, enum mkind kind, int H, int threads, size_t *ret_n)
{
    enum sila_layout l = block_layout(c->B, c->C, H);
    c->bbn = (struct sila_blocked_bn){.B = c->B,
                                      .C = c->C,
                                      .H = H,
                                      .W = H,
                                      .layout = l,
                                      .eps = 1e-5f,
                                      .relu = kind == BN_RELU_BLOCKED,
                                      .threads = threads};
    c->rl = (struct sila_relayout){
        .B = c->B, .C = c->C, .H = H, .W = H, .layout = l, .threads = threads};
    if (sila_blocked_bn_plan_new(&c->bbn) || sila_relayout_plan_new(&c->rl)) {
        fprintf(stderr, "bench_kernels: no blocked batch norm or reorder for this shape\n");
        exit(1);
    }
    size_t w = sila_blocked_bn_work_floats(&c->bbn), wr = sila_relayout_work_floats(&c->rl);
    c->work = random_floats(w > wr ? w : wr);
    c->bmask = xfloats(sila_blocked_bn_mask_bytes(&c->bbn) / sizeof(float) + 1);
    *ret_n = sila_layout_floats(l, c->B, c->C, H, H);
}

static void run_mem(enum mkind kind, const char *job, int B, int C, int H, int K, int threads,
                    int reps)
{
    struct ctx c = {.B = B, .C = C, .HW = H * H, .p = 0.1f};
    size_t n = (size_t)B * C * H * H, no = n, planes = (size_t)B * C;
    if (kind == BN_BLOCKED || kind == BN_RELU_BLOCKED || kind == RELAYOUT)
        blocked_plans(&c, kind, H, threads, &n), no = n;
    c.n = n, c.per_sample = (size_t)C * H * H;
    if (kind == MAXPOOL || kind == AVGPOOL) {
        if (sila_pool_geom_init(&c.pg, B, C, H, H, K, K, 0)) {
            fprintf(stderr, "bench_kernels: bad pool shape\n");
            exit(1);
        }
        no = planes * c.pg.OH * c.pg.OW;
    }
    if (kind == GAP)
        no = planes;
    c.in = random_floats(n), c.din = random_floats(n);
    c.out = random_floats(no), c.dout = random_floats(no);
    struct result r = {.stream = stream_triad(STREAM_FLOATS, reps)};
    if (g_nrow_stream < (int)(sizeof g_row_stream / sizeof g_row_stream[0]))
        g_row_stream[g_nrow_stream++] = r.stream;
    const char *layer = "";
    char shape[64];
    snprintf(shape, sizeof shape, "%dx%dx%d", C, H, H);
    switch (kind) {
    case BN:
    case BN_BLOCKED:
    case BN_RELU_BLOCKED:
        /* the blocked kinds keep the variance where the NCHW one keeps invstd */
        c.mean = const_floats(C, 0.0f), c.invstd = const_floats(C, 1.0f);
        c.run_mean = const_floats(C, 0.0f), c.run_var = const_floats(C, 1.0f);
        c.gamma = random_floats(C), c.beta = random_floats(C);
        c.dgamma = const_floats(C, 0.0f), c.dbeta = const_floats(C, 0.0f);
        time_case(&c, kind == BN ? bn_f : bbn_f, kind == BN ? bn_b : bbn_b, reps, &r);
        r.flop_f = 6.0 * n, r.flop_b = 11.0 * n, r.bytes_f = 8.0 * n, r.bytes_b = 12.0 * n;
        layer = kind == BN           ? "batchnorm (train)"
                : kind == BN_BLOCKED ? "batchnorm (train, blocked)"
                                     : "batchnorm+relu (train, blocked)";
        break;
    case RELAYOUT:
        time_case(&c, relayout_f, relayout_b, reps, &r);
        r.bytes_f = r.bytes_b = 8.0 * n;
        layer = "reorder NCHW <-> blocked";
        break;
    case RELU:
        time_case(&c, relu_f, relu_b, reps, &r);
        r.flop_f = r.flop_b = (double)n, r.bytes_f = 8.0 * n, r.bytes_b = 12.0 * n;
        layer = "relu";
        break;
    case MAXPOOL:
        c.argmax = xmalloc(sizeof *c.argmax * no);
        time_case(&c, maxpool_f, maxpool_b, reps, &r);
        r.flop_f = (double)no * K * K, r.flop_b = (double)no;
        r.bytes_f = r.bytes_b = 4.0 * n + 8.0 * no;
        layer = "maxpool";
        break;
    case AVGPOOL:
        time_case(&c, avgpool_f, avgpool_b, reps, &r);
        r.flop_f = r.flop_b = (double)no * (K * K + 1);
        r.bytes_f = r.bytes_b = 4.0 * n + 4.0 * no;
        layer = "avgpool";
        break;
    case GAP:
        time_case(&c, gap_f, gap_b, reps, &r);
        r.flop_f = (double)n + planes, r.flop_b = (double)planes;
        r.bytes_f = r.bytes_b = 4.0 * n + 4.0 * planes;
        layer = "global avg pool";
        break;
    case DROPOUT:
        c.mask = random_floats(n);
        time_case(&c, dropout_f, dropout_b, reps, &r);
        r.flop_f = r.flop_b = (double)n, r.bytes_f = r.bytes_b = 12.0 * n;
        layer = "dropout p=0.1";
        break;
    case DROPPATH:
        c.mask = random_floats(B);
        time_case(&c, droppath_f, droppath_b, reps, &r);
        r.flop_f = r.flop_b = (double)n, r.bytes_f = r.bytes_b = 8.0 * n;
        layer = "drop-path p=0.1";
        break;
    }
    if (kind == MAXPOOL || kind == AVGPOOL)
        snprintf(shape, sizeof shape, "%dx%dx%d, %dx%d stride %d", C, H, H, K, K, K);
    print_row(layer, job, shape, &r);
    free_ctx(&c);
}

int main(int argc, char **argv)
{
    int threads = 0, reps = 9, B = 128;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            B = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_kernels [--threads T] [--reps N] [--batch B]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 1000 || B < 1 || B > 4096 || threads < 0) {
        fprintf(stderr, "bench_kernels: --reps must be in 1..1000, --batch in 1..4096, "
                        "--threads >= 0\n");
        return 2;
    }
    if (threads == 0)
        threads = sila_threads_setup(0);
    sila_rng_seed(&rng, 1, 0);

    /* for information: OpenBLAS's own threads on one large product */
    openblas_set_num_threads(threads);
    double sgemm_blas = sgemm_one(1024, reps);
    /* from here on as in silad: T kernel threads, single-threaded OpenBLAS */
    sila_threads_setup(threads);
    g_sgemm = sgemm_per_thread(1024, threads, reps);
    double stream = stream_triad(STREAM_FLOATS, reps);

    printf("threads %d (OpenMP, single-threaded OpenBLAS inside), batch %d, median of %d\n",
           threads, B, reps);
    /* A shared or oversubscribed host can give T vCPUs less than T cores of
     * throughput: say so, since every ratio below depends on it. */
    double one = spin_seconds(1), all = spin_seconds(threads);
    printf("cores available: %d busy threads run at %.2fx the throughput of one\n", threads,
           threads * one / all);
    printf("sgemm 1024^3, %d threads x single-threaded OpenBLAS, own products: %.1f GFLOP/s "
           "(the reference of \"of sgemm\")\n",
           threads, g_sgemm);
    printf("sgemm 1024^3, OpenBLAS's own %d threads on one product: %.1f GFLOP/s "
           "(for information)\n",
           threads, sgemm_blas);
    printf("stream triad, 3 x 32 MB, %d threads: %.1f GB/s (run again before each memory-bound "
           "row: the reference of its \"of stream\")\n\n",
           threads, stream);

    printf("| layer | job | shape (batch %d) | fwd ms | bwd ms | fwd GFLOP/s | bwd GFLOP/s "
           "| fwd+bwd GFLOP/s | of sgemm | fwd GB/s | bwd GB/s | of stream |\n",
           B);
    printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    fflush(stdout);

    /* fmnist-cnn-k4: four 3x3 convolutions, pad 1 */
    run_conv("cnn-k4", B, 1, 28, 32, 3, 1, 0, false, threads, reps);
    run_conv("cnn-k4", B, 32, 28, 32, 3, 1, 1, false, threads, reps);
    run_conv("cnn-k4", B, 32, 14, 64, 3, 1, 1, false, threads, reps);
    run_conv("cnn-k4", B, 64, 14, 64, 3, 1, 1, false, threads, reps);
    /* fmnist-resnet-k8: stem, blocks 16, 16, 32/2, 32, 32, 64/2, 64, 64;
     * a stride-2 block has a 1x1 stride-2 projection */
    run_conv("resnet-k8", B, 1, 28, 16, 3, 1, 0, false, threads, reps);
    run_conv("resnet-k8", B, 16, 28, 16, 3, 1, 1, true, threads, reps);
    run_conv("resnet-k8", B, 16, 28, 32, 3, 2, 1, true, threads, reps);
    run_conv("resnet-k8", B, 16, 28, 32, 1, 2, 1, true, threads, reps);
    run_conv("resnet-k8", B, 32, 14, 32, 3, 1, 1, true, threads, reps);
    run_conv("resnet-k8", B, 32, 14, 64, 3, 2, 1, true, threads, reps);
    run_conv("resnet-k8", B, 32, 14, 64, 1, 2, 1, true, threads, reps);
    run_conv("resnet-k8", B, 64, 7, 64, 3, 1, 1, true, threads, reps);
    /* linear layers: fmnist-mlp's and the CNN's classifier */
    run_linear("mlp", B, 784, 1024, 0, reps);
    run_linear("mlp", B, 1024, 1024, 1, reps);
    run_linear("mlp", B, 1024, 10, 1, reps);
    run_linear("cnn-k4", B, 3136, 10, 1, reps);
    /* memory-bound layers */
    run_mem(BN, "cnn-k4", B, 32, 28, 0, threads, reps);
    run_mem(BN, "cnn-k4", B, 64, 14, 0, threads, reps);
    run_mem(BN, "resnet-k8 stem", B, 16, 28, 0, threads, reps);
    run_mem(BN, "-", B, 32, 14, 0, threads, reps);
    run_mem(BN, "-", B, 64, 7, 0, threads, reps);
    /* the ResNet's blocks: 16x28x28, 32x14x14, 64x7x7 */
    for (int i = 0; i < 3; i++) {
        int C = 16 << i, H = 28 >> i;
        run_mem(BN_BLOCKED, "resnet-k8", B, C, H, 0, threads, reps);
        run_mem(BN_RELU_BLOCKED, "resnet-k8", B, C, H, 0, threads, reps);
        run_mem(RELAYOUT, "resnet-k8", B, C, H, 0, threads, reps);
    }
    run_mem(RELU, "cnn-k4", B, 32, 28, 0, threads, reps);
    run_mem(RELU, "cnn-k4", B, 64, 14, 0, threads, reps);
    run_mem(RELU, "resnet-k8", B, 64, 7, 0, threads, reps);
    run_mem(MAXPOOL, "cnn-k4", B, 32, 28, 2, threads, reps);
    run_mem(MAXPOOL, "cnn-k4", B, 64, 14, 2, threads, reps);
    run_mem(AVGPOOL, "aux=mlp head", B, 32, 28, 14, threads, reps);
    run_mem(AVGPOOL, "-", B, 64, 14, 2, threads, reps);
    run_mem(GAP, "cnn-k4 aux head", B, 32, 28, 0, threads, reps);
    run_mem(GAP, "resnet-k8", B, 64, 7, 0, threads, reps);
    run_mem(DROPOUT, "-", B, 64, 14, 0, threads, reps);
    run_mem(DROPPATH, "-", B, 64, 14, 0, threads, reps);
    printf("\nThe first layer of a network does not compute dX (as in training). "
           "Memory-bound layers are far below sgemm by nature: read their GB/s.\n");
    double lo = g_row_stream[0], hi = lo;
    for (int i = 1; i < g_nrow_stream; i++)
        lo = fmin(lo, g_row_stream[i]), hi = fmax(hi, g_row_stream[i]);
    printf("Stream triads before the memory-bound rows: median %.1f GB/s, %.1f to %.1f.\n",
           median(g_row_stream, g_nrow_stream), lo, hi);
    return 0;
}
