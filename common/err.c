/* Error message formatting for common/ (see err.h). */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int sila_err_set(struct sila_err *err, int code, const char *fmt, ...)
{
    if (err) {
        /* formatted apart first: the arguments may include err->msg itself */
        char msg[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        memcpy(err->msg, msg, sizeof msg);
    }
    return code;
}
