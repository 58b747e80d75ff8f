/* A worker: joins a coordinator, trains a consecutive range of modules of
 * its job, and exchanges activations and gradients with its neighbours on
 * the pipeline (see docs/protocol.md for the sequence of messages). */
#ifndef SILA_WORKER_H
#define SILA_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "err.h"

struct worker_options {
    int first, last;       /* modules, 1-based, inclusive */
    const char *connect;   /* the coordinator's base address */
    const char *advertise; /* host the upstream neighbour reaches us at; NULL: derived */
    const char *bind;      /* address the upstream edge listens on; NULL: derived */
    size_t max_frame;      /* largest frame accepted */
    int join_timeout_s;    /* give up joining after this long; 0 = wait forever */
    int timeout_s;         /* a coordinator silent this long is lost: the worker exits */

    /* authentication (docs/protocol.md) */
    const struct sila_key *key; /* the cluster key: every link authenticated; NULL: bare */
    const char *key_path;       /* its file, for messages */
    bool encrypt;               /* take only sealed links: refuse a coordinator that does not
                                   seal the run's (silad --encrypt) */
    uint32_t auth_window_ms;    /* accepted clock difference of new senders; 0: default */
};

/* Joins, trains until the coordinator stops the run, and returns 0; or a
 * negative errno with err set (refused, protocol error, bad frame). */
int worker_run(const struct worker_options *o, struct sila_err *err);

#endif
