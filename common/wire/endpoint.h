/* The addresses of a distributed run, all derived from the coordinator's
 * one base address (silad --listen, silaworker --connect):
 *
 *   tcp://HOST:P          rendezvous: workers ask to join here
 *   tcp://HOST:P+k        control link of the worker whose modules start at k
 *   tcp://WORKER:P+64+k   that worker's upstream data edge (the worker listens)
 *
 * and for ipc://PATH: PATH itself, PATH.ctl-k and PATH.data-k (k 1-based).
 * A worker listens on its own host, so the coordinator tells its upstream
 * neighbour the host the worker announced. It listens on one address only:
 * loopback when the coordinator is, else the address it announces, the one
 * its route to the coordinator leaves from, or the one it is told to
 * (silaworker --bind). */
#ifndef SILA_ENDPOINT_H
#define SILA_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define SILA_URL_MAX 320

struct sila_url {
    bool tcp;                /* tcp://HOST:PORT, else ipc://PATH */
    char host[256];          /* tcp only */
    int port;                /* tcp only */
    char path[SILA_URL_MAX]; /* ipc only */
};

/* Parses a base address. Errors: -EINVAL naming the address. */
int sila_url_parse(const char *url, struct sila_url *ret, struct sila_err *err);

/* Whether a tcp host is this machine's loopback. */
bool sila_url_loopback(const struct sila_url *u);
/* Whether host (a name or an address) is the loopback: localhost or 127.x. */
bool sila_host_loopback(const char *host);
/* Whether host is a numeric IPv4 address (0.0.0.0 and * included). */
bool sila_host_numeric(const char *host);

/* The local IPv4 address (out, len bytes, numeric) of this machine's route
 * to the tcp address u, as the kernel would choose it for a connection
 * (nothing is sent). Errors: -EINVAL when u's host does not resolve,
 * -errno of the failed call, with err naming the host. */
int sila_url_route_address(const struct sila_url *u, char *out, size_t len, struct sila_err *err);

/* The control link of the worker whose first module is k: on the
 * coordinator's base, the address it listens on; on a worker's, the one it
 * connects to. */
void sila_endpoint_control(const struct sila_url *base, int k, char *out, size_t len);

/* The upstream data edge of the worker whose first module is k, on host
 * (ignored for ipc): on the worker's bind host, the address it listens on;
 * on its announced host, the one its upstream neighbour connects to. */
void sila_endpoint_data(const struct sila_url *base, int k, const char *host, char *out,
                        size_t len);

#endif
