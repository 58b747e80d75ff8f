/* nanomsg behind the link interface (see transport.h), and the one place
 * where messages are signed or sealed and verified (auth.h). */
#include "transport.h"

#include <errno.h>
#include <limits.h>
#include <nanomsg/nn.h>
#include <nanomsg/pair.h>
#include <nanomsg/reqrep.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "auth.h"
#include "clock.h"

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

/* Whether an ipc:// address may be listened on: nanomsg removes whatever
 * is at the path before it binds (a user's file) and aborts the process
 * when that fails (a directory), so only a new path or a socket (one left
 * by an earlier run; nanomsg refuses a live one) is handed to it. */
static int ipc_path_free(const char *url, struct sila_err *err)
{
    struct stat st;
    if (strncmp(url, "ipc://", 6) != 0 || lstat(url + 6, &st) < 0 || S_ISSOCK(st.st_mode))
        return 0;
    return sila_err_set(err, -EEXIST,
                        "%s: %s exists and is not a socket (a %s); sila listens only on a new "
                        "path or on a socket an earlier run left",
                        url, url + 6, S_ISDIR(st.st_mode) ? "directory" : "file");
}

/* The authenticating end of a keyed link, or NULL when out of memory. */
static struct sila_auth *auth_new(enum sila_link_kind kind, bool listen,
                                  const struct sila_link_auth *auth)
{
    struct sila_auth_params p = {.key = auth->key,
                                 .channel = auth->channel ? auth->channel : "",
                                 .listener = listen,
                                 .role = kind == SILA_LINK_REQUEST ? SILA_AUTH_REQUEST
                                         : kind == SILA_LINK_REPLY ? SILA_AUTH_REPLY
                                                                   : SILA_AUTH_PAIR,
                                 .window_ms = auth->window_ms,
                                 .seal = auth->seal};
    return sila_auth_new(&p);
}

/* A new nanomsg socket of a kind. */
static int new_socket(enum sila_link_kind kind, bool keyed)
{
    int protocol = kind == SILA_LINK_REQUEST ? NN_REQ : kind == SILA_LINK_REPLY ? NN_REP : NN_PAIR;
    int s = nn_socket(AF_SP, protocol);
    if (s >= 0 && kind == SILA_LINK_REQUEST) {
        /* a request lost with a connection (the coordinator not up yet, or
         * restarting) is sent again after this long, not nanomsg's minute;
         * keyed, never: the same signed bytes again are a replay, which
         * the other end drops (its callers ask again with a new message) */
        int resend_ms = keyed ? 24 * 3600 * 1000 : 2000;
        nn_setsockopt(s, NN_REQ, NN_REQ_RESEND_IVL, &resend_ms, sizeof resend_ms);
    }
    return s;
}

int sila_link_open(struct sila_link *l, enum sila_link_kind kind, const char *url, bool listen,
                   size_t max_frame, const struct sila_link_auth *auth, struct sila_err *err)
{
    *l = (struct sila_link){.sock = -1, .kind = kind};
    bool keyed = auth && auth->key;
    size_t room = keyed ? SILA_AUTH_TRAILER : 0;
    if (!url_scheme_ok(url))
        return sila_err_set(err, -EINVAL, "%s: not a tcp://, ipc:// or inproc:// address", url);
    if (max_frame < 1 || max_frame > INT_MAX - room)
        return sila_err_set(err, -EINVAL, "%s: frame limit %zu outside 1..%zu", url, max_frame,
                            INT_MAX - room);
    if (auth && auth->seal && (!keyed || kind != SILA_LINK_PAIR))
        return sila_err_set(err, -EINVAL, "%s: only a pair link with a key can be sealed", url);
    int r = listen ? ipc_path_free(url, err) : 0;
    if (r)
        return r;
    if (keyed && !(l->auth = auth_new(kind, listen, auth)))
        return sila_err_set(err, -EINVAL,
                            "%s: cannot key the link (out of memory, or a channel "
                            "name over 64 bytes)",
                            url);
    l->accept_bare = keyed && auth->accept_bare && kind == SILA_LINK_REPLY;
    int s = new_socket(kind, keyed);
    if (s < 0) {
        r = sila_err_set(err, nn_fail(), "%s: cannot create a socket: %s", url,
                         nn_strerror(nn_errno()));
        sila_link_close(l);
        return r;
    }
    int limit = (int)(max_frame + room);
    if (nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVMAXSIZE, &limit, sizeof limit) < 0 ||
        (listen ? nn_bind(s, url) : nn_connect(s, url)) < 0) {
        r = nn_fail();
        sila_err_set(err, r, "%s: cannot %s: %s", url, listen ? "listen" : "connect",
                     nn_strerror(-r));
        nn_close(s);
        sila_link_close(l);
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
    sila_auth_free(l->auth);
    l->auth = NULL;
}

void sila_link_settle(void)
{
    struct timespec t = {0, SILA_LINK_SETTLE_MS * 1000000L};
    while (nanosleep(&t, &t) < 0 && errno == EINTR)
        ;
}

uint8_t *sila_link_alloc(size_t len)
{
    /* the room behind: a keyed link writes its trailer there, no copy;
     * zeroed, so that no old bytes pass for the trailer of a message
     * sealed and not yet sent (sila_auth_sign_again) */
    uint8_t *buf =
        len > SIZE_MAX - SILA_AUTH_TRAILER ? NULL : nn_allocmsg(len + SILA_AUTH_TRAILER, 0);
    if (buf)
        memset(buf + len, 0, SILA_AUTH_TRAILER);
    return buf;
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

int sila_link_send(struct sila_link *l, uint8_t *buf, size_t len, int timeout_ms)
{
    if (l->auth && (l->kind != SILA_LINK_REPLY || l->authenticated)) {
        /* a send tried again: a sealed buffer holds ciphertext already */
        int r = sila_auth_sign_again(l->auth, buf, len, sila_auth_now_ms());
        if (r)
            return r;
    } else if (nn_reallocmsg(buf, len) != buf) {
        /* nanomsg >= 1.1 (meson.build) shortens a message in place; a
         * failure leaves it as it was */
        return -ENOMEM;
    }
    int flags = wait_flags(l, NN_SNDTIMEO, timeout_ms);
    /* NN_MSG: the buffer goes over whole, as allocated, without a copy */
    return nn_send(l->sock, &buf, NN_MSG, flags) < 0 ? nn_fail() : 0;
}

/* After a REQUEST link dropped the reply to its request: none other can
 * come (nanomsg takes one reply per request), so the rest of the wait ends
 * as a timeout would; never a busy loop of requests and dropped replies. */
static int reply_dropped(double deadline, int timeout_ms)
{
    if (timeout_ms == 0)
        return -EAGAIN;
    double left_ms = timeout_ms > 0 ? deadline - (1e3 * sila_clock_s()) : 0;
    if (left_ms > 0) {
        struct timespec ts = {(time_t)(left_ms / 1e3),
                              (long)((left_ms - 1e3 * (time_t)(left_ms / 1e3)) * 1e6)};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    return -ETIMEDOUT;
}

/* Whether a received message of *len bytes may be passed on (its payload
 * length then in *len); else counts it and keeps the reason. */
static bool take(struct sila_link *l, uint8_t *buf, size_t *len)
{
    l->authenticated = false;
    if (!l->auth || (l->accept_bare && !sila_auth_has_trailer(buf, *len)))
        return true;
    struct sila_err e;
    if (sila_auth_verify(l->auth, buf, *len, sila_auth_now_ms(), len, &e) == 0) {
        l->authenticated = true;
        return true;
    }
    l->rejected++;
    snprintf(l->rejection, sizeof l->rejection, "%.199s", e.msg);
    return false;
}

int sila_link_recv(struct sila_link *l, uint8_t **ret_buf, size_t *ret_len, int timeout_ms)
{
    double deadline = (1e3 * sila_clock_s()) + timeout_ms;
    int wait = timeout_ms;
    for (;;) {
        int flags = wait_flags(l, NN_RCVTIMEO, wait);
        uint8_t *buf = NULL;
        int n = nn_recv(l->sock, &buf, NN_MSG, flags);
        if (n < 0)
            return nn_fail();
        size_t len = (size_t)n;
        if (take(l, buf, &len)) {
            *ret_buf = buf;
            *ret_len = len;
            return 0;
        }
        nn_freemsg(buf);
        if (l->kind == SILA_LINK_REQUEST)
            return reply_dropped(deadline, timeout_ms);
        if (timeout_ms > 0 && (wait = (int)(deadline - (1e3 * sila_clock_s()))) <= 0)
            return -ETIMEDOUT;
    }
}

bool sila_link_authenticated(const struct sila_link *l)
{
    return l->auth && l->authenticated;
}

bool sila_link_rejections(struct sila_link *l, const char *what, double now_s, double interval_s,
                          struct sila_err *err)
{
    if (l->rejected == l->rejected_said || (l->said_at > 0 && now_s - l->said_at < interval_s))
        return false;
    unsigned long long n = l->rejected - l->rejected_said;
    sila_err_set(err, 0,
                 "dropped %llu message%s on %s that failed authentication (%llu in all); "
                 "the last: %s",
                 n, n == 1 ? "" : "s", what, (unsigned long long)l->rejected, l->rejection);
    l->rejected_said = l->rejected;
    l->said_at = now_s;
    return true;
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
