/* Terminal progress and metrics.jsonl (see report.h). */
#include "report.h"
#include "clock.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_EVERY 50 /* steps between step records in the metrics */

/* mkdir -p dir */
static int make_dir(const char *dir, struct sila_err *err)
{
    char path[SILA_PATH_MAX];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1;; p++) {
        if (*p && *p != '/')
            continue;
        char c = *p;
        *p = 0;
        struct stat st;
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return sila_err_set(err, -errno, "%s: cannot create: %s", path, strerror(errno));
        if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
            return sila_err_set(err, -ENOTDIR, "%s: exists and is not a directory", path);
        if (!c)
            return 0;
        *p = c;
    }
}

static bool grow(void **arr, size_t *cap, size_t n, size_t size);

int report_open(struct report *r, const char *out_dir, int nmodules, int epochs,
                uint64_t steps_per_epoch, const struct report_resume *resume, struct sila_err *err)
{
    memset(r, 0, sizeof *r);
    for (int k = 0; k < SILA_MAX_MODULES; k++)
        r->heads[k].loss = NAN;
    int rc = make_dir(out_dir, err);
    if (rc)
        return rc;
    char path[SILA_PATH_MAX];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
    r->metrics = fopen(path, resume ? "r+" : "w");
    if (!r->metrics)
        return sila_err_set(err, -errno, "%s: cannot %s: %s", path, resume ? "open" : "create",
                            strerror(errno));
    if (resume) {
        if (ftruncate(fileno(r->metrics), (off_t)resume->metrics_bytes) < 0 ||
            fseek(r->metrics, 0, SEEK_END) < 0)
            return sila_err_set(err, -errno, "%s: cannot cut back: %s", path, strerror(errno));
        r->step = r->first_step = r->logged = resume->step;
        for (size_t i = 0; i < resume->nevals; i++)
            if (grow((void **)&r->evals, &r->evals_cap, r->nevals, sizeof *r->evals))
                r->evals[r->nevals++] = resume->evals[i];
    }
    r->tty = isatty(STDOUT_FILENO);
    r->nmodules = nmodules;
    r->epochs = epochs;
    r->steps_per_epoch = steps_per_epoch;
    r->start = r->last_print = sila_clock_s();
    return 0;
}

void report_close(struct report *r)
{
    if (r->metrics)
        fclose(r->metrics);
    r->metrics = NULL;
    free(r->points);
    free(r->evals);
    free(r->pending);
    r->points = NULL;
    r->evals = NULL;
    r->pending = NULL;
    r->pending_cap = 0;
    r->npoints = r->nevals = 0;
}

/* Room for one more element in a growing array; false when out of memory
 * (the record is then only in the file). */
static bool grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? 2 * *cap : 64;
    void *p = realloc(*arr, ncap * size);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

double report_rate(const struct report *r)
{
    double dt = sila_clock_s() - r->start;
    return r->samples / (dt > 1e-9 ? dt : 1e-9);
}

double report_eta(const struct report *r)
{
    double rate = report_rate(r);
    uint64_t total = (uint64_t)r->epochs * r->steps_per_epoch;
    uint64_t left = total > r->step ? total - r->step : 0, done = r->step - r->first_step;
    return rate > 0 && done ? (double)left * ((double)r->samples / done) / rate : 0.0;
}

/* Step `step`'s place in the ring of pending steps, grown to hold it;
 * NULL when out of memory, or for a step already logged. */
static struct step_losses *pending_step(struct report *r, uint64_t step)
{
    if (step <= r->logged)
        return NULL;
    uint64_t ahead = step - r->logged; /* from 1 */
    if (ahead > r->pending_cap) {
        size_t ncap = r->pending_cap ? 2 * r->pending_cap : 16;
        while (ncap < ahead)
            ncap *= 2;
        struct step_losses *p = calloc(ncap, sizeof *p);
        if (!p)
            return NULL;
        for (uint64_t s = r->logged + 1; s <= r->logged + r->pending_cap; s++)
            p[(s - 1) % ncap] = r->pending[(s - 1) % r->pending_cap];
        free(r->pending);
        r->pending = p;
        r->pending_cap = ncap;
    }
    return &r->pending[(step - 1) % r->pending_cap];
}

static void write_step_record(struct report *r, uint64_t step, float lr);

/* Moves the steps every module has reported, in order, into log_win,
 * writing a step record at each record step. */
static void log_whole_steps(struct report *r)
{
    while (r->pending_cap) {
        struct step_losses *s = &r->pending[r->logged % r->pending_cap];
        if (s->reported < r->nmodules || !s->stepped)
            return;
        for (int k = 0; k < r->nmodules; k++)
            if (!isnan(s->loss[k])) {
                r->log_win.sum[k] += s->loss[k];
                r->log_win.n[k]++;
            }
        float lr = s->lr;
        memset(s, 0, sizeof *s);
        uint64_t step = ++r->logged;
        if (step % LOG_EVERY == 0 || step % r->steps_per_epoch == 0)
            write_step_record(r, step, lr);
    }
}

void report_step_loss(struct report *r, int k, uint64_t step, double loss, double accuracy)
{
    struct step_losses *s = pending_step(r, step);
    if (s) {
        s->loss[k] = loss;
        s->reported++;
    }
    if (!isnan(loss)) {
        struct report_head *h = &r->heads[k];
        h->step = step;
        h->loss = loss;
        h->accuracy = isnan(accuracy) ? h->accuracy : 0.9 * h->accuracy + 0.1 * accuracy;
        r->print_win.sum[k] += loss;
        r->print_win.n[k]++;
    }
    log_whole_steps(r);
}

static void format_duration(char *buf, size_t len, double s)
{
    if (s < 0 || !isfinite(s))
        s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else
        snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
}

/* Mean losses of a window, as "0.512 0.431 ..." ('-' when none). */
static void format_losses(const struct report *r, const struct loss_window *w, char *buf,
                          size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (int k = 0; k < r->nmodules && used < len; k++) {
        int n = w->n[k]
                    ? snprintf(buf + used, len - used, "%s%.3f", k ? " " : "", w->sum[k] / w->n[k])
                    : snprintf(buf + used, len - used, "%s-", k ? " " : "");
        used += n > 0 ? (size_t)n : 0;
    }
}

#define BAR_WIDTH 24

/* "[=========>      ] " for a fraction in [0, 1]; bar holds BAR_WIDTH + 4. */
static void format_bar(char *bar, double frac)
{
    int done = (int)(frac * BAR_WIDTH);
    bar[0] = '[';
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[1 + i] = i < done ? '=' : (i == done ? '>' : ' ');
    bar[BAR_WIDTH + 1] = ']';
    bar[BAR_WIDTH + 2] = ' ';
    bar[BAR_WIDTH + 3] = 0;
}

/* The record of step `step`: log_win's mean losses, then log_win emptied. */
static void write_step_record(struct report *r, uint64_t step, float lr)
{
    int epoch = (int)((step - 1) / r->steps_per_epoch) + 1;
    double rate = report_rate(r);
    fprintf(r->metrics,
            "{\"type\":\"step\",\"epoch\":%d,\"step\":%llu,\"lr\":%.6g,"
            "\"samples_per_s\":%.1f,\"loss\":[",
            epoch, (unsigned long long)step, lr, rate);
    const struct loss_window *w = &r->log_win;
    struct report_point *pt = NULL;
    if (grow((void **)&r->points, &r->points_cap, r->npoints, sizeof *r->points)) {
        pt = &r->points[r->npoints++];
        *pt = (struct report_point){step, epoch, sila_clock_s() - r->start, rate, lr, {0}};
    }
    for (int k = 0; k < r->nmodules; k++) {
        if (w->n[k])
            fprintf(r->metrics, "%s%.6g", k ? "," : "", w->sum[k] / w->n[k]);
        else
            fprintf(r->metrics, "%snull", k ? "," : "");
        if (pt)
            pt->loss[k] = w->n[k] ? w->sum[k] / w->n[k] : NAN;
    }
    fprintf(r->metrics, "]}\n");
    fflush(r->metrics);
    memset(&r->log_win, 0, sizeof r->log_win);
}

void report_step(struct report *r, int epoch, uint64_t step_in_epoch, int batch, float lr,
                 bool global)
{
    (void)global;
    r->samples += (uint64_t)batch;
    double now = sila_clock_s();
    uint64_t step = (uint64_t)epoch * r->steps_per_epoch + step_in_epoch + 1;
    r->step = step;
    r->last_step_at = now;
    struct step_losses *s = pending_step(r, step);
    if (s) {
        s->stepped = true;
        s->lr = lr;
        log_whole_steps(r);
    }
    uint64_t total = (uint64_t)r->epochs * r->steps_per_epoch;
    bool epoch_end = step_in_epoch + 1 == r->steps_per_epoch;
    if (!epoch_end && now - r->last_print < (r->tty ? 0.5 : 10.0))
        return;
    double rate = report_rate(r);
    char losses[512], eta[32];
    format_losses(r, &r->print_win, losses, sizeof losses);
    format_duration(eta, sizeof eta, (double)(total - step) * batch / rate);
    char bar[BAR_WIDTH + 4] = "";
    if (r->tty)
        format_bar(bar, (double)step / total);
    printf("%s%sepoch %d/%d step %llu/%llu  loss [%s]  %.0f samples/s  ETA %s%s",
           r->tty ? "\r\033[K" : "", bar, epoch + 1, r->epochs,
           (unsigned long long)step_in_epoch + 1, (unsigned long long)r->steps_per_epoch, losses,
           rate, eta, r->tty && !epoch_end ? "" : "\n");
    fflush(stdout);
    r->last_print = now;
    memset(&r->print_win, 0, sizeof r->print_win);
}

void eval_tally_add(struct eval_tally *t, const struct sila_plan *pl, int k, uint32_t i,
                    long correct)
{
    t->correct[i >= pl->test_batches][k] += correct;
}

struct report_eval eval_tally_close(struct eval_tally *t, const struct sila_plan *pl, int K,
                                    uint32_t q)
{
    uint64_t step = sila_plan_round_end(pl, q), S = pl->steps_per_epoch;
    struct report_eval ev = {.epoch = (int)((step + S - 1) / S), .step = step};
    for (int k = 0; k < K; k++) {
        ev.accuracy[k] = pl->ntest ? (double)t->correct[0][k] / pl->ntest : 0.0;
        ev.holdout[k] = pl->nholdout ? (double)t->correct[1][k] / pl->nholdout : NAN;
    }
    *t = (struct eval_tally){0};
    return ev;
}

/* " head1 91.20%, ..., classifier 92.30%" */
static void print_exits(const double *accuracy, int K)
{
    for (int k = 0; k < K - 1; k++)
        printf(" head%d %.2f%%,", k + 1, 100.0 * accuracy[k]);
    printf(" classifier %.2f%%", 100.0 * accuracy[K - 1]);
}

static void json_exits(FILE *f, const char *name, const double *accuracy, int K)
{
    fprintf(f, ",\"%s\":[", name);
    for (int k = 0; k < K; k++)
        fprintf(f, "%s%.6f", k ? "," : "", accuracy[k]);
    fprintf(f, "]");
}

void report_eval(struct report *r, const struct report_eval *done)
{
    int K = r->nmodules;
    double now = sila_clock_s(), trained = r->last_step_at ? r->last_step_at : r->start;
    struct report_eval unkept; /* out of memory: printed and logged only */
    struct report_eval *ev = grow((void **)&r->evals, &r->evals_cap, r->nevals, sizeof *r->evals)
                                 ? &r->evals[r->nevals++]
                                 : &unkept;
    *ev = *done;
    ev->train_s = trained - r->start - r->eval_s;
    r->eval_s += now - trained;
    double epochs = (double)ev->step / (double)r->steps_per_epoch;
    printf("eval after epoch %.4g: test accuracy", epochs);
    print_exits(ev->accuracy, K);
    if (report_eval_has_holdout(ev)) {
        printf("; held-out");
        print_exits(ev->holdout, K);
    }
    printf("\n");
    fflush(stdout);
    fprintf(r->metrics, "{\"type\":\"eval\",\"epoch\":%.6g,\"step\":%llu,\"train_s\":%.3f", epochs,
            (unsigned long long)ev->step, ev->train_s);
    json_exits(r->metrics, "accuracy", ev->accuracy, K);
    if (report_eval_has_holdout(ev))
        json_exits(r->metrics, "holdout", ev->holdout, K);
    fprintf(r->metrics, "}\n");
    fflush(r->metrics);
}

const struct report_eval *report_last_eval(const struct report *r)
{
    return r->nevals ? &r->evals[r->nevals - 1] : NULL;
}

/* ", head dgl (grid 8, convs 2, mlp 2, hidden 256)": a head other than the
 * plain linear one, with the keys that shape it; "" for linear. */
static int head_text(const struct sila_objective *o, char *buf, size_t len)
{
    const char *name = sila_aux_kind_name(o->aux);
    switch (o->aux) {
    case SILA_AUX_MLP:
    case SILA_AUX_INFOPRO:
        return snprintf(buf, len, ", head %s (hidden %d)", name, o->aux_hidden);
    case SILA_AUX_DGL:
        return snprintf(buf, len, ", head dgl (grid %d, convs %d, mlp %d, hidden %d)", o->aux_grid,
                        o->aux_convs, o->aux_mlp, o->aux_hidden);
    case SILA_AUX_AUGLOCAL:
        return snprintf(buf, len, ", head auglocal (depth %d, pyramid %g)", o->aux_depth,
                        o->aux_pyramid);
    case SILA_AUX_CONV:
        return snprintf(buf, len, ", head conv");
    default:
        return snprintf(buf, len, "%s", "");
    }
}

/* "sila (twin 1, dml 1, T 2), redundancy 0.1, head dgl (...)" into buf:
 * module k's objective with the keys that act on it, and its head unless
 * it is the last module's (which has none) or linear. */
static const char *objective_text(const struct sila_job *job, int k, char *buf, size_t len)
{
    const struct sila_objective *o = &job->modules[k].objective;
    int n = snprintf(buf, len, "%s", sila_objective_name(o->kind));
    if (o->kind == SILA_OBJ_SILA)
        n += snprintf(buf + n, len - (size_t)n, " (twin %g, dml %g, T %g)", o->sila_weight,
                      o->dml_weight, o->temperature);
    else if (o->kind == SILA_OBJ_COLLAB)
        n += snprintf(buf + n, len - (size_t)n, " (beta %g, T %g)", o->collab_beta, o->temperature);
    else if (o->kind == SILA_OBJ_COSUB)
        n += snprintf(buf + n, len - (size_t)n, " (weight %g)", o->cosub_weight);
    if (o->redundancy > 0.0f)
        n += snprintf(buf + n, len - (size_t)n, ", redundancy %g", o->redundancy);
    if (o->kernel_similarity > 0.0f)
        n += snprintf(buf + n, len - (size_t)n, ", kernel_similarity %g", o->kernel_similarity);
    if (k == job->nmodules - 1)
        return buf;
    float recon, task;
    sila_objective_infopro_weights(o, k, job->nmodules, &recon, &task);
    if (recon > 0.0f || task != 1.0f)
        n += snprintf(buf + n, len - (size_t)n, ", reconstruction %.3g, task %.3g", recon, task);
    head_text(o, buf + n, len - (size_t)n);
    return buf;
}

/* One line naming each run of modules with the same objective and head,
 * unless every module trains plain ce through a linear head (or the
 * algorithm has no local steps). */
static void print_objectives(const struct sila_job *job)
{
    char cur[256], next[256], mods[32];
    bool plain = true;
    for (int k = 0; k < job->nmodules; k++)
        plain &= sila_objective_is_plain(&job->modules[k].objective) &&
                 (k == job->nmodules - 1 || job->modules[k].objective.aux == SILA_AUX_LINEAR);
    if (plain || job->algorithm == SILA_ALGO_E2E)
        return;
    printf("local objectives:");
    for (int first = 0, k = 0; k < job->nmodules; k++) {
        objective_text(job, k, cur, sizeof cur);
        if (k + 1 < job->nmodules &&
            strcmp(cur, objective_text(job, k + 1, next, sizeof next)) == 0)
            continue;
        printf("%s %s %s", first ? ";" : "", sila_modules_text(first, k, mods, sizeof mods), cur);
        first = k + 1;
    }
    printf("\n");
}

void report_start(struct report *r, const struct sila_job *job, const struct sila_plan *plan,
                  const char *where)
{
    r->start = r->last_print = sila_clock_s(); /* rates count training, not joining */
    printf("job %s: %s, %d modules %s, %u training samples", job->name,
           sila_algorithm_name(job->algorithm), job->nmodules, where, plan->ntrain);
    if (plan->nholdout)
        printf(" (%u more held out)", plan->nholdout);
    printf(", %d epochs of %llu steps, batch %d\n", job->epochs,
           (unsigned long long)plan->steps_per_epoch, job->batch);
    if (job->deploy != SILA_DEPLOY_CLASSIFIER) {
        char rule[32];
        printf("deploy = %s: the saved model ends at %s\n",
               sila_deploy_text(job->deploy, rule, sizeof rule),
               job->deploy > 0 ? "that module's head"
                               : "the exit most accurate on the held-out samples");
    }
    print_objectives(job);
    fflush(stdout);
}

void report_saved(struct report *r, const char *path, const struct deploy_exit *x)
{
    int K = r->nmodules;
    char exit[32] = "classifier";
    if (x->module < K - 1)
        snprintf(exit, sizeof exit, "head of module %d", x->module + 1);
    printf("model saved to %s: %s", path, exit);
    if (isnan(x->test))
        printf(" (not evaluated: the run stopped before an evaluation)");
    else
        printf(", test accuracy %.2f%%", 100.0 * x->test);
    if (!isnan(x->holdout))
        printf(", held-out %.2f%%", 100.0 * x->holdout);
    if (x->module < K - 1)
        printf("; %zu parameters and %.1f M multiply-adds per sample, %.0f%% and %.0f%% of the "
               "whole network's",
               x->params, x->macs / 1e6, 100.0 * x->params / x->full_params,
               100.0 * x->macs / x->full_macs);
    printf("\n");
    fflush(stdout);
    fprintf(r->metrics,
            "{\"type\":\"model\",\"path\":\"%s\",\"exit_module\":%d,\"parameters\":%zu,"
            "\"full_parameters\":%zu,\"macs\":%llu,\"full_macs\":%llu",
            path, x->module < K - 1 ? x->module + 1 : 0, x->params, x->full_params,
            (unsigned long long)x->macs, (unsigned long long)x->full_macs);
    if (!isnan(x->test))
        fprintf(r->metrics, ",\"test_accuracy\":%.6f", x->test);
    if (!isnan(x->holdout))
        fprintf(r->metrics, ",\"holdout_accuracy\":%.6f", x->holdout);
    fprintf(r->metrics, "}\n");
    fflush(r->metrics);
}

void report_worker(struct report *r, const struct worker_summary *w, uint64_t samples)
{
    char mods[32];
    double busy = w->active_s > 0 ? w->busy_s / w->active_s : 0.0;
    double global = w->active_s > 0 ? w->global_s / w->active_s : 0.0;
    double per_sample = samples ? (double)w->bytes_out / (double)samples : 0.0;
    printf("worker for %s: busy %.0f%% of %.1f s, global steps %.0f%% of it, "
           "%.1f kB sent per sample, peak RSS %.0f MB\n",
           sila_modules_text(w->first, w->last, mods, sizeof mods), 100.0 * busy, w->active_s,
           100.0 * global, per_sample / 1e3, w->peak_rss_kb / 1024.0);
    fprintf(r->metrics,
            "{\"type\":\"worker\",\"modules\":[%d,%d],\"active_s\":%.3f,"
            "\"busy\":%.4f,\"global\":%.4f,\"bytes_per_sample\":%.1f,"
            "\"peak_rss_mb\":%.1f}\n",
            w->first + 1, w->last + 1, w->active_s, busy, global, per_sample,
            w->peak_rss_kb / 1024.0);
    fflush(r->metrics);
}

uint64_t report_metrics_bytes(struct report *r)
{
    fflush(r->metrics);
    long n = ftell(r->metrics);
    return n > 0 ? (uint64_t)n : 0;
}

void report_checkpoint(struct report *r, const char *path, uint64_t done)
{
    (void)r;
    printf("checkpoint after step %llu: %s\n", (unsigned long long)done, path);
    fflush(stdout);
}
