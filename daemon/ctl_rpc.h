/* silactl's commands to a running silad over its RPC: status, workers,
 * metrics, watch, pause, resume, stop. */
#ifndef SILA_CTL_RPC_H
#define SILA_CTL_RPC_H

#include <stdbool.h>

/* Whether cmd is one of them. */
bool ctl_rpc_command(const char *cmd);

/* Runs argv[0] (the command) with its options against the silad serving
 * the RPC at connect. Returns the exit status. */
int ctl_rpc(int argc, char **argv, const char *connect);

#endif
