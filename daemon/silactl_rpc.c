/* silactl's commands to a running silad, over its RPC (see silactl_rpc.h and
 * docs/rpc.md): tables for people, --json for scripts. */
#include "silactl_rpc.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "cli.h"
#include "prom.h"
#include "rpc.h"
#include "transport.h"

struct rpc_opts {
    const char *connect;
    const struct sila_key *key; /* NULL: requests go bare */
    const char *key_path;
    int json;
    int prometheus;
    int timeout_ms;
    const char *cmd;
    uint64_t since;
    bool answered; /* watch: silad has answered before (a silence now is its end) */
};

/* One call; on success *ret_reply is the daemon's answer (free with
 * sila__reply__free_unpacked) and it carried no error. Else prints why
 * and returns -EBUSY when the daemon answered busy (over its rate limit),
 * -EIO for any other failure. */
static int call(const struct rpc_opts *o, Sila__Request *req, Sila__Reply **ret_reply)
{
    struct sila_link l;
    struct sila_err err;
    struct sila_link_auth la = {.key = o->key, .channel = "rpc"};
    if (sila_link_open(&l, SILA_LINK_REQUEST, o->connect, false, SILA_RPC_MAX_REPLY, &la, &err)) {
        fprintf(stderr, "silactl: %s\n", err.msg);
        return -EIO;
    }
    req->version = SILA_RPC_VERSION;
    size_t len = sila__request__get_packed_size(req);
    uint8_t *buf = sila_link_alloc(len ? len : 1);
    int r = buf ? 0 : -ENOMEM;
    if (buf) {
        sila__request__pack(req, buf);
        if ((r = sila_link_send(&l, buf, len ? len : 1, o->timeout_ms)))
            sila_link_release(buf);
    }
    uint8_t *in = NULL;
    size_t inlen = 0;
    if (r == 0)
        r = sila_link_recv(&l, &in, &inlen, o->timeout_ms);
    uint64_t rejected = l.rejected;
    char why[sizeof l.rejection];
    snprintf(why, sizeof why, "%s", l.rejection);
    sila_link_close(&l);
    if (r) {
        char id[9] = "";
        if (o->key)
            sila_key_id_text(o->key->id, id);
        if ((r == -ETIMEDOUT || r == -EAGAIN) && rejected)
            fprintf(stderr,
                    "silactl: %s answered, but not with a reply signed with the key in %s "
                    "(id %s): %s. Does silad run with this key?\n",
                    o->connect, o->key_path, id, why);
        else if ((r == -ETIMEDOUT || r == -EAGAIN) && o->answered)
            fprintf(stderr,
                    "silactl: silad at %s stopped answering: the run ended or silad stopped "
                    "(the last state it gave is above)\n",
                    o->connect);
        else if ((r == -ETIMEDOUT || r == -EAGAIN) && o->key)
            fprintf(stderr,
                    "silactl: no silad answered at %s within %d s (is it running, is this its "
                    "--rpc endpoint, and does it have the key in %s, id %s?)\n",
                    o->connect, o->timeout_ms / 1000, o->key_path, id);
        else if (r == -ETIMEDOUT || r == -EAGAIN)
            fprintf(stderr,
                    "silactl: no silad answered at %s within %d s (is it running, and "
                    "is this its --rpc endpoint?)\n",
                    o->connect, o->timeout_ms / 1000);
        else
            fprintf(stderr, "silactl: %s: %s\n", o->connect, strerror(-r));
        return -EIO;
    }
    Sila__Reply *rep = sila__reply__unpack(NULL, inlen, in);
    sila_link_release(in);
    if (!rep) {
        fprintf(stderr,
                "silactl: %s answered %zu bytes that are not a sila.Reply (not a silad "
                "RPC endpoint?)\n",
                o->connect, inlen);
        return -EIO;
    }
    if (rep->version != SILA_RPC_VERSION || *rep->error) {
        if (rep->version != SILA_RPC_VERSION)
            fprintf(stderr, "silactl: %s speaks RPC version %u, this silactl %u\n", o->connect,
                    rep->version, SILA_RPC_VERSION);
        else
            fprintf(stderr, "silactl: %s: %s\n", o->connect, rep->error);
        r = rep->version == SILA_RPC_VERSION && rep->retry_after_ms ? -EBUSY : -EIO;
        sila__reply__free_unpacked(rep, NULL);
        return r;
    }
    *ret_reply = rep;
    return 0;
}

/* A JSON number, or null for NaN and infinities. */
static void json_num(double v)
{
    if (isfinite(v))
        printf("%.6g", v);
    else
        printf("null");
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

/* ",\"NAME\":[a0,a1,...]" */
static void json_nums(const char *name, const double *a, size_t n)
{
    printf(",\"%s\":[", name);
    for (size_t k = 0; k < n; k++) {
        printf(k ? "," : "");
        json_num(a[k]);
    }
    printf("]");
}

static void json_evaluations(Sila__Evaluation **evs, size_t n)
{
    printf("[");
    for (size_t i = 0; i < n; i++) {
        printf("%s{\"epoch\":%u,\"step\":%llu,\"train_s\":%.3f", i ? "," : "", evs[i]->epoch,
               (unsigned long long)evs[i]->step, evs[i]->train_s);
        json_nums("accuracy", evs[i]->accuracy, evs[i]->n_accuracy);
        if (evs[i]->n_holdout)
            json_nums("holdout", evs[i]->holdout, evs[i]->n_holdout);
        printf("}");
    }
    printf("]");
}

static void print_status_json(const Sila__Status *s)
{
    printf("{\"job\":");
    json_str(s->job);
    printf(",\"algorithm\":");
    json_str(s->algorithm);
    printf(",\"phase\":\"%s\",\"epoch\":%u,\"epochs\":%u,\"step\":%llu,\"total_steps\":%llu,"
           "\"samples_per_s\":%.1f,\"eta_s\":%.1f,\"elapsed_s\":%.1f,\"modules\":%u,"
           "\"evaluations\":",
           prom_phase_name(s->phase), s->epoch, s->epochs, (unsigned long long)s->step,
           (unsigned long long)s->total_steps, s->samples_per_s, s->eta_s, s->elapsed_s,
           s->modules);
    json_evaluations(s->evaluations, s->n_evaluations);
    if (*s->failure) {
        printf(",\"failure\":");
        json_str(s->failure);
    }
    printf(",\"last_checkpoint\":");
    json_str(s->last_checkpoint);
    printf(",\"replacements\":%u", s->replacements);
    printf(",\"rejected_messages\":%llu}\n", (unsigned long long)s->rejected_messages);
}

static void duration(char *buf, size_t len, double s)
{
    long t = s > 0 && isfinite(s) ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
}

/* " head1 91.20% ... classifier 92.30%": one figure per exit, the
 * classifier's last. */
static void print_exits(const double *a, size_t n)
{
    for (size_t k = 0; k + 1 < n; k++)
        printf(" head%zu %.2f%%", k + 1, 100.0 * a[k]);
    if (n)
        printf(" classifier %.2f%%", 100.0 * a[n - 1]);
}

static void print_status_text(const Sila__Status *s)
{
    char eta[32], el[32];
    duration(eta, sizeof eta, s->eta_s);
    duration(el, sizeof el, s->elapsed_s);
    double frac = s->total_steps ? (double)s->step / s->total_steps : 0.0;
    char bar[33];
    int done = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < done ? '=' : (i == done ? '>' : ' ');
    bar[30] = 0;
    printf("job %s (%s, %u modules): %s", s->job, s->algorithm, s->modules,
           prom_phase_name(s->phase));
    if (s->replacements)
        printf(" (%u worker%s replaced)", s->replacements, s->replacements > 1 ? "s" : "");
    printf("\n");
    printf("[%s] epoch %u/%u, step %llu/%llu, %.0f samples/s, elapsed %s, ETA %s\n", bar, s->epoch,
           s->epochs, (unsigned long long)s->step, (unsigned long long)s->total_steps,
           s->samples_per_s, el, eta);
    for (size_t i = 0; i < s->n_evaluations; i++) {
        const Sila__Evaluation *e = s->evaluations[i];
        /* the epochs done, fractional between evaluations within an epoch */
        double epochs = s->total_steps ? (double)e->step * s->epochs / (double)s->total_steps
                                       : (double)e->epoch;
        printf("eval after epoch %.4g:", epochs);
        print_exits(e->accuracy, e->n_accuracy);
        if (e->n_holdout) {
            printf("; held-out");
            print_exits(e->holdout, e->n_holdout);
        }
        printf("\n");
    }
    if (*s->last_checkpoint)
        printf("last checkpoint: %s\n", s->last_checkpoint);
    if (s->rejected_messages)
        printf("messages dropped for failing authentication: %llu\n",
               (unsigned long long)s->rejected_messages);
    if (*s->failure)
        printf("failed: %s\n", s->failure);
}

static void print_workers_json(const Sila__Workers *ws)
{
    printf("{\"workers\":[");
    for (size_t i = 0; i < ws->n_rows; i++) {
        const Sila__WorkerRow *w = ws->rows[i];
        printf("%s{\"modules\":[%u,%u],\"host\":", i ? "," : "", w->first_module, w->last_module);
        json_str(w->host);
        printf(",\"pid\":%u,\"generation\":%u,\"state\":", w->pid, w->generation);
        json_str(w->state);
        printf(",\"last_message_age_s\":%.2f,\"step\":%llu,\"loss\":", w->last_message_age_s,
               (unsigned long long)w->step);
        json_num(w->loss);
        printf(",\"loss_step\":%llu", (unsigned long long)w->loss_step);
        printf(",\"accuracy\":%.4f,\"samples_per_s\":%.1f,\"busy\":%.4f,\"queue\":%u,"
               "\"peak_rss_mb\":%.1f,\"bad_messages\":%llu}",
               w->accuracy, w->samples_per_s, w->busy, w->queue, w->peak_rss_mb,
               (unsigned long long)w->bad_messages);
    }
    printf("]}\n");
}

/* The workers' table. Loss and accuracy are of the last step the
 * worker's head learned: "-" before its first, and marked "*" when the
 * steps since were global ones that left the head out. */
static void print_workers_text(const Sila__Workers *ws)
{
    printf("%-9s %-16s %7s %4s %-9s %6s %8s %8s %7s %9s %5s %5s %8s\n", "modules", "host", "pid",
           "gen", "state", "age", "step", "loss", "acc", "samples/s", "busy", "queue", "rss MB");
    bool earlier = false;
    for (size_t i = 0; i < ws->n_rows; i++) {
        const Sila__WorkerRow *w = ws->rows[i];
        char mods[16], loss[16], acc[16];
        snprintf(mods, sizeof mods, w->first_module == w->last_module ? "%u" : "%u-%u",
                 w->first_module, w->last_module);
        const char *mark = w->loss_step < w->step ? "*" : " ";
        earlier |= *mark == '*' && isfinite(w->loss);
        if (isfinite(w->loss)) {
            snprintf(loss, sizeof loss, "%.3f%s", w->loss, mark);
            snprintf(acc, sizeof acc, "%.1f%%%s", 100.0 * w->accuracy, mark);
        } else {
            snprintf(loss, sizeof loss, "- ");
            snprintf(acc, sizeof acc, "- ");
        }
        printf("%-9s %-16.16s %7u %4u %-9s %5.1fs %8llu %8s %7s %9.0f %4.0f%% %5u %8.0f\n", mods,
               w->host, w->pid, w->generation, w->state, w->last_message_age_s,
               (unsigned long long)w->step, loss, acc, w->samples_per_s, 100.0 * w->busy, w->queue,
               w->peak_rss_mb);
    }
    if (earlier)
        printf("* of an earlier step: the steps since were global ones its head took no part in\n");
}

static void print_metrics_json(const Sila__Metrics *m)
{
    printf("{\"points\":[");
    for (size_t i = 0; i < m->n_points; i++) {
        const Sila__MetricPoint *p = m->points[i];
        printf("%s{\"step\":%llu,\"epoch\":%u,\"time_s\":%.3f,\"samples_per_s\":%.1f,\"lr\":",
               i ? "," : "", (unsigned long long)p->step, p->epoch, p->time_s, p->samples_per_s);
        json_num(p->lr);
        printf(",\"loss\":[");
        for (size_t k = 0; k < p->n_loss; k++) {
            printf(k ? "," : "");
            json_num(p->loss[k]);
        }
        printf("]}");
    }
    printf("],\"evaluations\":");
    json_evaluations(m->evaluations, m->n_evaluations);
    printf("}\n");
}

static void print_metrics_text(const Sila__Metrics *m)
{
    printf("%8s %6s %9s %10s %9s  %s\n", "step", "epoch", "time", "samples/s", "lr",
           "loss per module");
    for (size_t i = 0; i < m->n_points; i++) {
        const Sila__MetricPoint *p = m->points[i];
        printf("%8llu %6u %8.1fs %10.0f %9.4g ", (unsigned long long)p->step, p->epoch, p->time_s,
               p->samples_per_s, p->lr);
        for (size_t k = 0; k < p->n_loss; k++)
            printf(isfinite(p->loss[k]) ? " %.3f" : " -", p->loss[k]);
        printf("\n");
    }
}

/* Status and workers, one call each; on success the caller frees both.
 * Returns 0 or call's error. */
static int status_and_workers(const struct rpc_opts *o, Sila__Reply **ret_s, Sila__Reply **ret_w)
{
    Sila__StatusRequest sr = SILA__STATUS_REQUEST__INIT;
    Sila__WorkersRequest wr = SILA__WORKERS_REQUEST__INIT;
    Sila__Request rs = SILA__REQUEST__INIT, rw = SILA__REQUEST__INIT;
    rs.method_case = SILA__REQUEST__METHOD_STATUS;
    rs.status = &sr;
    rw.method_case = SILA__REQUEST__METHOD_WORKERS;
    rw.workers = &wr;
    int r = call(o, &rs, ret_s);
    if (r == 0 && (r = call(o, &rw, ret_w)))
        sila__reply__free_unpacked(*ret_s, NULL);
    return r;
}

/* Status, then workers, redrawn every second until the run ends; a busy
 * daemon (its message printed) is asked again at the next second. */
static int watch(struct rpc_opts *o)
{
    bool tty = isatty(STDOUT_FILENO);
    for (;;) {
        Sila__Reply *s, *w;
        int r = status_and_workers(o, &s, &w);
        if (r == -EBUSY) {
            sleep(1);
            continue;
        }
        if (r)
            return EXIT_FAILURE;
        o->answered = true;
        if (tty)
            printf("\033[H\033[J");
        print_status_text(s->status);
        printf("\n");
        print_workers_text(w->workers);
        fflush(stdout);
        Sila__RunPhase ph = s->status->phase;
        sila__reply__free_unpacked(s, NULL);
        sila__reply__free_unpacked(w, NULL);
        if (ph == SILA__RUN_PHASE__FINISHED || ph == SILA__RUN_PHASE__FAILED)
            return ph == SILA__RUN_PHASE__FINISHED ? EXIT_SUCCESS : EXIT_FAILURE;
        sleep(1);
        if (!tty)
            printf("\n");
    }
}

static int prometheus(const struct rpc_opts *o)
{
    Sila__Reply *s, *w;
    if (status_and_workers(o, &s, &w))
        return EXIT_FAILURE;
    prom_write(stdout, s->status, w->workers);
    sila__reply__free_unpacked(s, NULL);
    sila__reply__free_unpacked(w, NULL);
    return EXIT_SUCCESS;
}

static int one_call(const struct rpc_opts *o)
{
    Sila__Request req = SILA__REQUEST__INIT;
    Sila__StatusRequest sr = SILA__STATUS_REQUEST__INIT;
    Sila__WorkersRequest wr = SILA__WORKERS_REQUEST__INIT;
    Sila__MetricsRequest mr = SILA__METRICS_REQUEST__INIT;
    Sila__PauseRequest pr = SILA__PAUSE_REQUEST__INIT;
    Sila__ResumeRequest rr = SILA__RESUME_REQUEST__INIT;
    Sila__StopRequest st = SILA__STOP_REQUEST__INIT;
    Sila__CheckpointRequest cr = SILA__CHECKPOINT_REQUEST__INIT;
    const char *c = o->cmd;
    if (strcmp(c, "status") == 0)
        req.method_case = SILA__REQUEST__METHOD_STATUS, req.status = &sr;
    else if (strcmp(c, "workers") == 0)
        req.method_case = SILA__REQUEST__METHOD_WORKERS, req.workers = &wr;
    else if (strcmp(c, "metrics") == 0)
        req.method_case = SILA__REQUEST__METHOD_METRICS, req.metrics = &mr,
        mr.since_step = o->since;
    else if (strcmp(c, "pause") == 0)
        req.method_case = SILA__REQUEST__METHOD_PAUSE, req.pause = &pr;
    else if (strcmp(c, "resume") == 0)
        req.method_case = SILA__REQUEST__METHOD_RESUME, req.resume = &rr;
    else if (strcmp(c, "checkpoint") == 0)
        req.method_case = SILA__REQUEST__METHOD_CHECKPOINT, req.checkpoint = &cr;
    else
        req.method_case = SILA__REQUEST__METHOD_STOP, req.stop = &st;
    Sila__Reply *rep;
    if (call(o, &req, &rep))
        return EXIT_FAILURE;
    switch (rep->result_case) {
    case SILA__REPLY__RESULT_STATUS:
        (o->json ? print_status_json : print_status_text)(rep->status);
        break;
    case SILA__REPLY__RESULT_WORKERS:
        (o->json ? print_workers_json : print_workers_text)(rep->workers);
        break;
    case SILA__REPLY__RESULT_METRICS:
        (o->json ? print_metrics_json : print_metrics_text)(rep->metrics);
        break;
    case SILA__REPLY__RESULT_ACK:
        if (o->json) {
            printf("{\"ok\":true,\"message\":");
            json_str(rep->ack->message);
            printf("}\n");
        } else {
            printf("%s\n", rep->ack->message);
        }
        break;
    default:
        fprintf(stderr, "silactl: %s answered without a result\n", o->connect);
        sila__reply__free_unpacked(rep, NULL);
        return EXIT_FAILURE;
    }
    sila__reply__free_unpacked(rep, NULL);
    return EXIT_SUCCESS;
}

bool silactl_rpc_command(const char *cmd)
{
    static const char *const cmds[] = {"status", "workers", "metrics",    "watch",
                                       "pause",  "resume",  "checkpoint", "stop"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (strcmp(cmd, cmds[i]) == 0)
            return true;
    return false;
}

int silactl_rpc(int argc, char **argv, const char *connect, const struct sila_key *key,
                const char *key_path)
{
    struct rpc_opts o = {
        .connect = connect, .key = key, .key_path = key_path, .timeout_ms = 5000, .cmd = argv[0]};
    static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
                                             {"prometheus", no_argument, NULL, 'p'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"since", required_argument, NULL, 's'},
                                             {0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char *end;
        switch (ch) {
        case 'j':
            o.json = 1;
            break;
        case 'p':
            o.prometheus = 1;
            break;
        case 't': {
            long t;
            if (sila_cli_long("silactl", "--timeout", optarg, 1, 3600, &t))
                return 2;
            o.timeout_ms = (int)t * 1000;
            break;
        }
        case 's':
            o.since = strtoull(optarg, &end, 10);
            if (*end || end == optarg) {
                fprintf(stderr, "silactl: --since needs a step number, got '%s'\n", optarg);
                return 2;
            }
            break;
        default:
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "silactl %s: unexpected argument '%s'\n", o.cmd, argv[optind]);
        return 2;
    }
    if (o.prometheus && strcmp(o.cmd, "metrics") != 0) {
        fprintf(stderr, "silactl: --prometheus goes with metrics\n");
        return 2;
    }
    if (o.prometheus)
        return prometheus(&o);
    return strcmp(o.cmd, "watch") == 0 ? watch(&o) : one_call(&o);
}
