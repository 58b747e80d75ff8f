/* Losses over a batch of logits (B, C), each averaged over the batch.
 *
 * Every loss returns its value (unscaled, in double) and ADDS
 * scale * d(loss)/d(logits) into dlogits (B, C), so that weighted sums of
 * losses compose by calling several of them on one zeroed gradient buffer.
 * dlogits may be NULL when only the value is wanted. No function allocates. */
#ifndef SILA_LOSS_H
#define SILA_LOSS_H

#include <stdint.h>

/* Softmax cross-entropy against integer labels in [0, C), with label
 * smoothing s in [0, 1): the target is (1-s)·onehot + s/C. */
double sila_ce_loss(float *dlogits, const float *logits, const int32_t *labels, int B, int C,
                    float smoothing, float scale);

/* Sigmoid binary cross-entropy with logits against targets in [0, 1]
 * (B, C), averaged over all B·C entries (PyTorch's BCEWithLogitsLoss). */
double sila_bce_logits_loss(float *dlogits, const float *logits, const float *targets, int B, int C,
                            float scale);

/* KL(q || p_T) with p_T = softmax(logits / T) and q (B, C) a constant target
 * distribution (rows summing to 1, already softened by the caller), summed over
 * classes and averaged over the batch. No T² factor: objectives that want
 * one pass it in `scale`. */
double sila_kl_loss(float *dlogits, const float *logits, const float *q, int B, int C, float T,
                    float scale);

/* Row-wise softmax of logits / T into probs (B, C); probs may alias logits. */
void sila_softmax(float *probs, const float *logits, int B, int C, float T);

/* Number of rows whose arg-max equals the label. */
int sila_count_correct(const float *logits, const int32_t *labels, int B, int C);

#endif
