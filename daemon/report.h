/* Progress on the terminal and metrics.jsonl for a training run: what the
 * user watches and what tools read back. One report per run. */
#ifndef SILA_REPORT_H
#define SILA_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "job.h"
#include "plan.h"

/* Mean loss per module over a window of steps. */
struct loss_window {
    double sum[SILA_MAX_MODULES];
    uint64_t n[SILA_MAX_MODULES];
};

/* A step record: the run at one step, kept for the RPC's Metrics. */
struct report_point {
    uint64_t step; /* 1-based count of steps done */
    int epoch;     /* 1-based */
    double time_s, samples_per_s;
    float lr;
    double loss[SILA_MAX_MODULES]; /* mean since the previous point; NaN: none */
};

/* An evaluation: every head's test accuracy, the classifier's last. */
struct report_eval {
    int epoch; /* 1-based */
    uint64_t step;
    double accuracy[SILA_MAX_MODULES];
};

struct report {
    FILE *metrics; /* owned: metrics.jsonl */
    bool tty;      /* stdout is a terminal: redraw one progress line */
    int nmodules;
    int epochs;
    uint64_t steps_per_epoch;
    double start; /* monotonic seconds at the start of training */
    double last_print;
    uint64_t samples;             /* trained so far */
    struct loss_window print_win; /* since the last printed line */
    struct loss_window log_win;   /* since the last metrics record */
    uint64_t step;                /* steps done */
    uint64_t first_step;          /* steps done when this process started (resumed runs) */
    /* the records written to metrics.jsonl, kept (owned, growing arrays) */
    struct report_point *points;
    size_t npoints, points_cap;
    struct report_eval *evals;
    size_t nevals, evals_cap;
};

/* Where a resumed run takes up its report: metrics.jsonl is cut back to
 * metrics_bytes, the step count and evaluations are those of the checkpoint. */
struct report_resume {
    uint64_t metrics_bytes;
    uint64_t step;
    const struct report_eval *evals;
    size_t nevals;
};

/* Creates out_dir (and its parents) and out_dir/metrics.jsonl, truncating
 * it, or with resume cutting it back to where the checkpoint was taken.
 * Returns 0 or -errno with err naming the path. */
int report_open(struct report *r, const char *out_dir, int nmodules, int epochs,
                uint64_t steps_per_epoch, const struct report_resume *resume, struct sila_err *err);

/* Bytes written to metrics.jsonl so far (flushed), for a checkpoint. */
uint64_t report_metrics_bytes(struct report *r);
void report_close(struct report *r);

/* Prints the run's first line: job, algorithm, modules, samples, epochs,
 * and where it runs ("in process", "on 4 workers"). */
void report_start(struct report *r, const struct sila_job *job, const struct sila_plan *plan,
                  const char *where);
/* Training samples/s since report_start, and the seconds left at that rate. */
double report_rate(const struct report *r);
double report_eta(const struct report *r);

/* How one worker of a distributed run spent its time, from its report. */
struct worker_summary {
    int first, last;    /* modules, 0-based */
    double active_s;    /* first batch to the end */
    double busy_s;      /* computing */
    double global_s;    /* in global steps */
    uint64_t bytes_out; /* data frames sent */
    uint64_t peak_rss_kb;
};
/* Prints a worker's summary and appends it to the metrics as a "worker"
 * record; samples: training and test samples its first module took in. */
void report_worker(struct report *r, const struct worker_summary *w, uint64_t samples);

/* Prints that a checkpoint of `done` steps was written to path. */
void report_checkpoint(struct report *r, const char *path, uint64_t done);

/* Prints where the model went and its accuracy (NaN: not evaluated). */
void report_saved(struct report *r, const char *path, double accuracy);

/* After each training step: module k's loss (NAN when it had none). */
void report_step_loss(struct report *r, int k, double loss);
/* After each step: prints progress at most every second (and at epoch
 * ends), appends a step record to the metrics every log_every steps. */
void report_step(struct report *r, int epoch, uint64_t step_in_epoch, int batch, float lr,
                 bool global);
/* After an evaluation: accuracy of each module's head (the last is the
 * classifier's), in [0, 1]. */
void report_eval(struct report *r, int epoch, uint64_t step, const double *accuracy);

#endif
