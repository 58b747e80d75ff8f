/* Authenticated messages: the cluster key, and the trailer that every
 * message of a keyed link carries (docs/protocol.md, "Authentication").
 *
 * A key file holds one line, "sila-key-1 " and 64 hex digits: 32 random
 * bytes, made by `silactl keygen`, shared by the coordinator, its workers
 * and silactl. It must be private to its owner (mode 0600).
 *
 * A keyed link appends to every message a 64-byte trailer: magic "SLA1",
 * the key's id, the sender's session (random per link opened), a sequence
 * number (from 1, increasing per session), the sender's clock (unix ms) and
 * an HMAC-SHA-512-256 (libsodium's crypto_auth) of the link's channel and
 * the sender's side, the payload, those fields and, for a reply, the
 * session and sequence of the request it answers. A receiver verifies the
 * MAC in constant time, then admits a session it does not know only when
 * the message's clock is within the window of its own, and takes from a
 * known session only a sequence above the last one it took.
 *
 * A sealing end (a PAIR link of a run started with --encrypt) encrypts the
 * payload as well, in place, instead of MAC'ing it: XChaCha20-Poly1305
 * (libsodium's crypto_aead_xchacha20poly1305_ietf, detached) with a key of
 * the sender's session, BLAKE2b-256 keyed with the cluster key over the
 * sealing label of the channel and side ("sila-seal/1/data-3/connect")
 * and the session. The trailer has magic "SLE1", the same id, session,
 * sequence and clock, 16 zero bytes, and the Poly1305 tag over the payload
 * and the trailer's first 48 bytes; the nonce is its 24 bytes of session,
 * sequence and clock, never reused under one session's key since the
 * sequence grows (and a key is another for another channel, side or
 * random session). The label in the key keeps the MAC's rules: a message
 * sealed for one channel or side opens on no other, so it cannot be moved
 * to another link or reflected to its sender; the freshness rules are the
 * MAC's, on the authenticated session, sequence and clock. Sealed and
 * MAC'd messages cannot pass for one another: the magic differs, each end
 * takes only its own, and the keys differ. Only PAIR ends seal: the
 * rendezvous (Hello, Welcome) and the RPC carry no training data and stay
 * MAC'd.
 *
 * Who decides that a run is sealed: the coordinator (silad --encrypt). Its
 * Welcome says so, MAC'd and bound to the worker's Hello, so that nobody
 * without the key can strip or replay it; the worker then seals every link
 * it opens. A worker given --encrypt takes that as a floor: its Hello asks
 * for sealing, a coordinator without --encrypt refuses it (naming it), and
 * it leaves a coordinator whose Welcome does not say sealed (an older one).
 * One setting per run, where the run is configured, rather than one per
 * process that must all agree: spawned workers and worker units need none,
 * and no link falls back to clear text, since a sealing end takes nothing
 * else (docs/protocol.md, "Sealed links").
 *
 * This file does the arithmetic on buffers; common/wire/transport.c
 * applies it to every message of a keyed link. No nanomsg here. */
#ifndef SILA_AUTH_H
#define SILA_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SILA_KEY_BYTES 32
#define SILA_AUTH_TRAILER 64             /* bytes after a keyed message's payload, sealed too */
#define SILA_AUTH_WINDOW_MS 60000        /* default: accepted clock difference */
#define SILA_KEY_ENV "SILA_KEY_FILE"     /* default of --key in all three programs */
#define SILA_KEY_FILE_DEFAULT "sila.key" /* where silactl keygen writes without FILE */

struct sila_key {
    uint8_t bytes[SILA_KEY_BYTES];
    uint32_t id; /* a fingerprint, for messages: another key has another id */
};

/* Writes a new random key to path, created with mode 0600 and O_EXCL (an
 * existing file is never overwritten: -EEXIST), and gives it in *ret_key
 * (may be NULL). Errors: the failed call's -errno, err naming path. */
int sila_key_generate(const char *path, struct sila_key *ret_key, struct sila_err *err);

/* Reads the key in path. Refuses (-EPERM) a file its group or others may
 * read or write (naming the file and its mode), except inside systemd's
 * $CREDENTIALS_DIRECTORY, which systemd keeps private; and (-EINVAL) one of
 * another size or format. Errors from opening as -errno. */
int sila_key_load(const char *path, struct sila_key *ret_key, struct sila_err *err);

/* Erases the key's bytes. */
void sila_key_wipe(struct sila_key *k);

/* The key id as 8 hex digits into out (9 bytes). */
void sila_key_id_text(uint32_t id, char out[9]);

enum sila_auth_role {
    SILA_AUTH_PAIR = 1,    /* either end sends whenever it likes */
    SILA_AUTH_REQUEST = 2, /* sends requests; a reply must answer the last one */
    SILA_AUTH_REPLY = 3,   /* answers requests: each reply names the request it answers */
};

/* One end of a keyed link: its key, channel, send counter and the sessions
 * it has heard. Opaque; one thread at a time. */
struct sila_auth;

struct sila_auth_params {
    const struct sila_key *key; /* copied */
    const char *channel;        /* names the link alike at both ends: "control-3" */
    bool listener;              /* this end listens (binds): its side is "bind" */
    enum sila_auth_role role;
    uint32_t window_ms; /* 0: SILA_AUTH_WINDOW_MS */
    int sessions;       /* sessions remembered at most; 0: 16 (a REPLY end: 1024) */
    bool seal;          /* encrypt (XChaCha20-Poly1305) instead of MAC'ing: PAIR ends only */
};

/* A new end; NULL when out of memory, the channel is longer than 64, or
 * seal is asked of an end that is not a PAIR. */
struct sila_auth *sila_auth_new(const struct sila_auth_params *p);
/* Erases and frees a; NULL is fine. */
void sila_auth_free(struct sila_auth *a);

/* Writes the trailer of a message of len bytes at buf + len (the buffer
 * holds SILA_AUTH_TRAILER more) with the next sequence number and now_ms,
 * the sender's clock in unix milliseconds; a sealing end encrypts the len
 * bytes in place first. */
void sila_auth_sign(struct sila_auth *a, uint8_t *buf, size_t len, uint64_t now_ms);

/* As sila_auth_sign, for a message whose send may have failed and that is
 * tried again (buf then still holds what this end made of it): a sealing
 * end leaves a message it sealed last as it is, so the same bytes go again,
 * unless it is half a window old; one it sealed before others, or too
 * long ago, it decrypts and seals anew. The trailer room of a new buffer
 * must hold zeros (sila_link_alloc's do): old bytes there could pass for
 * this end's trailer. Errors: -EINVAL, a message this end sealed that was
 * changed since (buf is then undefined). */
int sila_auth_sign_again(struct sila_auth *a, uint8_t *buf, size_t len, uint64_t now_ms);

/* Whether buf (len bytes) ends with something that looks like a trailer
 * (long enough, the magic of a MAC'd or a sealed one): a link that also
 * takes bare messages tells the two apart by it. */
bool sila_auth_has_trailer(const uint8_t *buf, size_t len);

/* Verifies a received message of len bytes at now_ms (the receiver's
 * clock): the MAC, or for a sealing end the tag while it decrypts the
 * payload in place; then the clock and sequence rules. On success the
 * session's sequence is recorded and *ret_len is the payload's length.
 * Errors: -EBADMSG (too short, not a trailer, sealed where MAC'd ones are
 * taken or the reverse, another key, a MAC or tag that does not verify)
 * and -EACCES (stale or replayed), err saying which; nothing is recorded
 * then, and a sealing end leaves the payload's bytes undefined. */
int sila_auth_verify(struct sila_auth *a, uint8_t *buf, size_t len, uint64_t now_ms,
                     size_t *ret_len, struct sila_err *err);

/* The label a side's MACs start with ("sila/1/control-3/bind" plus a zero
 * byte), or with sealed the one its session keys are derived from
 * ("sila-seal/1/control-3/bind" plus a zero byte), into out (at least 96
 * bytes); its length with the zero byte. Used by tests that compute a MAC
 * or a seal independently. */
size_t sila_auth_label(const char *channel, bool from_listener, bool sealed, char *out, size_t cap);

/* Unix time in milliseconds (CLOCK_REALTIME). */
uint64_t sila_auth_now_ms(void);

#endif
