/* The one clock sila measures intervals with. */
#ifndef SILA_CLOCK_H
#define SILA_CLOCK_H

/* Seconds on the monotonic clock (CLOCK_MONOTONIC), from an unspecified
 * start: differences are durations, unaffected by changes of the time of
 * day. Never fails. */
double sila_clock_s(void);

#endif
