/* Control frame codec (see ctl.h). */
#include "ctl.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define PREFIX 8 /* magic + message length */
static const uint8_t MAGIC[4] = {'S', 'I', 'L', 'C'};

static size_t pad4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

/* Floats a message announces as its tail. */
static uint64_t announced_tail(const Sila__Control *c)
{
    if (c->msg_case == SILA__CONTROL__MSG_STATE && c->state) {
        const Sila__ModuleState *st = c->state;
        if (st->params > UINT32_MAX || st->optimizer > UINT32_MAX || st->buffers > UINT32_MAX)
            return UINT64_MAX; /* no frame is that large: refused below */
        return st->params + st->optimizer + st->buffers;
    }
    if (c->msg_case == SILA__CONTROL__MSG_DONE && c->done)
        return c->done->logits;
    return 0;
}

size_t sila_ctl_frame_limit(size_t state_floats)
{
    return PREFIX + SILA_CTL_MAX_MESSAGE + sizeof(float) * state_floats;
}

int sila_ctl_encode(const Sila__Control *msg, const float *tail, size_t ntail, uint8_t **ret_buf,
                    size_t *ret_len, struct sila_err *err)
{
    size_t ml = sila__control__get_packed_size(msg);
    if (ml > SILA_CTL_MAX_MESSAGE)
        return sila_err_set(err, -EMSGSIZE, "control message of %zu bytes, at most %u", ml,
                            SILA_CTL_MAX_MESSAGE);
    size_t len = PREFIX + pad4(ml) + sizeof(float) * ntail;
    uint8_t *buf = sila_link_alloc(len);
    if (!buf)
        return sila_err_set(err, -ENOMEM, "out of memory for a control frame of %zu bytes", len);
    memcpy(buf, MAGIC, sizeof MAGIC);
    uint32_t ml32 = (uint32_t)ml;
    memcpy(buf + 4, &ml32, sizeof ml32);
    sila__control__pack(msg, buf + PREFIX);
    memset(buf + PREFIX + ml, 0, pad4(ml) - ml);
    if (ntail)
        memcpy(buf + PREFIX + pad4(ml), tail, sizeof(float) * ntail);
    *ret_buf = buf;
    *ret_len = len;
    return 0;
}

int sila_ctl_send(struct sila_link *l, const Sila__Control *msg, const float *tail, size_t ntail,
                  int timeout_ms, struct sila_err *err)
{
    uint8_t *buf;
    size_t len;
    int r = sila_ctl_encode(msg, tail, ntail, &buf, &len, err);
    if (r)
        return r;
    if ((r = sila_link_send(l, buf, len, timeout_ms))) {
        sila_link_release(buf);
        return sila_err_set(err, r, "cannot send a control message: %s", strerror(-r));
    }
    return 0;
}

int sila_ctl_decode(const uint8_t *buf, size_t len, struct sila_ctl_msg *ret, struct sila_err *err)
{
    *ret = (struct sila_ctl_msg){0};
    if (len < PREFIX || memcmp(buf, MAGIC, sizeof MAGIC) != 0)
        return sila_err_set(err, -EBADMSG, "control frame: %zu bytes without the SILC prefix", len);
    uint32_t ml;
    memcpy(&ml, buf + 4, sizeof ml);
    if (ml > SILA_CTL_MAX_MESSAGE || PREFIX + pad4(ml) > len)
        return sila_err_set(err, -EBADMSG, "control frame: message length %u in %zu bytes", ml,
                            len);
    Sila__Control *c = sila__control__unpack(NULL, ml, buf + PREFIX);
    if (!c)
        return sila_err_set(err, -EBADMSG, "control frame: message of %u bytes does not decode",
                            ml);
    size_t tail_bytes = len - PREFIX - pad4(ml);
    uint64_t want = announced_tail(c);
    int r = 0;
    if (c->msg_case == SILA__CONTROL__MSG__NOT_SET)
        r = sila_err_set(err, -EBADMSG, "control frame: empty message");
    else if (tail_bytes % sizeof(float) || want > SIZE_MAX / sizeof(float) ||
             tail_bytes / sizeof(float) != want)
        r = sila_err_set(err, -EBADMSG,
                         "control frame: %zu tail bytes, the message announces %llu floats",
                         tail_bytes, (unsigned long long)want);
    if (r) {
        sila__control__free_unpacked(c, NULL);
        return r;
    }
    ret->msg = c;
    ret->ntail = (size_t)want;
    ret->tail = want ? (const float *)(buf + PREFIX + pad4(ml)) : NULL;
    return 0;
}

int sila_ctl_recv(struct sila_link *l, int timeout_ms, struct sila_ctl_msg *ret,
                  struct sila_err *err)
{
    uint8_t *buf;
    size_t len;
    *ret = (struct sila_ctl_msg){0};
    int r = sila_link_recv(l, &buf, &len, timeout_ms);
    if (r)
        return r;
    r = sila_ctl_decode(buf, len, ret, err);
    if (r) {
        sila_link_release(buf);
        return r;
    }
    ret->buf = buf;
    return 0;
}

void sila_ctl_msg_free(struct sila_ctl_msg *m)
{
    if (m->msg)
        sila__control__free_unpacked(m->msg, NULL);
    sila_link_release(m->buf);
    *m = (struct sila_ctl_msg){0};
}
