/* Sealed files (see sealed.h). */
#include "sealed.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "path.h"

#define HEADER_BYTES SILA_SEALED_HEADER
#define MAX_FILE_BYTES ((uint64_t)1 << 32) /* 4 GiB: far above any model sila builds */

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int sila_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* fsync of the directory holding path, so that a rename into it is durable. */
static void sync_parent(const char *path)
{
    char dir[SILA_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int sila_write_atomic(const char *path, const uint8_t *buf, size_t len, struct sila_err *err)
{
    char tmp[SILA_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return sila_err_set(err, -ENAMETOOLONG, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return sila_err_set(err, -errno, "%s: cannot create: %s", tmp, strerror(errno));
    int r = sila_write_all(fd, buf, len);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r) {
        unlink(tmp);
        return sila_err_set(err, r, "%s: cannot write: %s", path, strerror(-r));
    }
    sync_parent(path);
    return 0;
}

int sila_sealed_write(const char *path, const char magic[8], uint32_t format, uint8_t *buf,
                      size_t len, struct sila_err *err)
{
    memcpy(buf, magic, 8);
    put_le32(buf + 8, format);
    put_le32(buf + 12, (uint32_t)crc32(0L, buf + HEADER_BYTES, (uInt)len));
    put_le64(buf + 16, len);
    return sila_write_atomic(path, buf, HEADER_BYTES + len, err);
}

/* Reads the whole file (at most MAX_FILE_BYTES) into a malloc'ed buffer. */
static int read_file(const char *path, uint8_t **ret_buf, size_t *ret_len, struct sila_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sila_err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int r = 0;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) < 0) {
        r = sila_err_set(err, -errno, "%s: cannot stat: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > MAX_FILE_BYTES) {
        r = sila_err_set(err, -EINVAL, "%s: not a regular file of at most 4 GiB", path);
        goto out;
    }
    size_t len = (size_t)st.st_size, got = 0;
    buf = malloc(len ? len : 1);
    if (!buf) {
        r = sila_err_set(err, -ENOMEM, "%s: out of memory", path);
        goto out;
    }
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = sila_err_set(err, n < 0 ? -errno : -EINVAL, "%s: read failed", path);
            goto out;
        }
        got += (size_t)n;
    }
    *ret_buf = buf;
    *ret_len = len;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return r;
}

static int check_header(const char *path, const uint8_t *buf, size_t len, const char magic[8],
                        uint32_t format, const char *what, struct sila_err *err)
{
    size_t cmp = len < 8 ? len : 8;
    if (len == 0 || memcmp(buf, magic, cmp) != 0)
        return sila_err_set(err, -EINVAL, "%s: not a sila %s file (bad magic)", path, what);
    if (len < HEADER_BYTES)
        return sila_err_set(err, -EINVAL,
                            "%s: truncated: %zu bytes, shorter than the %d-byte "
                            "header",
                            path, len, HEADER_BYTES);
    uint32_t version = (uint32_t)get_le(buf + 8, 4);
    if (version != format)
        return sila_err_set(err, -EINVAL, "%s: %s format version %u, this sila reads %u", path,
                            what, version, format);
    uint64_t payload = get_le(buf + 16, 8);
    if (payload != len - HEADER_BYTES)
        return sila_err_set(err, -EINVAL,
                            "%s: truncated or padded: header says %llu payload bytes, file has "
                            "%zu",
                            path, (unsigned long long)payload, len - HEADER_BYTES);
    uint32_t want = (uint32_t)get_le(buf + 12, 4);
    uint32_t got = (uint32_t)crc32(0L, buf + HEADER_BYTES, (uInt)payload);
    if (want != got)
        return sila_err_set(err, -EINVAL, "%s: checksum mismatch (corrupted file)", path);
    return 0;
}

int sila_sealed_read(const char *path, const char magic[8], uint32_t format, const char *what,
                     uint8_t **ret_buf, size_t *ret_len, struct sila_err *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int r = read_file(path, &buf, &len, err);
    if (r)
        return r;
    if ((r = check_header(path, buf, len, magic, format, what, err))) {
        free(buf);
        return r;
    }
    *ret_buf = buf;
    *ret_len = len - HEADER_BYTES;
    return 0;
}
