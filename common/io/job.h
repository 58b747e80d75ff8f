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
#include "half.h"
#include "net.h"
#include "optim.h"
#include "path.h"

enum sila_algorithm {
    SILA_ALGO_E2E = 1,   /* end-to-end backprop, aux heads unused */
    SILA_ALGO_LOCAL = 2, /* greedy local learning (DGL) */
    SILA_ALGO_PGL = 3,   /* local learning with periodic global guidance */
};

enum sila_aux_kind {
    SILA_AUX_LINEAR = 1,   /* gap, linear to C */
    SILA_AUX_CONV = 2,     /* conv3x3 (C->C)+BN+ReLU, gap, linear to C */
    SILA_AUX_MLP = 3,      /* avgpool to 2x2, flatten, 2 x (linear+BN+ReLU), linear to C */
    SILA_AUX_DGL = 4,      /* DGL's head: adaptive avgpool to grid x grid, convs x (1x1 conv
                              +BN+ReLU), adaptive avgpool to 2x2, flatten, mlp x (linear+BN
                              +ReLU), linear to C */
    SILA_AUX_INFOPRO = 5,  /* InfoPro's task head: conv3x3 (C->2C, stride 2 while H > 8,
                              else C->C) +BN+ReLU, gap, linear to hidden, ReLU, linear to C */
    SILA_AUX_AUGLOCAL = 6, /* AugLocal's: fresh copies of a spaced subset of the later
                              blocks and convs, gap, linear to C */
};

/* A module's local objective (METHODS.md section 4, docs/methods.md). */
enum sila_objective_kind {
    SILA_OBJ_CE = 1,     /* cross-entropy of the aux head (or the classifier) */
    SILA_OBJ_SILA = 2,   /* the head and a siamese twin head, with DML between them */
    SILA_OBJ_COLLAB = 3, /* CE mixed with the classifier's consensus soft targets */
    SILA_OBJ_COSUB = 4,  /* two drop-path passes, the 4-term BCE of cosub */
};

/* What a module's local steps minimise, and the aux head they minimise it
 * through. Every weight at 0 (collab_beta at 1) leaves plain CE, bit for
 * bit. Train-only: nothing of it is in the model. Every field is 4 bytes
 * (the parser resolves [objective] defaults field by field). */
struct sila_objective {
    enum sila_objective_kind kind;
    float sila_weight;       /* sila: weight of the twin's CE */
    float dml_weight;        /* sila: alpha of the mutual KL between head and twin */
    float temperature;       /* sila (DML) and collab: T of the softened distributions */
    float collab_beta;       /* collab: beta, the weight of CE against the soft target */
    float cosub_weight;      /* cosub: w in (1-w) CE + w cosub loss */
    float redundancy;        /* weight of the channel-correlation penalty on the output */
    float kernel_similarity; /* weight of the filter-similarity penalty on conv layers */
    enum sila_aux_kind aux;  /* the aux head's kind (linear) */
    int aux_hidden;          /* mlp, dgl: width of the hidden linear layers (256) */
    int aux_grid;            /* dgl: side of the first pooling (8) */
    int aux_convs;           /* dgl: 1x1 conv+BN+ReLU layers at the module's width (2) */
    int aux_mlp;             /* dgl: hidden linear+BN+ReLU layers (2) */
    int aux_depth;           /* auglocal: copies of later layers at the first module (3) */
    float aux_pyramid;       /* auglocal: how much the depth decays towards the last head (0.5) */
    /* InfoPro: the weights of the input's reconstruction (lambda_x) and of
     * the head's loss (lambda_y) at the first and at the last module with a
     * head, linear in the module's depth between them (0 0 1 1: plain). */
    float recon_first, recon_last, task_first, task_last;
    int recon_width; /* channels of the reconstruction decoder's hidden conv (12) */
    /* MAN: > 0 puts before the head the sum of a trainable copy of the next
     * module's first unit and a frozen copy whose weights follow that
     * unit's with this momentum (0: off) */
    float man_momentum;
    int man_period; /* MAN: steps between the snapshots of the next module's unit (10) */
};

/* Where global (PGL) steps keep their optimizer state. */
enum sila_global_state {
    SILA_GLOBAL_SHARED = 1,   /* one momentum for local and global steps */
    SILA_GLOBAL_SEPARATE = 2, /* global steps keep their own */
};

struct sila_job_module {
    int first_layer; /* index into sila_job.layers */
    int nlayers;
    int line;                        /* line of its [module] section */
    struct sila_objective objective; /* its own keys, the rest from [objective] */
    unsigned objective_set;          /* parser's: bit i = objective key i set here */
};

struct sila_job {
    char path[SILA_PATH_MAX]; /* the job file, for messages */
    char name[64];
    enum sila_dataset_kind dataset;
    char data_dir[SILA_DATA_DIR_MAX];
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
    /* Steps per module boundary a global step's backward trails its
     * forward by: module k of K learns from global step t before its step
     * t + global_lag (K - 1 - k), the pipeline never waiting for it
     * (docs/methods.md); 0: at once, each global step draining the pipeline. */
    int global_lag;
    int eval_every;      /* epochs between evaluations (the last epoch always evaluates) */
    int evals_per_epoch; /* evaluations spread evenly over each epoch that evaluates, the
                            last at its end: the run's rounds (plan.h) */
    uint32_t train_limit, test_limit; /* 0 = whole split */
    int augment_crop;                 /* random-crop padding in pixels, 0 = off */
    bool augment_flip;
    float label_smoothing;
    float drop_path; /* > 0: block i of n drops its residual branch with p = drop_path (i+1)/n */
    int checkpoint_every;     /* steps between checkpoints, 0 = none by count */
    float checkpoint_minutes; /* minutes between checkpoints, 0 = none by time */
    /* Where the saved model ends: SILA_DEPLOY_CLASSIFIER (the whole
     * network), SILA_DEPLOY_BEST_HEAD (the exit most accurate on the
     * held-out split, the cheapest within deploy_tolerance of it), or
     * N >= 1: module N's aux head after the modules up to N ("head:N"). */
    int deploy;
    float deploy_tolerance; /* best_head: percentage points an exit may trail the best by */
    uint32_t holdout;       /* the last this many training samples: held out, evaluated */
    /* how training activations and gradients cross a module boundary:
     * rounded to it in process, sent as it between workers */
    enum sila_dtype wire_dtype;

    struct sila_objective objective; /* [objective]: every module's default */
    float collab_rate;               /* collab: rate of the soft targets' moving average */

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
#define SILA_DEPLOY_CLASSIFIER 0
#define SILA_DEPLOY_BEST_HEAD (-1)
#define SILA_AUX_MAX_LAYERS 4       /* dgl: at most this many convs and hidden linear layers */
#define SILA_AUX_MAX_DEPTH 8        /* auglocal: at most this many copied layers */
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
/* job.deploy as written in a job file ("classifier", "best_head",
 * "head:3"), into buf. */
const char *sila_deploy_text(int deploy, char *buf, size_t len);
/* "module 3" or "modules 2-4" for 0-based first..last, written into buf. */
const char *sila_modules_text(int first, int last, char *buf, size_t len);
const char *sila_aux_kind_name(enum sila_aux_kind k);
const char *sila_objective_name(enum sila_objective_kind k);
/* Whether o is plain ce without penalties (what a module does by default). */
bool sila_objective_is_plain(const struct sila_objective *o);
/* InfoPro's weights of module k of K (0-based, k < K - 1): the
 * reconstruction's into *ret_recon and the head loss's into *ret_task,
 * interpolated from o's first and last values by k / (K - 2). */
void sila_objective_infopro_weights(const struct sila_objective *o, int k, int K, float *ret_recon,
                                    float *ret_task);
/* Whether any module of job trains with the collab objective (the soft
 * targets then travel with the batches). */
bool sila_job_uses_collab(const struct sila_job *job);

#endif
