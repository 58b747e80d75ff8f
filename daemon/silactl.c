/* silactl: the sila client. Commands to a running silad over its RPC
 * (status, workers, metrics, watch, pause, resume, stop) and offline
 * commands on model files (eval, inspect). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_model.h"
#include "ctl_plot.h"
#include "ctl_rpc.h"
#include "rpc.h"
#include "threads.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: silactl [--connect ENDPOINT] COMMAND [ARGS]\n"
            "To a running silad (ENDPOINT: its --rpc, default %s):\n"
            "  status [--json]                         job, phase, progress, ETA, evaluations\n"
            "  workers [--json]                        one row per worker\n"
            "  metrics [--since STEP] [--json]         loss, lr and samples/s per step record\n"
            "  metrics --prometheus                    status and workers as Prometheus text\n"
            "  watch                                   status and workers, redrawn every second\n"
            "  pause | resume | checkpoint | stop [--json]\n"
            "                                          checkpoint: at the next step boundary;\n"
            "                                          stop: finish the batches in flight,\n"
            "                                          save the model, exit\n"
            "  (each with --timeout S, default 5)\n"
            "On model files:\n"
            "  eval MODEL [--data KIND:DIR] [--json]   accuracy, per-class accuracy and\n"
            "                                          confusion matrix on a test split\n"
            "  inspect MODEL [--json]                  architecture, parameters, provenance,\n"
            "                                          weights_sha256\n"
            "On a run's metrics.jsonl:\n"
            "  plot METRICS_LOG -o FILE.png|FILE.svg   loss and accuracy curves (gnuplot)\n"
            "Kernel threads: OPENBLAS_NUM_THREADS or OMP_NUM_THREADS, else all cores.\n",
            SILA_RPC_DEFAULT);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *connect = SILA_RPC_DEFAULT;
    if (strcmp(argv[1], "--connect") == 0 || strncmp(argv[1], "--connect=", 10) == 0) {
        bool joined = argv[1][9] == '=';
        if (!joined && argc < 3) {
            fprintf(stderr, "silactl: --connect needs an endpoint\n");
            return 2;
        }
        connect = joined ? argv[1] + 10 : argv[2];
        argc -= joined ? 1 : 2;
        argv += joined ? 1 : 2;
        if (argc < 2) {
            usage(stderr);
            return 2;
        }
    }
    const char *cmd = argv[1];
    if (ctl_rpc_command(cmd))
        return ctl_rpc(argc - 1, argv + 1, connect);
    sila_threads_setup(0);
    if (strcmp(cmd, "eval") == 0)
        return ctl_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "inspect") == 0)
        return ctl_inspect(argc - 1, argv + 1);
    if (strcmp(cmd, "plot") == 0)
        return ctl_plot(argc - 1, argv + 1);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("silactl %s\n", SILA_VERSION);
        return 0;
    }
    fprintf(stderr, "silactl: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
