/* Internal to common/io/job_*.c: the parser's state, the key tables and
 * the helpers the reader (job_parse.c), the key tables and values
 * (job_keys.c) and the whole-job checks (job_check.c) share. Not installed,
 * not used outside those files. */
#ifndef SILA_JOB_PARSER_H
#define SILA_JOB_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "job.h"
#include "layer.h"

#define MAX_KEYS 30

enum key_type { K_INT, K_U32, K_U64, K_FLOAT, K_BOOL, K_STR, K_ENUM, K_DATASET, K_DEPLOY };

/* FROM_0: a K_ENUM whose value i is names[i] (0, the first, its default) */
enum { LO_OPEN = 1, HI_OPEN = 2, REQUIRED = 4, IDENT = 8, FROM_0 = 16 };

struct key {
    const char *name;
    enum key_type type;
    size_t off;    /* of the field in the section's struct */
    double lo, hi; /* K_INT, K_FLOAT: allowed range */
    unsigned flags;
    size_t size;              /* K_STR: buffer bytes */
    const char *const *names; /* K_ENUM: value i + 1 is names[i] (i with FROM_0) */
};

/* The unique sections, indexed by their SEC_* value. */
enum {
    SEC_JOB,
    SEC_OPTIM,
    SEC_SCHED,
    SEC_OBJECTIVE,
    NUNIQUE,
    SEC_MODULE = NUNIQUE,
    SEC_LAYER,
    SEC_NONE
};

struct section {
    const char *name;
    const struct key *keys;
    int nkeys;
};

/* The objective keys: the same in [objective] and [module] (see job_keys.c),
 * module keys from MODULE_OBJECTIVE_KEY0 on; JOB_OBJ(f) the offset of field
 * f of the job's [objective]. */
#define JOB_OBJ(f) offsetof(struct sila_job, objective.f)
#define NOBJECTIVE_KEYS 22
enum { MODULE_OBJECTIVE_KEY0 = 0 }; /* job_module_keys[0..] are OBJECTIVE_KEYS */

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

extern const struct section job_sections[];
extern const struct key job_objective_keys[], job_module_keys[];

struct src {
    int line; /* file line that set the key, 0 = none */
    int ovr;  /* index of the override that set it last, -1 = none */
};

struct parser {
    struct sila_job *job;
    struct sila_err *err;
    int rc; /* first error; stops the reader */
    FILE *f;
    char *buf; /* getline buffer, owned */
    size_t cap;
    int line;                  /* real lines read so far */
    bool header_pending;       /* the reader owes libinih the synthetic line */
    bool header_sent;          /* the handler's next call is that line */
    char header[64];           /* name of the last section header read */
    int sec;                   /* SEC_* of the open section */
    enum sila_layer_kind kind; /* of the open layer section */
    int sec_line;
    int key_line[MAX_KEYS];   /* of each key set in the open section, 0 = unset */
    int unique_line[NUNIQUE]; /* of each unique section, 0 = absent */
    struct sila_shape module_out[SILA_MAX_MODULES]; /* each module's output, by check_net */
    struct src src[NUNIQUE][MAX_KEYS];
    int layers_cap, modules_cap;
    const char *const *overrides;
};

/* Where a message points: "FILE:LINE" or "override 'TEXT'". */
struct loc {
    char s[SILA_PATH_MAX + 16];
};

/* "FILE:LINE" of job p, or of the key k of unique section s (a file line,
 * the section's, or the override that set it). */
struct loc job_at_line(const struct parser *p, int line);
struct loc job_at_key(const struct parser *p, int s, int k);
/* Writes "WHERE: [SEC] KEY: MESSAGE" (sec and key may be NULL) into p's
 * error and returns -EINVAL. */
int job_fail(struct parser *p, struct loc where, const char *sec, const char *key, const char *fmt,
             ...) __attribute__((format(printf, 5, 6)));

/* Index of key `name` in section s, or -1. */
int job_find_key(const struct section *s, const char *name);
/* Parses text v into key k's field of base; NULL, or why it is not a value
 * of the key (why is the buffer of n bytes it may write). */
const char *job_set_value(const struct key *k, void *base, const char *v, char *why, size_t n);
/* Whether key k's field of base lies in the key's range; else why, in why. */
bool job_in_range(const struct key *k, const void *base, char *why, size_t n);

/* The whole-job checks, after the file and the overrides: 0, or the first
 * error (-EINVAL) in p's err. */
int job_validate(struct parser *p);

#endif
