/* Fuzz target: message trailers (common/wire/auth.h), the first check of every
 * message on a keyed link. Any bytes are verified against a fixed key by a
 * MAC'ing end and by a sealing one (--encrypt), each on its own copy (a
 * sealing end decrypts in place): refused, or taken once (the seeds hold
 * messages signed with it); then the same bytes as a payload, signed or
 * sealed, must be taken exactly once and come out as they went in. The
 * ends live across inputs, so their session tables fill and evict. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "fuzz.h"

#define NOW 1700000000000ull /* the seeds' clock (make_seeds.py) */

static struct sila_auth *end(bool listener, int sessions, bool seal)
{
    static struct sila_key key = {.id = 0x04030201};
    for (size_t i = 0; i < sizeof key.bytes; i++)
        key.bytes[i] = (uint8_t)(i * 37 + 1);
    struct sila_auth_params p = {&key, "data-2", listener, SILA_AUTH_PAIR, 0, sessions, seal};
    return sila_auth_new(&p);
}

/* The input through one kind of end, in buf (size + a trailer). */
static void exercise(struct sila_auth *snd, struct sila_auth *rcv, const uint8_t *data, size_t size,
                     uint8_t *buf)
{
    size_t plen;
    memcpy(buf, data, size);
    if (sila_auth_verify(rcv, buf, size, NOW, &plen, NULL) == 0 && plen + SILA_AUTH_TRAILER != size)
        abort();
    memcpy(buf, data, size);
    sila_auth_sign(snd, buf, size, NOW);
    if (sila_auth_verify(rcv, buf, size + SILA_AUTH_TRAILER, NOW, &plen, NULL) != 0 ||
        plen != size || memcmp(buf, data, size) != 0)
        abort();
    if (sila_auth_verify(rcv, buf, size + SILA_AUTH_TRAILER, NOW, &plen, NULL) == 0)
        abort(); /* the same message again: a replay */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sila_auth *snd, *rcv, *seal_snd, *seal_rcv;
    if (!rcv && (!(snd = end(false, 0, false)) || !(rcv = end(true, 4, false)) ||
                 !(seal_snd = end(false, 0, true)) || !(seal_rcv = end(true, 4, true))))
        abort();
    uint8_t *buf = malloc(size + SILA_AUTH_TRAILER);
    if (!buf)
        return 0;
    exercise(snd, rcv, data, size, buf);
    exercise(seal_snd, seal_rcv, data, size, buf);
    free(buf);
    return 0;
}
