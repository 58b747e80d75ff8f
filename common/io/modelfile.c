/* Model file writer and validating reader (see modelfile.h). */
#include "modelfile.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>

#include "layer.h"
#include "sealed.h"
#include "sila.pb-c.h"

static const char MAGIC[8] = {'S', 'I', 'L', 'A', 'M', 'O', 'D', 'L'};

/* ---- writing ------------------------------------------------------------- */

static void fill_provenance(Sila__Provenance *p, const struct sila_model_info *info, char *created,
                            size_t created_len)
{
    p->exit_module = (uint32_t)info->exit_module;
    p->modules = (uint32_t)info->modules;
    p->deploy = (char *)info->deploy;
    p->full_parameters = info->full_params;
    p->full_macs = info->full_macs;
    p->holdout = info->holdout;
    p->n_exit_test_accuracy = (size_t)info->nexits;
    p->exit_test_accuracy = (float *)info->exit_test;
    p->n_exit_holdout_accuracy = info->holdout ? (size_t)info->nexits : 0;
    p->exit_holdout_accuracy = (float *)info->exit_holdout;
    p->job = (char *)info->job;
    p->algorithm = (char *)info->algorithm;
    p->seed = info->seed;
    p->epochs = info->epochs;
    p->accuracy = info->accuracy;
    p->dataset_kind = (char *)info->dataset_kind;
    p->dataset_path = (char *)info->dataset_path;
    p->sila_version = (char *)info->sila_version;
    if (info->created[0]) {
        p->created = (char *)info->created;
        return;
    }
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, created_len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    p->created = created;
}

struct sila_model_input sila_model_input_of_kind(enum sila_dataset_kind kind, int channels,
                                                 int nclasses, const struct sila_norm *norm)
{
    struct sila_model_input in = {
        .layout = "NCHW", .channels = channels, .mean = norm->mean, .std = norm->std};
    const char *const *names;
    int n = sila_dataset_class_names(kind, &names);
    if (n == nclasses)
        in.nnames = n, in.names = names;
    if (kind >= SILA_DATASET_MNIST && kind <= SILA_DATASET_CIFAR100)
        snprintf(in.dataset_kind, sizeof in.dataset_kind, "%s", sila_dataset_kind_name(kind));
    return in;
}

/* The record of input into ps, its values and names borrowed. */
static void fill_input(Sila__InputSpec *ps, const struct sila_model_input *input)
{
    ps->layout = (char *)input->layout;
    ps->n_mean = ps->n_std = (size_t)input->channels;
    ps->mean = (float *)input->mean;
    ps->std = (float *)input->std;
    ps->n_class_names = (size_t)input->nnames;
    ps->class_names = (char **)input->names;
    ps->dataset_kind = (char *)input->dataset_kind;
}

static void fill_spec(Sila__LayerSpec *ps, const struct sila_layer_spec *s)
{
    sila__layer_spec__init(ps);
    ps->kind = (Sila__LayerKind)sila_layer_desc(s->kind)->proto_kind;
    ps->out = s->out;
    ps->kernel = s->kernel;
    ps->stride = s->stride;
    ps->pad = s->pad;
    ps->bias = s->bias;
    ps->p = s->p;
    ps->bn_momentum = s->bn_momentum;
    ps->bn_eps = s->bn_eps;
}

static void fill_tensor(Sila__Tensor *pt, const struct sila_tensor *t, const float *params,
                        const float *buffers)
{
    sila__tensor__init(pt);
    pt->name = (char *)t->name;
    pt->n_shape = (size_t)t->ndim;
    pt->shape = (int32_t *)t->shape;
    pt->n_data = t->n;
    pt->data = (float *)(sila_tensor_is_buffer(t) ? buffers : params) + t->offset;
}

int sila_model_save(const char *path, const struct sila_net *net, const float *params,
                    const float *buffers, const struct sila_model_info *info,
                    const struct sila_model_input *input, struct sila_err *err)
{
    int nl = sila_net_layer_count(net), nt = sila_net_tensor_count(net);
    Sila__Model m = SILA__MODEL__INIT;
    Sila__Shape in = SILA__SHAPE__INIT;
    Sila__Provenance prov = SILA__PROVENANCE__INIT;
    Sila__InputSpec spec = SILA__INPUT_SPEC__INIT;
    char created[32];
    struct sila_shape s = sila_net_in_shape(net);
    in.c = s.c, in.h = s.h, in.w = s.w;
    fill_provenance(&prov, info, created, sizeof created);
    m.format_version = SILA_MODEL_FORMAT_VERSION;
    m.input = &in;
    m.num_classes = sila_net_out_shape(net).c;
    m.provenance = &prov;
    assert(input->channels == s.c && (input->nnames == 0 || input->nnames == m.num_classes));
    fill_input(&spec, input);
    m.input_spec = &spec;

    int r = -ENOMEM;
    Sila__LayerSpec *specs = calloc(nl, sizeof *specs);
    Sila__LayerSpec **spec_ptrs = calloc(nl, sizeof *spec_ptrs);
    Sila__Tensor *tensors = calloc(nt ? nt : 1, sizeof *tensors);
    Sila__Tensor **tensor_ptrs = calloc(nt ? nt : 1, sizeof *tensor_ptrs);
    uint8_t *buf = NULL;
    if (!specs || !spec_ptrs || !tensors || !tensor_ptrs)
        goto fail;
    for (int i = 0; i < nl; i++) {
        fill_spec(&specs[i], sila_net_layer_spec(net, i));
        spec_ptrs[i] = &specs[i];
    }
    for (int i = 0; i < nt; i++) {
        fill_tensor(&tensors[i], sila_net_tensor(net, i), params, buffers);
        tensor_ptrs[i] = &tensors[i];
    }
    m.n_layers = (size_t)nl;
    m.layers = spec_ptrs;
    m.n_tensors = (size_t)nt;
    m.tensors = tensor_ptrs;

    size_t len = sila__model__get_packed_size(&m);
    buf = malloc(SILA_SEALED_HEADER + len);
    if (!buf)
        goto fail;
    sila__model__pack(&m, buf + SILA_SEALED_HEADER);
    r = sila_sealed_write(path, MAGIC, SILA_MODEL_FORMAT_VERSION, buf, len, err);
fail:
    if (r == -ENOMEM)
        sila_err_set(err, r, "%s: out of memory while encoding the model", path);
    free(buf);
    free(tensor_ptrs);
    free(tensors);
    free(spec_ptrs);
    free(specs);
    return r;
}

/* ---- reading ------------------------------------------------------------- */

static int spec_from_proto(struct sila_layer_spec *s, const Sila__LayerSpec *ps, int i,
                           const char *path, struct sila_err *err)
{
    enum sila_layer_kind kind;
    if (sila_layer_kind_from_proto((int)ps->kind, &kind))
        return sila_err_set(err, -EINVAL, "%s: layer %d has unknown kind %d", path, i,
                            (int)ps->kind);
    *s = (struct sila_layer_spec){.kind = kind,
                                  .out = ps->out,
                                  .kernel = ps->kernel,
                                  .stride = ps->stride,
                                  .pad = ps->pad,
                                  .bias = ps->bias,
                                  .p = ps->p,
                                  .bn_momentum = ps->bn_momentum,
                                  .bn_eps = ps->bn_eps};
    return 0;
}

/* "[6, 4]"; dimensions past the buffer are elided. */
static void format_shape(char *buf, size_t cap, const int32_t *shape, size_t n)
{
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (size_t i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%d", i ? ", " : "", shape[i]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
}

static int copy_tensor(struct sila_model *m, const struct sila_tensor *t, const Sila__Tensor *pt,
                       const char *path, struct sila_err *err)
{
    if (strcmp(pt->name, t->name) != 0)
        return sila_err_set(err, -EINVAL, "%s: tensor '%s' found where '%s' was expected", path,
                            pt->name, t->name);
    bool same = pt->n_shape == (size_t)t->ndim;
    for (int d = 0; same && d < t->ndim; d++)
        same = pt->shape[d] == t->shape[d];
    if (!same || pt->n_data != t->n) {
        char have[64], want[64];
        format_shape(have, sizeof have, pt->shape, pt->n_shape);
        format_shape(want, sizeof want, t->shape, (size_t)t->ndim);
        return sila_err_set(err, -EINVAL,
                            "%s: tensor '%s' has shape %s and %zu values, the architecture needs "
                            "shape %s and %zu values",
                            path, t->name, have, pt->n_data, want, t->n);
    }
    float *dst = (sila_tensor_is_buffer(t) ? m->buffers : m->params) + t->offset;
    memcpy(dst, pt->data, sizeof *dst * t->n);
    return 0;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* The provenance into info. Errors: -EINVAL when the exits it lists do not
 * fit the network they name. */
static int info_from_proto(struct sila_model_info *info, const Sila__Provenance *p,
                           const char *path, struct sila_err *err)
{
    memset(info, 0, sizeof *info);
    if (!p)
        return 0;
    size_t nt = p->n_exit_test_accuracy, nh = p->n_exit_holdout_accuracy;
    if (p->modules > SILA_MODEL_MAX_EXITS || p->exit_module > p->modules ||
        (nt && nt != p->modules) || (nh && nh != nt))
        return sila_err_set(err, -EINVAL,
                            "%s: provenance names exit %u of %u modules with %zu test and %zu "
                            "held-out accuracies (at most %d modules, one accuracy per module)",
                            path, p->exit_module, p->modules, nt, nh, SILA_MODEL_MAX_EXITS);
    info->exit_module = (int)p->exit_module;
    info->modules = (int)p->modules;
    copy_str(info->deploy, sizeof info->deploy, p->deploy);
    info->full_params = p->full_parameters;
    info->full_macs = p->full_macs;
    info->holdout = p->holdout;
    info->nexits = (int)nt;
    for (size_t k = 0; k < nt; k++) {
        info->exit_test[k] = p->exit_test_accuracy[k];
        info->exit_holdout[k] = nh ? p->exit_holdout_accuracy[k] : NAN;
    }
    copy_str(info->job, sizeof info->job, p->job);
    copy_str(info->algorithm, sizeof info->algorithm, p->algorithm);
    info->seed = p->seed;
    info->epochs = p->epochs;
    info->accuracy = p->accuracy;
    copy_str(info->dataset_kind, sizeof info->dataset_kind, p->dataset_kind);
    copy_str(info->dataset_path, sizeof info->dataset_path, p->dataset_path);
    copy_str(info->created, sizeof info->created, p->created);
    copy_str(info->sila_version, sizeof info->sila_version, p->sila_version);
    return 0;
}

/* Keeps a copy of in (its values, its names) as m->input, in
 * m->input_store; in's mean and std NULL stand for 0 and 1 in every
 * channel. Errors: -ENOMEM. */
static int input_keep(struct sila_model *m, const struct sila_model_input *in, const char *path,
                      struct sila_err *err)
{
    size_t c = (size_t)in->channels, n = (size_t)in->nnames, chars = 0;
    for (size_t i = 0; i < n; i++)
        chars += strlen(in->names[i]) + 1;
    char **names = malloc(sizeof *names * n + sizeof(float) * 2 * c + chars);
    if (!names)
        return sila_err_set(err, -ENOMEM, "%s: out of memory", path);
    float *mean = (float *)(names + n), *std = mean + c;
    char *text = (char *)(std + c);
    for (size_t ch = 0; ch < c; ch++) {
        mean[ch] = in->mean ? in->mean[ch] : 0.0f;
        std[ch] = in->std ? in->std[ch] : 1.0f;
    }
    for (size_t i = 0; i < n; i++) {
        names[i] = text;
        text = stpcpy(text, in->names[i]) + 1;
    }
    m->input = *in;
    m->input.mean = mean, m->input.std = std;
    m->input.names = (const char *const *)names;
    m->input_store = names;
    return 0;
}

/* m->input from a file without a record: its dataset kind's values for
 * inputs of up to 3 channels (mean 0 and std 1 for an unknown kind and
 * beyond). */
static int input_of_kind(struct sila_model *m, const char *path, struct sila_err *err)
{
    enum sila_dataset_kind kind = 0;
    sila_dataset_kind_parse(m->info.dataset_kind, &kind);
    int c = sila_net_in_shape(m->net).c;
    struct sila_norm norm = sila_dataset_default_norm(kind);
    struct sila_model_input in = sila_model_input_of_kind(kind, c, m->num_classes, &norm);
    if (c > 3)
        in.mean = in.std = NULL;
    return input_keep(m, &in, path, err);
}

/* m->input from the decoded record, checked against the net: NCHW, a
 * finite mean and a finite std > 0 per input channel, and no class names
 * or one per class. A file without a record gets its kind's values.
 * Errors: -EINVAL (naming the file and the fault), -ENOMEM. */
static int input_from_proto(struct sila_model *m, const Sila__InputSpec *ps, const char *path,
                            struct sila_err *err)
{
    if (!ps)
        return input_of_kind(m, path, err);
    int c = sila_net_in_shape(m->net).c;
    if (strcmp(ps->layout, "NCHW") != 0)
        return sila_err_set(err, -EINVAL, "%s: input record: layout '%.16s', sila reads NCHW", path,
                            ps->layout);
    if (ps->n_mean != (size_t)c || ps->n_std != (size_t)c)
        return sila_err_set(err, -EINVAL,
                            "%s: input record: %zu means and %zu stds for %d input channels", path,
                            ps->n_mean, ps->n_std, c);
    for (int ch = 0; ch < c; ch++)
        if (!isfinite(ps->mean[ch]) || !isfinite(ps->std[ch]) || !(ps->std[ch] > 0.0f))
            return sila_err_set(err, -EINVAL,
                                "%s: input record: channel %d has mean %g and std %g (both "
                                "finite, std > 0)",
                                path, ch, ps->mean[ch], ps->std[ch]);
    if (ps->n_class_names && ps->n_class_names != (size_t)m->num_classes)
        return sila_err_set(err, -EINVAL, "%s: input record: %zu class names for %d classes", path,
                            ps->n_class_names, m->num_classes);
    struct sila_model_input in = {.channels = c,
                                  .mean = ps->mean,
                                  .std = ps->std,
                                  .nnames = (int)ps->n_class_names,
                                  .names = (const char *const *)ps->class_names,
                                  .recorded = true};
    copy_str(in.layout, sizeof in.layout, ps->layout);
    copy_str(in.dataset_kind, sizeof in.dataset_kind, ps->dataset_kind);
    return input_keep(m, &in, path, err);
}

/* Builds m's net from the decoded model and copies its tensors in. */
static int model_from_proto(struct sila_model *m, const Sila__Model *pm, size_t payload_len,
                            int max_batch, const char *path, struct sila_err *err)
{
    if (pm->format_version != SILA_MODEL_FORMAT_VERSION)
        return sila_err_set(err, -EINVAL, "%s: payload format version %u, expected %u", path,
                            pm->format_version, SILA_MODEL_FORMAT_VERSION);
    if (!pm->input || pm->n_layers == 0 || pm->n_layers > 4096)
        return sila_err_set(err, -EINVAL, "%s: no input shape or no layers (or > 4096)", path);
    struct sila_layer_spec *specs = calloc(pm->n_layers, sizeof *specs);
    if (!specs)
        return sila_err_set(err, -ENOMEM, "%s: out of memory", path);
    int r = 0;
    for (size_t i = 0; r == 0 && i < pm->n_layers; i++)
        r = spec_from_proto(&specs[i], pm->layers[i], (int)i, path, err);
    struct sila_shape in = {pm->input->c, pm->input->h, pm->input->w};
    struct sila_err build_err = {""};
    if (r == 0 && (r = sila_net_new(&m->net, specs, (int)pm->n_layers, in, max_batch, &build_err)))
        sila_err_set(err, r, "%s: %s: %s", path,
                     r == -ENOMEM ? "cannot load" : "invalid architecture", build_err.msg);
    free(specs);
    if (r)
        return r;
    int nt = sila_net_tensor_count(m->net);
    if (pm->n_tensors != (size_t)nt)
        return sila_err_set(err, -EINVAL, "%s: %zu tensors, the architecture needs %d", path,
                            pm->n_tensors, nt);
    /* Every float stored takes 4 payload bytes: a model whose tensors need
     * more than that cannot be backed by this file, whatever its specs say. */
    size_t need = sila_net_param_count(m->net) + sila_net_buffer_count(m->net);
    if (need > payload_len / 4)
        return sila_err_set(err, -EINVAL,
                            "%s: the architecture needs %zu values, the file holds "
                            "at most %zu",
                            path, need, payload_len / 4);
    m->params = malloc(sizeof *m->params * (sila_net_param_count(m->net) + 1));
    m->buffers = malloc(sizeof *m->buffers * (sila_net_buffer_count(m->net) + 1));
    if (!m->params || !m->buffers)
        return sila_err_set(err, -ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < nt; i++)
        if ((r = copy_tensor(m, sila_net_tensor(m->net, i), pm->tensors[i], path, err)))
            return r;
    sila_net_bind(m->net, m->params, NULL, m->buffers);
    m->num_classes = sila_net_out_shape(m->net).c;
    if (pm->num_classes != m->num_classes)
        return sila_err_set(err, -EINVAL, "%s: num_classes %d but the net outputs %d", path,
                            pm->num_classes, m->num_classes);
    if ((r = info_from_proto(&m->info, pm->provenance, path, err)))
        return r;
    return input_from_proto(m, pm->input_spec, path, err);
}

int sila_model_load(struct sila_model *m, const char *path, int max_batch, struct sila_err *err)
{
    memset(m, 0, sizeof *m);
    uint8_t *buf = NULL;
    size_t len = 0;
    int r = sila_sealed_read(path, MAGIC, SILA_MODEL_FORMAT_VERSION, "model", &buf, &len, err);
    if (r)
        return r;
    Sila__Model *pm = sila__model__unpack(NULL, len, buf + SILA_SEALED_HEADER);
    if (!pm) {
        r = sila_err_set(err, -EINVAL, "%s: payload is not a valid sila.Model message", path);
        goto out;
    }
    r = model_from_proto(m, pm, len, max_batch, path, err);
out:
    if (pm)
        sila__model__free_unpacked(pm, NULL);
    free(buf);
    if (r)
        sila_model_fini(m);
    return r;
}

void sila_model_fini(struct sila_model *m)
{
    sila_net_free(m->net);
    free(m->params);
    free(m->buffers);
    free(m->input_store);
    memset(m, 0, sizeof *m);
}

void sila_weights_sha256(const struct sila_net *net, const float *params, const float *buffers,
                         char hex[65])
{
    crypto_hash_sha256_state st;
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_init(&st);
    for (int i = 0; i < sila_net_tensor_count(net); i++) {
        const struct sila_tensor *t = sila_net_tensor(net, i);
        const float *x = (sila_tensor_is_buffer(t) ? buffers : params) + t->offset;
        /* the host is little-endian (frame.c refuses to build otherwise) */
        crypto_hash_sha256_update(&st, (const unsigned char *)x, sizeof *x * t->n);
    }
    crypto_hash_sha256_final(&st, digest);
    sodium_bin2hex(hex, 65, digest, sizeof digest);
}
