/* Elementwise kernels (see kernels.h): the finite check, ReLU, dropout and
 * drop-path. ReLU and dropout are split among OpenMP threads when large;
 * a dropout mask takes one key from the layer's rng and hashes each
 * element's index with it (sila_counter_uniform), so the mask does not
 * depend on the thread count; drop-path draws one number per sample in
 * order. */
#include "kernels.h"

#include <stdint.h>
#include <string.h>

/* The check looks at the exponent bits (all ones: infinity or NaN), which
 * vectorises, and stops at the first block that has one. */
#define FINITE_BLOCK 4096

bool sila_all_finite(const float *x, size_t n)
{
    for (size_t i0 = 0; i0 < n; i0 += FINITE_BLOCK) {
        size_t i1 = n - i0 < FINITE_BLOCK ? n : i0 + FINITE_BLOCK;
        uint32_t bad = 0;
        for (size_t i = i0; i < i1; i++) {
            uint32_t bits;
            memcpy(&bits, x + i, sizeof bits);
            bad |= (bits & 0x7f800000u) == 0x7f800000u;
        }
        if (bad)
            return false;
    }
    return true;
}

void sila_relu_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= SILA_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

void sila_relu_backward(float *din, const float *dout, const float *out, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= SILA_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n; i++) {
        float g = dout[i]; /* loaded unconditionally, so the select vectorises */
        din[i] = out[i] > 0.0f ? g : 0.0f;
    }
}

/* Elements a dropout task draws at once. */
#define DROPOUT_BLOCK 4096

/* Elements [i0, i1) of a dropout mask and output. The hash's 32-bit
 * multiplies make this compute-bound; AVX2 has them natively (x86-64's
 * baseline emulates them), so the function is built twice and the loader
 * picks what the CPU runs. Integer hashing, a compare and one float
 * multiply: the same bits either way. */
__attribute__((target_clones("avx2", "default"))) static void
dropout_block(float *out, float *mask, const float *in, size_t i0, size_t i1, uint64_t key,
              float p, float keep)
{
    for (size_t i = i0; i < i1; i++) {
        float m = sila_counter_uniform(key, (uint32_t)i) < p ? 0.0f : keep;
        mask[i] = m;
        out[i] = in[i] * m;
    }
}

void sila_dropout_forward(float *out, float *mask, const float *in, size_t n, float p,
                          struct sila_rng *rng)
{
    const float keep = 1.0f / (1.0f - p);
    const uint64_t key = sila_rng_u64(rng);
    const size_t blocks = (n + DROPOUT_BLOCK - 1) / DROPOUT_BLOCK;
#pragma omp parallel for schedule(static) if (n >= SILA_PARALLEL_MIN_ELEMS)
    for (size_t k = 0; k < blocks; k++) {
        size_t i0 = k * DROPOUT_BLOCK, i1 = n - i0 < DROPOUT_BLOCK ? n : i0 + DROPOUT_BLOCK;
        dropout_block(out, mask, in, i0, i1, key, p, keep);
    }
}

void sila_dropout_backward(float *din, const float *dout, const float *mask, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= SILA_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n; i++)
        din[i] = dout[i] * mask[i];
}

void sila_droppath_forward(float *out, float *keep, const float *in, int B, size_t per_sample,
                           float p, struct sila_rng *rng)
{
    float scale = 1.0f / (1.0f - p);
    for (int b = 0; b < B; b++) {
        keep[b] = sila_rng_uniform(rng) < p ? 0.0f : scale;
        for (size_t i = 0; i < per_sample; i++)
            out[b * per_sample + i] = in[b * per_sample + i] * keep[b];
    }
}

void sila_droppath_backward(float *din, const float *dout, const float *keep, int B,
                            size_t per_sample)
{
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < per_sample; i++)
            din[b * per_sample + i] = dout[b * per_sample + i] * keep[b];
}
