/* silad: the sila coordinator. This build trains in-process (--inproc);
 * see docs/ for the programs and the job files. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "threads.h"
#include "train.h"

#define MAX_OVERRIDES 64

static void usage(FILE *f)
{
    fprintf(f, "usage: silad --job FILE --inproc [--out DIR] [--set SECTION.KEY=VALUE]... "
               "[--threads T]\n"
               "  --job FILE     the job to train (see docs/jobs.md)\n"
               "  --inproc       train every module in this process\n"
               "  --out DIR      where model.sila and metrics.jsonl go "
               "(default: runs/<job name>)\n"
               "  --set S.K=V    override a key of [job], [optimizer] or [schedule]\n"
               "  --threads T    threads of the numerical kernels (default: OPENBLAS_NUM_THREADS\n"
               "                 or OMP_NUM_THREADS when set, else all cores)\n");
}

struct options {
    const char *job;
    const char *out;
    const char *overrides[MAX_OVERRIDES];
    int noverrides;
    int threads;
    int inproc;
};

/* Parses argv; returns 0, 1 when the program should exit successfully
 * (--help), or -1 after printing an error. */
static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        { "job", required_argument, NULL, 'j' },     { "out", required_argument, NULL, 'o' },
        { "set", required_argument, NULL, 's' },     { "threads", required_argument, NULL, 't' },
        { "inproc", no_argument, NULL, 'i' },        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },       { 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'j': o->job = optarg; break;
        case 'o': o->out = optarg; break;
        case 'i': o->inproc = 1; break;
        case 's':
            if (o->noverrides == MAX_OVERRIDES) {
                fprintf(stderr, "silad: at most %d --set options\n", MAX_OVERRIDES);
                return -1;
            }
            o->overrides[o->noverrides++] = optarg;
            break;
        case 't': {
            long t = strtol(optarg, &end, 10);
            if (*end || end == optarg || t < 1 || t > 1024) {
                fprintf(stderr, "silad: --threads needs an integer in 1..1024, got '%s'\n", optarg);
                return -1;
            }
            o->threads = (int)t;
            break;
        }
        case 'h': usage(stdout); return 1;
        case 'V': printf("silad %s\n", SILA_VERSION); return 1;
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "silad: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->job) {
        fprintf(stderr, "silad: --job FILE is required\n");
        usage(stderr);
        return -1;
    }
    if (!o->inproc) {
        fprintf(stderr, "silad: only --inproc training is available in this build\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options o = { 0 };
    int r = parse_args(argc, argv, &o);
    if (r)
        return r > 0 ? EXIT_SUCCESS : 2;
    sila_threads_setup(o.threads);
    struct sila_job job;
    struct sila_err err = { "" };
    if (sila_job_load(&job, o.job, o.overrides, o.noverrides, &err)) {
        fprintf(stderr, "silad: %s\n", err.msg);
        return EXIT_FAILURE;
    }
    char out[1024];
    snprintf(out, sizeof out, "%s", o.out ? o.out : "");
    if (!o.out)
        snprintf(out, sizeof out, "runs/%s", job.name);
    r = train_inproc(&job, out, &err);
    if (r)
        fprintf(stderr, "silad: %s\n", err.msg);
    sila_job_fini(&job);
    return r ? EXIT_FAILURE : EXIT_SUCCESS;
}
