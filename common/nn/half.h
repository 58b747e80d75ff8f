/* Values on the wire in 16 bits (job.wire_dtype, docs/jobs.md): bfloat16
 * (float32's sign and exponent, 7 bits of mantissa) and IEEE 754 binary16
 * (5 exponent bits, 10 of mantissa: finite up to 65504). Conversions from
 * float round to nearest, ties to even; back to float they are exact, so
 * rounding a value twice gives what rounding it once did. Computation
 * stays float32: a 16-bit type only says how a value crosses a module
 * boundary. */
#ifndef SILA_HALF_H
#define SILA_HALF_H

#include <stddef.h>
#include <stdint.h>

enum sila_dtype {
    SILA_DTYPE_F32 = 0,
    SILA_DTYPE_BF16 = 1,
    SILA_DTYPE_F16 = 2,
};

/* Bytes of one value. */
size_t sila_dtype_size(enum sila_dtype d);
/* Their names, as job files write them, by value ("f32", "bf16", "f16";
 * NULL after the last). */
extern const char *const sila_dtype_names[];

/* y[i] = x[i] rounded to d and back (y may be x); a copy for f32. A
 * finite value beyond d's range becomes an infinity. */
void sila_dtype_round(enum sila_dtype d, const float *x, float *y, size_t n);
/* The n values of x as d (2 bytes each, little-endian) at out, and back. */
void sila_dtype_pack(enum sila_dtype d, const float *x, uint16_t *out, size_t n);
void sila_dtype_unpack(enum sila_dtype d, const uint16_t *in, float *y, size_t n);

#endif
