/* Seeded test data shared by the unit tests: the same seed gives the same
 * values in every test and on every run. */
#ifndef SILA_TESTFILL_H
#define SILA_TESTFILL_H

#include <stddef.h>
#include <stdint.h>

/* n floats of N(0, sd^2), from sila's generator seeded with (seed, 0). */
void fill_normal(float *x, size_t n, float sd, uint64_t seed);

/* B labels uniform in [0, C), from sila's generator seeded with (seed, 1). */
void fill_labels(int32_t *y, int B, int C, uint64_t seed);

#endif
