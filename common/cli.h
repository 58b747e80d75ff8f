/* Command-line helpers shared by the three programs. */
#ifndef SILA_CLI_H
#define SILA_CLI_H

/* Parses s as a whole decimal integer in lo..hi into *ret. On failure
 * prints "PROG: OPT needs an integer in LO..HI, got 'S'" to stderr and
 * returns -1; else 0. */
int sila_cli_long(const char *prog, const char *opt, const char *s, long lo, long hi, long *ret);

#endif
