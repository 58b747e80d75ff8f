/* Job files' key tables (every section's keys with their types, ranges
 * and fields), the parsing of one value, and the names of the enumerations
 * (see job.h, job_parser.h). Values of [job], [optimizer] and [schedule] are
 * range-checked only after the overrides, so that an override can correct a
 * file; layer and [module] values are range-checked as they are read. */
#include "job_parser.h"

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

/* Enum fields are written through an int. */
_Static_assert(sizeof(enum sila_algorithm) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sila_aux_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sila_optim_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sila_sched_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sila_dataset_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sila_global_state) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sila_dtype) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sila_objective_kind) == sizeof(float), "objective fields are 4 bytes");

static const char *const algo_names[] = {"e2e", "local", "pgl", NULL};
static const char *const aux_names[] = {"linear",  "conv",     "mlp", "dgl",
                                        "infopro", "auglocal", NULL};
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
    NUM("global_lag", K_INT, JOB(global_lag), 0, 16, 0),
    NUM("eval_every", K_INT, JOB(eval_every), 1, INF, 0),
    NUM("evals_per_epoch", K_INT, JOB(evals_per_epoch), 1, 1000, 0),
    TYPED("train_limit", K_U32, JOB(train_limit), 0),
    TYPED("test_limit", K_U32, JOB(test_limit), 0),
    NUM("augment_crop", K_INT, JOB(augment_crop), 0, 16, 0),
    TYPED("augment_flip", K_BOOL, JOB(augment_flip), 0),
    NUM("label_smoothing", K_FLOAT, JOB(label_smoothing), 0, 1, HI_OPEN),
    NUM("drop_path", K_FLOAT, JOB(drop_path), 0, 1, HI_OPEN),
    NUM("checkpoint_every", K_INT, JOB(checkpoint_every), 0, INF, 0),
    NUM("checkpoint_minutes", K_FLOAT, JOB(checkpoint_minutes), 0, INF, 0),
    TYPED("deploy", K_DEPLOY, JOB(deploy), 0),
    NUM("deploy_tolerance", K_FLOAT, JOB(deploy_tolerance), 0, 100, 0),
    TYPED("holdout", K_U32, JOB(holdout), 0),
    ENUM("wire_dtype", JOB(wire_dtype), FROM_0, sila_dtype_names),
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
        NUM("recon_width", K_INT, AT(recon_width), 1, 4096, 0),                                    \
        NUM("man_momentum", K_FLOAT, AT(man_momentum), 0, 1, HI_OPEN),                             \
        NUM("man_period", K_INT, AT(man_period), 1, 100000, 0)
#define MOD_OBJ(f) offsetof(struct sila_job_module, objective.f)

const struct key job_objective_keys[] = {
    OBJECTIVE_KEYS(JOB_OBJ, "kind"),
    NUM("collab_rate", K_FLOAT, JOB(collab_rate), 0, 1, LO_OPEN),
};

const struct key job_module_keys[] = {
    OBJECTIVE_KEYS(MOD_OBJ, "objective"),
};

/* Layer keys, the fields of struct sila_layer_spec: job_layer_keys[i] is the
 * key of bit i of the SILA_LAYER_KEY_* mask of a kind's descriptor
 * (layer.h), which says which of them its section takes. */
static const struct key job_layer_keys[] = {
    NUM("out", K_INT, SPEC(out), 1, 65536, 0),
    NUM("kernel", K_INT, SPEC(kernel), 1, 64, 0),
    NUM("stride", K_INT, SPEC(stride), 1, 64, 0),
    NUM("pad", K_INT, SPEC(pad), 0, 64, 0),
    TYPED("bias", K_BOOL, SPEC(bias), 0),
    NUM("p", K_FLOAT, SPEC(p), 0, 1, HI_OPEN),
    NUM("momentum", K_FLOAT, SPEC(bn_momentum), 0, 1, 0),
    NUM("eps", K_FLOAT, SPEC(bn_eps), 0, INF, LO_OPEN),
};

_Static_assert(COUNT(job_keys) <= MAX_KEYS && COUNT(optim_keys) <= MAX_KEYS &&
                   COUNT(sched_keys) <= MAX_KEYS && COUNT(job_objective_keys) <= MAX_KEYS &&
                   COUNT(job_module_keys) <= MAX_KEYS && COUNT(job_layer_keys) <= 32,
               "key tables fit the per-section arrays");
_Static_assert(COUNT(job_module_keys) == MODULE_OBJECTIVE_KEY0 + NOBJECTIVE_KEYS &&
                   COUNT(job_objective_keys) == NOBJECTIVE_KEYS + 1,
               "the objective keys are where the resolution expects them");

const struct section job_sections[] = {
    [SEC_JOB] = {"job", job_keys, COUNT(job_keys)},
    [SEC_OPTIM] = {"optimizer", optim_keys, COUNT(optim_keys)},
    [SEC_SCHED] = {"schedule", sched_keys, COUNT(sched_keys)},
    [SEC_OBJECTIVE] = {"objective", job_objective_keys, COUNT(job_objective_keys)},
    [SEC_MODULE] = {"module", job_module_keys, COUNT(job_module_keys)},
    [SEC_LAYER] = {NULL, job_layer_keys, COUNT(job_layer_keys)},
};

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

static const char *parse_enum(const struct key *k, const char *v, int *ret, char *why, size_t n)
{
    int i;
    for (i = 0; k->names[i]; i++)
        if (strcmp(v, k->names[i]) == 0) {
            *ret = k->flags & FROM_0 ? i : i + 1;
            return NULL;
        }
    return one_of(k->names, i, why, n);
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

/* job.deploy: "classifier", "best_head" or "head:N" (N >= 1; that it names
 * a module with a head is checked with the whole job). */
static const char *parse_deploy(const char *v, int *ret)
{
    if (strcmp(v, "classifier") == 0 || strcmp(v, "best_head") == 0) {
        *ret = v[0] == 'c' ? SILA_DEPLOY_CLASSIFIER : SILA_DEPLOY_BEST_HEAD;
        return NULL;
    }
    char *end = (char *)v;
    errno = 0;
    long n =
        strncmp(v, "head:", 5) == 0 && isdigit((unsigned char)v[5]) ? strtol(v + 5, &end, 10) : 0;
    if (n < 1 || n > SILA_MAX_MODULES || *end || errno)
        return "is not classifier, best_head or head:N (N a module with a head, from 1)";
    *ret = (int)n;
    return NULL;
}

/* Parses v into key k's field at base. Returns NULL, or why v is refused
 * (possibly written into why). */
const char *job_set_value(const struct key *k, void *base, const char *v, char *why, size_t n)
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
        return parse_enum(k, v, dst, why, n);
    case K_DATASET:
        return parse_dataset(v, dst, why, n);
    case K_DEPLOY:
        return parse_deploy(v, dst);
    }
    return "has a key type this build does not know";
}

/* Whether the number in key k's field at base is in range; when not, writes
 * "VALUE is out of range (must be ...)" into why. */
bool job_in_range(const struct key *k, const void *base, char *why, size_t n)
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

int job_find_key(const struct section *s, const char *name)
{
    for (int i = 0; i < s->nkeys; i++)
        if (strcmp(s->keys[i].name, name) == 0)
            return i;
    return -1;
}

/* ---- names ---- */

const char *sila_deploy_text(int deploy, char *buf, size_t len)
{
    if (deploy > 0)
        snprintf(buf, len, "head:%d", deploy);
    else
        snprintf(buf, len, "%s", deploy == SILA_DEPLOY_BEST_HEAD ? "best_head" : "classifier");
    return buf;
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
