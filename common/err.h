/* Error reports of the common library.
 *
 * common/ never logs. A function that can fail returns 0 or a negative errno
 * and, when handed a non-NULL `struct sila_err *`, writes one sentence there
 * naming what failed (file, line, key, expected and actual shape). The caller
 * decides where the sentence goes. */
#ifndef SILA_ERR_H
#define SILA_ERR_H

struct sila_err {
    char msg[512];
};

/* Formats the message into err (truncated to fit); err may be NULL, and
 * the arguments may include err->msg (a message wrapping the one before).
 * Returns `code` so that `return sila_err_set(err, -EINVAL, "...")` reads
 * as one statement. */
int sila_err_set(struct sila_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
