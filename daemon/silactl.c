/* silactl: the sila client. Offline commands on model files (eval,
 * inspect); the RPC commands to a running silad come with the RPC. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_model.h"
#include "threads.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: silactl COMMAND [ARGS]\n"
               "  eval MODEL [--data KIND:DIR] [--json]   accuracy, per-class accuracy and\n"
               "                                          confusion matrix on a test split\n"
               "  inspect MODEL [--json]                  architecture, parameters, provenance,\n"
               "                                          weights_sha256\n"
               "Kernel threads: OPENBLAS_NUM_THREADS or OMP_NUM_THREADS, else all cores.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    sila_threads_setup(0);
    if (strcmp(cmd, "eval") == 0)
        return ctl_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "inspect") == 0)
        return ctl_inspect(argc - 1, argv + 1);
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
