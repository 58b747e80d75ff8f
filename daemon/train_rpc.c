/* The RPC of an in-process run (see train_rpc.h). */
#include "train_rpc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rpc_views.h"

static bool training(const struct train_rpc *t)
{
    return (t->phase == SILA__RUN_PHASE__TRAINING || t->phase == SILA__RUN_PHASE__EVALUATING) &&
           !t->stop;
}

static void status(struct train_rpc *t, struct rpc *rpc, Sila__Reply *reply)
{
    bool paused = t->paused && t->phase == SILA__RUN_PHASE__TRAINING && !t->stop;
    struct rpc_progress p = {.job = t->job,
                             .rep = t->rep,
                             .total_steps = t->plan->total_steps,
                             .steps_per_epoch = t->plan->steps_per_epoch,
                             .step = t->rep->step,
                             .started = true,
                             .phase = paused ? SILA__RUN_PHASE__PAUSED : t->phase,
                             .last_checkpoint = t->last_checkpoint};
    Sila__Status *st = rpc_status(rpc, &p);
    if (!st)
        return;
    st->rejected_messages = rpc->link.rejected;
    reply->result_case = SILA__REPLY__RESULT_STATUS;
    reply->status = st;
}

/* The process as one worker holding every module. */
static void workers(struct train_rpc *t, struct rpc *rpc, Sila__Reply *reply)
{
    Sila__Workers *ws = rpc_alloc(rpc, sizeof *ws);
    Sila__WorkerRow **rows = rpc_alloc(rpc, sizeof *rows);
    Sila__WorkerRow *w = rpc_alloc(rpc, sizeof *w);
    if (!ws || !rows || !w)
        return;
    sila__workers__init(ws);
    sila__worker_row__init(w);
    const struct report *rep = t->rep;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    w->first_module = 1;
    w->last_module = (uint32_t)rep->nmodules;
    w->host = rpc_strdup(rpc, host);
    w->pid = (uint32_t)getpid();
    w->state = t->stop ? "stopping" : t->paused ? "paused" : "training";
    w->generation = 1; /* the process never changes */
    w->last_message_age_s = 0.0;
    w->step = rep->step;
    const struct report_head *h = &rep->heads[rep->nmodules - 1];
    w->loss = (float)h->loss;
    w->loss_step = h->step;
    w->accuracy = (float)h->accuracy;
    w->samples_per_s = report_rate(rep);
    w->busy = t->paused ? 0.0 : 1.0;
    w->peak_rss_mb = ru.ru_maxrss / 1024.0;
    rows[0] = w;
    ws->rows = rows;
    ws->n_rows = 1;
    reply->result_case = SILA__REPLY__RESULT_WORKERS;
    reply->workers = ws;
}

static void handle(void *ctx, struct rpc *rpc, const Sila__Request *req, Sila__Reply *reply)
{
    struct train_rpc *t = ctx;
    char msg[SILA_PATH_MAX + 256];
    unsigned long long step = t->rep->step;
    switch (req->method_case) {
    case SILA__REQUEST__METHOD_STATUS:
        status(t, rpc, reply);
        return;
    case SILA__REQUEST__METHOD_WORKERS:
        workers(t, rpc, reply);
        return;
    case SILA__REQUEST__METHOD_METRICS:
        rpc_metrics(rpc, t->rep, req->metrics->since_step, reply);
        return;
    default:
        break;
    }
    if (!training(t)) {
        reply->error = rpc_strdup(rpc, "the run is not training");
        return;
    }
    switch (req->method_case) {
    case SILA__REQUEST__METHOD_PAUSE:
    case SILA__REQUEST__METHOD_RESUME: {
        bool pause = req->method_case == SILA__REQUEST__METHOD_PAUSE, was = t->paused;
        t->paused = pause;
        rpc_ack_pause(rpc, reply, pause, was, step);
        return;
    }
    case SILA__REQUEST__METHOD_CHECKPOINT:
        t->checkpoint = true;
        snprintf(msg, sizeof msg,
                 "checkpoint at this step boundary: %s/checkpoints/step-%010llu.ckpt", t->out_dir,
                 step);
        break;
    case SILA__REQUEST__METHOD_STOP:
        t->stop = true;
        snprintf(msg, sizeof msg, "stopping after step %llu: the model is saved to %s/model.sila",
                 step, t->out_dir);
        printf("stop requested: finishing the step, then saving the model\n");
        fflush(stdout);
        break;
    default:
        reply->error = rpc_strdup(rpc, "unknown method");
        return;
    }
    rpc_ack(rpc, reply, msg);
}

int train_rpc_open(struct train_rpc *t, const struct rpc_endpoint *ep, const struct sila_job *job,
                   const struct report *rep, const struct sila_plan *plan, const char *out_dir,
                   struct sila_err *err)
{
    *t = (struct train_rpc){.job = job,
                            .rep = rep,
                            .plan = plan,
                            .out_dir = out_dir,
                            .phase = SILA__RUN_PHASE__TRAINING};
    if (!ep->url && !ep->metrics)
        return 0;
    int r = uv_loop_init(&t->loop);
    if (r)
        return sila_err_set(err, -EIO, "event loop: %s", uv_strerror(r));
    t->loop_open = true;
    if ((r = rpc_serve(&t->rpc, &t->loop, ep, handle, t, &t->serving, err)))
        return r;
    return metrics_http_serve(&t->http, &t->loop, ep->metrics, &t->rpc, err);
}

void train_rpc_serve(struct train_rpc *t)
{
    if (!t->loop_open)
        return;
    rpc_refresh(&t->rpc); /* a step boundary: the run moved on */
    uv_run(&t->loop, UV_RUN_NOWAIT);
    while (t->paused && !t->stop && !t->checkpoint && t->phase == SILA__RUN_PHASE__TRAINING)
        uv_run(&t->loop, UV_RUN_ONCE);
}

void train_rpc_close(struct train_rpc *t)
{
    if (!t->loop_open)
        return;
    metrics_http_close(&t->http);
    rpc_close(&t->rpc);
    uv_run(&t->loop, UV_RUN_DEFAULT); /* the closing handles */
    uv_loop_close(&t->loop);
    t->loop_open = t->serving = false;
}
