/* 2-D convolution lowered onto cblas_sgemm through im2col (see kernels.h);
 * 3x3 stride-1 layers with enough channels and a large enough plane run
 * their forward pass and dX by Winograd instead (winograd.h), dW by im2col.
 *
 * Forward: the batch is processed in chunks of `nb` samples whose im2col
 * matrices sit side by side in one (C·K·K, nb·OH·OW) column matrix, so each
 * chunk is one sgemm; CONV_COL_FLOATS bounds the chunk, which keeps the
 * column matrix near the caches. With nb = 1 the product (OC, OH·OW) is
 * already the NCHW sample; larger chunks go through a (OC, nb·OH·OW)
 * staging matrix.
 * Backward: dW accumulates over the same chunks. dX of a stride-1
 * convolution is itself a convolution of dY with the flipped, transposed
 * kernel (padding K-1-pad), which runs as one im2col + sgemm per sample;
 * other strides fold W^T·dY back with col2im.
 * Threads: chunks are shared among g->threads OpenMP threads (contiguous
 * blocks, schedule(static)), each with its own scratch; each thread sums
 * its dW and db into partials that are added in thread order, so results
 * depend on the thread count but not on timing. sgemm runs inside the
 * threads: OpenBLAS must be single-threaded (the programs see to it).
 * Scratch layout (sila_conv_work_floats): the flipped kernel (stride-1
 * backward only) and Winograd's transformed kernel, then per thread:
 * column matrix, staging matrix, dW and db partials, Winograd's tiles. */
#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "kernels.h"
#include "winograd.h"

#define CONV_COL_FLOATS ((size_t)1 << 18)

int sila_conv_geom_init(struct sila_conv_geom *g, int B, int C, int H, int W, int OC, int K,
                        int stride, int pad)
{
    if (B < 1 || C < 1 || H < 1 || W < 1 || OC < 1 || K < 1 || stride < 1 || pad < 0)
        return -EINVAL;
    if (H + 2 * pad < K || W + 2 * pad < K)
        return -EINVAL;
    *g = (struct sila_conv_geom){.B = B,
                                 .C = C,
                                 .H = H,
                                 .W = W,
                                 .OC = OC,
                                 .K = K,
                                 .stride = stride,
                                 .pad = pad,
                                 .threads = 1};
    g->OH = (H + 2 * pad - K) / stride + 1;
    g->OW = (W + 2 * pad - K) / stride + 1;
    return 0;
}

static size_t col_rows(const struct sila_conv_geom *g)
{
    return (size_t)g->C * g->K * g->K;
}

static size_t out_hw(const struct sila_conv_geom *g)
{
    return (size_t)g->OH * g->OW;
}

/* Samples per chunk: at least one, at most B. */
static int chunk_samples(const struct sila_conv_geom *g)
{
    size_t per = col_rows(g) * out_hw(g);
    size_t nb = CONV_COL_FLOATS / per;
    if (nb < 1)
        nb = 1;
    return nb > (size_t)g->B ? g->B : (int)nb;
}

/* dX as a forward convolution: stride 1 and a padding that keeps the size. */
static bool transposed_dx(const struct sila_conv_geom *g)
{
    return g->stride == 1 && g->pad <= g->K - 1;
}

/* Geometry of that convolution: dY (OC, OH, OW) -> dX (C, H, W). */
static struct sila_conv_geom dx_geom(const struct sila_conv_geom *g)
{
    struct sila_conv_geom t = {.B = 1,
                               .C = g->OC,
                               .H = g->OH,
                               .W = g->OW,
                               .OC = g->C,
                               .K = g->K,
                               .stride = 1,
                               .pad = g->K - 1 - g->pad,
                               .OH = g->H,
                               .OW = g->W,
                               .threads = 1};
    return t;
}

/* One thread's scratch: column matrix, staging matrix, dW and db partials,
 * Winograd's transformed tiles and products. */
struct scratch {
    float *col, *stage, *dw, *db, *wino;
};

/* Floats of one thread's Winograd scratch (0 when g does not use it). The
 * dX convolution of a Winograd layer has the same tiles and channels. */
static size_t wino_floats(const struct sila_conv_geom *g)
{
    return sila_wino_applies(g) ? sila_wino_thread_floats(g) : 0;
}

static size_t col_floats(const struct sila_conv_geom *g)
{
    size_t fwd = col_rows(g) * chunk_samples(g) * out_hw(g);
    if (!transposed_dx(g))
        return fwd;
    struct sila_conv_geom t = dx_geom(g);
    size_t dx = col_rows(&t) * out_hw(&t);
    return fwd > dx ? fwd : dx;
}

static size_t thread_floats(const struct sila_conv_geom *g)
{
    return col_floats(g) + (size_t)g->OC * chunk_samples(g) * out_hw(g) +
           (size_t)g->OC * col_rows(g) + (size_t)g->OC + wino_floats(g);
}

/* The flipped kernel (stride-1 backward), then Winograd's transformed one. */
static size_t flipped_floats(const struct sila_conv_geom *g)
{
    return transposed_dx(g) ? (size_t)g->C * g->OC * g->K * g->K : 0;
}

static size_t shared_floats(const struct sila_conv_geom *g)
{
    return flipped_floats(g) + (sila_wino_applies(g) ? (size_t)16 * g->OC * g->C : 0);
}

size_t sila_conv_work_floats(const struct sila_conv_geom *g)
{
    return shared_floats(g) + (size_t)(g->threads > 0 ? g->threads : 1) * thread_floats(g);
}

static struct scratch scratch_of(const struct sila_conv_geom *g, float *work, int tid)
{
    struct scratch s;
    s.col = work + shared_floats(g) + (size_t)tid * thread_floats(g);
    s.stage = s.col + col_floats(g);
    s.dw = s.stage + (size_t)g->OC * chunk_samples(g) * out_hw(g);
    s.db = s.dw + (size_t)g->OC * col_rows(g);
    s.wino = s.db + g->OC;
    return s;
}

static int team_size(const struct sila_conv_geom *g)
{
    return g->threads > 0 ? g->threads : 1;
}

/* Output columns [*lo, *hi) whose input column ow·stride - pad + kj lies
 * inside the image; the others read zero padding. */
static void valid_cols(const struct sila_conv_geom *g, int kj, int *lo, int *hi)
{
    int first = g->pad - kj; /* smallest ow·stride that is in range */
    *lo = first <= 0 ? 0 : (first + g->stride - 1) / g->stride;
    int last = g->W - 1 + g->pad - kj; /* largest in-range ow·stride */
    *hi = last < 0 ? 0 : last / g->stride + 1;
    if (*hi > g->OW)
        *hi = g->OW;
    if (*lo > *hi)
        *lo = *hi;
}

/* True for a stride-1 convolution whose output has the input's size: there
 * a row of the column matrix is the whole plane shifted by a constant
 * offset, with the rows and the edge column it shifts in set to zero. */
static bool same_size(const struct sila_conv_geom *g)
{
    return g->stride == 1 && g->OH == g->H && g->OW == g->W;
}

/* The row of (c, ki, kj) for a same-size convolution: one copy of the
 * plane, then the zeros of the padding. */
static void im2col_row_same(float *dst, const float *plane, int ki, int kj,
                            const struct sila_conv_geom *g)
{
    const int W = g->W, hw = g->H * g->W;
    const int dy = ki - g->pad, dx = kj - g->pad;
    /* valid output rows [r0, r1): input row oh + dy in [0, H) */
    const int r0 = dy < 0 ? -dy : 0, r1 = dy > 0 ? g->H - dy : g->H;
    /* the copy dst[i] = plane[i + dy·W + dx] over the valid rows, clipped to
     * the plane; what the clipping leaves out lies in the zeroed columns */
    int i0 = r0 * W, i1 = r1 * W;
    const int shift = dy * W + dx;
    if (i0 + shift < 0)
        i0 = -shift;
    if (i1 + shift > hw)
        i1 = hw - shift;
    memset(dst, 0, sizeof *dst * (size_t)(i0 > 0 ? i0 : 0));
    if (i1 > i0)
        memcpy(dst + i0, plane + i0 + shift, sizeof *dst * (size_t)(i1 - i0));
    memset(dst + i1, 0, sizeof *dst * (size_t)(hw - i1));
    /* columns whose input column ow + dx falls outside [0, W) */
    const int c0 = dx < 0 ? -dx : 0, c1 = dx > 0 ? W - dx : W;
    for (int oh = r0; oh < r1; oh++) {
        float *d = dst + (size_t)oh * W;
        for (int ow = 0; ow < c0; ow++)
            d[ow] = 0.0f;
        for (int ow = c1; ow < W; ow++)
            d[ow] = 0.0f;
    }
}

/* col (C·K·K, ld) columns [0, OH·OW) <- one sample in (C, H, W). */
static void im2col(float *col, size_t ld, const float *in, const struct sila_conv_geom *g)
{
    if (same_size(g)) {
        for (int c = 0; c < g->C; c++)
            for (int ki = 0; ki < g->K; ki++)
                for (int kj = 0; kj < g->K; kj++)
                    im2col_row_same(col + (((size_t)c * g->K + ki) * g->K + kj) * ld,
                                    in + (size_t)c * g->H * g->W, ki, kj, g);
        return;
    }
    for (int c = 0; c < g->C; c++)
        for (int ki = 0; ki < g->K; ki++)
            for (int kj = 0; kj < g->K; kj++) {
                float *row = col + (((size_t)c * g->K + ki) * g->K + kj) * ld;
                const float *plane = in + (size_t)c * g->H * g->W;
                int lo, hi;
                valid_cols(g, kj, &lo, &hi);
                for (int oh = 0; oh < g->OH; oh++) {
                    float *dst = row + (size_t)oh * g->OW;
                    int ih = oh * g->stride - g->pad + ki;
                    if (ih < 0 || ih >= g->H) {
                        memset(dst, 0, sizeof *dst * g->OW);
                        continue;
                    }
                    /* input column of ow is base + ow·stride, >= 0 for ow >= lo */
                    ptrdiff_t base = (ptrdiff_t)ih * g->W - g->pad + kj;
                    memset(dst, 0, sizeof *dst * lo);
                    if (g->stride == 1)
                        memcpy(dst + lo, plane + base + lo, sizeof *dst * (hi - lo));
                    else
                        for (int ow = lo; ow < hi; ow++)
                            dst[ow] = plane[base + ow * g->stride];
                    memset(dst + hi, 0, sizeof *dst * (g->OW - hi));
                }
            }
}

/* din (C, H, W) += the column matrix folded back onto one sample. */
static void col2im(float *din, const float *col, size_t ld, const struct sila_conv_geom *g)
{
    for (int c = 0; c < g->C; c++)
        for (int ki = 0; ki < g->K; ki++)
            for (int kj = 0; kj < g->K; kj++) {
                const float *row = col + (((size_t)c * g->K + ki) * g->K + kj) * ld;
                float *plane = din + (size_t)c * g->H * g->W;
                int lo, hi;
                valid_cols(g, kj, &lo, &hi);
                for (int oh = 0; oh < g->OH; oh++) {
                    int ih = oh * g->stride - g->pad + ki;
                    if (ih < 0 || ih >= g->H)
                        continue;
                    ptrdiff_t base = (ptrdiff_t)ih * g->W - g->pad + kj;
                    const float *src = row + (size_t)oh * g->OW;
                    for (int ow = lo; ow < hi; ow++)
                        plane[base + ow * g->stride] += src[ow];
                }
            }
}

/* Forward of the samples [b0, b0 + nb). */
static void forward_chunk(float *out, const float *in, const float *w, const float *b,
                          const struct sila_conv_geom *g, const struct scratch *s, int b0, int nb)
{
    const size_t hw = out_hw(g), in_sz = (size_t)g->C * g->H * g->W;
    const size_t out_sz = (size_t)g->OC * hw, n = (size_t)nb * hw;
    const int ckk = (int)col_rows(g);
    float *dst = nb == 1 ? out + b0 * out_sz : s->stage;
    for (int i = 0; i < nb; i++)
        im2col(s->col + i * hw, n, in + (b0 + i) * in_sz, g);
    /* dst (OC, n) = w (OC, CKK) · col (CKK, n) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->OC, (int)n, ckk, 1.0f, w, ckk, s->col,
                (int)n, 0.0f, dst, (int)n);
    if (nb == 1 && !b)
        return; /* the product is the output */
    for (int i = 0; i < nb; i++)
        for (int oc = 0; oc < g->OC; oc++) {
            float *o = out + (b0 + i) * out_sz + oc * hw;
            const float *src = dst + oc * n + i * hw;
            float bias = b ? b[oc] : 0.0f;
            for (size_t j = 0; j < hw; j++)
                o[j] = src[j] + bias;
        }
}

/* The convolution of g by Winograd over the batch (sila_wino_applies(g)),
 * with kernel w (g->OC, g->C, 3, 3) transformed into u. */
static void wino_conv(float *out, const float *in, const float *w, const float *b,
                      const struct sila_conv_geom *g, float *u, float *work,
                      const struct sila_conv_geom *layer)
{
    sila_wino_kernel(u, w, g->OC, g->C);
    const int nb_max = sila_wino_chunk_samples(g), nchunks = (g->B + nb_max - 1) / nb_max;
#pragma omp parallel num_threads(team_size(layer))
    {
        struct scratch s = scratch_of(layer, work, omp_get_thread_num());
#pragma omp for schedule(static)
        for (int c = 0; c < nchunks; c++) {
            int b0 = c * nb_max, nb = g->B - b0 < nb_max ? g->B - b0 : nb_max;
            sila_wino_chunk(out, in, u, b, g, s.wino, b0, nb);
        }
    }
}

void sila_conv2d_forward(float *out, const float *in, const float *w, const float *b,
                         const struct sila_conv_geom *g, float *work)
{
    if (sila_wino_applies(g)) {
        wino_conv(out, in, w, b, g, work + flipped_floats(g), work, g);
        return;
    }
    const int nb_max = chunk_samples(g), nchunks = (g->B + nb_max - 1) / nb_max;
#pragma omp parallel num_threads(team_size(g))
    {
        struct scratch s = scratch_of(g, work, omp_get_thread_num());
#pragma omp for schedule(static)
        for (int c = 0; c < nchunks; c++) {
            int b0 = c * nb_max, nb = g->B - b0 < nb_max ? g->B - b0 : nb_max;
            forward_chunk(out, in, w, b, g, &s, b0, nb);
        }
    }
}

/* The kernel flipped in space with C and OC swapped: wt (C, OC·K·K). */
static void flip_kernel(float *wt, const float *w, const struct sila_conv_geom *g)
{
    const int kk = g->K * g->K;
    for (int oc = 0; oc < g->OC; oc++)
        for (int c = 0; c < g->C; c++)
            for (int i = 0; i < kk; i++)
                wt[((size_t)c * g->OC + oc) * kk + i] =
                    w[((size_t)oc * g->C + c) * kk + (kk - 1 - i)];
}

/* dX of one sample of a stride-1 conv: im2col of dY under dx_geom, times
 * the flipped kernel wt. */
static void dx_transposed(float *din_b, const float *dout_b, const float *wt,
                          const struct sila_conv_geom *g, float *col)
{
    struct sila_conv_geom t = dx_geom(g);
    const size_t hw = out_hw(&t);
    const int tckk = (int)col_rows(&t);
    im2col(col, hw, dout_b, &t);
    /* din_b (C, H·W) = wt (C, OC·K·K) · col (OC·K·K, H·W) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->C, (int)hw, tckk, 1.0f, wt, tckk, col,
                (int)hw, 0.0f, din_b, (int)hw);
}

/* Backward of the samples [b0, b0 + nb): dW (when with_dw) and db (when
 * with_db) into the thread's partials, dX into din (unless NULL). */
static void backward_chunk(float *din, const float *dout, const float *in, const float *w,
                           const float *wt, bool with_dw, bool with_db,
                           const struct sila_conv_geom *g, const struct scratch *s, int b0, int nb)
{
    const size_t hw = out_hw(g), in_sz = (size_t)g->C * g->H * g->W;
    const size_t out_sz = (size_t)g->OC * hw, n = (size_t)nb * hw;
    const int ckk = (int)col_rows(g);
    const float *gy = nb == 1 ? dout + b0 * out_sz : s->stage; /* dY as (OC, n) */
    for (int i = 0; nb > 1 && i < nb; i++)
        for (int oc = 0; oc < g->OC; oc++)
            memcpy(s->stage + oc * n + i * hw, dout + (b0 + i) * out_sz + oc * hw,
                   sizeof *s->stage * hw);
    for (int oc = 0; with_db && oc < g->OC; oc++) {
        float acc = 0.0f;
        for (size_t j = 0; j < n; j++)
            acc += gy[oc * n + j];
        s->db[oc] += acc;
    }
    for (int i = 0; with_dw && i < nb; i++)
        im2col(s->col + i * hw, n, in + (b0 + i) * in_sz, g);
    /* dw (OC, CKK) += gy (OC, n) · col^T (n, CKK) */
    if (with_dw)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->OC, ckk, (int)n, 1.0f, gy, (int)n,
                    s->col, (int)n, 1.0f, s->dw, ckk);
    if (!din)
        return;
    if (wt) {
        for (int i = 0; i < nb; i++)
            dx_transposed(din + (b0 + i) * in_sz, dout + (b0 + i) * out_sz, wt, g, s->col);
        return;
    }
    /* col (CKK, n) = w^T (CKK, OC) · gy (OC, n), folded back onto din */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, (int)n, g->OC, 1.0f, w, ckk, gy,
                (int)n, 0.0f, s->col, (int)n);
    memset(din + b0 * in_sz, 0, sizeof *din * in_sz * nb);
    for (int i = 0; i < nb; i++)
        col2im(din + (b0 + i) * in_sz, s->col + i * hw, n, g);
}

void sila_conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, const struct sila_conv_geom *g, float *work)
{
    const int nb_max = chunk_samples(g), nchunks = (g->B + nb_max - 1) / nb_max;
    const int T = team_size(g);
    const size_t nw = (size_t)g->OC * col_rows(g);
    const bool wino_dx = din && sila_wino_applies(g);
    float *wt = NULL;
    if (din && transposed_dx(g)) {
        wt = work;
        flip_kernel(wt, w, g);
    }
    for (int t = 0; t < T; t++) {
        struct scratch s = scratch_of(g, work, t);
        memset(s.dw, 0, sizeof *s.dw * (nw + (size_t)g->OC)); /* dw then db */
    }
    /* without dW, db or a dX by chunks, Winograd's dX is all there is */
    const int nrun = dw || db || (din && !wino_dx) ? nchunks : 0;
#pragma omp parallel num_threads(T) if (nrun > 0)
    {
        struct scratch s = scratch_of(g, work, omp_get_thread_num());
#pragma omp for schedule(static)
        for (int c = 0; c < nrun; c++) {
            int b0 = c * nb_max, nb = g->B - b0 < nb_max ? g->B - b0 : nb_max;
            backward_chunk(wino_dx ? NULL : din, dout, in, w, wt, dw != NULL, db != NULL, g, &s, b0,
                           nb);
        }
    }
    for (int t = 0; t < T; t++) {
        struct scratch s = scratch_of(g, work, t);
        for (size_t i = 0; dw && i < nw; i++)
            dw[i] += s.dw[i];
        for (int oc = 0; db && oc < g->OC; oc++)
            db[oc] += s.db[oc];
    }
    if (wino_dx) { /* dX: dY convolved with the flipped kernel, by Winograd */
        struct sila_conv_geom t = dx_geom(g);
        t.B = g->B;
        wino_conv(din, dout, wt, NULL, &t, work + flipped_floats(g), work, g);
    }
}
