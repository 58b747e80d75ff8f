/* Tests of common/io/job.h: a job using every key parses to the expected
 * struct; each kind of mistake (syntax, values, sections, network shapes,
 * overrides) fails with -EINVAL and a message naming the file, the line and
 * the key; overrides replace file values before the whole job is checked;
 * and the example jobs under deploy/jobs/ load with the expected modules. */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check_main.h"
#include "job.h"
#include "plan.h"

#ifndef SILA_SOURCE_DIR
#error "tests/meson.build defines SILA_SOURCE_DIR"
#endif

/* ---- temporary directory, one per run, removed whole ---- */

static char tmpdir[] = "/tmp/sila-test-job-XXXXXX";

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void root_setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void root_teardown(void)
{
    ck_assert_int_eq(nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

/* Writes text to tmpdir/name; the path goes to path (256 bytes). */
static void write_job(const char *name, const char *text, char *path)
{
    snprintf(path, 256, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

/* ---- a job with every key ---- */

static const char full_job[] = "; every key, none at its default\n"
                               "[job]\n"
                               "name = full-1\n"
                               "dataset = cifar100\n"
                               "data_dir = /data/c100 ; inline comment\n"
                               "epochs = 7\n"
                               "batch = 32\n"
                               "seed = 18446744073709551615\n"
                               "algorithm = pgl\n"
                               "period = 5\n"
                               "global_steps = 5\n"
                               "local_weight = 0.25\n"
                               "eval_every = 3\n"
                               "train_limit = 4294967295\n"
                               "test_limit = 100\n"
                               "augment_crop = 16\n"
                               "augment_flip = YES\n"
                               "label_smoothing = 0.1\n"
                               "\n"
                               "[optimizer]\n"
                               "kind = adamw\n"
                               "lr = 3e-4\n"
                               "momentum = 0.5\n"
                               "nesterov = off\n"
                               "weight_decay = 0.05\n"
                               "beta1 = 0.8\n"
                               "beta2 = 0.99\n"
                               "eps = 1e-6\n"
                               "[schedule]\n"
                               "kind = step\n"
                               "min_lr = 1e-5\n"
                               "warmup_epochs = 0.5\n"
                               "step_epochs = 2.5\n"
                               "gamma = 0.5\n"
                               "[module]\n"
                               "aux = mlp\n"
                               "aux_hidden = 64\n"
                               "   [conv2d]\n"
                               "   out = 8\n"
                               "   kernel = 5\n"
                               "   stride = 1\n"
                               "   pad = 2\n"
                               "   bias = false\n"
                               "[batchnorm]\n"
                               "momentum = 0.2\n"
                               "eps = 1e-3\n"
                               "[relu]\n"
                               "[dropout]\n"
                               "p = 0.3\n"
                               "[module]\n"
                               "aux = conv\n"
                               "[maxpool]\n"
                               "kernel = 3\n"
                               "pad = 1\n"
                               "[block]\n"
                               "out = 16\n"
                               "stride = 2\n"
                               "p = 0.1\n"
                               "momentum = 0.05\n"
                               "eps = 2e-5\n"
                               "[droppath]\n"
                               "p = 0.2\n"
                               "[module]\n"
                               "[avgpool]\n"
                               "kernel = 2\n"
                               "stride = 1\n"
                               "[gap]\n"
                               "[flatten]\n"
                               "[linear]\n"
                               "out = 100\n"
                               "bias = no\n";

static void check_full_job_header(const struct sila_job *j)
{
    ck_assert_str_eq(j->name, "full-1");
    ck_assert_int_eq(j->dataset, SILA_DATASET_CIFAR100);
    ck_assert_str_eq(j->data_dir, "/data/c100");
    ck_assert_int_eq(j->input.c, 3);
    ck_assert_int_eq(j->input.h, 32);
    ck_assert_int_eq(j->input.w, 32);
    ck_assert_int_eq(j->nclasses, 100);
    ck_assert_int_eq(j->epochs, 7);
    ck_assert_int_eq(j->batch, 32);
    ck_assert_uint_eq(j->seed, UINT64_MAX);
    ck_assert_int_eq(j->algorithm, SILA_ALGO_PGL);
    ck_assert_int_eq(j->period, 5);
    ck_assert_int_eq(j->global_steps, 5);
    ck_assert_float_eq(j->local_weight, 0.25f);
    ck_assert_int_eq(j->eval_every, 3);
    ck_assert_uint_eq(j->train_limit, UINT32_MAX);
    ck_assert_uint_eq(j->test_limit, 100);
    ck_assert_int_eq(j->augment_crop, 16);
    ck_assert(j->augment_flip);
    ck_assert_float_eq(j->label_smoothing, 0.1f);
}

static void check_full_job_optim(const struct sila_job *j)
{
    ck_assert_int_eq(j->optim.kind, SILA_OPTIM_ADAMW);
    ck_assert_float_eq(j->sched.lr, 3e-4f);
    ck_assert_float_eq(j->optim.momentum, 0.5f);
    ck_assert(!j->optim.nesterov);
    ck_assert_float_eq(j->optim.weight_decay, 0.05f);
    ck_assert_float_eq(j->optim.beta1, 0.8f);
    ck_assert_float_eq(j->optim.beta2, 0.99f);
    ck_assert_float_eq(j->optim.eps, 1e-6f);
    ck_assert_int_eq(j->sched.kind, SILA_SCHED_STEP);
    ck_assert_float_eq(j->sched.min_lr, 1e-5f);
    ck_assert_float_eq(j->warmup_epochs, 0.5f);
    ck_assert_float_eq(j->step_epochs, 2.5f);
    ck_assert_float_eq(j->sched.gamma, 0.5f);
    /* the trainer's to fill */
    ck_assert_uint_eq(j->sched.total_steps, 0);
    ck_assert_uint_eq(j->sched.warmup_steps, 0);
    ck_assert_uint_eq(j->sched.step_size, 0);
}

static void check_layer(const struct sila_job *j, int i, enum sila_layer_kind kind, int out,
                        int kernel, int stride, int pad, bool bias, int line)
{
    const struct sila_layer_spec *s = &j->layers[i];
    ck_assert_msg(s->kind == kind, "layer %d: kind %d, expected %d", i, s->kind, kind);
    ck_assert_int_eq(s->out, out);
    ck_assert_int_eq(s->kernel, kernel);
    ck_assert_int_eq(s->stride, stride);
    ck_assert_int_eq(s->pad, pad);
    ck_assert_int_eq(s->bias, bias);
    ck_assert_int_eq(j->layer_lines[i], line);
}

static void check_full_job_net(const struct sila_job *j)
{
    ck_assert_int_eq(j->nmodules, 3);
    ck_assert_int_eq(j->nlayers, 11);
    static const int first[] = {0, 4, 7}, count[] = {4, 3, 4}, lines[] = {35, 50, 63};
    static const enum sila_aux_kind aux[] = {SILA_AUX_MLP, SILA_AUX_CONV, SILA_AUX_LINEAR};
    for (int m = 0; m < 3; m++) {
        ck_assert_int_eq(j->modules[m].first_layer, first[m]);
        ck_assert_int_eq(j->modules[m].nlayers, count[m]);
        ck_assert_int_eq(j->modules[m].objective.aux, aux[m]);
        ck_assert_int_eq(j->modules[m].line, lines[m]);
    }
    ck_assert_int_eq(j->modules[0].objective.aux_hidden, 64);
    ck_assert_int_eq(j->modules[1].objective.aux_hidden, 256);
    check_layer(j, 0, SILA_LAYER_CONV2D, 8, 5, 1, 2, false, 38);
    check_layer(j, 1, SILA_LAYER_BATCHNORM, 0, 0, 1, 0, false, 44);
    ck_assert_float_eq(j->layers[1].bn_momentum, 0.2f);
    ck_assert_float_eq(j->layers[1].bn_eps, 1e-3f);
    check_layer(j, 2, SILA_LAYER_RELU, 0, 0, 1, 0, false, 47);
    check_layer(j, 3, SILA_LAYER_DROPOUT, 0, 0, 1, 0, false, 48);
    ck_assert_float_eq(j->layers[3].p, 0.3f);
    /* a pool's stride follows its kernel unless set */
    check_layer(j, 4, SILA_LAYER_MAXPOOL, 0, 3, 3, 1, false, 52);
    check_layer(j, 5, SILA_LAYER_BLOCK, 16, 0, 2, 0, false, 55);
    ck_assert_float_eq(j->layers[5].p, 0.1f);
    ck_assert_float_eq(j->layers[5].bn_momentum, 0.05f);
    ck_assert_float_eq(j->layers[5].bn_eps, 2e-5f);
    check_layer(j, 6, SILA_LAYER_DROPPATH, 0, 0, 1, 0, false, 61);
    ck_assert_float_eq(j->layers[6].p, 0.2f);
    check_layer(j, 7, SILA_LAYER_AVGPOOL, 0, 2, 1, 0, false, 64);
    check_layer(j, 8, SILA_LAYER_GAP, 0, 0, 1, 0, false, 67);
    check_layer(j, 9, SILA_LAYER_FLATTEN, 0, 0, 1, 0, false, 68);
    check_layer(j, 10, SILA_LAYER_LINEAR, 100, 0, 1, 0, false, 69);
}

START_TEST(test_full_job)
{
    char path[256];
    write_job("full.ini", full_job, path);
    struct sila_job j;
    struct sila_err err = {""};
    int r = sila_job_load(&j, path, NULL, 0, &err);
    ck_assert_msg(r == 0, "load: %d %s", r, err.msg);
    ck_assert_str_eq(j.path, path);
    check_full_job_header(&j);
    check_full_job_optim(&j);
    check_full_job_net(&j);
    sila_job_fini(&j);
    ck_assert_ptr_null(j.layers);
    sila_job_fini(&j); /* safe on a zeroed job */
}
END_TEST

/* ---- defaults ---- */

/* A small valid job; error cases below edit its lines (numbers on the
 * right). Input 1x28x28 -> conv 4x26x26 -> flatten 2704 -> linear 10. */
static const char *const base_lines[] = {
    "[job]",            /* 1 */
    "name = t",         /* 2 */
    "dataset = fmnist", /* 3 */
    "epochs = 1",       /* 4 */
    "batch = 8",        /* 5 */
    "algorithm = pgl",  /* 6 */
    "period = 4",       /* 7 */
    "global_steps = 1", /* 8 */
    "[optimizer]",      /* 9 */
    "lr = 0.1",         /* 10 */
    "momentum = 0.9",   /* 11 */
    "[schedule]",       /* 12 */
    "kind = cosine",    /* 13 */
    "[module]",         /* 14 */
    "[conv2d]",         /* 15 */
    "out = 4",          /* 16 */
    "[relu]",           /* 17 */
    "[module]",         /* 18 */
    "aux = linear",     /* 19 */
    "[flatten]",        /* 20 */
    "[linear]",         /* 21 */
    "out = 10",         /* 22 */
};
#define NBASE ((int)(sizeof base_lines / sizeof base_lines[0]))

struct edit {
    int line;         /* 1-based line of base_lines to replace, 0 = none */
    int last;         /* lines line+1..last are deleted */
    const char *text; /* the replacement of line: "" deletes it, "\n" separates lines */
};
#define REPLACE(l, t)                                                                              \
    {                                                                                              \
        l, l, t                                                                                    \
    }
#define DELETE(a, b)                                                                               \
    {                                                                                              \
        a, b, ""                                                                                   \
    }
#define NO_EDIT                                                                                    \
    {                                                                                              \
        0, 0, ""                                                                                   \
    }

/* base_lines with edits applied, into text (8192 bytes). */
static void build_text(const struct edit *edits, int nedits, char *text)
{
    size_t len = 0;
    for (int i = 0; i < NBASE; i++) {
        const char *line = base_lines[i];
        for (int e = 0; e < nedits; e++)
            if (edits[e].line == i + 1)
                line = edits[e].text;
            else if (edits[e].line < i + 1 && i + 1 <= edits[e].last)
                line = "";
        if (*line)
            len += (size_t)snprintf(text + len, 8192 - len, "%s\n", line);
    }
}

START_TEST(test_defaults)
{
    char text[8192], path[256];
    const struct edit drop_sched[] = {REPLACE(7, ""), REPLACE(8, ""), REPLACE(11, ""),
                                      REPLACE(12, ""), REPLACE(13, "")};
    build_text(drop_sched, 5, text);
    write_job("defaults.ini", text, path);
    struct sila_job j;
    struct sila_err err = {""};
    ck_assert_msg(sila_job_load(&j, path, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(j.data_dir, "/usr/share/datasets/fashion-mnist");
    ck_assert_uint_eq(j.seed, 1);
    ck_assert_int_eq(j.period, 10);
    ck_assert_int_eq(j.global_steps, 1);
    ck_assert_float_eq(j.local_weight, 0.0f);
    ck_assert_int_eq(j.global_lag, 0);
    ck_assert_int_eq(j.eval_every, 1);
    ck_assert_int_eq(j.evals_per_epoch, 1);
    ck_assert_uint_eq(j.train_limit, 0);
    ck_assert_int_eq(j.augment_crop, 0);
    ck_assert(!j.augment_flip);
    ck_assert_int_eq(j.optim.kind, SILA_OPTIM_SGD);
    ck_assert_float_eq(j.optim.momentum, 0.0f);
    ck_assert_float_eq(j.optim.beta1, 0.9f);
    ck_assert_float_eq(j.optim.beta2, 0.999f);
    ck_assert_float_eq(j.optim.eps, 1e-8f);
    ck_assert_int_eq(j.sched.kind, SILA_SCHED_CONSTANT);
    ck_assert_int_eq(j.modules[0].objective.aux, SILA_AUX_LINEAR);
    ck_assert_int_eq(j.modules[0].objective.aux_hidden, 256);
    /* layer defaults come from sila_layer_spec_default */
    ck_assert_int_eq(j.layers[0].kernel, 3);
    ck_assert_int_eq(j.layers[0].stride, 1);
    ck_assert(j.layers[0].bias);
    sila_job_fini(&j);
}
END_TEST

/* ---- errors ---- */

struct bad_case {
    const char *what;
    struct edit edits[2];
    const char *overrides[2];
    int line;           /* expected "FILE:LINE: ", 0 for an override error */
    const char *expect; /* the section and key, as they appear */
};

static const char long_line[] =
    "name = t ; 0123456789012345678901234567890123456789012345678901234567890123456789"
    "0123456789012345678901234567890123456789012345678901234567890123456789"
    "0123456789012345678901234567890123456789012345678901234567890123456789";

static const struct bad_case bad_cases[] = {
    {"unknown section", {REPLACE(17, "[relux]")}, {NULL}, 17, "[relux]"},
    {"unknown key", {REPLACE(4, "epochs = 1\ncolour = red")}, {NULL}, 5, "[job] colour"},
    {"key of another layer kind", {REPLACE(17, "[relu]\nout = 3")}, {NULL}, 18, "[relu] out"},
    {"duplicate key", {REPLACE(5, "batch = 8\nbatch = 16")}, {NULL}, 6, "[job] batch"},
    {"duplicate [job]", {REPLACE(12, "[job]")}, {NULL}, 12, "[job]"},
    {"bad integer", {REPLACE(4, "epochs = 12abc")}, {NULL}, 4, "[job] epochs"},
    {"unknown wire dtype",
     {REPLACE(4, "epochs = 1\nwire_dtype = f8")},
     {NULL},
     5,
     "[job] wire_dtype"},
    {"empty integer", {REPLACE(5, "batch =")}, {NULL}, 5, "[job] batch"},
    {"integer overflow", {REPLACE(4, "epochs = 99999999999999999999")}, {NULL}, 4, "[job] epochs"},
    {"int beyond INT_MAX", {REPLACE(4, "epochs = 2147483648")}, {NULL}, 4, "[job] epochs"},
    {"negative seed", {REPLACE(4, "epochs = 1\nseed = -1")}, {NULL}, 5, "[job] seed"},
    {"negative epochs", {REPLACE(4, "epochs = -3")}, {NULL}, 4, "[job] epochs"},
    {"batch too large", {REPLACE(5, "batch = 65537")}, {NULL}, 5, "[job] batch"},
    {"bad float", {REPLACE(10, "lr = 0.1x")}, {NULL}, 10, "[optimizer] lr"},
    {"infinite float", {REPLACE(10, "lr = inf")}, {NULL}, 10, "[optimizer] lr"},
    {"float beyond float", {REPLACE(10, "lr = 1e39")}, {NULL}, 10, "[optimizer] lr"},
    {"zero lr", {REPLACE(10, "lr = 0")}, {NULL}, 10, "[optimizer] lr"},
    {"label smoothing 1",
     {REPLACE(4, "epochs = 1\nlabel_smoothing = 1")},
     {NULL},
     5,
     "[job] label_smoothing"},
    {"bad bool",
     {REPLACE(11, "momentum = 0.9\nnesterov = maybe")},
     {NULL},
     12,
     "[optimizer] nesterov"},
    {"unknown algorithm", {REPLACE(6, "algorithm = dgl")}, {NULL}, 6, "[job] algorithm"},
    {"unknown dataset", {REPLACE(3, "dataset = svhn")}, {NULL}, 3, "[job] dataset"},
    {"unknown aux kind", {REPLACE(19, "aux = resnet")}, {NULL}, 19, "[module] aux"},
    {"bad name", {REPLACE(2, "name = ../x")}, {NULL}, 2, "[job] name"},
    {"layer before any module", {REPLACE(14, "")}, {NULL}, 14, "[conv2d]"},
    {"module without layers", {REPLACE(17, "[relu]\n[module]")}, {NULL}, 18, "[module]"},
    {"no modules", {DELETE(14, 22)}, {NULL}, 1, "[job]: no [module]"},
    {"linear after conv without flatten", {REPLACE(20, "")}, {NULL}, 20, "[linear] out"},
    {"last layer not nclasses", {REPLACE(22, "out = 7")}, {NULL}, 21, "[linear] out"},
    {"linear without out", {REPLACE(22, "")}, {NULL}, 21, "[linear] out"},
    {"kernel larger than input",
     {REPLACE(16, "out = 4\nkernel = 29")},
     {NULL},
     15,
     "[conv2d] kernel"},
    {"pool pad over half kernel", {REPLACE(17, "[maxpool]\npad = 2")}, {NULL}, 17, "[maxpool] pad"},
    {"mlp head on a flat output",
     {REPLACE(14, "[module]\naux = mlp"), REPLACE(17, "[gap]")},
     {NULL},
     14,
     "[module] aux"},
    {"global_steps > period", {REPLACE(8, "global_steps = 5")}, {NULL}, 8, "[job] global_steps"},
    {"global_lag without global steps",
     {REPLACE(6, "algorithm = local\nglobal_lag = 2")},
     {NULL},
     7,
     "[job] global_lag"},
    {"global_lag beyond 16",
     {REPLACE(8, "global_steps = 1\nglobal_lag = 17")},
     {NULL},
     9,
     "[job] global_lag"},
    {"nesterov without momentum",
     {REPLACE(11, "nesterov = true")},
     {NULL},
     11,
     "[optimizer] nesterov"},
    {"step schedule without step_epochs",
     {REPLACE(13, "kind = step")},
     {NULL},
     12,
     "[schedule] step_epochs"},
    {"warmup as long as the run",
     {REPLACE(13, "kind = cosine\nwarmup_epochs = 1")},
     {NULL},
     14,
     "[schedule] warmup_epochs"},
    {"cifar without data_dir", {REPLACE(3, "dataset = cifar10")}, {NULL}, 1, "[job] data_dir"},
    {"missing name", {REPLACE(2, "")}, {NULL}, 1, "[job] name"},
    {"missing [optimizer]", {DELETE(9, 11)}, {NULL}, 1, "[optimizer]: missing"},
    {"overlong line", {REPLACE(2, long_line)}, {NULL}, 2, "[job] name"},
    {"malformed header", {REPLACE(17, "[relu")}, {NULL}, 17, "[relu"},
    {"line without '='", {REPLACE(13, "kind cosine")}, {NULL}, 13, "[schedule]"},
    {"key before any section", {REPLACE(1, "x = 1\n[job]")}, {NULL}, 1, "x: key outside"},
    {"continuation line",
     {REPLACE(3, "dataset = fmnist\n  mnist")},
     {NULL},
     4,
     "[job]: expected 'key = value'"},
    {"text after a header", {REPLACE(17, "[relu] x")}, {NULL}, 17, "[relu] x"},
    {"inline '#' is not a comment", {REPLACE(4, "epochs = 2 # two")}, {NULL}, 4, "[job] epochs"},
    {"bad override value", {NO_EDIT}, {"job.epochs=x"}, 0, "[job] epochs"},
    {"override out of range", {NO_EDIT}, {"job.batch=0"}, 0, "[job] batch"},
    {"unknown override key", {NO_EDIT}, {"job.colour=red"}, 0, "[job] colour"},
    {"override of a module", {NO_EDIT}, {"module.aux=mlp"}, 0, "unknown section 'module'"},
    {"override without section", {NO_EDIT}, {"epochs=3"}, 0, "section.key=value"},
    {"unknown objective",
     {REPLACE(14, "[module]\nobjective = dml")},
     {NULL},
     15,
     "[module] objective"},
    {"cosub without drop-path",
     {REPLACE(14, "[module]\nobjective = cosub")},
     {NULL},
     14,
     "[module] objective: module 1: cosub needs drop-path"},
    {"cosub for all without drop-path",
     {NO_EDIT},
     {"objective.kind=cosub"},
     0,
     "[objective] kind: cosub needs drop-path in some module"},
    {"sila on the last module",
     {REPLACE(18, "[module]\nobjective = sila")},
     {NULL},
     18,
     "[module] objective: module 2: the last module has no aux head"},
    {"redundancy on the last module",
     {REPLACE(18, "[module]\nredundancy = 0.1")},
     {NULL},
     18,
     "[module] redundancy: module 2"},
    {"kernel_similarity without conv",
     {REPLACE(18, "[module]\nkernel_similarity = 0.1")},
     {NULL},
     18,
     "[module] kernel_similarity: module 2"},
    {"MAN without a conv in the next module",
     {NO_EDIT},
     {"objective.man_momentum=0.9"},
     0,
     "[objective] man_momentum: module 1: MAN copies the first [block] or [conv2d] of the next "
     "module, and module 2 has none"},
    {"MAN on the last module",
     {REPLACE(18, "[module]\nman_momentum = 0.9")},
     {NULL},
     18,
     "[module] man_momentum: module 2: the last module has no aux head"},
    {"MAN with a twin head",
     {REPLACE(20, "[conv2d]\nout = 2\n[flatten]")},
     {"objective.kind=sila", "objective.man_momentum=0.5"},
     0,
     "[objective] man_momentum: module 1: MAN is built for one head per module, and sila"},
    {"objective under e2e",
     {REPLACE(6, "algorithm = e2e"), REPLACE(14, "[module]\nobjective = sila")},
     {NULL},
     14,
     "[module] objective: module 1: e2e has no local steps"},
    {"temperature 0",
     {REPLACE(14, "[module]\ntemperature = 0")},
     {NULL},
     15,
     "[module] temperature"},
    {"collab_beta above 1", {NO_EDIT}, {"objective.collab_beta=1.5"}, 0, "[objective] collab_beta"},
    {"unknown [objective] key",
     {REPLACE(12, "[objective]\nflavour = x\n[schedule]")},
     {NULL},
     13,
     "[objective] flavour"},
    {"drop_path without blocks", {NO_EDIT}, {"job.drop_path=0.1"}, 0, "[job] drop_path"},
    {"override breaking a rule",
     {NO_EDIT},
     {"job.period=10", "job.global_steps=11"},
     0,
     "[job] global_steps"},
    {"deploy not a choice", {NO_EDIT}, {"job.deploy=head"}, 0, "[job] deploy"},
    {"deploy head 0", {NO_EDIT}, {"job.deploy=head:0"}, 0, "[job] deploy"},
    {"deploy the classifier as a head",
     {NO_EDIT},
     {"job.deploy=head:2"},
     0,
     "[job] deploy: head:2 names no head: the 2 modules have heads 1 to 1"},
    {"best_head without a held-out split",
     {NO_EDIT},
     {"job.deploy=best_head"},
     0,
     "[job] deploy: best_head chooses on held-out training samples"},
    {"deploy_tolerance without best_head",
     {NO_EDIT},
     {"job.deploy_tolerance=0.5"},
     0,
     "[job] deploy_tolerance: applies to deploy = best_head only"},
    {"deploy a head under e2e",
     {REPLACE(6, "algorithm = e2e")},
     {"job.deploy=head:1"},
     0,
     "[job] deploy: under e2e the aux heads do not learn"},
};

static int count_overrides(const struct bad_case *c)
{
    return c->overrides[1] ? 2 : c->overrides[0] ? 1 : 0;
}

START_TEST(test_bad_case)
{
    const struct bad_case *c = &bad_cases[_i];
    char text[8192], path[256], name[32], want[320];
    build_text(c->edits, 2, text);
    snprintf(name, sizeof name, "bad%d.ini", _i);
    write_job(name, text, path);
    struct sila_job j;
    struct sila_err err = {""};
    int n = count_overrides(c);
    int r = sila_job_load(&j, path, n ? c->overrides : NULL, n, &err);
    ck_assert_msg(r == -EINVAL, "%s: returned %d (%s)", c->what, r, err.msg);
    if (c->line)
        snprintf(want, sizeof want, "%s:%d: ", path, c->line);
    else
        snprintf(want, sizeof want, "override '%s': ", c->overrides[n - 1]);
    ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "%s: '%s' does not start with '%s'",
                  c->what, err.msg, want);
    ck_assert_msg(strstr(err.msg, c->expect), "%s: '%s' does not name '%s'", c->what, err.msg,
                  c->expect);
    /* the job is left zeroed */
    ck_assert_ptr_null(j.layers);
    ck_assert_int_eq(j.nmodules, 0);
}
END_TEST

/* [objective] gives every module its keys; a [module] overrides its own;
 * the last module keeps ce and no redundancy when they come from
 * [objective]; drop_path rises linearly over the blocks. */
START_TEST(test_objective_resolution)
{
    static const char text[] = "[job]\nname = o\ndataset = fmnist\nepochs = 1\nbatch = 8\n"
                               "algorithm = local\ndrop_path = 0.2\n"
                               "[optimizer]\nlr = 0.1\n"
                               "[objective]\nkind = collab\nredundancy = 0.25\ntemperature = 3\n"
                               "[module]\nobjective = sila\ndml_weight = 1.5\n"
                               "[conv2d]\nout = 4\n[block]\nout = 4\n"
                               "[module]\nkernel_similarity = 0.5\n[block]\nout = 4\n"
                               "[module]\n[block]\nout = 4\n[gap]\n[linear]\nout = 10\n";
    char path[256];
    write_job("objective.ini", text, path);
    struct sila_job j;
    struct sila_err err = {""};
    ck_assert_msg(sila_job_load(&j, path, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(j.nmodules, 3);
    const struct sila_objective *o1 = &j.modules[0].objective, *o2 = &j.modules[1].objective,
                                *o3 = &j.modules[2].objective;
    ck_assert_int_eq(o1->kind, SILA_OBJ_SILA);
    ck_assert_float_eq(o1->dml_weight, 1.5f);
    ck_assert_float_eq(o1->redundancy, 0.25f);
    ck_assert_float_eq(o1->temperature, 3.0f);
    ck_assert_float_eq(o1->kernel_similarity, 0.0f);
    ck_assert_int_eq(o2->kind, SILA_OBJ_COLLAB);
    ck_assert_float_eq(o2->kernel_similarity, 0.5f);
    ck_assert_float_eq(o2->collab_beta, 0.5f); /* the default */
    ck_assert_int_eq(o3->kind, SILA_OBJ_COLLAB);
    ck_assert_float_eq(o3->redundancy, 0.0f); /* not on the classifier's logits */
    ck_assert(sila_job_uses_collab(&j));
    ck_assert_float_eq(j.layers[1].p, 0.2f / 3.0f);
    ck_assert_float_eq(j.layers[2].p, 0.4f / 3.0f);
    ck_assert_float_eq(j.layers[3].p, 0.2f);
    ck_assert_str_eq(sila_objective_name(o1->kind), "sila");
    sila_job_fini(&j);
    const char *ce[] = {"objective.kind=ce", "objective.redundancy=0"};
    ck_assert_msg(sila_job_load(&j, path, ce, 2, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(j.modules[1].objective.kind, SILA_OBJ_CE);
    ck_assert(!sila_job_uses_collab(&j));
    sila_job_fini(&j);
}
END_TEST

START_TEST(test_specific_messages)
{
    /* The shape error names the shapes; the range error the range. */
    char text[8192], path[256];
    struct sila_job j;
    struct sila_err err = {""};
    const struct edit no_flatten = REPLACE(20, "");
    build_text(&no_flatten, 1, text);
    write_job("msg1.ini", text, path);
    ck_assert_int_eq(sila_job_load(&j, path, NULL, 0, &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, "expects a flat input, got 4x26x26"), "%s", err.msg);
    const struct edit neg = REPLACE(4, "epochs = -3");
    build_text(&neg, 1, text);
    write_job("msg2.ini", text, path);
    ck_assert_int_eq(sila_job_load(&j, path, NULL, 0, &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, "-3 is out of range (must be >= 1)"), "%s", err.msg);
}
END_TEST

START_TEST(test_empty_text)
{
    /* An empty file, or a coordinator's Welcome with no job text, is a job
     * without its sections, not a line with a NUL byte. */
    char path[256];
    struct sila_job j;
    struct sila_err err = {""};
    write_job("empty.ini", "", path);
    ck_assert_int_eq(sila_job_load(&j, path, NULL, 0, &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, "[job]: missing section"), "%s", err.msg);
    ck_assert_int_eq(sila_job_parse(&j, "welcome", "", 0, NULL, 0, &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, "welcome:1: [job]: missing section"), "%s", err.msg);
}
END_TEST

START_TEST(test_missing_file)
{
    struct sila_job j;
    struct sila_err err = {""};
    ck_assert_int_eq(sila_job_load(&j, "/nonexistent/job.ini", NULL, 0, &err), -ENOENT);
    ck_assert_msg(strstr(err.msg, "/nonexistent/job.ini"), "%s", err.msg);
}
END_TEST

/* Loads the base job with a line 2 "data_dir = /ddd..." of `len`
 * characters, ended by `eol`. */
static int load_with_line(int len, const char *eol, struct sila_err *err)
{
    char body[8192], text[9000], line[512], path[256];
    int n = snprintf(line, sizeof line, "data_dir = /");
    memset(line + n, 'd', (size_t)(len - n));
    line[len] = '\0';
    const struct edit no_header = REPLACE(1, "");
    build_text(&no_header, 1, body);
    snprintf(text, sizeof text, "[job]\n%s%s%s", line, eol, body);
    write_job("long.ini", text, path);
    struct sila_job j;
    int r = sila_job_load(&j, path, NULL, 0, err);
    if (r == 0) {
        ck_assert_int_eq(strlen(j.data_dir), (size_t)len - strlen("data_dir = "));
        sila_job_fini(&j);
    }
    return r;
}

START_TEST(test_line_limit)
{
    /* libinih (INI_MAX_LINE 200) reads 197 characters and a line end; a
     * longer line is refused by name, never cut. */
    struct sila_err err = {""};
    ck_assert_msg(load_with_line(197, "\n", &err) == 0, "%s", err.msg);
    ck_assert_msg(load_with_line(197, "\r\n", &err) == 0, "%s", err.msg);
    ck_assert_int_eq(load_with_line(198, "\n", &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, "long.ini:2: [job] data_dir: line is too long (198 characters"),
                  "%s", err.msg);
}
END_TEST

START_TEST(test_syntax_accepted)
{
    /* A byte-order mark, CRLF line ends, ';' and '#' comments, inline ';'
     * comments (after a blank), comments after a header, indentation, ':'
     * as separator and blanks around '=' are all fine. */
    static const char text[] = "\xEF\xBB\xBF# comment\r\n"
                               "[job] ; the job\r\n"
                               "  name=t\r\n"
                               "dataset : fmnist\r\n"
                               "epochs   =   3 ; three\r\n"
                               "batch = 8\r\n"
                               "algorithm = e2e\r\n"
                               "\t[optimizer]\r\n"
                               "lr = 0.1\r\n"
                               "[module]\r\n"
                               "[flatten]\r\n"
                               "[linear]\r\n"
                               "out = 10";
    char path[256];
    write_job("syntax.ini", text, path);
    struct sila_job j;
    struct sila_err err = {""};
    ck_assert_msg(sila_job_load(&j, path, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(j.name, "t");
    ck_assert_int_eq(j.dataset, SILA_DATASET_FMNIST);
    ck_assert_int_eq(j.epochs, 3);
    ck_assert_int_eq(j.algorithm, SILA_ALGO_E2E);
    ck_assert_int_eq(j.nlayers, 2);
    ck_assert_int_eq(j.layer_lines[1], 12);
    ck_assert_int_eq(j.layers[1].out, 10);
    sila_job_fini(&j);
}
END_TEST

START_TEST(test_unreadable_path)
{
    /* A directory opens but cannot be read. */
    struct sila_job j;
    struct sila_err err = {""};
    int r = sila_job_load(&j, tmpdir, NULL, 0, &err);
    ck_assert_int_eq(r, -EISDIR);
    ck_assert_msg(strstr(err.msg, tmpdir), "%s", err.msg);
}
END_TEST

/* ---- overrides ---- */

START_TEST(test_override_fixes_file)
{
    /* The file's global_steps exceeds its period; overrides are applied
     * before the whole-job checks, so fixing either makes it valid. */
    char text[8192], path[256];
    const struct edit too_many = REPLACE(8, "global_steps = 5");
    build_text(&too_many, 1, text);
    write_job("fix.ini", text, path);
    const char *const fix[] = {" job.global_steps = 2 ", "optimizer.lr=0.5", "schedule.kind=step",
                               "schedule.step_epochs=1", "job.period=8",     "job.period=6"};
    struct sila_job j;
    struct sila_err err = {""};
    int r = sila_job_load(&j, path, fix, 6, &err);
    ck_assert_msg(r == 0, "%s", err.msg);
    ck_assert_int_eq(j.global_steps, 2);
    ck_assert_int_eq(j.period, 6); /* the last override of a key wins */
    ck_assert_float_eq(j.sched.lr, 0.5f);
    ck_assert_int_eq(j.sched.kind, SILA_SCHED_STEP);
    ck_assert_float_eq(j.step_epochs, 1.0f);
    sila_job_fini(&j);
    const char *const period[] = {"job.period=5"};
    ck_assert_msg(sila_job_load(&j, path, period, 1, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(j.global_steps, 5);
    sila_job_fini(&j);
    /* ranges too are checked after the overrides */
    const struct edit zero = REPLACE(4, "epochs = 0");
    build_text(&zero, 1, text);
    write_job("fix2.ini", text, path);
    const char *const epochs[] = {"job.epochs=2"};
    ck_assert_msg(sila_job_load(&j, path, epochs, 1, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(j.epochs, 2);
    sila_job_fini(&j);
}
END_TEST

/* job.deploy's forms, and the held-out split they choose on: the last
 * `holdout` training samples, out of the training and evaluated after the
 * test split; job.wire_dtype's names (f32 unless set). */
START_TEST(test_deploy_and_holdout)
{
    char text[8192], path[256];
    build_text(NULL, 0, text);
    write_job("deploy.ini", text, path);
    struct sila_job j;
    struct sila_err err = {""};
    ck_assert_msg(sila_job_load(&j, path, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(j.deploy, SILA_DEPLOY_CLASSIFIER);
    ck_assert_uint_eq(j.holdout, 0);
    ck_assert_int_eq(j.wire_dtype, SILA_DTYPE_F32);
    sila_job_fini(&j);
    for (enum sila_dtype d = SILA_DTYPE_F32; d <= SILA_DTYPE_F16; d++) {
        char set[64];
        snprintf(set, sizeof set, "job.wire_dtype=%s", sila_dtype_names[d]);
        const char *const dtype[] = {set};
        ck_assert_msg(sila_job_load(&j, path, dtype, 1, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(j.wire_dtype, d);
        sila_job_fini(&j);
    }
    const char *const head[] = {"job.deploy=head:1"};
    ck_assert_msg(sila_job_load(&j, path, head, 1, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(j.deploy, 1);
    sila_job_fini(&j);
    const char *const best[] = {"job.deploy=best_head", "job.holdout=100",
                                "job.deploy_tolerance=0.5", "job.train_limit=800"};
    ck_assert_msg(sila_job_load(&j, path, best, 4, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(j.deploy, SILA_DEPLOY_BEST_HEAD);
    ck_assert_float_eq(j.deploy_tolerance, 0.5f);
    struct sila_plan pl;
    ck_assert_msg(sila_plan_init(&pl, &j, 1000, 250, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(pl.nholdout, 100);
    ck_assert_uint_eq(pl.holdout_first, 900);
    ck_assert_uint_eq(pl.ntrain, 800); /* the limit takes from what the holdout leaves */
    uint32_t B = (uint32_t)j.batch;
    ck_assert_uint_eq(pl.test_batches, (250 + B - 1) / B);
    ck_assert_uint_eq(pl.eval_batches, pl.test_batches + (100 + B - 1) / B);
    ck_assert_int_eq(sila_plan_init(&pl, &j, 100, 250, &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, "holdout 100 takes every one of the 100"), "%s", err.msg);
    sila_job_fini(&j);
}
END_TEST

/* The rounds cut every epoch into evals_per_epoch spans that cover its
 * steps in order, differ by at most one step, and evaluate with their
 * epoch; one per epoch keeps the epochs. */
START_TEST(test_rounds)
{
    char text[8192], path[256];
    build_text(NULL, 0, text);
    write_job("rounds.ini", text, path);
    struct sila_job j;
    struct sila_err err = {""};
    const char *const every[] = {"job.epochs=5", "job.eval_every=2"};
    ck_assert_msg(sila_job_load(&j, path, every, 2, &err) == 0, "%s", err.msg);
    struct sila_plan pl;
    const uint32_t ntrain[] = {(uint32_t)j.batch * 7, (uint32_t)j.batch * 12,
                               (uint32_t)j.batch * 3};
    for (int N = 1; N <= 4; N++) {
        j.evals_per_epoch = N;
        for (size_t d = 0; d < sizeof ntrain / sizeof *ntrain; d++) {
            int r = sila_plan_init(&pl, &j, ntrain[d], 100, &err);
            if ((uint64_t)N > ntrain[d] / (uint32_t)j.batch) {
                ck_assert_int_eq(r, -EINVAL);
                ck_assert_msg(strstr(err.msg, "evals_per_epoch"), "%s", err.msg);
                continue;
            }
            ck_assert_msg(r == 0, "%s", err.msg);
            uint64_t S = pl.steps_per_epoch;
            ck_assert_uint_eq(sila_plan_rounds(&pl), 5 * (uint32_t)N);
            uint64_t t = 0;
            for (uint32_t q = 0; q < sila_plan_rounds(&pl); q++) {
                uint64_t end = sila_plan_round_end(&pl, q);
                ck_assert_uint_ge(end - t, S / (uint64_t)N);
                ck_assert_uint_le(end - t, (S + (uint64_t)N - 1) / (uint64_t)N);
                for (; t < end; t++)
                    ck_assert_uint_eq(sila_plan_round_of(&pl, t), q);
                ck_assert(sila_plan_evaluates(&pl, q) ==
                          (q / (uint32_t)N % 2 == 1 || q / (uint32_t)N == 4));
            }
            ck_assert_uint_eq(t, pl.total_steps);
            if (N == 1)
                for (uint32_t e = 0; e < 5; e++)
                    ck_assert_uint_eq(sila_plan_round_end(&pl, e), (e + 1) * S);
        }
    }
    sila_job_fini(&j);
    const char *const many[] = {"job.evals_per_epoch=1001"};
    ck_assert_int_eq(sila_job_load(&j, path, many, 1, &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, "evals_per_epoch"), "%s", err.msg);
}
END_TEST

/* ---- names ---- */

START_TEST(test_names)
{
    ck_assert_str_eq(sila_algorithm_name(SILA_ALGO_E2E), "e2e");
    ck_assert_str_eq(sila_algorithm_name(SILA_ALGO_LOCAL), "local");
    ck_assert_str_eq(sila_algorithm_name(SILA_ALGO_PGL), "pgl");
    ck_assert_ptr_null(sila_algorithm_name((enum sila_algorithm)0));
    ck_assert_str_eq(sila_aux_kind_name(SILA_AUX_LINEAR), "linear");
    ck_assert_str_eq(sila_aux_kind_name(SILA_AUX_CONV), "conv");
    ck_assert_str_eq(sila_aux_kind_name(SILA_AUX_MLP), "mlp");
    ck_assert_str_eq(sila_aux_kind_name(SILA_AUX_DGL), "dgl");
    ck_assert_str_eq(sila_aux_kind_name(SILA_AUX_INFOPRO), "infopro");
    ck_assert_str_eq(sila_aux_kind_name(SILA_AUX_AUGLOCAL), "auglocal");
    ck_assert_ptr_null(sila_aux_kind_name((enum sila_aux_kind)7));
}
END_TEST

/* ---- example jobs ---- */

struct example {
    const char *file;
    enum sila_dataset_kind dataset;
    enum sila_algorithm algorithm;
    int epochs;
    int nmodules;
    int layers_per_module[8];
};

static const struct example examples[] = {
    {"fmnist-cnn-k4.ini", SILA_DATASET_FMNIST, SILA_ALGO_PGL, 2, 4, {3, 4, 3, 6}},
    {"fmnist-resnet-k8.ini", SILA_DATASET_FMNIST, SILA_ALGO_PGL, 4, 8, {4, 1, 1, 1, 1, 1, 1, 3}},
    {"fmnist-mlp.ini", SILA_DATASET_FMNIST, SILA_ALGO_LOCAL, 10, 3, {3, 2, 3}},
    {"cifar10-resnet20-k4.ini", SILA_DATASET_CIFAR10, SILA_ALGO_PGL, 30, 4, {5, 2, 2, 5}},
};

START_TEST(test_example_job)
{
    const struct example *e = &examples[_i];
    char path[512];
    snprintf(path, sizeof path, "%s/deploy/jobs/%s", SILA_SOURCE_DIR, e->file);
    struct sila_job j;
    struct sila_err err = {""};
    int r = sila_job_load(&j, path, NULL, 0, &err);
    ck_assert_msg(r == 0, "%s: %s", e->file, err.msg);
    ck_assert_int_eq(j.dataset, e->dataset);
    ck_assert_int_eq(j.algorithm, e->algorithm);
    ck_assert_int_eq(j.epochs, e->epochs);
    ck_assert_int_eq(j.nmodules, e->nmodules);
    int total = 0;
    for (int m = 0; m < j.nmodules; m++) {
        ck_assert_int_eq(j.modules[m].first_layer, total);
        ck_assert_int_eq(j.modules[m].nlayers, e->layers_per_module[m]);
        total += e->layers_per_module[m];
    }
    ck_assert_int_eq(j.nlayers, total);
    ck_assert_int_eq(j.layers[j.nlayers - 1].kind, SILA_LAYER_LINEAR);
    ck_assert_int_eq(j.layers[j.nlayers - 1].out, j.nclasses);
    sila_job_fini(&j);
}
END_TEST

START_TEST(test_default_job_settings)
{
    char path[512];
    snprintf(path, sizeof path, "%s/deploy/jobs/fmnist-cnn-k4.ini", SILA_SOURCE_DIR);
    struct sila_job j;
    struct sila_err err = {""};
    ck_assert_msg(sila_job_load(&j, path, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(j.batch, 128);
    ck_assert_float_eq(j.sched.lr, 0.05f);
    ck_assert_float_eq(j.optim.momentum, 0.9f);
    ck_assert_float_eq(j.optim.weight_decay, 5e-4f);
    ck_assert_int_eq(j.sched.kind, SILA_SCHED_COSINE);
    /* the schedule found best (docs/results.md): G ramping up to P */
    ck_assert_int_eq(j.period, 10);
    ck_assert_int_eq(j.global_steps, 5);
    ck_assert(j.global_ramp);
    ck_assert(!j.layers[0].bias);
    ck_assert_int_eq(j.layers[0].pad, 1);
    sila_job_fini(&j);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("job");
    TCase *tc = tcase_create("job");
    tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
    tcase_add_test(tc, test_full_job);
    tcase_add_test(tc, test_defaults);
    tcase_add_loop_test(tc, test_bad_case, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
    tcase_add_test(tc, test_specific_messages);
    tcase_add_test(tc, test_objective_resolution);
    tcase_add_test(tc, test_empty_text);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_line_limit);
    tcase_add_test(tc, test_syntax_accepted);
    tcase_add_test(tc, test_unreadable_path);
    tcase_add_test(tc, test_override_fixes_file);
    tcase_add_test(tc, test_deploy_and_holdout);
    tcase_add_test(tc, test_rounds);
    tcase_add_test(tc, test_names);
    tcase_add_loop_test(tc, test_example_job, 0, (int)(sizeof examples / sizeof examples[0]));
    tcase_add_test(tc, test_default_job_settings);
    suite_add_tcase(s, tc);
    return s;
}
