/* silad's RPC server (see rpc.h). */
#include "rpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"

void *rpc_alloc(struct rpc *rpc, size_t size)
{
    if (rpc->nallocs == rpc->allocs_cap) {
        size_t cap = rpc->allocs_cap ? 2 * rpc->allocs_cap : 32;
        void **a = realloc(rpc->allocs, cap * sizeof *a);
        if (!a)
            return NULL;
        rpc->allocs = a;
        rpc->allocs_cap = cap;
    }
    void *p = calloc(1, size ? size : 1);
    if (p)
        rpc->allocs[rpc->nallocs++] = p;
    return p;
}

char *rpc_strdup(struct rpc *rpc, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = rpc_alloc(rpc, n);
    if (!p)
        return "";
    memcpy(p, s, n);
    return p;
}

void rpc_reply_done(struct rpc *rpc)
{
    for (size_t i = 0; i < rpc->nallocs; i++)
        free(rpc->allocs[i]);
    rpc->nallocs = 0;
}

static bool is_control(const Sila__Request *req)
{
    return req->method_case == SILA__REQUEST__METHOD_PAUSE ||
           req->method_case == SILA__REQUEST__METHOD_RESUME ||
           req->method_case == SILA__REQUEST__METHOD_CHECKPOINT ||
           req->method_case == SILA__REQUEST__METHOD_STOP;
}

void rpc_answer(struct rpc *rpc, const uint8_t *buf, size_t len, Sila__Reply *reply)
{
    char msg[256] = "";
    Sila__Request *req = NULL;
    bool authed = sila_link_authenticated(&rpc->link);
    if (len > SILA_RPC_MAX_REQUEST)
        snprintf(msg, sizeof msg, "request of %zu bytes, at most %u", len, SILA_RPC_MAX_REQUEST);
    else if (rpc->keyed && !authed && !rpc->reads_open)
        snprintf(msg, sizeof msg,
                 "this silad answers authenticated requests only (silactl --key FILE)");
    else if (!(req = sila__request__unpack(NULL, len, buf)))
        snprintf(msg, sizeof msg, "request of %zu bytes does not decode as a sila.Request", len);
    else if (req->version != SILA_RPC_VERSION)
        snprintf(msg, sizeof msg, "RPC version %u, this silad speaks %u", req->version,
                 SILA_RPC_VERSION);
    else if (req->method_case == SILA__REQUEST__METHOD__NOT_SET)
        snprintf(msg, sizeof msg, "request names no method (or one this silad does not know)");
    else if (is_control(req) && rpc->keyed && !authed)
        snprintf(msg, sizeof msg,
                 "control methods need the cluster key: a request signed with it (silactl --key "
                 "FILE)");
    else if (is_control(req) && !rpc->keyed && !rpc->control_allowed)
        snprintf(msg, sizeof msg, "control methods are served on loopback or ipc endpoints only");
    if (*msg) {
        rpc->bad++;
        reply->error = rpc_strdup(rpc, msg);
    } else {
        rpc->handler(rpc->ctx, rpc, req, reply);
    }
    if (req)
        sila__request__free_unpacked(req, NULL);
}

static void send_reply(struct rpc *rpc, const Sila__Reply *reply)
{
    size_t len = sila__reply__get_packed_size(reply);
    uint8_t *buf = len <= SILA_RPC_MAX_REPLY ? sila_link_alloc(len ? len : 1) : NULL;
    if (!buf) {
        fprintf(stderr, "silad: rpc: cannot build a reply of %zu bytes\n", len);
        return;
    }
    sila__reply__pack(reply, buf);
    /* a reply is small and the requester waits for it: never blocks long */
    int r = sila_link_send(&rpc->link, buf, len ? len : 1, 100);
    if (r) {
        sila_link_release(buf);
        fprintf(stderr, "silad: rpc: reply lost: %s\n", strerror(-r));
    }
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    struct rpc *rpc = h->data;
    (void)status, (void)events;
    for (;;) {
        uint8_t *buf;
        size_t len;
        if (sila_link_recv(&rpc->link, &buf, &len, 0))
            return;
        Sila__Reply reply = SILA__REPLY__INIT;
        reply.version = SILA_RPC_VERSION;
        rpc_answer(rpc, buf, len, &reply);
        sila_link_release(buf);
        send_reply(rpc, &reply);
        rpc_reply_done(rpc);
        rpc->served++;
    }
}

int rpc_open(struct rpc *rpc, uv_loop_t *loop, const char *url, const struct rpc_auth *auth,
             rpc_handler *handler, void *ctx, struct sila_err *err)
{
    struct sila_url u;
    int r = sila_url_parse(url, &u, err);
    if (r)
        return r;
    bool local = !u.tcp || sila_url_loopback(&u), keyed = auth && auth->key;
    *rpc = (struct rpc){.handler = handler,
                        .ctx = ctx,
                        .control_allowed = local,
                        .keyed = keyed,
                        .reads_open = keyed && local && auth->reads_open};
    snprintf(rpc->url, sizeof rpc->url, "%s", url);
    /* bare requests pass: reads may be open, and the rest get a reason */
    struct sila_link_auth la = {.key = keyed ? auth->key : NULL,
                                .channel = "rpc",
                                .accept_bare = true,
                                .window_ms = keyed ? auth->window_ms : 0};
    /* the limit is above the cap: an oversized request gets a reply too */
    if ((r = sila_link_open(&rpc->link, SILA_LINK_REPLY, url, true, 4 * SILA_RPC_MAX_REQUEST, &la,
                            err)))
        return r;
    int rfd, sfd;
    if ((r = sila_link_fds(&rpc->link, &rfd, &sfd)) || (r = uv_poll_init(loop, &rpc->poll, rfd))) {
        sila_link_close(&rpc->link);
        return sila_err_set(err, -EIO, "%s: cannot poll: %s", url, strerror(r < 0 ? -r : r));
    }
    rpc->poll.data = rpc;
    rpc->polling = true;
    uv_poll_start(&rpc->poll, UV_READABLE, on_readable);
    return 0;
}

int rpc_serve(struct rpc *rpc, uv_loop_t *loop, const struct rpc_endpoint *ep, rpc_handler *handler,
              void *ctx, bool *ret_open, struct sila_err *err)
{
    *ret_open = false;
    if (!ep->url)
        return 0;
    struct sila_err e;
    int r = rpc_open(rpc, loop, ep->url, &ep->auth, handler, ctx, &e);
    *ret_open = r == 0;
    if (r == 0) {
        printf("serving the RPC at %s (silactl --connect %s status)\n", ep->url, ep->url);
        fflush(stdout);
    } else if (ep->required) {
        return sila_err_set(err, r, "--rpc: %s", e.msg);
    } else {
        fprintf(stderr, "silad: no RPC this run (%s); choose an endpoint with --rpc\n", e.msg);
    }
    return 0;
}

void rpc_close(struct rpc *rpc)
{
    if (rpc->polling && !uv_is_closing((uv_handle_t *)&rpc->poll))
        uv_close((uv_handle_t *)&rpc->poll, NULL);
    rpc->polling = false;
    sila_link_close(&rpc->link);
    rpc_reply_done(rpc);
    free(rpc->allocs);
    rpc->allocs = NULL;
}
