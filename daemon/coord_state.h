/* The coordinator's state, private to its files (coord*.c). All of it
 * belongs to the event loop's thread: the other threads are outboxes
 * (outbox.h), which send the frames the loop hands them and report back
 * through a uv_async; they share nothing else. docs/architecture.md shows
 * the threads and one batch's path. */
#ifndef SILA_COORD_STATE_H
#define SILA_COORD_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "checkpoint.h"
#include "clock.h"
#include "collab.h"
#include "coord.h"
#include "endpoint.h"
#include "feed.h"
#include "frame.h"
#include "metrics_http.h"
#include "outbox.h"
#include "report.h"
#include "rpc.h"
#include "sila.pb-c.h"
#include "transport.h"

struct peer {
    struct coord *coord;
    int first, last; /* modules, 0-based, inclusive */
    uint32_t gen;
    char host[256];
    uint32_t pid;
    struct outbox *out; /* owns the control link; NULL once lost */
    uint64_t rejected;  /* rejected messages of its control links closed so far */
    uv_poll_t *poll;    /* owned: polls the control link; NULL once lost */
    double opened;      /* sila_clock_s() when its control link was (re)opened */
    bool ready;
    bool lost;   /* declared lost: its modules wait for a replacement */
    bool halted; /* answered the Halt of the pipeline being restarted */
    bool fresh;  /* a replacement, joined since the pipeline last (re)started */
    struct peer *next_retired;
    uint64_t bad_messages;
    /* from its reports, for the RPC */
    double last_message; /* sila_clock_s() of its last message */
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

/* A batch sent and maybe not yet finished by the last module; x, labels
 * and targets owned, allocated at the first use of the entry. */
struct sent {
    uint64_t pos; /* its place among all batches of the run, 0, 1, ... */
    struct sila_frame_hdr h;
    float *x;
    int32_t *labels;
    float *targets; /* (batch, classes) for collab, else NULL */
};

/* Where the feeding of batches stands (coord_feed.c). */
struct feeder {
    struct outbox *data; /* owns the data link to the first module */
    struct sent *ring;   /* owned: nring entries, batch pos at pos % nring */
    size_t nring;
    uint64_t next_pos;      /* batches produced so far: the next one's pos */
    uint64_t seq;           /* of the next frame on the data link */
    uint64_t first_step;    /* of this run (after a resume, the checkpoint's) */
    uint64_t next_step;     /* the next training step to produce */
    uint32_t next_test;     /* the next test batch of the round's evaluation */
    uint32_t round;         /* whose batches are being produced (plan.h) */
    int window;             /* in force: coord_window of the workers at the start */
    bool boundary_seen;     /* the step boundary before next_step was looked at */
    double last_checkpoint; /* sila_clock_s() of the last, or of the start */
};

struct coord {
    const struct sila_job *job;
    const struct coord_options *o;
    const char *out_dir;
    struct sila_url base;
    char base_url[SILA_URL_MAX + 16];
    char rundir[256]; /* spawn without --listen: private ipc directory (its sockets
                       * need short paths: sun_path holds 108 bytes) */
    uv_loop_t loop;
    struct startup *run; /* borrowed: the datasets, the report, collab's table */
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

    struct feeder feeder;
    bool paused;         /* no new batches until resumed */
    bool stop_requested; /* no new batches: finish those in flight and save the model */
    /* a lost worker (docs/protocol.md, "Replacing a worker"): halted until
     * the pipeline is whole again, then restarted as a new generation */
    bool halted;
    uint32_t pipeline; /* generation of the pipeline, bumped per restart */

    /* reports, on the loop */
    Sila__RunPhase phase;
    uint64_t done[SILA_MAX_MODULES];    /* batches (all phases) each module finished */
    uint64_t samples[SILA_MAX_MODULES]; /* and their samples */
    bool collecting;
    struct rpc rpc; /* answers from rpc_serve on, with a socket when rpc_open */
    bool rpc_open;
    struct metrics_http http;             /* the /metrics page, reading rpc */
    uint64_t trained[SILA_MAX_MODULES];   /* per module: training steps done (resumed ones too) */
    uint64_t tested[SILA_MAX_MODULES];    /* per module: test batches done, round x batches + i */
    uint32_t eval_done[SILA_MAX_MODULES]; /* per module: batches of the open evaluation */
    struct eval_tally tally;              /* the open evaluation's hits */
    int evaluations_left;                 /* those done are the report's evals */
    int64_t evaluated_round; /* the last round whose evaluation is complete, -1 before */
    double last_report;
    /* module states being collected, for a checkpoint or the end (owned) */
    struct checkpoint_module collected[SILA_MAX_MODULES];
    int states;
    bool collect_for_checkpoint;
    /* checkpoints: the feeding stops at a step boundary until written */
    bool ckpt_requested; /* by the RPC: at the next boundary */
    bool ckpt_pending;   /* due at ckpt_step: draining for it */
    uint64_t ckpt_step;
    char last_checkpoint[SILA_PATH_MAX]; /* path of the newest one written, "" before */

    /* collab's soft targets (collab.h): batches take theirs from the table,
     * the last module's reports teach it (in step order, with the indices
     * of learn_order, its own); an epoch's batches are produced once the
     * last epoch's steps are all learned. */
    struct feed_order learn_order;

    struct child children[SILA_MAX_MODULES];
    int nchildren;
    char worker_exe[SILA_PATH_MAX]; /* silaworker, for spawned workers */
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

/* How a link of the coordinator's authenticates (coord_join.c): channel
 * names it alike at both ends ("rendezvous", "control-K", "data-K"); sealed
 * with --encrypt (the caller unseals the rendezvous). */
struct sila_link_auth coord_link_auth(const struct coord *c, const char *channel);

/* Ends the run with status and err's message, formatted (coord.c). */
void coord_fail(struct coord *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Ends the run with status, err already set; once: later calls do nothing. */
void coord_finish(struct coord *c, int status);
/* Collects the modules' states when the pipeline is drained for the end or
 * a pending checkpoint (coord_collect.c). */
void coord_check_drained(struct coord *c);

/* Joining (coord_join.c). open: the rendezvous, polled; errors with c->err
 * set. */
int coord_join_open(struct coord *c);
/* Sends m (its generation set here) with ntail floats of tail to p through
 * p's outbox. A message that cannot be encoded or queued ends the run, as
 * does a Start, State or Collect the worker does not take in time. Returns
 * 0 or that error; -ENOTCONN once p is lost. */
int coord_peer_send(struct coord *c, struct peer *p, Sila__Control *m, const float *tail,
                    size_t ntail);
/* The control link of p, NULL once p is lost; and its rejected messages. */
struct sila_link *coord_peer_link(const struct peer *p);
uint64_t coord_peer_rejected(const struct peer *p);
/* Closes p's control link (with drain, after the messages queued) and
 * stops polling it; safe when closed. */
void coord_close_control(struct peer *p, bool drain);
/* Opens p's control link again, dropping every connection it holds: for a
 * worker that has joined but is not heard on it (a stale connection of the
 * worker it replaces may hold nanomsg's pair). A failure loses p. */
void coord_reopen_control(struct coord *c, struct peer *p);
/* Handles what waits on p's control link (a uv_poll callback). */
void coord_on_peer_readable(uv_poll_t *h, int status, int events);
/* Sends the owners of modules first..last their states from checkpoint ck;
 * an error has ended the run. */
int coord_restore_modules(struct coord *c, const struct checkpoint *ck, int first, int last);
/* Sends p its Start: where its downstream is, the pipeline generation, and
 * how far each of its modules has come; an error has ended the run. */
int coord_send_start(struct coord *c, struct peer *p);

/* Replacing a worker (coord_replace.c). lose_peer: p is gone (why says
 * how); during training the pipeline halts, else the run fails.
 * restore_replacement: a replacement p is ready, its modules get the newest
 * checkpoint's state. try_restart: restarts the pipeline once it is whole. */
void coord_lose_peer(struct coord *c, struct peer *p, const char *why);
void coord_restore_replacement(struct coord *c, struct peer *p);
void coord_try_restart(struct coord *c);

/* Reports (coord_reports.c): a Done of p's, with d->logits floats at
 * logits (the frame's tail). */
void coord_on_done(struct coord *c, struct peer *p, const Sila__Done *d, const float *logits);
/* Collection (coord_collect.c): a State of p's with its tail; and the end
 * of a collection a lost worker interrupted (what came is freed). */
void coord_on_state(struct coord *c, struct peer *p, const Sila__ModuleState *st,
                    const float *tail);
void coord_drop_collected(struct coord *c);

/* Spawned workers (coord_spawn.c): starts --spawn of them. Errors with
 * c->err set. */
int coord_spawn_workers(struct coord *c);

/* The pipeline's window for job over `workers` workers: o->window when
 * given, else two batches per worker and at least 4 (docs/performance.md:
 * a shallower one leaves a chain of workers idle), but no deeper than the
 * shortest man_period of a module running MAN (a deeper one makes workers
 * wait for snapshots, docs/methods.md). */
int coord_window(const struct coord_options *o, const struct sila_job *job, int workers);
/* The batches (coord_feed.c). init: the ring and the starting position
 * (after the report is open); errors -ENOMEM with c->err set. fini: frees
 * them and closes the data link. */
int coord_feed_init(struct coord *c);
void coord_feed_fini(struct coord *c);
/* Opens the data link to url, the first module's (replacing any). Errors:
 * the link's, with c->err set. */
int coord_feed_connect(struct coord *c, const char *url);
/* Produces and sends batches while the run allows; a failure ends the run. */
void coord_feed_pump(struct coord *c);
/* After a restart: sends every batch from `from` again, on a new data link
 * to reconnect_url when not NULL. Errors with c->err set. */
int coord_feed_restart(struct coord *c, uint64_t from, const char *reconnect_url);

/* The RPC methods (coord_rpc.c); pause, resume and stop call back here. */
rpc_handler coord_rpc_handle;
/* Asks the run to stop after the batches in flight and save the model.
 * Returns false when it is not running. */
bool coord_request_stop(struct coord *c);
/* Asks for a checkpoint at the next step boundary; the step it will be
 * taken after goes to *ret_step. Returns false when it is not running. */
bool coord_request_checkpoint(struct coord *c, uint64_t *ret_step);

#endif
