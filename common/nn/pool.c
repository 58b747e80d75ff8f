/* Max, average, adaptive average and global average pooling, and bilinear
 * upsampling (see kernels.h). Planes are shared among OpenMP threads.
 * Windows that tile the plane (stride K, no padding: none is clipped) run
 * without window arithmetic, row by row over the outputs so that the
 * loops vectorise (max pooling: 2x2 windows, the jobs' only tiling ones);
 * each output's comparisons and sums keep the window's row-major order,
 * so both paths give the same bits. */
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

/* One plane of a 2x2 max pool whose windows tile it, row by row. */
static void maxpool_plane_2x2(float *out, int32_t *argmax, const float *x,
                              const struct sila_pool_geom *g)
{
    for (int oh = 0; oh < g->OH; oh++) {
        const int32_t at0 = 2 * oh * g->W;
        maxpool_row2(out + (size_t)oh * g->OW, argmax + (size_t)oh * g->OW, x + at0,
                     x + at0 + g->W, at0, g->W, g->OW);
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

void sila_maxpool_forward(float *out, int32_t *argmax, const float *in,
                          const struct sila_pool_geom *g)
{
    size_t planes = (size_t)g->B * g->C, ihw = (size_t)g->H * g->W, ohw = (size_t)g->OH * g->OW;
    const bool by2 = tiling(g) && g->K == 2;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < planes; p++) {
        if (by2)
            maxpool_plane_2x2(out + p * ohw, argmax + p * ohw, in + p * ihw, g);
        else
            maxpool_plane(out + p * ohw, argmax + p * ohw, in + p * ihw, g);
    }
}

void sila_maxpool_backward(float *din, const float *dout, const int32_t *argmax,
                           const struct sila_pool_geom *g)
{
    size_t planes = (size_t)g->B * g->C, ihw = (size_t)g->H * g->W, ohw = (size_t)g->OH * g->OW;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < planes; p++) {
        memset(din + p * ihw, 0, sizeof *din * ihw);
        for (size_t o = 0; o < ohw; o++)
            din[p * ihw + argmax[p * ohw + o]] += dout[p * ohw + o];
    }
}

/* One plane of an average pool whose windows tile it: each output sums its
 * window row by row from 0, as the general path does. */
static void avgpool_plane_tiling(float *out, const float *x, const struct sila_pool_geom *g,
                                 float inv)
{
    const int K = g->K, W = g->W;
    for (int oh = 0; oh < g->OH; oh++) {
        float *o = out + (size_t)oh * g->OW;
        const float *rows = x + (size_t)oh * K * W;
        for (int ow = 0; ow < g->OW; ow++)
            o[ow] = 0.0f;
        for (int kh = 0; kh < K; kh++) {
            const float *r = rows + (size_t)kh * W;
            if (K == 2)
                for (int ow = 0; ow < g->OW; ow++)
                    o[ow] = o[ow] + r[2 * ow] + r[2 * ow + 1];
            else
                for (int ow = 0; ow < g->OW; ow++)
                    for (int kw = 0; kw < K; kw++)
                        o[ow] += r[ow * K + kw];
        }
        for (int ow = 0; ow < g->OW; ow++)
            o[ow] *= inv;
    }
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
            float acc = 0.0f;
            for (int ih = h0; ih < h1; ih++)
                for (int iw = w0; iw < w1; iw++)
                    acc += x[ih * g->W + iw];
            out[oh * g->OW + ow] = acc * inv;
        }
    }
}

void sila_avgpool_forward(float *out, const float *in, const struct sila_pool_geom *g)
{
    size_t planes = (size_t)g->B * g->C, ihw = (size_t)g->H * g->W, ohw = (size_t)g->OH * g->OW;
    const float inv = 1.0f / (float)(g->K * g->K);
    const bool tiles = tiling(g);
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < planes; p++) {
        if (tiles)
            avgpool_plane_tiling(out + p * ohw, in + p * ihw, g, inv);
        else
            avgpool_plane(out + p * ohw, in + p * ihw, g, inv);
    }
}

/* dx of one plane whose windows tile it: each input cell receives its one
 * window's share; cells no window covers (the last rows and columns when K
 * does not divide the size) receive zero. */
static void avgpool_plane_tiling_backward(float *dx, const float *dy,
                                          const struct sila_pool_geom *g, float inv)
{
    const int K = g->K, W = g->W, cover = g->OW * K;
    for (int ih = 0; ih < g->H; ih++) {
        float *r = dx + (size_t)ih * W;
        const int oh = ih / K;
        if (oh >= g->OH) {
            memset(r, 0, sizeof *r * (size_t)W);
            continue;
        }
        const float *d = dy + (size_t)oh * g->OW;
        if (K == 2)
            for (int iw = 0; iw < cover; iw++)
                r[iw] = d[iw / 2] * inv;
        else
            for (int ow = 0; ow < g->OW; ow++)
                for (int kw = 0; kw < K; kw++)
                    r[ow * K + kw] = d[ow] * inv;
        for (int iw = cover; iw < W; iw++)
            r[iw] = 0.0f;
    }
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
