/* Loss terms of the local objectives (see objective.h). The pair and
 * consensus losses compose loss.h's; the penalties lower their matrix
 * products onto cblas_sgemm and keep per-channel sums in double. */
#include "objective.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "loss.h"

double sila_dml_pair_loss(float *da, float *db, const float *a, const float *b,
                          const int32_t *labels, int B, int C, float smoothing, float lambda,
                          float alpha, float T, float *scratch)
{
    double v = sila_ce_loss(da, a, labels, B, C, smoothing, 1.0f);
    if (lambda > 0.0f)
        v += lambda * sila_ce_loss(db, b, labels, B, C, smoothing, lambda);
    if (alpha > 0.0f) {
        float *pa = scratch, *pb = scratch + (size_t)B * C, s = alpha * T * T;
        sila_softmax(pa, a, B, C, T);
        sila_softmax(pb, b, B, C, T);
        v += s * (sila_kl_loss(da, a, pb, B, C, T, s) + sila_kl_loss(db, b, pa, B, C, T, s));
    }
    return v;
}

bool sila_has_target(const float *row, int C)
{
    double mass = 0.0;
    for (int c = 0; c < C; c++)
        mass += row[c];
    return mass != 0.0;
}

double sila_collab_loss(float *da, const float *a, const float *q, const int32_t *labels, int B,
                        int C, float smoothing, float beta, float T)
{
    if (beta == 1.0f)
        return sila_ce_loss(da, a, labels, B, C, smoothing, 1.0f);
    double total = 0.0, soft = (1.0 - beta) * T * T;
    for (int b = 0; b < B; b++) {
        size_t at = (size_t)b * C;
        float *d = da ? da + at : NULL;
        if (!sila_has_target(q + at, C)) {
            total += sila_ce_loss(d, a + at, labels + b, 1, C, smoothing, 1.0f / B);
            continue;
        }
        total += beta * sila_ce_loss(d, a + at, labels + b, 1, C, smoothing, beta / B);
        total += soft * sila_kl_loss(d, a + at, q + at, 1, C, T, (float)(soft / B));
    }
    return total / B;
}

static void sigmoid(float *out, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(1.0 / (1.0 + exp(-(double)x[i])));
}

double sila_cosub_loss(float *da1, float *da2, const float *a1, const float *a2,
                       const int32_t *labels, int B, int C, float smoothing, float w,
                       float *scratch)
{
    size_t n = (size_t)B * C;
    double v = 0.0;
    if (w < 1.0f)
        v += (1.0f - w) * sila_ce_loss(da1, a1, labels, B, C, smoothing, 1.0f - w);
    if (w == 0.0f)
        return v;
    float *y = scratch, *s = scratch + n, q = 0.25f * w;
    memset(y, 0, sizeof *y * n);
    for (int b = 0; b < B; b++)
        y[(size_t)b * C + labels[b]] = 1.0f;
    v += q * sila_bce_logits_loss(da1, a1, y, B, C, q);
    v += q * sila_bce_logits_loss(da2, a2, y, B, C, q);
    sigmoid(s, a2, n);
    v += q * sila_bce_logits_loss(da1, a1, s, B, C, q);
    sigmoid(s, a1, n);
    v += q * sila_bce_logits_loss(da2, a2, s, B, C, q);
    return v;
}

/* ---- penalties ---- */

size_t sila_redundancy_scratch(struct sila_shape s)
{
    size_t C = (size_t)s.c;
    return 2 * C + 2 * C * C + C * s.h * s.w;
}

/* U = (z_b - mean) x inv, channel by channel, for sample b. */
static void standardise(float *U, const float *zb, const float *mean, const float *inv, int C,
                        int HW)
{
    for (int c = 0; c < C; c++)
        for (int i = 0; i < HW; i++)
            U[(size_t)c * HW + i] = (zb[(size_t)c * HW + i] - mean[c]) * inv[c];
}

/* Penalty: P = sum_{i != j} R_ij^2 / (C (C - 1)), G = dP/dR. With u the
 * standardised z and N the positions, dP/du = (2/N) G u, and through the
 * standardisation (a batch norm without affine) dP/dz_c = (1/sigma_c)
 * (dP/du_c - u_c mean(dP/du_c . u_c)) (mean(dP/du_c) is 0 as u_c is
 * centred), where mean(dP/du_c . u_c) = (2/N) (G R)_cc. So
 * dP/dz_b = (2/N) diag(1/sigma) (G - diag(G R)) u_b. */
double sila_redundancy_penalty(float *dz, const float *z, int B, struct sila_shape s, float weight,
                               float *scratch)
{
    int C = s.c, HW = s.h * s.w;
    if (C < 2)
        return 0.0;
    size_t plane = (size_t)C * HW;
    double N = (double)B * HW;
    float *mean = scratch, *inv = mean + C, *R = inv + C, *A = R + (size_t)C * C;
    float *U = A + (size_t)C * C;
    for (int c = 0; c < C; c++) {
        double sum = 0.0, sq = 0.0;
        for (int b = 0; b < B; b++) {
            const float *p = z + b * plane + (size_t)c * HW;
            for (int i = 0; i < HW; i++)
                sum += p[i], sq += (double)p[i] * p[i];
        }
        double mu = sum / N, var = sq / N - mu * mu;
        mean[c] = (float)mu;
        inv[c] = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + 1e-5));
    }
    memset(R, 0, sizeof *R * C * C);
    for (int b = 0; b < B; b++) {
        standardise(U, z + b * plane, mean, inv, C, HW);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, C, HW, (float)(1.0 / N), U, HW, U,
                    HW, 1.0f, R, C);
    }
    double pairs = (double)C * (C - 1), value = 0.0;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++)
            if (i != j)
                value += (double)R[i * C + j] * R[i * C + j];
    for (int i = 0; i < C; i++) {
        double diag = 0.0; /* (G R)_ii */
        for (int j = 0; j < C; j++)
            if (j != i)
                diag += 2.0 * R[i * C + j] / pairs * R[j * C + i];
        for (int j = 0; j < C; j++)
            A[i * C + j] =
                (float)(((j != i ? 2.0 * R[i * C + j] / pairs : 0.0) - (j == i ? diag : 0.0)) *
                        inv[i]);
    }
    float scale = (float)(2.0 * weight / N);
    for (int b = 0; b < B; b++) {
        standardise(U, z + b * plane, mean, inv, C, HW);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, HW, C, scale, A, C, U, HW, 1.0f,
                    dz + b * plane, HW);
    }
    return value / pairs;
}

/* With v the unit rows of w and S = v v^T: P = sum_{i != j} S_ij^2 / (oc
 * (oc - 1)), dP/dv_i = (4 / (oc (oc - 1))) sum_{j != i} S_ij v_j, and
 * through the normalisation dP/dw_i = (g_i - v_i (v_i . g_i)) / |w_i|. */
double sila_filter_similarity(float *dw, const float *w, int oc, int fan, float weight,
                              float *scratch)
{
    if (oc < 2)
        return 0.0;
    float *v = scratch, *S = v + (size_t)oc * fan, *g = S + (size_t)oc * oc, *norm = g + fan;
    for (int i = 0; i < oc; i++) {
        const float *row = w + (size_t)i * fan;
        double sq = 0.0;
        for (int f = 0; f < fan; f++)
            sq += (double)row[f] * row[f];
        norm[i] = (float)sqrt(sq + 1e-12);
        for (int f = 0; f < fan; f++)
            v[(size_t)i * fan + f] = row[f] / norm[i];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, oc, oc, fan, 1.0f, v, fan, v, fan, 0.0f, S,
                oc);
    double pairs = (double)oc * (oc - 1), value = 0.0;
    for (int i = 0; i < oc; i++) {
        memset(g, 0, sizeof *g * fan);
        for (int j = 0; j < oc; j++) {
            if (j == i)
                continue;
            double sij = S[i * oc + j];
            value += sij * sij;
            float c = (float)(4.0 * sij / pairs);
            const float *vj = v + (size_t)j * fan;
            for (int f = 0; f < fan; f++)
                g[f] += c * vj[f];
        }
        const float *vi = v + (size_t)i * fan;
        double dot = 0.0;
        for (int f = 0; f < fan; f++)
            dot += (double)vi[f] * g[f];
        float *d = dw + (size_t)i * fan;
        for (int f = 0; f < fan; f++)
            d[f] += weight * (g[f] - vi[f] * (float)dot) / norm[i];
    }
    return value / pairs;
}
