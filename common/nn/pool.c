/* Max, average, adaptive average and global average pooling, and bilinear
 * upsampling (see kernels.h). Planes are
 * shared among OpenMP threads. */
#include <errno.h>
#include <float.h>
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

void sila_maxpool_forward(float *out, int32_t *argmax, const float *in,
                          const struct sila_pool_geom *g)
{
    size_t planes = (size_t)g->B * g->C, ihw = (size_t)g->H * g->W, ohw = (size_t)g->OH * g->OW;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < planes; p++) {
        const float *x = in + p * ihw;
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
                out[p * ohw + oh * g->OW + ow] = best;
                argmax[p * ohw + oh * g->OW + ow] = at;
            }
        }
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

void sila_avgpool_forward(float *out, const float *in, const struct sila_pool_geom *g)
{
    size_t planes = (size_t)g->B * g->C, ihw = (size_t)g->H * g->W, ohw = (size_t)g->OH * g->OW;
    float inv = 1.0f / (float)(g->K * g->K);
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < planes; p++) {
        const float *x = in + p * ihw;
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
                out[p * ohw + oh * g->OW + ow] = acc * inv;
            }
        }
    }
}

void sila_avgpool_backward(float *din, const float *dout, const struct sila_pool_geom *g)
{
    size_t planes = (size_t)g->B * g->C, ihw = (size_t)g->H * g->W, ohw = (size_t)g->OH * g->OW;
    float inv = 1.0f / (float)(g->K * g->K);
    memset(din, 0, sizeof *din * planes * ihw);
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < planes; p++) {
        float *dx = din + p * ihw;
        for (int oh = 0; oh < g->OH; oh++) {
            int h0, h1;
            window(oh, g->stride, g->pad, g->K, g->H, &h0, &h1);
            for (int ow = 0; ow < g->OW; ow++) {
                int w0, w1;
                window(ow, g->stride, g->pad, g->K, g->W, &w0, &w1);
                float d = dout[p * ohw + oh * g->OW + ow] * inv;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++)
                        dx[ih * g->W + iw] += d;
            }
        }
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
