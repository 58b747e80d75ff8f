/* Fully connected layer on cblas_sgemm (see kernels.h). */
#include <cblas.h>
#include <string.h>

#include "kernels.h"

void sila_linear_forward(float *out, const float *in, const float *w, const float *b, int B,
                         int IN, int OUT)
{
    /* out (B, OUT) = in (B, IN) · w^T (IN, OUT) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OUT, IN, 1.0f, in, IN, w, IN, 0.0f,
                out, OUT);
    if (!b)
        return;
    for (int i = 0; i < B; i++)
        for (int o = 0; o < OUT; o++)
            out[(size_t)i * OUT + o] += b[o];
}

void sila_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, int B, int IN, int OUT)
{
    /* dw (OUT, IN) += dout^T (OUT, B) · in (B, IN) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, B, 1.0f, dout, OUT, in, IN,
                1.0f, dw, IN);
    if (db)
        for (int i = 0; i < B; i++)
            for (int o = 0; o < OUT; o++)
                db[o] += dout[(size_t)i * OUT + o];
    /* din (B, IN) = dout (B, OUT) · w (OUT, IN) */
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, IN, OUT, 1.0f, dout, OUT, w,
                    IN, 0.0f, din, IN);
}
