/* Model files: a net's architecture, tensors and provenance in the format of
 * proto/sila.proto (sila.Model behind a 24-byte header with magic, format
 * version, payload CRC-32 and length; docs/model-format.md).
 *
 * Saving is atomic (temporary file <path>.tmp.<pid>, fsync, rename). Loading validates
 * everything before trusting it: header, length against the file size,
 * checksum, protobuf decoding, format version, layer specs, and every
 * tensor's name, shape and size against the net the specs describe. */
#ifndef SILA_MODELFILE_H
#define SILA_MODELFILE_H

#include <stdint.h>

#include "err.h"
#include "net.h"
#include "path.h"

#define SILA_MODEL_FORMAT_VERSION 1u
#define SILA_MODEL_MAX_EXITS 64

/* Provenance of a model. Strings are NUL-terminated, truncated to fit. */
struct sila_model_info {
    char job[128];
    char algorithm[32];
    uint64_t seed;
    int epochs;
    float accuracy; /* final test accuracy in [0, 1] */
    char dataset_kind[16];
    char dataset_path[SILA_DATA_DIR_MAX];
    char created[32]; /* ISO 8601 UTC; filled by sila_model_save when empty */
    char sila_version[16];
    /* Where the model ends (job.deploy) and what chose it. */
    char deploy[16]; /* "classifier", "best_head", "head:N"; "" when not recorded */
    int exit_module; /* 0: the whole network; else the 1-based module whose head ends it */
    int modules;     /* K of the network trained, 0: not recorded */
    uint64_t full_params, full_macs; /* of the whole network */
    uint32_t holdout;                /* held-out samples the exits were measured on */
    int nexits;                      /* exits measured in the final evaluation (K), 0: none */
    float exit_test[SILA_MODEL_MAX_EXITS], exit_holdout[SILA_MODEL_MAX_EXITS];
};

/* A loaded model: owns its net and the blocks bound to it (grads NULL). */
struct sila_model {
    struct sila_net *net;
    float *params;
    float *buffers;
    int num_classes;
    struct sila_model_info info;
};

/* Writes net's tensors (read from params and buffers, as bound) with info to
 * path. Errors: negative errno of the failed system call, the message naming
 * the path. */
int sila_model_save(const char *path, const struct sila_net *net, const float *params,
                    const float *buffers, const struct sila_model_info *info, struct sila_err *err);

/* Loads path into m (zeroed on failure), building its net for batches of at
 * most max_batch. Errors: -ENOENT/-EACCES/... from opening, -EINVAL for any
 * invalid content, the message naming the path and what is wrong. */
int sila_model_load(struct sila_model *m, const char *path, int max_batch, struct sila_err *err);

/* SHA-256 of the weights alone, as 64 hex digits and a NUL in hex: every
 * tensor's float32 values (parameters and running statistics) in tensor
 * order, as little-endian bytes. Names, provenance and timestamps do not
 * enter it, so two runs that computed the same weights share it. */
void sila_weights_sha256(const struct sila_net *net, const float *params, const float *buffers,
                         char hex[65]);

/* Frees what m owns and zeroes it; safe on a zeroed model. */
void sila_model_fini(struct sila_model *m);

#endif
