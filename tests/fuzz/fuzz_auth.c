/* Fuzz target: message trailers (common/wire/auth.h), the first check of every
 * message on a keyed link. Any bytes are verified against a fixed key:
 * refused, or taken once (the seeds hold messages signed with it); then
 * the same bytes as a payload, signed, must be taken exactly once. The
 * ends live across inputs, so their session tables fill and evict. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "fuzz.h"

#define NOW 1700000000000ull /* the seeds' clock (make_seeds.py) */

static struct sila_auth *end(bool listener, int sessions)
{
    static struct sila_key key = {.id = 0x04030201};
    for (size_t i = 0; i < sizeof key.bytes; i++)
        key.bytes[i] = (uint8_t)(i * 37 + 1);
    struct sila_auth_params p = {&key, "data-2", listener, SILA_AUTH_PAIR, 0, sessions};
    return sila_auth_new(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sila_auth *snd, *rcv;
    if (!rcv && (!(snd = end(false, 0)) || !(rcv = end(true, 4))))
        abort();
    size_t plen;
    if (sila_auth_verify(rcv, data, size, NOW, &plen, NULL) == 0 &&
        plen + SILA_AUTH_TRAILER != size)
        abort();
    uint8_t *buf = malloc(size + SILA_AUTH_TRAILER);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    sila_auth_sign(snd, buf, size, NOW);
    if (sila_auth_verify(rcv, buf, size + SILA_AUTH_TRAILER, NOW, &plen, NULL) != 0 ||
        plen != size || memcmp(buf, data, size) != 0)
        abort();
    if (sila_auth_verify(rcv, buf, size + SILA_AUTH_TRAILER, NOW, &plen, NULL) == 0)
        abort(); /* the same message again: a replay */
    free(buf);
    return 0;
}
