/* The RPC methods of a distributed run (see rpc.h and docs/rpc.md): views
 * of the coordinator's state, and pause, resume, stop. */
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "coord_state.h"
#include "rpc_views.h"

static void status(struct coord *c, struct rpc *rpc, Sila__Reply *reply)
{
    /* c->phase is the last report's: a run paused at an evaluation would
     * read "evaluating" until resumed */
    bool paused = c->paused &&
                  (c->phase == SILA__RUN_PHASE__TRAINING || c->phase == SILA__RUN_PHASE__EVALUATING);
    struct rpc_progress p = {.job = c->job,
                             .rep = &c->run->rep,
                             .total_steps = c->run->feed.plan.total_steps,
                             .steps_per_epoch = c->run->feed.plan.steps_per_epoch,
                             .step = c->trained[c->K - 1],
                             .started = c->started,
                             .phase = paused ? SILA__RUN_PHASE__PAUSED : c->phase,
                             .failure = c->phase == SILA__RUN_PHASE__FAILED ? c->err->msg : NULL,
                             .last_checkpoint = c->last_checkpoint};
    Sila__Status *st = rpc_status(rpc, &p);
    if (!st)
        return;
    st->replacements = c->replacements;
    st->rejected_messages = c->rdv.rejected + rpc->link.rejected;
    for (int i = 0; i < c->npeers; i++)
        st->rejected_messages += coord_peer_rejected(c->peers[i]);
    reply->result_case = SILA__REPLY__RESULT_STATUS;
    reply->status = st;
}

static const char *peer_state(const struct coord *c, const struct peer *p)
{
    if (c->finished)
        return "finished";
    if (p->lost)
        return "lost";
    if (!p->ready)
        return "joined";
    if (c->halted)
        return "halted";
    return c->started ? "training" : "ready";
}

static int by_first_module(const void *a, const void *b)
{
    uint32_t x = (*(Sila__WorkerRow *const *)a)->first_module;
    uint32_t y = (*(Sila__WorkerRow *const *)b)->first_module;
    return (x > y) - (x < y);
}

/* One row per worker, in the order of their modules (peers are in the
 * order they joined). */
static void workers(struct coord *c, struct rpc *rpc, Sila__Reply *reply)
{
    Sila__Workers *ws = rpc_alloc(rpc, sizeof *ws);
    Sila__WorkerRow **rows = rpc_alloc(rpc, sizeof *rows * (size_t)c->npeers);
    if (!ws || !rows)
        return;
    sila__workers__init(ws);
    uint64_t fed = c->feeder.next_pos;
    double now = sila_clock_s();
    for (int i = 0; i < c->npeers; i++) {
        const struct peer *p = c->peers[i];
        Sila__WorkerRow *w = rpc_alloc(rpc, sizeof *w);
        if (!w)
            return;
        sila__worker_row__init(w);
        w->first_module = (uint32_t)p->first + 1;
        w->last_module = (uint32_t)p->last + 1;
        w->host = rpc_strdup(rpc, p->host);
        w->pid = p->pid;
        w->generation = p->gen;
        w->state = (char *)peer_state(c, p);
        w->last_message_age_s = p->last_message ? now - p->last_message : -1.0;
        w->step = c->trained[p->last];
        const struct report_head *h = &c->run->rep.heads[p->last];
        w->loss = (float)h->loss;
        w->loss_step = h->step;
        w->accuracy = (float)h->accuracy;
        w->samples_per_s =
            p->active_s > 0 ? (double)c->done[p->last] * c->job->batch / p->active_s : 0.0;
        w->busy = p->active_s > 0 ? p->busy_s / p->active_s : 0.0;
        w->queue = fed > c->done[p->last] ? (uint32_t)(fed - c->done[p->last]) : 0;
        w->peak_rss_mb = p->peak_rss_kb / 1024.0;
        w->bad_messages = p->bad_messages + coord_peer_rejected(p);
        rows[ws->n_rows++] = w;
    }
    qsort(rows, ws->n_rows, sizeof *rows, by_first_module);
    ws->rows = rows;
    reply->result_case = SILA__REPLY__RESULT_WORKERS;
    reply->workers = ws;
}

static bool running(const struct coord *c)
{
    return c->started && !c->finished && !c->collecting && !c->stop_requested;
}

void coord_rpc_handle(void *ctx, struct rpc *rpc, const Sila__Request *req, Sila__Reply *reply)
{
    struct coord *c = ctx;
    char msg[SILA_PATH_MAX + 256];
    switch (req->method_case) {
    case SILA__REQUEST__METHOD_STATUS:
        status(c, rpc, reply);
        break;
    case SILA__REQUEST__METHOD_WORKERS:
        workers(c, rpc, reply);
        break;
    case SILA__REQUEST__METHOD_METRICS:
        rpc_metrics(rpc, &c->run->rep, req->metrics->since_step, reply);
        break;
    case SILA__REQUEST__METHOD_PAUSE:
    case SILA__REQUEST__METHOD_RESUME: {
        bool pause = req->method_case == SILA__REQUEST__METHOD_PAUSE;
        if (!running(c)) {
            reply->error = rpc_strdup(rpc, "the run is not training");
            return;
        }
        bool was = c->paused;
        c->paused = pause;
        rpc_ack_pause(rpc, reply, pause, was, c->trained[c->K - 1]);
        coord_feed_pump(c);
        break;
    }
    case SILA__REQUEST__METHOD_CHECKPOINT: {
        uint64_t step;
        if (!coord_request_checkpoint(c, &step)) {
            reply->error = rpc_strdup(rpc, "the run is not training");
            return;
        }
        snprintf(msg, sizeof msg,
                 "checkpoint at the next step boundary: %s/checkpoints/"
                 "step-%010llu.ckpt, or the step after (status shows the newest)",
                 c->out_dir, (unsigned long long)step);
        rpc_ack(rpc, reply, msg);
        break;
    }
    case SILA__REQUEST__METHOD_STOP:
        if (!coord_request_stop(c)) {
            reply->error = rpc_strdup(rpc, "the run is not training");
            return;
        }
        snprintf(msg, sizeof msg, "stopping after step %llu: the model is saved to %s/model.sila",
                 (unsigned long long)c->trained[c->K - 1], c->out_dir);
        rpc_ack(rpc, reply, msg);
        break;
    default:
        reply->error = rpc_strdup(rpc, "unknown method");
        break;
    }
}
