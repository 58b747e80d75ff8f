/* Job files: what to train and how, parsed from INI (libinih) and checked
 * completely before anything runs.
 *
 * A job file has unique sections [job], [optimizer], [schedule], then the
 * network as an ordered list of layer sections ([conv2d], [batchnorm],
 * [relu], [maxpool], [avgpool], [gap], [flatten], [linear], [block],
 * [dropout], [droppath]), cut into modules by [module] sections: each
 * [module] starts a module and names its auxiliary head; the layers after it
 * belong to it. docs/jobs.md lists every key. Every error names the file,
 * the line and the key. */
#ifndef SILA_JOB_H
#define SILA_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "err.h"
#include "net.h"
#include "optim.h"

enum sila_algorithm {
    SILA_ALGO_E2E = 1,   /* end-to-end backprop, aux heads unused */
    SILA_ALGO_LOCAL = 2, /* greedy local learning (DGL) */
    SILA_ALGO_PGL = 3,   /* local learning with periodic global guidance */
};

enum sila_aux_kind {
    SILA_AUX_LINEAR = 1, /* gap, linear to C */
    SILA_AUX_CONV = 2,   /* conv3x3 (C->C)+BN+ReLU, gap, linear to C */
    SILA_AUX_MLP = 3,    /* avgpool to 2x2, flatten, 2 x (linear+BN+ReLU), linear to C */
};

/* Where global (PGL) steps keep their optimizer state. */
enum sila_global_state {
    SILA_GLOBAL_SHARED = 1,   /* one momentum for local and global steps */
    SILA_GLOBAL_SEPARATE = 2, /* global steps keep their own */
};

struct sila_job_module {
    int first_layer; /* index into sila_job.layers */
    int nlayers;
    enum sila_aux_kind aux;
    int aux_hidden; /* mlp head width (default 256) */
    int line;       /* line of its [module] section */
};

struct sila_job {
    char path[512]; /* the job file, for messages */
    char name[64];
    enum sila_dataset_kind dataset;
    char data_dir[256];
    struct sila_shape input; /* from the dataset kind */
    int nclasses;
    int epochs;
    int batch;
    uint64_t seed;
    enum sila_algorithm algorithm;
    int period;         /* pgl: P */
    int global_steps;   /* pgl: G, 0 < G <= P */
    float local_weight; /* pgl: mu */
    /* pgl variants (METHODS.md section 3, "the schedule"); all off by default */
    enum sila_global_state global_state;
    bool global_ramp;        /* G grows linearly over the run from 0 to 2G (same mean) */
    int global_epoch_end;    /* global steps added at the end of every epoch */
    bool heads_in_global;    /* aux heads learn in global steps, on detached inputs */
    bool local_weight_decay; /* mu decays linearly to 0 over the run */
    int eval_every;          /* epochs between evaluations (the last epoch always evaluates) */
    uint32_t train_limit, test_limit; /* 0 = whole split */
    int augment_crop;                 /* random-crop padding in pixels, 0 = off */
    bool augment_flip;
    float label_smoothing;
    int checkpoint_every;     /* steps between checkpoints, 0 = none by count */
    float checkpoint_minutes; /* minutes between checkpoints, 0 = none by time */

    struct sila_optim_cfg optim;
    struct sila_sched_cfg sched; /* lr and shape; step counts filled by the trainer */
    float warmup_epochs;         /* schedule, in epochs */
    float step_epochs;           /* step schedule period, in epochs */

    struct sila_layer_spec *layers; /* owned, nlayers of them */
    int *layer_lines;               /* owned: line of each layer's section */
    int nlayers;
    struct sila_job_module *modules; /* owned */
    int nmodules;

    /* The plan as given: the file's text and the overrides, owned. */
    char *text;
    size_t text_len;
    char **overrides;
    int noverrides;
};

#define SILA_MAX_MODULES 64
#define SILA_JOB_MAX_TEXT (1 << 20) /* bytes of a job file, at most */
#define SILA_PLAN_HASH_BYTES 32

/* Parses and validates path, then applies overrides ("section.key=value",
 * for the unique sections [job], [optimizer] and [schedule]; validated like
 * the file, errors naming the override). On success *job owns its arrays;
 * on failure it is zeroed and err says what is wrong, where. Errors:
 * -ENOENT or another errno for an unreadable file, -EINVAL for content. */
int sila_job_load(struct sila_job *job, const char *path, const char *const *overrides,
                  int noverrides, struct sila_err *err);

/* The same for a job file's text of len bytes, read elsewhere from path
 * (which names it in messages): how a worker takes the coordinator's plan.
 * Errors as above, and -EFBIG for a text over SILA_JOB_MAX_TEXT. */
int sila_job_parse(struct sila_job *job, const char *path, const char *text, size_t len,
                   const char *const *overrides, int noverrides, struct sila_err *err);

/* SHA-256 of the job's plan, its text and overrides: equal plans train the
 * same network the same way. */
void sila_job_plan_hash(const struct sila_job *job, uint8_t hash[SILA_PLAN_HASH_BYTES]);

/* Frees what the job owns and zeroes it; safe on a zeroed job. */
void sila_job_fini(struct sila_job *job);

const char *sila_algorithm_name(enum sila_algorithm a);
/* "module 3" or "modules 2-4" for 0-based first..last, written into buf. */
const char *sila_modules_text(int first, int last, char *buf, size_t len);
const char *sila_aux_kind_name(enum sila_aux_kind k);

#endif
