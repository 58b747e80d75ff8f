/* Seeded test data (see testfill.h). */
#include "testfill.h"

#include "rng.h"

void fill_normal(float *x, size_t n, float sd, uint64_t seed)
{
    struct sila_rng r;
    sila_rng_seed(&r, seed, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = sd * sila_rng_normal(&r);
}

void fill_labels(int32_t *y, int B, int C, uint64_t seed)
{
    struct sila_rng r;
    sila_rng_seed(&r, seed, 1);
    for (int b = 0; b < B; b++)
        y[b] = (int32_t)sila_rng_below(&r, (uint32_t)C);
}
