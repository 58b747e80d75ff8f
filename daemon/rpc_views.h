/* Replies built from a run's report, the same for a distributed run
 * (coord_rpc.c) and an in-process one (train_rpc.c). Their memory comes
 * from rpc_alloc and lives until rpc_reply_done; when it runs out, the
 * reply is left without a result (the client sees an empty reply). */
#ifndef SILA_RPC_VIEWS_H
#define SILA_RPC_VIEWS_H

#include <stdint.h>

#include "job.h"
#include "report.h"
#include "rpc.h"
#include "sila.pb-c.h"

/* A run's progress as the Status method reports it. */
struct rpc_progress {
    const struct sila_job *job;
    const struct report *rep;
    uint64_t total_steps, steps_per_epoch;
    uint64_t step; /* training steps the last module has done */
    bool started;  /* training began: elapsed, rate and ETA are known */
    Sila__RunPhase phase;
    const char *failure; /* the error of a failed run, else NULL */
    const char *last_checkpoint;
};

/* A Status with what every run has; the caller adds what is its own
 * (replacements, rejected messages). NULL when out of memory. */
Sila__Status *rpc_status(struct rpc *rpc, const struct rpc_progress *p);
/* The Metrics reply: the report's points after step `since`, and every
 * evaluation. */
void rpc_metrics(struct rpc *rpc, const struct report *rep, uint64_t since, Sila__Reply *reply);
/* An Ack carrying text. */
void rpc_ack(struct rpc *rpc, Sila__Reply *reply, const char *text);
/* The Ack of a Pause (pause) or Resume at step, `was` being whether the run
 * was paused before; also printed on stdout, as the run's own record. */
void rpc_ack_pause(struct rpc *rpc, Sila__Reply *reply, bool pause, bool was, uint64_t step);

#endif
