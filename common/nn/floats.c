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
 * malloc's own bookkeeping lies outside the interior.
 *
 * The 2 MB-aligned part of that interior is marked for transparent huge
 * pages (MADV_HUGEPAGE: Debian's kernels give them only to ranges so
 * marked), so that a tensor is mapped in 2 MB pages at first touch rather
 * than 4 KB ones: one fault instead of 512, and fewer TLB misses. The
 * CNN's late global steps keep several copies of a module's activations;
 * over two workers (--spawn=2, 60 000 samples) they ran at 0.88-0.98x of
 * local learning on 4 KB pages and 0.98-1.01x on huge pages, with 124 000
 * against 48 000 page faults (docs/performance.md, "Winograd for the
 * CNN's 32→32 convolution, and huge pages"). A 2 MB page is resident as
 * soon as one byte of it is touched, which raised the CNN's in-process
 * peak RSS from 342 to 356 MB. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels.h"

/* The whole units (a power of two of bytes) within the n bytes at p:
 * [*lo, *hi), empty when *hi <= *lo. */
static void whole_units(const char *p, size_t n, uintptr_t unit, uintptr_t *lo, uintptr_t *hi)
{
    uintptr_t a = (uintptr_t)p;
    *lo = (a + unit - 1) & ~(unit - 1);
    *hi = (a + n) & ~(unit - 1);
}

/* Sets the n bytes at p to zero, without touching whole pages; false when
 * it had to write them all (an array within one page, or madvise refused). */
static bool zero_lazily(char *p, size_t n)
{
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t lo, hi;
    whole_units(p, n, ps > 0 ? (uintptr_t)ps : 4096, &lo, &hi);
    if (hi <= lo || madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0) {
        memset(p, 0, n);
        return false;
    }
    memset(p, 0, lo - (uintptr_t)p);
    memset((void *)hi, 0, (uintptr_t)p + n - hi);
    return true;
}

#define HUGE_PAGE ((uintptr_t)2 << 20)

/* Asks for huge pages over the 2 MB-aligned part of the n bytes at p, not
 * yet touched. A kernel without them refuses: 4 KB pages then. */
static void advise_huge(char *p, size_t n)
{
    uintptr_t lo, hi;
    whole_units(p, n, HUGE_PAGE, &lo, &hi);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
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
    if (zero_lazily(p, n * sizeof(float)))
        advise_huge(p, n * sizeof(float));
    return p;
}
