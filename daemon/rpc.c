/* silad's RPC server (see rpc.h). */
#include "rpc.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
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

/* Frees the memory of the reply last built. */
static void reply_done(struct rpc *rpc)
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

/* Why a request of len bytes is refused before decoding, into msg ("" when
 * it is not). */
static void refuse_undecoded(const struct rpc *rpc, size_t len, char *msg, size_t n)
{
    if (len > SILA_RPC_MAX_REQUEST)
        snprintf(msg, n, "request of %zu bytes, at most %u", len, SILA_RPC_MAX_REQUEST);
    else if (rpc->keyed && !sila_link_authenticated(&rpc->link) && !rpc->reads_open)
        snprintf(msg, n, "this silad answers authenticated requests only (silactl --key FILE)");
}

/* The request in buf decoded, or NULL with why in msg; a decoded request
 * this silad will not serve is returned with why in msg too. */
static Sila__Request *decode(const struct rpc *rpc, const uint8_t *buf, size_t len, char *msg,
                             size_t n)
{
    bool authed = sila_link_authenticated(&rpc->link);
    Sila__Request *req = sila__request__unpack(NULL, len, buf);
    if (!req)
        snprintf(msg, n, "request of %zu bytes does not decode as a sila.Request", len);
    else if (req->version != SILA_RPC_VERSION)
        snprintf(msg, n, "RPC version %u, this silad speaks %u", req->version, SILA_RPC_VERSION);
    else if (req->method_case == SILA__REQUEST__METHOD__NOT_SET)
        snprintf(msg, n, "request names no method (or one this silad does not know)");
    else if (is_control(req) && rpc->keyed && !authed)
        snprintf(msg, n,
                 "control methods need the cluster key: a request signed with it (silactl --key "
                 "FILE)");
    else if (is_control(req) && !rpc->keyed && !rpc->control_allowed)
        snprintf(msg, n, "control methods are served on loopback or ipc endpoints only");
    return req;
}

/* Encodes reply into rpc->out as *ret; frees the reply's memory. */
static int encode(struct rpc *rpc, const Sila__Reply *reply, struct rpc_reply *ret)
{
    size_t len = sila__reply__get_packed_size(reply);
    int r = len > SILA_RPC_MAX_REPLY ? -EMSGSIZE : 0;
    if (r == 0 && len > rpc->out_cap) {
        uint8_t *out = realloc(rpc->out, len);
        if (out) {
            rpc->out = out;
            rpc->out_cap = len;
        } else {
            r = -ENOMEM;
        }
    }
    if (r == 0) {
        sila__reply__pack(reply, rpc->out);
        *ret = (struct rpc_reply){.buf = rpc->out, .len = len};
    }
    reply_done(rpc);
    return r;
}

/* Seconds a request that found budget empty at now waits: until a token,
 * and SILA_RPC_HOLD_S at least. */
static double busy_wait(const struct sila_bucket *budget, double now)
{
    double wait = sila_bucket_wait(budget, now);
    return wait < SILA_RPC_HOLD_S ? SILA_RPC_HOLD_S : wait;
}

/* The busy error of a request that found budget empty at now. */
static int answer_busy(struct rpc *rpc, const struct sila_bucket *budget, double now,
                       struct rpc_reply *ret)
{
    char msg[160];
    double wait = busy_wait(budget, now);
    uint32_t ms = (uint32_t)(wait * 1e3) + 1;
    bool reads = budget == &rpc->reads;
    snprintf(msg, sizeof msg,
             "busy: over the limit of %.0f %s requests a second%s; ask again in %u ms",
             budget->rate, reads ? "read" : "control", reads ? " (silad --rpc-rate)" : "", ms);
    Sila__Reply reply = SILA__REPLY__INIT;
    reply.version = SILA_RPC_VERSION;
    reply.error = msg;
    reply.retry_after_ms = ms;
    rpc->busy++;
    int r = encode(rpc, &reply, ret);
    if (r == 0)
        ret->hold_s = wait;
    return r;
}

/* The answer to req (NULL when it did not decode), or the error msg;
 * a read's reply is kept for the same request bytes buf, a control
 * request (which may change the run) makes the kept ones stale. */
static int answer_request(struct rpc *rpc, const Sila__Request *req, bool control, const char *msg,
                          const uint8_t *buf, size_t len, double now, struct rpc_reply *ret)
{
    Sila__Reply reply = SILA__REPLY__INIT;
    reply.version = SILA_RPC_VERSION;
    if (*msg) {
        rpc->bad++;
        reply.error = rpc_strdup(rpc, msg);
    } else {
        rpc->handler(rpc->ctx, rpc, req, &reply);
    }
    bool keep = !*msg && !control && reply.result_case != SILA__REPLY__RESULT__NOT_SET;
    int r = encode(rpc, &reply, ret);
    if (control)
        rpc_cache_stale(&rpc->cache);
    else if (keep && r == 0)
        rpc_cache_put(&rpc->cache, buf, len, ret->buf, ret->len, now);
    return r;
}

static int answer_kept(const struct rpc_cache_entry *kept, struct rpc_reply *ret)
{
    *ret = (struct rpc_reply){.buf = kept->reply, .len = kept->len};
    return 0;
}

/* A read method's request, as silactl sends it. */
struct read_request {
    Sila__Request req;
    Sila__StatusRequest status;
    Sila__WorkersRequest workers;
    Sila__MetricsRequest metrics; /* since step 0 */
};

static void read_request_init(struct read_request *q, Sila__Request__MethodCase method)
{
    assert(method == SILA__REQUEST__METHOD_STATUS || method == SILA__REQUEST__METHOD_WORKERS ||
           method == SILA__REQUEST__METHOD_METRICS);
    sila__request__init(&q->req);
    sila__status_request__init(&q->status);
    sila__workers_request__init(&q->workers);
    sila__metrics_request__init(&q->metrics);
    q->req.version = SILA_RPC_VERSION;
    q->req.method_case = method;
    if (method == SILA__REQUEST__METHOD_STATUS)
        q->req.status = &q->status;
    else if (method == SILA__REQUEST__METHOD_WORKERS)
        q->req.workers = &q->workers;
    else
        q->req.metrics = &q->metrics;
}

bool rpc_take_read(struct rpc *rpc, double *ret_wait_s)
{
    double now = sila_clock_s();
    if (sila_bucket_take(&rpc->reads, now))
        return true;
    rpc->busy++;
    *ret_wait_s = busy_wait(&rpc->reads, now);
    return false;
}

int rpc_read(struct rpc *rpc, Sila__Request__MethodCase method, Sila__Reply **ret_reply)
{
    struct read_request q;
    read_request_init(&q, method);
    uint8_t buf[64]; /* its bytes: the cache's key */
    assert(sila__request__get_packed_size(&q.req) <= sizeof buf);
    size_t len = sila__request__pack(&q.req, buf);
    double now = sila_clock_s();
    const struct rpc_cache_entry *kept = rpc_cache_find(&rpc->cache, buf, len, now);
    struct rpc_reply out;
    int r = kept ? answer_kept(kept, &out)
                 : answer_request(rpc, &q.req, false, "", buf, len, now, &out);
    Sila__Reply *rep = r ? NULL : sila__reply__unpack(NULL, out.len, out.buf);
    if (rep && rep->result_case == SILA__REPLY__RESULT__NOT_SET) {
        sila__reply__free_unpacked(rep, NULL); /* the handler ran out of memory */
        rep = NULL;
    }
    if (!rep)
        return r ? r : -ENOMEM;
    *ret_reply = rep;
    return 0;
}

int rpc_answer(struct rpc *rpc, const uint8_t *buf, size_t len, struct rpc_reply *ret)
{
    double now = sila_clock_s();
    char msg[256] = "";
    Sila__Request *req = NULL;
    const struct rpc_cache_entry *kept = NULL;
    refuse_undecoded(rpc, len, msg, sizeof msg);
    if (!*msg && !(kept = rpc_cache_find(&rpc->cache, buf, len, now)))
        req = decode(rpc, buf, len, msg, sizeof msg);
    /* a bad request costs a reply too: it draws on the reads' budget */
    bool control = req && !*msg && is_control(req);
    struct sila_bucket *budget = control ? &rpc->control : &rpc->reads;
    int r;
    if (!sila_bucket_take(budget, now))
        r = answer_busy(rpc, budget, now, ret);
    else if (kept)
        r = answer_kept(kept, ret);
    else
        r = answer_request(rpc, req, control, msg, buf, len, now, ret);
    if (req)
        sila__request__free_unpacked(req, NULL);
    return r;
}

static void send_reply(struct rpc *rpc, const struct rpc_reply *reply)
{
    size_t len = reply->len ? reply->len : 1;
    uint8_t *buf = sila_link_alloc(len);
    if (!buf) {
        fprintf(stderr, "silad: rpc: no memory for a reply of %zu bytes\n", len);
        return;
    }
    memcpy(buf, reply->buf, reply->len);
    /* a reply is small and the requester waits for it: never blocks long */
    int r = sila_link_send(&rpc->link, buf, len, 100);
    if (r) {
        sila_link_release(buf);
        fprintf(stderr, "silad: rpc: reply lost: %s\n", strerror(-r));
    }
}

static void on_readable(uv_poll_t *h, int status, int events);

static void on_hold_over(uv_timer_t *t)
{
    struct rpc *rpc = t->data;
    if (rpc->polling)
        uv_poll_start(&rpc->poll, UV_READABLE, on_readable);
}

/* Reads nothing for s seconds: the requests wait in nanomsg's queues. */
static void hold(struct rpc *rpc, double s)
{
    uv_poll_stop(&rpc->poll);
    uv_timer_start(&rpc->hold, on_hold_over, (uint64_t)(s * 1e3) + 1, 0);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    struct rpc *rpc = h->data;
    (void)status, (void)events;
    while (rpc->polling) {
        uint8_t *buf;
        size_t len;
        if (sila_link_recv(&rpc->link, &buf, &len, 0))
            return;
        struct rpc_reply reply;
        int r = rpc_answer(rpc, buf, len, &reply);
        sila_link_release(buf);
        rpc->served++;
        if (r) {
            fprintf(stderr, "silad: rpc: cannot encode a reply: %s\n", strerror(-r));
            continue;
        }
        send_reply(rpc, &reply);
        if (reply.hold_s > 0 && rpc->polling) {
            hold(rpc, reply.hold_s);
            return;
        }
    }
}

/* rpc as it answers for ep, without a socket: local, the endpoint is
 * loopback or ipc. */
static void init(struct rpc *rpc, const struct rpc_endpoint *ep, bool local, rpc_handler *handler,
                 void *ctx)
{
    bool keyed = ep->auth.key != NULL;
    *rpc = (struct rpc){.handler = handler,
                        .ctx = ctx,
                        .control_allowed = local,
                        .keyed = keyed,
                        .reads_open = keyed && local && ep->auth.reads_open};
    rpc->link.sock = -1;
    snprintf(rpc->url, sizeof rpc->url, "%s", ep->url ? ep->url : "");
    double now = sila_clock_s();
    sila_bucket_init(&rpc->reads, ep->rate, ep->rate, now);
    sila_bucket_init(&rpc->control, ep->rate ? SILA_RPC_CONTROL_RATE : 0, SILA_RPC_CONTROL_RATE,
                     now);
}

int rpc_open(struct rpc *rpc, uv_loop_t *loop, const struct rpc_endpoint *ep, rpc_handler *handler,
             void *ctx, struct sila_err *err)
{
    struct sila_url u;
    int r = sila_url_parse(ep->url, &u, err);
    if (r)
        return r;
    const struct rpc_auth *auth = &ep->auth;
    init(rpc, ep, !u.tcp || sila_url_loopback(&u), handler, ctx);
    /* bare requests pass: reads may be open, and the rest get a reason */
    struct sila_link_auth la = {
        .key = auth->key, .channel = "rpc", .accept_bare = true, .window_ms = auth->window_ms};
    /* the limit is above the cap: an oversized request gets a reply too */
    if ((r = sila_link_open(&rpc->link, SILA_LINK_REPLY, ep->url, true, 4 * SILA_RPC_MAX_REQUEST,
                            &la, err)))
        return r;
    int rfd, sfd;
    if ((r = sila_link_fds(&rpc->link, &rfd, &sfd)) || (r = uv_poll_init(loop, &rpc->poll, rfd))) {
        sila_link_close(&rpc->link);
        return sila_err_set(err, -EIO, "%s: cannot poll: %s", ep->url, strerror(r < 0 ? -r : r));
    }
    uv_timer_init(loop, &rpc->hold);
    rpc->poll.data = rpc->hold.data = rpc;
    rpc->polling = true;
    uv_poll_start(&rpc->poll, UV_READABLE, on_readable);
    return 0;
}

int rpc_serve(struct rpc *rpc, uv_loop_t *loop, const struct rpc_endpoint *ep, rpc_handler *handler,
              void *ctx, bool *ret_open, struct sila_err *err)
{
    *ret_open = false;
    if (!ep->url) {
        init(rpc, ep, false, handler, ctx);
        return 0;
    }
    struct sila_err e;
    int r = rpc_open(rpc, loop, ep, handler, ctx, &e);
    *ret_open = r == 0;
    if (r == 0) {
        printf("serving the RPC at %s (silactl --connect %s status)\n", ep->url, ep->url);
        fflush(stdout);
        return 0;
    }
    init(rpc, ep, false, handler, ctx);
    if (ep->required)
        return sila_err_set(err, r, "--rpc: %s", e.msg);
    fprintf(stderr, "silad: no RPC this run (%s); choose an endpoint with --rpc\n", e.msg);
    return 0;
}

void rpc_close(struct rpc *rpc)
{
    /* the link is open exactly while the handles are (rpc_open) */
    if (rpc->polling) {
        uv_close((uv_handle_t *)&rpc->poll, NULL);
        uv_close((uv_handle_t *)&rpc->hold, NULL);
        sila_link_close(&rpc->link);
    }
    rpc->polling = false;
    reply_done(rpc);
    free(rpc->allocs);
    rpc->allocs = NULL;
    free(rpc->out);
    rpc->out = NULL;
    rpc->out_cap = 0;
    rpc_cache_fini(&rpc->cache);
}

void rpc_refresh(struct rpc *rpc)
{
    rpc_cache_stale(&rpc->cache);
}
