/* Modules first..last stepped in pipeline order (see stage.h). */
#include "stage.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* Steps module k's backward of a global step trails its forward by
 * (job.global_lag). */
static uint64_t late_delay(const struct sila_stage *st, int k)
{
    return (uint64_t)st->job->global_lag * (uint64_t)(st->job->nmodules - 1 - k);
}

int sila_stage_init(struct sila_stage *st, const struct sila_job *job, int first, int last,
                    int max_batch, struct sila_err *err)
{
    memset(st, 0, sizeof *st);
    st->job = job;
    st->first = first;
    st->last = last;
    st->max_batch = max_batch;
    for (int k = first; k <= last; k++) {
        int r = sila_module_new(&st->mods[k], job, k, max_batch, err);
        if (r)
            return r;
        for (int i = 0; sila_module_man_takes(st->mods[k]) && i < SILA_MAN_INBOX; i++)
            if (!(st->inbox[k].v[i] = sila_floats_alloc(st->mods[k]->take_floats)))
                return sila_err_set(err, -ENOMEM, "out of memory");
        size_t out = sila_shape_size(sila_net_out_shape(st->mods[k]->body));
        if (job->wire_dtype != SILA_DTYPE_F32 && k < job->nmodules - 1 &&
            !(st->bound[k] = sila_floats_alloc(out * max_batch)))
            return sila_err_set(err, -ENOMEM, "out of memory");
        struct sila_late_ring *ring = &st->late[k];
        ring->cap = (int)late_delay(st, k);
        if (ring->cap && !(ring->e = calloc((size_t)ring->cap, sizeof *ring->e)))
            return sila_err_set(err, -ENOMEM, "out of memory");
        if (k == 0)
            continue;
        size_t in = sila_shape_size(sila_net_in_shape(st->mods[k]->body));
        if (!(st->din[k] = sila_floats_alloc(in * max_batch)))
            return sila_err_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

static void late_free(struct sila_late *e);

void sila_stage_fini(struct sila_stage *st)
{
    for (int k = 0; k < SILA_MAX_MODULES; k++) {
        sila_module_free(st->mods[k]);
        free(st->din[k]);
        free(st->bound[k]);
        for (int i = 0; i < SILA_MAN_INBOX; i++)
            free(st->inbox[k].v[i]);
        for (int i = 0; i < st->late[k].cap; i++)
            late_free(&st->late[k].e[i]);
        free(st->late[k].e);
    }
    memset(st, 0, sizeof *st);
}

void sila_stage_resume(struct sila_stage *st, int k, uint64_t next_step, uint64_t next_test)
{
    st->next_step[k] = next_step;
    st->next_test[k] = next_test;
    st->late[k].first = st->late[k].n = 0;
}

static int report(const struct sila_stage_sink *sink, int k, const struct sila_step_stats *s,
                  struct sila_err *err)
{
    return sink->done(sink->ctx, k, s, err);
}

/* ---- MAN's snapshots (module.h) ---- */

/* The period of module k's MAN. */
static uint64_t man_period(const struct sila_stage *st, int k)
{
    return (uint64_t)st->job->modules[k].objective.man_period;
}

/* Snapshot `tag` (n floats) into module k's inbox, replacing one of the
 * same tag. */
static int inbox_put(struct sila_stage *st, int k, uint64_t tag, const float *v, size_t n,
                     struct sila_err *err)
{
    const struct sila_module *m = st->mods[k];
    struct sila_man_inbox *in = &st->inbox[k];
    if (!sila_module_man_takes(m) || n != m->take_floats)
        return sila_err_set(err, -EPROTO,
                            "module %d: a snapshot of %zu floats from module %d, which it "
                            "%s",
                            k + 1, n, k + 2,
                            sila_module_man_takes(m) ? "takes of another size" : "takes none of");
    int i = 0;
    while (i < in->n && in->tag[i] != tag)
        i++;
    if (i == SILA_MAN_INBOX)
        return sila_err_set(err, -EPROTO,
                            "module %d: snapshot %llu from module %d comes with %d not yet taken "
                            "up",
                            k + 1, (unsigned long long)tag, k + 2, SILA_MAN_INBOX);
    memcpy(in->v[i], v, sizeof(float) * n);
    in->tag[i] = tag;
    in->n += i == in->n;
    return 0;
}

/* Module k's newest snapshot `sent`, tagged `tag`, to the module before it. */
static int man_offer(struct sila_stage *st, int k, uint64_t tag, const struct sila_stage_sink *sink,
                     struct sila_err *err)
{
    const struct sila_module *m = st->mods[k];
    if (k > st->first)
        return inbox_put(st, k - 1, tag, m->sent, m->sent_floats, err);
    return sink->snapshot(sink->ctx, tag, m->sent, m->sent_floats, err);
}

/* Module k takes up the snapshot of the smallest tag >= want it holds,
 * dropping older ones; module `last` waits for it from the module after
 * the stage. Without failures that tag is want. After a restart the module
 * after may be ahead (it learned a global step whose gradient the lost
 * worker never got): its newest snapshot, offered at the restart, may be
 * newer than the wants of the next few periods, and is kept for them (the
 * ones after it come only once this module has passed their batches on). */
static int man_take(struct sila_stage *st, int k, uint64_t want, const struct sila_stage_sink *sink,
                    struct sila_err *err)
{
    struct sila_man_inbox *in = &st->inbox[k];
    for (;;) {
        int best = -1, kept = 0;
        for (int i = 0; i < in->n; i++) {
            if (in->tag[i] < want)
                continue;
            float *v = in->v[kept]; /* keep the ones at or after want, in order */
            in->v[kept] = in->v[i], in->v[i] = v;
            in->tag[kept] = in->tag[i];
            if (best < 0 || in->tag[kept] < in->tag[best])
                best = kept;
            kept++;
        }
        in->n = kept;
        if (best >= 0) {
            sila_module_man_take(st->mods[k], in->v[best]);
            if (in->tag[best] > want)
                return 0;           /* after a restart: it serves the next wants too */
            float *v = in->v[best]; /* taken: out of the inbox */
            in->v[best] = in->v[in->n - 1], in->v[in->n - 1] = v;
            in->tag[best] = in->tag[in->n - 1];
            in->n--;
            return 0;
        }
        if (k < st->last || !sink->await_snapshot)
            return sila_err_set(err, -EPROTO,
                                "module %d: no snapshot of module %d from its step %llu on", k + 1,
                                k + 2, (unsigned long long)want);
        int r = sink->await_snapshot(sink->ctx, want, err);
        if (r)
            return r;
    }
}

/* MAN after module k learned step `step`: it sends a snapshot, and takes
 * one up, when its count of steps reaches a multiple of the period. */
static int man_after(struct sila_stage *st, int k, uint64_t step,
                     const struct sila_stage_sink *sink, struct sila_err *err)
{
    struct sila_module *m = st->mods[k];
    uint64_t done = step + 1;
    int r = 0;
    if (sila_module_man_sends(m) && done % man_period(st, k - 1) == 0) {
        sila_module_man_snapshot(m);
        r = man_offer(st, k, done, sink, err);
    }
    if (r == 0 && sila_module_man_takes(m) && done % man_period(st, k) == 0)
        r = man_take(st, k, done - man_period(st, k), sink, err);
    return r;
}

/* Module k's newest snapshot, tagged with its count of steps rounded down
 * to its receiver's period, to the module before it. */
static int man_offer_newest(struct sila_stage *st, int k, const struct sila_stage_sink *sink,
                            struct sila_err *err)
{
    uint64_t p = man_period(st, k - 1);
    return man_offer(st, k, st->next_step[k] / p * p, sink, err);
}

void sila_stage_man_start(struct sila_stage *st)
{
    for (int k = st->first; k <= st->last; k++)
        st->inbox[k].n = 0;
    struct sila_err ignored; /* into an emptied inbox of its size: cannot fail */
    for (int k = st->first + 1; k <= st->last; k++)
        if (sila_module_man_sends(st->mods[k]))
            man_offer_newest(st, k, NULL, &ignored);
}

int sila_stage_man_offer_up(struct sila_stage *st, const struct sila_stage_sink *sink,
                            struct sila_err *err)
{
    if (!sila_module_man_sends(st->mods[st->first]))
        return sila_err_set(err, -EPROTO, "module %d sends no snapshots", st->first + 1);
    return man_offer_newest(st, st->first, sink, err);
}

int sila_stage_man_put(struct sila_stage *st, uint64_t tag, const float *v, size_t n,
                       struct sila_err *err)
{
    return inbox_put(st, st->last, tag, v, n, err);
}

bool sila_stage_man_holds(const struct sila_stage *st, uint64_t want)
{
    const struct sila_man_inbox *in = &st->inbox[st->last];
    for (int i = 0; i < in->n; i++)
        if (in->tag[i] >= want)
            return true;
    return false;
}

size_t sila_stage_man_in_floats(const struct sila_stage *st)
{
    return st->mods[st->last]->take_floats;
}

size_t sila_stage_man_out_floats(const struct sila_stage *st)
{
    return st->mods[st->first]->sent_floats;
}

/* Module k has learned step `step`: its progress, the sink's report,
 * MAN's snapshots. */
static int learned(struct sila_stage *st, int k, uint64_t step, const struct sila_step_stats *s,
                   const struct sila_stage_sink *sink, struct sila_err *err)
{
    st->next_step[k] = step + 1;
    int r = report(sink, k, s, err);
    return r ? r : man_after(st, k, step, sink, err);
}

/* ---- module boundaries (half.h) ---- */

/* n values rounded to the job's wire dtype at the boundary after module k
 * (forward) or before it (backward, `gradient`): beyond the dtype's range
 * (f16's 65504) they would arrive as infinities. */
static int cross(struct sila_stage *st, int k, bool gradient, const float *x, float *y, size_t n,
                 uint64_t step, struct sila_err *err)
{
    enum sila_dtype d = st->job->wire_dtype;
    sila_dtype_round(d, x, y, n);
    if (sila_all_finite(y, n))
        return 0;
    return sila_err_set(err, -ERANGE,
                        "step %llu: %s module %d holds values beyond %s's range "
                        "(job.wire_dtype; bf16 has float32's range)",
                        (unsigned long long)step, gradient ? "a gradient into" : "the output of",
                        k + 1, sila_dtype_names[d]);
}

/* What leaves module k on a training step: its output z (B samples)
 * rounded to the job's wire dtype into *ret, or z itself. */
static int cross_forward(struct sila_stage *st, int k, const float *z, int B, uint64_t step,
                         const float **ret, struct sila_err *err)
{
    *ret = z;
    if (!st->bound[k])
        return 0;
    *ret = st->bound[k];
    size_t n = (size_t)B * sila_shape_size(sila_net_out_shape(st->mods[k]->body));
    return cross(st, k, false, z, st->bound[k], n, step, err);
}

/* The gradient module k (k >= 1) sends back on a global step, din (din[k]
 * or late_din's), rounded in place to the job's wire dtype. */
static int cross_backward(struct sila_stage *st, int k, float *din, int B, uint64_t step,
                          struct sila_err *err)
{
    if (st->job->wire_dtype == SILA_DTYPE_F32 || k == 0)
        return 0;
    size_t n = (size_t)B * sila_shape_size(sila_net_in_shape(st->mods[k]->body));
    return cross(st, k, true, din, din, n, step, err);
}

/* ---- late global steps (job.global_lag; stage.h) ---- */

/* Module k's entry for global step `step`, or NULL. */
static struct sila_late *late_find(struct sila_stage *st, int k, uint64_t step)
{
    struct sila_late_ring *ring = &st->late[k];
    for (int i = 0; i < ring->n; i++) {
        struct sila_late *e = &ring->e[(ring->first + i) % ring->cap];
        if (e->step == step)
            return e;
    }
    return NULL;
}

/* Frees what entry e holds, leaving it unallocated. */
static void late_free(struct sila_late *e)
{
    free(e->x_own);
    free(e->labels);
    free(e->dz);
    sila_module_then_fini(&e->then);
    e->x = e->x_own = e->dz = NULL;
    e->labels = NULL;
}

/* A new entry of module k for global step `step` on input x (B samples),
 * into *ret. It takes the buffers of an entry out of use, or allocates
 * them: only as many are ever allocated as there are global steps in
 * flight at once. x is kept by reference when it is the kept output of
 * module k-1 in this stage (float32 at the boundary): module k-1 learns
 * the step, and so gives up its entry, only after module k has passed it
 * the gradient. Any other x (the stage's input, a rounded boundary) is
 * copied. */
static int late_push(struct sila_stage *st, int k, uint64_t step, const float *x,
                     const int32_t *labels, int B, struct sila_late **ret, struct sila_err *err)
{
    struct sila_late_ring *ring = &st->late[k];
    const struct sila_module *m = st->mods[k];
    if (ring->n == ring->cap)
        return sila_err_set(err, -EPROTO,
                            "module %d: global step %llu comes with %d not yet learned", k + 1,
                            (unsigned long long)step, ring->cap);
    int at = (ring->first + ring->n) % ring->cap;
    struct sila_late *e = &ring->e[at];
    for (int i = 0; !e->labels && i < ring->cap; i++) {
        struct sila_late *spare = &ring->e[i]; /* allocated, out of use: move it here */
        if (spare->labels && (i - ring->first + ring->cap) % ring->cap >= ring->n) {
            struct sila_late t = *e;
            *e = *spare, *spare = t;
        }
    }
    size_t in = sila_shape_size(sila_net_in_shape(m->body));
    size_t out = sila_shape_size(sila_net_out_shape(m->body));
    size_t mb = (size_t)st->max_batch;
    bool kept = k > st->first && !st->bound[k - 1];
    int r = 0;
    if (!e->labels && (r = sila_module_then_init(m, &e->then, err)) == 0 &&
        (!(e->labels = malloc(sizeof *e->labels * mb)) || !(e->dz = sila_floats_alloc(out * mb))))
        r = sila_err_set(err, -ENOMEM, "out of memory for a late global step");
    if (r == 0 && !kept && !e->x_own && !(e->x_own = sila_floats_alloc(in * mb)))
        r = sila_err_set(err, -ENOMEM, "out of memory for a late global step");
    if (r) {
        late_free(e);
        return r;
    }
    if (!kept)
        memcpy(e->x_own, x, sizeof *x * in * (size_t)B);
    e->x = kept ? x : e->x_own;
    memcpy(e->labels, labels, sizeof *labels * (size_t)B);
    e->step = step;
    e->B = B;
    e->has_dz = e->sent = false;
    ring->n++;
    *ret = e;
    return 0;
}

/* The gradient at module k's output of its global step `step` (n floats). */
static int late_put(struct sila_stage *st, int k, uint64_t step, const float *dz, size_t n,
                    struct sila_err *err)
{
    struct sila_late *e = late_find(st, k, step);
    size_t want = e ? (size_t)e->B * sila_shape_size(sila_net_out_shape(st->mods[k]->body)) : 0;
    if (!e || e->has_dz || n != want)
        return sila_err_set(err, -EPROTO,
                            "module %d: a gradient of %zu floats for global step %llu, which it %s",
                            k + 1, n, (unsigned long long)step,
                            !e          ? "does not hold"
                            : e->has_dz ? "has had already"
                                        : "holds for another size");
    if (dz != e->dz) /* else late_din had it written there */
        memcpy(e->dz, dz, sizeof *dz * n);
    e->has_dz = true;
    return 0;
}

/* Where module k >= 1 writes d(loss)/d(its input) of global step `step`:
 * straight into the entry of module k-1 when that is in the stage and
 * waits for it (pass_gradient then copies nothing), else din[k]. */
static float *late_din(struct sila_stage *st, int k, uint64_t step)
{
    struct sila_late *e = k > st->first ? late_find(st, k - 1, step) : NULL;
    return e && !e->has_dz ? e->dz : st->din[k];
}

/* d(loss)/d(input of module k >= 1) of late global step `step` (B
 * samples, din: late_din's) to the module before it: into its entry, or
 * through the sink when it is before the stage. */
static int pass_gradient(struct sila_stage *st, int k, const float *din, uint64_t step, int B,
                         const struct sila_stage_sink *sink, struct sila_err *err)
{
    size_t n = (size_t)B * sila_shape_size(sila_net_in_shape(st->mods[k]->body));
    if (k > st->first)
        return late_put(st, k - 1, step, din, n, err);
    return sink->gradient(sink->ctx, step, B, din, err);
}

/* The input pass of module k's late step e (sila_module_late_input), and
 * its gradient on to the module before; *ret_pass for the parameter pass. */
static int late_input(struct sila_stage *st, int k, struct sila_late *e,
                      const struct sila_stage_sink *sink, struct sila_late_pass *ret_pass,
                      struct sila_err *err)
{
    struct sila_step_stats stats;
    sila_module_late_input(st->mods[k], &e->then, e->x, e->dz, e->labels, e->B, e->smoothing,
                           e->mu, st->din[k], ret_pass, &stats);
    int r = sila_module_check(st->mods[k], NULL, st->din[k], e->B, e->step, err);
    if (r == 0 && (r = cross_backward(st, k, st->din[k], e->B, e->step, err)) == 0)
        r = pass_gradient(st, k, st->din[k], e->step, e->B, sink, err);
    return r;
}

/* Module k learns from its oldest late global step before its step s
 * (unless it learned step s before a restart: then it only passes the
 * gradient on) and passes d(loss)/d(its input) to the module before,
 * unless that went already (sila_stage_late_send). When that gradient
 * leaves the stage, for a module on another worker that may be waiting
 * for it, it goes before the parameter gradients are computed
 * (late_input: the same bits). */
static int late_learn(struct sila_stage *st, int k, uint64_t s, const struct sila_stage_sink *sink,
                      struct sila_err *err)
{
    struct sila_late_ring *ring = &st->late[k];
    struct sila_late *e = &ring->e[ring->first];
    struct sila_module *m = st->mods[k];
    int r = 0;
    if (!e->has_dz && k == st->last && sink->await_gradient &&
        (r = sink->await_gradient(sink->ctx, e->step, err)))
        return r;
    if (!e->has_dz)
        return sila_err_set(err, -EPROTO,
                            "module %d: no gradient of global step %llu from module %d", k + 1,
                            (unsigned long long)e->step, k + 2);
    struct sila_step_stats stats;
    bool apply = s >= st->next_step[k];
    if (e->sent) {
        if (apply)
            sila_module_global_late(m, &e->then, e->x, e->dz, e->labels, e->B, e->lr,
                                    e->smoothing, e->mu, true, NULL, &stats);
    } else if (k > 0 && k == st->first) {
        struct sila_late_pass pass;
        if ((r = late_input(st, k, e, sink, &pass, err)) == 0)
            sila_module_late_params(m, &e->then, e->x, &pass, e->B, e->lr, apply);
    } else {
        float *din = k > 0 ? late_din(st, k, e->step) : NULL;
        sila_module_global_late(m, &e->then, e->x, e->dz, e->labels, e->B, e->lr, e->smoothing,
                                e->mu, apply, din, &stats);
        r = sila_module_check(m, NULL, din, e->B, e->step, err);
        if (r == 0 && k > 0 && (r = cross_backward(st, k, din, e->B, e->step, err)) == 0)
            r = pass_gradient(st, k, din, e->step, e->B, sink, err);
    }
    ring->first = (ring->first + 1) % ring->cap;
    ring->n--;
    return r;
}

/* Module k learns from every late global step due before its step s. */
static int late_due(struct sila_stage *st, int k, uint64_t s, const struct sila_stage_sink *sink,
                    struct sila_err *err)
{
    struct sila_late_ring *ring = &st->late[k];
    while (ring->n > 0 && ring->e[ring->first].step + late_delay(st, k) <= s) {
        int r = late_learn(st, k, s, sink, err);
        if (r)
            return r;
    }
    return 0;
}

int sila_stage_late_put(struct sila_stage *st, uint64_t step, const float *dz, size_t n,
                        struct sila_err *err)
{
    return late_put(st, st->last, step, dz, n, err);
}

int sila_stage_late_send(struct sila_stage *st, const struct sila_stage_sink *sink,
                         struct sila_err *err)
{
    int k = st->first;
    struct sila_late_ring *ring = &st->late[k];
    for (int i = 0; k > 0 && i < ring->n; i++) {
        struct sila_late *e = &ring->e[(ring->first + i) % ring->cap];
        struct sila_late_pass pass; /* unused: the parameter pass recomputes it */
        if (!e->has_dz || e->sent || sila_module_global_uses_head(st->mods[k], e->mu))
            continue;
        int r = late_input(st, k, e, sink, &pass, err);
        if (r)
            return r;
        e->sent = true;
    }
    return 0;
}

bool sila_stage_late_awaits(const struct sila_stage *st, uint64_t step)
{
    struct sila_late *e = late_find((struct sila_stage *)st, st->last, step);
    return e && !e->has_dz;
}

int sila_stage_global_late(struct sila_stage *st, const float *x, const int32_t *labels, int B,
                           uint64_t step, float lr, float smoothing, float mu,
                           const struct sila_stage_sink *sink, const float **ret_z,
                           struct sila_err *err)
{
    int K = st->job->nmodules;
    for (int k = st->first; k <= st->last; k++) {
        struct sila_module *m = st->mods[k];
        struct sila_step_stats s = {.loss = NAN};
        bool learn = step >= st->next_step[k]; /* else learned before a restart */
        struct sila_late *e = NULL;
        float *din = NULL; /* the classifier's input gradient */
        const float *z;
        int r = late_due(st, k, step, sink, err);
        if (r == 0 && k < K - 1 && (r = late_push(st, k, step, x, labels, B, &e, err)) == 0) {
            e->lr = lr, e->smoothing = smoothing, e->mu = mu;
            z = sila_module_global_forward_kept(m, e->x, B, &e->then);
        } else if (r == 0) { /* the classifier's module learns at once */
            din = late_din(st, k, step);
            z = sila_module_global_forward(m, x, B);
            sila_module_global_backward(m, x, NULL, labels, B, lr, smoothing, mu, learn, din, &s);
        }
        if (r || (r = sila_module_check(m, z, din, B, step, err)) ||
            (r = cross_forward(st, k, z, B, step, &x, err)))
            return r;
        if (!e && (r = cross_backward(st, k, din, B, step, err)) == 0)
            r = pass_gradient(st, k, din, step, B, sink, err);
        if (r)
            return r;
        if (learn && (r = learned(st, k, step, &s, sink, err)))
            return r;
    }
    *ret_z = x;
    return 0;
}

int sila_stage_local(struct sila_stage *st, const float *x, const struct sila_batch_side *side,
                     int B, uint64_t step, float lr, float smoothing,
                     const struct sila_stage_sink *sink, const float **ret_z, struct sila_err *err)
{
    for (int k = st->first; k <= st->last; k++) {
        int r = late_due(st, k, step, sink, err);
        if (r)
            return r;
        if (step < st->next_step[k]) { /* learned before a restart: pass it on */
            r = cross_forward(st, k, sila_module_global_forward(st->mods[k], x, B), B, step, &x,
                              err);
            if (r)
                return r;
            continue;
        }
        struct sila_step_stats s;
        x = sila_module_local_step(st->mods[k], x, side->labels, side->targets, side->image, B, lr,
                                   smoothing, &s);
        r = sila_module_check(st->mods[k], x, NULL, B, step, err);
        if (r || (r = cross_forward(st, k, x, B, step, &x, err)))
            return r;
        if ((r = learned(st, k, step, &s, sink, err)))
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
        if (r || (r = cross_forward(st, k, x, B, step, &x, err)))
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
        if (r || (r = cross_backward(st, k, st->din[k], B, step, err)))
            return r;
        if (learn && (r = learned(st, k, step, &s, sink, err)))
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
