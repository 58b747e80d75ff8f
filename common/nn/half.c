/* 16-bit floats (see half.h), both rounded on the bits. NaN does not
 * arise: every value that reaches a boundary was checked finite
 * (sila_module_check). */
#include "half.h"

#include <string.h>

size_t sila_dtype_size(enum sila_dtype d)
{
    return d == SILA_DTYPE_F32 ? 4 : 2;
}

const char *const sila_dtype_names[] = {"f32", "bf16", "f16", NULL};

static uint16_t to_bf16(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u); /* to nearest, ties to even; overflows to infinity */
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* binary16 by hand, not through _Float16: GNU C's default excess
 * precision may let a conversion through it stay float. */
static uint16_t to_f16(float v)
{
    uint32_t x;
    memcpy(&x, &v, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x477FF000u) /* 65520 and above (and infinities): an infinity */
        return sign | 0x7C00u;
    if (ax < 0x33000001u) /* up to 2^-25, a tie with 0: zero */
        return sign;
    if (ax < 0x38800000u) { /* below 2^-14: a subnormal, in units of 2^-24 */
        uint32_t e = ax >> 23, m = (ax & 0x7FFFFFu) | 0x800000u, shift = 126 - e;
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        q += rem > half || (rem == half && (q & 1u));
        return sign | (uint16_t)q;
    }
    uint32_t h = (ax >> 13) - ((127u - 15u) << 10), rem = ax & 0x1FFFu;
    h += rem > 0x1000u || (rem == 0x1000u && (h & 1u)); /* may carry into the exponent */
    return sign | (uint16_t)h;
}

static float from_f16(uint16_t u)
{
    uint32_t sign = (uint32_t)(u & 0x8000u) << 16, e = (u >> 10) & 0x1Fu, m = u & 0x3FFu;
    if (e == 0) { /* zero or a subnormal: m * 2^-24, exact */
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    uint32_t x = sign | (e == 31 ? 0x7F800000u : (e + 112u) << 23) | (m << 13);
    float v;
    memcpy(&v, &x, sizeof v);
    return v;
}

void sila_dtype_round(enum sila_dtype d, const float *x, float *y, size_t n)
{
    if (d == SILA_DTYPE_BF16)
        for (size_t i = 0; i < n; i++)
            y[i] = from_bf16(to_bf16(x[i]));
    else if (d == SILA_DTYPE_F16)
        for (size_t i = 0; i < n; i++)
            y[i] = from_f16(to_f16(x[i]));
    else if (y != x)
        memcpy(y, x, sizeof *y * n);
}

void sila_dtype_pack(enum sila_dtype d, const float *x, uint16_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = d == SILA_DTYPE_BF16 ? to_bf16(x[i]) : to_f16(x[i]);
}

void sila_dtype_unpack(enum sila_dtype d, const uint16_t *in, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = d == SILA_DTYPE_BF16 ? from_bf16(in[i]) : from_f16(in[i]);
}
