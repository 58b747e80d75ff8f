/* Consensus soft targets (see collab.h). */
#include "collab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "loss.h"
#include "objective.h"

int collab_open(struct collab *c, const struct sila_job *job, uint32_t ntrain, struct sila_err *err)
{
    *c = (struct collab){
        .n = ntrain, .C = job->nclasses, .rate = job->collab_rate, .T = job->objective.temperature};
    if (!sila_job_uses_collab(job))
        return 0;
    c->q = calloc((size_t)ntrain * c->C + 1, sizeof *c->q);
    if (!c->q)
        return sila_err_set(err, -ENOMEM, "out of memory for collab's %u soft targets", ntrain);
    return 0;
}

void collab_close(struct collab *c)
{
    free(c->q);
    *c = (struct collab){0};
}

int collab_restore(struct collab *c, const float *q, size_t n, const char *path,
                   struct sila_err *err)
{
    if (n != collab_floats(c))
        return sila_err_set(err, -EINVAL, "%s: %zu soft targets of collab, this run keeps %zu",
                            path, n, collab_floats(c));
    if (n)
        memcpy(c->q, q, sizeof *q * n);
    return 0;
}

void collab_targets(const struct collab *c, const uint32_t *idx, int B, float *out)
{
    if (!c->q)
        return;
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * c->C, c->q + (size_t)idx[b] * c->C, sizeof *out * c->C);
}

void collab_learn(struct collab *c, const uint32_t *idx, int B, const float *logits)
{
    if (!c->q)
        return;
    float p[c->C];
    for (int b = 0; b < B; b++) {
        float *q = c->q + (size_t)idx[b] * c->C;
        sila_softmax(p, logits + (size_t)b * c->C, 1, c->C, c->T);
        bool first = !sila_has_target(q, c->C);
        for (int i = 0; i < c->C; i++)
            q[i] = first ? p[i] : (1.0f - c->rate) * q[i] + c->rate * p[i];
    }
}
