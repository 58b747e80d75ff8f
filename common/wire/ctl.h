/* Control frames: the messages that steer a distributed run (join, start,
 * per-batch reports, state collection, stop), as they travel on a link.
 * Layout (docs/protocol.md): magic "SILC", message length (LE uint32), a
 * serialized sila.Control, zero padding to a multiple of 4, then an
 * optional tail of raw float32 values (a module's state, the classifier's
 * logits of a Done for collab).
 *
 * Receiving never trusts the bytes: the frame's length is capped by the
 * link before anything is read, the message length is checked against the
 * frame, and a message that does not decode or carries a tail other than
 * the one it announces is refused with a sentence. */
#ifndef SILA_CTL_H
#define SILA_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "sila.pb-c.h"
#include "transport.h"

#define SILA_CTL_MAX_MESSAGE (4u << 20) /* bytes of a serialized Control, at most */

/* The receive limit of a control link whose frames may carry a module state
 * of up to state_floats floats (0: none): the message and the tail. */
size_t sila_ctl_frame_limit(size_t state_floats);

/* Encodes msg with ntail floats of tail (NULL when 0) into a new buffer
 * from sila_link_alloc (*ret_buf, *ret_len bytes; the caller's, to send or
 * release). Errors: -EMSGSIZE, -ENOMEM with err set. */
int sila_ctl_encode(const Sila__Control *msg, const float *tail, size_t ntail, uint8_t **ret_buf,
                    size_t *ret_len, struct sila_err *err);

/* Sends msg with ntail floats of tail (NULL when 0) on l; timeout_ms as for
 * sila_link_send. Errors: -ENOMEM, or the link's, with err set naming what. */
int sila_ctl_send(struct sila_link *l, const Sila__Control *msg, const float *tail, size_t ntail,
                  int timeout_ms, struct sila_err *err);

/* A received control message; free with sila_ctl_msg_free. */
struct sila_ctl_msg {
    Sila__Control *msg; /* owned, decoded */
    const float *tail;  /* into buf: ntail floats, NULL when none */
    size_t ntail;
    uint8_t *buf; /* owned: the received frame */
};

/* Receives one control message. Errors: the link's (-EAGAIN, -ETIMEDOUT,
 * ...) and -EBADMSG for a frame that is not a well-formed control message
 * (err says why); the frame is consumed either way. */
int sila_ctl_recv(struct sila_link *l, int timeout_ms, struct sila_ctl_msg *ret,
                  struct sila_err *err);

/* Decodes len bytes of buf (not taking ownership): used by sila_ctl_recv
 * and by tests. On success ret->msg is set and ret->buf is NULL. */
int sila_ctl_decode(const uint8_t *buf, size_t len, struct sila_ctl_msg *ret, struct sila_err *err);

void sila_ctl_msg_free(struct sila_ctl_msg *m);

#endif
