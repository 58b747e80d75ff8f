/* Batch normalisation over (B, H, W) for each channel (see kernels.h).
 * Sums run per sample plane in float over 8 independent lanes, several
 * rounds of them at once into separate accumulators (fixed order, so
 * results do not depend on the compiler or the instruction set; the
 * independent vector additions hide their latency, which capped one round
 * at a third of memory speed), and across planes in double: a channel can
 * hold 10^5 values. The loops over a plane are built for AVX2 besides the
 * baseline (the loader picks; no fused multiply-add in either, so both
 * give the same bits). Channels are
 * shared among OpenMP threads; each is computed by one thread, so results
 * do not depend on the thread count. */
#include <math.h>

#include "kernels.h"

#define LANES 8
#define PLANE_LOOP __attribute__((target_clones("avx2", "default")))

/* The sum of four rounds' lanes by a fixed tree in float (the rounds, then
 * halves of the lanes); a serial chain in double would cost more than the
 * additions of a 7x7 plane themselves. (Four separate arrays, not one of
 * four rows: GCC keeps these in registers.) */
static inline float rounds_sum(const float *a0, const float *a1, const float *a2, const float *a3)
{
    float f[LANES];
    for (int j = 0; j < LANES; j++)
        f[j] = (a0[j] + a1[j]) + (a2[j] + a3[j]);
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++)
            f[j] += f[j + w];
    return f[0];
}

PLANE_LOOP double sila_plane_sum(const float *x, int n)
{
    float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};
    int i = 0;
    for (; i + 4 * LANES <= n; i += 4 * LANES)
        for (int j = 0; j < LANES; j++) {
            a0[j] += x[i + j];
            a1[j] += x[i + LANES + j];
            a2[j] += x[i + 2 * LANES + j];
            a3[j] += x[i + 3 * LANES + j];
        }
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            a0[j] += x[i + j];
    double s = rounds_sum(a0, a1, a2, a3);
    for (; i < n; i++)
        s += x[i];
    return s;
}

/* Σ (x[i] - mean)² for i < n. */
PLANE_LOOP static double plane_sq_dev(const float *x, int n, float mean)
{
    float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};
    int i = 0;
    for (; i + 4 * LANES <= n; i += 4 * LANES)
        for (int j = 0; j < LANES; j++) {
            float d0 = x[i + j] - mean, d1 = x[i + LANES + j] - mean,
                  d2 = x[i + 2 * LANES + j] - mean, d3 = x[i + 3 * LANES + j] - mean;
            a0[j] += d0 * d0;
            a1[j] += d1 * d1;
            a2[j] += d2 * d2;
            a3[j] += d3 * d3;
        }
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float d = x[i + j] - mean;
            a0[j] += d * d;
        }
    double s = rounds_sum(a0, a1, a2, a3);
    for (; i < n; i++)
        s += (double)(x[i] - mean) * (x[i] - mean);
    return s;
}

/* Σ dy[i] and Σ dy[i]·x̂[i] with x̂ = (x - mean)·invstd, added to the sums. */
PLANE_LOOP static void plane_grad_sums(const float *dy, const float *x, int n, float mean,
                                       float invstd, double *sum_dy, double *sum_dy_xhat)
{
    float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};
    float b0[LANES] = {0}, b1[LANES] = {0}, b2[LANES] = {0}, b3[LANES] = {0};
    int i = 0;
    for (; i + 4 * LANES <= n; i += 4 * LANES)
        for (int j = 0; j < LANES; j++) {
            const int k0 = i + j, k1 = k0 + LANES, k2 = k1 + LANES, k3 = k2 + LANES;
            a0[j] += dy[k0];
            a1[j] += dy[k1];
            a2[j] += dy[k2];
            a3[j] += dy[k3];
            b0[j] += dy[k0] * ((x[k0] - mean) * invstd);
            b1[j] += dy[k1] * ((x[k1] - mean) * invstd);
            b2[j] += dy[k2] * ((x[k2] - mean) * invstd);
            b3[j] += dy[k3] * ((x[k3] - mean) * invstd);
        }
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            a0[j] += dy[i + j];
            b0[j] += dy[i + j] * ((x[i + j] - mean) * invstd);
        }
    *sum_dy += rounds_sum(a0, a1, a2, a3);
    *sum_dy_xhat += rounds_sum(b0, b1, b2, b3);
    for (; i < n; i++) {
        *sum_dy += dy[i];
        *sum_dy_xhat += dy[i] * ((x[i] - mean) * invstd);
    }
}

/* out = scale·x + shift over one plane of n values. */
PLANE_LOOP static void plane_affine(float *out, const float *x, int n, float scale, float shift)
{
    for (int i = 0; i < n; i++)
        out[i] = x[i] * scale + shift;
}

/* din = k·(dy − mdy − x̂·mdyx) over one plane, x̂ = (x − mean)·invstd. */
PLANE_LOOP static void plane_din(float *din, const float *dy, const float *x, int n, float mean,
                                 float invstd, float k, float mdy, float mdyx)
{
    for (int i = 0; i < n; i++) {
        float xhat = (x[i] - mean) * invstd;
        din[i] = k * (dy[i] - mdy - xhat * mdyx);
    }
}

/* Asks the cache for the n floats at p (to be read, or to be written when
 * `w`). A channel's plane of the next sample lies a whole sample further
 * on, where the hardware's prefetcher starts cold: on planes of at least
 * PREFETCH_MIN_PLANE floats (the CNN's 28x28) the passes ask for the plane
 * planes_ahead() on, at least PREFETCH_FLOATS away, so that it has arrived
 * when its turn comes. This cut the batch norm at 32x28x28 by a fifth to
 * a third (bench_kernels); on smaller planes it measured no gain. */
#define PREFETCH_MIN_PLANE 512
#define PREFETCH_FLOATS 1024

static inline void plane_prefetch(const float *p, int n, bool w)
{
    for (int i = 0; i < n; i += 16)
        if (w)
            __builtin_prefetch(p + i, 1, 3);
        else
            __builtin_prefetch(p + i, 0, 3);
}

/* How many planes on to prefetch; 0: none. */
static inline int planes_ahead(int HW)
{
    return HW < PREFETCH_MIN_PLANE ? 0 : (PREFETCH_FLOATS + HW - 1) / HW;
}

/* Mean and biased variance of channel c over the batch. */
static void channel_stats(const float *in, int B, int C, int HW, int c, double *ret_mean,
                          double *ret_var)
{
    const int d = planes_ahead(HW);
    double sum = 0.0, sq = 0.0, n = (double)B * HW;
    for (int b = 0; b < B; b++) {
        size_t off = ((size_t)b * C + c) * HW;
        if (d && b + d < B)
            plane_prefetch(in + off + (size_t)d * C * HW, HW, false);
        sum += sila_plane_sum(in + off, HW);
    }
    float mean = (float)(sum / n);
    for (int b = 0; b < B; b++)
        sq += plane_sq_dev(in + ((size_t)b * C + c) * HW, HW, mean);
    *ret_mean = sum / n;
    *ret_var = sq / n;
}

/* out = scale·in + shift over channel c of every sample. */
static void channel_affine(float *out, const float *in, int B, int C, int HW, int c, float scale,
                           float shift)
{
    const int d = planes_ahead(HW);
    for (int b = 0; b < B; b++) {
        size_t off = ((size_t)b * C + c) * HW;
        if (d && b + d < B)
            plane_prefetch(out + off + (size_t)d * C * HW, HW, true);
        plane_affine(out + off, in + off, HW, scale, shift);
    }
}

void sila_bn_running_update(float *run_mean, float *run_var, double mean, double var, double n,
                            float momentum)
{
    double unbiased = n > 1 ? var * n / (n - 1) : var;
    *run_mean = (1.0f - momentum) * *run_mean + momentum * (float)mean;
    *run_var = (1.0f - momentum) * *run_var + momentum * (float)unbiased;
}

void sila_bn_forward_train(float *out, float *mean, float *invstd, float *run_mean, float *run_var,
                           const float *in, const float *gamma, const float *beta, float momentum,
                           float eps, int B, int C, int HW)
{
    double n = (double)B * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double m, v;
        channel_stats(in, B, C, HW, c, &m, &v);
        float is = (float)(1.0 / sqrt(v + eps));
        mean[c] = (float)m;
        invstd[c] = is;
        sila_bn_running_update(run_mean + c, run_var + c, m, v, n, momentum);
        float scale = gamma[c] * is;
        channel_affine(out, in, B, C, HW, c, scale, beta[c] - (float)m * scale);
    }
}

void sila_bn_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                          const float *run_mean, const float *run_var, float eps, int B, int C,
                          int HW)
{
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float scale = gamma[c] / sqrtf(run_var[c] + eps);
        channel_affine(out, in, B, C, HW, c, scale, beta[c] - run_mean[c] * scale);
    }
}

void sila_bn_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                      const float *mean, const float *invstd, const float *gamma, int B, int C,
                      int HW)
{
    const double n = (double)B * HW;
    const int d = planes_ahead(HW);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int b = 0; b < B; b++) {
            size_t off = ((size_t)b * C + c) * HW;
            if (d && b + d < B) {
                plane_prefetch(dout + off + (size_t)d * C * HW, HW, false);
                plane_prefetch(in + off + (size_t)d * C * HW, HW, false);
            }
            plane_grad_sums(dout + off, in + off, HW, mean[c], invstd[c], &sum_dy, &sum_dy_xhat);
        }
        if (dgamma) {
            dgamma[c] += (float)sum_dy_xhat;
            dbeta[c] += (float)sum_dy;
        }
        if (!din)
            continue;
        /* din = γ·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)) */
        float k = gamma[c] * invstd[c];
        float mdy = (float)(sum_dy / n), mdyx = (float)(sum_dy_xhat / n);
        for (int b = 0; b < B; b++) {
            size_t off = ((size_t)b * C + c) * HW;
            if (d && b + d < B)
                plane_prefetch(din + off + (size_t)d * C * HW, HW, true);
            plane_din(din + off, dout + off, in + off, HW, mean[c], invstd[c], k, mdy, mdyx);
        }
    }
}
