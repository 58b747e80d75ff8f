/* The loss terms of the local objectives other than plain CE
 * (docs/methods.md, "Local objectives"): the pair losses on head logits
 * (SiLa with DML, cosub), the consensus loss of collab, and the two
 * penalties (channel redundancy of a module's output, filter similarity of
 * a conv layer).
 *
 * Conventions of loss.h: each returns the term's value (unweighted where it
 * says so) and ADDS scale x its gradient into the gradient buffers, which
 * may not be NULL here. "sg" marks a stop-gradient: that input is a constant
 * target for the term. Scratch buffers are the caller's, of the sizes given;
 * nothing allocates. */
#ifndef SILA_OBJECTIVE_H
#define SILA_OBJECTIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net.h"

/* SiLa with DML on a head's logits a and its twin's b (B, C):
 * CE(a) + lambda CE(b) + alpha T^2 [KL_T(sg p_b || p_a) + KL_T(sg p_a || p_b)],
 * p_x = softmax(x / T). Gradients into da and db; scratch 2 B C floats. */
double sila_dml_pair_loss(float *da, float *db, const float *a, const float *b,
                          const int32_t *labels, int B, int C, float smoothing, float lambda,
                          float alpha, float T, float *scratch);

/* Whether a row of C soft targets holds a target: a row summing to 0 (of
 * zeros, the targets being >= 0) is a sample without one yet. */
bool sila_has_target(const float *row, int C);

/* Collab on logits a (B, C) with soft targets q (B, C; a row of zeros: the
 * sample has none yet): per sample beta CE + (1 - beta) T^2 KL_T(q || p_a),
 * plain CE without a target; averaged over the batch. beta = 1 is
 * sila_ce_loss exactly. da may be NULL (value only). */
double sila_collab_loss(float *da, const float *a, const float *q, const int32_t *labels, int B,
                        int C, float smoothing, float beta, float T);

/* cosub on the logits of two drop-path passes a1, a2 (B, C):
 * (1 - w) CE(a1) + w/4 [BCE(a1, y) + BCE(a2, y) + BCE(a1, sg s(a2)) + BCE(a2, sg s(a1))],
 * y one-hot, s the sigmoid, BCE averaged over B C. Gradients into da1 and
 * da2; scratch 2 B C floats. */
double sila_cosub_loss(float *da1, float *da2, const float *a1, const float *a2,
                       const int32_t *labels, int B, int C, float smoothing, float w,
                       float *scratch);

/* Channel redundancy of z (B, s): with u the per-channel standardised z
 * over the B s.h s.w positions and R = u u^T / positions its correlation
 * matrix, the mean of R_ij^2 over i != j (0 for one channel). Adds
 * weight x its gradient into dz. Scratch: sila_redundancy_scratch(s). */
double sila_redundancy_penalty(float *dz, const float *z, int B, struct sila_shape s, float weight,
                               float *scratch);
size_t sila_redundancy_scratch(struct sila_shape s);

/* Filter similarity of a weight tensor w (oc rows of fan floats): the mean
 * of the squared cosine similarity over pairs of distinct rows (0 for one
 * row). Adds weight x its gradient into dw. Scratch: oc (fan + oc + 1) +
 * fan floats. */
double sila_filter_similarity(float *dw, const float *w, int oc, int fan, float weight,
                              float *scratch);

#endif
