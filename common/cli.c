/* Command-line helpers (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int sila_cli_long(const char *prog, const char *opt, const char *s, long lo, long hi, long *ret)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "%s: %s needs an integer in %ld..%ld, got '%s'\n", prog, opt, lo, hi, s);
        return -1;
    }
    *ret = v;
    return 0;
}
