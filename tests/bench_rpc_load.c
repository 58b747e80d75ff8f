/* Load for silad's RPC: Status requests at a fixed rate, one at a time,
 * until the daemon stops answering; prints how many were answered, the rate
 * reached and the latency percentiles. Used by tests/bench_rpc.py.
 *
 *   bench_rpc_load ENDPOINT RATE_PER_S */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "rpc.h"
#include "transport.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 3 || atoi(argv[2]) < 1) {
        fprintf(stderr, "usage: bench_rpc_load ENDPOINT RATE_PER_S\n");
        return 2;
    }
    double period = 1.0 / atoi(argv[2]);
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
    size_t len = sila__request__get_packed_size(&req), n = 0, cap = 1 << 16;
    double *lat = malloc(sizeof *lat * cap);
    double start = 0, last = 0, next = sila_clock_s();
    int misses = 0;
    while (lat) {
        double t = sila_clock_s();
        if (t < next) {
            struct timespec ts = {0, (long)((next - t) * 1e9)};
            nanosleep(&ts, NULL);
        }
        next += period;
        uint8_t *buf = sila_link_alloc(len ? len : 1), *in;
        size_t inlen;
        sila__request__pack(&req, buf);
        double t0 = sila_clock_s();
        if (sila_link_send(&l, buf, len ? len : 1, 1000)) {
            sila_link_release(buf);
        } else if (sila_link_recv(&l, &in, &inlen, 1000) == 0) {
            sila_link_release(in);
            if (!start) { /* the rate counts from the first answer */
                start = t0;
                next = sila_clock_s() + period;
            }
            misses = 0;
            if (n == cap) {
                double *p = realloc(lat, sizeof *lat * (cap *= 2));
                if (!p)
                    break;
                lat = p;
            }
            last = sila_clock_s();
            lat[n++] = last - t0;
            continue;
        }
        if (start && ++misses >= 2) /* answered before, silent now: the run is over */
            break;
        next = sila_clock_s();
    }
    sila_link_close(&l);
    if (!n) {
        fprintf(stderr, "bench_rpc_load: no answer from %s\n", argv[1]);
        return 1;
    }
    double span = last - start;
    qsort(lat, n, sizeof *lat, cmp);
    printf("{\"answered\":%zu,\"rate\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}\n", n,
           n / (span > 0 ? span : 1), 1e3 * lat[n / 2], 1e3 * lat[(size_t)(0.99 * (n - 1))],
           1e3 * lat[n - 1]);
    free(lat);
    return 0;
}
