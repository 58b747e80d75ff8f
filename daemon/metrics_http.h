/* silad's /metrics page (silad --metrics): Prometheus' text exposition
 * (prom.h) of the run's Status and Workers replies over HTTP, served by
 * libmicrohttpd. The figures are read through the run's RPC server
 * (rpc_read): the replies a client of the RPC gets, from the same cache
 * and on the same budget of read requests. MHD runs on the run's libuv
 * loop with no thread of its own: a uv_poll watches MHD's epoll fd and a
 * uv_timer wakes it when MHD_get_timeout says, so a request is answered on
 * the loop's thread and reads the run's state with no lock (DESIGN.md,
 * "Concurrency"). With --inproc the loop runs between steps, so a request
 * waits at most one step.
 *
 * What a client may do: GET or HEAD /metrics; any other path gets 404, any
 * other method 405 (with Allow). Every answer is given as soon as the
 * request's header is in, and closes the connection (a body is never
 * read). Limits: METRICS_HTTP_CONNECTIONS connections at once (more wait
 * in the kernel's listen queue), each closed after METRICS_HTTP_IDLE_S
 * seconds without a byte either way, a request's line and header in
 * METRICS_HTTP_MEMORY bytes (MHD answers a longer one with 414 or 431 and
 * garbage with 400, and closes the connection). A scrape over the reads'
 * rate limit (silad --rpc-rate; a scrape is one read) gets 503 with
 * Retry-After, and nothing more is read from any connection until then,
 * SILA_RPC_HOLD_S at least: a flood is answered in batches of the open
 * connections, not as fast as it asks. */
#ifndef SILA_METRICS_HTTP_H
#define SILA_METRICS_HTTP_H

#include <stdbool.h>
#include <sys/socket.h>
#include <uv.h>

#include "err.h"
#include "rpc.h"

#define METRICS_HTTP_CONNECTIONS 16u
#define METRICS_HTTP_IDLE_S 5u
#define METRICS_HTTP_MEMORY (16u << 10)
#define METRICS_HTTP_DEFAULT_HOST "127.0.0.1" /* for --metrics PORT */

/* Where the page is served: an address and port, as given and resolved. */
struct metrics_addr {
    struct sockaddr_storage sa;
    socklen_t len;
    bool loopback;  /* 127.0.0.0/8 or ::1 */
    char text[300]; /* HOST:PORT, as given (PORT alone: with the default host) */
};

/* Parses --metrics' value: HOST:PORT (HOST a name, taken at its first
 * address, an IPv4 address or an IPv6 one in brackets) or PORT alone (on
 * METRICS_HTTP_DEFAULT_HOST). Errors: -EINVAL with err naming the value
 * and what is wrong. */
int metrics_addr_parse(const char *spec, struct metrics_addr *ret, struct sila_err *err);

struct MHD_Daemon;

struct metrics_http {
    struct MHD_Daemon *mhd; /* owned; NULL: not serving */
    uv_poll_t poll;         /* MHD's epoll fd */
    uv_timer_t timer;       /* MHD's next timeout, or the end of a hold */
    struct rpc *rpc;        /* borrowed: where the figures come from */
    double hold_s;          /* set by a busy answer: read nothing for this long */
};

/* Serves the page at a (NULL: nothing, and m is a closed server) on loop,
 * reading rpc (rpc_serve'd on the same loop; it must outlive m); prints
 * where. Errors: -errno of socket, bind or listen, or -EIO when MHD does
 * not start, with err naming the address. m is closed after an error. */
int metrics_http_serve(struct metrics_http *m, uv_loop_t *loop, const struct metrics_addr *a,
                       struct rpc *rpc, struct sila_err *err);

/* Stops serving: closes every connection and the listening socket; the
 * handles close on the loop. Safe on a zeroed or closed server. */
void metrics_http_close(struct metrics_http *m);

#endif
