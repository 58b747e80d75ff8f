/* The encoded replies of silad's read methods (status, workers, metrics),
 * sent again to the same request bytes until the run moves on: under a
 * flood of reads, a request costs a lookup and a copy, and the run builds
 * and encodes each reply at most once per change. An entry is stale once
 * the run marks a change (rpc_cache_stale: a step, an evaluation, a
 * checkpoint, a control request) or when it is RPC_CACHE_MAX_AGE_S old,
 * so that what changes between steps (workers joining, the phase, the
 * time elapsed while paused) shows within that time. A zeroed cache is an
 * empty one. */
#ifndef SILA_RPC_CACHE_H
#define SILA_RPC_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define RPC_CACHE_SLOTS 4    /* status, workers, metrics, and metrics asked another way */
#define RPC_CACHE_KEY_MAX 64 /* request bytes; a longer request is never kept */
#define RPC_CACHE_MAX_AGE_S 1.0

struct rpc_cache_entry {
    uint8_t key[RPC_CACHE_KEY_MAX]; /* the request's bytes */
    size_t keylen;                  /* 0: an empty slot */
    uint8_t *reply;                 /* owned: the encoded sila.Reply */
    size_t len;
    uint64_t gen;   /* the cache's generation it was built in */
    double built_s; /* when (sila_clock_s) */
};

struct rpc_cache {
    struct rpc_cache_entry slots[RPC_CACHE_SLOTS];
    uint64_t gen; /* advanced by rpc_cache_stale */
};

/* The fresh entry for the len bytes of request req at now_s, or NULL. */
const struct rpc_cache_entry *rpc_cache_find(const struct rpc_cache *c, const uint8_t *req,
                                             size_t len, double now_s);
/* Keeps a copy of reply (rlen bytes) as the answer to req (len bytes),
 * built at now_s, in the slot of the same request or else the oldest.
 * Keeps nothing when req is longer than RPC_CACHE_KEY_MAX or memory runs
 * out: the next request builds its reply again. */
void rpc_cache_put(struct rpc_cache *c, const uint8_t *req, size_t len, const uint8_t *reply,
                   size_t rlen, double now_s);
/* The run moved on: every entry is stale. */
void rpc_cache_stale(struct rpc_cache *c);
/* Frees the entries; the cache is empty after. */
void rpc_cache_fini(struct rpc_cache *c);

#endif
