/* The coordinator's state, shared by its run (coord.c) and its RPC methods
 * (coord_rpc.c); private to them. Everything here belongs to the event
 * loop's thread except what is marked for the feeder thread. */
#ifndef SILA_COORD_STATE_H
#define SILA_COORD_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "checkpoint.h"
#include "clock.h"
#include "collab.h"
#include "coord.h"
#include "endpoint.h"
#include "feed.h"
#include "report.h"
#include "rpc.h"
#include "sila.pb-c.h"
#include "transport.h"

struct peer {
    int first, last; /* modules, 0-based, inclusive */
    uint32_t gen;
    char host[256];
    uint32_t pid;
    struct sila_link ctl;
    uv_poll_t poll;
    bool polling, ready;
    bool lost;   /* declared lost: its modules wait for a replacement */
    bool halted; /* answered the Halt of the pipeline being restarted */
    bool fresh;  /* a replacement, joined since the pipeline last (re)started */
    struct peer *next_retired;
    uint64_t bad_messages;
    /* from its reports, for the RPC */
    double last_message; /* sila_clock_s() of its last message */
    float loss;          /* its last module's last loss, NaN before */
    double accuracy;     /* moving average of that module's batch accuracy */
    double active_s, busy_s;
    uint64_t peak_rss_kb;
    struct worker_summary summary; /* from its last module state */
};

struct child {
    uv_process_t proc;
    int first, last;
    bool running;
    bool respawn; /* start it again once its handle is closed */
    int respawns;
};

/* A semaphore the feeder waits on, which the loop may also post only to
 * wake it (coord_wake_feeder): `wakes` counts those posts. */
struct coord_wait {
    uv_sem_t sem;
    atomic_int wakes;
};

struct coord {
    const struct sila_job *job;
    const struct coord_options *o;
    const char *out_dir;
    struct sila_url base;
    char base_url[SILA_URL_MAX + 16];
    char rundir[256]; /* spawn without --listen: private ipc directory */
    uv_loop_t loop;
    struct feed feed;
    struct report rep;
    bool rep_open;
    size_t max_frame;
    size_t ctl_limit; /* receive limit of control links: the largest module state */
    size_t body_params[SILA_MAX_MODULES], body_buffers[SILA_MAX_MODULES];
    int K;

    struct sila_link rdv;
    uv_poll_t rdv_poll;
    bool rdv_polling;
    struct peer *peers[SILA_MAX_MODULES]; /* owned; one per module range */
    int npeers;
    struct peer *retired;                  /* owned: the lost workers since replaced, a list */
    int owner[SILA_MAX_MODULES];           /* peer of each module, -1: none yet */
    uint32_t generation[SILA_MAX_MODULES]; /* last handed out, per first module */
    bool started;

    /* feeder thread */
    struct sila_link data; /* to the first module; the feeder's */
    uv_thread_t feeder;
    bool feeder_running;
    struct coord_wait credits, evaluated;
    atomic_bool stopping;           /* the run is over: the feeder returns */
    atomic_bool paused;             /* the feeder waits before its next batch */
    atomic_bool stop_requested;     /* the feeder sends no more batches */
    atomic_uint_fast64_t fed;       /* batches the feeder has sent */
    atomic_uint_fast64_t train_fed; /* training steps among them (with the resumed ones) */
    /* a lost worker (docs/protocol.md, "Replacing a worker"): the loop sets
     * `halted`, and once the pipeline is whole again sets the rest and
     * clears it; the feeder then sends every batch from restart_pos again */
    atomic_bool halted;
    atomic_uint pipeline;             /* generation of the pipeline, bumped per restart */
    atomic_uint_fast64_t restart_pos; /* first batch (of all, from 0) to send again */
    atomic_bool reopen_data;          /* the first module's worker is new: reconnect */
    char data_url[SILA_URL_MAX + 64]; /* its data endpoint */
    int feed_status;                  /* set by the feeder before feeder_ended */
    char feed_error[512];
    uv_async_t feeder_ended;
    bool async_open, feeder_ended_seen;

    /* reports, on the loop */
    Sila__RunPhase phase;
    uint64_t done[SILA_MAX_MODULES];    /* batches (all phases) each module finished */
    uint64_t samples[SILA_MAX_MODULES]; /* and their samples */
    bool collecting;
    struct rpc rpc;
    bool rpc_open;
    uint64_t trained[SILA_MAX_MODULES]; /* per module: training steps done (resumed ones too) */
    uint64_t tested[SILA_MAX_MODULES];  /* per module: test batches done, epoch x batches + i */
    uint32_t eval_done[SILA_MAX_MODULES];
    long eval_correct[SILA_MAX_MODULES];
    double accuracy[SILA_MAX_MODULES];
    int evaluations_left; /* those done are the report's evals */
    double last_report;
    /* module states being collected, for a checkpoint or the end (owned) */
    struct checkpoint_module collected[SILA_MAX_MODULES];
    int states;
    bool collect_for_checkpoint;
    /* checkpoints: the feeder asks at a step boundary and waits */
    uv_async_t ckpt_async;
    bool ckpt_async_open;
    struct coord_wait ckpt_done;
    atomic_bool ckpt_requested;     /* by the RPC: at the next boundary */
    atomic_uint_fast64_t ckpt_step; /* the boundary the feeder waits at */
    bool ckpt_pending;              /* the loop drains for it */
    struct checkpoint resume_from;  /* with --resume: the checkpoint, until the start */
    char last_checkpoint[4200];     /* path of the newest one written, "" before */

    /* collab's soft targets (collab.h): the feeder fills each step's from
     * the table, the loop learns each step's from the last module's report
     * (in step order, with the indices of learn_order, its own). The feeder
     * fills no step of an epoch before the loop has learned every step of
     * the one before: it waits on `learned`, posted at each epoch's last
     * step, so the two never touch the same rows at once. */
    struct collab collab;
    struct feed_order learn_order;
    struct coord_wait learned;

    struct child children[SILA_MAX_MODULES];
    int nchildren;
    char worker_exe[4096]; /* silaworker, for spawned workers */
    int worker_threads;
    double halted_since; /* sila_clock_s() when the pipeline halted */
    uint32_t replacements;
    uv_signal_t sigint, sigterm;
    uv_timer_t watchdog; /* every second: heartbeats; every 5 s: systemd status */
    uint64_t ticks;
    bool finished; /* success or failure decided */
    int status;
    struct sila_err *err;
};

/* How a link of the coordinator's authenticates (coord.c): channel names it
 * alike at both ends ("rendezvous", "control-K", "data-K"). */
struct sila_link_auth coord_link_auth(const struct coord *c, const char *channel);

/* The feeder thread (coord_feed.c): sends every batch to the first module
 * and, after a restart, the batches in flight again. */
void coord_feeder_main(void *arg);
/* Wakes the feeder wherever it waits, to see a halt or the stop. */
void coord_wake_feeder(struct coord *c);

/* The RPC methods (coord_rpc.c); pause, resume and stop call back here. */
rpc_handler coord_rpc_handle;
/* Asks the run to stop after the batches in flight and save the model.
 * Returns false when it is not running. */
bool coord_request_stop(struct coord *c);
/* Asks for a checkpoint at the next step boundary; the step it will be
 * taken after goes to *ret_step. Returns false when it is not running. */
bool coord_request_checkpoint(struct coord *c, uint64_t *ret_step);

#endif
