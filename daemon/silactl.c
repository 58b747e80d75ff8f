/* silactl: the sila client. Commands to a running silad over its RPC
 * (status, workers, metrics, watch, pause, resume, stop), offline commands
 * on model files (eval, inspect, export), and keygen for a cluster key. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "silactl_model.h"
#include "silactl_plot.h"
#include "silactl_rpc.h"
#include "rpc.h"
#include "threads.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: silactl [--connect ENDPOINT] [--key FILE] COMMAND [ARGS]\n"
            "To a running silad (ENDPOINT: its --rpc, default %s; FILE: the cluster\n"
            "key silad has, default $%s; requests are then signed with it and\n"
            "replies must be):\n"
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
            "  eval MODEL [--data KIND:DIR] [--logits FILE] [--json]\n"
            "                                          accuracy, per-class accuracy and\n"
            "                                          confusion matrix on a test split;\n"
            "                                          FILE: the logits, float32 LE\n"
            "  inspect MODEL [--json]                  architecture, parameters, provenance,\n"
            "                                          weights_sha256, input record\n"
            "  export MODEL --onnx OUT.onnx            the network as an ONNX graph (opset 13)\n"
            "                                          taking pixels/255, NCHW; logits out\n"
            "On a run's metrics.jsonl:\n"
            "  plot METRICS_LOG -o FILE.png|FILE.svg   loss and accuracy curves (gnuplot)\n"
            "A cluster key:\n"
            "  keygen [FILE]                           a new random key in FILE (default %s),\n"
            "                                          mode 0600, never overwriting a file\n"
            "Kernel threads: OPENBLAS_NUM_THREADS or OMP_NUM_THREADS, else all cores.\n",
            SILA_RPC_DEFAULT, SILA_KEY_ENV, SILA_KEY_FILE_DEFAULT);
}

static int keygen(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && argv[1][0] == '-' && argv[1][1])) {
        fprintf(stderr, "usage: silactl keygen [FILE]\n");
        return 2;
    }
    const char *path = argc == 2 ? argv[1] : SILA_KEY_FILE_DEFAULT;
    struct sila_key k;
    struct sila_err err;
    if (sila_key_generate(path, &k, &err)) {
        fprintf(stderr, "silactl: %s\n", err.msg);
        return EXIT_FAILURE;
    }
    char id[9];
    sila_key_id_text(k.id, id);
    sila_key_wipe(&k);
    printf("wrote a new cluster key to %s (id %s, mode 0600). Copy it to every machine of the\n"
           "cluster, private to the user sila runs as, and give it to silad, silaworker and\n"
           "silactl with --key %s (or %s=%s).\n",
           path, id, path, SILA_KEY_ENV, path);
    return EXIT_SUCCESS;
}

/* Takes the global options --connect and --key off the front of argv. */
static int global_options(int *argc, char ***argv, const char **connect, const char **key)
{
    while (*argc >= 2) {
        const char *a = (*argv)[1];
        const char *name = strncmp(a, "--connect", 9) == 0 ? "--connect"
                           : strncmp(a, "--key", 5) == 0   ? "--key"
                                                           : NULL;
        size_t n = name ? strlen(name) : 0;
        if (!name || (a[n] && a[n] != '='))
            return 0;
        if (!a[n] && *argc < 3) {
            fprintf(stderr, "silactl: %s needs a value\n", name);
            return -1;
        }
        const char *v = a[n] ? a + n + 1 : (*argv)[2];
        *(name[2] == 'c' ? connect : key) = v;
        *argc -= a[n] ? 1 : 2;
        *argv += a[n] ? 1 : 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *connect = SILA_RPC_DEFAULT, *key_path = getenv(SILA_KEY_ENV);
    if (global_options(&argc, &argv, &connect, &key_path))
        return 2;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (silactl_rpc_command(cmd)) {
        struct sila_key key;
        struct sila_err err;
        bool keyed = key_path && *key_path;
        if (keyed && sila_key_load(key_path, &key, &err)) {
            fprintf(stderr, "silactl: %s\n", err.msg);
            return EXIT_FAILURE;
        }
        int r = silactl_rpc(argc - 1, argv + 1, connect, keyed ? &key : NULL, key_path);
        if (keyed)
            sila_key_wipe(&key);
        return r;
    }
    if (strcmp(cmd, "keygen") == 0)
        return keygen(argc - 1, argv + 1);
    sila_threads_setup(0);
    if (strcmp(cmd, "eval") == 0)
        return silactl_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "inspect") == 0)
        return silactl_inspect(argc - 1, argv + 1);
    if (strcmp(cmd, "export") == 0)
        return silactl_export(argc - 1, argv + 1);
    if (strcmp(cmd, "plot") == 0)
        return silactl_plot(argc - 1, argv + 1);
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
