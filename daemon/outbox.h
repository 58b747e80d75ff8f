/* A link's sending side on a thread of its own, for an event loop that
 * must never wait: the loop submits encoded frames, the outbox's thread
 * sends them in order (nanomsg may block on a large frame however it is
 * asked), and each frame's outcome comes back to the loop through a
 * uv_async, as nng's aio objects do. The loop may go on receiving on the
 * link while the thread sends: on a pair link the two touch separate
 * state (the sender's MAC sequence, the receiver's sessions and counts).
 *
 * Every function here is called on the loop's thread; the callback runs
 * there too. */
#ifndef SILA_OUTBOX_H
#define SILA_OUTBOX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"
#include "transport.h"

/* A frame's outcome: 0 sent, -ECANCELED dropped by outbox_cancel, else the
 * link's error or -ETIMEDOUT past its deadline. tag is the submitter's. */
typedef void outbox_sent_cb(void *ctx, uint64_t tag, int status);

struct outbox;

/* Takes *link (opened; reset to closed) into a new outbox on loop whose
 * outcomes go to sent(ctx, ...), NULL: none wanted. Errors: -ENOMEM or
 * libuv's, with err set and the link closed. */
int outbox_new(struct outbox **ret, uv_loop_t *loop, struct sila_link *link, outbox_sent_cb *sent,
               void *ctx, struct sila_err *err);

/* The next frame submitted leaves once the link's greeting (greet.h), as
 * pipeline `generation`, is answered; the thread receives on the link
 * meanwhile, so the loop must not. A greeting that fails (not for
 * outbox_free) fails every frame after it with the link's error. */
void outbox_greet(struct outbox *o, uint32_t generation);

/* The link, to receive on (the loop's) and to read its counters; the loop
 * stops polling it before outbox_free. */
struct sila_link *outbox_link(struct outbox *o);

/* Queues buf (len bytes from sila_link_alloc; taken, whatever happens) to be
 * sent after what is queued: deadline_ms 0 tries once without waiting, -1
 * waits until sent or cancelled, > 0 at most that long; its outcome is
 * reported later. Errors (nothing reported): -ENOMEM, -ECANCELED once
 * outbox_free was called. */
int outbox_submit(struct outbox *o, uint8_t *buf, size_t len, int deadline_ms, uint64_t tag);

/* Drops every frame queued and the one being sent, if any: each is
 * reported -ECANCELED. Frames submitted afterwards are sent. */
void outbox_cancel(struct outbox *o);

/* Ends the outbox: with drain, after sending what is queued (then giving
 * the last frame SILA_LINK_SETTLE_MS to leave); else cancelling it, and
 * returning once the link is closed (the send under way gives up within
 * 100 ms), so that its address is free. No outcome is reported after this
 * call; the thread closes the link, the outbox frees itself on the loop.
 * Safe on NULL. */
void outbox_free(struct outbox *o, bool drain);

#endif
