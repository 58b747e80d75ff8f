/* Load for silad's RPC: Status requests at a fixed rate, one at a time,
 * until COUNT were answered or the daemon stops answering; prints how many
 * replies came, how many of them said busy (over silad's --rpc-rate) or
 * another error, the rate of replies and their latency percentiles. Used
 * by tests/bench_rpc.py, and by the RPC's integration tests as a flood.
 *
 *   bench_rpc_load ENDPOINT RATE_PER_S [COUNT] */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "rpc.h"
#include "transport.h"

struct tally {
    size_t replies, busy, errors;
    double *lat; /* seconds, one per reply */
    size_t cap;
    double start, last; /* first request answered, last reply */
};

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Counts the reply of in (inlen bytes), latency s; -ENOMEM when the
 * latencies have no room. */
static int count(struct tally *t, const uint8_t *in, size_t inlen, double s)
{
    Sila__Reply *r = sila__reply__unpack(NULL, inlen, in);
    bool busy = r && *r->error && r->retry_after_ms;
    t->busy += busy;
    t->errors += !r || (*r->error && !busy);
    sila__reply__free_unpacked(r, NULL);
    if (t->replies == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 1 << 16;
        double *p = realloc(t->lat, sizeof *p * cap);
        if (!p)
            return -ENOMEM;
        t->lat = p;
        t->cap = cap;
    }
    t->lat[t->replies++] = s;
    return 0;
}

/* One request and its reply: 0, or -errno when none came. */
static int ask(struct sila_link *l, const Sila__Request *req, struct tally *t)
{
    size_t len = sila__request__get_packed_size(req);
    uint8_t *buf = sila_link_alloc(len ? len : 1), *in;
    size_t inlen;
    if (!buf)
        return -ENOMEM;
    sila__request__pack(req, buf);
    double t0 = sila_clock_s();
    int r = sila_link_send(l, buf, len ? len : 1, 1000);
    if (r) {
        sila_link_release(buf);
        return r;
    }
    if ((r = sila_link_recv(l, &in, &inlen, 1000)))
        return r;
    t->last = sila_clock_s();
    if (!t->start)
        t->start = t0;
    r = count(t, in, inlen, t->last - t0);
    sila_link_release(in);
    return r;
}

static void report(struct tally *t)
{
    double span = t->last - t->start;
    size_t n = t->replies;
    qsort(t->lat, n, sizeof *t->lat, cmp);
    printf("{\"replies\":%zu,\"busy\":%zu,\"errors\":%zu,\"rate\":%.1f,\"p50_ms\":%.3f,"
           "\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
           n, t->busy, t->errors, n / (span > 0 ? span : 1), 1e3 * t->lat[n / 2],
           1e3 * t->lat[(size_t)(0.99 * (n - 1))], 1e3 * t->lat[n - 1]);
}

int main(int argc, char **argv)
{
    long rate = argc >= 3 ? atol(argv[2]) : 0, limit = argc == 4 ? atol(argv[3]) : -1;
    if (argc < 3 || argc > 4 || rate < 1 || limit == 0 || limit < -1) {
        fprintf(stderr, "usage: bench_rpc_load ENDPOINT RATE_PER_S [COUNT]\n");
        return 2;
    }
    double period = 1.0 / rate;
    struct sila_link l;
    struct sila_err err;
    if (sila_link_open(&l, SILA_LINK_REQUEST, argv[1], false, SILA_RPC_MAX_REPLY, NULL, &err)) {
        fprintf(stderr, "bench_rpc_load: %s\n", err.msg);
        return 1;
    }
    Sila__StatusRequest sr = SILA__STATUS_REQUEST__INIT;
    Sila__Request req = SILA__REQUEST__INIT;
    req.version = SILA_RPC_VERSION;
    req.method_case = SILA__REQUEST__METHOD_STATUS;
    req.status = &sr;
    struct tally t = {0};
    double next = sila_clock_s();
    int misses = 0;
    while (limit < 0 || t.replies < (size_t)limit) {
        double now = sila_clock_s();
        if (now < next) {
            struct timespec ts = {0, (long)((next - now) * 1e9)};
            nanosleep(&ts, NULL);
        }
        next += period;
        bool first = t.replies == 0;
        int r = ask(&l, &req, &t);
        if (r == -ENOMEM)
            break;
        if (r == 0 && first) /* the rate counts from the first answer */
            next = sila_clock_s() + period;
        if (r == 0) {
            misses = 0;
            continue;
        }
        if (t.replies && ++misses >= 2) /* answered before, silent now: the run is over */
            break;
        next = sila_clock_s();
    }
    sila_link_close(&l);
    if (!t.replies) {
        fprintf(stderr, "bench_rpc_load: no answer from %s\n", argv[1]);
        return 1;
    }
    report(&t);
    free(t.lat);
    return 0;
}
