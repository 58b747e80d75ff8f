/* Prints what sila itself computes for the checks in README.md: the data
 * order of an epoch (first 10 indices and a checksum), and for a job each
 * module's parameter counts and initial-weight checksums, in the format of
 * sila_torch.py --print-order / --print-init. Not built by meson: see
 * README.md for the compile line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "dataset.h"
#include "job.h"
#include "module.h"

int main(int argc, char **argv)
{
    if (argc == 4) {
        uint64_t seed = strtoull(argv[1], NULL, 10), epoch = strtoull(argv[2], NULL, 10);
        uint32_t n = (uint32_t)strtoul(argv[3], NULL, 10);
        uint32_t *perm = malloc(sizeof *perm * n);
        sila_dataset_epoch_order(perm, n, seed, epoch);
        uint64_t chk = 0;
        for (uint32_t i = 0; i < n; i++)
            chk += (uint64_t)i * perm[i];
        printf("order seed %llu epoch %llu n %u:", (unsigned long long)seed,
               (unsigned long long)epoch, n);
        for (uint32_t i = 0; i < 10 && i < n; i++)
            printf(" %u", perm[i]);
        printf(" checksum %llu\n", (unsigned long long)chk);
        return 0;
    }
    if (argc == 2) {
        struct sila_job job;
        struct sila_err err = {""};
        if (sila_job_load(&job, argv[1], NULL, 0, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        for (int k = 0; k < job.nmodules; k++) {
            struct sila_module *m;
            if (sila_module_new(&m, &job, k, 1, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            double s = 0, a = 0;
            for (size_t i = 0; i < m->nparams; i++) {
                s += m->params[i];
                a += fabs(m->params[i]);
            }
            printf("module %d: body %zu head %zu first %.9g %.9g %.9g sum %.9g abs %.9g\n", k + 1,
                   m->body_params, m->nparams - m->body_params, m->params[0], m->params[1],
                   m->params[2], s, a);
            sila_module_free(m);
        }
        return 0;
    }
    fprintf(stderr, "usage: check SEED EPOCH N | check JOB\n");
    return 2;
}
