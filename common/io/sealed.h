/* Sealed files: what sila writes to disk for itself (model files,
 * checkpoints). A 24-byte header (8-byte magic, format version as LE
 * uint32, CRC-32 (zlib) of the payload as LE uint32, payload length as LE
 * uint64) then the payload; written to <path>.tmp.<pid>, fsynced, renamed
 * and the directory fsynced, so a reader sees the old file or the whole new
 * one, never a part. */
#ifndef SILA_SEALED_H
#define SILA_SEALED_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SILA_SEALED_HEADER 24

/* Writes the len payload bytes at buf + SILA_SEALED_HEADER, filling the
 * header in buf's first bytes. Errors: the failed system call's -errno, the
 * message naming the path. */
int sila_sealed_write(const char *path, const char magic[8], uint32_t format, uint8_t *buf,
                      size_t len, struct sila_err *err);

/* Writes len bytes of buf to path the same way (temporary name, fsync,
 * rename, directory fsync), without a header. */
int sila_write_atomic(const char *path, const uint8_t *buf, size_t len, struct sila_err *err);

/* Writes all len bytes of buf to fd, through short writes and EINTR.
 * Errors: write's -errno. */
int sila_write_all(int fd, const void *buf, size_t len);

/* Reads path (a regular file of at most 4 GiB) and checks magic, format,
 * length and checksum; `what` names the kind in messages ("model").
 * *ret_buf (owned by the caller) holds the file, its payload of *ret_len
 * bytes at + SILA_SEALED_HEADER. Errors: -ENOENT, ... from opening, -EINVAL
 * for content. */
int sila_sealed_read(const char *path, const char magic[8], uint32_t format, const char *what,
                     uint8_t **ret_buf, size_t *ret_len, struct sila_err *err);

#endif
