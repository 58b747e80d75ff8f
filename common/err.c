/* Error message formatting for common/ (see err.h). */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

int sila_err_set(struct sila_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}
