/* Links: the one place sila touches nanomsg. A link is one socket: a PAIR
 * for a pipeline edge or a worker's control channel, with exactly one peer
 * at a time (a stale duplicate cannot attach beside the live one); or the
 * two ends of the coordinator's rendezvous, where any number of workers ask
 * (REQUEST) and the coordinator answers each in turn (REPLY). nanomsg's
 * -1/errno is translated here, once, into negative errno values.
 *
 * Messages are whole frames. Sending is zero-copy: the buffer comes from
 * sila_link_alloc and belongs to the link once a send succeeds. Every link
 * has a receive limit (nanomsg would otherwise cap frames at 1 MiB and drop
 * larger ones silently, killing the connection while the sender sees
 * success): a frame above it is dropped by nanomsg, so limits come from the
 * job's plan (the largest frame an edge can carry). */
#ifndef SILA_TRANSPORT_H
#define SILA_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum sila_link_kind {
    SILA_LINK_PAIR = 1,    /* one peer; either end sends whenever it likes */
    SILA_LINK_REQUEST = 2, /* send a request, then receive its reply */
    SILA_LINK_REPLY = 3,   /* receive a request, then send its reply */
};

struct sila_link {
    int sock; /* nanomsg socket, -1 when closed */
};

/* Opens a link of a kind on url (tcp://HOST:PORT, ipc://PATH or
 * inproc://NAME), listening (bind) or connecting (reconnects by itself),
 * receiving frames of at most max_frame bytes (1 .. INT_MAX). Errors:
 * -EINVAL (bad url or limit), -EADDRINUSE, ... with err naming the url. */
int sila_link_open(struct sila_link *l, enum sila_link_kind kind, const char *url, bool listen,
                   size_t max_frame, struct sila_err *err);
/* Closes the link; safe on a closed one. */
void sila_link_close(struct sila_link *l);

/* A send buffer of len bytes, or NULL. Freed by a successful send, else by
 * sila_link_release. */
uint8_t *sila_link_alloc(size_t len);
/* Frees a buffer from sila_link_alloc or sila_link_recv. */
void sila_link_release(uint8_t *buf);

/* Sends buf, all the bytes it was allocated with. timeout_ms: 0 never
 * waits (-EAGAIN when it would block), -1 waits forever, > 0 waits at most
 * that long (-ETIMEDOUT). On success the link owns buf; on failure the
 * caller still does. nanomsg may block even without waiting on large
 * frames: never send big frames from an event-loop thread. */
int sila_link_send(struct sila_link *l, uint8_t *buf, int timeout_ms);

/* Receives one frame into a buffer the caller frees with
 * sila_link_release. timeout_ms as for sending. */
int sila_link_recv(struct sila_link *l, uint8_t **ret_buf, size_t *ret_len, int timeout_ms);

/* Waits until one of n links has a frame to receive, at most timeout_ms
 * (-1: forever); sets readable[i] for each. Returns how many are readable
 * (0 on timeout) or a negative errno (-EINTR when a signal came). */
int sila_link_poll(const struct sila_link *const *links, int n, int timeout_ms, bool *readable);

/* File descriptors that become readable when a frame can be received and
 * when one can be sent, for an event loop (uv_poll). */
int sila_link_fds(const struct sila_link *l, int *ret_recv_fd, int *ret_send_fd);

#endif
