/* Encoded replies of read methods (see rpc_cache.h). */
#include "rpc_cache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool same_request(const struct rpc_cache_entry *e, const uint8_t *req, size_t len)
{
    return e->keylen != 0 && e->keylen == len && memcmp(e->key, req, len) == 0;
}

const struct rpc_cache_entry *rpc_cache_find(const struct rpc_cache *c, const uint8_t *req,
                                             size_t len, double now_s)
{
    for (size_t i = 0; i < RPC_CACHE_SLOTS; i++) {
        const struct rpc_cache_entry *e = &c->slots[i];
        if (same_request(e, req, len) && e->gen == c->gen && now_s - e->built_s >= 0 &&
            now_s - e->built_s < RPC_CACHE_MAX_AGE_S)
            return e;
    }
    return NULL;
}

/* The slot for req: its own, else an empty one, else the oldest. */
static struct rpc_cache_entry *slot_for(struct rpc_cache *c, const uint8_t *req, size_t len)
{
    struct rpc_cache_entry *oldest = &c->slots[0];
    for (size_t i = 0; i < RPC_CACHE_SLOTS; i++) {
        struct rpc_cache_entry *e = &c->slots[i];
        if (same_request(e, req, len) || e->keylen == 0)
            return e;
        if (e->built_s < oldest->built_s)
            oldest = e;
    }
    return oldest;
}

void rpc_cache_put(struct rpc_cache *c, const uint8_t *req, size_t len, const uint8_t *reply,
                   size_t rlen, double now_s)
{
    if (len == 0 || len > RPC_CACHE_KEY_MAX)
        return;
    struct rpc_cache_entry *e = slot_for(c, req, len);
    uint8_t *copy = malloc(rlen ? rlen : 1);
    free(e->reply);
    *e = (struct rpc_cache_entry){.gen = c->gen, .built_s = now_s};
    if (!copy)
        return;
    memcpy(copy, reply, rlen);
    memcpy(e->key, req, len);
    e->keylen = len;
    e->reply = copy;
    e->len = rlen;
}

void rpc_cache_stale(struct rpc_cache *c)
{
    c->gen++;
}

void rpc_cache_fini(struct rpc_cache *c)
{
    for (size_t i = 0; i < RPC_CACHE_SLOTS; i++)
        free(c->slots[i].reply);
    *c = (struct rpc_cache){0};
}
