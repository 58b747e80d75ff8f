/* Aligned float arrays for the kernels' operands (see kernels.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

float *sila_floats_alloc(size_t n, bool zeroed)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX / sizeof(float))
        return NULL;
    void *p;
    if (posix_memalign(&p, SILA_FLOATS_ALIGN, n * sizeof(float)))
        return NULL;
    return zeroed ? memset(p, 0, n * sizeof(float)) : p;
}
