/* silad: the sila coordinator. Trains a job over workers that join it
 * (--listen), over workers it starts itself (--spawn), or in this one
 * process (--inproc); see docs/ for the programs and the job files. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "checkpoint.h"
#include "cli.h"
#include "coord.h"
#include "endpoint.h"
#include "job.h"
#include "metrics_http.h"
#include "rpc.h"
#include "startup.h"
#include "threads.h"
#include "train.h"

#define MAX_OVERRIDES 64
static void usage(FILE *f)
{
    fprintf(f,
            "usage: silad --job FILE (--listen URL | --spawn[=N] | --inproc) [--out DIR]\n"
            "             [--set SECTION.KEY=VALUE]... [--threads T] [--window W]\n"
            "  --job FILE     the job to train (see docs/jobs.md)\n"
            "  --listen URL   wait for one silaworker per module to join at URL\n"
            "                 (tcp://HOST:PORT, using PORT..PORT+64 here; or ipc://PATH)\n"
            "  --spawn[=N]    start N local workers (default: one per module), each\n"
            "                 training a consecutive range of modules\n"
            "  --inproc       train every module in this process\n"
            "  --window W     batches in the pipeline at most (default: twice the\n"
            "                 workers, at least 4)\n"
            "  --resume[=DIR] continue the run in DIR (default: its --out directory) from\n"
            "                 its newest checkpoint, with the same job and --set options\n"
            "  --resume-if-any  resume when the --out directory has a checkpoint, else\n"
            "                 start afresh (for services restarted after a failure)\n"
            "  --worker-timeout S  a worker silent for S seconds is lost (default 10)\n"
            "  --replace-timeout S  a lost worker's modules wait S seconds for a\n"
            "                 replacement, then the run fails (default 300)\n"
            "  --rpc URL      serve the RPC for silactl there (default %s; 'none': off);\n"
            "                 with --inproc, requests are answered between steps\n"
            "  --rpc-rate N   answer at most N read requests a second (status, workers,\n"
            "                 metrics; default %u) and %u control ones; those over it\n"
            "                 get a busy error. 0: no limit\n"
            "  --metrics [HOST:]PORT  serve Prometheus' text format at\n"
            "                 http://HOST:PORT/metrics (HOST default %s; 'none': off,\n"
            "                 the default); a scrape counts as one read of --rpc-rate\n"
            "  --key FILE     the cluster key (silactl keygen): every message to and from\n"
            "                 the workers and silactl is authenticated with it (default:\n"
            "                 $%s when set)\n"
            "  --insecure     allow --listen, --rpc or --metrics on a non-loopback\n"
            "                 address without a key (a trusted network only)\n"
            "  --rpc-reads open|authenticated  with a key, whether status, workers and\n"
            "                 metrics need no MAC on a loopback or ipc --rpc (default open)\n"
            "  --auth-window S  accepted difference between the clocks of the hosts, for\n"
            "                 new senders (default 60)\n"
            "  --encrypt      with a key, encrypt every message between silad and the\n"
            "                 workers too (activations, gradients, control), not only\n"
            "                 authenticate it; the workers follow\n"
            "  --out DIR      where model.sila and metrics.jsonl go "
            "(default: runs/<job name>)\n"
            "  --set S.K=V    override a key of [job], [optimizer] or [schedule]\n"
            "  --threads T    threads of the numerical kernels, per spawned worker with\n"
            "                 --spawn (default: OPENBLAS_NUM_THREADS or OMP_NUM_THREADS\n"
            "                 when set, else all cores, shared out among spawned workers)\n",
            SILA_RPC_DEFAULT, SILA_RPC_RATE, SILA_RPC_CONTROL_RATE, METRICS_HTTP_DEFAULT_HOST,
            SILA_KEY_ENV);
}

struct options {
    const char *job;
    const char *out;
    const char *overrides[MAX_OVERRIDES];
    int noverrides;
    int threads;
    int inproc;
    const char *listen;
    int spawn;
    int window;
    const char *rpc;
    int rpc_rate;
    bool metrics_on;
    struct metrics_addr metrics;
    int resume;
    int resume_if_any;
    const char *resume_dir;
    int worker_timeout;
    int replace_timeout;
    const char *key;
    int insecure;
    int rpc_reads_authenticated;
    int auth_window;
    int encrypt;
};

/* --metrics' value into o: an address, or none. Returns -1 after an
 * error. */
static int parse_metrics(struct options *o, const char *value)
{
    struct sila_err err;
    o->metrics_on = strcmp(value, "none") != 0;
    if (o->metrics_on && metrics_addr_parse(value, &o->metrics, &err)) {
        fprintf(stderr, "silad: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* Parses argv; returns 0, 1 when the program should exit successfully
 * (--help), or -1 after printing an error. */
static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"job", required_argument, NULL, 'j'},
        {"out", required_argument, NULL, 'o'},
        {"set", required_argument, NULL, 's'},
        {"threads", required_argument, NULL, 't'},
        {"inproc", no_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {"listen", required_argument, NULL, 'l'},
        {"spawn", optional_argument, NULL, 'S'},
        {"window", required_argument, NULL, 'w'},
        {"rpc", required_argument, NULL, 'r'},
        {"rpc-rate", required_argument, NULL, 'L'},
        {"metrics", required_argument, NULL, 'M'},
        {"resume", optional_argument, NULL, 'R'},
        {"resume-if-any", no_argument, NULL, 'A'},
        {"worker-timeout", required_argument, NULL, 'W'},
        {"replace-timeout", required_argument, NULL, 'T'},
        {"version", no_argument, NULL, 'V'},
        {"key", required_argument, NULL, 'k'},
        {"insecure", no_argument, NULL, 'I'},
        {"rpc-reads", required_argument, NULL, 'D'},
        {"auth-window", required_argument, NULL, 'a'},
        {"encrypt", no_argument, NULL, 'E'},
        {0},
    };
    int c;
    long v;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            o->job = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'i':
            o->inproc = 1;
            break;
        case 'l':
            o->listen = optarg;
            break;
        case 'r':
            o->rpc = optarg;
            break;
        case 'L':
            if (sila_cli_long("silad", "--rpc-rate", optarg, 0, 1000000, &v))
                return -1;
            o->rpc_rate = (int)v;
            break;
        case 'M':
            if (parse_metrics(o, optarg))
                return -1;
            break;
        case 'W':
            if (sila_cli_long("silad", "--worker-timeout", optarg, 2, 86400, &v))
                return -1;
            o->worker_timeout = (int)v;
            break;
        case 'T':
            if (sila_cli_long("silad", "--replace-timeout", optarg, 1, 86400 * 7, &v))
                return -1;
            o->replace_timeout = (int)v;
            break;
        case 'A':
            o->resume_if_any = 1;
            break;
        case 'k':
            o->key = optarg;
            break;
        case 'I':
            o->insecure = 1;
            break;
        case 'E':
            o->encrypt = 1;
            break;
        case 'D':
            if (strcmp(optarg, "open") != 0 && strcmp(optarg, "authenticated") != 0) {
                fprintf(stderr, "silad: --rpc-reads is open or authenticated, not '%s'\n", optarg);
                return -1;
            }
            o->rpc_reads_authenticated = strcmp(optarg, "authenticated") == 0;
            break;
        case 'a':
            if (sila_cli_long("silad", "--auth-window", optarg, 1, 86400, &v))
                return -1;
            o->auth_window = (int)v;
            break;
        case 'R':
            o->resume = 1;
            o->resume_dir = optarg;
            break;
        case 'S':
            v = SILA_MAX_MODULES;
            if (optarg && sila_cli_long("silad", "--spawn=N", optarg, 1, SILA_MAX_MODULES, &v))
                return -1;
            o->spawn = (int)v;
            break;
        case 'w':
            if (sila_cli_long("silad", "--window", optarg, 1, 1024, &v))
                return -1;
            o->window = (int)v;
            break;
        case 's':
            if (o->noverrides == MAX_OVERRIDES) {
                fprintf(stderr, "silad: at most %d --set options\n", MAX_OVERRIDES);
                return -1;
            }
            o->overrides[o->noverrides++] = optarg;
            break;
        case 't':
            if (sila_cli_long("silad", "--threads", optarg, 1, 1024, &v))
                return -1;
            o->threads = (int)v;
            break;
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
            printf("silad %s\n", SILA_VERSION);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (o->resume && !o->resume_dir && optind + 1 == argc)
        o->resume_dir = argv[optind++]; /* --resume DIR */
    if (optind < argc) {
        fprintf(stderr, "silad: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->resume_dir && o->out && strcmp(o->resume_dir, o->out) != 0) {
        fprintf(stderr, "silad: --resume %s and --out %s name different runs\n", o->resume_dir,
                o->out);
        return -1;
    }
    if (o->resume_dir)
        o->out = o->resume_dir;
    if (!o->job) {
        fprintf(stderr, "silad: --job FILE is required\n");
        usage(stderr);
        return -1;
    }
    if (o->inproc + !!(o->listen || o->spawn) != 1) {
        fprintf(stderr, "silad: say where to train: --listen URL, --spawn or --inproc "
                        "(--inproc goes alone)\n");
        return -1;
    }
    return 0;
}

/* Whether addr (given to option opt; local: loopback or ipc) may be
 * listened on without a key: when local, or with --insecure (then with a
 * warning that what (addr inside, as %s) is not authenticated). can: what
 * anyone reaching it could do. */
static bool may_serve_bare(const struct options *o, const char *opt, const char *addr, bool local,
                           const char *what, const char *can)
{
    if (local)
        return true;
    if (!o->insecure) {
        fprintf(stderr,
                "silad: %s %s is not a loopback address: without a cluster key, anyone who "
                "reaches it could %s. Give --key FILE (silactl keygen makes one) or, on a "
                "network you trust, --insecure\n",
                opt, addr, can);
        return false;
    }
    char subject[SILA_URL_MAX + 64];
    snprintf(subject, sizeof subject, what, addr);
    fprintf(stderr,
            "silad: warning: --insecure: %s not authenticated; anyone who reaches it can %s\n",
            subject, can);
    return true;
}

/* may_serve_bare for a url of --listen or --rpc. An address that does not
 * parse passes: the coordinator names what is wrong with it. */
static bool may_listen_bare(const struct options *o, const char *opt, const char *url)
{
    struct sila_url u;
    bool local = sila_url_parse(url, &u, NULL) || !u.tcp || sila_url_loopback(&u);
    return may_serve_bare(o, opt, url, local, "messages on %s are",
                          "join this run, feed it or steer it");
}

#define METRICS_READERS "read the run's figures"

/* --metrics: a page with no authentication, on loopback, with --insecure
 * or, with a key, with a warning (HTTP carries no MAC, and Prometheus
 * scrapes from another host). Returns false after refusing it. */
static bool may_serve_metrics(const struct options *o, bool keyed)
{
    const struct metrics_addr *m = &o->metrics;
    if (!o->metrics_on || m->loopback)
        return true;
    if (!keyed)
        return may_serve_bare(o, "--metrics", m->text, false, "the page at %s is", METRICS_READERS);
    fprintf(stderr,
            "silad: warning: the cluster key does not cover --metrics %s (HTTP requests carry "
            "no MAC): anyone who reaches it can " METRICS_READERS "\n",
            m->text);
    return true;
}

/* The key of the run's links and RPC: --key, else $SILA_KEY_FILE, else none
 * (*ret_keyed false). Returns -1 after an error. */
static int load_key(struct options *o, struct sila_key *key, bool *ret_keyed)
{
    if (!o->key && getenv(SILA_KEY_ENV) && *getenv(SILA_KEY_ENV))
        o->key = getenv(SILA_KEY_ENV);
    *ret_keyed = o->key != NULL;
    if (o->encrypt && (!o->key || o->inproc)) {
        fprintf(stderr, "silad: --encrypt seals the links of a distributed run with keys derived "
                        "from the cluster key: it needs --key FILE (or $" SILA_KEY_ENV
                        ") and --listen or --spawn\n");
        return -1;
    }
    struct sila_err err;
    if (o->key && sila_key_load(o->key, key, &err)) {
        fprintf(stderr, "silad: %s\n", err.msg);
        return -1;
    }
    if (!may_serve_metrics(o, o->key != NULL))
        return -1;
    if (o->key)
        return 0;
    if ((o->listen && !may_listen_bare(o, "--listen", o->listen)) ||
        !may_listen_bare(o, "--rpc", o->rpc ? o->rpc : SILA_RPC_DEFAULT))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    struct options o = {.worker_timeout = 10, .replace_timeout = 300, .rpc_rate = SILA_RPC_RATE};
    int r = parse_args(argc, argv, &o);
    if (r)
        return r > 0 ? EXIT_SUCCESS : 2;
    struct sila_key key;
    bool keyed = false;
    if (load_key(&o, &key, &keyed))
        return EXIT_FAILURE;
    /* in process: the kernels' threads; distributed: the cores to share out
     * among spawned workers (the coordinator itself computes nothing) */
    int threads = sila_threads_setup(o.inproc ? o.threads : 0);
    struct sila_job job;
    struct sila_err err = {""};
    if (sila_job_load(&job, o.job, o.overrides, o.noverrides, &err)) {
        fprintf(stderr, "silad: %s\n", err.msg);
        return EXIT_FAILURE;
    }
    char out[SILA_PATH_MAX];
    snprintf(out, sizeof out, "%s", o.out ? o.out : "");
    if (!o.out)
        snprintf(out, sizeof out, "runs/%s", job.name);
    if (o.resume_if_any && !o.resume)
        o.resume = checkpoint_recorded(out);
    struct rpc_endpoint rpc = {.url = o.rpc ? o.rpc : SILA_RPC_DEFAULT,
                               .required = o.rpc != NULL,
                               .auth = {.key = keyed ? &key : NULL,
                                        .reads_open = !o.rpc_reads_authenticated,
                                        .window_ms = (uint32_t)o.auth_window * 1000u},
                               .rate = (uint32_t)o.rpc_rate,
                               .metrics = o.metrics_on ? &o.metrics : NULL};
    if (o.rpc && strcmp(o.rpc, "none") == 0)
        rpc.url = NULL;
    /* every mode refuses the same inputs, before anything is started */
    struct startup run;
    r = startup_open(&run, &job, out, o.resume, &err);
    if (r == 0 && o.inproc) {
        r = train_inproc(&job, &run, out, o.resume, &rpc, &err);
    } else if (r == 0) {
        struct coord_options co = {.listen = o.listen,
                                   .spawn = o.spawn,
                                   .threads = o.threads,
                                   .cores = threads,
                                   .window = o.window,
                                   .rpc = rpc,
                                   .resume = o.resume,
                                   .worker_timeout = o.worker_timeout,
                                   .replace_timeout = o.replace_timeout,

                                   .key = keyed ? &key : NULL,
                                   .key_path = o.key,
                                   .encrypt = o.encrypt,
                                   .insecure = o.insecure,
                                   .auth_window_ms = (uint32_t)o.auth_window * 1000u};
        r = coord_run(&job, &run, out, &co, &err);
    }
    if (r)
        fprintf(stderr, "silad: %s\n", err.msg);
    startup_close(&run);
    if (keyed)
        sila_key_wipe(&key);
    sila_job_fini(&job);
    return r ? EXIT_FAILURE : EXIT_SUCCESS;
}
