/* The RPC of an in-process run. The trainer is one thread that computes;
 * it serves requests at every step boundary and between evaluation
 * batches, so a request waits at most one step. Requests that change the
 * run act at the boundary where they are answered, before the next step:
 * Pause holds the trainer there, serving requests, until Resume or Stop;
 * Checkpoint writes the steps done; Stop saves the model of the steps
 * done. The Workers method shows the
 * process as the one worker that holds every module. */
#ifndef SILA_TRAIN_RPC_H
#define SILA_TRAIN_RPC_H

#include <stdbool.h>
#include <uv.h>

#include "job.h"
#include "metrics_http.h"
#include "plan.h"
#include "report.h"
#include "rpc.h"
#include "sila.pb-c.h"

struct train_rpc {
    uv_loop_t loop;
    struct rpc rpc;           /* answers while the loop is open, with a socket when serving */
    struct metrics_http http; /* the /metrics page, reading rpc */
    bool loop_open, serving;
    /* what the methods show, kept up to date by the trainer */
    const struct sila_job *job;
    const struct report *rep;
    const struct sila_plan *plan;
    const char *out_dir;
    Sila__RunPhase phase;
    char last_checkpoint[SILA_PATH_MAX];
    /* requests, taken by the trainer */
    bool paused, stop, checkpoint;
};

/* Serves ep for a run of job: its RPC and its /metrics page (ep->url and
 * ep->metrics both NULL: neither, and every call below does nothing). rep
 * and plan are read by the methods from the first train_rpc_serve on.
 * Returns 0, or -errno with err set (a required endpoint cannot be
 * served). */
int train_rpc_open(struct train_rpc *t, const struct rpc_endpoint *ep, const struct sila_job *job,
                   const struct report *rep, const struct sila_plan *plan, const char *out_dir,
                   struct sila_err *err);
/* Answers the requests waiting; while paused, blocks answering requests
 * until a Resume, a Stop or a Checkpoint (which the trainer writes before
 * it calls again). */
void train_rpc_serve(struct train_rpc *t);
void train_rpc_close(struct train_rpc *t);

#endif
