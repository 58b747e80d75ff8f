/* The RPC methods of a distributed run (see rpc.h and docs/rpc.md): views
 * of the coordinator's state, and pause, resume, stop. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>

#include "coord_state.h"

static Sila__Evaluation *evaluation(struct rpc *rpc, const struct report_eval *ev, int K)
{
    Sila__Evaluation *e = rpc_alloc(rpc, sizeof *e);
    double *acc = rpc_alloc(rpc, sizeof *acc * (size_t)K);
    if (!e || !acc)
        return NULL;
    sila__evaluation__init(e);
    e->epoch = (uint32_t)ev->epoch;
    e->step = ev->step;
    for (int k = 0; k < K; k++)
        acc[k] = ev->accuracy[k];
    e->accuracy = acc;
    e->n_accuracy = (size_t)K;
    return e;
}

/* The report's evaluations as a reply's repeated field. */
static Sila__Evaluation **evaluations(struct rpc *rpc, const struct report *rep, int K,
                                      size_t *ret_n)
{
    Sila__Evaluation **evs = rpc_alloc(rpc, sizeof *evs * rep->nevals);
    *ret_n = 0;
    for (size_t i = 0; evs && i < rep->nevals; i++)
        if ((evs[*ret_n] = evaluation(rpc, &rep->evals[i], K)))
            (*ret_n)++;
    return evs;
}

static void status(struct coord *c, struct rpc *rpc, Sila__Reply *reply)
{
    Sila__Status *st = rpc_alloc(rpc, sizeof *st);
    if (!st)
        return;
    sila__status__init(st);
    const struct report *rep = &c->rep;
    st->job = rpc_strdup(rpc, c->job->name);
    st->algorithm = rpc_strdup(rpc, sila_algorithm_name(c->job->algorithm));
    st->phase = atomic_load(&c->paused) && c->phase == SILA__RUN_PHASE__TRAINING
                    ? SILA__RUN_PHASE__PAUSED
                    : c->phase;
    st->epochs = (uint32_t)c->job->epochs;
    st->total_steps = c->feed.plan.total_steps;
    st->step = c->trained[c->K - 1];
    st->epoch = (uint32_t)(c->trained[c->K - 1] / c->feed.plan.steps_per_epoch) + 1;
    if (st->epoch > st->epochs)
        st->epoch = st->epochs;
    st->modules = (uint32_t)c->K;
    st->replacements = c->replacements;
    if (c->started) {
        st->elapsed_s = report_now() - rep->start;
        st->samples_per_s = report_rate(rep);
        st->eta_s = report_eta(rep);
    }
    st->evaluations = evaluations(rpc, rep, c->K, &st->n_evaluations);
    if (c->phase == SILA__RUN_PHASE__FAILED)
        st->failure = rpc_strdup(rpc, c->err->msg);
    st->last_checkpoint = rpc_strdup(rpc, c->last_checkpoint);
    st->rejected_messages = c->rdv.rejected + rpc->link.rejected;
    for (int i = 0; i < c->npeers; i++)
        st->rejected_messages += c->peers[i]->ctl.rejected;
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
    if (atomic_load(&c->halted))
        return "halted";
    return c->started ? "training" : "ready";
}

static void workers(struct coord *c, struct rpc *rpc, Sila__Reply *reply)
{
    Sila__Workers *ws = rpc_alloc(rpc, sizeof *ws);
    Sila__WorkerRow **rows = rpc_alloc(rpc, sizeof *rows * (size_t)c->npeers);
    if (!ws || !rows)
        return;
    sila__workers__init(ws);
    uint64_t fed = atomic_load(&c->fed);
    double now = report_now();
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
        w->loss = p->loss;
        w->accuracy = (float)p->accuracy;
        w->samples_per_s =
            p->active_s > 0 ? (double)c->done[p->last] * c->job->batch / p->active_s : 0.0;
        w->busy = p->active_s > 0 ? p->busy_s / p->active_s : 0.0;
        w->queue = fed > c->done[p->last] ? (uint32_t)(fed - c->done[p->last]) : 0;
        w->peak_rss_mb = p->peak_rss_kb / 1024.0;
        w->bad_messages = p->bad_messages + p->ctl.rejected;
        rows[ws->n_rows++] = w;
    }
    ws->rows = rows;
    reply->result_case = SILA__REPLY__RESULT_WORKERS;
    reply->workers = ws;
}

static void metrics(struct coord *c, struct rpc *rpc, uint64_t since, Sila__Reply *reply)
{
    const struct report *rep = &c->rep;
    Sila__Metrics *m = rpc_alloc(rpc, sizeof *m);
    Sila__MetricPoint **pts = rpc_alloc(rpc, sizeof *pts * rep->npoints);
    if (!m || !pts)
        return;
    sila__metrics__init(m);
    for (size_t i = 0; i < rep->npoints; i++) {
        const struct report_point *rp = &rep->points[i];
        if (rp->step <= since)
            continue;
        Sila__MetricPoint *pt = rpc_alloc(rpc, sizeof *pt);
        double *loss = rpc_alloc(rpc, sizeof *loss * (size_t)c->K);
        if (!pt || !loss)
            return;
        sila__metric_point__init(pt);
        pt->step = rp->step;
        pt->epoch = (uint32_t)rp->epoch;
        pt->time_s = rp->time_s;
        pt->samples_per_s = rp->samples_per_s;
        pt->lr = rp->lr;
        for (int k = 0; k < c->K; k++)
            loss[k] = rp->loss[k];
        pt->loss = loss;
        pt->n_loss = (size_t)c->K;
        pts[m->n_points++] = pt;
    }
    m->points = pts;
    m->evaluations = evaluations(rpc, rep, c->K, &m->n_evaluations);
    reply->result_case = SILA__REPLY__RESULT_METRICS;
    reply->metrics = m;
}

static void ack(struct rpc *rpc, Sila__Reply *reply, const char *text)
{
    Sila__Ack *a = rpc_alloc(rpc, sizeof *a);
    if (!a)
        return;
    sila__ack__init(a);
    a->message = rpc_strdup(rpc, text);
    reply->result_case = SILA__REPLY__RESULT_ACK;
    reply->ack = a;
}

static bool running(const struct coord *c)
{
    return c->started && !c->finished && !c->collecting && !atomic_load(&c->stop_requested);
}

void coord_rpc_handle(void *ctx, struct rpc *rpc, const Sila__Request *req, Sila__Reply *reply)
{
    struct coord *c = ctx;
    char msg[4400];
    switch (req->method_case) {
    case SILA__REQUEST__METHOD_STATUS:
        status(c, rpc, reply);
        break;
    case SILA__REQUEST__METHOD_WORKERS:
        workers(c, rpc, reply);
        break;
    case SILA__REQUEST__METHOD_METRICS:
        metrics(c, rpc, req->metrics->since_step, reply);
        break;
    case SILA__REQUEST__METHOD_PAUSE:
    case SILA__REQUEST__METHOD_RESUME: {
        bool pause = req->method_case == SILA__REQUEST__METHOD_PAUSE;
        if (!running(c)) {
            reply->error = rpc_strdup(rpc, "the run is not training");
            return;
        }
        bool was = atomic_exchange(&c->paused, pause);
        snprintf(msg, sizeof msg, "%s at step %llu%s", pause ? "paused" : "resumed",
                 (unsigned long long)c->trained[c->K - 1],
                 was == pause ? (pause ? " (it was paused)" : " (it was running)") : "");
        printf("%s by an RPC request\n", msg);
        fflush(stdout);
        ack(rpc, reply, msg);
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
        ack(rpc, reply, msg);
        break;
    }
    case SILA__REQUEST__METHOD_STOP:
        if (!coord_request_stop(c)) {
            reply->error = rpc_strdup(rpc, "the run is not training");
            return;
        }
        snprintf(msg, sizeof msg, "stopping after step %llu: the model is saved to %s/model.sila",
                 (unsigned long long)c->trained[c->K - 1], c->out_dir);
        ack(rpc, reply, msg);
        break;
    default:
        reply->error = rpc_strdup(rpc, "unknown method");
        break;
    }
}
