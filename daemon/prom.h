/* Prometheus' text exposition format (version 0.0.4) of a run's Status
 * and Workers replies: what `silactl metrics --prometheus` prints and what
 * silad serves at GET /metrics (metrics_http.h), written by this one
 * module so that the two cannot differ. */
#ifndef SILA_PROM_H
#define SILA_PROM_H

#include <stdio.h>

#include "sila.pb-c.h"

/* The Content-Type of the exposition. */
#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The phase's lower-case name ("training", ...; "unknown" for a value this
 * build does not know), as status prints it and the sila_phase label
 * carries it. */
const char *prom_phase_name(Sila__RunPhase p);

/* Writes the run-wide series of s and one series per worker row of ws to
 * f. Errors are f's (ferror). */
void prom_write(FILE *f, const Sila__Status *s, const Sila__Workers *ws);

#endif
