/* A token bucket: events at most `rate` a second on average, in bursts of
 * at most `burst`. Time is the caller's (seconds on one clock, such as
 * sila_clock_s), so a test can drive it; nothing allocates or fails. */
#ifndef SILA_BUCKET_H
#define SILA_BUCKET_H

#include <stdbool.h>

struct sila_bucket {
    double rate;   /* tokens added a second; 0: no limit */
    double burst;  /* tokens held at most (at least 1) */
    double tokens; /* held at `at` */
    double at;     /* when tokens was last brought up to date */
};

/* A full bucket of burst tokens (at least 1) gaining rate a second from
 * now; rate <= 0: every take succeeds. */
void sila_bucket_init(struct sila_bucket *b, double rate, double burst, double now);
/* Takes one token at now and returns true, or returns false when the
 * bucket holds less than one (and takes nothing). */
bool sila_bucket_take(struct sila_bucket *b, double now);
/* Seconds from now until the bucket holds a token: 0 when it does. */
double sila_bucket_wait(const struct sila_bucket *b, double now);

#endif
