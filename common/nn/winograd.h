/* 3x3 convolutions at stride 1 with padding 1 by Winograd's minimal
 * filtering F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for
 * Convolutional Neural Networks", 2016): each 4x4 input tile and each
 * kernel are transformed, the 16 transformed positions become 16 products
 * (OC, C) x (C, tiles) on sgemm, and each product tile is transformed back
 * to a 2x2 output tile: 16 multiply-adds per 4 outputs and input channel
 * instead of 36. Private to conv.c, which uses it for the forward pass and
 * for dX (a convolution of dY with the flipped kernel) when it pays. */
#ifndef SILA_WINOGRAD_H
#define SILA_WINOGRAD_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels.h"

/* True when g is a 3x3, stride-1, padding-1 convolution with enough
 * channels for the transforms to pay. */
bool sila_wino_applies(const struct sila_conv_geom *g);
/* Samples per chunk, and the floats of one thread's scratch for a chunk. */
int sila_wino_chunk_samples(const struct sila_conv_geom *g);
size_t sila_wino_thread_floats(const struct sila_conv_geom *g);
/* u (16, OC, C) <- the transformed kernel w (OC, C, 3, 3). */
void sila_wino_kernel(float *u, const float *w, int OC, int C);
/* out samples [b0, b0 + nb) (NCHW, g's output) from in (g's input) and u,
 * plus b (OC) unless NULL; scratch: sila_wino_thread_floats(g) floats. */
void sila_wino_chunk(float *out, const float *in, const float *u, const float *b,
                     const struct sila_conv_geom *g, float *scratch, int b0, int nb);

#endif
