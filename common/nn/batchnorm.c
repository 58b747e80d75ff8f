/* Batch normalisation over (B, H, W) for each channel (see kernels.h).
 * Sums run per sample plane in float over 8 independent lanes (one vector
 * register, fixed order, so results do not depend on the compiler), and
 * across planes in double: a channel can hold 10^5 values. Channels are
 * shared among OpenMP threads; each is computed by one thread, so results
 * do not depend on the thread count. */
#include <math.h>

#include "kernels.h"

#define LANES 8

double sila_plane_sum(const float *x, int n)
{
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] += x[i + j];
    double s = 0.0;
    for (int j = 0; j < LANES; j++)
        s += acc[j];
    for (; i < n; i++)
        s += x[i];
    return s;
}

/* Σ (x[i] - mean)² for i < n. */
static double plane_sq_dev(const float *x, int n, float mean)
{
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float d = x[i + j] - mean;
            acc[j] += d * d;
        }
    double s = 0.0;
    for (int j = 0; j < LANES; j++)
        s += acc[j];
    for (; i < n; i++)
        s += (double)(x[i] - mean) * (x[i] - mean);
    return s;
}

/* Σ dy[i] and Σ dy[i]·x̂[i] with x̂ = (x - mean)·invstd, added to the sums. */
static void plane_grad_sums(const float *dy, const float *x, int n, float mean, float invstd,
                            double *sum_dy, double *sum_dy_xhat)
{
    float a[LANES] = {0}, b[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            a[j] += dy[i + j];
            b[j] += dy[i + j] * ((x[i + j] - mean) * invstd);
        }
    for (int j = 0; j < LANES; j++) {
        *sum_dy += a[j];
        *sum_dy_xhat += b[j];
    }
    for (; i < n; i++) {
        *sum_dy += dy[i];
        *sum_dy_xhat += dy[i] * ((x[i] - mean) * invstd);
    }
}

/* Mean and biased variance of channel c over the batch. */
static void channel_stats(const float *in, int B, int C, int HW, int c, double *ret_mean,
                          double *ret_var)
{
    double sum = 0.0, sq = 0.0, n = (double)B * HW;
    for (int b = 0; b < B; b++)
        sum += sila_plane_sum(in + ((size_t)b * C + c) * HW, HW);
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
    for (int b = 0; b < B; b++) {
        size_t off = ((size_t)b * C + c) * HW;
        for (int i = 0; i < HW; i++)
            out[off + i] = in[off + i] * scale + shift;
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
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int b = 0; b < B; b++) {
            size_t off = ((size_t)b * C + c) * HW;
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
            for (int i = 0; i < HW; i++) {
                float xhat = (in[off + i] - mean[c]) * invstd[c];
                din[off + i] = k * (dout[off + i] - mdy - xhat * mdyx);
            }
        }
    }
}
