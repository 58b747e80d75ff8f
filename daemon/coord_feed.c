/* The coordinator's batches (see coord_state.h, struct feeder): the loop
 * produces each batch of the run in order when the run lets it (room in
 * the window, not paused or halted, no checkpoint being taken, the evaluation and
 * collab's epoch behind it finished), encodes it and hands it to the data
 * link's outbox. It keeps the batches still in the pipeline so that, after
 * a worker is replaced, it can send them again from where the last module
 * stopped (docs/protocol.md, "Replacing a worker"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "coord_state.h"
#include "frame.h"

int coord_window(const struct coord_options *o, const struct sila_job *job, int workers)
{
    if (o->window)
        return o->window;
    int w = workers > 2 ? 2 * workers : 4;
    for (int k = 0; k < job->nmodules; k++) {
        const struct sila_objective *ob = &job->modules[k].objective;
        if (ob->man_momentum != 0.0f && ob->man_period < w)
            w = ob->man_period;
    }
    return w;
}

int coord_feed_init(struct coord *c)
{
    struct feeder *f = &c->feeder;
    /* the widest window in flight (the workers are not known yet), the
     * batch being added, and as many again for the reports a lost worker
     * may have taken with it */
    f->nring = 2 * (size_t)coord_window(c->o, c->job, c->K) + 1;
    f->ring = calloc(f->nring, sizeof *f->ring);
    if (!f->ring)
        return sila_err_set(c->err, -ENOMEM, "out of memory");
    const struct sila_plan *pl = &c->run->feed.plan;
    f->first_step = f->next_step = c->run->rep.first_step;
    f->round = sila_plan_round_of(pl, f->next_step);
    f->last_checkpoint = sila_clock_s();
    return 0;
}

void coord_feed_fini(struct coord *c)
{
    struct feeder *f = &c->feeder;
    for (size_t i = 0; f->ring && i < f->nring; i++) {
        free(f->ring[i].x);
        free(f->ring[i].labels);
        free(f->ring[i].targets);
    }
    free(f->ring);
    f->ring = NULL;
    outbox_free(f->data, false);
    f->data = NULL;
}

static void on_data_sent(void *ctx, uint64_t pos, int status)
{
    struct coord *c = ctx;
    if (status && status != -ECANCELED) /* cancelled: by a halt, sent again after it */
        coord_fail(c, status, "feeding batch %llu to the first module: %s", (unsigned long long)pos,
                   strerror(-status));
}

int coord_feed_connect(struct coord *c, const char *url)
{
    struct feeder *f = &c->feeder;
    struct sila_link l;
    struct sila_link_auth la = coord_link_auth(c, "data-1");
    outbox_free(f->data, false);
    f->data = NULL;
    int r = sila_link_open(&l, SILA_LINK_PAIR, url, false, 4096, &la, c->err);
    if (r || (r = outbox_new(&f->data, &c->loop, &l, on_data_sent, c, c->err)))
        return r;
    outbox_greet(f->data, c->pipeline);
    return 0;
}

/* Encodes e for the current pipeline and hands it to the data link. */
static int transmit(struct coord *c, const struct sent *e)
{
    struct feeder *f = &c->feeder;
    struct sila_frame_hdr h = e->h;
    h.generation = c->pipeline;
    h.seq = f->seq++;
    size_t len = sila_frame_size(&h);
    uint8_t *buf = sila_link_alloc(len);
    if (!buf)
        return sila_err_set(c->err, -ENOMEM, "out of memory for batch %llu",
                            (unsigned long long)e->pos);
    sila_frame_encode(buf, &h, e->labels, e->targets, NULL, e->x);
    int r = outbox_submit(f->data, buf, len, -1, e->pos);
    return r ? sila_err_set(c->err, r, "cannot queue batch %llu: %s", (unsigned long long)e->pos,
                            strerror(-r))
             : 0;
}

int coord_feed_restart(struct coord *c, uint64_t from, const char *reconnect_url)
{
    struct feeder *f = &c->feeder;
    int r = reconnect_url ? coord_feed_connect(c, reconnect_url) : 0;
    if (r)
        return r;
    f->seq = 0;
    if (from + f->nring <= f->next_pos) /* its entry is reused */
        return sila_err_set(c->err, -ERANGE,
                            "batch %llu is to be sent again, but only the last %zu are kept",
                            (unsigned long long)from, f->nring);
    for (uint64_t pos = from; pos < f->next_pos && r == 0; pos++)
        r = transmit(c, &f->ring[pos % f->nring]);
    return r;
}

/* The ring's entry for the next batch, which the caller fills, when the
 * window has room for it: fewer than `window` batches sent that the last
 * module has not reported. The entry held the batch nring before, more
 * than a window before this one. NULL when there is no room, or out of
 * memory (*ret set). */
static struct sent *next_slot(struct coord *c, int *ret)
{
    struct feeder *f = &c->feeder;
    const struct sila_job *job = c->job;
    if (f->next_pos - c->done[c->K - 1] >= (uint64_t)f->window)
        return NULL;
    struct sent *e = &f->ring[f->next_pos % f->nring];
    size_t floats = sila_shape_size(job->input) * (size_t)job->batch;
    size_t targets = collab_on(&c->run->collab) ? (size_t)job->batch * job->nclasses : 0;
    if (!e->x && (!(e->x = malloc(sizeof *e->x * floats)) ||
                  !(e->labels = malloc(sizeof *e->labels * (size_t)job->batch)) ||
                  (targets && !(e->targets = malloc(sizeof *e->targets * targets))))) {
        *ret = sila_err_set(c->err, -ENOMEM, "out of memory for a batch");
        return NULL;
    }
    return e;
}

/* Sends e, filled with batch `batch` of the feeder's round, n samples, as
 * the next batch. */
static int produce(struct coord *c, struct sent *e, uint64_t batch, enum sila_phase phase, int n)
{
    struct feeder *f = &c->feeder;
    struct sila_shape in = c->job->input;
    e->pos = f->next_pos++;
    e->h = (struct sila_frame_hdr){
        .batch = batch,
        .round = f->round,
        .phase = phase,
        .n = (uint32_t)n,
        .c = (uint32_t)in.c,
        .h = (uint32_t)in.h,
        .w = (uint32_t)in.w,
        .nlabels = (uint32_t)n,
        .target_classes = e->targets && phase != SILA_PHASE_EVAL ? (uint32_t)c->job->nclasses : 0};
    return transmit(c, e);
}

/* At the step boundary before next_step: whether a checkpoint is due or
 * asked for there; if so the feeding stops until it is written. */
static bool checkpoint_here(struct coord *c)
{
    struct feeder *f = &c->feeder;
    bool asked = c->ckpt_requested;
    c->ckpt_requested = false;
    uint64_t total = c->run->feed.plan.total_steps;
    if (f->next_step >= total || (!asked && !checkpoint_due(c->job, f->next_step, total,
                                                            sila_clock_s() - f->last_checkpoint)))
        return false;
    c->ckpt_step = f->next_step;
    c->ckpt_pending = true;
    coord_check_drained(c);
    return true;
}

/* The next training batch, or false when it has to wait. */
static bool feed_step(struct coord *c, int *ret)
{
    struct feeder *f = &c->feeder;
    const struct sila_plan *pl = &c->run->feed.plan;
    uint64_t t = f->next_step;
    if (!f->boundary_seen && t > f->first_step) {
        f->boundary_seen = true;
        if (checkpoint_here(c))
            return false;
    }
    /* collab: an epoch's targets hold all of the last epoch's steps */
    if (collab_on(&c->run->collab) && t % pl->steps_per_epoch == 0 && t > f->first_step &&
        c->trained[c->K - 1] < t)
        return false;
    struct sent *slot = next_slot(c, ret);
    if (!slot)
        return false;
    const uint32_t *idx = feed_train_batch(&c->run->feed, t, slot->x, slot->labels);
    collab_targets(&c->run->collab, idx, c->job->batch, slot->targets);
    enum sila_phase ph = sila_plan_step_global(pl, t) ? SILA_PHASE_GLOBAL : SILA_PHASE_LOCAL;
    *ret = produce(c, slot, t, ph, c->job->batch);
    f->next_step++;
    f->boundary_seen = false;
    return *ret == 0;
}

/* The next test batch of the round's evaluation, or false. */
static bool feed_test(struct coord *c, int *ret)
{
    struct feeder *f = &c->feeder;
    struct sent *slot = next_slot(c, ret);
    if (!slot)
        return false;
    int n = feed_eval_batch(&c->run->feed, f->next_test, slot->x, slot->labels);
    *ret = produce(c, slot, f->next_test++, SILA_PHASE_EVAL, n);
    return *ret == 0;
}

void coord_feed_pump(struct coord *c)
{
    struct feeder *f = &c->feeder;
    const struct sila_plan *pl = &c->run->feed.plan;
    int r = 0;
    while (c->started && !c->finished && !c->collecting && !c->halted && !c->paused &&
           !c->stop_requested && !c->ckpt_pending && f->round < sila_plan_rounds(pl)) {
        bool evaluates = sila_plan_evaluates(pl, f->round), more;
        if (f->next_step < sila_plan_round_end(pl, f->round))
            more = feed_step(c, &r);
        else if (evaluates && f->next_test < pl->eval_batches)
            more = feed_test(c, &r);
        else if (evaluates && c->evaluated_round < f->round)
            more = false; /* the next round's reports must not mix with this evaluation's */
        else {
            f->round++;
            f->next_test = 0;
            more = true;
        }
        if (r) {
            coord_finish(c, r); /* c->err says why */
            return;
        }
        if (!more)
            return;
    }
}
