/* silad's /metrics page over HTTP (see metrics_http.h). */
#include "metrics_http.h"

#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "prom.h"

/* ---- the address */

/* Whether sa is a loopback address: 127.0.0.0/8, ::1 or ::ffff:127.x. */
static bool loopback(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

/* Splits spec into host and port (PORT alone: the default host); an IPv6
 * host loses its brackets. Returns false when spec has no such shape. */
static bool split(const char *spec, char *host, size_t hlen, const char **ret_port)
{
    const char *colon = strrchr(spec, ':');
    const char *h = colon ? spec : METRICS_HTTP_DEFAULT_HOST;
    size_t n = colon ? (size_t)(colon - spec) : strlen(h);
    if (colon && n >= 2 && h[0] == '[' && h[n - 1] == ']')
        h++, n -= 2;
    else if (colon && memchr(h, ':', n))
        return false; /* an IPv6 address needs its brackets */
    if (n == 0 || n >= hlen)
        return false;
    memcpy(host, h, n);
    host[n] = 0;
    *ret_port = colon ? colon + 1 : spec;
    return true;
}

int metrics_addr_parse(const char *spec, struct metrics_addr *ret, struct sila_err *err)
{
    char host[256];
    const char *port = "";
    char *end = NULL;
    long p = 0;
    if (split(spec, host, sizeof host, &port))
        p = strtol(port, &end, 10);
    if (p < 1 || p > 65535 || *end || !(*port >= '0' && *port <= '9'))
        return sila_err_set(err, -EINVAL,
                            "--metrics %s: expected HOST:PORT, [IPv6]:PORT or PORT (on %s), with "
                            "PORT in 1..65535",
                            spec, METRICS_HTTP_DEFAULT_HOST);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
    int r = getaddrinfo(host, port, &hints, &ai);
    if (r)
        return sila_err_set(err, -EINVAL, "--metrics %s: cannot resolve %s: %s", spec, host,
                            gai_strerror(r));
    *ret = (struct metrics_addr){.len = ai->ai_addrlen};
    memcpy(&ret->sa, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    ret->loopback = loopback(&ret->sa);
    if (port == spec)
        snprintf(ret->text, sizeof ret->text, "%s:%s", METRICS_HTTP_DEFAULT_HOST, port);
    else
        snprintf(ret->text, sizeof ret->text, "%s", spec);
    return 0;
}

/* A listening socket on a, in *ret_fd. Errors: -errno, with err naming a. */
static int listen_on(const struct metrics_addr *a, int *ret_fd, struct sila_err *err)
{
    int one = 1, fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0 && a->sa.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (const struct sockaddr *)&a->sa, a->len) < 0 || listen(fd, 64) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return sila_err_set(err, -e, "--metrics %s: cannot listen: %s", a->text, strerror(e));
    }
    *ret_fd = fd;
    return 0;
}

/* ---- answers */

/* Queues resp (NULL: out of memory, and the connection closes) with
 * status on c. */
static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO;
    enum MHD_Result r = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* A short plain-text response of the static string s. */
static struct MHD_Response *text(const char *s)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(s), (void *)s, MHD_RESPMEM_PERSISTENT);
    if (resp)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    return resp;
}

/* The exposition of the run's status and workers in *ret_page (*ret_len
 * bytes, freed by the caller), one read of the RPC's budget. Errors:
 * -EBUSY over it (with *ret_wait_s), rpc_read's. */
static int build_page(struct rpc *rpc, char **ret_page, size_t *ret_len, double *ret_wait_s)
{
    if (!rpc_take_read(rpc, ret_wait_s))
        return -EBUSY;
    Sila__Reply *s = NULL, *w = NULL;
    int r = rpc_read(rpc, SILA__REQUEST__METHOD_STATUS, &s);
    if (r == 0)
        r = rpc_read(rpc, SILA__REQUEST__METHOD_WORKERS, &w);
    char *page = NULL;
    size_t len = 0;
    FILE *f = r == 0 ? open_memstream(&page, &len) : NULL;
    if (r == 0 && !f)
        r = -ENOMEM;
    if (f) {
        prom_write(f, s->status, w->workers);
        r = ferror(f) | fclose(f) ? -ENOMEM : 0;
    }
    sila__reply__free_unpacked(s, NULL);
    sila__reply__free_unpacked(w, NULL);
    if (r) {
        free(page);
        return r;
    }
    *ret_page = page;
    *ret_len = len;
    return 0;
}

/* The page, or 503 over the rate limit (the server then holds), or 500. */
static enum MHD_Result answer_page(struct metrics_http *m, struct MHD_Connection *c)
{
    char *page;
    size_t len;
    double wait = 0;
    int r = build_page(m->rpc, &page, &len, &wait);
    if (r == -EBUSY) {
        char after[16];
        snprintf(after, sizeof after, "%.0f", ceil(wait));
        struct MHD_Response *resp = text("busy: over silad's rate of read requests (--rpc-rate)\n");
        if (resp)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, after);
        m->hold_s = wait;
        return answer(c, MHD_HTTP_SERVICE_UNAVAILABLE, resp);
    }
    if (r)
        return answer(c, MHD_HTTP_INTERNAL_SERVER_ERROR, text("silad could not build the page\n"));
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, page, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(page);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, PROM_CONTENT_TYPE);
    return answer(c, MHD_HTTP_OK, resp);
}

/* MHD's access handler, called once the request's header is in: answers
 * at once, so a body, if any, is never read. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    (void)version, (void)upload_data, (void)upload_data_size, (void)req_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        struct MHD_Response *resp = text("only GET and HEAD\n");
        if (resp)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
    }
    if (strcmp(url, "/metrics") != 0)
        return answer(c, MHD_HTTP_NOT_FOUND, text("silad serves /metrics only\n"));
    return answer_page(cls, c);
}

/* ---- MHD on the loop */

static void run(struct metrics_http *m);

static void on_ready(uv_poll_t *h, int status, int events)
{
    (void)status, (void)events;
    run(h->data);
}

static void on_due(uv_timer_t *t)
{
    run(t->data);
}

static void on_hold_over(uv_timer_t *t)
{
    struct metrics_http *m = t->data;
    uv_poll_start(&m->poll, UV_READABLE, on_ready);
    run(m);
}

static unsigned connections(struct metrics_http *m)
{
    const union MHD_DaemonInfo *i =
        MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i ? i->num_connections : 0;
}

/* Runs MHD twice, and again while a run closes connections: a run sees
 * the requests of the connections the one before accepted (MHD's epoll is
 * edge-triggered), and MHD takes its listening socket, which it leaves out
 * of its epoll set at the connection limit, back only as a run starts.
 * After a run that freed places nothing else may wake it: a connection
 * waiting to be accepted would wait for ever. The count falls at every
 * run but the last, so there are METRICS_HTTP_CONNECTIONS + 2 runs at most. */
static void run_mhd(struct metrics_http *m)
{
    unsigned before, after = connections(m);
    for (int runs = 0; m->hold_s == 0; runs++) {
        before = after;
        MHD_run(m->mhd);
        after = connections(m);
        if (runs >= 1 && after >= before)
            break;
    }
}

/* Lets MHD do what is due (accept, read, answer, time out), then arms the
 * timer: at MHD's next timeout, or, after a busy answer, at the end of the
 * hold with the poll stopped. */
static void run(struct metrics_http *m)
{
    run_mhd(m);
    if (m->hold_s > 0) {
        uv_poll_stop(&m->poll);
        uv_timer_start(&m->timer, on_hold_over, (uint64_t)(m->hold_s * 1e3) + 1, 0);
        m->hold_s = 0;
        return;
    }
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(m->mhd, &ms) == MHD_YES)
        uv_timer_start(&m->timer, on_due, ms, 0);
    else
        uv_timer_stop(&m->timer);
}

/* MHD serving on fd (handed over) with the limits, driven by the caller. */
static struct MHD_Daemon *start_mhd(struct metrics_http *m, int fd, bool ipv6)
{
    return MHD_start_daemon(
        MHD_USE_EPOLL | (ipv6 ? MHD_USE_IPv6 : 0), 0, NULL, NULL, on_request, m,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, METRICS_HTTP_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, METRICS_HTTP_IDLE_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)METRICS_HTTP_MEMORY, MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_END);
}

int metrics_http_serve(struct metrics_http *m, uv_loop_t *loop, const struct metrics_addr *a,
                       struct rpc *rpc, struct sila_err *err)
{
    *m = (struct metrics_http){.rpc = rpc};
    if (!a)
        return 0;
    int fd = -1, r = listen_on(a, &fd, err);
    if (r)
        return r;
    /* on failure MHD closes fd on some paths and not on others: it is left
     * open, and silad ends with this error */
    if (!(m->mhd = start_mhd(m, fd, a->sa.ss_family == AF_INET6)))
        return sila_err_set(err, -EIO, "--metrics %s: libmicrohttpd does not start", a->text);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || (r = uv_poll_init(loop, &m->poll, info->epoll_fd))) {
        MHD_stop_daemon(m->mhd);
        m->mhd = NULL;
        return sila_err_set(err, -EIO, "--metrics %s: cannot poll: %s", a->text,
                            info ? uv_strerror(r) : "no epoll fd");
    }
    uv_timer_init(loop, &m->timer);
    m->poll.data = m->timer.data = m;
    uv_poll_start(&m->poll, UV_READABLE, on_ready);
    printf("serving /metrics at http://%s/metrics\n", a->text);
    fflush(stdout);
    return 0;
}

void metrics_http_close(struct metrics_http *m)
{
    if (!m->mhd)
        return;
    /* the poll leaves MHD's epoll fd before MHD closes it */
    uv_close((uv_handle_t *)&m->poll, NULL);
    uv_close((uv_handle_t *)&m->timer, NULL);
    MHD_stop_daemon(m->mhd);
    m->mhd = NULL;
}
