/* Fully connected layer on cblas_sgemm (see kernels.h). The products are
 * split among OpenMP threads by output rows, so every value is computed by
 * one thread in a fixed order: results do not depend on the thread count.
 * OpenBLAS must be single-threaded (see net.h). */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "kernels.h"

/* Below this many multiply-adds one thread does the whole product. */
#define PARALLEL_MIN_MACS (1L << 18)

/* Rows [*lo, *hi) of n for thread t of T. */
static void split_rows(int n, int t, int T, int *lo, int *hi)
{
    *lo = (int)((long)n * t / T);
    *hi = (int)((long)n * (t + 1) / T);
}

void sila_linear_forward(float *out, const float *in, const float *w, const float *b, int B, int IN,
                         int OUT)
{
#pragma omp parallel if ((long)B * IN * OUT >= PARALLEL_MIN_MACS)
    {
        int lo, hi;
        split_rows(B, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        /* out rows [lo, hi) (., OUT) = in rows (., IN) · w^T (IN, OUT) */
        if (hi > lo)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hi - lo, OUT, IN, 1.0f,
                        in + (size_t)lo * IN, IN, w, IN, 0.0f, out + (size_t)lo * OUT, OUT);
    }
    if (!b)
        return;
    for (int i = 0; i < B; i++)
        for (int o = 0; o < OUT; o++)
            out[(size_t)i * OUT + o] += b[o];
}

void sila_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, int B, int IN, int OUT)
{
#pragma omp parallel if ((long)B * IN * OUT >= PARALLEL_MIN_MACS)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads(), lo, hi;
        split_rows(OUT, t, T, &lo, &hi);
        /* dw rows [lo, hi) (., IN) += dout^T rows (., B) · in (B, IN) */
        if (dw && hi > lo)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hi - lo, IN, B, 1.0f, dout + lo,
                        OUT, in, IN, 1.0f, dw + (size_t)lo * IN, IN);
        split_rows(B, t, T, &lo, &hi);
        /* din rows [lo, hi) (., IN) = dout rows (., OUT) · w (OUT, IN) */
        if (din && hi > lo)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, hi - lo, IN, OUT, 1.0f,
                        dout + (size_t)lo * OUT, OUT, w, IN, 0.0f, din + (size_t)lo * IN, IN);
    }
    if (db)
        for (int i = 0; i < B; i++)
            for (int o = 0; o < OUT; o++)
                db[o] += dout[(size_t)i * OUT + o];
}
