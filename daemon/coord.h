/* The coordinator of a distributed run: lets one worker per module range
 * join, hands each its plan, feeds the training and test batches into the
 * pipeline with a bounded window, turns the workers' reports into the same
 * progress and metrics as the in-process trainer, replaces a lost worker
 * while the others keep their state, and at the end collects every
 * module's state and writes the reassembled model. */
#ifndef SILA_COORD_H
#define SILA_COORD_H

#include <stdbool.h>

#include "auth.h"
#include "err.h"
#include "job.h"
#include "rpc.h"
#include "startup.h"

struct coord_options {
    const char *listen;      /* base address (tcp://HOST:PORT or ipc://PATH); NULL with spawn:
                                a private ipc address */
    int spawn;               /* 0: wait for workers started elsewhere; N: start N local workers */
    int threads;             /* kernel threads per spawned worker; 0: the cores shared out */
    int cores;               /* cores to share out among spawned workers */
    int window;              /* training and test batches in the pipeline at most; 0: twice
                                the workers at the start, at least 4 (coord_window) */
    struct rpc_endpoint rpc; /* the RPC: where, and its authentication */
    bool resume;             /* continue from the newest checkpoint in the output directory */
    int worker_timeout;      /* seconds: a worker silent this long is lost */
    int replace_timeout;     /* seconds: the run fails when a lost worker's modules
                                have no replacement this long */
    const struct sila_key *key; /* the cluster key: every link authenticated; NULL: bare */
    const char *key_path;       /* its file, for spawned workers */
    bool encrypt;               /* with a key: seal every link but the rendezvous and the RPC */
    bool insecure;              /* bare on a non-loopback address: spawned workers too */
    uint32_t auth_window_ms;    /* accepted clock difference of new senders; 0: default */
};

/* Trains job over workers from run (startup_open of job, out_dir and
 * o->resume: borrowed; its resumed checkpoint is freed once the workers
 * have their states), writing out_dir/model.sila and the report's
 * metrics.jsonl as train_inproc does. Returns 0, or a negative errno with
 * err set (a worker refused to start, died, or broke the protocol). */
int coord_run(const struct sila_job *job, struct startup *run, const char *out_dir,
              const struct coord_options *o, struct sila_err *err);

#endif
