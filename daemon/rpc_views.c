/* Replies built from a run's report (see rpc_views.h). */
#include "rpc_views.h"
#include "clock.h"

#include <stdio.h>
#include <string.h>

static Sila__Evaluation *evaluation(struct rpc *rpc, const struct report_eval *ev, int K)
{
    Sila__Evaluation *e = rpc_alloc(rpc, sizeof *e);
    double *acc = rpc_alloc(rpc, sizeof *acc * (size_t)K * 2);
    if (!e || !acc)
        return NULL;
    sila__evaluation__init(e);
    e->epoch = (uint32_t)ev->epoch;
    e->step = ev->step;
    e->train_s = ev->train_s;
    memcpy(acc, ev->accuracy, sizeof *acc * (size_t)K);
    memcpy(acc + K, ev->holdout, sizeof *acc * (size_t)K);
    e->accuracy = acc;
    e->n_accuracy = (size_t)K;
    e->holdout = acc + K;
    e->n_holdout = report_eval_has_holdout(ev) ? (size_t)K : 0;
    return e;
}

/* The report's evaluations as a reply's repeated field. */
static Sila__Evaluation **evaluations(struct rpc *rpc, const struct report *rep, size_t *ret_n)
{
    Sila__Evaluation **evs = rpc_alloc(rpc, sizeof *evs * rep->nevals);
    *ret_n = 0;
    for (size_t i = 0; evs && i < rep->nevals; i++)
        if ((evs[*ret_n] = evaluation(rpc, &rep->evals[i], rep->nmodules)))
            (*ret_n)++;
    return evs;
}

Sila__Status *rpc_status(struct rpc *rpc, const struct rpc_progress *p)
{
    Sila__Status *st = rpc_alloc(rpc, sizeof *st);
    if (!st)
        return NULL;
    sila__status__init(st);
    const struct report *rep = p->rep;
    st->job = rpc_strdup(rpc, p->job->name);
    st->algorithm = rpc_strdup(rpc, sila_algorithm_name(p->job->algorithm));
    st->phase = p->phase;
    st->epochs = (uint32_t)p->job->epochs;
    st->total_steps = p->total_steps;
    st->step = p->step;
    st->epoch = (uint32_t)(p->step / p->steps_per_epoch) + 1;
    if (st->epoch > st->epochs)
        st->epoch = st->epochs;
    st->modules = (uint32_t)rep->nmodules;
    if (p->started) {
        st->elapsed_s = sila_clock_s() - rep->start;
        st->samples_per_s = report_rate(rep);
        st->eta_s = report_eta(rep);
    }
    st->evaluations = evaluations(rpc, rep, &st->n_evaluations);
    if (p->failure)
        st->failure = rpc_strdup(rpc, p->failure);
    st->last_checkpoint = rpc_strdup(rpc, p->last_checkpoint ? p->last_checkpoint : "");
    return st;
}

void rpc_metrics(struct rpc *rpc, const struct report *rep, uint64_t since, Sila__Reply *reply)
{
    const int K = rep->nmodules;
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
        double *loss = rpc_alloc(rpc, sizeof *loss * (size_t)K);
        if (!pt || !loss)
            return;
        sila__metric_point__init(pt);
        pt->step = rp->step;
        pt->epoch = (uint32_t)rp->epoch;
        pt->time_s = rp->time_s;
        pt->samples_per_s = rp->samples_per_s;
        pt->lr = rp->lr;
        for (int k = 0; k < K; k++)
            loss[k] = rp->loss[k];
        pt->loss = loss;
        pt->n_loss = (size_t)K;
        pts[m->n_points++] = pt;
    }
    m->points = pts;
    m->evaluations = evaluations(rpc, rep, &m->n_evaluations);
    reply->result_case = SILA__REPLY__RESULT_METRICS;
    reply->metrics = m;
}

void rpc_ack(struct rpc *rpc, Sila__Reply *reply, const char *text)
{
    Sila__Ack *a = rpc_alloc(rpc, sizeof *a);
    if (!a)
        return;
    sila__ack__init(a);
    a->message = rpc_strdup(rpc, text);
    reply->result_case = SILA__REPLY__RESULT_ACK;
    reply->ack = a;
}

void rpc_ack_pause(struct rpc *rpc, Sila__Reply *reply, bool pause, bool was, uint64_t step)
{
    char msg[128];
    snprintf(msg, sizeof msg, "%s at step %llu%s", pause ? "paused" : "resumed",
             (unsigned long long)step,
             was == pause ? (pause ? " (it was paused)" : " (it was running)") : "");
    printf("%s by an RPC request\n", msg);
    fflush(stdout);
    rpc_ack(rpc, reply, msg);
}
