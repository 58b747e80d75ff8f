/* nanomsg behind the link interface (see transport.h). */
#include "transport.h"

#include <errno.h>
#include <limits.h>
#include <nanomsg/nn.h>
#include <nanomsg/pair.h>
#include <nanomsg/reqrep.h>
#include <string.h>

/* The last nanomsg error as a negative errno (nanomsg's own codes, such as
 * ETERM and EFSM, are errno-style values too). */
static int nn_fail(void)
{
    return -nn_errno();
}

static bool url_scheme_ok(const char *url)
{
    return strncmp(url, "tcp://", 6) == 0 || strncmp(url, "ipc://", 6) == 0 ||
           strncmp(url, "inproc://", 9) == 0;
}

int sila_link_open(struct sila_link *l, enum sila_link_kind kind, const char *url, bool listen,
                   size_t max_frame, struct sila_err *err)
{
    l->sock = -1;
    if (!url_scheme_ok(url))
        return sila_err_set(err, -EINVAL, "%s: not a tcp://, ipc:// or inproc:// address", url);
    if (max_frame < 1 || max_frame > INT_MAX)
        return sila_err_set(err, -EINVAL, "%s: frame limit %zu outside 1..%d", url, max_frame,
                            INT_MAX);
    int protocol = kind == SILA_LINK_REQUEST ? NN_REQ : kind == SILA_LINK_REPLY ? NN_REP : NN_PAIR;
    int s = nn_socket(AF_SP, protocol);
    if (s >= 0 && kind == SILA_LINK_REQUEST) {
        /* a request lost with a connection (the coordinator not up yet, or
         * restarting) is sent again after this long, not nanomsg's minute */
        int resend_ms = 2000;
        nn_setsockopt(s, NN_REQ, NN_REQ_RESEND_IVL, &resend_ms, sizeof resend_ms);
    }
    if (s < 0)
        return sila_err_set(err, nn_fail(), "%s: cannot create a socket: %s", url,
                            nn_strerror(nn_errno()));
    int limit = (int)max_frame;
    int r = 0;
    if (nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVMAXSIZE, &limit, sizeof limit) < 0 ||
        (listen ? nn_bind(s, url) : nn_connect(s, url)) < 0) {
        r = nn_fail();
        sila_err_set(err, r, "%s: cannot %s: %s", url, listen ? "listen" : "connect",
                     nn_strerror(-r));
        nn_close(s);
        return r;
    }
    l->sock = s;
    return 0;
}

void sila_link_close(struct sila_link *l)
{
    if (l->sock >= 0)
        nn_close(l->sock);
    l->sock = -1;
}

uint8_t *sila_link_alloc(size_t len)
{
    return nn_allocmsg(len, 0);
}

void sila_link_release(uint8_t *buf)
{
    if (buf)
        nn_freemsg(buf);
}

/* Flags for nn_send/nn_recv, after setting the socket's timeout option. */
static int wait_flags(const struct sila_link *l, int option, int timeout_ms)
{
    if (timeout_ms == 0)
        return NN_DONTWAIT;
    nn_setsockopt(l->sock, NN_SOL_SOCKET, option, &timeout_ms, sizeof timeout_ms);
    return 0;
}

int sila_link_send(struct sila_link *l, uint8_t *buf, int timeout_ms)
{
    int flags = wait_flags(l, NN_SNDTIMEO, timeout_ms);
    /* NN_MSG: the buffer goes over whole, as allocated, without a copy */
    return nn_send(l->sock, &buf, NN_MSG, flags) < 0 ? nn_fail() : 0;
}

int sila_link_recv(struct sila_link *l, uint8_t **ret_buf, size_t *ret_len, int timeout_ms)
{
    int flags = wait_flags(l, NN_RCVTIMEO, timeout_ms);
    uint8_t *buf = NULL;
    int n = nn_recv(l->sock, &buf, NN_MSG, flags);
    if (n < 0)
        return nn_fail();
    *ret_buf = buf;
    *ret_len = (size_t)n;
    return 0;
}

int sila_link_fds(const struct sila_link *l, int *ret_recv_fd, int *ret_send_fd)
{
    size_t sz = sizeof(int);
    if (nn_getsockopt(l->sock, NN_SOL_SOCKET, NN_RCVFD, ret_recv_fd, &sz) < 0)
        return nn_fail();
    sz = sizeof(int);
    if (nn_getsockopt(l->sock, NN_SOL_SOCKET, NN_SNDFD, ret_send_fd, &sz) < 0)
        return nn_fail();
    return 0;
}

int sila_link_poll(const struct sila_link *const *links, int n, int timeout_ms, bool *readable)
{
    struct nn_pollfd pfd[16];
    if (n < 1 || n > 16)
        return -EINVAL;
    for (int i = 0; i < n; i++)
        pfd[i] = (struct nn_pollfd){.fd = links[i]->sock, .events = NN_POLLIN};
    int r = nn_poll(pfd, n, timeout_ms);
    if (r < 0)
        return -errno;
    for (int i = 0; i < n; i++)
        readable[i] = pfd[i].revents & NN_POLLIN;
    return r;
}
