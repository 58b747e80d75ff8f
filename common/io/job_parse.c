/* Job files (see job.h), reading: libinih reads the INI syntax through our own line
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

#include <ini.h>
#include <sodium.h>

#define SECTION_MARK "__section_line__"

/* ---- parser state and messages ---- */

struct loc job_at_line(const struct parser *p, int line)
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
struct loc job_at_key(const struct parser *p, int s, int k)
{
    const struct src *src = &p->src[s][k];
    if (src->ovr >= 0)
        return at_override(p->overrides[src->ovr]);
    return job_at_line(p, src->line ? src->line : p->unique_line[s]);
}

int job_fail(struct parser *p, struct loc where, const char *sec, const char *key, const char *fmt,
             ...)
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
    return p->sec == SEC_NONE ? NULL : job_sections[p->sec].name;
}

/* ---- sections ---- */

static bool key_allowed(const struct parser *p, int k)
{
    return p->sec != SEC_LAYER || (sila_layer_desc(p->kind)->keys & (1u << k));
}

/* "(SEC takes a, b, c)" or "(SEC takes no keys)" into buf. */
static const char *keys_hint(const struct parser *p, char *buf, size_t n)
{
    const struct section *s = &job_sections[p->sec];
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

/* Ends the open section: a layer's kind may default its stride to the
 * kernel (the pools) and require keys (`out` of linear, conv2d, block). */
static int close_section(struct parser *p)
{
    if (p->sec != SEC_LAYER)
        return 0;
    struct sila_layer_spec *s = &p->job->layers[p->job->nlayers - 1];
    const struct sila_layer_desc *d = sila_layer_desc(s->kind);
    const struct section *keys = &job_sections[SEC_LAYER];
    if ((d->flags & SILA_LAYER_STRIDE_IS_KERNEL) && !p->key_line[job_find_key(keys, "stride")])
        s->stride = s->kernel;
    for (int k = 0; k < keys->nkeys; k++)
        if ((d->required & (1u << k)) && !p->key_line[k])
            return job_fail(p, job_at_line(p, p->sec_line), open_name(p), keys->keys[k].name,
                            "missing (required)");
    return 0;
}

static int open_unique(struct parser *p, int s)
{
    if (p->unique_line[s])
        return job_fail(p, job_at_line(p, p->line), job_sections[s].name, NULL,
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
    j->modules[j->nmodules++] =
        (struct sila_job_module){.first_layer = j->nlayers, .line = p->line};
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
        return job_fail(p, job_at_line(p, p->line), sila_layer_kind_name(kind), NULL,
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
    return job_fail(p, job_at_line(p, p->line), p->header, NULL,
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
        if (strcmp(p->header, job_sections[s].name) == 0)
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
    struct loc here = job_at_line(p, p->line);
    if (p->sec == SEC_NONE)
        return job_fail(p, here, NULL, name,
                        "key outside any section (the file starts with [job])");
    const struct section *s = &job_sections[p->sec];
    int k = job_find_key(s, name);
    char why[256];
    if (k < 0 || !key_allowed(p, k))
        return job_fail(p, here, open_name(p), name, "unknown key (%s)",
                        keys_hint(p, why, sizeof why));
    if (p->key_line[k])
        return job_fail(p, here, open_name(p), name, "duplicate key (first set at line %d)",
                        p->key_line[k]);
    p->key_line[k] = p->line;
    const char *bad = job_set_value(&s->keys[k], section_base(p), value, why, sizeof why);
    if (bad)
        return job_fail(p, here, open_name(p), name, "'%.100s' %s", value, bad);
    if (p->sec == SEC_MODULE && k >= MODULE_OBJECTIVE_KEY0)
        p->job->modules[p->job->nmodules - 1].objective_set |= 1u << (k - MODULE_OBJECTIVE_KEY0);
    if (p->sec < NUNIQUE)
        p->src[p->sec][k].line = p->line;
    else if (!job_in_range(&s->keys[k], section_base(p), why, sizeof why))
        return job_fail(p, here, open_name(p), name, "%s", why);
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
    struct loc here = job_at_line(p, p->line);
    char *close = strchr(s, ']');
    if (!close)
        return job_fail(p, here, NULL, NULL, "malformed section header '%.60s' (no closing ']')",
                        s);
    size_t n = (size_t)(close - s - 1);
    const char *rest = close + 1;
    rest += strspn(rest, " \t");
    if (*rest && *rest != ';' && *rest != '#')
        return job_fail(p, here, NULL, NULL, "malformed section header '%.60s' (text after ']')",
                        s);
    if (n == 0 || n >= sizeof p->header || strcspn(s + 1, " \t;[") < n)
        return job_fail(p, here, NULL, NULL, "malformed section header '%.60s'", s);
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
    struct loc here = job_at_line(p, p->line);
    char key[48];
    if (strlen(raw) != len)
        return job_fail(p, here, open_name(p), NULL, "line contains a NUL byte");
    if (len > (size_t)num - 3)
        return job_fail(p, here, open_name(p), line_key(trim(raw), key, sizeof key),
                        "line is too long (%zu characters, libinih reads at most %d)", len,
                        num - 3);
    char *s = trim(raw);
    *ret_s = s;
    if (!*s || *s == ';' || *s == '#')
        return 0;
    if (*s == '[')
        return check_header(p, s);
    if (!has_separator(s))
        return job_fail(p, here, open_name(p), NULL,
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
        if (strcmp(name, job_sections[s].name) == 0)
            return s;
    return -1;
}

static int apply_override(struct parser *p, int i)
{
    const char *text = p->overrides[i] ? p->overrides[i] : "";
    struct loc here = at_override(text);
    char buf[256], why[256];
    if (strlen(text) >= sizeof buf)
        return job_fail(p, here, NULL, NULL, "too long");
    memcpy(buf, text, strlen(text) + 1);
    char *eq = strchr(buf, '='), *dot = strchr(buf, '.');
    if (!eq || !dot || dot > eq)
        return job_fail(p, here, NULL, NULL, "expected section.key=value");
    *eq = *dot = '\0';
    const char *sec = trim(buf), *name = trim(dot + 1), *value = trim(eq + 1);
    int s = find_unique(sec);
    if (s < 0)
        return job_fail(p, here, NULL, NULL,
                        "unknown section '%.40s' (overrides apply to job, optimizer, schedule "
                        "and objective)",
                        sec);
    int k = job_find_key(&job_sections[s], name);
    if (k < 0)
        return job_fail(p, here, sec, name, "unknown key");
    const char *bad = job_set_value(&job_sections[s].keys[k], p->job, value, why, sizeof why);
    if (bad)
        return job_fail(p, here, sec, name, "'%.100s' %s", value, bad);
    p->src[s][k].ovr = i;
    return 0;
}

/* ---- public ---- */

static void set_defaults(struct sila_job *j)
{
    j->seed = 1;
    j->period = 10;
    j->global_steps = 1;
    j->global_state = SILA_GLOBAL_SHARED;
    j->eval_every = 1;
    j->evals_per_epoch = 1;
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
                                           .recon_width = 12,
                                           .man_period = 10};
    j->collab_rate = 0.5f;
}

/* Parses the job's text, then the overrides, then checks the whole. */
static int load(struct parser *p, int noverrides)
{
    struct sila_job *job = p->job;
    int r = 0;
    if (job->text_len) { /* an empty text has no lines: the checks name what it lacks */
        p->f = fmemopen(job->text, job->text_len, "r");
        if (!p->f)
            return sila_err_set(p->err, -errno, "%s: cannot read: %s", job->path, strerror(errno));
        r = parse_file(p);
        fclose(p->f);
        free(p->buf);
    }
    for (int i = 0; !r && i < noverrides; i++)
        r = apply_override(p, i);
    return r ? r : job_validate(p);
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

const char *sila_modules_text(int first, int last, char *buf, size_t len)
{
    if (first == last)
        snprintf(buf, len, "module %d", first + 1);
    else
        snprintf(buf, len, "modules %d-%d", first + 1, last + 1);
    return buf;
}
