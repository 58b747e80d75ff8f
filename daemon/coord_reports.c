/* The workers' reports of batches done: checked against the order every
 * module finishes its batches in, turned into progress, metrics and
 * evaluations, and (for collab) into the learned soft targets. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "coord_state.h"
#include "kernels.h"

static void on_eval_done(struct coord *c, int k, const Sila__Done *d)
{
    const struct sila_plan *pl = &c->run->feed.plan;
    c->tested[k] = (uint64_t)d->round * pl->eval_batches + d->batch + 1;
    c->eval_done[k]++;
    eval_tally_add(&c->tally, pl, k, d->batch, d->correct);
    for (int j = 0; j < c->K; j++)
        if (c->eval_done[j] < pl->eval_batches)
            return;
    memset(c->eval_done, 0, sizeof c->eval_done);
    struct report_eval ev = eval_tally_close(&c->tally, pl, c->K, d->round);
    report_eval(&c->run->rep, &ev);
    rpc_refresh(&c->rpc);
    c->evaluations_left--;
    c->evaluated_round = d->round;
}

/* Why the logits a Done carries (d->logits floats at logits) are not what
 * module k's report of a batch needs, or NULL: the classifier's (batch,
 * classes), all finite, with each training step of the last module when
 * the run learns collab's soft targets; none with any other report. */
static const char *bad_logits(const struct coord *c, int k, bool eval, const Sila__Done *d,
                              const float *logits, char *buf, size_t len)
{
    uint32_t want = collab_on(&c->run->collab) && !eval && k == c->K - 1
                        ? (uint32_t)c->job->batch * (uint32_t)c->job->nclasses
                        : 0;
    if (d->logits != want)
        snprintf(buf, len, "%u logits, expected %u", d->logits, want);
    else if (want && !sila_all_finite(logits, want))
        snprintf(buf, len, "logits that are not all finite");
    else
        return NULL;
    return buf;
}

/* collab: learns the soft targets of step t's samples from the
 * classifier's logits (batch, classes). */
static void learn_step(struct coord *c, uint64_t t, const float *logits)
{
    if (!collab_on(&c->run->collab))
        return;
    const uint32_t *idx = feed_order_step(&c->learn_order, &c->run->feed.plan, t);
    collab_learn(&c->run->collab, idx, c->job->batch, logits);
}

/* A Done of p's, with d->logits floats at logits (the frame's tail). */
void coord_on_done(struct coord *c, struct peer *p, const Sila__Done *d, const float *logits)
{
    const struct sila_plan *pl = &c->run->feed.plan;
    int k = (int)d->module - 1;
    if (k < p->first || k > p->last || d->round >= sila_plan_rounds(pl)) {
        p->bad_messages++;
        return;
    }
    /* every step and test batch is reported once per module, in order */
    bool eval = d->phase == SILA__PHASE__EVAL;
    uint64_t got = eval ? (uint64_t)d->round * pl->eval_batches + d->batch : d->batch;
    if (eval ? got < c->tested[k] : got != c->trained[k]) {
        coord_fail(c, -EPROTO, "module %d reported %s %llu, expected %s%llu", k + 1,
                   eval ? "test batch" : "step", (unsigned long long)got, eval ? "at least " : "",
                   (unsigned long long)(eval ? c->tested[k] : c->trained[k]));
        return;
    }
    char why[96];
    if (bad_logits(c, k, eval, d, logits, why, sizeof why)) {
        coord_fail(c, -EPROTO, "module %d reported %s %llu with %s", k + 1,
                   eval ? "test batch" : "step", (unsigned long long)got, why);
        return;
    }
    c->last_report = sila_clock_s();
    c->done[k]++;
    c->samples[k] += d->samples;
    p->active_s = d->active_s;
    p->busy_s = d->busy_s;
    p->peak_rss_kb = d->peak_rss_kb;
    if (c->phase == SILA__RUN_PHASE__TRAINING || c->phase == SILA__RUN_PHASE__EVALUATING)
        c->phase =
            d->phase == SILA__PHASE__EVAL ? SILA__RUN_PHASE__EVALUATING : SILA__RUN_PHASE__TRAINING;
    if (eval) {
        on_eval_done(c, k, d);
    } else {
        uint64_t t = c->trained[k]++;
        report_step_loss(&c->run->rep, k, t + 1, d->loss,
                         d->samples ? (double)d->correct / d->samples : NAN);
        if (k == c->K - 1) {
            learn_step(c, t, logits);
            report_step(&c->run->rep, (int)(t / pl->steps_per_epoch), t % pl->steps_per_epoch,
                        c->job->batch, sila_plan_lr(pl, t), sila_plan_step_global(pl, t));
            rpc_refresh(&c->rpc);
        }
    }
    coord_check_drained(c);
    coord_feed_pump(c);
}
