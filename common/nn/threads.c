/* Thread count of the kernels (see threads.h). */
#include "threads.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

/* A positive integer from the environment variable, or 0. */
static int env_threads(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return 0;
    char *end;
    long n = strtol(v, &end, 10);
    return *end == 0 && n > 0 && n <= 1024 ? (int)n : 0;
}

int sila_threads_setup(int requested)
{
    int n = requested;
    if (n <= 0)
        n = env_threads("OPENBLAS_NUM_THREADS");
    if (n <= 0)
        n = env_threads("OMP_NUM_THREADS");
    if (n <= 0)
        n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(1);
    return n;
}
