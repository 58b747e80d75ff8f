/* Model files: a net's architecture, tensors, provenance and input record
 * in the format of proto/sila.proto (sila.Model behind a 24-byte header
 * with magic, format version, payload CRC-32 and length;
 * docs/model-format.md).
 *
 * Saving is atomic (temporary file <path>.tmp.<pid>, fsync, rename).
 * Loading validates everything before trusting it: header, length against
 * the file size, checksum, protobuf decoding, format version, layer specs,
 * every tensor's name, shape and size against the net the specs describe,
 * and the input record against the net's input and classes. */
#ifndef SILA_MODELFILE_H
#define SILA_MODELFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "dataset.h"
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

/* What a model takes in and what its outputs mean (sila.InputSpec): the
 * input x = (pixel/255 - mean[c]) / std[c] for each of its channels c, in
 * `layout`, and the classes' names by label. */
struct sila_model_input {
    char dataset_kind[16]; /* "fmnist", ...; "" when not known */
    char layout[8];        /* "NCHW" */
    int channels;          /* entries of mean and std: the net's input channels */
    const float *mean, *std;
    int nnames;               /* 0 (none known) or the net's classes */
    const char *const *names; /* nnames names, by label */
    bool recorded; /* loaded: the file holds it (else it predates the record: its kind's values) */
};

/* The record of a model of dataset `kind` with `channels` (at most 3)
 * input channels and `nclasses` classes, from the dataset module's tables:
 * the kind's normalisation (mean and std point into *norm, which the
 * caller keeps) and its class names when it has nclasses of them. */
struct sila_model_input sila_model_input_of_kind(enum sila_dataset_kind kind, int channels,
                                                 int nclasses, const struct sila_norm *norm);

/* A loaded model: owns its net, the blocks bound to it (grads NULL) and
 * what `input` points to. */
struct sila_model {
    struct sila_net *net;
    float *params;
    float *buffers;
    int num_classes;
    struct sila_model_info info;
    struct sila_model_input input;
    void *input_store; /* owned: input's values and names */
};

/* Writes net's tensors (read from params and buffers, as bound) with info
 * and the input record to path; input->channels is the net's input
 * channels and input->nnames 0 or its classes. Errors: negative errno of
 * the failed system call, the message naming the path. */
int sila_model_save(const char *path, const struct sila_net *net, const float *params,
                    const float *buffers, const struct sila_model_info *info,
                    const struct sila_model_input *input, struct sila_err *err);

/* Loads path into m (zeroed on failure), building its net for batches of at
 * most max_batch. A file without an input record gets its dataset kind's
 * (provenance.dataset_kind; mean 0 and std 1 for an unknown kind).
 * Errors: -ENOENT/-EACCES/... from opening, -EINVAL for any invalid
 * content, the message naming the path and what is wrong. */
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
