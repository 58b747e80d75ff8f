/* silactl eval, inspect and export (see silactl_model.h): evaluate a saved
 * model on a test split, describe one, and write one as ONNX. */
#include "silactl_model.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "loss.h"
#include "modelfile.h"
#include "onnx.h"
#include "sealed.h"

#define EVAL_BATCH 256

/* Writes s as a JSON string. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

struct eval_opts {
    const char *model;
    const char *data;   /* KIND:DIR or NULL */
    const char *logits; /* file for the logits, or NULL */
    int json;
};

static int parse_eval(int argc, char **argv, struct eval_opts *o)
{
    static const struct option longopts[] = {{"data", required_argument, NULL, 'd'},
                                             {"logits", required_argument, NULL, 'l'},
                                             {"json", no_argument, NULL, 'j'},
                                             {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'd')
            o->data = optarg;
        else if (c == 'l')
            o->logits = optarg;
        else if (c == 'j')
            o->json = 1;
        else
            return -1;
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: silactl eval MODEL [--data KIND:DIR] [--logits FILE] [--json]\n");
        return -1;
    }
    o->model = argv[optind];
    return 0;
}

/* The test split named by --data, or by the model's provenance. */
static int open_test_split(const struct eval_opts *o, const struct sila_model *m,
                           struct sila_dataset *ds, enum sila_dataset_kind *ret_kind)
{
    char kind_name[32], data[SILA_DATA_DIR_MAX + 40];
    const char *dir;
    if (o->data) {
        const char *colon = strchr(o->data, ':');
        if (!colon || colon == o->data || (size_t)(colon - o->data) >= sizeof kind_name) {
            fprintf(stderr,
                    "silactl: --data needs KIND:DIR, e.g. fmnist:/usr/share/datasets/"
                    "fashion-mnist, got '%s'\n",
                    o->data);
            return -1;
        }
        snprintf(kind_name, sizeof kind_name, "%.*s", (int)(colon - o->data), o->data);
        dir = colon + 1;
    } else {
        snprintf(kind_name, sizeof kind_name, "%s", m->info.dataset_kind);
        dir = m->info.dataset_path;
    }
    if (sila_dataset_kind_parse(kind_name, ret_kind)) {
        fprintf(stderr, "silactl: unknown dataset kind '%s' (mnist, fmnist, cifar10, cifar100)%s\n",
                kind_name, o->data ? "" : "; pass --data KIND:DIR");
        return -1;
    }
    struct sila_err err = {""};
    if (sila_dataset_open(ds, *ret_kind, dir, false, &err)) {
        fprintf(stderr, "silactl: %s\n", err.msg);
        return -1;
    }
    struct sila_shape in = sila_net_in_shape(m->net);
    if (ds->c != in.c || ds->h != in.h || ds->w != in.w || ds->nclasses != m->num_classes) {
        snprintf(data, sizeof data, "%s:%s", kind_name, dir);
        fprintf(stderr,
                "silactl: %s (%s) takes %dx%dx%d samples of %d classes, the test split of %s "
                "has %dx%dx%d samples of %d classes\n",
                o->model, m->input.dataset_kind[0] ? m->input.dataset_kind : "no dataset kind",
                in.c, in.h, in.w, m->num_classes, data, ds->c, ds->h, ds->w, ds->nclasses);
        sila_dataset_fini(ds);
        return -1;
    }
    return 0;
}

/* The model's normalisation, for a dataset of its input's (at most 3)
 * channels. */
static struct sila_norm model_norm(const struct sila_model *m)
{
    struct sila_norm norm = {{0, 0, 0}, {1, 1, 1}};
    for (int ch = 0; ch < m->input.channels && ch < 3; ch++) {
        norm.mean[ch] = m->input.mean[ch];
        norm.std[ch] = m->input.std[ch];
    }
    return norm;
}

/* Fills confusion[true * C + predicted] over the whole split, normalised
 * as the model's record says, and all_logits (ds->n, C) unless NULL. */
static int run_eval(struct sila_model *m, const struct sila_dataset *ds, long *confusion,
                    float *all_logits)
{
    size_t in = sila_shape_size(sila_net_in_shape(m->net));
    int C = m->num_classes;
    float *x = malloc(sizeof *x * in * EVAL_BATCH);
    int32_t *labels = malloc(sizeof *labels * EVAL_BATCH);
    uint32_t idx[EVAL_BATCH];
    struct sila_norm norm = model_norm(m);
    if (!x || !labels) {
        free(x), free(labels);
        fprintf(stderr, "silactl: out of memory\n");
        return -1;
    }
    for (uint32_t s = 0; s < ds->n; s += EVAL_BATCH) {
        int nb = ds->n - s < EVAL_BATCH ? (int)(ds->n - s) : EVAL_BATCH;
        for (int i = 0; i < nb; i++)
            idx[i] = s + (uint32_t)i;
        sila_dataset_batch(ds, idx, nb, &norm, NULL, NULL, x, labels);
        const float *logits = sila_net_forward(m->net, x, nb, false, NULL);
        if (all_logits)
            memcpy(all_logits + (size_t)s * C, logits, sizeof *logits * nb * C);
        for (int i = 0; i < nb; i++) {
            int best = 0;
            for (int c = 1; c < C; c++)
                if (logits[(size_t)i * C + c] > logits[(size_t)i * C + best])
                    best = c;
            confusion[labels[i] * C + best]++;
        }
    }
    free(x);
    free(labels);
    return 0;
}

/* "head of module 2 of 8" or "classifier of 8 modules"; "" for a model file
 * that does not record its exit. */
static const char *exit_text(const struct sila_model_info *i, char *buf, size_t len)
{
    if (i->modules == 0)
        snprintf(buf, len, "%s", "");
    else if (i->exit_module)
        snprintf(buf, len, "head of module %d of %d", i->exit_module, i->modules);
    else
        snprintf(buf, len, "classifier of %d modules", i->modules);
    return buf;
}

static void print_eval_text(const struct eval_opts *o, const struct sila_model *m,
                            const struct sila_dataset *ds, enum sila_dataset_kind kind,
                            const long *conf)
{
    int C = m->num_classes;
    long correct = 0;
    char exit[64];
    for (int c = 0; c < C; c++)
        correct += conf[c * C + c];
    exit_text(&m->info, exit, sizeof exit);
    printf("%s%s%s%s on %s test split: %ld/%u correct, accuracy %.2f%%\n\n", o->model,
           exit[0] ? " (" : "", exit, exit[0] ? ")" : "", sila_dataset_kind_name(kind), correct,
           ds->n, 100.0 * correct / ds->n);
    printf("%-5s %-12s %8s %9s\n", "class", "name", "samples", "accuracy");
    for (int c = 0; c < C; c++) {
        long n = 0;
        for (int p = 0; p < C; p++)
            n += conf[c * C + p];
        printf("%-5d %-12s %8ld %8.2f%%\n", c, m->input.nnames ? m->input.names[c] : "", n,
               n ? 100.0 * conf[c * C + c] / n : 0.0);
    }
    if (C > 20)
        return;
    printf("\nconfusion matrix (rows: true class, columns: predicted)\n      ");
    for (int p = 0; p < C; p++)
        printf("%6d", p);
    printf("\n");
    for (int c = 0; c < C; c++) {
        printf("%6d", c);
        for (int p = 0; p < C; p++)
            printf("%6ld", conf[c * C + p]);
        printf("\n");
    }
}

static void print_eval_json(const struct eval_opts *o, const struct sila_model *m,
                            const struct sila_dataset *ds, enum sila_dataset_kind kind,
                            const long *conf)
{
    int C = m->num_classes;
    long correct = 0;
    for (int c = 0; c < C; c++)
        correct += conf[c * C + c];
    printf("{\"model\":");
    json_str(stdout, o->model);
    if (m->info.modules)
        printf(",\"exit_module\":%d,\"modules\":%d", m->info.exit_module, m->info.modules);
    printf(",\"dataset\":\"%s\",\"samples\":%u,\"correct\":%ld,\"accuracy\":%.6f,"
           "\"per_class\":[",
           sila_dataset_kind_name(kind), ds->n, correct, (double)correct / ds->n);
    for (int c = 0; c < C; c++) {
        long n = 0;
        for (int p = 0; p < C; p++)
            n += conf[c * C + p];
        printf("%s%.6f", c ? "," : "", n ? (double)conf[c * C + c] / n : 0.0);
    }
    printf("],\"confusion\":[");
    for (int c = 0; c < C; c++) {
        printf("%s[", c ? "," : "");
        for (int p = 0; p < C; p++)
            printf("%s%ld", p ? "," : "", conf[c * C + p]);
        printf("]");
    }
    printf("]}\n");
}

/* Writes n floats as raw little-endian float32 to path (atomically). */
static int write_logits(const char *path, const float *logits, size_t n)
{
    struct sila_err err = {""};
    /* the host is little-endian (frame.c refuses to build otherwise) */
    if (sila_write_atomic(path, (const uint8_t *)logits, sizeof *logits * n, &err)) {
        fprintf(stderr, "silactl: --logits: %s\n", err.msg);
        return -1;
    }
    return 0;
}

int silactl_eval(int argc, char **argv)
{
    struct eval_opts o = {0};
    if (parse_eval(argc, argv, &o))
        return 2;
    struct sila_model m;
    struct sila_err err = {""};
    if (sila_model_load(&m, o.model, EVAL_BATCH, &err)) {
        fprintf(stderr, "silactl: %s\n", err.msg);
        return 1;
    }
    struct sila_dataset ds = {0};
    enum sila_dataset_kind kind;
    int status = 1;
    float *logits = NULL;
    long *conf = calloc((size_t)m.num_classes * m.num_classes, sizeof *conf);
    if (!conf || open_test_split(&o, &m, &ds, &kind))
        goto out;
    size_t nlogits = (size_t)ds.n * m.num_classes;
    if (o.logits && !(logits = malloc(sizeof *logits * nlogits)))
        fprintf(stderr, "silactl: out of memory for %zu logits\n", nlogits);
    else if (run_eval(&m, &ds, conf, logits) == 0 &&
             (!logits || write_logits(o.logits, logits, nlogits) == 0)) {
        (o.json ? print_eval_json : print_eval_text)(&o, &m, &ds, kind, conf);
        status = 0;
    }
out:
    free(logits);
    free(conf);
    sila_dataset_fini(&ds);
    sila_model_fini(&m);
    return status;
}

/* ---- inspect ----------------------------------------------------------- */

/* The exit's lines: which, chosen how, its cost against the whole
 * network's, and every exit's accuracies in the final evaluation. */
static void print_exit_text(const struct sila_model *m)
{
    const struct sila_model_info *i = &m->info;
    char buf[64];
    if (i->modules == 0)
        return;
    printf("exit       %s (deploy = %s", exit_text(i, buf, sizeof buf), i->deploy);
    if (i->holdout)
        printf(", %u training samples held out", i->holdout);
    size_t np = sila_net_param_count(m->net);
    uint64_t macs = sila_net_macs(m->net);
    printf(")\ncost       %zu parameters, %.2f M multiply-adds per sample; the whole network "
           "%llu, %.2f M (%.1f%%, %.1f%%)\n",
           np, macs / 1e6, (unsigned long long)i->full_params, i->full_macs / 1e6,
           i->full_params ? 100.0 * np / i->full_params : 0.0,
           i->full_macs ? 100.0 * macs / i->full_macs : 0.0);
    int mine = i->exit_module ? i->exit_module - 1 : i->nexits - 1; /* this model's exit */
    for (int k = 0; k < i->nexits; k++) {
        if (k < i->nexits - 1)
            snprintf(buf, sizeof buf, "head%d", k + 1);
        else
            snprintf(buf, sizeof buf, "classifier");
        printf("%s%-10s test %.2f%%", k ? "           " : "exits      ", buf,
               100.0 * i->exit_test[k]);
        if (i->holdout)
            printf(", held-out %.2f%%", 100.0 * i->exit_holdout[k]);
        printf("%s\n", k == mine ? "  <- this model" : "");
    }
}

static void print_exit_json(const struct sila_model *m)
{
    const struct sila_model_info *i = &m->info;
    printf(",\"exit_module\":%d,\"modules\":%d,\"deploy\":", i->exit_module, i->modules);
    json_str(stdout, i->deploy);
    printf(",\"macs\":%llu,\"full_parameters\":%llu,\"full_macs\":%llu,\"holdout\":%u,"
           "\"exits\":[",
           (unsigned long long)sila_net_macs(m->net), (unsigned long long)i->full_params,
           (unsigned long long)i->full_macs, i->holdout);
    for (int k = 0; k < i->nexits; k++) {
        printf("%s{\"test\":%.6f", k ? "," : "", i->exit_test[k]);
        if (i->holdout)
            printf(",\"holdout\":%.6f", i->exit_holdout[k]);
        printf("}");
    }
    printf("]");
}

/* The input record's lines: shape, layout and normalisation, where they
 * come from, the class names. */
static void print_input_text(const struct sila_model *m)
{
    const struct sila_model_input *r = &m->input;
    struct sila_shape in = sila_net_in_shape(m->net);
    printf("input      %dx%dx%d %s, x = (pixel/255 - mean) / std\nmean      ", in.c, in.h, in.w,
           r->layout);
    for (int ch = 0; ch < r->channels; ch++)
        printf(" %g", r->mean[ch]);
    printf("\nstd       ");
    for (int ch = 0; ch < r->channels; ch++)
        printf(" %g", r->std[ch]);
    if (!r->recorded)
        printf("\n           (the file records none: the values of its dataset kind, %s)",
               r->dataset_kind[0] ? r->dataset_kind : "unknown");
    printf("\nclasses    %d", m->num_classes);
    for (int c = 0; c < r->nnames; c++)
        printf("%s%s", c ? ", " : ": ", r->names[c]);
    printf("\n");
}

/* The same as JSON members. */
static void print_input_json(const struct sila_model *m)
{
    const struct sila_model_input *r = &m->input;
    printf(",\"layout\":");
    json_str(stdout, r->layout);
    printf(",\"mean\":[");
    for (int ch = 0; ch < r->channels; ch++)
        printf("%s%.9g", ch ? "," : "", r->mean[ch]);
    printf("],\"std\":[");
    for (int ch = 0; ch < r->channels; ch++)
        printf("%s%.9g", ch ? "," : "", r->std[ch]);
    printf("],\"input_recorded\":%s,\"input_dataset\":", r->recorded ? "true" : "false");
    json_str(stdout, r->dataset_kind);
    printf(",\"num_classes\":%d,\"class_names\":[", m->num_classes);
    for (int c = 0; c < r->nnames; c++) {
        printf("%s", c ? "," : "");
        json_str(stdout, r->names[c]);
    }
    printf("]");
}

static void print_inspect_text(const char *path, const struct sila_model *m, const char *sha)
{
    const struct sila_model_info *i = &m->info;
    struct sila_shape in = sila_net_in_shape(m->net);
    printf("model      %s\njob        %s\nalgorithm  %s\nseed       %llu\nepochs     %d\n"
           "accuracy   %.2f%%\ndataset    %s (%s)\ncreated    %s\nsila       %s\n",
           path, i->job, i->algorithm, (unsigned long long)i->seed, i->epochs, 100.0 * i->accuracy,
           i->dataset_kind, i->dataset_path, i->created, i->sila_version);
    printf("parameters %zu (+ %zu running statistics)\nweights_sha256 %s\n",
           sila_net_param_count(m->net), sila_net_buffer_count(m->net), sha);
    print_exit_text(m);
    print_input_text(m);
    printf("\n");
    printf("%-5s %-10s %s\n", "layer", "kind", "output");
    printf("%-5s %-10s %dx%dx%d\n", "in", "", in.c, in.h, in.w);
    for (int l = 0; l < sila_net_layer_count(m->net); l++) {
        struct sila_shape s = sila_net_layer_out_shape(m->net, l);
        printf("%-5d %-10s %dx%dx%d\n", l,
               sila_layer_kind_name(sila_net_layer_spec(m->net, l)->kind), s.c, s.h, s.w);
    }
}

static void print_inspect_json(const char *path, const struct sila_model *m, const char *sha)
{
    const struct sila_model_info *i = &m->info;
    struct sila_shape in = sila_net_in_shape(m->net);
    printf("{\"model\":");
    json_str(stdout, path);
    printf(",\"job\":");
    json_str(stdout, i->job);
    printf(",\"algorithm\":");
    json_str(stdout, i->algorithm);
    printf(",\"seed\":%llu,\"epochs\":%d,\"accuracy\":%.6f,\"dataset\":",
           (unsigned long long)i->seed, i->epochs, i->accuracy);
    json_str(stdout, i->dataset_kind);
    printf(",\"dataset_path\":");
    json_str(stdout, i->dataset_path);
    printf(",\"created\":");
    json_str(stdout, i->created);
    printf(",\"sila_version\":");
    json_str(stdout, i->sila_version);
    if (i->modules)
        print_exit_json(m);
    print_input_json(m);
    printf(",\"parameters\":%zu,\"buffers\":%zu,\"weights_sha256\":\"%s\",\"input\":[%d,%d,%d],"
           "\"layers\":[",
           sila_net_param_count(m->net), sila_net_buffer_count(m->net), sha, in.c, in.h, in.w);
    for (int l = 0; l < sila_net_layer_count(m->net); l++) {
        struct sila_shape s = sila_net_layer_out_shape(m->net, l);
        printf("%s{\"kind\":\"%s\",\"output\":[%d,%d,%d]}", l ? "," : "",
               sila_layer_kind_name(sila_net_layer_spec(m->net, l)->kind), s.c, s.h, s.w);
    }
    printf("]}\n");
}

int silactl_inspect(int argc, char **argv)
{
    int json = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (!path && argv[i][0] != '-')
            path = argv[i];
        else
            path = NULL, i = argc;
    }
    if (!path) {
        fprintf(stderr, "usage: silactl inspect MODEL [--json]\n");
        return 2;
    }
    struct sila_model m;
    struct sila_err err = {""};
    if (sila_model_load(&m, path, 1, &err)) {
        fprintf(stderr, "silactl: %s\n", err.msg);
        return 1;
    }
    char sha[65];
    sila_weights_sha256(m.net, m.params, m.buffers, sha);
    (json ? print_inspect_json : print_inspect_text)(path, &m, sha);
    sila_model_fini(&m);
    return 0;
}

/* ---- export ------------------------------------------------------------ */

int silactl_export(int argc, char **argv)
{
    static const struct option longopts[] = {{"onnx", required_argument, NULL, 'o'}, {0}};
    const char *out = NULL;
    int c, bad = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'o')
            out = optarg;
        else
            bad = 1;
    }
    if (bad || optind + 1 != argc || !out) {
        fprintf(stderr, "usage: silactl export MODEL --onnx OUT.onnx\n");
        return 2;
    }
    struct sila_model m;
    struct sila_err err = {""};
    if (sila_model_load(&m, argv[optind], 1, &err)) {
        fprintf(stderr, "silactl: %s\n", err.msg);
        return 1;
    }
    int r = sila_onnx_export(&m, out, SILA_VERSION, &err);
    if (r)
        fprintf(stderr, "silactl: %s\n", err.msg);
    else
        printf("wrote %s: ONNX opset %d, input \"pixels\" (N, %d, %d, %d) in [0, 1], output "
               "\"logits\" (N, %d)\n",
               out, SILA_ONNX_OPSET, m.input.channels, sila_net_in_shape(m.net).h,
               sila_net_in_shape(m.net).w, m.num_classes);
    sila_model_fini(&m);
    return r ? 1 : 0;
}
