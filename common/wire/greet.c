/* A data link's greeting (see greet.h). */
#include "greet.h"

#include <errno.h>
#include <string.h>

#include "frame.h"

#define SLICE_MS 50 /* the greeter looks at wait() this often */

uint8_t *sila_greet_frame(uint32_t generation, bool answer, size_t *ret_len)
{
    static const float zero = 0.0f;
    const struct sila_frame_hdr h = {.generation = generation,
                                     .phase = SILA_PHASE_HELLO,
                                     .gradient = answer,
                                     .n = 1,
                                     .c = 1,
                                     .h = 1,
                                     .w = 1};
    *ret_len = sila_frame_size(&h);
    uint8_t *buf = sila_link_alloc(*ret_len);
    if (buf)
        sila_frame_encode(buf, &h, NULL, NULL, NULL, &zero);
    return buf;
}

/* Whether the len bytes at buf answer a greeting: any answer that came by
 * this link does, whichever pipeline it was sent in (a Halt may come
 * between a greeting and its answer). */
static bool is_answer(const uint8_t *buf, size_t len)
{
    const struct sila_frame_limits lim = {.gradient = true};
    struct sila_frame_view v;
    struct sila_err ignored; /* anything else is dropped, whatever it is */
    return sila_frame_decode(buf, len, &lim, &v, &ignored) == 0 && v.hdr.phase == SILA_PHASE_HELLO;
}

int sila_greet(struct sila_link *l, uint32_t generation, sila_greet_wait_fn *wait, void *ctx,
               struct sila_err *err)
{
    for (;;) {
        size_t len;
        uint8_t *hello = sila_greet_frame(generation, false, &len);
        if (!hello)
            return sila_err_set(err, -ENOMEM, "out of memory for a greeting");
        int r = sila_link_send(l, hello, len, SLICE_MS);
        if (r)
            sila_link_release(hello);
        if (r && r != -ETIMEDOUT && r != -EAGAIN)
            return sila_err_set(err, r, "cannot greet on the data link: %s", strerror(-r));
        /* the answers to earlier greetings count as well */
        for (int waited = 0; waited < SILA_GREET_MS; waited += SLICE_MS) {
            uint8_t *buf;
            r = sila_link_recv(l, &buf, &len, SLICE_MS);
            if (r == 0) {
                bool answered = is_answer(buf, len);
                sila_link_release(buf);
                if (answered)
                    return 0;
            } else if (r != -ETIMEDOUT && r != -EAGAIN) {
                return sila_err_set(err, r, "cannot hear a greeting's answer: %s", strerror(-r));
            }
            if ((r = wait(ctx, err)))
                return r;
        }
    }
}
