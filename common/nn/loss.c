/* Losses and their gradients over logits (see loss.h). Per-row work is done
 * in double: log-sum-exp of float logits loses digits quickly. */
#include <math.h>
#include <stddef.h>

#include "loss.h"

/* log Σ exp(row[c] / T) over C classes, and the row maximum used for it. */
static double log_sum_exp(const float *row, int C, float T)
{
    double mx = row[0] / (double)T;
    for (int c = 1; c < C; c++)
        if (row[c] / (double)T > mx)
            mx = row[c] / (double)T;
    double s = 0.0;
    for (int c = 0; c < C; c++)
        s += exp(row[c] / (double)T - mx);
    return mx + log(s);
}

double sila_ce_loss(float *dlogits, const float *logits, const int32_t *labels, int B, int C,
                    float smoothing, float scale)
{
    double total = 0.0, off = smoothing / (double)C, on = 1.0 - smoothing + off;
    for (int b = 0; b < B; b++) {
        const float *row = logits + (size_t)b * C;
        double lse = log_sum_exp(row, C, 1.0f);
        for (int c = 0; c < C; c++) {
            double t = c == labels[b] ? on : off;
            double logp = row[c] - lse;
            total -= t * logp;
            if (dlogits)
                dlogits[(size_t)b * C + c] += (float)(scale * (exp(logp) - t) / B);
        }
    }
    return total / B;
}

double sila_bce_logits_loss(float *dlogits, const float *logits, const float *targets, int B, int C,
                            float scale)
{
    size_t n = (size_t)B * C;
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        double x = logits[i], t = targets[i];
        total += (x > 0 ? x : 0) - x * t + log1p(exp(-fabs(x)));
        if (dlogits) {
            double sig = 1.0 / (1.0 + exp(-x));
            dlogits[i] += (float)(scale * (sig - t) / (double)n);
        }
    }
    return total / (double)n;
}

double sila_kl_loss(float *dlogits, const float *logits, const float *q, int B, int C, float T,
                    float scale)
{
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *row = logits + (size_t)b * C, *qr = q + (size_t)b * C;
        double lse = log_sum_exp(row, C, T);
        for (int c = 0; c < C; c++) {
            double logp = row[c] / (double)T - lse;
            if (qr[c] > 0.0f)
                total += qr[c] * (log((double)qr[c]) - logp);
            if (dlogits)
                dlogits[(size_t)b * C + c] += (float)(scale * (exp(logp) - qr[c]) / (T * B));
        }
    }
    return total / B;
}

void sila_softmax(float *probs, const float *logits, int B, int C, float T)
{
    for (int b = 0; b < B; b++) {
        const float *row = logits + (size_t)b * C;
        double lse = log_sum_exp(row, C, T);
        for (int c = 0; c < C; c++)
            probs[(size_t)b * C + c] = (float)exp(row[c] / (double)T - lse);
    }
}

int sila_count_correct(const float *logits, const int32_t *labels, int B, int C)
{
    int correct = 0;
    for (int b = 0; b < B; b++) {
        const float *row = logits + (size_t)b * C;
        int best = 0;
        for (int c = 1; c < C; c++)
            if (row[c] > row[best])
                best = c;
        correct += best == labels[b];
    }
    return correct;
}
