/* A worker's state and the functions its files share (worker.c: the steps
 * and the serving loop; worker_link.c: the control link and the data
 * edges; worker_join.c: joining, starting and halting). Private to them.
 * One thread owns all of it. */
#ifndef SILA_WORKER_STATE_H
#define SILA_WORKER_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "ctl.h"
#include "endpoint.h"
#include "frame.h"
#include "job.h"
#include "plan.h"
#include "stage.h"
#include "transport.h"
#include "worker.h"

#define TICK_MS 1000 /* blocking calls wake this often to look at the control link */
/* a send blocked this long looks at what downstream sent (job.global_lag) */
#define TAKE_DOWN_MS 50

struct worker {
    const struct worker_options *o;
    struct sila_url base;
    /* where the upstream edge listens (tcp), and the host announced for it
     * (wjoin_addresses) */
    char bind_host[256], adv_host[256];
    struct sila_job job;
    struct sila_plan plan;
    /* its modules (first..last), with their progress as the coordinator
     * counted it (docs/protocol.md: a batch learned or reported before a
     * restart is passed on only) */
    struct sila_stage stage;
    struct sila_link ctl, up, down;            /* down.sock < 0 for the last module */
    bool down_greeted;                         /* down answered a greeting since it opened */
    bool sealed;                               /* links after the rendezvous (its Welcome) */
    uint32_t gen;                              /* this worker's, on its control messages */
    uint32_t pipeline;                         /* the pipeline's, on every frame (from Start) */
    uint64_t up_in, up_out, down_in, down_out; /* next sequence number per edge, direction */
    uint32_t halt_pipeline; /* of the Halt received (pipelines after the first count from 1) */
    size_t max_frame;       /* of the job's data frames */
    uint64_t stale_frames;  /* of older pipelines, dropped */
    struct sila_frame_limits up_lim, down_lim; /* up_lim.collab: the job uses collab */
    float *up_x, *down_x; /* owned: a 16-bit frame's tensor as floats, per edge (NULL: f32) */
    bool stopped;
    /* where the time goes (reported with the modules' state) */
    double first_batch;           /* when the first batch arrived, 0 before */
    double handling_s, waiting_s; /* in on_batch, and blocked on peers inside it */
    double global_s;
    uint64_t bytes_out;
    double last_heard, last_beat; /* from / to the coordinator, sila_clock_s() */
};

static inline bool worker_has_down(const struct worker *w)
{
    return w->down.sock >= 0;
}

/* Whether the worker takes the frames downstream sends as they come: the
 * gradients of late global steps (job.global_lag). */
static inline bool worker_takes_down(const struct worker *w)
{
    return w->job.global_lag > 0 && worker_has_down(w);
}

/* The shape of what the worker's last module outputs. */
static inline struct sila_shape worker_out_shape(const struct worker *w)
{
    return sila_net_out_shape(w->stage.mods[w->stage.last]->body);
}

/* ---- worker_link.c ---- */

/* How a link of the worker's authenticates: its channel, written into ch
 * (32 bytes) from fmt and k, names it alike at both ends ("rendezvous",
 * "control-K", "data-K"; K the first module of the worker the link leads
 * to, 1-based); sealed when the run is (w->sealed, which only the Welcome
 * sets: the rendezvous never is). */
struct sila_link_auth wlink_auth(const struct worker *w, char ch[32], const char *fmt, int k);
/* Sends a heartbeat once a second; a coordinator silent for the timeout is
 * lost (-ETIMEDOUT, err set): the worker exits, to be restarted and rejoin. */
int wlink_keep_alive(struct worker *w, struct sila_err *err);
/* Sends c (its generation set here) with ntail floats of tail on the
 * control link, waiting as long as the coordinator is alive. Errors: the
 * link's, or keep_alive's, with err set. */
int wlink_send_ctl(struct worker *w, Sila__Control *c, const float *tail, size_t ntail,
                   struct sila_err *err);
/* Reports module k's batch h done: its loss and hits, and for collab the
 * classifier's logits (h->n, nclasses) of a training step (else NULL). */
int wlink_send_done(struct worker *w, int k, const struct sila_frame_hdr *h, double loss,
                    int correct, const float *logits, struct sila_err *err);
/* Receives a control message (waiting up to timeout_ms) for this worker's
 * generation; one for another means this worker was declared lost and
 * replaced (-ESTALE, err set). *m is the caller's to free on success. */
int wlink_recv_ctl(struct worker *w, int timeout_ms, struct sila_ctl_msg *m, struct sila_err *err);
/* Handles one control message: Collect, Halt or Stop, or before the start
 * a module's state to restore. A Halt returns -ERESTART: the batch in hand
 * is dropped and the worker waits for the next Start (wjoin_halt). */
int wlink_on_control(struct worker *w, const struct sila_ctl_msg *m, struct sila_err *err);
/* Handles whatever waits on the control link, without blocking. */
int wlink_drain_control(struct worker *w, struct sila_err *err);
/* Sends a frame of (n, shape s) values x on link l, numbered by *seq, with
 * the header fields of `of`, labels, soft targets (n, nclasses) and the
 * network's input when not NULL; waits as long as the receiver needs,
 * watching the control link meanwhile. */
int wlink_send_frame(struct worker *w, struct sila_link *l, uint64_t *seq,
                     const struct sila_frame_hdr *of, bool gradient, struct sila_shape s,
                     const int32_t *labels, const float *targets, const float *image,
                     const float *x, struct sila_err *err);
/* Receives and checks the next frame on l: limits, pipeline generation
 * (older ones are dropped) and sequence (greetings, their answers and
 * MAN's requests stand outside both). *buf is the caller's to release; v
 * points into it. */
int wlink_recv_frame(struct worker *w, struct sila_link *l, const struct sila_frame_limits *lim,
                     uint64_t *seq, uint8_t **buf, struct sila_frame_view *v, struct sila_err *err);

/* A data link's greeting (greet.h): greets the worker downstream on the
 * link just (re)opened, watching the control link meanwhile (a stop ends
 * it, w->stopped says so); answers a greeting from upstream. Errors: the
 * link's, the control link's. */
int wlink_greet_down(struct worker *w, struct sila_err *err);
int wlink_answer_hello(struct worker *w, struct sila_err *err);

/* MAN across the worker's edges (docs/protocol.md): asks the worker
 * downstream for its newest snapshot (on a greeted link, outside the
 * sequence); sends module first's snapshot `tag` (n floats) upstream;
 * receives from downstream until module last holds a snapshot of tag >=
 * want (other frames there, but a greeting's late answer, are a protocol
 * error). -ECANCELED when the run stops meanwhile. */
int wlink_ask_snapshot(struct worker *w, struct sila_err *err);
int wlink_send_snapshot(struct worker *w, uint64_t tag, const float *v, size_t n,
                        struct sila_err *err);
int wlink_await_snapshot(struct worker *w, uint64_t want, struct sila_err *err);
/* Global steps across the worker's edges: sends module first's
 * d(loss)/d(input) of global step `step` (B samples) upstream, at once or
 * late. For late ones (job.global_lag): receives from downstream until
 * module last holds the gradient of global step `step` (other frames
 * there, but snapshots and a greeting's late answer, are a protocol
 * error; -ECANCELED when the run stops meanwhile); takes into the stage,
 * without waiting, whatever downstream has sent (so that a neighbour
 * sending here is never blocked while this worker sends to it). */
int wlink_send_gradient(struct worker *w, uint64_t step, int B, const float *din,
                        struct sila_err *err);
int wlink_await_gradient(struct worker *w, uint64_t step, struct sila_err *err);
int wlink_take_down(struct worker *w, struct sila_err *err);
/* Receives the next frame from downstream that is not a snapshot, a late
 * global step's gradient or a greeting's answer, taking those before it
 * into the stage. As wlink_recv_frame. */
int wlink_recv_down(struct worker *w, uint8_t **buf, struct sila_frame_view *v,
                    struct sila_err *err);

/* ---- worker.c ---- */

/* MAN at a Start: the stage forgets the snapshots it holds
 * (sila_stage_man_start), and asks the worker downstream, when module last
 * takes its snapshots, for its newest: asked on the link this worker has
 * just (re)opened and greeted, it comes by the connection the batches'
 * gradients will (a snapshot sent at the other's Start could go into a
 * connection this end is about to drop). */
int worker_man_start(struct worker *w, struct sila_err *err);

/* ---- worker_join.c ---- */

/* Asks the coordinator to join until it answers (it may not be up yet);
 * on success *ret holds its answer (a Welcome or a Refusal), the caller's
 * to free. */
/* Settles bind_host and adv_host: the worker listens on --bind, else on a
 * numeric --advertise, else on the address of its route to the coordinator
 * (127.0.0.1 for an ipc or loopback one), and announces --advertise, else
 * a --bind other than all interfaces, else that route address. Errors: a
 * coordinator host that does not resolve, with err set. */
int wjoin_addresses(struct worker *w, struct sila_err *err);
int wjoin_ask(struct worker *w, struct sila_ctl_msg *ret, struct sila_err *err);
/* Takes the plan of a Welcome: the job, the modules, their edges. */
int wjoin_take_plan(struct worker *w, const Sila__Welcome *wel, struct sila_err *err);
/* Opens the control link and the edges, says Ready, waits for Start. */
int wjoin_connect(struct worker *w, struct sila_err *err);
/* The coordinator halted the pipeline (a worker was lost): says so, after
 * every Done sent before, and waits for the restart. */
int wjoin_halt(struct worker *w, struct sila_err *err);

#endif
