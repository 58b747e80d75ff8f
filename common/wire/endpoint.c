/* Addresses of a distributed run (see endpoint.h). */
#include "endpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    return u->tcp && (strncmp(u->host, "127.", 4) == 0 || strcmp(u->host, "localhost") == 0);
}

void sila_endpoint_control(const struct sila_url *base, int k, char *out, size_t len)
{
    if (base->tcp)
        snprintf(out, len, "tcp://%s:%d", base->host, base->port + k);
    else
        snprintf(out, len, "ipc://%s.ctl-%d", base->path, k);
}

void sila_endpoint_data(const struct sila_url *base, int k, const char *host, bool bind, char *out,
                        size_t len)
{
    if (base->tcp)
        snprintf(out, len, "tcp://%s:%d", bind ? "*" : host, base->port + SILA_MAX_MODULES + k);
    else
        snprintf(out, len, "ipc://%s.data-%d", base->path, k);
}
