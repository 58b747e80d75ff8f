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
 * else changes. */
#ifndef SILA_RPC_H
#define SILA_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"
#include "sila.pb-c.h"
#include "transport.h"

#define SILA_RPC_VERSION 1u
#define SILA_RPC_DEFAULT "tcp://127.0.0.1:7599" /* silad --rpc, silactl --connect */
#define SILA_RPC_MAX_REQUEST (64u << 10)
#define SILA_RPC_MAX_REPLY (64u << 20)

struct rpc;
struct sila_key;

/* How the RPC authenticates its clients. */
struct rpc_auth {
    const struct sila_key *key; /* the cluster key; NULL: none */
    bool reads_open;            /* with a key: read methods without a MAC on loopback or ipc */
    uint32_t window_ms;         /* accepted clock difference; 0: the default */
};

/* Where and how a run serves its RPC. */
struct rpc_endpoint {
    const char *url; /* NULL: no RPC */
    bool required;   /* asked for by the user: failing to serve it is an error */
    struct rpc_auth auth;
};

/* Fills reply's result for req (a decoded request of our version), or sets
 * reply->error with rpc_strdup. Memory for the reply comes from rpc_alloc
 * and is freed once the reply is sent. */
typedef void rpc_handler(void *ctx, struct rpc *rpc, const Sila__Request *req, Sila__Reply *reply);

struct rpc {
    struct sila_link link;
    uv_poll_t poll;
    bool polling;
    bool control_allowed; /* loopback or ipc */
    bool keyed;           /* requests are authenticated (struct rpc_auth) */
    bool reads_open;      /* keyed, loopback or ipc, reads open: reads need no MAC */
    rpc_handler *handler;
    void *ctx;
    uint64_t served, bad; /* requests answered, and bad ones among them */
    void **allocs;        /* owned: this reply's allocations */
    size_t nallocs, allocs_cap;
    char url[320];
};

/* Listens on url and serves requests on loop with handler, authenticated
 * as auth says (NULL: no key). Errors: -EINVAL (url), -EADDRINUSE, ...
 * with err naming the url. */
int rpc_open(struct rpc *rpc, uv_loop_t *loop, const char *url, const struct rpc_auth *auth,
             rpc_handler *handler, void *ctx, struct sila_err *err);
/* rpc_open as a run does it: prints where it serves; when the url cannot
 * be served, that is an error if it is required, else a warning (another
 * silad may hold the default) and the run goes on without RPC. Returns 0
 * with *ret_open saying whether it serves (false too for no url), or
 * -errno with err set. */
int rpc_serve(struct rpc *rpc, uv_loop_t *loop, const struct rpc_endpoint *ep, rpc_handler *handler,
              void *ctx, bool *ret_open, struct sila_err *err);
/* Stops serving (the poll handle closes on the loop) and closes the socket. */
void rpc_close(struct rpc *rpc);

/* Fills reply (version set by the caller) for len bytes of request: an
 * error for a bad one, else the handler's result. Whether the request
 * carried a valid MAC comes from the link (sila_link_authenticated). The
 * reply's memory lives until rpc_reply_done. Used by the server and by the
 * fuzz test. */
void rpc_answer(struct rpc *rpc, const uint8_t *buf, size_t len, Sila__Reply *reply);
/* Frees the memory of the reply last built. */
void rpc_reply_done(struct rpc *rpc);

/* Zeroed memory for the reply being built (NULL when out of memory). */
void *rpc_alloc(struct rpc *rpc, size_t size);
/* A copy of s for the reply being built ("" when out of memory). */
char *rpc_strdup(struct rpc *rpc, const char *s);

#endif
