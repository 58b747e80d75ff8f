/* Cluster keys and message trailers (see auth.h). libsodium's crypto_auth
 * is HMAC-SHA-512-256; its multi-part form (crypto_auth_hmacsha512256_*)
 * MACs the label, payload and trailer fields where they lie, without
 * copying a frame of megabytes. Sealing uses the detached form of
 * XChaCha20-Poly1305, which encrypts and decrypts a frame where it lies
 * and puts the tag in the trailer. */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sealed.h"

_Static_assert(crypto_auth_BYTES == 32 && crypto_auth_KEYBYTES == SILA_KEY_BYTES,
               "crypto_auth is HMAC-SHA-512-256 with 32-byte keys and MACs");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == 24 &&
                   crypto_aead_xchacha20poly1305_ietf_ABYTES == 16 &&
                   crypto_aead_xchacha20poly1305_ietf_KEYBYTES == 32,
               "the sealed trailer holds a 24-byte nonce and a 16-byte tag");

static const uint8_t MAGIC[4] = {'S', 'L', 'A', '1'};
static const uint8_t SEAL_MAGIC[4] = {'S', 'L', 'E', '1'};
static const char KEY_PREFIX[] = "sila-key-1 ";
#define KEY_PREFIX_LEN (sizeof KEY_PREFIX - 1)
#define KEY_LINE (KEY_PREFIX_LEN + 2 * SILA_KEY_BYTES) /* without the newline */

/* Offsets in the trailer. */
#define T_KEYID 4
#define T_SESSION 8
#define T_SEQ 16
#define T_TIME 24
#define T_MAC 32
#define T_TAG 48 /* sealed: bytes T_MAC..T_TAG are zero, the nonce is T_SESSION..T_MAC */
#define CHANNEL_MAX 64
#define LABEL_MAX 96

struct session {
    uint64_t id, seq; /* the last sequence taken */
    uint64_t seen_ms; /* receiver's clock when it was taken */
    uint64_t time_ms; /* sender's clock in it */
    bool used;
};

struct sila_auth {
    struct sila_key key;
    enum sila_auth_role role;
    uint32_t window_ms;
    bool seal;
    /* HMAC states keyed and fed the label of each side, copied per message */
    crypto_auth_hmacsha512256_state send0, recv0;
    /* sealing: this end's session key; the other side's sealing label */
    uint8_t send_key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    char recv_label[LABEL_MAX];
    size_t recv_label_len;
    uint64_t session, seq; /* ours, as sender */
    /* the binding of the next MAC: the request a reply answers (REPLY:
     * the last request verified; REQUEST: the last request sent) */
    uint64_t bind_session, bind_seq;
    uint64_t watermark; /* newest sender clock of a session forgotten while fresh */
    int nsessions;
    struct session sessions[]; /* nsessions */
};

static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, sizeof v); /* little-endian hosts only (frame.c) */
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

uint64_t sila_auth_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sila_key_id_text(uint32_t id, char out[9])
{
    /* the bytes in the order the trailer carries them */
    snprintf(out, 9, "%02x%02x%02x%02x", id & 0xff, id >> 8 & 0xff, id >> 16 & 0xff, id >> 24);
}

static void key_set_id(struct sila_key *k)
{
    uint8_t h[crypto_generichash_BYTES_MIN];
    static const char what[] = "sila key id";
    crypto_generichash(h, sizeof h, (const uint8_t *)what, sizeof what - 1, k->bytes,
                       sizeof k->bytes);
    memcpy(&k->id, h, sizeof k->id);
}

void sila_key_wipe(struct sila_key *k)
{
    sodium_memzero(k, sizeof *k);
}

int sila_key_generate(const char *path, struct sila_key *ret_key, struct sila_err *err)
{
    if (sodium_init() < 0)
        return sila_err_set(err, -EIO, "libsodium cannot start");
    struct sila_key k;
    randombytes_buf(k.bytes, sizeof k.bytes);
    key_set_id(&k);
    char line[KEY_LINE + 2];
    memcpy(line, KEY_PREFIX, KEY_PREFIX_LEN);
    sodium_bin2hex(line + KEY_PREFIX_LEN, 2 * SILA_KEY_BYTES + 1, k.bytes, sizeof k.bytes);
    line[KEY_LINE] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        sodium_memzero(line, sizeof line);
        sila_key_wipe(&k);
        if (e == EEXIST)
            return sila_err_set(err, -EEXIST,
                                "%s exists: a key is never overwritten (remove it first to "
                                "replace it, then give every machine the new one)",
                                path);
        return sila_err_set(err, -e, "%s: cannot create: %s", path, strerror(e));
    }
    /* the umask may have taken the owner's bits too */
    int r = fchmod(fd, 0600) < 0 ? -errno : sila_write_all(fd, line, KEY_LINE + 1);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    sodium_memzero(line, sizeof line);
    if (r) {
        unlink(path);
        sila_key_wipe(&k);
        return sila_err_set(err, r, "%s: cannot write: %s", path, strerror(-r));
    }
    if (ret_key)
        *ret_key = k;
    sila_key_wipe(&k);
    return 0;
}

/* Whether path lies in systemd's private credentials directory. */
static bool in_credentials(const char *path)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    size_t n = dir ? strlen(dir) : 0;
    return n && strncmp(path, dir, n) == 0 && path[n] == '/' && !strstr(path + n, "/../");
}

/* The key in the line of a file's len bytes. */
static int parse_key(const char *path, const char *buf, size_t len, struct sila_key *k,
                     struct sila_err *err)
{
    size_t bin_len = 0;
    const char *end = NULL;
    if (len == KEY_LINE + 1 && buf[KEY_LINE] == '\n')
        len--;
    if (len != KEY_LINE || memcmp(buf, KEY_PREFIX, KEY_PREFIX_LEN) != 0 ||
        sodium_hex2bin(k->bytes, sizeof k->bytes, buf + KEY_PREFIX_LEN, 2 * SILA_KEY_BYTES, NULL,
                       &bin_len, &end) != 0 ||
        bin_len != SILA_KEY_BYTES || end != buf + KEY_LINE)
        return sila_err_set(err, -EINVAL,
                            "%s: not a sila key file (expected one line, '%s' and %d hex "
                            "digits, as silactl keygen writes)",
                            path, KEY_PREFIX, 2 * SILA_KEY_BYTES);
    key_set_id(k);
    return 0;
}

int sila_key_load(const char *path, struct sila_key *ret_key, struct sila_err *err)
{
    if (sodium_init() < 0)
        return sila_err_set(err, -EIO, "libsodium cannot start");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return sila_err_set(err, -errno, "key file %s: cannot open: %s", path, strerror(errno));
    struct stat st;
    char buf[KEY_LINE + 2];
    ssize_t n = 0;
    int r = 0;
    if (fstat(fd, &st) < 0)
        r = sila_err_set(err, -errno, "key file %s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        r = sila_err_set(err, -EINVAL, "key file %s: not a regular file", path);
    else if ((st.st_mode & 077) && !in_credentials(path))
        r = sila_err_set(err, -EPERM,
                         "key file %s: mode %04o lets its group or others read or change it; "
                         "a key must be private to its owner (chmod 600 %s)",
                         path, (unsigned)(st.st_mode & 07777), path);
    else if (st.st_size != (off_t)KEY_LINE && st.st_size != (off_t)KEY_LINE + 1)
        r = sila_err_set(err, -EINVAL,
                         "key file %s: %lld bytes, not a sila key file (silactl keygen writes "
                         "%zu: '%s' and %d hex digits)",
                         path, (long long)st.st_size, KEY_LINE + 1, KEY_PREFIX, 2 * SILA_KEY_BYTES);
    else if ((n = read(fd, buf, sizeof buf)) < 0)
        r = sila_err_set(err, -errno, "key file %s: cannot read: %s", path, strerror(errno));
    close(fd);
    struct sila_key k;
    if (r == 0 && (r = parse_key(path, buf, (size_t)n, &k, err)) == 0)
        *ret_key = k;
    sodium_memzero(buf, sizeof buf);
    sila_key_wipe(&k);
    return r;
}

size_t sila_auth_label(const char *channel, bool from_listener, bool sealed, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/1/%s/%s", sealed ? "sila-seal" : "sila", channel,
                     from_listener ? "bind" : "connect");
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n + 1;
}

/* The key of a sender's session: BLAKE2b-256 keyed with the cluster key,
 * of its side's sealing label (n bytes with the zero byte) and the
 * session. */
static void session_key(const struct sila_key *k, const char *label, size_t n, uint64_t session,
                        uint8_t out[crypto_aead_xchacha20poly1305_ietf_KEYBYTES])
{
    uint8_t in[LABEL_MAX + 8];
    memcpy(in, label, n);
    put64(in + n, session);
    crypto_generichash(out, crypto_aead_xchacha20poly1305_ietf_KEYBYTES, in, n + 8, k->bytes,
                       sizeof k->bytes);
}

struct sila_auth *sila_auth_new(const struct sila_auth_params *p)
{
    if (sodium_init() < 0 || strlen(p->channel) > CHANNEL_MAX ||
        (p->seal && p->role != SILA_AUTH_PAIR))
        return NULL;
    int ns = p->sessions > 0 ? p->sessions : p->role == SILA_AUTH_REPLY ? 1024 : 16;
    struct sila_auth *a = calloc(1, sizeof *a + sizeof(struct session) * (size_t)ns);
    if (!a)
        return NULL;
    a->key = *p->key;
    a->role = p->role;
    a->window_ms = p->window_ms ? p->window_ms : SILA_AUTH_WINDOW_MS;
    a->nsessions = ns;
    randombytes_buf(&a->session, sizeof a->session);
    char label[LABEL_MAX];
    size_t n = sila_auth_label(p->channel, p->listener, false, label, sizeof label);
    crypto_auth_hmacsha512256_init(&a->send0, a->key.bytes, sizeof a->key.bytes);
    crypto_auth_hmacsha512256_update(&a->send0, (const uint8_t *)label, n);
    n = sila_auth_label(p->channel, !p->listener, false, label, sizeof label);
    crypto_auth_hmacsha512256_init(&a->recv0, a->key.bytes, sizeof a->key.bytes);
    crypto_auth_hmacsha512256_update(&a->recv0, (const uint8_t *)label, n);
    if ((a->seal = p->seal)) {
        n = sila_auth_label(p->channel, p->listener, true, label, sizeof label);
        session_key(&a->key, label, n, a->session, a->send_key);
        a->recv_label_len =
            sila_auth_label(p->channel, !p->listener, true, a->recv_label, sizeof a->recv_label);
    }
    return a;
}

void sila_auth_free(struct sila_auth *a)
{
    if (!a)
        return;
    sodium_memzero(a, sizeof *a);
    free(a);
}

/* The MAC of len payload bytes and the trailer's fields at buf + len, from
 * a state fed the label, with the binding of a reply. */
static void mac_of(const crypto_auth_hmacsha512256_state *st0, const uint8_t *buf, size_t len,
                   uint64_t bind_session, uint64_t bind_seq, uint8_t mac[32])
{
    crypto_auth_hmacsha512256_state st = *st0;
    uint8_t bind[16];
    put64(bind, bind_session);
    put64(bind + 8, bind_seq);
    crypto_auth_hmacsha512256_update(&st, buf, len + T_MAC);
    crypto_auth_hmacsha512256_update(&st, bind, sizeof bind);
    crypto_auth_hmacsha512256_final(&st, mac);
    sodium_memzero(&st, sizeof st);
}

/* Encrypts the len bytes at buf in place with this end's session key and
 * puts the tag in the trailer behind them, whose fields up to T_MAC are
 * written. */
static void seal(struct sila_auth *a, uint8_t *buf, size_t len)
{
    uint8_t *t = buf + len;
    memset(t + T_MAC, 0, T_TAG - T_MAC);
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(buf, t + T_TAG, NULL, buf, len, t, T_TAG,
                                                        NULL, t + T_SESSION, a->send_key);
}

/* Decrypts a sealed message of len payload bytes at buf in place, its
 * trailer behind them, with key; whether its tag verified (else buf's len
 * bytes are undefined). */
static bool unseal(uint8_t *buf, size_t len, const uint8_t *key)
{
    const uint8_t *t = buf + len;
    return crypto_aead_xchacha20poly1305_ietf_decrypt_detached(buf, NULL, buf, len, t + T_TAG, t,
                                                               T_TAG, t + T_SESSION, key) == 0;
}

void sila_auth_sign(struct sila_auth *a, uint8_t *buf, size_t len, uint64_t now_ms)
{
    uint8_t *t = buf + len;
    memcpy(t, a->seal ? SEAL_MAGIC : MAGIC, sizeof MAGIC);
    memcpy(t + T_KEYID, &a->key.id, sizeof a->key.id);
    put64(t + T_SESSION, a->session);
    put64(t + T_SEQ, ++a->seq);
    put64(t + T_TIME, now_ms);
    if (a->seal) {
        seal(a, buf, len);
        return;
    }
    bool reply = a->role == SILA_AUTH_REPLY;
    mac_of(&a->send0, buf, len, reply ? a->bind_session : 0, reply ? a->bind_seq : 0, t + T_MAC);
    if (a->role == SILA_AUTH_REQUEST) {
        a->bind_session = a->session;
        a->bind_seq = a->seq;
    }
}

int sila_auth_sign_again(struct sila_auth *a, uint8_t *buf, size_t len, uint64_t now_ms)
{
    const uint8_t *t = buf + len;
    if (a->seal && memcmp(t, SEAL_MAGIC, sizeof SEAL_MAGIC) == 0 &&
        get64(t + T_SESSION) == a->session) { /* sealed here, not sent */
        uint64_t sealed_ms = get64(t + T_TIME);
        if (get64(t + T_SEQ) == a->seq && now_ms >= sealed_ms &&
            now_ms - sealed_ms < a->window_ms / 2)
            return 0;
        /* its sequence number is behind, or its clock may make it stale
         * to a receiver that does not know the session yet */
        if (!unseal(buf, len, a->send_key))
            return -EINVAL;
    }
    sila_auth_sign(a, buf, len, now_ms);
    return 0;
}

bool sila_auth_has_trailer(const uint8_t *buf, size_t len)
{
    if (len < SILA_AUTH_TRAILER)
        return false;
    const uint8_t *t = buf + len - SILA_AUTH_TRAILER;
    return memcmp(t, MAGIC, sizeof MAGIC) == 0 || memcmp(t, SEAL_MAGIC, sizeof SEAL_MAGIC) == 0;
}

static struct session *find_session(struct sila_auth *a, uint64_t id)
{
    for (int i = 0; i < a->nsessions; i++)
        if (a->sessions[i].used && a->sessions[i].id == id)
            return &a->sessions[i];
    return NULL;
}

/* A free slot: an unused one, else one silent for longer than the window
 * (its messages are stale now), else the least recently heard, whose
 * sender clock then raises the watermark: a session forgotten while
 * fresh is never admitted again. */
static struct session *free_session(struct sila_auth *a, uint64_t now_ms)
{
    struct session *oldest = &a->sessions[0];
    for (int i = 0; i < a->nsessions; i++) {
        struct session *s = &a->sessions[i];
        if (!s->used || s->seen_ms + a->window_ms < now_ms)
            return s;
        if (s->seen_ms < oldest->seen_ms)
            oldest = s;
    }
    if (oldest->time_ms > a->watermark)
        a->watermark = oldest->time_ms;
    return oldest;
}

/* The clock and sequence rules for a message whose MAC verified. */
static int check_fresh(struct sila_auth *a, uint64_t session, uint64_t seq, uint64_t t,
                       uint64_t now_ms, struct sila_err *err)
{
    struct session *s = find_session(a, session);
    if (s) {
        if (seq <= s->seq)
            return sila_err_set(
                err, -EACCES, "replayed: sequence %llu of session %016llx, after %llu",
                (unsigned long long)seq, (unsigned long long)session, (unsigned long long)s->seq);
    } else {
        int64_t skew = (int64_t)(t - now_ms);
        if (skew > (int64_t)a->window_ms || -skew > (int64_t)a->window_ms)
            return sila_err_set(err, -EACCES,
                                "stale: its clock is %.1f s %s this host's, beyond the %.0f s "
                                "window (a replay, or clocks out of sync)",
                                (skew < 0 ? -skew : skew) / 1000.0,
                                skew < 0 ? "behind" : "ahead of", a->window_ms / 1000.0);
        if (t <= a->watermark)
            return sila_err_set(err, -EACCES, "replayed: a session older than those forgotten");
        s = free_session(a, now_ms);
        *s = (struct session){.id = session, .used = true};
    }
    s->seq = seq;
    s->seen_ms = now_ms;
    s->time_ms = t;
    return 0;
}

/* The trailer's magic and key id, for what the end takes. */
static int check_form(const struct sila_auth *a, const uint8_t *t, struct sila_err *err)
{
    bool sealed = memcmp(t, SEAL_MAGIC, sizeof SEAL_MAGIC) == 0;
    if (!sealed && memcmp(t, MAGIC, sizeof MAGIC) != 0)
        return sila_err_set(err, -EBADMSG, "no MAC (a sender without a key?)");
    if (sealed && !a->seal)
        return sila_err_set(err, -EBADMSG,
                            "sealed (its sender encrypts, --encrypt) on a link that only "
                            "authenticates");
    if (!sealed && a->seal)
        return sila_err_set(err, -EBADMSG,
                            "only authenticated, not sealed (its sender does not encrypt), on a "
                            "sealed link");
    uint32_t id;
    memcpy(&id, t + T_KEYID, sizeof id);
    if (id != a->key.id) {
        char theirs[9], ours[9];
        sila_key_id_text(id, theirs);
        sila_key_id_text(a->key.id, ours);
        return sila_err_set(err, -EBADMSG, "signed with another key (id %s; this one's is %s)",
                            theirs, ours);
    }
    return 0;
}

/* Opens a sealed message of plen payload bytes (decrypting them in place)
 * with the key of its sender's session. */
static int open_sealed(const struct sila_auth *a, uint8_t *buf, size_t plen, struct sila_err *err)
{
    uint8_t key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    session_key(&a->key, a->recv_label, a->recv_label_len, get64(buf + plen + T_SESSION), key);
    bool ok = unseal(buf, plen, key);
    sodium_memzero(key, sizeof key);
    return ok ? 0
              : sila_err_set(err, -EBADMSG,
                             "it does not open (altered or forged, or sealed for another link "
                             "or by this end)");
}

static int check_mac(const struct sila_auth *a, const uint8_t *buf, size_t plen,
                     struct sila_err *err)
{
    bool reply = a->role == SILA_AUTH_REQUEST;
    uint8_t mac[32];
    mac_of(&a->recv0, buf, plen, reply ? a->bind_session : 0, reply ? a->bind_seq : 0, mac);
    if (crypto_verify_32(mac, buf + plen + T_MAC) != 0)
        return sila_err_set(err, -EBADMSG, "its MAC does not verify (altered or forged%s)",
                            reply ? ", or not the answer to the last request" : "");
    return 0;
}

int sila_auth_verify(struct sila_auth *a, uint8_t *buf, size_t len, uint64_t now_ms,
                     size_t *ret_len, struct sila_err *err)
{
    if (len < SILA_AUTH_TRAILER)
        return sila_err_set(err, -EBADMSG, "%zu bytes, too short for a MAC (no key?)", len);
    size_t plen = len - SILA_AUTH_TRAILER;
    const uint8_t *t = buf + plen;
    int r = check_form(a, t, err);
    if (r == 0)
        r = a->seal ? open_sealed(a, buf, plen, err) : check_mac(a, buf, plen, err);
    if (r)
        return r;
    uint64_t session = get64(t + T_SESSION), seq = get64(t + T_SEQ);
    r = check_fresh(a, session, seq, get64(t + T_TIME), now_ms, err);
    if (r)
        return r;
    if (a->role == SILA_AUTH_REPLY) {
        a->bind_session = session;
        a->bind_seq = seq;
    }
    *ret_len = plen;
    return 0;
}
