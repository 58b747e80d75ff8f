/* Prometheus' text exposition of a run (see prom.h). */
#include "prom.h"

#include <math.h>
#include <stddef.h>

const char *prom_phase_name(Sila__RunPhase p)
{
    static const char *const names[] = {"unknown",  "joining",  "training", "evaluating", "paused",
                                        "stopping", "finished", "failed",   "recovering"};
    return (unsigned)p < sizeof names / sizeof *names ? names[p] : "unknown";
}

/* s as a label value into out (len bytes): quotes and backslashes escaped,
 * newlines made spaces, cut to fit. */
static void label_value(const char *s, char *out, size_t len)
{
    size_t n = 0;
    for (const char *p = s; *p && n + 2 < len; p++) {
        if (*p == '"' || *p == '\\')
            out[n++] = '\\';
        out[n++] = *p == '\n' ? ' ' : *p;
    }
    out[n] = 0;
}

static void header(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP sila_%s %s\n# TYPE sila_%s %s\n", name, help, name, type);
}

/* The series of the whole run; job is the escaped job label. */
static void write_run(FILE *f, const Sila__Status *s, const char *job)
{
    header(f, "steps_done_total", "counter", "Training steps the last module has finished.");
    fprintf(f, "sila_steps_done_total{job=\"%s\"} %llu\n", job, (unsigned long long)s->step);
    header(f, "steps_planned", "gauge", "Training steps of the whole run.");
    fprintf(f, "sila_steps_planned{job=\"%s\"} %llu\n", job, (unsigned long long)s->total_steps);
    header(f, "epoch", "gauge", "Current epoch, from 1.");
    fprintf(f, "sila_epoch{job=\"%s\"} %u\n", job, s->epoch);
    header(f, "samples_per_second", "gauge", "Training samples per second since the start.");
    fprintf(f, "sila_samples_per_second{job=\"%s\"} %.1f\n", job, s->samples_per_s);
    header(f, "eta_seconds", "gauge", "Estimated seconds left.");
    fprintf(f, "sila_eta_seconds{job=\"%s\"} %.0f\n", job, s->eta_s);
    header(f, "phase", "gauge", "1 for the run's phase.");
    fprintf(f, "sila_phase{job=\"%s\",phase=\"%s\"} 1\n", job, prom_phase_name(s->phase));
    header(f, "messages_rejected_total", "counter",
           "Messages silad dropped for failing authentication (cluster key).");
    fprintf(f, "sila_messages_rejected_total{job=\"%s\"} %llu\n", job,
            (unsigned long long)s->rejected_messages);
    if (!s->n_evaluations)
        return;
    const Sila__Evaluation *e = s->evaluations[s->n_evaluations - 1];
    header(f, "test_accuracy", "gauge",
           "Test accuracy of each module's head at the last evaluation (the last module's: the "
           "classifier).");
    for (size_t k = 0; k < e->n_accuracy; k++)
        fprintf(f, "sila_test_accuracy{job=\"%s\",module=\"%zu\"} %.6f\n", job, k + 1,
                e->accuracy[k]);
}

/* One series per worker row for each figure of a row, in this order. */
static const struct {
    const char *name, *type, *help;
} per_worker[] = {
    {"module_steps_done_total", "counter", "Training steps the worker's last module has finished."},
    {"module_loss", "gauge",
     "Training loss of the worker's last module at the last step its head learned."},
    {"module_train_accuracy", "gauge",
     "Batch accuracy of that module's head, averaged over the steps it learned."},
    {"worker_samples_per_second", "gauge", "Samples per second through the worker."},
    {"worker_busy_ratio", "gauge", "Share of the worker's time spent computing."},
    {"worker_queue", "gauge", "Batches sent into the pipeline the worker has not finished."},
    {"worker_peak_rss_bytes", "gauge", "Peak resident memory of the worker."},
    {"worker_generation", "gauge", "Generation of the worker's modules."},
    {"worker_last_message_age_seconds", "gauge", "Seconds since the worker's last message."},
};
#define PER_WORKER (sizeof per_worker / sizeof *per_worker)

static void write_workers(FILE *f, const Sila__Workers *ws, const char *job)
{
    for (size_t i = 0; i < PER_WORKER; i++) {
        header(f, per_worker[i].name, per_worker[i].type, per_worker[i].help);
        for (size_t j = 0; j < ws->n_rows; j++) {
            const Sila__WorkerRow *w = ws->rows[j];
            const double v[PER_WORKER] = {(double)w->step,
                                          w->loss,
                                          w->accuracy,
                                          w->samples_per_s,
                                          w->busy,
                                          w->queue,
                                          w->peak_rss_mb * 1048576.0,
                                          w->generation,
                                          w->last_message_age_s};
            fprintf(f, "sila_%s{job=\"%s\",module=\"%u\",modules=\"%u-%u\"} ", per_worker[i].name,
                    job, w->last_module, w->first_module, w->last_module);
            if (isfinite(v[i]))
                fprintf(f, "%.6g\n", v[i]);
            else
                fprintf(f, "NaN\n");
        }
    }
}

void prom_write(FILE *f, const Sila__Status *s, const Sila__Workers *ws)
{
    char job[128];
    label_value(s->job, job, sizeof job);
    write_run(f, s, job);
    write_workers(f, ws, job);
}
