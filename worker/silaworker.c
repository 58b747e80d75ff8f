/* silaworker: trains one module (or a consecutive range) of a distributed
 * sila run. See docs/protocol.md and `silaworker --help`. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "auth.h"
#include "cli.h"
#include "endpoint.h"
#include "job.h"
#include "threads.h"
#include "worker.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: silaworker --module N[-M] --connect URL [--threads T] [--advertise HOST]\n"
            "                  [--bind ADDR]\n"
            "  --module N[-M]    the module to train (1-based), or a consecutive range\n"
            "  --connect URL     the coordinator: tcp://HOST:PORT or ipc://PATH (as given to\n"
            "                    silad --listen); the worker waits until it answers\n"
            "  --threads T       threads of the numerical kernels (default: OPENBLAS_NUM_THREADS\n"
            "                    or OMP_NUM_THREADS when set, else all cores)\n"
            "  --advertise HOST  the host name or address the upstream worker reaches this one\n"
            "                    at (default: the --bind address, else this machine's address\n"
            "                    on its route to the coordinator; 127.0.0.1 for a loopback one)\n"
            "  --bind ADDR       the IPv4 address (or * for all) the upstream worker's data\n"
            "                    arrive on (default: a numeric --advertise, else the address\n"
            "                    on the route to the coordinator; 127.0.0.1 for a loopback one)\n"
            "  --max-frame BYTES largest frame accepted (default 256 MiB)\n"
            "  --join-timeout S  give up when no coordinator answers within S seconds\n"
            "                    (default: wait forever)\n"
            "  --timeout S       a coordinator silent for S seconds is lost: exit with an\n"
            "                    error, to be restarted (default 10)\n"
            "  --key FILE        the cluster key, as silad has it (silactl keygen): every message\n"
            "                    is authenticated with it (default: $%s when set)\n"
            "  --insecure        without a key, connect to a coordinator or listen on an address\n"
            "                    that is not on loopback: a trusted network only\n"
            "  --auth-window S   accepted difference between the clocks of the hosts, for new\n"
            "                    senders (default 60)\n"
            "  --encrypt         refuse a coordinator that does not encrypt the run's messages\n"
            "                    (silad --encrypt, which the worker follows without it too)\n"
            "  --exit-with-parent  die with the process that started this one (silad --spawn)\n",
            SILA_KEY_ENV);
}

static int parse_range(const char *s, struct worker_options *o)
{
    char first[32];
    const char *dash = strchr(s, '-');
    snprintf(first, sizeof first, "%.*s", dash ? (int)(dash - s) : (int)strlen(s), s);
    long a, b;
    if (sila_cli_long("silaworker", "--module", first, 1, SILA_MAX_MODULES, &a) ||
        sila_cli_long("silaworker", "--module", dash ? dash + 1 : first, 1, SILA_MAX_MODULES, &b))
        return -1;
    if (b < a) {
        fprintf(stderr, "silaworker: --module %s: the range is empty\n", s);
        return -1;
    }
    o->first = (int)a;
    o->last = (int)b;
    return 0;
}

/* Returns 0, 1 to exit successfully (--help), or -1 after an error. */
static int parse_args(int argc, char **argv, struct worker_options *o, int *threads, int *insecure)
{
    static const struct option longopts[] = {
        {"module", required_argument, NULL, 'm'},
        {"connect", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'},
        {"advertise", required_argument, NULL, 'a'},
        {"bind", required_argument, NULL, 'b'},
        {"max-frame", required_argument, NULL, 'f'},
        {"join-timeout", required_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"exit-with-parent", no_argument, NULL, 'P'},
        {"timeout", required_argument, NULL, 'T'},
        {"key", required_argument, NULL, 'k'},
        {"insecure", no_argument, NULL, 'I'},
        {"auth-window", required_argument, NULL, 'w'},
        {"encrypt", no_argument, NULL, 'E'},
        {0},
    };
    int c;
    long v;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (parse_range(optarg, o))
                return -1;
            break;
        case 'c':
            o->connect = optarg;
            break;
        case 'a':
            o->advertise = optarg;
            break;
        case 'b':
            if (!sila_host_numeric(optarg)) {
                fprintf(stderr, "silaworker: --bind needs an IPv4 address or *, not '%s'\n",
                        optarg);
                return -1;
            }
            o->bind = optarg;
            break;
        case 't':
            if (sila_cli_long("silaworker", "--threads", optarg, 1, 1024, &v))
                return -1;
            *threads = (int)v;
            break;
        case 'f':
            if (sila_cli_long("silaworker", "--max-frame", optarg, 1024, 2147483647L, &v))
                return -1;
            o->max_frame = (size_t)v;
            break;
        case 'j':
            if (sila_cli_long("silaworker", "--join-timeout", optarg, 1, 86400, &v))
                return -1;
            o->join_timeout_s = (int)v;
            break;
        case 'T':
            if (sila_cli_long("silaworker", "--timeout", optarg, 2, 86400, &v))
                return -1;
            o->timeout_s = (int)v;
            break;
        case 'k':
            o->key_path = optarg;
            break;
        case 'I':
            *insecure = 1;
            break;
        case 'E':
            o->encrypt = true;
            break;
        case 'w':
            if (sila_cli_long("silaworker", "--auth-window", optarg, 1, 86400, &v))
                return -1;
            o->auth_window_ms = (uint32_t)v * 1000u;
            break;
        case 'P':
            /* a spawned worker must not outlive a coordinator killed with -9 */
            if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1) {
                fprintf(stderr, "silaworker: the parent is gone already\n");
                return -1;
            }
            break;
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
            printf("silaworker %s\n", SILA_VERSION);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "silaworker: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->first || !o->connect) {
        fprintf(stderr, "silaworker: --module and --connect are required\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Whether this worker may run without a key: its coordinator and its
 * listener on loopback (or ipc), or --insecure (then with a warning).
 * Prints why not. */
static bool may_run_bare(const struct worker_options *o, bool insecure)
{
    struct sila_url u;
    bool remote = sila_url_parse(o->connect, &u, NULL) == 0 && u.tcp && !sila_url_loopback(&u);
    const char *listen = remote ? NULL : o->bind ? o->bind : o->advertise;
    bool wide = listen && sila_host_numeric(listen) && !sila_host_loopback(listen);
    if (!remote && !wide)
        return true;
    if (!insecure) {
        if (remote)
            fprintf(stderr,
                    "silaworker: %s is not a loopback address: without a cluster key, anyone "
                    "who reaches this worker or its coordinator could feed or steer it. Give "
                    "--key FILE (the coordinator's) or, on a network you trust, --insecure\n",
                    o->connect);
        else
            fprintf(stderr,
                    "silaworker: %s %s is not a loopback address: without a cluster key, anyone "
                    "who reaches it could feed this worker. Give --key FILE (the "
                    "coordinator's) or, on a network you trust, --insecure\n",
                    o->bind ? "--bind" : "--advertise", listen);
        return false;
    }
    fprintf(stderr,
            "silaworker: warning: --insecure: messages to and from %s are not "
            "authenticated\n",
            remote ? o->connect : listen);
    return true;
}

/* Loads the key (--key, else $SILA_KEY_FILE) into *key, or, without one,
 * checks that the worker may run bare. Returns -1 after an error. */
static int take_key(struct worker_options *o, bool insecure, struct sila_key *key)
{
    const char *env = getenv(SILA_KEY_ENV);
    if (!o->key_path && env && *env)
        o->key_path = env;
    struct sila_err err;
    if (o->encrypt && !o->key_path) {
        fprintf(stderr, "silaworker: --encrypt needs the cluster key (--key FILE or $%s)\n",
                SILA_KEY_ENV);
        return -1;
    }
    if (!o->key_path)
        return may_run_bare(o, insecure) ? 0 : -1;
    if (sila_key_load(o->key_path, key, &err)) {
        fprintf(stderr, "silaworker: %s\n", err.msg);
        return -1;
    }
    o->key = key;
    return 0;
}

int main(int argc, char **argv)
{
    struct worker_options o = {.max_frame = 256u << 20, .timeout_s = 10};
    int threads = 0, insecure = 0;
    int r = parse_args(argc, argv, &o, &threads, &insecure);
    if (r)
        return r > 0 ? EXIT_SUCCESS : 2;
    struct sila_key key;
    if (take_key(&o, insecure, &key))
        return EXIT_FAILURE;
    signal(SIGPIPE, SIG_IGN);
    sila_threads_setup(threads);
    struct sila_err err = {""};
    if (worker_run(&o, &err)) {
        char mods[32];
        fprintf(stderr, "silaworker: %s: %s\n",
                sila_modules_text(o.first - 1, o.last - 1, mods, sizeof mods), err.msg);
        if (o.key)
            sila_key_wipe(&key);
        return EXIT_FAILURE;
    }
    if (o.key)
        sila_key_wipe(&key);
    return EXIT_SUCCESS;
}
