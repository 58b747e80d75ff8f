/* The in-process trainer: every module of a job trained in this process,
 * in the order a pipeline of workers would see the batches. It is the
 * single-machine mode and the arithmetic reference of the distributed one. */
#ifndef SILA_TRAIN_H
#define SILA_TRAIN_H

#include <stdbool.h>

#include "err.h"
#include "job.h"
#include "rpc.h"
#include "startup.h"

/* Trains job from run (startup_open of job, out_dir and resume: borrowed;
 * its resumed checkpoint is freed once the modules have their states),
 * writing out_dir/model.sila (the reassembled aux-free model), the report's
 * out_dir/metrics.jsonl and checkpoints as the job asks; serving the RPC at
 * rpc (train_rpc.h; rpc->url NULL: none). Progress goes to stdout. Returns
 * 0, or a negative errno with err set. */
int train_inproc(const struct sila_job *job, struct startup *run, const char *out_dir, bool resume,
                 const struct rpc_endpoint *rpc, struct sila_err *err);

#endif
