/* Job files: the whole-job checks after the file and the overrides (the
 * sections present, ranges, the dataset, the rules that tie keys together,
 * the network's shapes module by module) and the resolution of every
 * module's objective from [objective] and its own keys (see job.h). */
#include "job_parser.h"

#include "heads.h"

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

/* ---- whole-job checks ---- */

static bool is_set(const struct parser *p, int s, int k)
{
    return p->src[s][k].line || p->src[s][k].ovr >= 0;
}

static bool is_set_name(const struct parser *p, int s, const char *name)
{
    return is_set(p, s, job_find_key(&job_sections[s], name));
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
    return job_fail(p, job_at_key(p, s, job_find_key(&job_sections[s], name)), job_sections[s].name,
                    name, "%s", msg);
}

static int check_present(struct parser *p)
{
    static const int needed[] = {SEC_JOB, SEC_OPTIM};
    for (int i = 0; i < COUNT(needed); i++)
        if (!p->unique_line[needed[i]])
            return job_fail(p, job_at_line(p, 1), job_sections[needed[i]].name, NULL,
                            "missing section (every job has [job] and [optimizer])");
    for (int s = 0; s < NUNIQUE; s++)
        for (int k = 0; k < job_sections[s].nkeys; k++)
            if ((job_sections[s].keys[k].flags & REQUIRED) && !is_set(p, s, k))
                return job_fail(p, job_at_line(p, p->unique_line[s]), job_sections[s].name,
                                job_sections[s].keys[k].name, "missing (required)");
    return 0;
}

static int check_ranges(struct parser *p)
{
    char why[128];
    for (int s = 0; s < NUNIQUE; s++)
        for (int k = 0; k < job_sections[s].nkeys; k++)
            if (is_set(p, s, k) && !job_in_range(&job_sections[s].keys[k], p->job, why, sizeof why))
                return job_fail(p, job_at_key(p, s, k), job_sections[s].name,
                                job_sections[s].keys[k].name, "%s", why);
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
        return job_fail(p, job_at_line(p, p->unique_line[SEC_JOB]), "job", "data_dir",
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
    if (j->global_lag > 0 && j->algorithm == SILA_ALGO_LOCAL)
        return fail_key(p, SEC_JOB, "global_lag",
                        "%d, but algorithm = local takes no global step (pgl or e2e do)",
                        j->global_lag);
    if (j->optim.nesterov && (j->optim.kind != SILA_OPTIM_SGD || j->optim.momentum <= 0.0f))
        return fail_key(p, SEC_OPTIM, "nesterov",
                        "needs kind = sgd and momentum > 0 (momentum is %g)", j->optim.momentum);
    if (j->sched.kind == SILA_SCHED_STEP && !is_set_name(p, SEC_SCHED, "step_epochs"))
        return job_fail(p,
                        p->unique_line[SEC_SCHED] ? job_at_line(p, p->unique_line[SEC_SCHED])
                                                  : job_at_key(p, SEC_SCHED, 0),
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
    return job_fail(p, job_at_line(p, p->job->layer_lines[i]),
                    sila_layer_kind_name(p->job->layers[i].kind), key, "%s", msg);
}

/* Layer i on *shape: checked, then built alone so that the net's own rules
 * give its output shape. */
static int chain_layer(struct parser *p, int i, struct sila_shape *shape)
{
    const struct sila_layer_spec *s = &p->job->layers[i];
    sila_layer_fit_fn *fit = sila_layer_desc(s->kind)->fit;
    const char *key = NULL, *bad;
    char why[384];
    if (fit && (bad = fit(s, *shape, &key, why, sizeof why)))
        return fail_layer(p, i, key, "%s", bad);
    struct sila_net *net;
    struct sila_err nerr = {""};
    int r = sila_net_new(&net, &p->job->layers[i], 1, *shape, 1, &nerr);
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
        return job_fail(p, job_at_line(p, mod->line), "module", NULL, "module %d has no layers",
                        m + 1);
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
        return job_fail(p, job_at_line(p, p->unique_line[SEC_JOB]), "job", NULL,
                        "no [module] sections: the network needs at least one module");
    if (j->nmodules > SILA_MAX_MODULES)
        return job_fail(p, job_at_line(p, j->modules[SILA_MAX_MODULES].line), "module", NULL,
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
    return fail_layer(
        p, last, sila_layer_desc(j->layers[last].kind)->keys & SILA_LAYER_KEY_OUT ? "out" : NULL,
        "the network ends in %dx%dx%d, but %s has %d classes: the last layer must "
        "output %dx1x1",
        shape.c, shape.h, shape.w, sila_dataset_kind_name(j->dataset), j->nclasses, j->nclasses);
}

/* Where objective key i of module m was decided: its [module] section, or
 * the [objective] key it defaulted to. */
static struct loc objective_loc(const struct parser *p, int m, int i, const char **ret_sec)
{
    const struct sila_job_module *mod = &p->job->modules[m];
    *ret_sec = mod->objective_set & (1u << i) ? "module" : "objective";
    if (mod->objective_set & (1u << i))
        return job_at_line(p, mod->line);
    return job_at_key(p, SEC_OBJECTIVE, i);
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
        *sec == 'm' ? &job_module_keys[MODULE_OBJECTIVE_KEY0 + i] : &job_objective_keys[i];
    return job_fail(p, where, sec, k->name, "module %d: %s", m + 1, msg);
}

/* Whether a layer of module m has a kind with any of the SILA_LAYER_* flags
 * and, if p_set, p > 0 (drop-path at work). */
static bool module_has(const struct sila_job *j, int m, unsigned flags, bool p_set)
{
    const struct sila_job_module *mod = &j->modules[m];
    for (int i = mod->first_layer; i < mod->first_layer + mod->nlayers; i++) {
        const struct sila_layer_spec *s = &j->layers[i];
        if ((sila_layer_desc(s->kind)->flags & flags) && (!p_set || s->p > 0.0f))
            return true;
    }
    return false;
}

/* Objective key `name` of module m cannot apply there (why): an error when
 * the module's own [module] sets it, else the key takes its plain value (ce,
 * no penalty, no reconstruction, task weight 1). */
static int not_here(struct parser *p, int m, const char *name, const char *why)
{
    static const struct sila_objective plain = {
        .kind = SILA_OBJ_CE, .task_first = 1.0f, .task_last = 1.0f};
    struct sila_job_module *mod = &p->job->modules[m];
    int i = job_find_key(&job_sections[SEC_OBJECTIVE], name);
    if (mod->objective_set & (1u << i))
        return fail_objective(p, m, i, "%s", why);
    size_t at = job_objective_keys[i].off - JOB_OBJ(kind);
    memcpy((char *)&mod->objective + at, (const char *)&plain + at, sizeof(float));
    return 0;
}

/* Whether a layer after module m is a block or a conv, what an auglocal
 * head copies. */
static bool has_later_unit(const struct sila_job *j, int m)
{
    for (int i = j->modules[m + 1].first_layer; i < j->nlayers; i++)
        if (sila_layer_desc(j->layers[i].kind)->flags & SILA_LAYER_FILTERS)
            return true;
    return false;
}

/* MAN in front of module m's head: module m + 1 must have a unit to copy
 * (sila_man_unit_specs), and the head a single path (no twin, no second
 * pass). *z becomes what the head then reads, the unit's output. */
static int check_man(struct parser *p, int m, struct sila_shape *z)
{
    const struct sila_objective *o = &p->job->modules[m].objective;
    int i = job_find_key(&job_sections[SEC_OBJECTIVE], "man_momentum");
    if (o->kind == SILA_OBJ_SILA || o->kind == SILA_OBJ_COSUB)
        return fail_objective(p, m, i,
                              "MAN is built for one head per module, and %s gives it a "
                              "second (use ce or collab)",
                              o->kind == SILA_OBJ_SILA ? "sila" : "cosub");
    struct sila_layer_spec unit[SILA_MAN_MAX_SPECS];
    int n;
    if (sila_man_unit_specs(p->job, m, unit, &n))
        return fail_objective(p, m, i,
                              "MAN copies the first [block] or [conv2d] of the next module, and "
                              "module %d has none among its first %d layers",
                              m + 2, SILA_MAN_MAX_SPECS - 2);
    struct sila_net *net;
    struct sila_err nerr = {""};
    int r = sila_net_new(&net, unit, n, *z, 1, &nerr);
    if (r)
        return fail_objective(p, m, i, "%s", r == -ENOMEM ? "out of memory" : nerr.msg);
    *z = sila_net_out_shape(net);
    sila_net_free(net);
    return 0;
}

/* Whether module m's aux head can take the module's output: mlp pools to
 * 2x2, dgl, infopro and auglocal convolve a feature map (auglocal copies
 * layers that follow the module); linear and conv take any (C, H, W). */
static int check_head(struct parser *p, int m)
{
    const struct sila_objective *o = &p->job->modules[m].objective;
    struct sila_shape z = p->module_out[m];
    int r = o->man_momentum > 0.0f ? check_man(p, m, &z) : 0;
    if (r)
        return r;
    int i = job_find_key(&job_sections[SEC_OBJECTIVE], "aux");
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
            size_t at = job_objective_keys[i].off - JOB_OBJ(kind);
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
        if (r == 0 && o->kind == SILA_OBJ_COSUB && !module_has(j, m, SILA_LAYER_DROPS_PATHS, true))
            r = not_here(
                p, m, "kind",
                "cosub needs drop-path in the module (a [block] or [droppath] with p > 0)");
        if (r == 0 && o->kernel_similarity > 0.0f && !module_has(j, m, SILA_LAYER_FILTERS, false))
            r = not_here(p, m, "kernel_similarity",
                         "the module has no conv2d or block layer to take the penalty");
        if (r == 0 && last && o->man_momentum > 0.0f)
            r = not_here(p, m, "man_momentum", "the last module has no aux head to put MAN before");
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
        return job_fail(p, job_at_key(p, SEC_OBJECTIVE, 0), "objective", "kind",
                        "cosub needs drop-path in some module (a [block] or [droppath] with p > 0; "
                        "[job] drop_path sets it on every block)");
    return 0;
}

/* [job] deploy, holdout and deploy_tolerance: a head named must be a
 * module's with one (not the last), that has learned (not e2e, unless the
 * heads learn in its global steps), and that a model file can hold (not
 * behind MAN's two parallel copies); best_head chooses on a held-out split
 * and among such heads only. */
static int check_deploy(struct parser *p)
{
    const struct sila_job *j = p->job;
    bool best = j->deploy == SILA_DEPLOY_BEST_HEAD, head = j->deploy > 0;
    if (is_set_name(p, SEC_JOB, "deploy_tolerance") && !best)
        return fail_key(p, SEC_JOB, "deploy_tolerance", "applies to deploy = best_head only");
    if (best && j->holdout == 0)
        return fail_key(p, SEC_JOB, "deploy",
                        "best_head chooses on held-out training samples: set holdout (e.g. "
                        "holdout = 5000)");
    if (head && j->deploy >= j->nmodules)
        return fail_key(p, SEC_JOB, "deploy",
                        "head:%d names no head: the %d modules have heads 1 to %d, and the "
                        "classifier ends module %d (deploy = classifier)",
                        j->deploy, j->nmodules, j->nmodules - 1, j->nmodules);
    if ((best || head) && j->algorithm == SILA_ALGO_E2E && !j->heads_in_global)
        return fail_key(p, SEC_JOB, "deploy",
                        "under e2e the aux heads do not learn (heads_in_global = true lets them)");
    if (!best && !head)
        return 0;
    int first = best ? 0 : j->deploy - 1, last = best ? j->nmodules - 2 : j->deploy - 1;
    for (int m = first; m <= last; m++)
        if (j->modules[m].objective.man_momentum > 0.0f)
            return fail_key(p, SEC_JOB, "deploy",
                            "module %d's head reads MAN's two parallel copies of the next "
                            "module's unit, which a model file cannot hold (deploy = classifier, "
                            "or a head without man_momentum)",
                            m + 1);
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

int job_validate(struct parser *p)
{
    int r;
    if ((r = check_present(p)) || (r = check_ranges(p)) || (r = check_dataset(p)) ||
        (r = check_rules(p)) || (r = apply_drop_path(p)) || (r = check_net(p)) ||
        (r = resolve_objectives(p)))
        return r;
    return check_deploy(p);
}

/* ---- objectives ---- */

bool sila_objective_is_plain(const struct sila_objective *o)
{
    return o->kind == SILA_OBJ_CE && o->redundancy == 0.0f && o->kernel_similarity == 0.0f &&
           o->recon_first == 0.0f && o->recon_last == 0.0f && o->task_first == 1.0f &&
           o->task_last == 1.0f && o->man_momentum == 0.0f;
}

/* a (1 - r) + b r, exactly a when a == b. */
static float lerp(float a, float b, float r)
{
    return a == b ? a : a * (1.0f - r) + b * r;
}

void sila_objective_infopro_weights(const struct sila_objective *o, int k, int K, float *ret_recon,
                                    float *ret_task)
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
