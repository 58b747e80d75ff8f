/* Authenticated messages (common/wire/auth.h, common/wire/transport.h): key files
 * (mode 0600 and O_EXCL when made; refused when others may read them, of
 * the wrong size or format), the trailer's MAC against one computed here
 * with crypto_auth over the documented layout, every flipped byte, a
 * replay, a stale clock, another key, another channel or side refused, and
 * keyed links that drop and count what fails while authentic messages go
 * through. Sealed messages (--encrypt) likewise: opened here with a key
 * derived and a cipher called as docs/protocol.md says, refused when
 * altered, replayed, reflected, of another key or channel, or MAC'd where
 * sealed ones are expected and the reverse; sealed links whose bytes do not
 * show the payload, and a sealed send tried again. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "check_main.h"
#include "testdir.h"
#include "transport.h"

#define NOW 1700000000000ull /* a fixed clock, unix ms */

static struct sila_key make_key(const char *name)
{
    struct sila_key k;
    struct sila_err err = {""};
    ck_assert_msg(sila_key_generate(tpath(name), &k, &err) == 0, "%s", err.msg);
    return k;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
    ck_assert_int_eq(chmod(path, mode), 0);
}

/* ---- key files ---- */

START_TEST(keygen_private_and_exclusive)
{
    umask(0); /* the file's mode must not depend on the umask */
    struct sila_key k = make_key("k");
    struct stat st;
    ck_assert_int_eq(stat(tpath("k"), &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
    ck_assert_int_eq(st.st_size, 76);
    char before[100];
    FILE *f = fopen(tpath("k"), "r");
    ck_assert_ptr_nonnull(fgets(before, sizeof before, f));
    fclose(f);
    ck_assert_int_eq(strncmp(before, "sila-key-1 ", 11), 0);
    /* never overwritten */
    struct sila_err err = {""};
    ck_assert_int_eq(sila_key_generate(tpath("k"), NULL, &err), -EEXIST);
    ck_assert_ptr_nonnull(strstr(err.msg, tpath("k")));
    ck_assert_ptr_nonnull(strstr(err.msg, "never overwritten"));
    struct sila_key again;
    ck_assert_msg(sila_key_load(tpath("k"), &again, &err) == 0, "%s", err.msg);
    ck_assert_mem_eq(again.bytes, k.bytes, sizeof k.bytes);
    ck_assert_uint_eq(again.id, k.id);
    /* a symbolic link is not followed when creating */
    ck_assert_int_eq(symlink(tpath("elsewhere"), tpath("link")), 0);
    ck_assert_int_lt(sila_key_generate(tpath("link"), NULL, &err), 0);
    ck_assert_int_ne(access(tpath("elsewhere"), F_OK), 0);
    /* two keys differ */
    struct sila_key k2 = make_key("k2");
    ck_assert_int_ne(memcmp(k.bytes, k2.bytes, sizeof k.bytes), 0);
    ck_assert_uint_ne(k.id, k2.id);
}
END_TEST

START_TEST(keygen_umask_cannot_lock_out_the_owner)
{
    umask(0777);
    make_key("k");
    struct stat st;
    ck_assert_int_eq(stat(tpath("k"), &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
}
END_TEST

START_TEST(load_refuses_shared_files)
{
    make_key("k");
    struct sila_key k;
    struct sila_err err = {""};
    static const mode_t bad[] = {0640, 0604, 0644, 0620, 0602, 0660};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_int_eq(chmod(tpath("k"), bad[i]), 0);
        ck_assert_int_eq(sila_key_load(tpath("k"), &k, &err), -EPERM);
        ck_assert_ptr_nonnull(strstr(err.msg, tpath("k")));
        char mode[8];
        snprintf(mode, sizeof mode, "%04o", (unsigned)bad[i]);
        ck_assert_msg(strstr(err.msg, mode), "no mode %s in: %s", mode, err.msg);
    }
    ck_assert_int_eq(chmod(tpath("k"), 0400), 0);
    ck_assert_msg(sila_key_load(tpath("k"), &k, &err) == 0, "%s", err.msg);
}
END_TEST

START_TEST(load_trusts_systemd_credentials)
{
    make_key("k");
    ck_assert_int_eq(chmod(tpath("k"), 0440), 0); /* what an ACL's mask shows */
    struct sila_key k;
    struct sila_err err = {""};
    setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
    ck_assert_msg(sila_key_load(tpath("k"), &k, &err) == 0, "%s", err.msg);
    char outside[600];
    snprintf(outside, sizeof outside, "%s/../%s/k", tmpdir, strrchr(tmpdir, '/') + 1);
    ck_assert_int_eq(sila_key_load(outside, &k, &err), -EPERM);
    setenv("CREDENTIALS_DIRECTORY", "/nonexistent", 1);
    ck_assert_int_eq(sila_key_load(tpath("k"), &k, &err), -EPERM);
}
END_TEST

START_TEST(load_refuses_bad_contents)
{
    struct sila_key k;
    struct sila_err err = {""};
    char line[80];
    memcpy(line, "sila-key-1 ", 11);
    memset(line + 11, 'a', 64);
    line[75] = '\n';
    write_file(tpath("ok"), line, 76, 0600);
    ck_assert_msg(sila_key_load(tpath("ok"), &k, &err) == 0, "%s", err.msg);
    write_file(tpath("ok2"), line, 75, 0600); /* no newline: fine */
    ck_assert_msg(sila_key_load(tpath("ok2"), &k, &err) == 0, "%s", err.msg);
    write_file(tpath("short"), line, 74, 0600);
    ck_assert_int_eq(sila_key_load(tpath("short"), &k, &err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "74 bytes"));
    ck_assert_ptr_nonnull(strstr(err.msg, tpath("short")));
    write_file(tpath("empty"), "", 0, 0600);
    ck_assert_int_eq(sila_key_load(tpath("empty"), &k, &err), -EINVAL);
    char big[200];
    memset(big, 'a', sizeof big);
    write_file(tpath("big"), big, sizeof big, 0600);
    ck_assert_int_eq(sila_key_load(tpath("big"), &k, &err), -EINVAL);
    line[40] = 'g'; /* not hex */
    write_file(tpath("nothex"), line, 76, 0600);
    ck_assert_int_eq(sila_key_load(tpath("nothex"), &k, &err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a sila key file"));
    line[40] = 'a';
    line[3] = 'X'; /* another prefix */
    write_file(tpath("prefix"), line, 76, 0600);
    ck_assert_int_eq(sila_key_load(tpath("prefix"), &k, &err), -EINVAL);
    line[3] = '-';
    line[75] = ' '; /* not a newline at the end */
    write_file(tpath("tail"), line, 76, 0600);
    ck_assert_int_eq(sila_key_load(tpath("tail"), &k, &err), -EINVAL);
    ck_assert_int_eq(sila_key_load(tmpdir, &k, &err), -EINVAL); /* a directory */
    ck_assert_int_eq(sila_key_load(tpath("missing"), &k, &err), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err.msg, tpath("missing")));
}
END_TEST

/* ---- trailers ---- */

static struct sila_key ka, kb;
static struct sila_auth *sender, *receiver;

static struct sila_auth *make_end(const struct sila_key *k, const char *channel, bool listener,
                                  enum sila_auth_role role, int sessions, bool seal)
{
    struct sila_auth_params p = {.key = k,
                                 .channel = channel,
                                 .listener = listener,
                                 .role = role,
                                 .window_ms = 60000,
                                 .sessions = sessions,
                                 .seal = seal};
    struct sila_auth *a = sila_auth_new(&p);
    ck_assert_ptr_nonnull(a);
    return a;
}

/* An end that MACs. */
static struct sila_auth *new_end(const struct sila_key *k, const char *channel, bool listener,
                                 enum sila_auth_role role, int sessions)
{
    return make_end(k, channel, listener, role, sessions, false);
}

static void trailer_setup(void)
{
    ck_assert_int_ge(sodium_init(), 0);
    randombytes_buf(ka.bytes, sizeof ka.bytes);
    randombytes_buf(kb.bytes, sizeof kb.bytes);
    ka.id = 0x11111111;
    kb.id = 0x22222222;
    sender = new_end(&ka, "control-3", false, SILA_AUTH_PAIR, 0);
    receiver = new_end(&ka, "control-3", true, SILA_AUTH_PAIR, 0);
}

static void trailer_teardown(void)
{
    sila_auth_free(sender);
    sila_auth_free(receiver);
}

/* A message of len payload bytes signed by a at time t, in buf. */
static void signed_msg(struct sila_auth *a, uint8_t *buf, size_t len, uint64_t t)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    sila_auth_sign(a, buf, len, t);
}

static int verify(struct sila_auth *a, uint8_t *buf, size_t len, uint64_t now)
{
    size_t plen = 0;
    struct sila_err err = {""};
    int r = sila_auth_verify(a, buf, len, now, &plen, &err);
    if (r == 0)
        ck_assert_uint_eq(plen, len - SILA_AUTH_TRAILER);
    else
        ck_assert_msg(*err.msg, "a refusal says why");
    return r;
}

/* The payload signed_msg writes: len bytes. */
static void expect_payload(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] != (uint8_t)(i * 7 + 3))
            ck_abort_msg("payload byte %zu differs", i);
}

/* Verifies a copy of the n bytes of m (a sealing end decrypts in place). */
static int verify_copy(struct sila_auth *a, const uint8_t *m, size_t n, uint64_t now)
{
    uint8_t *c = malloc(n);
    ck_assert_ptr_nonnull(c);
    memcpy(c, m, n);
    int r = verify(a, c, n, now);
    if (r == 0)
        expect_payload(c, n - SILA_AUTH_TRAILER);
    free(c);
    return r;
}

/* Two messages from snd: rcv takes each once, and not the older after the
 * newer. */
static void check_replays(struct sila_auth *snd, struct sila_auth *rcv)
{
    uint8_t m1[10 + SILA_AUTH_TRAILER], m2[10 + SILA_AUTH_TRAILER];
    signed_msg(snd, m1, 10, NOW);
    signed_msg(snd, m2, 10, NOW + 5);
    ck_assert_int_eq(verify_copy(rcv, m1, sizeof m1, NOW + 10), 0);
    ck_assert_int_eq(verify_copy(rcv, m1, sizeof m1, NOW + 10), -EACCES); /* again */
    ck_assert_int_eq(verify_copy(rcv, m2, sizeof m2, NOW + 10), 0);
    ck_assert_int_eq(verify_copy(rcv, m1, sizeof m1, NOW + 10), -EACCES); /* older */
    ck_assert_int_eq(verify_copy(rcv, m2, sizeof m2, NOW + 10), -EACCES);
}

START_TEST(mac_matches_crypto_auth_of_the_documented_layout)
{
    uint8_t buf[100 + SILA_AUTH_TRAILER];
    signed_msg(sender, buf, 100, NOW);
    const uint8_t *t = buf + 100;
    ck_assert_mem_eq(t, "SLA1", 4);
    ck_assert_mem_eq(t + 4, &ka.id, 4);
    uint64_t seq, time_ms;
    memcpy(&seq, t + 16, 8);
    memcpy(&time_ms, t + 24, 8);
    ck_assert_uint_eq(seq, 1);
    ck_assert_uint_eq(time_ms, NOW);
    /* label of the connecting side, payload, trailer fields, 16 zero bytes */
    static const char label[] = "sila/1/control-3/connect";
    uint8_t in[sizeof label + 100 + 32 + 16] = {0};
    memcpy(in, label, sizeof label); /* with its zero byte */
    memcpy(in + sizeof label, buf, 100 + 32);
    uint8_t mac[crypto_auth_BYTES];
    crypto_auth(mac, in, sizeof in, ka.bytes);
    ck_assert_mem_eq(mac, t + 32, 32);
    ck_assert_int_eq(crypto_auth_verify(t + 32, in, sizeof in, ka.bytes), 0);
    ck_assert_int_eq(verify(receiver, buf, sizeof buf, NOW), 0);
}
END_TEST

/* A message from snd with any bit of any byte flipped, or a byte short, is
 * refused by rcv; the refusals record nothing: the message still passes. */
static void check_flipped_bytes(struct sila_auth *snd, struct sila_auth *rcv)
{
    enum { N = 40 };
    uint8_t buf[N + SILA_AUTH_TRAILER];
    signed_msg(snd, buf, N, NOW);
    for (size_t i = 0; i < sizeof buf; i++)
        for (int bit = 0; bit < 8; bit += 3) {
            buf[i] ^= (uint8_t)(1u << bit);
            ck_assert_msg(verify_copy(rcv, buf, sizeof buf, NOW) != 0, "byte %zu bit %d", i, bit);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    ck_assert_int_ne(verify_copy(rcv, buf + 1, sizeof buf - 1, NOW), 0);
    ck_assert_int_ne(verify_copy(rcv, buf, SILA_AUTH_TRAILER - 1, NOW), 0);
    ck_assert_int_eq(verify_copy(rcv, buf, sizeof buf, NOW), 0);
}

START_TEST(every_flipped_byte_is_refused)
{
    check_flipped_bytes(sender, receiver);
}
END_TEST

START_TEST(replays_are_refused)
{
    check_replays(sender, receiver);
    /* a known session's messages may be late (a slow receiver), not replayed */
    uint8_t m3[10 + SILA_AUTH_TRAILER];
    signed_msg(sender, m3, 10, NOW + 20);
    ck_assert_int_eq(verify(receiver, m3, sizeof m3, NOW + 600000), 0);
    ck_assert_int_eq(verify(receiver, m3, sizeof m3, NOW + 600000), -EACCES);
}
END_TEST

START_TEST(stale_clocks_are_refused)
{
    uint8_t m[10 + SILA_AUTH_TRAILER];
    signed_msg(sender, m, 10, NOW - 61000);
    ck_assert_int_eq(verify(receiver, m, sizeof m, NOW), -EACCES);
    signed_msg(sender, m, 10, NOW + 61000);
    ck_assert_int_eq(verify(receiver, m, sizeof m, NOW), -EACCES);
    /* within the window: admitted */
    signed_msg(sender, m, 10, NOW - 59000);
    ck_assert_int_eq(verify(receiver, m, sizeof m, NOW), 0);
    /* the window is the receiver's option */
    struct sila_auth_params p = {&ka, "control-3", true, SILA_AUTH_PAIR, 1000, 0, false};
    struct sila_auth *strict = sila_auth_new(&p);
    struct sila_auth *s2 = new_end(&ka, "control-3", false, SILA_AUTH_PAIR, 0);
    signed_msg(s2, m, 10, NOW - 2000);
    ck_assert_int_eq(verify(strict, m, sizeof m, NOW), -EACCES);
    sila_auth_free(strict);
    sila_auth_free(s2);
}
END_TEST

START_TEST(another_key_channel_or_side_is_refused)
{
    uint8_t m[10 + SILA_AUTH_TRAILER];
    signed_msg(sender, m, 10, NOW);
    /* another key, named by its id */
    struct sila_auth *other = new_end(&kb, "control-3", true, SILA_AUTH_PAIR, 0);
    struct sila_err err = {""};
    size_t plen;
    ck_assert_int_eq(sila_auth_verify(other, m, sizeof m, NOW, &plen, &err), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err.msg, "another key"));
    sila_auth_free(other);
    /* another key claiming this key's id */
    struct sila_key forged = kb;
    forged.id = ka.id;
    struct sila_auth *f = new_end(&forged, "control-3", false, SILA_AUTH_PAIR, 0);
    signed_msg(f, m, 10, NOW);
    ck_assert_int_eq(verify(receiver, m, sizeof m, NOW), -EBADMSG);
    sila_auth_free(f);
    /* another channel (worker 4's control link) */
    struct sila_auth *c4 = new_end(&ka, "control-4", false, SILA_AUTH_PAIR, 0);
    signed_msg(c4, m, 10, NOW);
    ck_assert_int_eq(verify(receiver, m, sizeof m, NOW), -EBADMSG);
    sila_auth_free(c4);
    /* reflected: the listener's own message sent back to it */
    struct sila_auth *l2 = new_end(&ka, "control-3", true, SILA_AUTH_PAIR, 0);
    signed_msg(l2, m, 10, NOW);
    ck_assert_int_eq(verify(receiver, m, sizeof m, NOW), -EBADMSG);
    ck_assert_int_eq(verify(sender, m, sizeof m, NOW), 0); /* its peer takes it */
    sila_auth_free(l2);
    /* bare bytes */
    memset(m, 0, sizeof m);
    ck_assert_int_eq(verify(receiver, m, sizeof m, NOW), -EBADMSG);
}
END_TEST

START_TEST(replies_answer_their_request)
{
    struct sila_auth *req = new_end(&ka, "rpc", false, SILA_AUTH_REQUEST, 0);
    struct sila_auth *rep = new_end(&ka, "rpc", true, SILA_AUTH_REPLY, 0);
    uint8_t q1[8 + SILA_AUTH_TRAILER], a1[8 + SILA_AUTH_TRAILER];
    uint8_t q2[8 + SILA_AUTH_TRAILER], a2[8 + SILA_AUTH_TRAILER];
    signed_msg(req, q1, 8, NOW);
    ck_assert_int_eq(verify(rep, q1, sizeof q1, NOW), 0);
    signed_msg(rep, a1, 8, NOW);
    signed_msg(req, q2, 8, NOW + 1);
    ck_assert_int_eq(verify(rep, q2, sizeof q2, NOW + 1), 0);
    signed_msg(rep, a2, 8, NOW + 1);
    /* the answer to the first request does not pass for the second's */
    ck_assert_int_eq(verify(req, a1, sizeof a1, NOW + 1), -EBADMSG);
    ck_assert_int_eq(verify(req, a2, sizeof a2, NOW + 1), 0);
    sila_auth_free(req);
    sila_auth_free(rep);
}
END_TEST

START_TEST(forgotten_sessions_are_not_readmitted)
{
    struct sila_auth *r = new_end(&ka, "rpc", true, SILA_AUTH_REPLY, 2);
    struct sila_auth *s[3];
    uint8_t m[3][4 + SILA_AUTH_TRAILER];
    for (int i = 0; i < 3; i++) {
        s[i] = new_end(&ka, "rpc", false, SILA_AUTH_REQUEST, 0);
        signed_msg(s[i], m[i], 4, NOW + (uint64_t)i);
        ck_assert_int_eq(verify(r, m[i], sizeof m[i], NOW + (uint64_t)i), 0);
    }
    /* the third evicted the first while fresh: its message cannot come back */
    ck_assert_int_eq(verify(r, m[0], sizeof m[0], NOW + 3), -EACCES);
    /* a session silent for longer than the window makes room freely */
    struct sila_auth *late = new_end(&ka, "rpc", false, SILA_AUTH_REQUEST, 0);
    uint8_t ml[4 + SILA_AUTH_TRAILER];
    signed_msg(late, ml, 4, NOW + 120000);
    ck_assert_int_eq(verify(r, ml, sizeof ml, NOW + 120000), 0);
    for (int i = 0; i < 3; i++)
        sila_auth_free(s[i]);
    sila_auth_free(late);
    sila_auth_free(r);
}
END_TEST

/* ---- sealed messages ---- */

/* A PAIR end that seals. */
static struct sila_auth *sealer(const struct sila_key *k, const char *channel, bool listener)
{
    return make_end(k, channel, listener, SILA_AUTH_PAIR, 0, true);
}

START_TEST(seal_matches_the_documented_construction)
{
    enum { N = 100 };
    struct sila_auth *snd = sealer(&ka, "control-3", false), *rcv = sealer(&ka, "control-3", true);
    uint8_t buf[N + SILA_AUTH_TRAILER];
    signed_msg(snd, buf, N, NOW);
    const uint8_t *t = buf + N;
    ck_assert_mem_eq(t, "SLE1", 4);
    ck_assert_mem_eq(t + 4, &ka.id, 4);
    uint64_t session, seq, time_ms;
    memcpy(&session, t + 8, 8);
    memcpy(&seq, t + 16, 8);
    memcpy(&time_ms, t + 24, 8);
    ck_assert_uint_eq(seq, 1);
    ck_assert_uint_eq(time_ms, NOW);
    static const uint8_t zeros[16];
    ck_assert_mem_eq(t + 32, zeros, 16);
    /* the session's key: BLAKE2b-256 keyed with the cluster key, of the
     * sealing label with its zero byte and the session */
    static const char label[] = "sila-seal/1/control-3/connect";
    uint8_t in[sizeof label + 8], key[32];
    memcpy(in, label, sizeof label);
    memcpy(in + sizeof label, &session, 8);
    crypto_generichash(key, sizeof key, in, sizeof in, ka.bytes, sizeof ka.bytes);
    /* nonce: session, sequence, clock; additional data: trailer bytes 0..47 */
    uint8_t plain[N];
    ck_assert_int_eq(crypto_aead_xchacha20poly1305_ietf_decrypt_detached(plain, NULL, buf, N,
                                                                         t + 48, t, 48, t + 8, key),
                     0);
    expect_payload(plain, N);
    int same = 0;
    for (size_t i = 0; i < N; i++)
        same += buf[i] == plain[i];
    ck_assert_int_lt(same, 10); /* what travels is not the payload */
    /* the receiving end opens it in place */
    ck_assert_int_eq(verify(rcv, buf, sizeof buf, NOW), 0);
    expect_payload(buf, N);
    sila_auth_free(snd);
    sila_auth_free(rcv);
}
END_TEST

START_TEST(sealed_every_flipped_byte_is_refused)
{
    struct sila_auth *snd = sealer(&ka, "data-3", false), *rcv = sealer(&ka, "data-3", true);
    check_flipped_bytes(snd, rcv);
    sila_auth_free(snd);
    sila_auth_free(rcv);
}
END_TEST

START_TEST(sealed_replays_and_stale_clocks_are_refused)
{
    struct sila_auth *snd = sealer(&ka, "data-3", false), *rcv = sealer(&ka, "data-3", true);
    check_replays(snd, rcv);
    /* a new session beyond the window */
    struct sila_auth *late = sealer(&ka, "data-3", false);
    uint8_t m1[10 + SILA_AUTH_TRAILER];
    signed_msg(late, m1, 10, NOW - 61000);
    ck_assert_int_eq(verify_copy(rcv, m1, sizeof m1, NOW), -EACCES);
    sila_auth_free(late);
    sila_auth_free(snd);
    sila_auth_free(rcv);
}
END_TEST

START_TEST(sealed_another_key_channel_or_side_is_refused)
{
    struct sila_auth *snd = sealer(&ka, "data-3", false), *rcv = sealer(&ka, "data-3", true);
    uint8_t m[10 + SILA_AUTH_TRAILER];
    signed_msg(snd, m, 10, NOW);
    struct sila_auth *other = sealer(&kb, "data-3", true);
    struct sila_err err = {""};
    size_t plen;
    uint8_t c[sizeof m];
    memcpy(c, m, sizeof m);
    ck_assert_int_eq(sila_auth_verify(other, c, sizeof c, NOW, &plen, &err), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err.msg, "another key"));
    sila_auth_free(other);
    /* another key claiming this key's id */
    struct sila_key forged = kb;
    forged.id = ka.id;
    struct sila_auth *f = sealer(&forged, "data-3", false);
    signed_msg(f, m, 10, NOW);
    ck_assert_int_eq(verify_copy(rcv, m, sizeof m, NOW), -EBADMSG);
    sila_auth_free(f);
    /* another channel: the edge into module 4 */
    struct sila_auth *d4 = sealer(&ka, "data-4", false);
    signed_msg(d4, m, 10, NOW);
    ck_assert_int_eq(verify_copy(rcv, m, sizeof m, NOW), -EBADMSG);
    sila_auth_free(d4);
    /* reflected: the listener's own message sent back to it */
    struct sila_auth *l2 = sealer(&ka, "data-3", true);
    signed_msg(l2, m, 10, NOW);
    memcpy(c, m, sizeof m);
    ck_assert_int_eq(sila_auth_verify(rcv, c, sizeof c, NOW, &plen, &err), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err.msg, "does not open"));
    ck_assert_int_eq(verify_copy(snd, m, sizeof m, NOW), 0); /* its peer takes it */
    sila_auth_free(l2);
    sila_auth_free(snd);
    sila_auth_free(rcv);
}
END_TEST

START_TEST(sealed_and_macd_are_not_confused)
{
    struct sila_auth *seal_snd = sealer(&ka, "data-3", false);
    struct sila_auth *seal_rcv = sealer(&ka, "data-3", true);
    struct sila_auth *mac_snd = new_end(&ka, "data-3", false, SILA_AUTH_PAIR, 0);
    struct sila_auth *mac_rcv = new_end(&ka, "data-3", true, SILA_AUTH_PAIR, 0);
    uint8_t sealed[20 + SILA_AUTH_TRAILER], macd[20 + SILA_AUTH_TRAILER], c[20 + SILA_AUTH_TRAILER];
    signed_msg(seal_snd, sealed, 20, NOW);
    signed_msg(mac_snd, macd, 20, NOW);
    struct sila_err err = {""};
    size_t plen;
    /* each end names what it got */
    memcpy(c, macd, sizeof c);
    ck_assert_int_eq(sila_auth_verify(seal_rcv, c, sizeof c, NOW, &plen, &err), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err.msg, "not sealed"));
    memcpy(c, sealed, sizeof c);
    ck_assert_int_eq(sila_auth_verify(mac_rcv, c, sizeof c, NOW, &plen, &err), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err.msg, "sealed (its sender encrypts"));
    /* and a magic rewritten does not make one pass for the other */
    memcpy(c, macd, sizeof c);
    memcpy(c + 20, "SLE1", 4);
    ck_assert_int_eq(verify(seal_rcv, c, sizeof c, NOW), -EBADMSG);
    memcpy(c, sealed, sizeof c);
    memcpy(c + 20, "SLA1", 4);
    ck_assert_int_eq(verify(mac_rcv, c, sizeof c, NOW), -EBADMSG);
    /* both look like trailers to a link that also takes bare messages */
    ck_assert(sila_auth_has_trailer(sealed, sizeof sealed));
    ck_assert(sila_auth_has_trailer(macd, sizeof macd));
    /* the originals still pass where they belong */
    ck_assert_int_eq(verify_copy(seal_rcv, sealed, sizeof sealed, NOW), 0);
    ck_assert_int_eq(verify_copy(mac_rcv, macd, sizeof macd, NOW), 0);
    /* requests and replies are never sealed */
    struct sila_auth_params p = {&ka, "rpc", false, SILA_AUTH_REQUEST, 0, 0, true};
    ck_assert_ptr_null(sila_auth_new(&p));
    sila_auth_free(seal_snd);
    sila_auth_free(seal_rcv);
    sila_auth_free(mac_snd);
    sila_auth_free(mac_rcv);
}
END_TEST

START_TEST(a_sealed_message_sent_again)
{
    struct sila_auth *snd = sealer(&ka, "data-3", false), *rcv = sealer(&ka, "data-3", true);
    uint8_t m1[30 + SILA_AUTH_TRAILER] = {0}, m2[30 + SILA_AUTH_TRAILER] = {0},
                    before[30 + SILA_AUTH_TRAILER];
    signed_msg(snd, m1, 30, NOW);
    /* the last one sealed goes again as it is */
    memcpy(before, m1, sizeof m1);
    ck_assert_int_eq(sila_auth_sign_again(snd, m1, 30, NOW + 1000), 0);
    ck_assert_mem_eq(m1, before, sizeof m1);
    /* one sealed before another is sealed anew (a later sequence) */
    signed_msg(snd, m2, 30, NOW + 1000);
    ck_assert_int_eq(sila_auth_sign_again(snd, m1, 30, NOW + 2000), 0);
    uint64_t seq;
    memcpy(&seq, m1 + 30 + 16, 8);
    ck_assert_uint_eq(seq, 3);
    ck_assert_int_eq(verify_copy(rcv, m2, sizeof m2, NOW + 2000), 0);
    ck_assert_int_eq(verify_copy(rcv, m1, sizeof m1, NOW + 2000), 0);
    /* so is the last one when half a window old */
    memcpy(before, m1, sizeof m1);
    ck_assert_int_eq(sila_auth_sign_again(snd, m1, 30, NOW + 40000), 0);
    ck_assert_int_ne(memcmp(m1 + 30, before + 30, SILA_AUTH_TRAILER), 0);
    ck_assert_int_eq(verify_copy(rcv, m1, sizeof m1, NOW + 40000), 0);
    /* one changed since it was sealed is refused */
    signed_msg(snd, m2, 30, NOW + 41000);
    m1[5] ^= 1;
    ck_assert_int_eq(sila_auth_sign_again(snd, m1, 30, NOW + 41000), -EINVAL);
    /* a new buffer (trailer room zeroed) is sealed */
    uint8_t fresh[30 + SILA_AUTH_TRAILER] = {0};
    for (size_t i = 0; i < 30; i++)
        fresh[i] = (uint8_t)(i * 7 + 3);
    ck_assert_int_eq(sila_auth_sign_again(snd, fresh, 30, NOW + 42000), 0);
    ck_assert_mem_eq(fresh + 30, "SLE1", 4);
    ck_assert_int_eq(verify_copy(rcv, fresh, sizeof fresh, NOW + 42000), 0);
    sila_auth_free(snd);
    sila_auth_free(rcv);
}
END_TEST

/* ---- keyed links ---- */

static struct sila_link a, b;
static char url[600];

static void open_links(const struct sila_key *key_a, const struct sila_key *key_b,
                       enum sila_link_kind kind_a, enum sila_link_kind kind_b, bool bare_ok)
{
    snprintf(url, sizeof url, "ipc://%s", tpath("link"));
    struct sila_err err = {""};
    struct sila_link_auth la = {.key = key_a, .channel = "data-2"};
    struct sila_link_auth lb = {.key = key_b, .channel = "data-2", .accept_bare = bare_ok};
    ck_assert_msg(sila_link_open(&b, kind_b, url, true, 1 << 20, &lb, &err) == 0, "%s", err.msg);
    ck_assert_msg(sila_link_open(&a, kind_a, url, false, 1 << 20, &la, &err) == 0, "%s", err.msg);
}

static void send_bytes(struct sila_link *l, const char *s)
{
    size_t len = strlen(s);
    uint8_t *buf = sila_link_alloc(len);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, s, len);
    ck_assert_int_eq(sila_link_send(l, buf, len, 5000), 0);
}

/* The next message on l is s (exactly). */
static void expect_bytes(struct sila_link *l, const char *s, int timeout_ms)
{
    uint8_t *got;
    size_t n;
    ck_assert_int_eq(sila_link_recv(l, &got, &n, timeout_ms), 0);
    ck_assert_uint_eq(n, strlen(s));
    ck_assert_mem_eq(got, s, n);
    sila_link_release(got);
}

/* A frame of big bytes goes whole from a to b, the trailer in the room
 * behind it. */
static void send_big(size_t big)
{
    uint8_t *buf = sila_link_alloc(big);
    for (size_t i = 0; i < big; i++)
        buf[i] = (uint8_t)(i * 13);
    ck_assert_int_eq(sila_link_send(&a, buf, big, 5000), 0);
    uint8_t *got;
    size_t n;
    ck_assert_int_eq(sila_link_recv(&b, &got, &n, 5000), 0);
    ck_assert_uint_eq(n, big);
    for (size_t i = 0; i < big; i++)
        if (got[i] != (uint8_t)(i * 13))
            ck_abort_msg("byte %zu differs", i);
    sila_link_release(got);
}

START_TEST(keyed_links_carry_messages)
{
    open_links(&ka, &ka, SILA_LINK_PAIR, SILA_LINK_PAIR, false);
    send_bytes(&a, "activations");
    expect_bytes(&b, "activations", 5000);
    ck_assert(sila_link_authenticated(&b));
    send_bytes(&b, "gradients");
    expect_bytes(&a, "gradients", 5000);
    /* large frames go whole, the trailer in the room behind them */
    size_t big = 3u << 20;
    sila_link_close(&a);
    sila_link_close(&b);
    struct sila_err err = {""};
    struct sila_link_auth la = {.key = &ka, .channel = "data-2"};
    snprintf(url, sizeof url, "ipc://%s", tpath("big"));
    ck_assert_msg(sila_link_open(&b, SILA_LINK_PAIR, url, true, big, &la, &err) == 0, "%s",
                  err.msg);
    ck_assert_msg(sila_link_open(&a, SILA_LINK_PAIR, url, false, big, &la, &err) == 0, "%s",
                  err.msg);
    send_big(big);
    sila_link_close(&a);
    sila_link_close(&b);
}
END_TEST

/* Nothing comes on l for 300 ms: it has dropped count messages in all,
 * the last for a reason that says why. */
static void expect_dropped(struct sila_link *l, uint64_t count, const char *why)
{
    uint8_t *got;
    size_t n;
    ck_assert_int_eq(sila_link_recv(l, &got, &n, 300), -ETIMEDOUT);
    ck_assert_uint_eq(l->rejected, count);
    ck_assert_msg(strstr(l->rejection, why), "'%s' does not say '%s'", l->rejection, why);
}

START_TEST(keyed_links_drop_and_count_the_rest)
{
    /* a is bare: whatever it sends, b drops; b's own peer with the key passes */
    open_links(NULL, &ka, SILA_LINK_PAIR, SILA_LINK_PAIR, false);
    send_bytes(&a, "garbage without a MAC, long enough to hold a trailer or two of them..");
    send_bytes(&a, "short");
    expect_dropped(&b, 2, "MAC");
    uint8_t *got;
    size_t n;
    ck_assert_int_eq(sila_link_recv(&b, &got, &n, 0), -EAGAIN);
    struct sila_err e = {""};
    ck_assert(sila_link_rejections(&b, "the upstream edge", 100.0, 10.0, &e));
    ck_assert_ptr_nonnull(strstr(e.msg, "dropped 2 messages on the upstream edge"));
    /* rate-limited: a third is said only after the interval */
    send_bytes(&a, "another one");
    ck_assert_int_eq(sila_link_recv(&b, &got, &n, 300), -ETIMEDOUT);
    ck_assert(!sila_link_rejections(&b, "the upstream edge", 105.0, 10.0, &e));
    ck_assert(sila_link_rejections(&b, "the upstream edge", 111.0, 10.0, &e));
    ck_assert_ptr_nonnull(strstr(e.msg, "dropped 1 message on"));
    ck_assert(!sila_link_rejections(&b, "the upstream edge", 200.0, 10.0, &e));
    sila_link_close(&a);
    /* another key */
    struct sila_err err = {""};
    struct sila_link_auth lb = {.key = &kb, .channel = "data-2"};
    ck_assert_int_eq(sila_link_open(&a, SILA_LINK_PAIR, url, false, 1 << 20, &lb, &err), 0);
    send_bytes(&a, "signed with key b");
    expect_dropped(&b, 4, "another key");
    sila_link_close(&a);
    /* the right key, at last: it passes, whatever came before */
    struct sila_link_auth la = {.key = &ka, .channel = "data-2"};
    ck_assert_int_eq(sila_link_open(&a, SILA_LINK_PAIR, url, false, 1 << 20, &la, &err), 0);
    send_bytes(&a, "authentic");
    expect_bytes(&b, "authentic", 5000);
    ck_assert_uint_eq(b.rejected, 4);
    sila_link_close(&a);
    sila_link_close(&b);
}
END_TEST

/* A keyed sender's bytes, sealed or not, captured by a bare listener, then
 * sent again (twice) to a keyed one: the first passes, the copy does not. */
static void replay_on_a_link(bool seal)
{
    snprintf(url, sizeof url, "ipc://%s", tpath("tap"));
    struct sila_err err = {""};
    struct sila_link_auth la = {.key = &ka, .channel = "data-2", .seal = seal};
    struct sila_link tap, s, r;
    ck_assert_int_eq(sila_link_open(&tap, SILA_LINK_PAIR, url, true, 1 << 20, NULL, &err), 0);
    ck_assert_int_eq(sila_link_open(&s, SILA_LINK_PAIR, url, false, 1 << 20, &la, &err), 0);
    send_bytes(&s, "pause");
    uint8_t *cap;
    size_t n;
    ck_assert_int_eq(sila_link_recv(&tap, &cap, &n, 5000), 0);
    ck_assert_uint_eq(n, 5 + SILA_AUTH_TRAILER);
    sila_link_close(&tap);
    sila_link_close(&s);
    snprintf(url, sizeof url, "ipc://%s", tpath("victim"));
    ck_assert_int_eq(sila_link_open(&r, SILA_LINK_PAIR, url, true, 1 << 20, &la, &err), 0);
    ck_assert_int_eq(sila_link_open(&s, SILA_LINK_PAIR, url, false, 1 << 20, NULL, &err), 0);
    for (int i = 0; i < 2; i++) {
        uint8_t *copy = sila_link_alloc(n);
        memcpy(copy, cap, n);
        ck_assert_int_eq(sila_link_send(&s, copy, n, 5000), 0);
    }
    sila_link_release(cap);
    expect_bytes(&r, "pause", 5000);
    uint8_t *got;
    ck_assert_int_eq(sila_link_recv(&r, &got, &n, 300), -ETIMEDOUT);
    ck_assert_uint_eq(r.rejected, 1);
    ck_assert_ptr_nonnull(strstr(r.rejection, "replayed"));
    sila_link_close(&s);
    sila_link_close(&r);
}

START_TEST(a_replay_on_a_link_is_dropped)
{
    replay_on_a_link(false);
}
END_TEST

START_TEST(a_replay_on_a_sealed_link_is_dropped)
{
    replay_on_a_link(true);
}
END_TEST

START_TEST(reply_links_may_take_bare_requests)
{
    /* a bare client of a keyed server that accepts bare requests: passed
     * on unauthenticated, and answered bare */
    open_links(NULL, &ka, SILA_LINK_REQUEST, SILA_LINK_REPLY, true);
    send_bytes(&a, "status");
    expect_bytes(&b, "status", 5000);
    ck_assert(!sila_link_authenticated(&b));
    send_bytes(&b, "bare answer");
    expect_bytes(&a, "bare answer", 5000);
    sila_link_close(&a);
    /* a keyed client: authenticated, answered signed */
    struct sila_err err = {""};
    struct sila_link_auth la = {.key = &ka, .channel = "data-2"};
    ck_assert_int_eq(sila_link_open(&a, SILA_LINK_REQUEST, url, false, 1 << 20, &la, &err), 0);
    send_bytes(&a, "pause");
    expect_bytes(&b, "pause", 5000);
    ck_assert(sila_link_authenticated(&b));
    send_bytes(&b, "paused");
    expect_bytes(&a, "paused", 5000);
    ck_assert(sila_link_authenticated(&a));
    sila_link_close(&a);
    sila_link_close(&b);
}
END_TEST

START_TEST(keyed_requests_drop_bare_replies)
{
    /* a keyed client of a server without a key: its bare answer is dropped
     * and the wait ends as a timeout, however often the client asks */
    open_links(&ka, NULL, SILA_LINK_REQUEST, SILA_LINK_REPLY, false);
    for (int i = 0; i < 2; i++) {
        send_bytes(&a, "status");
        uint8_t *got;
        size_t n;
        ck_assert_int_eq(sila_link_recv(&b, &got, &n, 5000), 0);
        ck_assert_uint_eq(n, 6 + SILA_AUTH_TRAILER);
        sila_link_release(got);
        send_bytes(&b, "an answer without a MAC, long enough to hold a trailer..........");
        ck_assert_int_eq(sila_link_recv(&a, &got, &n, 300), -ETIMEDOUT);
        ck_assert_uint_eq(a.rejected, (uint64_t)i + 1);
        ck_assert_ptr_nonnull(strstr(a.rejection, "no MAC"));
    }
    sila_link_close(&a);
    sila_link_close(&b);
}
END_TEST

/* ---- sealed links ---- */

/* a (connecting) and b (listening) on the ipc address of name, each with
 * its key (NULL: bare) and sealed or not. */
static void open_pair(const char *name, const struct sila_key *key_a, bool seal_a,
                      const struct sila_key *key_b, bool seal_b, size_t limit)
{
    snprintf(url, sizeof url, "ipc://%s", tpath(name));
    struct sila_err err = {""};
    struct sila_link_auth la = {.key = key_a, .channel = "data-2", .seal = seal_a};
    struct sila_link_auth lb = {.key = key_b, .channel = "data-2", .seal = seal_b};
    ck_assert_msg(sila_link_open(&b, SILA_LINK_PAIR, url, true, limit, &lb, &err) == 0, "%s",
                  err.msg);
    ck_assert_msg(sila_link_open(&a, SILA_LINK_PAIR, url, false, limit, &la, &err) == 0, "%s",
                  err.msg);
}

static void close_pair(void)
{
    sila_link_close(&a);
    sila_link_close(&b);
}

/* What a bare listener receives of a message of floats sent by a keyed
 * sender, sealed or not: whether the floats' bytes show in it. */
static bool floats_show(bool seal)
{
    enum { N = 256 };
    open_pair(seal ? "tap-sealed" : "tap-macd", &ka, seal, NULL, false, 1 << 20);
    float x[N];
    for (int i = 0; i < N; i++)
        x[i] = 0.25f * (float)i - 3.0f;
    uint8_t *buf = sila_link_alloc(sizeof x);
    memcpy(buf, x, sizeof x);
    ck_assert_int_eq(sila_link_send(&a, buf, sizeof x, 5000), 0);
    uint8_t *got;
    size_t n;
    ck_assert_int_eq(sila_link_recv(&b, &got, &n, 5000), 0);
    ck_assert_uint_eq(n, sizeof x + SILA_AUTH_TRAILER);
    bool shows = false; /* any 16 bytes of the floats, anywhere */
    for (size_t i = 0; i + 16 <= sizeof x && !shows; i += 4)
        shows = memmem(got, n, (const uint8_t *)x + i, 16) != NULL;
    sila_link_release(got);
    close_pair();
    return shows;
}

START_TEST(sealed_links_carry_messages_unreadable)
{
    open_pair("sealed", &ka, true, &ka, true, 4u << 20);
    send_bytes(&a, "activations");
    expect_bytes(&b, "activations", 5000);
    ck_assert(sila_link_authenticated(&b));
    send_bytes(&b, "gradients");
    expect_bytes(&a, "gradients", 5000);
    send_big(3u << 20); /* sealed and opened where it lies */
    close_pair();
    /* on the wire: MAC'd floats show, sealed ones do not */
    ck_assert(floats_show(false));
    ck_assert(!floats_show(true));
}
END_TEST

START_TEST(sealed_links_refuse_the_rest)
{
    /* a sealed listener drops MAC'd and bare messages, saying which */
    open_pair("s1", &ka, false, &ka, true, 1 << 20);
    send_bytes(&a, "only authenticated, long enough to hold a trailer or two of them.......");
    expect_dropped(&b, 1, "not sealed");
    sila_link_close(&a);
    struct sila_err err = {""};
    ck_assert_int_eq(sila_link_open(&a, SILA_LINK_PAIR, url, false, 1 << 20, NULL, &err), 0);
    send_bytes(&a, "bare, long enough to hold a trailer or two of them......................");
    expect_dropped(&b, 2, "no MAC");
    close_pair();
    /* a MAC'd listener drops sealed messages */
    open_pair("s2", &ka, true, &ka, false, 1 << 20);
    send_bytes(&a, "sealed");
    expect_dropped(&b, 1, "sealed (its sender encrypts");
    close_pair();
    /* sealing needs a key and a pair */
    struct sila_link_auth nokey = {.channel = "data-2", .seal = true};
    ck_assert_int_eq(sila_link_open(&a, SILA_LINK_PAIR, url, false, 1 << 20, &nokey, &err),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "sealed"));
    struct sila_link_auth req = {.key = &ka, .channel = "rpc", .seal = true};
    ck_assert_int_eq(sila_link_open(&a, SILA_LINK_REQUEST, url, false, 1 << 20, &req, &err),
                     -EINVAL);
}
END_TEST

START_TEST(a_sealed_send_tried_again)
{
    /* nobody listens yet: the send fails, the buffer sealed; sent again
     * once a peer is there, it arrives as it was */
    snprintf(url, sizeof url, "ipc://%s", tpath("later"));
    struct sila_err err = {""};
    struct sila_link_auth la = {.key = &ka, .channel = "data-2", .seal = true};
    ck_assert_int_eq(sila_link_open(&a, SILA_LINK_PAIR, url, false, 1 << 20, &la, &err), 0);
    static const char msg[] = "a batch of activations";
    uint8_t *buf = sila_link_alloc(sizeof msg);
    memcpy(buf, msg, sizeof msg);
    ck_assert_int_eq(sila_link_send(&a, buf, sizeof msg, 0), -EAGAIN);
    ck_assert_int_ne(memcmp(buf, msg, sizeof msg), 0); /* sealed in place */
    ck_assert_int_eq(sila_link_send(&a, buf, sizeof msg, 0), -EAGAIN);
    ck_assert_int_eq(sila_link_open(&b, SILA_LINK_PAIR, url, true, 1 << 20, &la, &err), 0);
    ck_assert_int_eq(sila_link_send(&a, buf, sizeof msg, 5000), 0);
    uint8_t *got;
    size_t n;
    ck_assert_int_eq(sila_link_recv(&b, &got, &n, 5000), 0);
    ck_assert_uint_eq(n, sizeof msg);
    ck_assert_mem_eq(got, msg, n);
    sila_link_release(got);
    /* the next message follows */
    send_bytes(&a, "next");
    expect_bytes(&b, "next", 5000);
    close_pair();
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("auth");
    /* one test case with files: testdir's root fixture runs once a case */
    TCase *keys = tcase_create("keys and links");
    testdir_add_fixtures(keys);
    tcase_add_checked_fixture(keys, trailer_setup, trailer_teardown);
    tcase_set_timeout(keys, 30);
    tcase_add_test(keys, keygen_private_and_exclusive);
    tcase_add_test(keys, keygen_umask_cannot_lock_out_the_owner);
    tcase_add_test(keys, load_refuses_shared_files);
    tcase_add_test(keys, load_trusts_systemd_credentials);
    tcase_add_test(keys, load_refuses_bad_contents);
    tcase_add_test(keys, keyed_links_carry_messages);
    tcase_add_test(keys, keyed_links_drop_and_count_the_rest);
    tcase_add_test(keys, a_replay_on_a_link_is_dropped);
    tcase_add_test(keys, a_replay_on_a_sealed_link_is_dropped);
    tcase_add_test(keys, sealed_links_carry_messages_unreadable);
    tcase_add_test(keys, sealed_links_refuse_the_rest);
    tcase_add_test(keys, a_sealed_send_tried_again);
    tcase_add_test(keys, reply_links_may_take_bare_requests);
    tcase_add_test(keys, keyed_requests_drop_bare_replies);
    suite_add_tcase(s, keys);
    TCase *tr = tcase_create("trailer");
    tcase_add_checked_fixture(tr, trailer_setup, trailer_teardown);
    tcase_add_test(tr, mac_matches_crypto_auth_of_the_documented_layout);
    tcase_add_test(tr, every_flipped_byte_is_refused);
    tcase_add_test(tr, replays_are_refused);
    tcase_add_test(tr, stale_clocks_are_refused);
    tcase_add_test(tr, another_key_channel_or_side_is_refused);
    tcase_add_test(tr, replies_answer_their_request);
    tcase_add_test(tr, forgotten_sessions_are_not_readmitted);
    tcase_add_test(tr, seal_matches_the_documented_construction);
    tcase_add_test(tr, sealed_every_flipped_byte_is_refused);
    tcase_add_test(tr, sealed_replays_and_stale_clocks_are_refused);
    tcase_add_test(tr, sealed_another_key_channel_or_side_is_refused);
    tcase_add_test(tr, sealed_and_macd_are_not_confused);
    tcase_add_test(tr, a_sealed_message_sent_again);
    suite_add_tcase(s, tr);
    return s;
}
