/* Max, average, adaptive average and global average pooling, and bilinear
 * upsampling (see kernels.h). Planes, or chunks of output rows, are shared
 * among OpenMP threads. A 2x2 max pool whose windows tile the plane
 * (stride 2, no padding: the jobs' max pools) computes each output row's
 * windows eight at a time, over planes of even height in chunks of rows
 * that run across planes. A 2x2 average pool over a plane of even width
 * computes the windows at every pair of columns of the plane in one flat
 * loop and keeps the even rows' results: the odd rows' windows are
 * computed and dropped, twice the arithmetic, but one long vectorised loop
 * where rows of 7 or 14 outputs ran scalar. A max pool compares a
 * window's cells in row-major order; an average pool sums each window row
 * left to right and the row sums top to bottom (independent chains of
 * additions, so an aux head's 14x14 windows do not wait on one chain of
 * 196). Every path keeps these orders, so all give the same bits. */
#include <errno.h>
#include <float.h>
#include <stdbool.h>
#include <string.h>

#include "kernels.h"

int sila_pool_geom_init(struct sila_pool_geom *g, int B, int C, int H, int W, int K, int stride,
                        int pad)
{
    if (B < 1 || C < 1 || H < 1 || W < 1 || K < 1 || stride < 1 || pad < 0 || 2 * pad > K)
        return -EINVAL;
    if (H + 2 * pad < K || W + 2 * pad < K)
        return -EINVAL;
    *g = (struct sila_pool_geom){
        .B = B, .C = C, .H = H, .W = W, .K = K, .stride = stride, .pad = pad};
    g->OH = (H + 2 * pad - K) / stride + 1;
    g->OW = (W + 2 * pad - K) / stride + 1;
    return 0;
}

/* Clamped window [lo, hi) along one axis for output position o. */
static void window(int o, int stride, int pad, int K, int size, int *lo, int *hi)
{
    int start = o * stride - pad;
    *lo = start < 0 ? 0 : start;
    *hi = start + K > size ? size : start + K;
}

/* True when the windows tile the plane: stride K, no padding. */
static bool tiling(const struct sila_pool_geom *g)
{
    return g->stride == g->K && g->pad == 0;
}

/* One output row of a 2x2 tiling max pool from input rows r0, r1. */
static void maxpool_row2(float *out, int32_t *argmax, const float *r0, const float *r1, int32_t at0,
                         int32_t W, int OW)
{
    for (int ow = 0; ow < OW; ow++) {
        float v[4] = {r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]};
        int32_t a = at0 + 2 * ow, idx[4] = {a, a + 1, a + W, a + W + 1};
        float best = -FLT_MAX;
        int32_t at = a;
        for (int j = 0; j < 4; j++) {
            bool gt = v[j] > best;
            best = gt ? v[j] : best;
            at = gt ? idx[j] : at;
        }
        out[ow] = best;
        argmax[ow] = at;
    }
}

/* Eight lanes of floats and of int32s (GCC's vector extensions: the
 * target clones build them as AVX2 or as pairs of SSE2 registers). */
typedef float f32x8 __attribute__((vector_size(32)));
typedef int32_t i32x8 __attribute__((vector_size(32)));

/* Rows of at least this many outputs go eight windows at a time: a row's
 * spill then reaches no further than the next row, and what its last
 * eight windows read no further than the next pair of input rows. */
#define MAXPOOL_WIDE_MIN 7

/* Output rows [R0, R0 + n) of a 2x2 tiling max pool from `in`, as
 * maxpool_row2 gives them (the same bits): the rows of one plane, or,
 * when the planes' height is even, of the one plane all their rows make
 * (R = q·OH + oh: plane q, row oh; its input rows 2R and 2R + 1). Rows of
 * MAXPOOL_WIDE_MIN outputs or more go eight windows at a time; a row's
 * last eight may run past it, reading the input rows after its two and
 * writing up to 7 outputs of the next row, which the next row then
 * overwrites. So the last row of the n goes window by window, as do
 * narrower rows, and nothing is read or written past the rows. */
__attribute__((target_clones("avx2", "default"))) static void
maxpool_rows_2x2(float *out, int32_t *argmax, const float *in, size_t R0, int n, int32_t OH,
                 int32_t W, int32_t OW)
{
    const i32x8 even = {0, 2, 4, 6, 8, 10, 12, 14}, odd = even + 1;
    int32_t oh = (int32_t)(R0 % (size_t)OH);
    for (int r = 0; r < n; r++, oh = oh + 1 == OH ? 0 : oh + 1) {
        const size_t R = R0 + (size_t)r;
        const float *r0 = in + 2 * R * (size_t)W, *r1 = r0 + W;
        float *y = out + R * (size_t)OW;
        int32_t *am = argmax + R * (size_t)OW;
        if (r == n - 1 || OW < MAXPOOL_WIDE_MIN) {
            maxpool_row2(y, am, r0, r1, 2 * oh * W, W, OW);
            continue;
        }
        for (int32_t c = 0; c < OW; c += 8) {
            f32x8 p0, q0, p1, q1;
            memcpy(&p0, r0 + 2 * c, sizeof p0);
            memcpy(&q0, r0 + 2 * c + 8, sizeof q0);
            memcpy(&p1, r1 + 2 * c, sizeof p1);
            memcpy(&q1, r1 + 2 * c + 8, sizeof q1);
            /* the windows' four cells, in maxpool_row2's order */
            const f32x8 v[4] = {__builtin_shuffle(p0, q0, even), __builtin_shuffle(p0, q0, odd),
                                __builtin_shuffle(p1, q1, even), __builtin_shuffle(p1, q1, odd)};
            const i32x8 a = 2 * (oh * W + c) + even;
            const i32x8 idx[4] = {a, a + 1, a + W, a + W + 1};
            f32x8 best = (f32x8){0} - FLT_MAX;
            i32x8 at = a;
            for (int j = 0; j < 4; j++) {
                const i32x8 gt = v[j] > best;
                best = (f32x8)((gt & (i32x8)v[j]) | (~gt & (i32x8)best));
                at = (gt & idx[j]) | (~gt & at);
            }
            memcpy(y + c, &best, sizeof best);
            memcpy(am + c, &at, sizeof at);
        }
    }
}

/* One plane of a max pool with any windows. */
static void maxpool_plane(float *out, int32_t *argmax, const float *x,
                          const struct sila_pool_geom *g)
{
    for (int oh = 0; oh < g->OH; oh++) {
        int h0, h1;
        window(oh, g->stride, g->pad, g->K, g->H, &h0, &h1);
        for (int ow = 0; ow < g->OW; ow++) {
            int w0, w1;
            window(ow, g->stride, g->pad, g->K, g->W, &w0, &w1);
            float best = -FLT_MAX;
            int32_t at = h0 * g->W + w0;
            for (int ih = h0; ih < h1; ih++)
                for (int iw = w0; iw < w1; iw++)
                    if (x[ih * g->W + iw] > best) {
                        best = x[ih * g->W + iw];
                        at = ih * g->W + iw;
                    }
            out[oh * g->OW + ow] = best;
            argmax[oh * g->OW + ow] = at;
        }
    }
}

/* Output rows a thread takes at once in a 2x2 max pool over planes of
 * even height (the last one's windows one by one). */
#define MAXPOOL_ROWS 256

/* Rows of the chunk of MAXPOOL_ROWS that starts at row R0 of `rows`. */
static int chunk_rows(size_t rows, size_t R0)
{
    return (int)(rows - R0 < MAXPOOL_ROWS ? rows - R0 : MAXPOOL_ROWS);
}

void sila_maxpool_forward(float *out, int32_t *argmax, const float *in,
                          const struct sila_pool_geom *g)
{
    size_t planes = (size_t)g->B * g->C, ihw = (size_t)g->H * g->W, ohw = (size_t)g->OH * g->OW;
    const bool by2 = tiling(g) && g->K == 2;
    if (by2 && g->H % 2 == 0) {
        const size_t rows = planes * g->OH, chunks = (rows + MAXPOOL_ROWS - 1) / MAXPOOL_ROWS;
#pragma omp parallel for schedule(static)
        for (size_t c = 0; c < chunks; c++) {
            const size_t R0 = c * MAXPOOL_ROWS;
            maxpool_rows_2x2(out, argmax, in, R0, chunk_rows(rows, R0), g->OH, g->W, g->OW);
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < planes; p++) {
        if (by2)
            maxpool_rows_2x2(out + p * ohw, argmax + p * ohw, in + p * ihw, 0, g->OH, g->OH, g->W,
                             g->OW);
        else
            maxpool_plane(out + p * ohw, argmax + p * ohw, in + p * ihw, g);
    }
}

/* The input gradient of output rows [R0, R0 + n) of a 2x2 tiling max
 * pool over planes of even height and width (maxpool_rows_2x2's rows),
 * eight windows at a time: each window's four cells written at once, its
 * gradient at its winner and 0 elsewhere, so no cell is written twice and
 * none needs clearing first. A row's last eight windows may run past it
 * as maxpool_rows_2x2's do (they write cells of the next pair of input
 * rows, which the next row then overwrites: the second input row is
 * written after the first for that); the last row of the n goes window by
 * window. Needs OW >= MAXPOOL_WIDE_MIN. */
__attribute__((target_clones("avx2", "default"))) static void
maxpool_rows_wide_backward(float *din, const float *dout, const int32_t *argmax, size_t R0, int n,
                           int32_t OH, int32_t W, int32_t OW)
{
    const i32x8 even = {0, 2, 4, 6, 8, 10, 12, 14};
    const i32x8 lo = {0, 8, 1, 9, 2, 10, 3, 11}, hi = lo + 4;
    int32_t oh = (int32_t)(R0 % (size_t)OH);
    for (int r = 0; r < n; r++, oh = oh + 1 == OH ? 0 : oh + 1) {
        const size_t R = R0 + (size_t)r;
        const float *dy = dout + R * (size_t)OW;
        const int32_t *am = argmax + R * (size_t)OW;
        float *row[2] = {din + 2 * R * (size_t)W, din + (2 * R + 1) * (size_t)W};
        if (r == n - 1) {
            for (int32_t c = 0; c < OW; c++) {
                const int32_t a = 2 * (oh * W + c);
                row[0][2 * c] = am[c] == a ? dy[c] : 0.0f;
                row[0][2 * c + 1] = am[c] == a + 1 ? dy[c] : 0.0f;
                row[1][2 * c] = am[c] == a + W ? dy[c] : 0.0f;
                row[1][2 * c + 1] = am[c] == a + W + 1 ? dy[c] : 0.0f;
            }
            break;
        }
        for (int i = 0; i < 2; i++)
            for (int32_t c = 0; c < OW; c += 8) {
                f32x8 g;
                i32x8 at;
                memcpy(&g, dy + c, sizeof g);
                memcpy(&at, am + c, sizeof at);
                const i32x8 a = 2 * (oh * W + c) + i * W + even;
                const f32x8 left = (f32x8)((i32x8)g & (at == a));
                const f32x8 right = (f32x8)((i32x8)g & (at == a + 1));
                const f32x8 d0 = __builtin_shuffle(left, right, lo);
                const f32x8 d1 = __builtin_shuffle(left, right, hi);
                memcpy(row[i] + 2 * c, &d0, sizeof d0);
                memcpy(row[i] + 2 * c + 8, &d1, sizeof d1);
            }
    }
}

void sila_maxpool_backward(float *din, const float *dout, const int32_t *argmax,
                           const struct sila_pool_geom *g)
{
    size_t planes = (size_t)g->B * g->C, ihw = (size_t)g->H * g->W, ohw = (size_t)g->OH * g->OW;
    if (tiling(g) && g->K == 2 && g->H % 2 == 0 && g->W % 2 == 0 && g->OW >= MAXPOOL_WIDE_MIN) {
        const size_t rows = planes * g->OH, chunks = (rows + MAXPOOL_ROWS - 1) / MAXPOOL_ROWS;
#pragma omp parallel for schedule(static)
        for (size_t c = 0; c < chunks; c++) {
            const size_t R0 = c * MAXPOOL_ROWS;
            maxpool_rows_wide_backward(din, dout, argmax, R0, chunk_rows(rows, R0), g->OH, g->W,
                                       g->OW);
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < planes; p++) {
        memset(din + p * ihw, 0, sizeof *din * ihw);
        for (size_t o = 0; o < ohw; o++)
            din[p * ihw + argmax[p * ohw + o]] += dout[p * ohw + o];
    }
}

/* Outputs of 2x2 windows an average pool's flat pass computes at once
 * (of which about half are kept): a stack array of this many floats. */
#define FLAT_CHUNK 1024

/* dst := src, n floats, in 16-byte moves, the last one overlapping the one
 * before when 4 does not divide n: rows of 7 outputs, where calls to
 * memcpy cost more than the windows. */
static inline void copy_row(float *dst, const float *src, int n)
{
    if (n < 4) {
        memcpy(dst, src, sizeof *dst * (size_t)n);
        return;
    }
    for (int k = 0; k + 4 <= n; k += 4)
        memcpy(dst + k, src + k, 16);
    memcpy(dst + n - 4, src + n - 4, 16);
}

/* Average of the 2x2 windows whose top-left corners are x[2j], j in
 * [j0, j1) of a plane of width W (window_sum's order), times inv. */
__attribute__((target_clones("avx2", "default"))) static void
avgpool_flat2(float *avg, const float *x, int32_t j0, int32_t j1, int32_t W, float inv)
{
    for (int32_t j = j0; j < j1; j++) {
        const int32_t a = 2 * j;
        avg[j - j0] = ((x[a] + x[a + 1]) + (x[a + W] + x[a + W + 1])) * inv;
    }
}

/* One plane of a 2x2 average pool whose windows tile it, of even width:
 * flat passes over chunks of output rows. */
static void avgpool_plane_2x2(float *out, const float *x, const struct sila_pool_geom *g,
                              float inv)
{
    const int OW = g->OW, rows = FLAT_CHUNK / (2 * OW);
    float avg[FLAT_CHUNK];
    for (int oh0 = 0; oh0 < g->OH; oh0 += rows) {
        const int n = g->OH - oh0 < rows ? g->OH - oh0 : rows;
        const int32_t j0 = 2 * oh0 * OW;
        avgpool_flat2(avg, x, j0, j0 + (2 * n - 1) * OW, g->W, inv);
        for (int r = 0; r < n; r++)
            copy_row(out + (size_t)(oh0 + r) * OW, avg + 2 * r * OW, OW);
    }
}

/* The sum of window [h0, h1) x [w0, w1) of a plane of width W: each row
 * summed left to right, the row sums top to bottom (the rows' chains of
 * additions are independent, so they overlap). */
static float window_sum(const float *x, int W, int h0, int h1, int w0, int w1)
{
    float acc = 0.0f;
    for (int ih = h0; ih < h1; ih++) {
        const float *r = x + (size_t)ih * W;
        float rs = r[w0];
        for (int iw = w0 + 1; iw < w1; iw++)
            rs += r[iw];
        acc = ih == h0 ? rs : acc + rs;
    }
    return acc;
}

/* One plane of an average pool with any windows. */
static void avgpool_plane(float *out, const float *x, const struct sila_pool_geom *g, float inv)
{
    for (int oh = 0; oh < g->OH; oh++) {
        int h0, h1;
        window(oh, g->stride, g->pad, g->K, g->H, &h0, &h1);
        for (int ow = 0; ow < g->OW; ow++) {
            int w0, w1;
            window(ow, g->stride, g->pad, g->K, g->W, &w0, &w1);
            out[oh * g->OW + ow] = window_sum(x, g->W, h0, h1, w0, w1) * inv;
        }
    }
}

void sila_avgpool_forward(float *out, const float *in, const struct sila_pool_geom *g)
{
    size_t planes = (size_t)g->B * g->C, ihw = (size_t)g->H * g->W, ohw = (size_t)g->OH * g->OW;
    const float inv = 1.0f / (float)(g->K * g->K);
    const bool flat = tiling(g) && g->K == 2 && g->W % 2 == 0 && g->OW <= FLAT_CHUNK / 2;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < planes; p++) {
        if (flat)
            avgpool_plane_2x2(out + p * ohw, in + p * ihw, g, inv);
        else
            avgpool_plane(out + p * ohw, in + p * ihw, g, inv);
    }
}

/* e[2j] = e[2j+1] = d[j]·inv for j < n. */
__attribute__((target_clones("avx2", "default"))) static void
expand_pairs(float *e, const float *d, int n, float inv)
{
    for (int j = 0; j < n; j++) {
        const float v = d[j] * inv;
        e[2 * j] = v;
        e[2 * j + 1] = v;
    }
}

/* dx of one plane whose windows tile it: each input cell receives its one
 * window's share; cells no window covers (the last rows and columns when K
 * does not divide the size) receive zero. The K rows of a window row are
 * equal: the first is computed, the others copied. With 2x2 windows and an
 * even width, the first rows of a chunk of window rows come from one flat
 * pass (a row of outputs expands to a whole input row). */
static void avgpool_plane_tiling_backward(float *dx, const float *dy,
                                          const struct sila_pool_geom *g, float inv)
{
    const int K = g->K, W = g->W, OW = g->OW, cover = OW * K;
    const size_t row = sizeof *dx * (size_t)W;
    const int rows = K == 2 && W % 2 == 0 ? FLAT_CHUNK / W : 0;
    float e[FLAT_CHUNK];
    for (int oh0 = 0; oh0 < g->OH; oh0 += rows ? rows : 1) {
        const int n = !rows ? 1 : g->OH - oh0 < rows ? g->OH - oh0 : rows;
        if (rows)
            expand_pairs(e, dy + (size_t)oh0 * OW, n * OW, inv);
        for (int i = 0; i < n; i++) {
            const int oh = oh0 + i;
            float *r = dx + (size_t)oh * K * W;
            if (rows) {
                memcpy(r, e + (size_t)i * W, row);
            } else {
                const float *d = dy + (size_t)oh * OW;
                for (int ow = 0; ow < OW; ow++)
                    for (int kw = 0; kw < K; kw++)
                        r[ow * K + kw] = d[ow] * inv;
                for (int iw = cover; iw < W; iw++)
                    r[iw] = 0.0f;
            }
            for (int kh = 1; kh < K; kh++)
                memcpy(r + (size_t)kh * W, r, row);
        }
    }
    const int covered = g->OH * K;
    memset(dx + (size_t)covered * W, 0, row * (size_t)(g->H - covered));
}

/* dx += of one plane with any windows (dx zeroed by the caller). */
static void avgpool_plane_backward(float *dx, const float *dy, const struct sila_pool_geom *g,
                                   float inv)
{
    for (int oh = 0; oh < g->OH; oh++) {
        int h0, h1;
        window(oh, g->stride, g->pad, g->K, g->H, &h0, &h1);
        for (int ow = 0; ow < g->OW; ow++) {
            int w0, w1;
            window(ow, g->stride, g->pad, g->K, g->W, &w0, &w1);
            float d = dy[oh * g->OW + ow] * inv;
            for (int ih = h0; ih < h1; ih++)
                for (int iw = w0; iw < w1; iw++)
                    dx[ih * g->W + iw] += d;
        }
    }
}

void sila_avgpool_backward(float *din, const float *dout, const struct sila_pool_geom *g)
{
    size_t planes = (size_t)g->B * g->C, ihw = (size_t)g->H * g->W, ohw = (size_t)g->OH * g->OW;
    const float inv = 1.0f / (float)(g->K * g->K);
    const bool tiles = tiling(g);
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < planes; p++) {
        if (tiles) {
            avgpool_plane_tiling_backward(din + p * ihw, dout + p * ohw, g, inv);
            continue;
        }
        memset(din + p * ihw, 0, sizeof *din * ihw);
        avgpool_plane_backward(din + p * ihw, dout + p * ohw, g, inv);
    }
}

/* Adaptive window [lo, hi) along one axis of `size` cut into `n` cells. */
static void adaptive_window(int o, int n, int size, int *lo, int *hi)
{
    *lo = (int)((long)o * size / n);
    *hi = (int)(((long)(o + 1) * size + n - 1) / n);
}

void sila_adapool_forward(float *out, const float *in, int B, int C, int H, int W, int OH, int OW)
{
    size_t planes = (size_t)B * C, ihw = (size_t)H * W, ohw = (size_t)OH * OW;
#pragma omp parallel for schedule(static) if (planes * ihw >= SILA_PARALLEL_MIN_ELEMS)
    for (size_t p = 0; p < planes; p++) {
        const float *x = in + p * ihw;
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1;
            adaptive_window(oh, OH, H, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1;
                adaptive_window(ow, OW, W, &w0, &w1);
                float acc = 0.0f;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++)
                        acc += x[ih * W + iw];
                out[p * ohw + oh * OW + ow] = acc / (float)((h1 - h0) * (w1 - w0));
            }
        }
    }
}

void sila_adapool_backward(float *din, const float *dout, int B, int C, int H, int W, int OH,
                           int OW)
{
    size_t planes = (size_t)B * C, ihw = (size_t)H * W, ohw = (size_t)OH * OW;
#pragma omp parallel for schedule(static) if (planes * ihw >= SILA_PARALLEL_MIN_ELEMS)
    for (size_t p = 0; p < planes; p++) {
        float *dx = din + p * ihw;
        memset(dx, 0, sizeof *dx * ihw);
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1;
            adaptive_window(oh, OH, H, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1;
                adaptive_window(ow, OW, W, &w0, &w1);
                float d = dout[p * ohw + oh * OW + ow] / (float)((h1 - h0) * (w1 - w0));
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++)
                        dx[ih * W + iw] += d;
            }
        }
    }
}

/* Where output position o of n samples an axis of `size`: the lower input
 * index, the upper one (equal at the edge) and the weight of the upper. */
struct lerp {
    int lo, hi;
    float t;
};

static struct lerp lerp_at(int o, int n, int size)
{
    float scale = n > 1 ? (float)(size - 1) / (float)(n - 1) : 0.0f;
    float src = scale * (float)o;
    int lo = (int)src;
    if (lo > size - 1)
        lo = size - 1;
    return (struct lerp){lo, lo < size - 1 ? lo + 1 : lo, src - (float)lo};
}

void sila_upsample_forward(float *out, const float *in, int B, int C, int H, int W, int OH, int OW)
{
    size_t planes = (size_t)B * C, ihw = (size_t)H * W, ohw = (size_t)OH * OW;
#pragma omp parallel for schedule(static) if (planes * ohw >= SILA_PARALLEL_MIN_ELEMS)
    for (size_t p = 0; p < planes; p++) {
        const float *x = in + p * ihw;
        float *y = out + p * ohw;
        for (int oh = 0; oh < OH; oh++) {
            struct lerp r = lerp_at(oh, OH, H);
            const float *x0 = x + (size_t)r.lo * W, *x1 = x + (size_t)r.hi * W;
            for (int ow = 0; ow < OW; ow++) {
                struct lerp c = lerp_at(ow, OW, W);
                float top = (1.0f - c.t) * x0[c.lo] + c.t * x0[c.hi];
                float bottom = (1.0f - c.t) * x1[c.lo] + c.t * x1[c.hi];
                y[oh * OW + ow] = (1.0f - r.t) * top + r.t * bottom;
            }
        }
    }
}

void sila_upsample_backward(float *din, const float *dout, int B, int C, int H, int W, int OH,
                            int OW)
{
    size_t planes = (size_t)B * C, ihw = (size_t)H * W, ohw = (size_t)OH * OW;
#pragma omp parallel for schedule(static) if (planes * ohw >= SILA_PARALLEL_MIN_ELEMS)
    for (size_t p = 0; p < planes; p++) {
        float *dx = din + p * ihw;
        const float *dy = dout + p * ohw;
        memset(dx, 0, sizeof *dx * ihw);
        for (int oh = 0; oh < OH; oh++) {
            struct lerp r = lerp_at(oh, OH, H);
            float *d0 = dx + (size_t)r.lo * W, *d1 = dx + (size_t)r.hi * W;
            for (int ow = 0; ow < OW; ow++) {
                struct lerp c = lerp_at(ow, OW, W);
                float g = dy[oh * OW + ow], top = (1.0f - r.t) * g, bottom = r.t * g;
                d0[c.lo] += (1.0f - c.t) * top;
                d0[c.hi] += c.t * top;
                d1[c.lo] += (1.0f - c.t) * bottom;
                d1[c.hi] += c.t * bottom;
            }
        }
    }
}

void sila_gap_forward(float *out, const float *in, int B, int C, int HW)
{
    size_t planes = (size_t)B * C;
#pragma omp parallel for schedule(static) if (planes * HW >= SILA_PARALLEL_MIN_ELEMS)
    for (size_t p = 0; p < planes; p++)
        out[p] = (float)(sila_plane_sum(in + p * HW, HW) / HW);
}

void sila_gap_backward(float *din, const float *dout, int B, int C, int HW)
{
    size_t planes = (size_t)B * C;
#pragma omp parallel for schedule(static) if (planes * HW >= SILA_PARALLEL_MIN_ELEMS)
    for (size_t p = 0; p < planes; p++) {
        float d = dout[p] / (float)HW;
        for (int i = 0; i < HW; i++)
            din[p * HW + i] = d;
    }
}
