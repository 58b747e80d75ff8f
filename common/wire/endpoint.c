/* Addresses of a distributed run (see endpoint.h). */
#include "endpoint.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "job.h"

int sila_url_parse(const char *url, struct sila_url *ret, struct sila_err *err)
{
    *ret = (struct sila_url){0};
    if (strncmp(url, "ipc://", 6) == 0) {
        if (!url[6] || strlen(url + 6) > SILA_URL_MAX - 16)
            return sila_err_set(err, -EINVAL, "%s: an ipc:// address needs a path of 1..%d bytes",
                                url, SILA_URL_MAX - 16);
        snprintf(ret->path, sizeof ret->path, "%s", url + 6);
        return 0;
    }
    if (strncmp(url, "tcp://", 6) != 0)
        return sila_err_set(err, -EINVAL, "%s: not a tcp://HOST:PORT or ipc://PATH address", url);
    const char *host = url + 6, *colon = strrchr(host, ':');
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || colon == host || (size_t)(colon - host) >= sizeof ret->host || *end ||
        end == colon + 1 || port < 1 || port > 65535 - 2 * SILA_MAX_MODULES)
        return sila_err_set(err, -EINVAL,
                            "%s: expected tcp://HOST:PORT with PORT in 1..%d (the run uses the "
                            "%d ports above it too)",
                            url, 65535 - 2 * SILA_MAX_MODULES, 2 * SILA_MAX_MODULES);
    ret->tcp = true;
    memcpy(ret->host, host, (size_t)(colon - host));
    ret->port = (int)port;
    return 0;
}

bool sila_url_loopback(const struct sila_url *u)
{
    return u->tcp && sila_host_loopback(u->host);
}

bool sila_host_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0;
}

bool sila_host_numeric(const char *host)
{
    struct in_addr a;
    return strcmp(host, "*") == 0 || inet_pton(AF_INET, host, &a) == 1;
}

int sila_url_route_address(const struct sila_url *u, char *out, size_t len, struct sila_err *err)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM}, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", u->port);
    int r = getaddrinfo(u->host, port, &hints, &ai);
    if (r)
        return sila_err_set(err, -EINVAL, "%s: cannot resolve: %s", u->host, gai_strerror(r));
    /* a datagram socket's connect only picks the route and the source */
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in local;
    socklen_t n = sizeof local;
    r = fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
                getsockname(fd, (struct sockaddr *)&local, &n) < 0
            ? -errno
            : 0;
    freeaddrinfo(ai);
    if (fd >= 0)
        close(fd);
    if (r)
        return sila_err_set(err, r, "%s: no route from this machine: %s", u->host, strerror(-r));
    inet_ntop(AF_INET, &local.sin_addr, out, (socklen_t)len);
    return 0;
}

void sila_endpoint_control(const struct sila_url *base, int k, char *out, size_t len)
{
    if (base->tcp)
        snprintf(out, len, "tcp://%s:%d", base->host, base->port + k);
    else
        snprintf(out, len, "ipc://%s.ctl-%d", base->path, k);
}

void sila_endpoint_data(const struct sila_url *base, int k, const char *host, char *out, size_t len)
{
    if (base->tcp)
        snprintf(out, len, "tcp://%s:%d", host, base->port + SILA_MAX_MODULES + k);
    else
        snprintf(out, len, "ipc://%s.data-%d", base->path, k);
}
