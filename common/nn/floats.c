/* Aligned float arrays for the kernels' operands (see kernels.h).
 *
 * Zeroing large arrays with memset would make every page resident at once,
 * even those training never writes (a residual block's input gradient when
 * nothing is sent upstream, say): memset on every array raised the peak
 * RSS of the ResNet's e2e run from 430 to 582 MB. calloc
 * avoids that for fresh pages but cannot align. So the page-aligned
 * interior of an array is given back with madvise(MADV_DONTNEED),
 * after which the kernel maps a zero page at first touch, as it does for
 * calloc's; only the partial pages at its ends are cleared by hand. The
 * memory is the caller's private anonymous heap, so this is allowed, and
 * malloc's own bookkeeping lies outside the interior. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels.h"

/* Sets the n bytes at p to zero, without touching whole pages. */
static void zero_lazily(char *p, size_t n)
{
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t page = ps > 0 ? (uintptr_t)ps : 4096, a = (uintptr_t)p;
    uintptr_t lo = (a + page - 1) & ~(page - 1), hi = (a + n) & ~(page - 1);
    if (hi <= lo || madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0) {
        memset(p, 0, n);
        return;
    }
    memset(p, 0, lo - a);
    memset((void *)hi, 0, a + n - hi);
}

float *sila_floats_alloc(size_t n)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX / sizeof(float))
        return NULL;
    void *p;
    if (posix_memalign(&p, SILA_FLOATS_ALIGN, n * sizeof(float)))
        return NULL;
    zero_lazily(p, n * sizeof(float));
    return p;
}
