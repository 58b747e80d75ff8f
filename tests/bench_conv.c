/* Benchmark: conv2d forward+backward GFLOP/s against the machine's sgemm.
 *
 *   bench_conv [--threads T] [--reps N]
 *
 * Prints sgemm GFLOP/s (square 1024 matrices: the machine's practical limit
 * at this thread count) and, for each conv layer of the reference CNN at
 * batch 128, the GFLOP/s of forward, backward and both, with the ratio to
 * sgemm's. Median over N repetitions after one warm-up. FLOPs count the
 * multiply-adds of the three products (out, dW, dX) as 2 each; the first
 * layer's dX is not computed (a network never needs it). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"
#include "rng.h"
#include "threads.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static float *random_floats(size_t n, struct sila_rng *rng)
{
    float *x = malloc(sizeof *x * n);
    if (!x) {
        fprintf(stderr, "bench_conv: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        x[i] = sila_rng_normal(rng);
    return x;
}

static double bench_sgemm(int n, int reps, struct sila_rng *rng)
{
    float *a = random_floats((size_t)n * n, rng), *b = random_floats((size_t)n * n, rng);
    float *c = random_floats((size_t)n * n, rng);
    double t[64];
    for (int r = -1; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        if (r >= 0)
            t[r] = now() - t0;
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * (double)n / median(t, reps) * 1e-9;
}

/* Seconds for a fixed scalar loop in each of n threads at once. */
static double spin_seconds(int n)
{
    double t0 = now();
#pragma omp parallel num_threads(n)
    {
        volatile double x = 0.0;
        for (long i = 0; i < 100000000L; i++)
            x += 1e-9;
    }
    return now() - t0;
}

struct conv_case {
    const char *name;
    int C, H, OC;
    int need_din;
};

static void bench_conv(const struct conv_case *cc, int B, int threads, int reps, double sgemm,
                       struct sila_rng *rng)
{
    struct sila_conv_geom g;
    sila_conv_geom_init(&g, B, cc->C, cc->H, cc->H, cc->OC, 3, 1, 1);
    g.threads = threads;
    size_t n_in = (size_t)B * cc->C * cc->H * cc->H, n_out = (size_t)B * cc->OC * g.OH * g.OW;
    size_t n_w = (size_t)cc->OC * cc->C * 9;
    float *in = random_floats(n_in, rng), *out = random_floats(n_out, rng);
    float *w = random_floats(n_w, rng), *dw = random_floats(n_w, rng);
    float *din = random_floats(n_in, rng), *b = random_floats(cc->OC, rng);
    float *db = random_floats(cc->OC, rng), *work = random_floats(sila_conv_work_floats(&g), rng);
    double tf[64], tb[64], tt[64];
    for (int r = -1; r < reps; r++) {
        double t0 = now();
        sila_conv2d_forward(out, in, w, b, &g, work);
        double t1 = now();
        sila_conv2d_backward(cc->need_din ? din : NULL, dw, db, out, in, w, &g, work);
        double t2 = now();
        if (r >= 0)
            tf[r] = t1 - t0, tb[r] = t2 - t1, tt[r] = t2 - t0;
    }
    double flop = 2.0 * B * cc->OC * g.OH * g.OW * cc->C * 9.0;
    double bflop = flop * (cc->need_din ? 2 : 1);
    double gf = flop / median(tf, reps) * 1e-9, gb = bflop / median(tb, reps) * 1e-9;
    double gt = (flop + bflop) / median(tt, reps) * 1e-9;
    printf("%-22s %8.1f %8.1f %8.1f %7.0f%%\n", cc->name, gf, gb, gt, 100.0 * gt / sgemm);
    free(in), free(out), free(w), free(dw), free(din), free(b), free(db), free(work);
}

int main(int argc, char **argv)
{
    int threads = 0, reps = 9;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_conv [--threads T] [--reps N]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 64) {
        fprintf(stderr, "bench_conv: --reps must be in 1..64\n");
        return 2;
    }
    if (threads <= 0)
        threads = sila_threads_setup(0);
    struct sila_rng rng;
    sila_rng_seed(&rng, 1, 0);
    /* the machine's limit: OpenBLAS's own threads on one large product */
    openblas_set_num_threads(threads);
    double sgemm = bench_sgemm(1024, reps, &rng);
    /* sila's kernels: their own threads around single-threaded sgemm */
    sila_threads_setup(threads);
    printf("threads %d, batch 128, median of %d\n", threads, reps);
    /* A shared or oversubscribed host can give T vCPUs less than T cores of
     * throughput: say so, since every ratio below depends on it. */
    double one = spin_seconds(1), all = spin_seconds(threads);
    printf("cores available: %d busy threads run at %.2fx the throughput of one\n", threads,
           threads * one / all);
    printf("sgemm 1024x1024x1024: %.1f GFLOP/s\n\n", sgemm);
    printf("%-22s %8s %8s %8s %8s\n", "conv3x3 layer", "fwd", "bwd", "fwd+bwd", "of sgemm");
    static const struct conv_case cases[] = {
        { "1->32 @28x28", 1, 28, 32, 0 },
        { "32->32 @28x28", 32, 28, 32, 1 },
        { "32->64 @14x14", 32, 14, 64, 1 },
        { "64->64 @14x14", 64, 14, 64, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        bench_conv(&cases[i], 128, threads, reps, sgemm, &rng);
    printf("(GFLOP/s; target: 32->32 and 64->64 fwd+bwd >= 60%% of sgemm)\n");
    return 0;
}
