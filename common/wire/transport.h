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
 * job's plan (the largest frame an edge can carry).
 *
 * A link opened with a key authenticates every message (auth.h): sending
 * fills the trailer in the room every send buffer has behind its bytes,
 * receiving verifies it, and a message that fails is dropped here, counted
 * and its reason kept, so that callers only ever see authentic messages.
 * A sealed link (a PAIR link opened with a key and seal) encrypts every
 * message too, in the send buffer itself, and decrypts it in the receive
 * buffer: callers see the same bytes as on any other link. A link without
 * a key sends and takes messages bare, as before. */
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

struct sila_auth;
struct sila_key;

struct sila_link {
    int sock; /* nanomsg socket, -1 when closed */
    enum sila_link_kind kind;
    struct sila_auth *auth; /* owned; NULL: messages travel bare */
    bool accept_bare;       /* a keyed REPLY link passing bare requests on */
    bool authenticated;     /* the last message received carried a valid MAC */
    uint64_t rejected;      /* messages dropped for failing authentication */
    char rejection[200];    /* why the last of them was */
    uint64_t rejected_said; /* rejected when sila_link_rejections last spoke */
    double said_at;         /* and when (its caller's clock) */
};

/* How a link authenticates; NULL or a NULL key: it does not (bare). */
struct sila_link_auth {
    const struct sila_key *key; /* the cluster key (copied) */
    const char *channel;        /* names the link alike at both ends: "rendezvous", "control-3",
                                   "data-2", "rpc" (at most 64 bytes) */
    bool accept_bare;           /* REPLY links: pass bare requests on too (sila_link_authenticated
                                   tells), and answer them bare */
    uint32_t window_ms;         /* accepted clock difference; 0: SILA_AUTH_WINDOW_MS */
    bool seal;                  /* PAIR links: encrypt every message as well (auth.h); takes
                                   sealed messages only */
};

/* Opens a link of a kind on url (tcp://HOST:PORT, ipc://PATH or
 * inproc://NAME), listening (bind) or connecting (reconnects by itself),
 * receiving messages of at most max_frame bytes (1 .. INT_MAX) besides a
 * trailer, authenticated when auth has a key, and sealed when it asks so.
 * Errors: -EINVAL (bad url, limit or channel; seal without a key or on a
 * link that is not a PAIR), -EADDRINUSE, ... with err naming the url. */
int sila_link_open(struct sila_link *l, enum sila_link_kind kind, const char *url, bool listen,
                   size_t max_frame, const struct sila_link_auth *auth, struct sila_err *err);
/* Closes the link; safe on a closed one. Messages nanomsg has not yet
 * written out are dropped (it has no linger): see sila_link_settle. */
void sila_link_close(struct sila_link *l);

/* Waits SILA_LINK_SETTLE_MS for nanomsg's I/O threads to write out what
 * was sent last. Called before closing links whose last message must
 * arrive though nothing acknowledges it (a Stop). */
#define SILA_LINK_SETTLE_MS 200
void sila_link_settle(void);

/* A send buffer of len bytes (and room for a trailer behind them, zeroed),
 * or NULL. Freed by a successful send, else by sila_link_release. */
uint8_t *sila_link_alloc(size_t len);
/* Frees a buffer from sila_link_alloc or sila_link_recv. */
void sila_link_release(uint8_t *buf);

/* Sends the len bytes of buf, which sila_link_alloc(len) gave, signed on a
 * keyed link (on a REPLY link, when the request it answers was), sealed on
 * a sealed one: then buf's bytes are encrypted in place, whether the send
 * succeeds or not. A send that failed may be tried again with the same buf
 * and len, unchanged since (on a sealed link: -EINVAL if they were); or
 * buf released. timeout_ms: 0
 * never waits (-EAGAIN when it would block), -1 waits forever, > 0 waits
 * at most that long (-ETIMEDOUT). On success the link owns buf; on failure
 * the caller still does. nanomsg may block even without waiting on large
 * frames: never send big frames from an event-loop thread. */
int sila_link_send(struct sila_link *l, uint8_t *buf, size_t len, int timeout_ms);

/* Receives one frame into a buffer the caller frees with
 * sila_link_release; on a keyed link, the first authentic one (its
 * trailer not counted in *ret_len), dropping and counting the others.
 * timeout_ms as for sending. */
int sila_link_recv(struct sila_link *l, uint8_t **ret_buf, size_t *ret_len, int timeout_ms);

/* Whether the message last received carried a valid MAC (false on a bare
 * link, and for a bare request on a REPLY link that accepts them). */
bool sila_link_authenticated(const struct sila_link *l);

/* A sentence for a log about messages dropped since the last one said, at
 * most every interval_s seconds (now_s: the caller's clock): writes it to
 * err, naming what (for instance "the control link of modules 2-3"), and
 * returns true; false when there is nothing to say yet. */
bool sila_link_rejections(struct sila_link *l, const char *what, double now_s, double interval_s,
                          struct sila_err *err);

/* Waits until one of n links has a frame to receive, at most timeout_ms
 * (-1: forever); sets readable[i] for each. Returns how many are readable
 * (0 on timeout) or a negative errno (-EINTR when a signal came). */
int sila_link_poll(const struct sila_link *const *links, int n, int timeout_ms, bool *readable);

/* File descriptors that become readable when a frame can be received and
 * when one can be sent, for an event loop (uv_poll). */
int sila_link_fds(const struct sila_link *l, int *ret_recv_fd, int *ret_send_fd);

#endif
