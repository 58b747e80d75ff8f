/* silactl's commands to a running silad over its RPC: status, workers,
 * metrics, watch, pause, resume, stop. */
#ifndef SILA_SILACTL_RPC_H
#define SILA_SILACTL_RPC_H

#include <stdbool.h>

/* Whether cmd is one of them. */
bool silactl_rpc_command(const char *cmd);

struct sila_key;

/* Runs argv[0] (the command) with its options against the silad serving
 * the RPC at connect, signing requests with key and taking only replies
 * signed with it (NULL: bare requests and replies; key_path names the key
 * in messages). Returns the exit status. */
int silactl_rpc(int argc, char **argv, const char *connect, const struct sila_key *key,
                const char *key_path);

#endif
