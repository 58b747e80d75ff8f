/* The RPC server of silad: one REP socket on the event loop, answering one
 * sila.Request per frame with one sila.Reply (docs/rpc.md). It owns the
 * framing, the size cap, decoding and the version check; what a method
 * does is the handler's. With a cluster key, requests are authenticated by
 * the link (common/wire/transport.h): control methods (pause, resume,
 * checkpoint, stop) need a valid MAC, and read methods too unless the
 * endpoint is loopback or ipc and reads are open; requests whose MAC fails
 * are dropped by the link, unanswered. Without a key, control methods are
 * refused unless the endpoint is loopback or ipc. Bad requests get an
 * error reply (or, when undecodable, one too) and are counted; nothing
 * else changes.
 *
 * A flood of requests cannot take the run's time. Replies to read methods
 * are encoded once per change of the run and sent again (rpc_cache.h), and
 * a rate limit caps what is served: read requests (and bad ones) draw on
 * one token bucket of the endpoint's rate, control requests on their own
 * small one, so a flood of reads does not starve a pause or a stop. A
 * request finding its bucket empty gets a short busy error (with
 * retry_after_ms), and then the server reads nothing until that bucket has
 * a token again, and for SILA_RPC_HOLD_S at least: requests wait in
 * nanomsg's queues, so a flood of any rate, over any number of
 * connections, costs a round trip per token and at most 10 busy replies a
 * second. The limit is global, not per client: a REP socket does not tell
 * which peer a request came from. */
#ifndef SILA_RPC_H
#define SILA_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bucket.h"
#include "err.h"
#include "rpc_cache.h"
#include "sila.pb-c.h"
#include "transport.h"

#define SILA_RPC_VERSION 1u
#define SILA_RPC_DEFAULT "tcp://127.0.0.1:7599" /* silad --rpc, silactl --connect */
#define SILA_RPC_MAX_REQUEST (64u << 10)
#define SILA_RPC_MAX_REPLY (64u << 20)
#define SILA_RPC_RATE 100u        /* silad --rpc-rate: read requests a second, by default */
#define SILA_RPC_CONTROL_RATE 10u /* control requests a second, under any read rate */
#define SILA_RPC_HOLD_S 0.1       /* after a busy reply, nothing is read for at least this long */

struct rpc;
struct sila_key;
struct metrics_addr;

/* How the RPC authenticates its clients. */
struct rpc_auth {
    const struct sila_key *key; /* the cluster key; NULL: none */
    bool reads_open;            /* with a key: read methods without a MAC on loopback or ipc */
    uint32_t window_ms;         /* accepted clock difference; 0: the default */
};

/* Where and how a run serves its RPC, and its /metrics page
 * (metrics_http.h), which reads the RPC's replies. */
struct rpc_endpoint {
    const char *url; /* NULL: no RPC */
    bool required;   /* asked for by the user: failing to serve it is an error */
    struct rpc_auth auth;
    uint32_t rate; /* read requests served a second, in bursts of as many; 0: no limit */
    const struct metrics_addr *metrics; /* silad --metrics: where; NULL: no page */
};

/* Fills reply's result for req (a decoded request of our version), or sets
 * reply->error with rpc_strdup. Memory for the reply comes from rpc_alloc
 * and is freed once the reply is encoded. */
typedef void rpc_handler(void *ctx, struct rpc *rpc, const Sila__Request *req, Sila__Reply *reply);

struct rpc {
    struct sila_link link;
    uv_poll_t poll;
    uv_timer_t hold;      /* after a busy reply: starts the poll again */
    bool polling;         /* poll and hold are open */
    bool control_allowed; /* loopback or ipc */
    bool keyed;           /* requests are authenticated (struct rpc_auth) */
    bool reads_open;      /* keyed, loopback or ipc, reads open: reads need no MAC */
    rpc_handler *handler;
    void *ctx;
    struct sila_bucket reads, control; /* the rate limit; zeroed: none */
    struct rpc_cache cache;
    uint64_t served, bad, busy; /* requests answered, bad ones and busy replies among them */
    void **allocs;              /* owned: this reply's allocations */
    size_t nallocs, allocs_cap;
    uint8_t *out; /* owned: the reply last encoded */
    size_t out_cap;
    char url[320];
};

/* Listens on ep->url (not NULL) and serves requests on loop with handler,
 * authenticated as ep->auth says and limited to ep->rate. Errors: -EINVAL
 * (url), -EADDRINUSE, ... with err naming the url. */
int rpc_open(struct rpc *rpc, uv_loop_t *loop, const struct rpc_endpoint *ep, rpc_handler *handler,
             void *ctx, struct sila_err *err);
/* rpc_open as a run does it: prints where it serves; when the url cannot
 * be served, that is an error if it is required, else a warning (another
 * silad may hold the default) and the run goes on without RPC. Returns 0
 * with *ret_open saying whether it serves (false too for no url), or
 * -errno with err set. After a return of 0 the rpc answers rpc_read, with
 * a socket or without, until rpc_close. */
int rpc_serve(struct rpc *rpc, uv_loop_t *loop, const struct rpc_endpoint *ep, rpc_handler *handler,
              void *ctx, bool *ret_open, struct sila_err *err);
/* Stops serving (the handles close on the loop), closes the socket and
 * frees what the rpc holds. Safe on a zeroed rpc and on a closed one. */
void rpc_close(struct rpc *rpc);
/* The run moved on (a step, an evaluation, a checkpoint): replies to read
 * methods are built afresh. Safe on an rpc that does not serve. */
void rpc_refresh(struct rpc *rpc);

/* An encoded reply, owned by the rpc: valid until the next rpc_answer or
 * rpc_close. */
struct rpc_reply {
    const uint8_t *buf;
    size_t len;
    double hold_s; /* > 0 for a busy reply: read nothing more for that long */
};
/* Answers len bytes of request: a busy error over the rate limit, an
 * error for a bad request, else the handler's result (from the cache for
 * reads). Whether the request carried a valid MAC comes from the link
 * (sila_link_authenticated). Returns 0, or -EMSGSIZE or -ENOMEM when the
 * reply cannot be encoded (there is nothing to send). Used by the server
 * and by the fuzz test. */
int rpc_answer(struct rpc *rpc, const uint8_t *buf, size_t len, struct rpc_reply *ret);

/* Takes one read request from the budget (--rpc-rate) at now for what
 * silad serves from within, its /metrics page: returns true, or false
 * with *ret_wait_s the seconds to wait (SILA_RPC_HOLD_S at least). */
bool rpc_take_read(struct rpc *rpc, double *ret_wait_s);
/* Reads a method (status, workers or metrics since step 0) from within
 * silad, for its /metrics page: the reply a client sending that request
 * gets, from the same cache, with no authentication (the caller is its own
 * gate) and drawing nothing from the budget (rpc_take_read). Returns 0
 * with *ret_reply (free with sila__reply__free_unpacked), -ENOMEM when the
 * reply cannot be built, or -EMSGSIZE. */
int rpc_read(struct rpc *rpc, Sila__Request__MethodCase method, Sila__Reply **ret_reply);

/* Zeroed memory for the reply being built (NULL when out of memory). */
void *rpc_alloc(struct rpc *rpc, size_t size);
/* A copy of s for the reply being built ("" when out of memory). */
char *rpc_strdup(struct rpc *rpc, const char *s);

#endif
