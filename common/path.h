/* The lengths of the file system paths sila keeps, in one place.
 * Buffers that hold a path given by a user or built from one are
 * SILA_PATH_MAX bytes; a longer path is refused or, in a message, cut. */
#ifndef SILA_PATH_H
#define SILA_PATH_H

#include <errno.h>
#include <stdio.h>

#include "err.h"

/* Bytes of a path with its NUL: Linux's PATH_MAX. */
#define SILA_PATH_MAX 4096

/* Bytes of a job's data_dir with its NUL: at most 255 characters
 * (docs/jobs.md), which a model file keeps as its dataset_path. */
#define SILA_DATA_DIR_MAX 256

/* Writes "dir/name" into out (SILA_PATH_MAX bytes). Returns 0, or
 * -ENAMETOOLONG with err (may be NULL) naming the path that does not fit. */
static inline int sila_path_join(char *out, const char *dir, const char *name, struct sila_err *err)
{
    int n = snprintf(out, SILA_PATH_MAX, "%s/%s", dir, name);
    if (n >= 0 && n < SILA_PATH_MAX)
        return 0;
    return sila_err_set(err, -ENAMETOOLONG, "%s/%s: path too long", dir, name);
}

#endif
