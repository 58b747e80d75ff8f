/* What every mode of silad opens and checks before it trains or lets a
 * worker in: the datasets and the plan they make of the job (feed.h),
 * collab's soft-target table, the checkpoint to resume from, checked
 * against the job's modules, and the output directory with its
 * metrics.jsonl (report.h). --inproc, --spawn and --listen all start from
 * one, so they refuse the same inputs with the same messages, and nothing
 * has been started when they do. */
#ifndef SILA_STARTUP_H
#define SILA_STARTUP_H

#include <stdbool.h>

#include "checkpoint.h"
#include "collab.h"
#include "err.h"
#include "feed.h"
#include "job.h"
#include "report.h"

struct startup {
    struct feed feed;
    struct collab collab;
    /* resuming: the newest checkpoint, its collab table and augmentation
     * RNG already taken up (the trainer frees it with checkpoint_free once
     * the modules have their states); else all zero */
    struct checkpoint resume;
    struct report rep; /* open; cut back to the checkpoint when resuming */
};

/* Opens everything a run of job writing to out_dir starts from; resume:
 * continue from its newest checkpoint. Errors: from reading the data,
 * planning, the checkpoint (-ENOENT: none recorded; -EINVAL: damaged, of
 * another job, or a module that does not fit) or the output directory,
 * with err naming the file. s is then still safe to close. */
int startup_open(struct startup *s, const struct sila_job *job, const char *out_dir, bool resume,
                 struct sila_err *err);

/* Closes what s holds; safe after a failed startup_open. */
void startup_close(struct startup *s);

#endif
