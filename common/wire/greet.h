/* A data link's greeting (docs/protocol.md, "Greeting a data link").
 *
 * nanomsg's pair holds one connection at a time. An end that still holds
 * one that is going away (of a worker just replaced, or of a socket closed
 * a moment ago) accepts a new connection and drops it at once, and a frame
 * the new connection's end sent meanwhile is lost without a word to either
 * side. So the end that opens a data link greets before its first frame:
 * it sends HELLO frames until one is answered over the same link. An
 * answer proves that both ends hold the same connection; frames sent after
 * it arrive (or the link breaks, which both ends see).
 *
 * A HELLO is one value (1x1x1x1), no labels, outside the edge's sequence;
 * the greeting goes downstream (gradient false), the answer upstream. */
#ifndef SILA_GREET_H
#define SILA_GREET_H

#include <stdint.h>

#include "err.h"
#include "transport.h"

#define SILA_GREET_MS 250 /* a greeting not answered this long is sent again */

/* What the greeter does between attempts (watch its control link, look for
 * a stop): a value other than 0 ends the greeting with it (err set by the
 * callee). */
typedef int sila_greet_wait_fn(void *ctx, struct sila_err *err);

/* Greets on l, opened towards the receiver, as pipeline `generation`:
 * sends a HELLO every SILA_GREET_MS until an answer comes back (of any
 * pipeline: the receiver answers every greeting, whatever its pipeline),
 * dropping anything else that arrives meanwhile; calls wait(ctx, err)
 * every 50 ms meanwhile. Errors: -ENOMEM, the link's (err names them), or
 * wait's value. */
int sila_greet(struct sila_link *l, uint32_t generation, sila_greet_wait_fn *wait, void *ctx,
               struct sila_err *err);

/* A HELLO of generation `generation` into a new buffer from
 * sila_link_alloc (*ret_len bytes), the answer when `answer`. NULL when out
 * of memory. */
uint8_t *sila_greet_frame(uint32_t generation, bool answer, size_t *ret_len);

#endif
