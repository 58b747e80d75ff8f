/* Modules first..last stepped in pipeline order (see stage.h). */
#include "stage.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int sila_stage_init(struct sila_stage *st, const struct sila_job *job, int first, int last,
                    int max_batch, struct sila_err *err)
{
    memset(st, 0, sizeof *st);
    st->job = job;
    st->first = first;
    st->last = last;
    for (int k = first; k <= last; k++) {
        int r = sila_module_new(&st->mods[k], job, k, max_batch, err);
        if (r)
            return r;
        if (k == 0)
            continue;
        size_t in = sila_shape_size(sila_net_in_shape(st->mods[k]->body));
        if (!(st->din[k] = malloc(sizeof *st->din[k] * in * max_batch)))
            return sila_err_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

void sila_stage_fini(struct sila_stage *st)
{
    for (int k = 0; k < SILA_MAX_MODULES; k++) {
        sila_module_free(st->mods[k]);
        free(st->din[k]);
    }
    memset(st, 0, sizeof *st);
}

void sila_stage_resume(struct sila_stage *st, int k, uint64_t next_step, uint64_t next_test)
{
    st->next_step[k] = next_step;
    st->next_test[k] = next_test;
}

static int report(const struct sila_stage_sink *sink, int k, const struct sila_step_stats *s,
                  struct sila_err *err)
{
    return sink->done(sink->ctx, k, s, err);
}

int sila_stage_local(struct sila_stage *st, const float *x, const struct sila_batch_side *side,
                     int B, uint64_t step, float lr, float smoothing,
                     const struct sila_stage_sink *sink, const float **ret_z, struct sila_err *err)
{
    for (int k = st->first; k <= st->last; k++) {
        if (step < st->next_step[k]) { /* learned before a restart: pass it on */
            x = sila_module_global_forward(st->mods[k], x, B);
            continue;
        }
        struct sila_step_stats s;
        x = sila_module_local_step(st->mods[k], x, side->labels, side->targets, side->image, B, lr,
                                   smoothing, &s);
        int r = sila_module_check(st->mods[k], x, NULL, B, step, err);
        if (r)
            return r;
        st->next_step[k] = step + 1;
        if ((r = report(sink, k, &s, err)))
            return r;
    }
    *ret_z = x;
    return 0;
}

int sila_stage_global_forward(struct sila_stage *st, const float *x, int B, uint64_t step,
                              const float **ret_z, struct sila_err *err)
{
    for (int k = st->first; k <= st->last; k++) {
        st->in[k] = x;
        x = sila_module_global_forward(st->mods[k], x, B);
        int r = sila_module_check(st->mods[k], x, NULL, B, step, err);
        if (r)
            return r;
    }
    *ret_z = x;
    return 0;
}

int sila_stage_global_backward(struct sila_stage *st, const float *dz, const int32_t *labels, int B,
                               uint64_t step, float lr, float smoothing, float mu,
                               const struct sila_stage_sink *sink, const float **ret_din,
                               struct sila_err *err)
{
    for (int k = st->last; k >= st->first; k--) {
        struct sila_step_stats s;
        bool learn = step >= st->next_step[k]; /* else learned before a restart */
        sila_module_global_backward(st->mods[k], st->in[k], dz, labels, B, lr, smoothing, mu, learn,
                                    st->din[k], &s);
        dz = st->din[k];
        int r = sila_module_check(st->mods[k], NULL, st->din[k], B, step, err);
        if (r)
            return r;
        if (!learn)
            continue;
        st->next_step[k] = step + 1;
        if ((r = report(sink, k, &s, err)))
            return r;
    }
    *ret_din = dz;
    return 0;
}

int sila_stage_eval(struct sila_stage *st, const float *x, const int32_t *labels, int B,
                    uint64_t pos, const struct sila_stage_sink *sink, const float **ret_z,
                    struct sila_err *err)
{
    for (int k = st->first; k <= st->last; k++) {
        struct sila_step_stats s = {.loss = NAN};
        x = sila_module_eval(st->mods[k], x, labels, B, &s.correct);
        if (pos < st->next_test[k]) /* reported before a restart */
            continue;
        st->next_test[k] = pos + 1;
        int r = report(sink, k, &s, err);
        if (r)
            return r;
    }
    *ret_z = x;
    return 0;
}
