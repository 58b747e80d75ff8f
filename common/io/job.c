/* Job files (see job.h): libinih reads the INI syntax through our own line
 * reader; the handler stores each value as it arrives; then every value
 * range, the rules that tie keys together and the network's shapes are
 * checked, each error naming file, line, section and key.
 *
 * libinih (Debian 55) gives the handler no line numbers and never calls it
 * for a section without keys ([relu]). The reader therefore counts the real
 * lines itself and, right after a section header, hands libinih one
 * synthetic "__section_line__ = N" line that it does not count, so the
 * handler sees every section open and a key's line is the reader's current
 * line. The reader also strips leading blanks (so libinih's multi-line
 * continuation never applies), refuses lines libinih would cut, and checks
 * each line's syntax before libinih sees it, so libinih is left with no
 * error of its own to report.
 *
 * Values of [job], [optimizer] and [schedule] are range-checked only after
 * the overrides, so that an override can correct a file; every value
 * remembers where it came from (a file line or an override) for messages.
 * Layer and [module] values are range-checked as they are read. */
#include "job.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>
#include <sodium.h>

#define SECTION_MARK "__section_line__"
#define MAX_KEYS 24
#define MAX_ACT (1 << 24)     /* values per sample of one layer's output */
#define MAX_SCRATCH (1 << 28) /* floats of one conv's im2col scratch per sample */

/* Enum fields are written through an int. */
_Static_assert(sizeof(enum sila_algorithm) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sila_aux_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sila_optim_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sila_sched_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sila_dataset_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sila_global_state) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sila_objective_kind) == sizeof(float), "objective fields are 4 bytes");

/* ---- key tables ---- */

enum key_type { K_INT, K_U32, K_U64, K_FLOAT, K_BOOL, K_STR, K_ENUM, K_DATASET };

enum { LO_OPEN = 1, HI_OPEN = 2, REQUIRED = 4, IDENT = 8 };

struct key {
    const char *name;
    enum key_type type;
    size_t off;    /* of the field in the section's struct */
    double lo, hi; /* K_INT, K_FLOAT: allowed range */
    unsigned flags;
    size_t size;              /* K_STR: buffer bytes */
    const char *const *names; /* K_ENUM: value i + 1 is names[i] */
};

static const char *const algo_names[] = {"e2e", "local", "pgl", NULL};
static const char *const aux_names[] = {"linear", "conv",     "mlp",
                                         "dgl",    "infopro", "auglocal", NULL};
static const char *const optim_names[] = {"sgd", "adamw", NULL};
static const char *const sched_names[] = {"constant", "step", "cosine", NULL};
static const char *const global_state_names[] = {"shared", "separate", NULL};
static const char *const objective_names[] = {"ce", "sila", "collab", "cosub", NULL};

/* One table entry per key: NUM (K_INT or K_FLOAT, with range and flags),
 * TYPED (no range), STR (a char array) and ENUM (names). */
/* clang-format off */
#define NUM(n, t, o, lo, hi, fl) {n, t, o, lo, hi, fl, 0, NULL}
#define TYPED(n, t, o, fl) {n, t, o, 0, 0, fl, 0, NULL}
#define STR(n, f, fl) {n, K_STR, JOB(f), 0, 0, fl, sizeof(((struct sila_job *)0)->f), NULL}
#define ENUM(n, o, fl, names) {n, K_ENUM, o, 0, 0, fl, 0, names}
/* clang-format on */
#define JOB(f) offsetof(struct sila_job, f)
#define SPEC(f) offsetof(struct sila_layer_spec, f)
#define INF INFINITY

static const struct key job_keys[] = {
    STR("name", name, REQUIRED | IDENT),
    TYPED("dataset", K_DATASET, JOB(dataset), REQUIRED),
    STR("data_dir", data_dir, 0),
    NUM("epochs", K_INT, JOB(epochs), 1, INF, REQUIRED),
    NUM("batch", K_INT, JOB(batch), 1, 65536, REQUIRED),
    TYPED("seed", K_U64, JOB(seed), 0),
    ENUM("algorithm", JOB(algorithm), REQUIRED, algo_names),
    NUM("period", K_INT, JOB(period), 1, INF, 0),
    NUM("global_steps", K_INT, JOB(global_steps), 1, INF, 0),
    NUM("local_weight", K_FLOAT, JOB(local_weight), 0, INF, 0),
    ENUM("global_state", JOB(global_state), 0, global_state_names),
    TYPED("global_ramp", K_BOOL, JOB(global_ramp), 0),
    NUM("global_epoch_end", K_INT, JOB(global_epoch_end), 0, INF, 0),
    TYPED("heads_in_global", K_BOOL, JOB(heads_in_global), 0),
    TYPED("local_weight_decay", K_BOOL, JOB(local_weight_decay), 0),
    NUM("eval_every", K_INT, JOB(eval_every), 1, INF, 0),
    TYPED("train_limit", K_U32, JOB(train_limit), 0),
    TYPED("test_limit", K_U32, JOB(test_limit), 0),
    NUM("augment_crop", K_INT, JOB(augment_crop), 0, 16, 0),
    TYPED("augment_flip", K_BOOL, JOB(augment_flip), 0),
    NUM("label_smoothing", K_FLOAT, JOB(label_smoothing), 0, 1, HI_OPEN),
    NUM("drop_path", K_FLOAT, JOB(drop_path), 0, 1, HI_OPEN),
    NUM("checkpoint_every", K_INT, JOB(checkpoint_every), 0, INF, 0),
    NUM("checkpoint_minutes", K_FLOAT, JOB(checkpoint_minutes), 0, INF, 0),
};

static const struct key optim_keys[] = {
    ENUM("kind", JOB(optim.kind), 0, optim_names),
    NUM("lr", K_FLOAT, JOB(sched.lr), 0, INF, LO_OPEN | REQUIRED),
    NUM("momentum", K_FLOAT, JOB(optim.momentum), 0, 1, HI_OPEN),
    TYPED("nesterov", K_BOOL, JOB(optim.nesterov), 0),
    NUM("weight_decay", K_FLOAT, JOB(optim.weight_decay), 0, INF, 0),
    NUM("beta1", K_FLOAT, JOB(optim.beta1), 0, 1, HI_OPEN),
    NUM("beta2", K_FLOAT, JOB(optim.beta2), 0, 1, HI_OPEN),
    NUM("eps", K_FLOAT, JOB(optim.eps), 0, INF, LO_OPEN),
};

static const struct key sched_keys[] = {
    ENUM("kind", JOB(sched.kind), 0, sched_names),
    NUM("min_lr", K_FLOAT, JOB(sched.min_lr), 0, INF, 0),
    NUM("warmup_epochs", K_FLOAT, JOB(warmup_epochs), 0, INF, 0),
    NUM("step_epochs", K_FLOAT, JOB(step_epochs), 0, INF, LO_OPEN),
    NUM("gamma", K_FLOAT, JOB(sched.gamma), 0, 1, LO_OPEN),
};

/* The keys of a module's objective, the same in [objective] (every
 * module's default; `kind` there) and in [module] (that module's own;
 * `objective` there), AT(f) giving the field's offset in either. */
#define OBJECTIVE_KEYS(AT, kind_name)                                                              \
    ENUM(kind_name, AT(kind), 0, objective_names),                                                 \
        NUM("sila_weight", K_FLOAT, AT(sila_weight), 0, INF, 0),                                   \
        NUM("dml_weight", K_FLOAT, AT(dml_weight), 0, INF, 0),                                     \
        NUM("temperature", K_FLOAT, AT(temperature), 0, 100, LO_OPEN),                             \
        NUM("collab_beta", K_FLOAT, AT(collab_beta), 0, 1, 0),                                     \
        NUM("cosub_weight", K_FLOAT, AT(cosub_weight), 0, 1, 0),                                   \
        NUM("redundancy", K_FLOAT, AT(redundancy), 0, INF, 0),                                     \
        NUM("kernel_similarity", K_FLOAT, AT(kernel_similarity), 0, INF, 0),                       \
        ENUM("aux", AT(aux), 0, aux_names), NUM("aux_hidden", K_INT, AT(aux_hidden), 1, 65536, 0), \
        NUM("aux_grid", K_INT, AT(aux_grid), 1, 64, 0),                                            \
        NUM("aux_convs", K_INT, AT(aux_convs), 0, SILA_AUX_MAX_LAYERS, 0),                         \
        NUM("aux_mlp", K_INT, AT(aux_mlp), 0, SILA_AUX_MAX_LAYERS, 0),                             \
        NUM("aux_depth", K_INT, AT(aux_depth), 1, SILA_AUX_MAX_DEPTH, 0),                          \
        NUM("aux_pyramid", K_FLOAT, AT(aux_pyramid), 0, 1, 0),                                     \
        NUM("recon_first", K_FLOAT, AT(recon_first), 0, INF, 0),                                   \
        NUM("recon_last", K_FLOAT, AT(recon_last), 0, INF, 0),                                     \
        NUM("task_first", K_FLOAT, AT(task_first), 0, INF, 0),                                     \
        NUM("task_last", K_FLOAT, AT(task_last), 0, INF, 0),                                       \
        NUM("recon_width", K_INT, AT(recon_width), 1, 4096, 0)
#define JOB_OBJ(f) offsetof(struct sila_job, objective.f)
#define MOD_OBJ(f) offsetof(struct sila_job_module, objective.f)
#define NOBJECTIVE_KEYS 20

static const struct key objective_keys[] = {
    OBJECTIVE_KEYS(JOB_OBJ, "kind"),
    NUM("collab_rate", K_FLOAT, JOB(collab_rate), 0, 1, LO_OPEN),
};

enum { MODULE_OBJECTIVE_KEY0 = 0 }; /* module_keys[0..] are OBJECTIVE_KEYS */
static const struct key module_keys[] = {
    OBJECTIVE_KEYS(MOD_OBJ, "objective"),
};

/* Layer keys; bit i of layer_key_mask[kind] allows layer_keys[i]. */
static const struct key layer_keys[] = {
    NUM("out", K_INT, SPEC(out), 1, 65536, 0),
    NUM("kernel", K_INT, SPEC(kernel), 1, 64, 0),
    NUM("stride", K_INT, SPEC(stride), 1, 64, 0),
    NUM("pad", K_INT, SPEC(pad), 0, 64, 0),
    TYPED("bias", K_BOOL, SPEC(bias), 0),
    NUM("p", K_FLOAT, SPEC(p), 0, 1, HI_OPEN),
    NUM("momentum", K_FLOAT, SPEC(bn_momentum), 0, 1, 0),
    NUM("eps", K_FLOAT, SPEC(bn_eps), 0, INF, LO_OPEN),
};
enum { LK_OUT = 1, LK_KERNEL = 2, LK_STRIDE = 4, LK_PAD = 8, LK_BIAS = 16, LK_P = 32 };
enum { LK_MOMENTUM = 64, LK_EPS = 128 };
static const unsigned layer_key_mask[SILA_LAYER_KIND_MAX + 1] = {
    [SILA_LAYER_LINEAR] = LK_OUT | LK_BIAS,
    [SILA_LAYER_CONV2D] = LK_OUT | LK_KERNEL | LK_STRIDE | LK_PAD | LK_BIAS,
    [SILA_LAYER_BATCHNORM] = LK_MOMENTUM | LK_EPS,
    [SILA_LAYER_MAXPOOL] = LK_KERNEL | LK_STRIDE | LK_PAD,
    [SILA_LAYER_AVGPOOL] = LK_KERNEL | LK_STRIDE | LK_PAD,
    [SILA_LAYER_BLOCK] = LK_OUT | LK_STRIDE | LK_P | LK_MOMENTUM | LK_EPS,
    [SILA_LAYER_DROPOUT] = LK_P,
    [SILA_LAYER_DROPPATH] = LK_P,
    [SILA_LAYER_ADAPTIVE_AVGPOOL] = LK_OUT,
    [SILA_LAYER_UPSAMPLE] = LK_OUT,
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))
_Static_assert(COUNT(job_keys) <= MAX_KEYS && COUNT(optim_keys) <= MAX_KEYS &&
                   COUNT(sched_keys) <= MAX_KEYS && COUNT(objective_keys) <= MAX_KEYS &&
                   COUNT(module_keys) <= MAX_KEYS && COUNT(layer_keys) <= 32,
               "key tables fit the per-section arrays");
_Static_assert(COUNT(module_keys) == MODULE_OBJECTIVE_KEY0 + NOBJECTIVE_KEYS &&
                   COUNT(objective_keys) == NOBJECTIVE_KEYS + 1,
               "the objective keys are where the resolution expects them");

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

static const struct section sections[] = {
    [SEC_JOB] = {"job", job_keys, COUNT(job_keys)},
    [SEC_OPTIM] = {"optimizer", optim_keys, COUNT(optim_keys)},
    [SEC_SCHED] = {"schedule", sched_keys, COUNT(sched_keys)},
    [SEC_OBJECTIVE] = {"objective", objective_keys, COUNT(objective_keys)},
    [SEC_MODULE] = {"module", module_keys, COUNT(module_keys)},
    [SEC_LAYER] = {NULL, layer_keys, COUNT(layer_keys)},
};

/* ---- parser state and messages ---- */

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
    char s[640];
};

static struct loc at_line(const struct parser *p, int line)
{
    struct loc l;
    snprintf(l.s, sizeof l.s, "%s:%d", p->job->path, line > 0 ? line : 1);
    return l;
}

static struct loc at_override(const char *text)
{
    struct loc l;
    snprintf(l.s, sizeof l.s, "override '%.200s'", text ? text : "(null)");
    return l;
}

/* Of a key of a unique section: its last setter, else the section. */
static struct loc at_key(const struct parser *p, int s, int k)
{
    const struct src *src = &p->src[s][k];
    if (src->ovr >= 0)
        return at_override(p->overrides[src->ovr]);
    return at_line(p, src->line ? src->line : p->unique_line[s]);
}

/* Writes "WHERE: [SEC] KEY: MESSAGE" (sec and key may be NULL) and returns
 * -EINVAL. */
static int fail(struct parser *p, struct loc where, const char *sec, const char *key,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int fail(struct parser *p, struct loc where, const char *sec, const char *key,
                const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char head[80] = "";
    if (sec && key)
        snprintf(head, sizeof head, "[%.32s] %.40s: ", sec, key);
    else if (sec)
        snprintf(head, sizeof head, "[%.32s]: ", sec);
    else if (key)
        snprintf(head, sizeof head, "%.40s: ", key);
    return sila_err_set(p->err, -EINVAL, "%s: %s%s", where.s, head, msg);
}

static int out_of_memory(struct parser *p)
{
    return sila_err_set(p->err, -ENOMEM, "%s:%d: out of memory", p->job->path, p->line);
}

static const char *open_name(const struct parser *p)
{
    if (p->sec == SEC_LAYER)
        return sila_layer_kind_name(p->kind);
    return p->sec == SEC_NONE ? NULL : sections[p->sec].name;
}

/* ---- values ---- */

static const char *parse_int(const char *v, int *ret)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end)
        return "is not an integer";
    if (errno == ERANGE || x < INT_MIN || x > INT_MAX)
        return "is out of range";
    *ret = (int)x;
    return NULL;
}

static const char *parse_unsigned(const char *v, uint64_t max, uint64_t *ret)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v || *end || strchr(v, '-'))
        return "is not a non-negative integer";
    if (errno == ERANGE || x > max)
        return "is out of range";
    *ret = x;
    return NULL;
}

static const char *parse_float(const char *v, float *ret)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end)
        return "is not a number";
    if (!isfinite(x) || fabs(x) > FLT_MAX)
        return "is not a finite number";
    *ret = (float)x;
    return NULL;
}

static const char *parse_bool(const char *v, bool *ret)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++)
        if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
            *ret = strcasecmp(v, yes[i]) == 0;
            return NULL;
        }
    return "is not a boolean (true/false, yes/no, on/off, 1/0)";
}

static bool is_ident(const char *s)
{
    if (!isalnum((unsigned char)*s))
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("._-", *s))
            return false;
    return true;
}

static const char *parse_str(const struct key *k, const char *v, char *dst, char *why, size_t n)
{
    if (!*v)
        return "is empty";
    if (strlen(v) >= k->size) {
        snprintf(why, n, "is too long (at most %zu characters)", k->size - 1);
        return why;
    }
    if ((k->flags & IDENT) && !is_ident(v))
        return "is not a plain name (letters, digits, '.', '_', '-'; first a letter or digit)";
    memcpy(dst, v, strlen(v) + 1);
    return NULL;
}

/* "one of a, b, c" into why. */
static const char *one_of(const char *const *names, int count, char *why, size_t n)
{
    size_t len = (size_t)snprintf(why, n, "is not one of ");
    for (int i = 0; i < count && len < n; i++)
        len += (size_t)snprintf(why + len, n - len, "%s%s", i ? ", " : "", names[i]);
    return why;
}

static const char *parse_enum(const char *const *names, const char *v, int *ret, char *why,
                              size_t n)
{
    int i;
    for (i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0) {
            *ret = i + 1;
            return NULL;
        }
    return one_of(names, i, why, n);
}

static const char *parse_dataset(const char *v, int *ret, char *why, size_t n)
{
    enum sila_dataset_kind kind;
    if (sila_dataset_kind_parse(v, &kind) == 0) {
        *ret = (int)kind;
        return NULL;
    }
    const char *names[SILA_DATASET_CIFAR100];
    for (int i = 0; i < SILA_DATASET_CIFAR100; i++)
        names[i] = sila_dataset_kind_name((enum sila_dataset_kind)(i + 1));
    return one_of(names, SILA_DATASET_CIFAR100, why, n);
}

/* Parses v into key k's field at base. Returns NULL, or why v is refused
 * (possibly written into why). */
static const char *set_value(const struct key *k, void *base, const char *v, char *why, size_t n)
{
    void *dst = (char *)base + k->off;
    uint64_t u;
    const char *bad;
    if (!*v)
        return "is empty";
    switch (k->type) {
    case K_INT:
        return parse_int(v, dst);
    case K_U32:
        if (!(bad = parse_unsigned(v, UINT32_MAX, &u)))
            *(uint32_t *)dst = (uint32_t)u;
        return bad;
    case K_U64:
        return parse_unsigned(v, UINT64_MAX, dst);
    case K_FLOAT:
        return parse_float(v, dst);
    case K_BOOL:
        return parse_bool(v, dst);
    case K_STR:
        return parse_str(k, v, dst, why, n);
    case K_ENUM:
        return parse_enum(k->names, v, dst, why, n);
    case K_DATASET:
        return parse_dataset(v, dst, why, n);
    }
    return "has a key type this build does not know";
}

/* Whether the number in key k's field at base is in range; when not, writes
 * "VALUE is out of range (must be ...)" into why. */
static bool in_range(const struct key *k, const void *base, char *why, size_t n)
{
    const void *src = (const char *)base + k->off;
    double x;
    if (k->type == K_INT)
        x = *(const int *)src;
    else if (k->type == K_FLOAT)
        x = *(const float *)src;
    else
        return true;
    bool lo_ok = k->flags & LO_OPEN ? x > k->lo : x >= k->lo;
    bool hi_ok = k->flags & HI_OPEN ? x < k->hi : x <= k->hi;
    if (lo_ok && hi_ok)
        return true;
    if (isinf(k->hi))
        snprintf(why, n, "%g is out of range (must be %s %g)", x,
                 k->flags & LO_OPEN ? ">" : ">=", k->lo);
    else if (k->type == K_INT)
        snprintf(why, n, "%g is out of range (must be %g to %g)", x, k->lo, k->hi);
    else
        snprintf(why, n, "%g is out of range (must be in %c%g, %g%c)", x,
                 k->flags & LO_OPEN ? '(' : '[', k->lo, k->hi, k->flags & HI_OPEN ? ')' : ']');
    return false;
}

static int find_key(const struct section *s, const char *name)
{
    for (int i = 0; i < s->nkeys; i++)
        if (strcmp(s->keys[i].name, name) == 0)
            return i;
    return -1;
}

/* ---- sections ---- */

static bool key_allowed(const struct parser *p, int k)
{
    return p->sec != SEC_LAYER || (layer_key_mask[p->kind] & (1u << k));
}

/* "(SEC takes a, b, c)" or "(SEC takes no keys)" into buf. */
static const char *keys_hint(const struct parser *p, char *buf, size_t n)
{
    const struct section *s = &sections[p->sec];
    size_t len = (size_t)snprintf(buf, n, "%s takes", open_name(p));
    int listed = 0;
    for (int i = 0; i < s->nkeys && len < n; i++)
        if (key_allowed(p, i))
            len +=
                (size_t)snprintf(buf + len, n - len, "%s %s", listed++ ? "," : "", s->keys[i].name);
    if (!listed && len < n)
        snprintf(buf + len, n - len, " no keys");
    return buf;
}

static void *section_base(struct parser *p)
{
    struct sila_job *j = p->job;
    if (p->sec == SEC_MODULE)
        return &j->modules[j->nmodules - 1];
    if (p->sec == SEC_LAYER)
        return &j->layers[j->nlayers - 1];
    return j;
}

/* Ends the open section: a pool's stride defaults to its kernel, and
 * linear, conv2d and block need `out`. */
static int close_section(struct parser *p)
{
    if (p->sec != SEC_LAYER)
        return 0;
    struct sila_layer_spec *s = &p->job->layers[p->job->nlayers - 1];
    bool pool = s->kind == SILA_LAYER_MAXPOOL || s->kind == SILA_LAYER_AVGPOOL;
    if (pool && !p->key_line[find_key(&sections[SEC_LAYER], "stride")])
        s->stride = s->kernel;
    if ((layer_key_mask[s->kind] & LK_OUT) && !p->key_line[find_key(&sections[SEC_LAYER], "out")])
        return fail(p, at_line(p, p->sec_line), open_name(p), "out", "missing (required)");
    return 0;
}

static int open_unique(struct parser *p, int s)
{
    if (p->unique_line[s])
        return fail(p, at_line(p, p->line), sections[s].name, NULL,
                    "duplicate section (first at line %d)", p->unique_line[s]);
    p->unique_line[s] = p->line;
    p->sec = s;
    return 0;
}

static int open_module(struct parser *p)
{
    struct sila_job *j = p->job;
    if (j->nmodules == p->modules_cap) {
        int cap = p->modules_cap ? 2 * p->modules_cap : 8;
        struct sila_job_module *m = realloc(j->modules, sizeof *m * cap);
        if (!m)
            return out_of_memory(p);
        j->modules = m;
        p->modules_cap = cap;
    }
    j->modules[j->nmodules++] = (struct sila_job_module){
        .first_layer = j->nlayers, .line = p->line};
    p->sec = SEC_MODULE;
    return 0;
}

static int grow_layers(struct parser *p)
{
    struct sila_job *j = p->job;
    int cap = p->layers_cap ? 2 * p->layers_cap : 16;
    struct sila_layer_spec *l = realloc(j->layers, sizeof *l * cap);
    if (!l)
        return out_of_memory(p);
    j->layers = l;
    int *lines = realloc(j->layer_lines, sizeof *lines * cap);
    if (!lines)
        return out_of_memory(p);
    j->layer_lines = lines;
    p->layers_cap = cap;
    return 0;
}

static int open_layer(struct parser *p, enum sila_layer_kind kind)
{
    struct sila_job *j = p->job;
    if (j->nmodules == 0)
        return fail(p, at_line(p, p->line), sila_layer_kind_name(kind), NULL,
                    "layer before the first [module]: every layer belongs to a module");
    int r;
    if (j->nlayers == p->layers_cap && (r = grow_layers(p)))
        return r;
    j->layers[j->nlayers] = sila_layer_spec_default(kind);
    j->layer_lines[j->nlayers++] = p->line;
    j->modules[j->nmodules - 1].nlayers++;
    p->sec = SEC_LAYER;
    p->kind = kind;
    return 0;
}

static int unknown_section(struct parser *p)
{
    char kinds[160];
    size_t len = 0;
    for (int k = SILA_LAYER_LINEAR; k <= SILA_LAYER_KIND_MAX && len < sizeof kinds; k++)
        len += (size_t)snprintf(kinds + len, sizeof kinds - len, "%s%s",
                                k > SILA_LAYER_LINEAR ? ", " : "",
                                sila_layer_kind_name((enum sila_layer_kind)k));
    p->sec = SEC_NONE;
    return fail(p, at_line(p, p->line), p->header, NULL,
                "unknown section (expected job, optimizer, schedule, objective, module, or a "
                "layer: %s)",
                kinds);
}

/* Starts the section whose header the reader just passed. */
static int open_section(struct parser *p)
{
    int r = close_section(p);
    if (r)
        return r;
    memset(p->key_line, 0, sizeof p->key_line);
    p->sec_line = p->line;
    for (int s = 0; s < NUNIQUE; s++)
        if (strcmp(p->header, sections[s].name) == 0)
            return open_unique(p, s);
    if (strcmp(p->header, "module") == 0)
        return open_module(p);
    enum sila_layer_kind kind;
    if (sila_layer_kind_parse(p->header, &kind) == 0)
        return open_layer(p, kind);
    return unknown_section(p);
}

/* Stores one key = value of the file into the open section. */
static int set_file_key(struct parser *p, const char *name, const char *value)
{
    struct loc here = at_line(p, p->line);
    if (p->sec == SEC_NONE)
        return fail(p, here, NULL, name, "key outside any section (the file starts with [job])");
    const struct section *s = &sections[p->sec];
    int k = find_key(s, name);
    char why[256];
    if (k < 0 || !key_allowed(p, k))
        return fail(p, here, open_name(p), name, "unknown key (%s)", keys_hint(p, why, sizeof why));
    if (p->key_line[k])
        return fail(p, here, open_name(p), name, "duplicate key (first set at line %d)",
                    p->key_line[k]);
    p->key_line[k] = p->line;
    const char *bad = set_value(&s->keys[k], section_base(p), value, why, sizeof why);
    if (bad)
        return fail(p, here, open_name(p), name, "'%.100s' %s", value, bad);
    if (p->sec == SEC_MODULE && k >= MODULE_OBJECTIVE_KEY0)
        p->job->modules[p->job->nmodules - 1].objective_set |= 1u << (k - MODULE_OBJECTIVE_KEY0);
    if (p->sec < NUNIQUE)
        p->src[p->sec][k].line = p->line;
    else if (!in_range(&s->keys[k], section_base(p), why, sizeof why))
        return fail(p, here, open_name(p), name, "%s", why);
    return 0;
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
    struct parser *p = user;
    (void)section; /* libinih's copy is cut at 50 characters: p->header is used */
    if (p->rc)
        return 0;
    if (p->header_sent) {
        p->header_sent = false;
        p->rc = open_section(p);
    } else {
        p->rc = set_file_key(p, name, value ? value : "");
    }
    return p->rc == 0;
}

/* ---- the line reader ---- */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* libinih's rule: '=' or ':' before any inline comment (';' after a blank). */
static bool has_separator(const char *s)
{
    bool was_space = false;
    for (; *s; s++) {
        if (*s == '=' || *s == ':')
            return true;
        if (was_space && *s == ';')
            return false;
        was_space = isspace((unsigned char)*s);
    }
    return false;
}

static int check_header(struct parser *p, char *s)
{
    struct loc here = at_line(p, p->line);
    char *close = strchr(s, ']');
    if (!close)
        return fail(p, here, NULL, NULL, "malformed section header '%.60s' (no closing ']')", s);
    size_t n = (size_t)(close - s - 1);
    const char *rest = close + 1;
    rest += strspn(rest, " \t");
    if (*rest && *rest != ';' && *rest != '#')
        return fail(p, here, NULL, NULL, "malformed section header '%.60s' (text after ']')", s);
    if (n == 0 || n >= sizeof p->header || strcspn(s + 1, " \t;[") < n)
        return fail(p, here, NULL, NULL, "malformed section header '%.60s'", s);
    memcpy(p->header, s + 1, n);
    p->header[n] = '\0';
    p->header_pending = true;
    return 0;
}

/* The name of a "key = value" line, for messages about the line. */
static const char *line_key(const char *s, char *buf, size_t n)
{
    size_t len = strcspn(s, "=:");
    if (!s[len] || len == 0)
        return NULL;
    snprintf(buf, n, "%.*s", (int)(len < n ? len : n - 1), s);
    return trim(buf);
}

/* Checks one raw line of `len` bytes (newline stripped) and returns its
 * trimmed text through *ret_s. */
static int check_line(struct parser *p, char *raw, size_t len, int num, char **ret_s)
{
    struct loc here = at_line(p, p->line);
    char key[48];
    if (strlen(raw) != len)
        return fail(p, here, open_name(p), NULL, "line contains a NUL byte");
    if (len > (size_t)num - 3)
        return fail(p, here, open_name(p), line_key(trim(raw), key, sizeof key),
                    "line is too long (%zu characters, libinih reads at most %d)", len, num - 3);
    char *s = trim(raw);
    *ret_s = s;
    if (!*s || *s == ';' || *s == '#')
        return 0;
    if (*s == '[')
        return check_header(p, s);
    if (!has_separator(s))
        return fail(p, here, open_name(p), NULL,
                    "expected 'key = value' or '[section]', got '%.60s'", s);
    return 0;
}

/* libinih's fgets-like reader (see the file comment). */
static char *read_line(char *str, int num, void *stream)
{
    struct parser *p = stream;
    if (p->rc)
        return NULL;
    if (p->header_pending) {
        p->header_pending = false;
        p->header_sent = true;
        snprintf(str, (size_t)num, "%s = %d\n", SECTION_MARK, p->line);
        return str;
    }
    errno = 0;
    ssize_t n = getline(&p->buf, &p->cap, p->f);
    if (n < 0) {
        int e = errno ? errno : EIO; /* at the end of the file, errno stays 0 */
        if (errno || ferror(p->f))
            p->rc = sila_err_set(p->err, -e, "%s:%d: cannot read: %s", p->job->path, p->line + 1,
                                 strerror(e));
        return NULL;
    }
    p->line++;
    char *raw = p->buf;
    size_t len = (size_t)n;
    if (p->line == 1 && len >= 3 && memcmp(raw, "\xEF\xBB\xBF", 3) == 0)
        raw += 3, len -= 3;
    while (len && (raw[len - 1] == '\n' || raw[len - 1] == '\r'))
        raw[--len] = '\0';
    char *s;
    if ((p->rc = check_line(p, raw, len, num, &s)))
        return NULL;
    snprintf(str, (size_t)num, "%s\n", s);
    return str;
}

static int parse_file(struct parser *p)
{
    int r = ini_parse_stream(read_line, p, on_entry, p);
    if (p->rc)
        return p->rc;
    if (r == -2)
        return sila_err_set(p->err, -ENOMEM, "%s: out of memory", p->job->path);
    if (r)
        return sila_err_set(p->err, -EINVAL, "%s: libinih refused its line %d", p->job->path, r);
    return close_section(p);
}

/* ---- overrides ---- */

static int find_unique(const char *name)
{
    for (int s = 0; s < NUNIQUE; s++)
        if (strcmp(name, sections[s].name) == 0)
            return s;
    return -1;
}

static int apply_override(struct parser *p, int i)
{
    const char *text = p->overrides[i] ? p->overrides[i] : "";
    struct loc here = at_override(text);
    char buf[256], why[256];
    if (strlen(text) >= sizeof buf)
        return fail(p, here, NULL, NULL, "too long");
    memcpy(buf, text, strlen(text) + 1);
    char *eq = strchr(buf, '='), *dot = strchr(buf, '.');
    if (!eq || !dot || dot > eq)
        return fail(p, here, NULL, NULL, "expected section.key=value");
    *eq = *dot = '\0';
    const char *sec = trim(buf), *name = trim(dot + 1), *value = trim(eq + 1);
    int s = find_unique(sec);
    if (s < 0)
        return fail(p, here, NULL, NULL,
                    "unknown section '%.40s' (overrides apply to job, optimizer, schedule "
                    "and objective)",
                    sec);
    int k = find_key(&sections[s], name);
    if (k < 0)
        return fail(p, here, sec, name, "unknown key");
    const char *bad = set_value(&sections[s].keys[k], p->job, value, why, sizeof why);
    if (bad)
        return fail(p, here, sec, name, "'%.100s' %s", value, bad);
    p->src[s][k].ovr = i;
    return 0;
}

/* ---- whole-job checks ---- */

static bool is_set(const struct parser *p, int s, int k)
{
    return p->src[s][k].line || p->src[s][k].ovr >= 0;
}

static bool is_set_name(const struct parser *p, int s, const char *name)
{
    return is_set(p, s, find_key(&sections[s], name));
}

/* An error about a key of a unique section, located where it was set. */
static int fail_key(struct parser *p, int s, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_key(struct parser *p, int s, const char *name, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fail(p, at_key(p, s, find_key(&sections[s], name)), sections[s].name, name, "%s", msg);
}

static int check_present(struct parser *p)
{
    static const int needed[] = {SEC_JOB, SEC_OPTIM};
    for (int i = 0; i < COUNT(needed); i++)
        if (!p->unique_line[needed[i]])
            return fail(p, at_line(p, 1), sections[needed[i]].name, NULL,
                        "missing section (every job has [job] and [optimizer])");
    for (int s = 0; s < NUNIQUE; s++)
        for (int k = 0; k < sections[s].nkeys; k++)
            if ((sections[s].keys[k].flags & REQUIRED) && !is_set(p, s, k))
                return fail(p, at_line(p, p->unique_line[s]), sections[s].name,
                            sections[s].keys[k].name, "missing (required)");
    return 0;
}

static int check_ranges(struct parser *p)
{
    char why[128];
    for (int s = 0; s < NUNIQUE; s++)
        for (int k = 0; k < sections[s].nkeys; k++)
            if (is_set(p, s, k) && !in_range(&sections[s].keys[k], p->job, why, sizeof why))
                return fail(p, at_key(p, s, k), sections[s].name, sections[s].keys[k].name, "%s",
                            why);
    return 0;
}

static int check_dataset(struct parser *p)
{
    struct sila_job *j = p->job;
    bool idx = j->dataset == SILA_DATASET_MNIST || j->dataset == SILA_DATASET_FMNIST;
    j->input = idx ? (struct sila_shape){1, 28, 28} : (struct sila_shape){3, 32, 32};
    j->nclasses = j->dataset == SILA_DATASET_CIFAR100 ? 100 : 10;
    if (is_set_name(p, SEC_JOB, "data_dir"))
        return 0;
    if (!idx)
        return fail(p, at_line(p, p->unique_line[SEC_JOB]), "job", "data_dir",
                    "missing (required for %s: the directory of its binary batch files)",
                    sila_dataset_kind_name(j->dataset));
    snprintf(j->data_dir, sizeof j->data_dir, "%s",
             j->dataset == SILA_DATASET_MNIST ? "/usr/share/datasets/mnist"
                                              : "/usr/share/datasets/fashion-mnist");
    return 0;
}

static int check_rules(struct parser *p)
{
    const struct sila_job *j = p->job;
    if (j->global_steps > j->period)
        return fail_key(p, SEC_JOB, "global_steps",
                        "%d exceeds period %d (pgl needs 1 <= global_steps <= period)",
                        j->global_steps, j->period);
    if (j->optim.nesterov && (j->optim.kind != SILA_OPTIM_SGD || j->optim.momentum <= 0.0f))
        return fail_key(p, SEC_OPTIM, "nesterov",
                        "needs kind = sgd and momentum > 0 (momentum is %g)", j->optim.momentum);
    if (j->sched.kind == SILA_SCHED_STEP && !is_set_name(p, SEC_SCHED, "step_epochs"))
        return fail(p,
                    p->unique_line[SEC_SCHED] ? at_line(p, p->unique_line[SEC_SCHED])
                                              : at_key(p, SEC_SCHED, 0),
                    "schedule", "step_epochs", "missing (required for kind = step)");
    if (j->sched.kind == SILA_SCHED_COSINE && j->sched.min_lr > j->sched.lr)
        return fail_key(p, SEC_SCHED, "min_lr", "%g exceeds the optimizer's lr %g", j->sched.min_lr,
                        j->sched.lr);
    if (j->warmup_epochs >= (float)j->epochs)
        return fail_key(p, SEC_SCHED, "warmup_epochs", "%g is not shorter than the run (%d epochs)",
                        j->warmup_epochs, j->epochs);
    return 0;
}

static int fail_layer(struct parser *p, int i, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_layer(struct parser *p, int i, const char *key, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fail(p, at_line(p, p->job->layer_lines[i]), sila_layer_kind_name(p->job->layers[i].kind),
                key, "%s", msg);
}

/* Output side of a k x k window with pad and stride over n, or -1. */
static long long window_out(int n, int k, int stride, int pad)
{
    long long span = (long long)n + 2LL * pad - k;
    return span < 0 ? -1 : span / stride + 1;
}

static int check_conv_fit(struct parser *p, int i, struct sila_shape in)
{
    const struct sila_layer_spec *s = &p->job->layers[i];
    bool block = s->kind == SILA_LAYER_BLOCK;
    int k = block ? 3 : s->kernel, pad = block ? 1 : s->pad;
    long long oh = window_out(in.h, k, s->stride, pad), ow = window_out(in.w, k, s->stride, pad);
    if (oh < 0 || ow < 0)
        return fail_layer(p, i, "kernel",
                          "a %dx%d kernel does not fit the %dx%dx%d input padded by %d", k, k, in.c,
                          in.h, in.w, pad);
    if ((long long)s->out * oh * ow > MAX_ACT)
        return fail_layer(p, i, "out", "the output %dx%lldx%lld exceeds %d values per sample",
                          s->out, oh, ow, MAX_ACT);
    if ((long long)in.c * k * k * oh * ow > MAX_SCRATCH)
        return fail_layer(p, i, "kernel",
                          "the %dx%dx%d input needs %lld floats of scratch (at most %d)", in.c,
                          in.h, in.w, (long long)in.c * k * k * oh * ow, MAX_SCRATCH);
    return 0;
}

/* Shape problems of layer i on input `in`, with the key to blame. */
static int check_fit(struct parser *p, int i, struct sila_shape in)
{
    const struct sila_layer_spec *s = &p->job->layers[i];
    switch (s->kind) {
    case SILA_LAYER_LINEAR:
        if (in.h != 1 || in.w != 1)
            return fail_layer(
                p, i, "out",
                "expects a flat input, got %dx%dx%d (add a flatten or gap layer before it)", in.c,
                in.h, in.w);
        return 0;
    case SILA_LAYER_CONV2D:
    case SILA_LAYER_BLOCK:
        return check_conv_fit(p, i, in);
    case SILA_LAYER_MAXPOOL:
    case SILA_LAYER_AVGPOOL:
        if (2 * s->pad > s->kernel)
            return fail_layer(p, i, "pad", "%d exceeds half the kernel (at most %d for kernel %d)",
                              s->pad, s->kernel / 2, s->kernel);
        if (window_out(in.h, s->kernel, s->stride, s->pad) < 0 ||
            window_out(in.w, s->kernel, s->stride, s->pad) < 0)
            return fail_layer(p, i, "kernel", "a %dx%d window does not fit the %dx%dx%d input",
                              s->kernel, s->kernel, in.c, in.h, in.w);
        return 0;
    default:
        return 0;
    }
}

/* Layer i on *shape: checked, then built alone so that the net's own rules
 * give its output shape. */
static int chain_layer(struct parser *p, int i, struct sila_shape *shape)
{
    int r = check_fit(p, i, *shape);
    if (r)
        return r;
    struct sila_net *net;
    struct sila_err nerr = {""};
    r = sila_net_new(&net, &p->job->layers[i], 1, *shape, 1, &nerr);
    if (r == -ENOMEM) {
        fail_layer(p, i, NULL, "out of memory while checking this layer");
        return r;
    }
    if (r)
        return fail_layer(p, i, NULL, "%s", nerr.msg);
    *shape = sila_net_out_shape(net);
    sila_net_free(net);
    return 0;
}

static int check_module(struct parser *p, int m, struct sila_shape *shape)
{
    const struct sila_job *j = p->job;
    const struct sila_job_module *mod = &j->modules[m];
    if (mod->nlayers == 0)
        return fail(p, at_line(p, mod->line), "module", NULL, "module %d has no layers", m + 1);
    for (int i = mod->first_layer; i < mod->first_layer + mod->nlayers; i++) {
        int r = chain_layer(p, i, shape);
        if (r)
            return r;
    }
    p->module_out[m] = *shape;
    return 0;
}

static int check_net(struct parser *p)
{
    const struct sila_job *j = p->job;
    if (j->nmodules == 0)
        return fail(p, at_line(p, p->unique_line[SEC_JOB]), "job", NULL,
                    "no [module] sections: the network needs at least one module");
    if (j->nmodules > SILA_MAX_MODULES)
        return fail(p, at_line(p, j->modules[SILA_MAX_MODULES].line), "module", NULL,
                    "%d modules, at most %d", j->nmodules, SILA_MAX_MODULES);
    struct sila_shape shape = j->input;
    for (int m = 0; m < j->nmodules; m++) {
        int r = check_module(p, m, &shape);
        if (r)
            return r;
    }
    if (shape.c == j->nclasses && shape.h == 1 && shape.w == 1)
        return 0;
    int last = j->nlayers - 1;
    return fail_layer(p, last, layer_key_mask[j->layers[last].kind] & LK_OUT ? "out" : NULL,
                      "the network ends in %dx%dx%d, but %s has %d classes: the last layer must "
                      "output %dx1x1",
                      shape.c, shape.h, shape.w, sila_dataset_kind_name(j->dataset), j->nclasses,
                      j->nclasses);
}

/* Where objective key i of module m was decided: its [module] section, or
 * the [objective] key it defaulted to. */
static struct loc objective_loc(const struct parser *p, int m, int i, const char **ret_sec)
{
    const struct sila_job_module *mod = &p->job->modules[m];
    *ret_sec = mod->objective_set & (1u << i) ? "module" : "objective";
    if (mod->objective_set & (1u << i))
        return at_line(p, mod->line);
    return at_key(p, SEC_OBJECTIVE, i);
}

static int fail_objective(struct parser *p, int m, int i, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_objective(struct parser *p, int m, int i, const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *sec;
    struct loc where = objective_loc(p, m, i, &sec);
    const struct key *k =
        *sec == 'm' ? &module_keys[MODULE_OBJECTIVE_KEY0 + i] : &objective_keys[i];
    return fail(p, where, sec, k->name, "module %d: %s", m + 1, msg);
}

/* Whether a layer of module m matches. */
static bool module_has(const struct sila_job *j, int m,
                       bool (*match)(const struct sila_layer_spec *))
{
    const struct sila_job_module *mod = &j->modules[m];
    for (int i = mod->first_layer; i < mod->first_layer + mod->nlayers; i++)
        if (match(&j->layers[i]))
            return true;
    return false;
}

static bool drops_paths(const struct sila_layer_spec *s)
{
    return (s->kind == SILA_LAYER_BLOCK || s->kind == SILA_LAYER_DROPPATH) && s->p > 0.0f;
}

static bool has_filters(const struct sila_layer_spec *s)
{
    return s->kind == SILA_LAYER_CONV2D || s->kind == SILA_LAYER_BLOCK;
}

/* Objective key `name` of module m cannot apply there (why): an error when
 * the module's own [module] sets it, else the key takes its plain value (ce,
 * no penalty, no reconstruction, task weight 1). */
static int not_here(struct parser *p, int m, const char *name, const char *why)
{
    static const struct sila_objective plain = {
        .kind = SILA_OBJ_CE, .task_first = 1.0f, .task_last = 1.0f};
    struct sila_job_module *mod = &p->job->modules[m];
    int i = find_key(&sections[SEC_OBJECTIVE], name);
    if (mod->objective_set & (1u << i))
        return fail_objective(p, m, i, "%s", why);
    size_t at = objective_keys[i].off - JOB_OBJ(kind);
    memcpy((char *)&mod->objective + at, (const char *)&plain + at, sizeof(float));
    return 0;
}

/* Whether a layer after module m is a block or a conv, what an auglocal
 * head copies. */
static bool has_later_unit(const struct sila_job *j, int m)
{
    for (int i = j->modules[m + 1].first_layer; i < j->nlayers; i++)
        if (has_filters(&j->layers[i]))
            return true;
    return false;
}

/* Whether module m's aux head can take the module's output: mlp pools to
 * 2x2, dgl, infopro and auglocal convolve a feature map (auglocal copies
 * layers that follow the module); linear and conv take any (C, H, W). */
static int check_head(struct parser *p, int m)
{
    const struct sila_objective *o = &p->job->modules[m].objective;
    struct sila_shape z = p->module_out[m];
    int i = find_key(&sections[SEC_OBJECTIVE], "aux");
    if (o->aux == SILA_AUX_AUGLOCAL && !has_later_unit(p->job, m))
        return fail_objective(p, m, i,
                              "an auglocal head copies the [block] and [conv2d] layers after "
                              "the module, and none follows it");
    if (o->aux == SILA_AUX_MLP && (z.h < 2 || z.w < 2))
        return fail_objective(p, m, i,
                              "an mlp head pools to 2x2 and needs an output of at least 2x2, the "
                              "module ends in %dx%dx%d (use linear or conv)",
                              z.c, z.h, z.w);
    if ((o->aux == SILA_AUX_DGL || o->aux == SILA_AUX_INFOPRO || o->aux == SILA_AUX_AUGLOCAL) &&
        z.h == 1 && z.w == 1)
        return fail_objective(p, m, i,
                              "a %s head convolves a feature map and needs an output larger "
                              "than 1x1, the module ends in %dx1x1 (use linear or mlp)",
                              sila_aux_kind_name(o->aux), z.c);
    return 0;
}

/* Gives every module the [objective] value of each key it does not set,
 * then checks that each module can train by its objective. The last module
 * has no aux head: a twin (sila) and the output penalty (redundancy) need
 * one; cosub needs drop-path and kernel_similarity conv layers in the
 * module (not_here: refused when the module asks, else left out); some
 * module must run a cosub that [objective] asks for; e2e takes no local
 * objective; every head must take its module's output (check_head). */
static int resolve_objectives(struct parser *p)
{
    struct sila_job *j = p->job;
    int cosub = 0;
    for (int m = 0; m < j->nmodules; m++) {
        struct sila_job_module *mod = &j->modules[m];
        for (int i = 0; i < NOBJECTIVE_KEYS; i++) {
            size_t at = objective_keys[i].off - JOB_OBJ(kind);
            if (!(mod->objective_set & (1u << i)))
                memcpy((char *)&mod->objective + at, (char *)&j->objective + at, sizeof(float));
        }
        const struct sila_objective *o = &mod->objective;
        bool last = m == j->nmodules - 1;
        int r = 0;
        if (last && o->kind == SILA_OBJ_SILA)
            r = not_here(p, m, "kind", "the last module has no aux head to give a twin");
        static const char *const infopro_keys[] = {"recon_first", "recon_last", "task_first",
                                                   "task_last"};
        for (int i = 0; r == 0 && last && i < 4; i++)
            r = not_here(p, m, infopro_keys[i],
                         "the last module trains the classifier's loss: InfoPro's weights are "
                         "for the modules with a head");
        if (r == 0 && last && o->redundancy > 0.0f)
            r = not_here(p, m, "redundancy",
                         "the last module's output is the classifier's logits, not features to "
                         "decorrelate");
        if (r == 0 && o->kind == SILA_OBJ_COSUB && !module_has(j, m, drops_paths))
            r = not_here(
                p, m, "kind",
                "cosub needs drop-path in the module (a [block] or [droppath] with p > 0)");
        if (r == 0 && o->kernel_similarity > 0.0f && !module_has(j, m, has_filters))
            r = not_here(p, m, "kernel_similarity",
                         "the module has no conv2d or block layer to take the penalty");
        if (r == 0 && !last)
            r = check_head(p, m);
        if (r)
            return r;
        if (!sila_objective_is_plain(o) && j->algorithm == SILA_ALGO_E2E)
            return fail_objective(p, m, 0,
                                  "e2e has no local steps for a local objective (use local or "
                                  "pgl, or kind = ce without penalties)");
        cosub += o->kind == SILA_OBJ_COSUB;
    }
    if (j->objective.kind == SILA_OBJ_COSUB && cosub == 0)
        return fail(p, at_key(p, SEC_OBJECTIVE, 0), "objective", "kind",
                    "cosub needs drop-path in some module (a [block] or [droppath] with p > 0; "
                    "[job] drop_path sets it on every block)");
    return 0;
}

/* [job] drop_path: the blocks' drop-path rates rise linearly with depth
 * (stochastic depth, Huang et al. 2016), the last block's at drop_path. */
static int apply_drop_path(struct parser *p)
{
    struct sila_job *j = p->job;
    int n = 0, i = 0;
    for (int l = 0; l < j->nlayers; l++)
        n += j->layers[l].kind == SILA_LAYER_BLOCK;
    if (j->drop_path == 0.0f)
        return 0;
    if (n == 0)
        return fail_key(p, SEC_JOB, "drop_path", "the network has no [block] to drop paths in");
    for (int l = 0; l < j->nlayers; l++)
        if (j->layers[l].kind == SILA_LAYER_BLOCK)
            j->layers[l].p = j->drop_path * (float)++i / (float)n;
    return 0;
}

static int validate(struct parser *p)
{
    int r;
    if ((r = check_present(p)) || (r = check_ranges(p)) || (r = check_dataset(p)) ||
        (r = check_rules(p)) || (r = apply_drop_path(p)) || (r = check_net(p)))
        return r;
    return resolve_objectives(p);
}

/* ---- public ---- */

static void set_defaults(struct sila_job *j)
{
    j->seed = 1;
    j->period = 10;
    j->global_steps = 1;
    j->global_state = SILA_GLOBAL_SHARED;
    j->eval_every = 1;
    j->optim = (struct sila_optim_cfg){
        .kind = SILA_OPTIM_SGD, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    j->sched = (struct sila_sched_cfg){.kind = SILA_SCHED_CONSTANT, .gamma = 0.1f};
    j->objective = (struct sila_objective){.kind = SILA_OBJ_CE,
                                           .sila_weight = 1.0f,
                                           .temperature = 2.0f,
                                           .collab_beta = 0.5f,
                                           .cosub_weight = 1.0f,
                                           .aux = SILA_AUX_LINEAR,
                                           .aux_hidden = 256,
                                           .aux_grid = 8,
                                           .aux_convs = 2,
                                           .aux_mlp = 2,
                                           .aux_depth = 3,
                                           .aux_pyramid = 0.5f,
                                           .task_first = 1.0f,
                                           .task_last = 1.0f,
                                           .recon_width = 12};
    j->collab_rate = 0.5f;
}

/* Parses the job's text, then the overrides, then checks the whole. */
static int load(struct parser *p, int noverrides)
{
    struct sila_job *job = p->job;
    p->f = fmemopen(job->text, job->text_len ? job->text_len : 1, "r"); /* text is NUL-ended */
    if (!p->f)
        return sila_err_set(p->err, -errno, "%s: cannot read: %s", job->path, strerror(errno));
    int r = parse_file(p);
    fclose(p->f);
    free(p->buf);
    for (int i = 0; !r && i < noverrides; i++)
        r = apply_override(p, i);
    return r ? r : validate(p);
}

/* The job keeps its text and overrides: they are its plan, sent to workers. */
static int keep_overrides(struct sila_job *job, const char *const *overrides, int n,
                          struct sila_err *err)
{
    job->overrides = calloc((size_t)n + 1, sizeof *job->overrides);
    if (!job->overrides)
        return sila_err_set(err, -ENOMEM, "%s: out of memory", job->path);
    for (int i = 0; i < n; i++) {
        job->overrides[i] = strdup(overrides[i] ? overrides[i] : "");
        if (!job->overrides[i])
            return sila_err_set(err, -ENOMEM, "%s: out of memory", job->path);
        job->noverrides = i + 1;
    }
    return 0;
}

int sila_job_parse(struct sila_job *job, const char *path, const char *text, size_t len,
                   const char *const *overrides, int noverrides, struct sila_err *err)
{
    memset(job, 0, sizeof *job);
    snprintf(job->path, sizeof job->path, "%s", path);
    if (len > SILA_JOB_MAX_TEXT)
        return sila_err_set(err, -EFBIG, "%s: %zu bytes, a job file has at most %d", path, len,
                            SILA_JOB_MAX_TEXT);
    struct parser *p = calloc(1, sizeof *p);
    job->text = malloc(len + 1);
    int r = p && job->text ? keep_overrides(job, overrides, noverrides, err)
                           : sila_err_set(err, -ENOMEM, "%s: out of memory", path);
    if (r == 0) {
        memcpy(job->text, text, len);
        job->text[len] = '\0';
        job->text_len = len;
        *p = (struct parser){.job = job, .err = err, .sec = SEC_NONE, .overrides = overrides};
        for (int s = 0; s < NUNIQUE; s++)
            for (int k = 0; k < MAX_KEYS; k++)
                p->src[s][k].ovr = -1;
        set_defaults(job);
        r = load(p, noverrides);
    }
    free(p);
    if (r)
        sila_job_fini(job);
    return r;
}

int sila_job_load(struct sila_job *job, const char *path, const char *const *overrides,
                  int noverrides, struct sila_err *err)
{
    memset(job, 0, sizeof *job);
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        return sila_err_set(err, -e, "%s: cannot open: %s", path, strerror(e));
    }
    char *text = malloc(SILA_JOB_MAX_TEXT + 1);
    errno = 0;
    size_t len = text ? fread(text, 1, SILA_JOB_MAX_TEXT + 1, f) : 0;
    int e = errno ? errno : EIO, r = 0;
    if (!text)
        r = sila_err_set(err, -ENOMEM, "%s: out of memory", path);
    else if (ferror(f))
        r = sila_err_set(err, -e, "%s: cannot read: %s", path, strerror(e));
    fclose(f);
    if (r == 0)
        r = sila_job_parse(job, path, text, len, overrides, noverrides, err);
    free(text);
    return r;
}

void sila_job_plan_hash(const struct sila_job *job, uint8_t hash[SILA_PLAN_HASH_BYTES])
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)job->text, job->text_len);
    for (int i = 0; i < job->noverrides; i++) /* NUL-terminated: "a=b","c" != "a=bc" */
        crypto_hash_sha256_update(&st, (const unsigned char *)job->overrides[i],
                                  strlen(job->overrides[i]) + 1);
    crypto_hash_sha256_final(&st, hash);
}

void sila_job_fini(struct sila_job *job)
{
    free(job->layers);
    free(job->layer_lines);
    free(job->modules);
    free(job->text);
    for (int i = 0; i < job->noverrides; i++)
        free(job->overrides[i]);
    free(job->overrides);
    memset(job, 0, sizeof *job);
}

const char *sila_algorithm_name(enum sila_algorithm a)
{
    return a >= SILA_ALGO_E2E && a <= SILA_ALGO_PGL ? algo_names[a - 1] : NULL;
}

const char *sila_aux_kind_name(enum sila_aux_kind k)
{
    return k >= SILA_AUX_LINEAR && k <= SILA_AUX_AUGLOCAL ? aux_names[k - 1] : NULL;
}

const char *sila_objective_name(enum sila_objective_kind k)
{
    return k >= SILA_OBJ_CE && k <= SILA_OBJ_COSUB ? objective_names[k - 1] : NULL;
}

bool sila_objective_is_plain(const struct sila_objective *o)
{
    return o->kind == SILA_OBJ_CE && o->redundancy == 0.0f && o->kernel_similarity == 0.0f &&
           o->recon_first == 0.0f && o->recon_last == 0.0f && o->task_first == 1.0f &&
           o->task_last == 1.0f;
}

/* a (1 - r) + b r, exactly a when a == b. */
static float lerp(float a, float b, float r)
{
    return a == b ? a : a * (1.0f - r) + b * r;
}

void sila_objective_infopro_weights(const struct sila_objective *o, int k, int K,
                                    float *ret_recon, float *ret_task)
{
    float r = K > 2 ? (float)k / (float)(K - 2) : 0.0f;
    *ret_recon = lerp(o->recon_first, o->recon_last, r);
    *ret_task = lerp(o->task_first, o->task_last, r);
}

bool sila_job_uses_collab(const struct sila_job *job)
{
    for (int m = 0; m < job->nmodules; m++)
        if (job->modules[m].objective.kind == SILA_OBJ_COLLAB)
            return true;
    return false;
}

const char *sila_modules_text(int first, int last, char *buf, size_t len)
{
    if (first == last)
        snprintf(buf, len, "module %d", first + 1);
    else
        snprintf(buf, len, "modules %d-%d", first + 1, last + 1);
    return buf;
}
