/* Benchmark: what a late global step (job.global_lag) costs each module of
 * a job, in one pass and in the two a worker takes when the module's input
 * gradient leaves for another worker (sila_module_late_input, then
 * sila_module_late_params: the gradient leaves after the first).
 *
 *   bench_late --job FILE [--threads T] [--reps N] [--batch B] [--json]
 *
 * For every module but the first (which passes no gradient on) and the
 * last (whose global steps are never late): the module built from the job
 * at batch B (default the job's), a global forward kept on a deterministic
 * batch, then a warm-up and N repetitions (default 9) of the one pass
 * (without `apply`) and the two passes (the second with `apply`, since it
 * does nothing without; the updates move the module's own parameters, not
 * the kept state the passes read), each call timed. T: kernel threads, as
 * silad sets them (default as silad's).
 *
 * Prints per module, medians in milliseconds: the one pass
 * (sila_module_global_late), the input pass, the parameter pass, and their
 * ratios to the one pass: "input / one" is when, in a late backward, the
 * gradient leaves; "both / one" what the two passes cost together. One
 * JSON line per module follows with --json (tests/bench_speed.py's
 * pipeline model reads them). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "job.h"
#include "kernels.h"
#include "module.h"
#include "threads.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Deterministic floats in [-1, 1], n of them, scaled by s: the caller owns. */
static float *wave(size_t n, double f, float s)
{
    float *v = sila_floats_alloc(n);
    if (!v) {
        fprintf(stderr, "bench_late: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        v[i] = s * (float)sin(f * (double)i);
    return v;
}

/* Times module k's late passes; prints its row (and JSON line when json). */
static int bench_module(const struct sila_job *job, int k, int B, int reps, bool json)
{
    struct sila_err err;
    struct sila_module *m;
    struct sila_module_then then;
    if (sila_module_new(&m, job, k, B, &err) || sila_module_then_init(m, &then, &err)) {
        fprintf(stderr, "bench_late: module %d: %s\n", k + 1, err.msg);
        return 1;
    }
    size_t in = sila_shape_size(sila_net_in_shape(m->body)) * (size_t)B;
    size_t out = sila_shape_size(sila_net_out_shape(m->body)) * (size_t)B;
    float *x = wave(in, 0.37, 1.0f), *dz = wave(out, 0.11, 1e-3f), *din = wave(in, 0.0, 0.0f);
    int32_t *labels = malloc(sizeof *labels * (size_t)B);
    double *one = malloc(sizeof *one * (size_t)reps), *first = malloc(sizeof *first * (size_t)reps),
           *second = malloc(sizeof *second * (size_t)reps);
    if (!labels || !one || !first || !second) {
        fprintf(stderr, "bench_late: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < B; i++)
        labels[i] = i % 10;
    sila_module_global_forward_kept(m, x, B, &then);
    float mu = job->local_weight;
    struct sila_step_stats st;
    struct sila_late_pass pass;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        double t0 = sila_clock_s();
        sila_module_global_late(m, &then, x, dz, labels, B, 0.0f, 0.0f, mu, false, din, &st);
        double t1 = sila_clock_s();
        sila_module_late_input(m, &then, x, dz, labels, B, 0.0f, mu, din, &pass, &st);
        double t2 = sila_clock_s();
        sila_module_late_params(m, &then, x, &pass, B, 0.0f, true);
        double t3 = sila_clock_s();
        if (r >= 0)
            one[r] = t1 - t0, first[r] = t2 - t1, second[r] = t3 - t2;
    }
    double a = median(one, reps), b = median(first, reps), c = median(second, reps);
    printf("| %d | %.2f | %.2f | %.2f | %.2f | %.2f |\n", k + 1, 1e3 * a, 1e3 * b, 1e3 * c, b / a,
           (b + c) / a);
    if (json)
        printf("{\"bench\":\"late-passes\",\"module\":%d,\"batch\":%d,\"one_ms\":%.3f,"
               "\"input_ms\":%.3f,\"params_ms\":%.3f}\n",
               k + 1, B, 1e3 * a, 1e3 * b, 1e3 * c);
    free(x);
    free(dz);
    free(din);
    free(labels);
    free(one);
    free(first);
    free(second);
    sila_module_then_fini(&then);
    sila_module_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    int threads = 0, reps = 9, B = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--job") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            B = atoi(argv[++i]);
        else if (strcmp(argv[i], "--json") == 0)
            json = true;
        else
            file = NULL, i = argc;
    }
    if (!file || reps < 1 || reps > 1000 || B < 0 || B > 4096 || threads < 0) {
        fprintf(stderr, "usage: bench_late --job FILE [--threads T] [--reps 1..1000] "
                        "[--batch 1..4096] [--json]\n");
        return 2;
    }
    static const char *const lag[] = {"job.global_lag=1"};
    struct sila_job job;
    struct sila_err err;
    if (sila_job_load(&job, file, lag, 1, &err)) {
        fprintf(stderr, "bench_late: %s\n", err.msg);
        return 1;
    }
    if (B == 0)
        B = job.batch;
    threads = sila_threads_setup(threads);
    printf("%s: a late global step's backward per module, batch %d, %d thread(s), median of %d "
           "(ms)\n\n",
           file, B, threads, reps);
    printf("| module | one pass | input pass | parameter pass | input / one | both / one |\n");
    printf("|---:|---:|---:|---:|---:|---:|\n");
    int rc = 0;
    for (int k = 1; k < job.nmodules - 1 && rc == 0; k++)
        rc = bench_module(&job, k, B, reps, json);
    sila_job_fini(&job);
    return rc;
}
