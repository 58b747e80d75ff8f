/* Progress on the terminal and metrics.jsonl for a training run: what the
 * user watches and what tools read back. One report per run. */
#ifndef SILA_REPORT_H
#define SILA_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <math.h>
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

/* A module's head as training left it, for the RPC's workers: the last
 * step it learned (a global step that leaves the head out has no loss),
 * that step's loss, and a moving average of its batch accuracy. */
struct report_head {
    uint64_t step;   /* from 1; 0: none yet */
    double loss;     /* NaN: none yet */
    double accuracy; /* 0.9 x the previous + 0.1 x the step's */
};

/* One step's losses while some module has not reported it, or its last
 * module's report_step has not come: step records hold whole steps, in
 * whatever order the workers' reports arrive. */
struct step_losses {
    double loss[SILA_MAX_MODULES]; /* NaN: the module's head took no part */
    int reported;                  /* modules that have */
    bool stepped;                  /* report_step has seen it, lr is its */
    float lr;
};

/* A step record: the run at one step, kept for the RPC's Metrics. */
struct report_point {
    uint64_t step; /* 1-based count of steps done */
    int epoch;     /* 1-based */
    double time_s, samples_per_s;
    float lr;
    double loss[SILA_MAX_MODULES]; /* mean since the previous point; NaN: none */
};

/* An evaluation: every exit's accuracy (module k's head, the classifier
 * last) on the test split, and on the held-out split (job.holdout; NaN
 * without one). */
struct report_eval {
    int epoch;      /* 1-based: the one it closes, or falls in (evals_per_epoch > 1) */
    uint64_t step;  /* training steps done before it */
    double train_s; /* seconds training before it (since report_open: a resumed run
                       starts again at 0), the time spent in evaluations left out */
    double accuracy[SILA_MAX_MODULES];
    double holdout[SILA_MAX_MODULES];
};

/* Whether ev has held-out figures (a job with a holdout). */
static inline bool report_eval_has_holdout(const struct report_eval *ev)
{
    return !isnan(ev->holdout[0]);
}

/* An evaluation in progress: hits per exit on the test split [0] and on
 * the held-out split [1]. Zeroed to start. */
struct eval_tally {
    long correct[2][SILA_MAX_MODULES];
};
/* Adds exit k's hits on batch i (< pl->eval_batches) of an evaluation. */
void eval_tally_add(struct eval_tally *t, const struct sila_plan *pl, int k, uint32_t i,
                    long correct);
/* The evaluation of K exits after round q (0-based, plan.h) that t has
 * tallied, without its train_s (report_eval's); zeroes t for the next. */
struct report_eval eval_tally_close(struct eval_tally *t, const struct sila_plan *pl, int K,
                                    uint32_t q);

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
    struct loss_window log_win;   /* whole steps since the last metrics record */
    struct step_losses *pending;  /* owned ring of steps logged+1 .. logged+pending_cap */
    size_t pending_cap;
    uint64_t logged; /* steps in log_win or in records: every module's loss is in */
    struct report_head heads[SILA_MAX_MODULES];
    uint64_t step;       /* steps done */
    double last_step_at; /* monotonic seconds when the last step was reported, 0: none */
    double eval_s;       /* seconds spent in evaluations so far */
    uint64_t first_step; /* steps done when this process started (resumed runs) */
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

/* The exit a saved model ends at (job.deploy) and what it costs per
 * sample. */
struct deploy_exit {
    int module;                 /* 0-based; K - 1 is the classifier */
    size_t params, full_params; /* this exit's network's, the whole network's */
    uint64_t macs, full_macs;   /* multiply-adds (sila_net_macs) */
    double test, holdout;       /* its accuracies in the last evaluation, NaN: none */
};

/* Prints where the model went, the exit it ends at, its accuracy and its
 * cost against the whole network's, and appends a "model" record to the
 * metrics. */
void report_saved(struct report *r, const char *path, const struct deploy_exit *x);

/* After each training step: module k's loss at its step `step` (from 1)
 * and its head's share of right answers on the batch, both NaN when its
 * head took no part. Every module reports every step once, in any order
 * across modules; out of memory for the pending steps (a few KB), the step
 * records stop and training goes on. */
void report_step_loss(struct report *r, int k, uint64_t step, double loss, double accuracy);
/* After each step, when its last module has reported: prints progress
 * at most every second (and at epoch ends). Every 50 steps and at epoch
 * ends a step record goes to the metrics, once every module has reported
 * every step up to it: it holds the losses of exactly the steps since the
 * record before. */
void report_step(struct report *r, int epoch, uint64_t step_in_epoch, int batch, float lr,
                 bool global);
/* After an evaluation: prints it and appends it to the metrics and the
 * report's evaluations, with its train_s filled in. */
void report_eval(struct report *r, const struct report_eval *ev);
/* The newest evaluation, NULL before any. */
const struct report_eval *report_last_eval(const struct report *r);

#endif
