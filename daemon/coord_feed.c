/* The coordinator's feeder thread (see coord_state.h): it sends every
 * batch of the run to the first module, one credit per batch, and keeps the
 * batches still in the pipeline so that, after a worker is replaced, it can
 * send them again from where the last module stopped (docs/protocol.md,
 * "Replacing a worker"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "coord_state.h"
#include "frame.h"

/* A batch sent (or being sent) and maybe not yet finished by the last
 * module; x, labels and targets owned, allocated at the first use of the
 * entry. */
struct sent {
    uint64_t pos; /* its place among all batches of the run, 0, 1, ... */
    struct sila_frame_hdr h;
    float *x;
    int32_t *labels;
    float *targets; /* (batch, classes) for collab, else NULL */
};

struct feeder {
    struct coord *c;
    struct sent *ring; /* owned: nring entries, batch pos at pos % nring */
    size_t nring;
    uint64_t next_pos; /* of the next batch to add */
    uint64_t seq;      /* of the next frame on the data link */
    uint32_t pipeline; /* generation of the pipeline the frames are for */
};

static int restart(struct feeder *f);

/* Waits for a post of w, going through a pipeline restart when the post
 * was a wake-up (coord_wake_feeder) rather than the event waited for. */
static int wait_for(struct feeder *f, struct coord_wait *w)
{
    for (;;) {
        uv_sem_wait(&w->sem);
        if (atomic_load(&f->c->stopping))
            return -ECANCELED;
        int wakes = atomic_load(&w->wakes);
        while (wakes > 0 && !atomic_compare_exchange_weak(&w->wakes, &wakes, wakes - 1))
            ;
        if (wakes <= 0)
            return 0;
        int r = restart(f);
        if (r)
            return r;
    }
}

/* Sends e on the data link. -ERESTART when the pipeline halted meanwhile
 * (the batch goes again with the restart), -ECANCELED when the run stops. */
static int transmit(struct feeder *f, const struct sent *e)
{
    struct coord *c = f->c;
    struct sila_frame_hdr h = e->h;
    h.generation = f->pipeline;
    h.seq = f->seq;
    size_t len = sila_frame_size(&h);
    uint8_t *buf = sila_link_alloc(len);
    if (!buf)
        return -ENOMEM;
    sila_frame_encode(buf, &h, e->labels, e->targets, NULL, e->x);
    for (;;) {
        bool stopping = atomic_load(&c->stopping);
        if (stopping || atomic_load(&c->halted)) {
            sila_link_release(buf);
            return stopping ? -ECANCELED : -ERESTART;
        }
        int r = sila_link_send(&c->data, buf, len, 1000);
        if (r == 0)
            break;
        if (r != -ETIMEDOUT && r != -EAGAIN) {
            sila_link_release(buf);
            return r;
        }
    }
    f->seq++;
    uint64_t fed = atomic_load(&c->fed);
    if (e->pos + 1 > fed)
        atomic_store(&c->fed, e->pos + 1);
    if (e->h.phase != SILA_PHASE_EVAL && e->h.batch + 1 > atomic_load(&c->train_fed))
        atomic_store(&c->train_fed, e->h.batch + 1);
    return 0;
}

/* After a halt: waits for the loop to restart the pipeline, reconnects to
 * a new first worker, and sends again every batch from the restart point.
 * Returns at once when there is no new restart (a late wake-up). */
static int restart(struct feeder *f)
{
    struct coord *c = f->c;
    for (;;) {
        while (atomic_load(&c->halted)) {
            if (atomic_load(&c->stopping))
                return -ECANCELED;
            uv_sleep(50);
        }
        uint32_t gen = atomic_load(&c->pipeline);
        if (gen == f->pipeline)
            return 0;
        f->pipeline = gen;
        if (atomic_exchange(&c->reopen_data, false)) {
            sila_link_close(&c->data);
            struct sila_err e;
            struct sila_link_auth la = coord_link_auth(c, "data-1");
            int r = sila_link_open(&c->data, SILA_LINK_PAIR, c->data_url, false, 4096, &la, &e);
            if (r) {
                snprintf(c->feed_error, sizeof c->feed_error,
                         "reconnecting to the first module: %.400s", e.msg);
                return r;
            }
        }
        f->seq = 0;
        uint64_t from = atomic_load(&c->restart_pos);
        if (from + f->nring <= f->next_pos) { /* its entry is reused */
            snprintf(c->feed_error, sizeof c->feed_error,
                     "batch %llu is to be sent again, but only the last %zu are kept",
                     (unsigned long long)from, f->nring);
            return -ERANGE;
        }
        int r = 0;
        for (uint64_t pos = from; pos < f->next_pos && r == 0; pos++)
            r = transmit(f, &f->ring[pos % f->nring]);
        if (r != -ERESTART)
            return r;
    }
}

/* The ring's entry for the next batch, which the caller fills (before the
 * batch takes its credit). It held the batch nring before, more than a
 * window before this one. NULL when out of memory. */
static struct sent *next_slot(struct feeder *f)
{
    const struct sila_job *job = f->c->job;
    struct sent *e = &f->ring[f->next_pos % f->nring];
    size_t floats = sila_shape_size(job->input) * (size_t)job->batch;
    size_t targets = collab_on(&f->c->collab) ? (size_t)job->batch * job->nclasses : 0;
    if (!e->x && (!(e->x = malloc(sizeof *e->x * floats)) ||
                  !(e->labels = malloc(sizeof *e->labels * (size_t)job->batch)) ||
                  (targets && !(e->targets = malloc(sizeof *e->targets * targets)))))
        return NULL;
    return e;
}

/* Sends e, the next batch, after taking a credit (and while the run is
 * paused, waiting). -ECANCELED once the run stops. */
static int feed_batch(struct feeder *f, struct sent *e, uint64_t batch, int epoch,
                      enum sila_phase phase, int n)
{
    struct coord *c = f->c;
    int r = wait_for(f, &c->credits);
    while (r == 0 && atomic_load(&c->paused) && !atomic_load(&c->stop_requested)) {
        uv_sleep(50);
        if (atomic_load(&c->stopping))
            r = -ECANCELED;
        else if (atomic_load(&c->halted))
            r = restart(f);
    }
    if (r || atomic_load(&c->stop_requested))
        return r ? r : -ECANCELED;
    struct sila_shape in = c->job->input;
    e->pos = f->next_pos++;
    e->h = (struct sila_frame_hdr){
        .batch = batch,
        .epoch = (uint32_t)epoch,
        .phase = phase,
        .n = (uint32_t)n,
        .c = (uint32_t)in.c,
        .h = (uint32_t)in.h,
        .w = (uint32_t)in.w,
        .nlabels = (uint32_t)n,
        .target_classes = e->targets && phase != SILA_PHASE_EVAL ? (uint32_t)c->job->nclasses : 0};
    r = transmit(f, e);
    return r == -ERESTART ? restart(f) : r;
}

/* At a step boundary (`done` steps fed and, once drained, done): takes a
 * checkpoint when one is due or asked for, waiting while the loop writes it. */
static int feed_boundary(struct feeder *f, uint64_t done, double *last)
{
    struct coord *c = f->c;
    bool asked = atomic_exchange(&c->ckpt_requested, false);
    if (done >= c->feed.plan.total_steps || atomic_load(&c->stopping))
        return 0;
    if (!asked && !checkpoint_due(c->job, done, c->feed.plan.total_steps, sila_clock_s() - *last))
        return 0;
    atomic_store(&c->ckpt_step, done);
    uv_async_send(&c->ckpt_async);
    int r = wait_for(f, &c->ckpt_done);
    *last = sila_clock_s();
    return r;
}

static int feed_all(struct feeder *f)
{
    struct coord *c = f->c;
    const struct sila_plan *pl = &c->feed.plan;
    uint64_t t0 = c->rep.first_step;
    int e0 = (int)(t0 / pl->steps_per_epoch);
    double last = sila_clock_s();
    atomic_store(&c->train_fed, t0);
    for (int e = e0; e < c->job->epochs; e++) {
        uint64_t s0 = (uint64_t)e * pl->steps_per_epoch < t0 ? t0 % pl->steps_per_epoch : 0;
        /* collab: this epoch's targets hold all of the last epoch's steps */
        int r = e > e0 && collab_on(&c->collab) ? wait_for(f, &c->learned) : 0;
        for (uint64_t s = s0; s < pl->steps_per_epoch; s++) {
            uint64_t t = (uint64_t)e * pl->steps_per_epoch + s;
            if (r == 0 && s > s0)
                r = feed_boundary(f, t, &last);
            if (r || atomic_load(&c->stop_requested) || atomic_load(&c->stopping))
                return r ? r : -ECANCELED;
            struct sent *slot = next_slot(f);
            if (!slot)
                return -ENOMEM;
            const uint32_t *idx = feed_train_batch(&c->feed, t, slot->x, slot->labels);
            collab_targets(&c->collab, idx, c->job->batch, slot->targets);
            enum sila_phase ph =
                sila_plan_step_global(pl, t) ? SILA_PHASE_GLOBAL : SILA_PHASE_LOCAL;
            if ((r = feed_batch(f, slot, t, e, ph, c->job->batch)))
                return r;
        }
        if (sila_plan_evaluates(pl, e)) {
            for (uint32_t i = 0; i < pl->eval_batches && r == 0; i++) {
                struct sent *slot = next_slot(f);
                r = slot ? feed_batch(f, slot, i, e, SILA_PHASE_EVAL,
                                      feed_eval_batch(&c->feed, i, slot->x, slot->labels))
                         : -ENOMEM;
            }
            /* the next epoch's reports must not mix with this evaluation's */
            if (r == 0)
                r = wait_for(f, &c->evaluated);
        }
        if (r || (r = feed_boundary(f, (uint64_t)(e + 1) * pl->steps_per_epoch, &last)))
            return r;
    }
    return 0;
}

void coord_feeder_main(void *arg)
{
    struct coord *c = arg;
    /* the window in flight, the batch being added, and as many again for
     * the reports a lost worker may have taken with it */
    struct feeder f = {.c = c, .nring = 2 * (size_t)c->o->window + 1};
    f.ring = calloc(f.nring, sizeof *f.ring);
    int r = f.ring ? feed_all(&f) : -ENOMEM;
    for (size_t i = 0; f.ring && i < f.nring; i++) {
        free(f.ring[i].x);
        free(f.ring[i].labels);
        free(f.ring[i].targets);
    }
    free(f.ring);
    c->feed_status = r == -ECANCELED ? 0 : r;
    if (c->feed_status && !*c->feed_error)
        snprintf(c->feed_error, sizeof c->feed_error, "feeding the first module: %s", strerror(-r));
    uv_async_send(&c->feeder_ended);
}

void coord_wake_feeder(struct coord *c)
{
    struct coord_wait *waits[] = {&c->credits, &c->evaluated, &c->ckpt_done, &c->learned};
    for (size_t i = 0; i < sizeof waits / sizeof *waits; i++) {
        atomic_fetch_add(&waits[i]->wakes, 1);
        uv_sem_post(&waits[i]->sem);
    }
}
