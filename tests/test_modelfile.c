/* Tests of common/modelfile: round trips of a CNN (with trained-looking
 * batch-norm statistics) and of an MLP, compared bit for bit and through
 * their eval-mode outputs, with their input records; a file written before
 * the record existed, which gets its dataset kind's values; the atomicity
 * of saving; and the refusal of every kind of broken file (input records
 * included), each of which must fail with a negative errno, a zeroed model
 * and a message naming the file and the fault. Broken payloads
 * are built here with the protobuf-c API and given a correct header, so only
 * the loader's semantic checks can catch them; the unbroken hand-made model
 * is loaded first and its values checked against a hand computation. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "check_main.h"
#include "testdir.h"
#include "modelfile.h"
#include "net.h"
#include "rng.h"
#include "sila.pb-c.h"

#define HEADER_BYTES 24
#define MAX_BATCH 4
#define FILE_CAP 8192 /* every hand-made file fits */

/* Number of entries of the temporary directory (without . and ..). */
static int tmpdir_entries(void)
{
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- raw files ---- */

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* Reads at most cap bytes of path into buf; returns the file's length. */
static size_t read_bytes(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, cap, f);
    ck_assert_int_eq(fgetc(f), EOF); /* the whole file fitted */
    fclose(f);
    return n;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The 24-byte header of docs/model-format.md for payload[0..len). */
static void put_header(uint8_t *h, uint32_t version, const uint8_t *payload, size_t len)
{
    memcpy(h, "SILAMODL", 8);
    put_le32(h + 8, version);
    put_le32(h + 12, (uint32_t)crc32(0L, payload, (uInt)len));
    put_le64(h + 16, len);
}

/* Writes header + payload, the header correct for this payload. */
static void write_with_header(const char *path, const uint8_t *payload, size_t len)
{
    static uint8_t buf[FILE_CAP];
    ck_assert_uint_le(HEADER_BYTES + len, sizeof buf);
    memcpy(buf + HEADER_BYTES, payload, len);
    put_header(buf, SILA_MODEL_FORMAT_VERSION, payload, len);
    write_bytes(path, buf, HEADER_BYTES + len);
}

/* ---- nets under test ---- */

struct tnet {
    struct sila_net *net;
    float *params, *buffers;
};

static float uniform(struct sila_rng *rng, float lo, float hi)
{
    return lo + (hi - lo) * sila_rng_uniform(rng);
}

/* Builds and binds a net, then gives every parameter a random value (not
 * PyTorch's init, whose batch-norm gamma/beta are all 1 and 0). */
static void tnet_new(struct tnet *t, const struct sila_layer_spec *specs, int n,
                     struct sila_shape in, uint64_t seed)
{
    struct sila_err err = {""};
    int r = sila_net_new(&t->net, specs, n, in, MAX_BATCH, &err);
    ck_assert_msg(r == 0, "sila_net_new: %d: %s", r, err.msg);
    size_t np = sila_net_param_count(t->net), nb = sila_net_buffer_count(t->net);
    t->params = malloc(sizeof *t->params * (np + 1));
    t->buffers = malloc(sizeof *t->buffers * (nb + 1));
    ck_assert(t->params && t->buffers);
    sila_net_bind(t->net, t->params, NULL, t->buffers);
    struct sila_rng rng;
    sila_rng_seed(&rng, seed, 0);
    sila_net_init_params(t->net, &rng);
    for (size_t i = 0; i < np; i++)
        t->params[i] = uniform(&rng, -1.5f, 1.5f);
}

static void tnet_free(struct tnet *t)
{
    sila_net_free(t->net);
    free(t->params);
    free(t->buffers);
}

/* A few train-mode forwards on shifted, scaled random inputs, so that the
 * running statistics move away from (0, 1). */
static void tnet_train_forwards(struct tnet *t, uint64_t seed)
{
    size_t n = MAX_BATCH * sila_shape_size(sila_net_in_shape(t->net));
    float *x = malloc(sizeof *x * n);
    ck_assert_ptr_nonnull(x);
    struct sila_rng rng;
    sila_rng_seed(&rng, seed, 1);
    for (int step = 0; step < 3; step++) {
        for (size_t i = 0; i < n; i++)
            x[i] = 0.7f + 2.0f * sila_rng_normal(&rng);
        sila_net_forward(t->net, x, MAX_BATCH, true, &rng);
    }
    free(x);
}

/* The same random input for both nets of a comparison. */
static float *random_input(const struct sila_net *net, int B, uint64_t seed)
{
    size_t n = (size_t)B * sila_shape_size(sila_net_in_shape(net));
    float *x = malloc(sizeof *x * n);
    ck_assert_ptr_nonnull(x);
    struct sila_rng rng;
    sila_rng_seed(&rng, seed, 2);
    for (size_t i = 0; i < n; i++)
        x[i] = sila_rng_normal(&rng);
    return x;
}

static struct sila_model_info sample_info(void)
{
    struct sila_model_info info;
    memset(&info, 0, sizeof info);
    /* the longest job name that fits, to catch an off-by-one */
    memset(info.job, 'j', sizeof info.job - 1);
    memcpy(info.job, "job-cifar-", 10);
    snprintf(info.algorithm, sizeof info.algorithm, "sgd-nesterov");
    info.seed = 0xFEDCBA9876543210u; /* needs all 64 bits */
    info.epochs = 37;
    info.accuracy = 0.9137f;
    snprintf(info.dataset_kind, sizeof info.dataset_kind, "cifar10");
    snprintf(info.dataset_path, sizeof info.dataset_path, "/srv/data/cifar-10-batches-bin");
    snprintf(info.created, sizeof info.created, "2024-02-29T23:59:58Z");
    snprintf(info.sila_version, sizeof info.sila_version, "0.1.0");
    snprintf(info.deploy, sizeof info.deploy, "best_head");
    info.exit_module = 2;
    info.modules = 3;
    info.full_params = 0x123456789ull;
    info.full_macs = 0xABCDEF012345ull;
    info.holdout = 5000;
    info.nexits = 3;
    for (int k = 0; k < 3; k++) {
        info.exit_test[k] = 0.5f + 0.125f * k;
        info.exit_holdout[k] = 0.25f + 0.0625f * k;
    }
    return info;
}

static bool float_bits_eq(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static void assert_info_eq(const struct sila_model_info *got, const struct sila_model_info *want)
{
    ck_assert_str_eq(got->job, want->job);
    ck_assert_str_eq(got->algorithm, want->algorithm);
    ck_assert_uint_eq(got->seed, want->seed);
    ck_assert_int_eq(got->epochs, want->epochs);
    ck_assert_msg(memcmp(&got->accuracy, &want->accuracy, sizeof got->accuracy) == 0,
                  "accuracy %.9g != %.9g", got->accuracy, want->accuracy);
    ck_assert_str_eq(got->dataset_kind, want->dataset_kind);
    ck_assert_str_eq(got->dataset_path, want->dataset_path);
    ck_assert_str_eq(got->created, want->created);
    ck_assert_str_eq(got->sila_version, want->sila_version);
    ck_assert_str_eq(got->deploy, want->deploy);
    ck_assert_int_eq(got->exit_module, want->exit_module);
    ck_assert_int_eq(got->modules, want->modules);
    ck_assert_uint_eq(got->full_params, want->full_params);
    ck_assert_uint_eq(got->full_macs, want->full_macs);
    ck_assert_uint_eq(got->holdout, want->holdout);
    ck_assert_int_eq(got->nexits, want->nexits);
    for (int k = 0; k < want->nexits; k++) {
        ck_assert(float_bits_eq(got->exit_test[k], want->exit_test[k]));
        ck_assert(float_bits_eq(got->exit_holdout[k], want->exit_holdout[k]));
    }
}

static void assert_specs_eq(const struct sila_net *got, const struct sila_net *want)
{
    ck_assert_int_eq(sila_net_layer_count(got), sila_net_layer_count(want));
    for (int i = 0; i < sila_net_layer_count(want); i++) {
        const struct sila_layer_spec *a = sila_net_layer_spec(got, i);
        const struct sila_layer_spec *b = sila_net_layer_spec(want, i);
        ck_assert_msg(a->kind == b->kind && a->out == b->out && a->kernel == b->kernel &&
                          a->stride == b->stride && a->pad == b->pad && a->bias == b->bias &&
                          float_bits_eq(a->p, b->p) &&
                          float_bits_eq(a->bn_momentum, b->bn_momentum) &&
                          float_bits_eq(a->bn_eps, b->bn_eps),
                      "layer %d: spec differs after the round trip", i);
    }
}

/* Same architecture, same tensors (names, shapes, offsets), and every
 * parameter and buffer identical bit for bit. */
static void assert_model_eq(const struct sila_model *m, const struct tnet *t)
{
    const struct sila_net *a = m->net, *b = t->net;
    assert_specs_eq(a, b);
    struct sila_shape ai = sila_net_in_shape(a), bi = sila_net_in_shape(b);
    ck_assert(ai.c == bi.c && ai.h == bi.h && ai.w == bi.w);
    ck_assert_int_eq(m->num_classes, sila_net_out_shape(b).c);
    ck_assert_int_eq(sila_net_max_batch(a), MAX_BATCH);
    size_t np = sila_net_param_count(b), nb = sila_net_buffer_count(b);
    ck_assert_uint_eq(sila_net_param_count(a), np);
    ck_assert_uint_eq(sila_net_buffer_count(a), nb);
    ck_assert_int_eq(sila_net_tensor_count(a), sila_net_tensor_count(b));
    for (int i = 0; i < sila_net_tensor_count(b); i++) {
        const struct sila_tensor *x = sila_net_tensor(a, i), *y = sila_net_tensor(b, i);
        ck_assert_str_eq(x->name, y->name);
        ck_assert_int_eq(x->ndim, y->ndim);
        ck_assert_mem_eq(x->shape, y->shape, sizeof x->shape[0] * y->ndim);
        const float *xs = sila_tensor_is_buffer(x) ? m->buffers : m->params;
        const float *ys = sila_tensor_is_buffer(y) ? t->buffers : t->params;
        ck_assert_msg(memcmp(xs + x->offset, ys + y->offset, sizeof *xs * y->n) == 0,
                      "tensor %s differs after the round trip", y->name);
    }
    ck_assert_mem_eq(m->params, t->params, sizeof *m->params * np);
    if (nb)
        ck_assert_mem_eq(m->buffers, t->buffers, sizeof *m->buffers * nb);
}

/* Eval-mode outputs of the saved and the loaded net on one input, equal bit
 * for bit (same kernels, same values, same order of operations). */
static void assert_same_outputs(struct sila_model *m, struct tnet *t, int B)
{
    float *x = random_input(t->net, B, 99);
    size_t n = (size_t)B * sila_shape_size(sila_net_out_shape(t->net));
    float *want = malloc(sizeof *want * n);
    ck_assert_ptr_nonnull(want);
    memcpy(want, sila_net_forward(t->net, x, B, false, NULL), sizeof *want * n);
    const float *got = sila_net_forward(m->net, x, B, false, NULL);
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(isfinite(want[i]), "output %zu not finite", i);
        nonzero += want[i] != 0.0f;
    }
    ck_assert_int_gt(nonzero, 0); /* a meaningful comparison */
    ck_assert_mem_eq(got, want, sizeof *want * n);
    free(want);
    free(x);
}

/* ---- round trips ---- */

/* conv, bn, relu, maxpool, block (stride 2, 4 -> 8 channels: projection),
 * gap, linear; non-default options everywhere they exist. (3, 8, 8) -> 5. */
static int cnn_specs(struct sila_layer_spec *s)
{
    s[0] = sila_layer_spec_default(SILA_LAYER_CONV2D);
    s[0].out = 4, s[0].pad = 1, s[0].bias = false;
    s[1] = sila_layer_spec_default(SILA_LAYER_BATCHNORM);
    s[1].bn_momentum = 0.3f, s[1].bn_eps = 1e-3f;
    s[2] = sila_layer_spec_default(SILA_LAYER_RELU);
    s[3] = sila_layer_spec_default(SILA_LAYER_MAXPOOL);
    s[4] = sila_layer_spec_default(SILA_LAYER_BLOCK);
    s[4].out = 8, s[4].stride = 2, s[4].p = 0.125f, s[4].bn_momentum = 0.25f;
    s[5] = sila_layer_spec_default(SILA_LAYER_GAP);
    s[6] = sila_layer_spec_default(SILA_LAYER_LINEAR);
    s[6].out = 5;
    return 7;
}

static const struct sila_shape CNN_IN = {3, 8, 8};

static void make_cnn(struct tnet *t, uint64_t seed)
{
    struct sila_layer_spec s[8];
    tnet_new(t, s, cnn_specs(s), CNN_IN, seed);
    tnet_train_forwards(t, seed);
}

/* flatten, linear (no bias), relu, dropout, linear. (1, 4, 4) -> 3. */
static void make_mlp(struct tnet *t, uint64_t seed)
{
    struct sila_layer_spec s[5];
    s[0] = sila_layer_spec_default(SILA_LAYER_FLATTEN);
    s[1] = sila_layer_spec_default(SILA_LAYER_LINEAR);
    s[1].out = 8, s[1].bias = false;
    s[2] = sila_layer_spec_default(SILA_LAYER_RELU);
    s[3] = sila_layer_spec_default(SILA_LAYER_DROPOUT);
    s[3].p = 0.25f;
    s[4] = sila_layer_spec_default(SILA_LAYER_LINEAR);
    s[4].out = 3;
    tnet_new(t, s, 5, (struct sila_shape){1, 4, 4}, seed);
}

/* An input record for t's net with values no dataset's table holds, and
 * class names (the nets here have at most 10 classes) when `named`. */
static const float TEST_MEAN[3] = {0.125f, -0.5f, 2.0f}, TEST_STD[3] = {0.25f, 1.5f, 3e-3f};
static const char *const TEST_NAMES[10] = {"T-shirt/top", "Ankle boot", "ciné", "\"quoted\"", "",
                                           "5",           "6",          "7",    "8",          "9"};

static struct sila_model_input test_input(const struct tnet *t, bool named)
{
    ck_assert_int_le(sila_net_out_shape(t->net).c, 10);
    struct sila_model_input in = {.layout = "NCHW",
                                  .dataset_kind = "cifar10",
                                  .channels = sila_net_in_shape(t->net).c,
                                  .mean = TEST_MEAN,
                                  .std = TEST_STD};
    if (named)
        in.nnames = sila_net_out_shape(t->net).c, in.names = TEST_NAMES;
    return in;
}

static void assert_input_eq(const struct sila_model_input *got, const struct sila_model_input *want)
{
    ck_assert(got->recorded);
    ck_assert_str_eq(got->layout, want->layout);
    ck_assert_str_eq(got->dataset_kind, want->dataset_kind);
    ck_assert_int_eq(got->channels, want->channels);
    ck_assert_mem_eq(got->mean, want->mean, sizeof *want->mean * want->channels);
    ck_assert_mem_eq(got->std, want->std, sizeof *want->std * want->channels);
    ck_assert_int_eq(got->nnames, want->nnames);
    for (int c = 0; c < want->nnames; c++)
        ck_assert_str_eq(got->names[c], want->names[c]);
}

static void save_ok(const char *path, const struct tnet *t, const struct sila_model_info *info)
{
    struct sila_err err = {""};
    struct sila_model_input input = test_input(t, true);
    int r = sila_model_save(path, t->net, t->params, t->buffers, info, &input, &err);
    ck_assert_msg(r == 0, "save %s: %d: %s", path, r, err.msg);
}

static void load_ok(struct sila_model *m, const char *path)
{
    struct sila_err err = {""};
    int r = sila_model_load(m, path, MAX_BATCH, &err);
    ck_assert_msg(r == 0, "load %s: %d: %s", path, r, err.msg);
    ck_assert_ptr_nonnull(m->net);
}

START_TEST(cnn_round_trip)
{
    struct tnet t;
    make_cnn(&t, 1);
    /* the running statistics really moved: otherwise init would look saved */
    size_t nb = sila_net_buffer_count(t.net), moved = 0;
    ck_assert_uint_gt(nb, 0);
    for (size_t i = 0; i < nb; i++)
        moved += t.buffers[i] != 0.0f && t.buffers[i] != 1.0f;
    ck_assert_uint_eq(moved, nb);

    struct sila_model_info info = sample_info();
    save_ok(tpath("cnn.silamodel"), &t, &info);
    struct sila_model m;
    load_ok(&m, tpath("cnn.silamodel"));
    assert_model_eq(&m, &t);
    ck_assert_int_eq(m.num_classes, 5);
    assert_info_eq(&m.info, &info);
    struct sila_model_input want = test_input(&t, true);
    assert_input_eq(&m.input, &want);
    assert_same_outputs(&m, &t, 3);
    sila_model_fini(&m);
    tnet_free(&t);
}
END_TEST

START_TEST(mlp_round_trip)
{
    struct tnet t;
    make_mlp(&t, 2);
    ck_assert_uint_eq(sila_net_buffer_count(t.net), 0);
    struct sila_model_info info = sample_info();
    info.dataset_path[0] = '\0';                           /* empty strings stay empty */
    struct sila_model_input input = test_input(&t, false); /* no class names */
    struct sila_err err = {""};
    int r =
        sila_model_save(tpath("mlp.silamodel"), t.net, t.params, t.buffers, &info, &input, &err);
    ck_assert_msg(r == 0, "save: %d: %s", r, err.msg);
    struct sila_model m;
    load_ok(&m, tpath("mlp.silamodel"));
    assert_model_eq(&m, &t);
    ck_assert_int_eq(m.num_classes, 3);
    assert_info_eq(&m.info, &info);
    assert_input_eq(&m.input, &input);
    assert_same_outputs(&m, &t, MAX_BATCH);
    sila_model_fini(&m);
    tnet_free(&t);
}
END_TEST

/* Rewrites the model file at path without its input record, as files were
 * written before it existed. */
static void strip_input_record(const char *path)
{
    static uint8_t file[1 << 16];
    size_t len = read_bytes(path, file, sizeof file);
    ck_assert_uint_gt(len, HEADER_BYTES);
    Sila__Model *pm = sila__model__unpack(NULL, len - HEADER_BYTES, file + HEADER_BYTES);
    ck_assert_ptr_nonnull(pm);
    ck_assert_ptr_nonnull(pm->input_spec);
    Sila__InputSpec *spec = pm->input_spec;
    pm->input_spec = NULL;
    size_t plen = sila__model__get_packed_size(pm);
    ck_assert_uint_lt(plen, len - HEADER_BYTES);
    ck_assert_uint_eq(sila__model__pack(pm, file + HEADER_BYTES), plen);
    pm->input_spec = spec;
    sila__model__free_unpacked(pm, NULL);
    put_header(file, SILA_MODEL_FORMAT_VERSION, file + HEADER_BYTES, plen);
    write_bytes(path, file, HEADER_BYTES + plen);
}

/* A file without an input record (written before it existed) loads, with
 * its dataset kind's normalisation and class names from the dataset
 * module's tables, as recorded = false; the net and provenance are as
 * saved. */
START_TEST(old_file_gets_kind_values)
{
    struct sila_layer_spec s[8];
    int n = cnn_specs(s);
    s[n - 1].out = 10; /* CIFAR-10's classes, so that its names apply */
    struct tnet t;
    tnet_new(&t, s, n, CNN_IN, 11);
    struct sila_model_info info = sample_info(); /* dataset_kind cifar10 */
    save_ok(tpath("old"), &t, &info);
    strip_input_record(tpath("old"));

    struct sila_model m;
    load_ok(&m, tpath("old"));
    assert_model_eq(&m, &t);
    assert_info_eq(&m.info, &info);
    const struct sila_model_input *in = &m.input;
    ck_assert(!in->recorded);
    ck_assert_str_eq(in->layout, "NCHW");
    ck_assert_str_eq(in->dataset_kind, "cifar10");
    ck_assert_int_eq(in->channels, 3);
    const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, std[3] = {0.2470f, 0.2435f, 0.2616f};
    ck_assert_mem_eq(in->mean, mean, sizeof mean);
    ck_assert_mem_eq(in->std, std, sizeof std);
    ck_assert_int_eq(in->nnames, 10);
    ck_assert_str_eq(in->names[0], "airplane");
    ck_assert_str_eq(in->names[9], "truck");
    sila_model_fini(&m);
    tnet_free(&t);
}
END_TEST

/* An empty `created` is filled with the time of saving, in ISO 8601 UTC
 * (checked under a UTC+05:30 local zone, where local time would show). */
START_TEST(created_filled_in_utc_when_empty)
{
    const char *tz = getenv("TZ");
    char saved_tz[64];
    snprintf(saved_tz, sizeof saved_tz, "%s", tz ? tz : "");
    ck_assert_int_eq(setenv("TZ", "IST-05:30", 1), 0);
    tzset();
    struct tnet t;
    make_mlp(&t, 3);
    struct sila_model_info info = sample_info();
    info.created[0] = '\0';
    time_t before = time(NULL);
    save_ok(tpath("m"), &t, &info);
    time_t after = time(NULL);
    struct sila_model m;
    load_ok(&m, tpath("m"));

    struct tm tm = {0};
    int end = 0;
    int n = sscanf(m.info.created, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon,
                   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &end);
    ck_assert_msg(n == 6 && end == 20 && m.info.created[end] == '\0',
                  "created '%s' is not YYYY-MM-DDTHH:MM:SSZ", m.info.created);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t stamp = timegm(&tm);
    ck_assert_msg(stamp >= before - 1 && stamp <= after + 1,
                  "created '%s' is not the UTC time of saving", m.info.created);
    /* the rest of the provenance is unaffected */
    snprintf(info.created, sizeof info.created, "%s", m.info.created);
    assert_info_eq(&m.info, &info);
    sila_model_fini(&m);
    tnet_free(&t);
    if (tz)
        setenv("TZ", saved_tz, 1);
    else
        unsetenv("TZ");
    tzset();
}
END_TEST

/* ---- atomic saving ---- */

START_TEST(save_leaves_no_temporary_file)
{
    struct tnet t;
    make_mlp(&t, 4);
    struct sila_model_info info = sample_info();
    save_ok(tpath("model"), &t, &info);
    ck_assert(!exists(tpath("model.tmp")));
    ck_assert_int_eq(tmpdir_entries(), 1);
    tnet_free(&t);
}
END_TEST

/* Saving over a model replaces it by rename: a reader holding the old file
 * open still sees the old model whole, and the path loads the new one. */
START_TEST(save_replaces_existing_file)
{
    static uint8_t old_bytes[FILE_CAP], seen[FILE_CAP];
    struct tnet a, b;
    make_mlp(&a, 5);
    make_mlp(&b, 6);
    struct sila_model_info info = sample_info();
    save_ok(tpath("model"), &a, &info);
    size_t old_len = read_bytes(tpath("model"), old_bytes, sizeof old_bytes);
    int fd = open(tpath("model"), O_RDONLY);
    ck_assert_int_ge(fd, 0);

    info.epochs = 38;
    save_ok(tpath("model"), &b, &info);
    ck_assert(!exists(tpath("model.tmp")));
    ck_assert_int_eq(tmpdir_entries(), 1);
    ssize_t got = pread(fd, seen, sizeof seen, 0);
    close(fd);
    ck_assert_int_eq(got, (ssize_t)old_len);
    ck_assert_mem_eq(seen, old_bytes, old_len);

    struct sila_model m;
    load_ok(&m, tpath("model"));
    assert_model_eq(&m, &b);
    ck_assert_int_eq(m.info.epochs, 38);
    sila_model_fini(&m);
    tnet_free(&a);
    tnet_free(&b);
}
END_TEST

/* A save that cannot complete names the path and leaves nothing behind. */
START_TEST(failed_save_leaves_nothing)
{
    struct tnet t;
    make_mlp(&t, 7);
    struct sila_model_info info = sample_info();
    struct sila_err err = {""};

    /* the target is a non-empty directory: the final rename fails */
    ck_assert_int_eq(mkdir(tpath("dir"), 0755), 0);
    write_bytes(tpath("dir/keep"), "x", 1);
    struct sila_model_input input = test_input(&t, true);
    int r = sila_model_save(tpath("dir"), t.net, t.params, t.buffers, &info, &input, &err);
    ck_assert_int_lt(r, 0);
    ck_assert_msg(strstr(err.msg, tpath("dir")), "message '%s' lacks the path", err.msg);
    ck_assert(!exists(tpath("dir.tmp")));
    ck_assert(exists(tpath("dir/keep")));
    ck_assert_int_eq(tmpdir_entries(), 1);

    /* the directory of the target does not exist */
    err.msg[0] = '\0';
    r = sila_model_save(tpath("nodir/model"), t.net, t.params, t.buffers, &info, &input, &err);
    ck_assert_int_eq(r, -ENOENT);
    ck_assert_msg(strstr(err.msg, tpath("nodir/model")), "message '%s' lacks the path", err.msg);
    ck_assert_int_eq(tmpdir_entries(), 1);
    tnet_free(&t);
}
END_TEST

/* ---- refusals ---- */

/* path must be refused: a negative errno (`code` exactly unless 0), a
 * zeroed model, and a message naming path and containing `keyword` outside
 * the path itself. */
static void expect_refused_at(int line, const char *path, int max_batch, int code,
                              const char *keyword)
{
    static const struct sila_model zero;
    struct sila_model m;
    memset(&m, 0x5a, sizeof m);
    struct sila_err err = {""};
    int r = sila_model_load(&m, path, max_batch, &err);
    bool loaded = r == 0;
    if (loaded)
        sila_model_fini(&m);
    ck_assert_msg(!loaded, "line %d: %s was loaded", line, path);
    ck_assert_msg(r < 0, "line %d: %s: returned %d", line, path, r);
    if (code)
        ck_assert_msg(r == code, "line %d: %s: returned %d, expected %d", line, path, r, code);
    ck_assert_msg(memcmp(&m, &zero, sizeof m) == 0, "line %d: %s: model not zeroed", line, path);
    const char *at = strstr(err.msg, path);
    ck_assert_msg(at, "line %d: message '%s' does not name %s", line, err.msg, path);
    char rest[sizeof err.msg];
    snprintf(rest, sizeof rest, "%.*s%s", (int)(at - err.msg), err.msg, at + strlen(path));
    ck_assert_msg(strstr(rest, keyword), "line %d: message '%s' does not say '%s'", line, err.msg,
                  keyword);
}

#define expect_refused(path, code, keyword)                                                        \
    expect_refused_at(__LINE__, (path), MAX_BATCH, (code), (keyword))

START_TEST(refuse_missing_file)
{
    expect_refused(tpath("absent"), -ENOENT, "open");
}
END_TEST

START_TEST(refuse_empty_file)
{
    write_bytes(tpath("empty"), "", 0);
    expect_refused(tpath("empty"), -EINVAL, "not a sila model");
}
END_TEST

START_TEST(refuse_directory)
{
    ck_assert_int_eq(mkdir(tpath("d"), 0755), 0);
    expect_refused(tpath("d"), -EINVAL, "regular file");
}
END_TEST

/* ---- a model built by hand ----
 * input (2, 2, 2) -> 0: batchnorm -> 1: flatten -> 2: linear(3), with the
 * tensors written out below. Mutations of it make the broken payloads. */

enum { HM_GAMMA, HM_BETA, HM_MEAN, HM_VAR, HM_W, HM_B, HM_NT };

struct handmade {
    Sila__Model model;
    Sila__Shape input;
    Sila__Provenance prov;
    Sila__InputSpec record; /* attached by hm_record */
    float mean[3], std[3];
    char *names[4];
    Sila__LayerSpec specs[4];
    Sila__LayerSpec *spec_ptrs[4];
    Sila__Tensor tensors[HM_NT + 1];
    Sila__Tensor *tensor_ptrs[HM_NT + 1];
    int32_t shapes[HM_NT + 1][2];
    float data[HM_NT + 1][32];
};

static const float HM_EPS = 0.0625f;
static const float HM_GAMMA_V[2] = {1.5f, -0.5f}, HM_BETA_V[2] = {0.25f, 2.0f};
static const float HM_MEAN_V[2] = {0.5f, -1.0f}, HM_VAR_V[2] = {4.0f, 0.25f};
static const float HM_B_V[3] = {0.1f, -0.2f, 0.3f};

static float hm_weight(int i)
{
    return (float)((i * 7) % 24 - 11) / 8.0f; /* (3, 8), all distinct */
}

static void hm_tensor(struct handmade *hm, int i, const char *name, int ndim, int d0, int d1,
                      const float *v)
{
    Sila__Tensor *t = &hm->tensors[i];
    sila__tensor__init(t);
    t->name = (char *)name;
    hm->shapes[i][0] = d0, hm->shapes[i][1] = d1;
    t->n_shape = (size_t)ndim;
    t->shape = hm->shapes[i];
    t->n_data = (size_t)d0 * (ndim == 2 ? d1 : 1);
    t->data = hm->data[i];
    for (size_t k = 0; k < t->n_data; k++)
        hm->data[i][k] = v ? v[k] : hm_weight((int)k);
    hm->tensor_ptrs[i] = t;
}

static void hm_init(struct handmade *hm)
{
    memset(hm, 0, sizeof *hm);
    sila__model__init(&hm->model);
    sila__shape__init(&hm->input);
    hm->input.c = 2, hm->input.h = 2, hm->input.w = 2;
    sila__provenance__init(&hm->prov);
    hm->prov.job = "handmade";
    hm->prov.seed = 42;
    hm->prov.created = "2020-01-01T00:00:00Z";
    for (int i = 0; i < 4; i++) {
        sila__layer_spec__init(&hm->specs[i]);
        hm->spec_ptrs[i] = &hm->specs[i];
    }
    hm->specs[0].kind = SILA__LAYER_KIND__BATCHNORM;
    hm->specs[0].bn_momentum = 0.1f;
    hm->specs[0].bn_eps = HM_EPS;
    hm->specs[1].kind = SILA__LAYER_KIND__FLATTEN;
    hm->specs[2].kind = SILA__LAYER_KIND__LINEAR;
    hm->specs[2].out = 3;
    hm->specs[2].bias = 1;
    hm_tensor(hm, HM_GAMMA, "0.weight", 1, 2, 0, HM_GAMMA_V);
    hm_tensor(hm, HM_BETA, "0.bias", 1, 2, 0, HM_BETA_V);
    hm_tensor(hm, HM_MEAN, "0.running_mean", 1, 2, 0, HM_MEAN_V);
    hm_tensor(hm, HM_VAR, "0.running_var", 1, 2, 0, HM_VAR_V);
    hm_tensor(hm, HM_W, "2.weight", 2, 3, 8, NULL);
    hm_tensor(hm, HM_B, "2.bias", 1, 3, 0, HM_B_V);
    hm->model.format_version = SILA_MODEL_FORMAT_VERSION;
    hm->model.input = &hm->input;
    hm->model.num_classes = 3;
    hm->model.n_layers = 3;
    hm->model.layers = hm->spec_ptrs;
    hm->model.n_tensors = HM_NT;
    hm->model.tensors = hm->tensor_ptrs;
    hm->model.provenance = &hm->prov;
}

/* Gives hm a valid input record: two channels, three class names. */
static void hm_record(struct handmade *hm)
{
    static const char *const names[3] = {"zero", "one", "two"};
    sila__input_spec__init(&hm->record);
    hm->record.layout = "NCHW";
    hm->record.dataset_kind = "fmnist";
    hm->mean[0] = 0.25f, hm->mean[1] = -0.75f;
    hm->std[0] = 0.5f, hm->std[1] = 2.0f;
    hm->record.n_mean = hm->record.n_std = 2;
    hm->record.mean = hm->mean, hm->record.std = hm->std;
    for (int i = 0; i < 3; i++)
        hm->names[i] = (char *)names[i];
    hm->record.n_class_names = 3;
    hm->record.class_names = hm->names;
    hm->model.input_spec = &hm->record;
}

/* Packs hm into a complete file image (correct header); returns its size. */
static size_t hm_image(const struct handmade *hm, uint8_t *buf, size_t cap)
{
    size_t len = sila__model__get_packed_size(&hm->model);
    ck_assert_uint_le(HEADER_BYTES + len, cap);
    ck_assert_uint_eq(sila__model__pack(&hm->model, buf + HEADER_BYTES), len);
    put_header(buf, SILA_MODEL_FORMAT_VERSION, buf + HEADER_BYTES, len);
    return HEADER_BYTES + len;
}

static void hm_write(const struct handmade *hm, const char *path)
{
    static uint8_t buf[FILE_CAP];
    write_bytes(path, buf, hm_image(hm, buf, sizeof buf));
}

static const float *loaded_tensor(const struct sila_model *m, const char *name)
{
    for (int i = 0; i < sila_net_tensor_count(m->net); i++) {
        const struct sila_tensor *t = sila_net_tensor(m->net, i);
        if (strcmp(t->name, name) == 0)
            return (sila_tensor_is_buffer(t) ? m->buffers : m->params) + t->offset;
    }
    ck_abort_msg("no tensor %s in the loaded net", name);
    return NULL;
}

/* The control for every mutation below: the unbroken model loads, its
 * tensors land where their names say, and its eval output matches batch
 * norm and linear computed here in double. */
START_TEST(handmade_model_loads)
{
    struct handmade hm;
    hm_init(&hm);
    hm_write(&hm, tpath("hm"));
    struct sila_model m;
    load_ok(&m, tpath("hm"));
    ck_assert_int_eq(m.num_classes, 3);
    ck_assert_int_eq(sila_net_layer_count(m.net), 3);
    ck_assert_str_eq(m.info.job, "handmade");
    ck_assert_uint_eq(m.info.seed, 42);
    ck_assert_str_eq(m.info.created, "2020-01-01T00:00:00Z");
    ck_assert_str_eq(m.info.algorithm, "");
    /* no input record and no dataset kind: no normalisation, no names */
    ck_assert(!m.input.recorded);
    ck_assert_int_eq(m.input.channels, 2);
    ck_assert(m.input.mean[0] == 0.0f && m.input.mean[1] == 0.0f);
    ck_assert(m.input.std[0] == 1.0f && m.input.std[1] == 1.0f);
    ck_assert_int_eq(m.input.nnames, 0);
    ck_assert_str_eq(m.input.dataset_kind, "");
    for (int i = 0; i < HM_NT; i++)
        ck_assert_mem_eq(loaded_tensor(&m, hm.tensors[i].name), hm.data[i],
                         sizeof(float) * hm.tensors[i].n_data);

    float x[2][8];
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < 8; j++)
            x[b][j] = (float)((b * 8 + j) * 5 % 11) / 4.0f - 1.0f;
    const float *y = sila_net_forward(m.net, &x[0][0], 2, false, NULL);
    for (int b = 0; b < 2; b++) {
        double z[8];
        for (int j = 0; j < 8; j++) { /* (C=2, H*W=4) flattened channel-major */
            int c = j / 4;
            z[j] = (x[b][j] - HM_MEAN_V[c]) / sqrt((double)HM_VAR_V[c] + HM_EPS) * HM_GAMMA_V[c] +
                   HM_BETA_V[c];
        }
        for (int o = 0; o < 3; o++) {
            double want = HM_B_V[o];
            for (int j = 0; j < 8; j++)
                want += hm_weight(o * 8 + j) * z[j];
            ck_assert_msg(fabs(y[b * 3 + o] - want) <= 1e-5 * (1 + fabs(want)),
                          "output (%d, %d): %.7g, expected %.7g", b, o, y[b * 3 + o], want);
        }
    }
    sila_model_fini(&m);
}
END_TEST

/* The handmade model with a record loads it as it is: the control for the
 * refusals of refuse_bad_input_record. */
START_TEST(handmade_record_loads)
{
    struct handmade hm;
    hm_init(&hm);
    hm_record(&hm);
    hm_write(&hm, tpath("hm"));
    struct sila_model m;
    load_ok(&m, tpath("hm"));
    ck_assert(m.input.recorded);
    ck_assert_str_eq(m.input.dataset_kind, "fmnist");
    ck_assert_int_eq(m.input.channels, 2);
    ck_assert_mem_eq(m.input.mean, hm.mean, sizeof(float) * 2);
    ck_assert_mem_eq(m.input.std, hm.std, sizeof(float) * 2);
    ck_assert_int_eq(m.input.nnames, 3);
    ck_assert_str_eq(m.input.names[2], "two");
    sila_model_fini(&m);
    /* class names are optional */
    hm.record.n_class_names = 0;
    hm_write(&hm, tpath("hm"));
    load_ok(&m, tpath("hm"));
    ck_assert_int_eq(m.input.nnames, 0);
    sila_model_fini(&m);
}
END_TEST

/* Strings longer than the fields of sila_model_info are truncated to fit
 * and stay NUL-terminated. */
START_TEST(long_provenance_strings_truncated)
{
    static char job[300], created[64];
    memset(job, 'a', sizeof job - 1);
    memset(created, '9', sizeof created - 1);
    struct handmade hm;
    hm_init(&hm);
    hm.prov.job = job;
    hm.prov.created = created;
    hm_write(&hm, tpath("hm"));
    struct sila_model m;
    load_ok(&m, tpath("hm"));
    ck_assert_uint_eq(strlen(m.info.job), sizeof m.info.job - 1);
    ck_assert_int_eq(strncmp(m.info.job, job, sizeof m.info.job - 1), 0);
    ck_assert_uint_eq(strlen(m.info.created), sizeof m.info.created - 1);
    sila_model_fini(&m);
}
END_TEST

/* ---- broken headers and framing ---- */

static size_t hm_good_image(uint8_t *buf)
{
    struct handmade hm;
    hm_init(&hm);
    return hm_image(&hm, buf, FILE_CAP);
}

START_TEST(refuse_bad_magic)
{
    static uint8_t buf[FILE_CAP];
    size_t len = hm_good_image(buf);
    const char *bad[] = {"SILAMODX", "silamodl", "\x89PNG\r\n\x1a\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(buf, bad[i], 8);
        write_bytes(tpath("m"), buf, len);
        expect_refused(tpath("m"), -EINVAL, "magic");
    }
}
END_TEST

START_TEST(refuse_wrong_format_version)
{
    static uint8_t buf[FILE_CAP];
    size_t len = hm_good_image(buf);
    const uint32_t bad[] = {0, SILA_MODEL_FORMAT_VERSION + 1, 0x01000000u};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put_le32(buf + 8, bad[i]);
        write_bytes(tpath("m"), buf, len);
        expect_refused(tpath("m"), -EINVAL, "version");
    }
}
END_TEST

/* Cut inside the header, after the intact magic: the file is truncated,
 * not of another kind. */
START_TEST(refuse_truncated_header)
{
    static uint8_t buf[FILE_CAP];
    hm_good_image(buf);
    const size_t cuts[] = {12, 16, HEADER_BYTES - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_bytes(tpath("m"), buf, cuts[i]);
        expect_refused(tpath("m"), -EINVAL, "truncated");
    }
}
END_TEST

START_TEST(refuse_truncated_payload)
{
    static uint8_t buf[FILE_CAP];
    size_t len = hm_good_image(buf);
    const size_t cuts[] = {HEADER_BYTES, HEADER_BYTES + 1, (HEADER_BYTES + len) / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_bytes(tpath("m"), buf, cuts[i]);
        expect_refused(tpath("m"), -EINVAL, "truncated");
    }
}
END_TEST

START_TEST(refuse_appended_byte)
{
    static uint8_t buf[FILE_CAP];
    size_t len = hm_good_image(buf);
    buf[len] = 0;
    write_bytes(tpath("m"), buf, len + 1);
    expect_refused(tpath("m"), -EINVAL, "padded");
}
END_TEST

/* One flipped bit anywhere in the payload (here: first byte, tensor data in
 * the middle, last byte) is caught by the checksum, as is a wrong checksum. */
START_TEST(refuse_checksum_mismatch)
{
    static uint8_t buf[FILE_CAP];
    size_t len = hm_good_image(buf);
    const size_t at[] = {HEADER_BYTES, (HEADER_BYTES + len) / 2, len - 1, 12};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        buf[at[i]] ^= 0x10;
        write_bytes(tpath("m"), buf, len);
        buf[at[i]] ^= 0x10;
        expect_refused(tpath("m"), -EINVAL, "checksum");
    }
}
END_TEST

/* A correct header over bytes that are not a sila.Model. */
START_TEST(refuse_garbage_payload)
{
    static const struct {
        size_t len;
        uint8_t bytes[12];
    } garbage[] = {
        {12, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
        {4, {0x12, 0x7f, 0x08, 0x01}},             /* input: 127 bytes promised, 2 there */
        {4, {0x0f, 0x00, 0x00, 0x00}},             /* wire type 7 does not exist */
        {6, {0x08, 0x01, 0x22, 0x05, 0x08, 0x03}}, /* a layer cut short */
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        write_with_header(tpath("m"), garbage[i].bytes, garbage[i].len);
        expect_refused(tpath("m"), -EINVAL, "payload");
    }
}
END_TEST

/* ---- valid protobuf, invalid model ---- */

static void expect_hm_refused_at(int line, const struct handmade *hm, const char *keyword)
{
    hm_write(hm, tpath("m"));
    expect_refused_at(line, tpath("m"), MAX_BATCH, -EINVAL, keyword);
}

#define expect_hm_refused(hm, keyword) expect_hm_refused_at(__LINE__, (hm), (keyword))

/* Shapes that disagree with the architecture, each a self-consistent
 * tensor (data count = product of the shape). */
START_TEST(refuse_wrong_tensor_shape)
{
    struct handmade hm;
    hm_init(&hm);
    hm_tensor(&hm, HM_W, "2.weight", 2, 4, 8, NULL); /* (4, 8) for (3, 8) */
    expect_hm_refused(&hm, "2.weight");
    hm_init(&hm);
    hm_tensor(&hm, HM_W, "2.weight", 1, 24, 0, NULL); /* flat (24) */
    expect_hm_refused(&hm, "2.weight");
    hm_init(&hm);
    hm_tensor(&hm, HM_VAR, "0.running_var", 1, 3, 0, HM_B_V); /* a buffer, (3) for (2) */
    expect_hm_refused(&hm, "0.running_var");
    hm_init(&hm);
    hm.tensors[HM_B].n_data = 2; /* shape (3), two values */
    expect_hm_refused(&hm, "2.bias");
}
END_TEST

/* The same count in a transposed shape: the message must say the shape is
 * wrong (it is the only thing that is). */
START_TEST(refuse_transposed_tensor_shape)
{
    struct handmade hm;
    hm_init(&hm);
    hm_tensor(&hm, HM_W, "2.weight", 2, 8, 3, NULL); /* (8, 3) for (3, 8) */
    expect_hm_refused(&hm, "2.weight");
    expect_hm_refused(&hm, "shape");
}
END_TEST

START_TEST(refuse_wrong_tensor_name)
{
    struct handmade hm;
    hm_init(&hm);
    hm.tensors[HM_MEAN].name = "0.running_avg";
    expect_hm_refused(&hm, "0.running_avg");
    hm_init(&hm);
    hm.tensors[HM_W].name = "";
    expect_hm_refused(&hm, "2.weight");
}
END_TEST

START_TEST(refuse_missing_or_extra_tensor)
{
    struct handmade hm;
    hm_init(&hm);
    hm.model.n_tensors = HM_NT - 1; /* no 2.bias */
    expect_hm_refused(&hm, "tensors");
    hm_init(&hm);
    memmove(&hm.tensor_ptrs[HM_VAR], &hm.tensor_ptrs[HM_VAR + 1],
            sizeof hm.tensor_ptrs[0] * (HM_NT - HM_VAR - 1)); /* no 0.running_var */
    hm.model.n_tensors = HM_NT - 1;
    expect_hm_refused(&hm, "tensors");
    hm_init(&hm);
    hm.model.n_tensors = 0;
    expect_hm_refused(&hm, "tensors");
    hm_init(&hm);
    hm_tensor(&hm, HM_NT, "3.weight", 1, 3, 0, HM_B_V); /* one too many */
    hm.model.n_tensors = HM_NT + 1;
    expect_hm_refused(&hm, "tensors");
}
END_TEST

START_TEST(refuse_unknown_layer_kind)
{
    const int bad[] = {99, 0, SILA_LAYER_KIND_MAX + 1, -1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct handmade hm;
        hm_init(&hm);
        hm.specs[1].kind = (Sila__LayerKind)bad[i];
        char kw[32];
        snprintf(kw, sizeof kw, "kind %d", bad[i]);
        expect_hm_refused(&hm, kw);
    }
}
END_TEST

/* Layer lists whose shapes do not chain, or whose options are invalid: the
 * message names the offending layer's kind. */
START_TEST(refuse_unchained_layers)
{
    struct handmade hm;
    hm_init(&hm);
    hm.spec_ptrs[1] = &hm.specs[2]; /* linear on (2, 2, 2): no flatten */
    hm.model.n_layers = 2;
    expect_hm_refused(&hm, "linear");

    hm_init(&hm);
    hm.specs[3].kind = SILA__LAYER_KIND__CONV2D; /* 5x5 kernel on 2x2, no padding */
    hm.specs[3].out = 2, hm.specs[3].kernel = 5, hm.specs[3].stride = 1;
    hm.spec_ptrs[1] = &hm.specs[3];
    expect_hm_refused(&hm, "conv2d");

    hm_init(&hm);
    hm.specs[0].bn_eps = 0.0f;
    expect_hm_refused(&hm, "batchnorm");
    hm.specs[0].bn_eps = NAN;
    expect_hm_refused(&hm, "batchnorm");

    hm_init(&hm);
    hm.specs[2].out = 0;
    expect_hm_refused(&hm, "linear");
}
END_TEST

START_TEST(refuse_inconsistent_num_classes)
{
    const int bad[] = {4, 2, 0, -3};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct handmade hm;
        hm_init(&hm);
        hm.model.num_classes = bad[i];
        expect_hm_refused(&hm, "num_classes");
    }
}
END_TEST

START_TEST(refuse_bad_model_fields)
{
    struct handmade hm;
    hm_init(&hm);
    hm.model.format_version = SILA_MODEL_FORMAT_VERSION + 1; /* the header says 1 */
    expect_hm_refused(&hm, "version");
    hm_init(&hm);
    hm.model.input = NULL;
    expect_hm_refused(&hm, "input");
    hm_init(&hm);
    hm.input.c = -2;
    expect_hm_refused(&hm, "input");
    hm_init(&hm);
    hm.model.n_layers = 0;
    expect_hm_refused(&hm, "layers");
    /* an exit past the modules, or accuracies for other than one per module */
    float acc[4] = {0.5f, 0.6f, 0.7f, 0.8f};
    hm_init(&hm);
    hm.prov.modules = 3;
    hm.prov.exit_module = 4;
    expect_hm_refused(&hm, "provenance");
    hm_init(&hm);
    hm.prov.modules = 3;
    hm.prov.n_exit_test_accuracy = 4;
    hm.prov.exit_test_accuracy = acc;
    expect_hm_refused(&hm, "provenance");
    hm_init(&hm);
    hm.prov.modules = 3;
    hm.prov.n_exit_test_accuracy = 3;
    hm.prov.exit_test_accuracy = acc;
    hm.prov.n_exit_holdout_accuracy = 2;
    hm.prov.exit_holdout_accuracy = acc;
    expect_hm_refused(&hm, "provenance");
    hm_init(&hm);
    hm.prov.modules = 1000;
    expect_hm_refused(&hm, "provenance");
}
END_TEST

/* An input record that does not fit the net or says nothing sila can
 * use: refused, naming the file and the fault. */
START_TEST(refuse_bad_input_record)
{
    static const float bad_std[] = {0.0f, -1.0f, NAN, INFINITY, -0.0f};
    enum { NSTD = sizeof bad_std / sizeof bad_std[0] };
    for (int i = 0; i < NSTD + 9; i++) {
        struct handmade hm;
        const char *says = "std";
        hm_init(&hm);
        hm_record(&hm); /* 2 channels, 3 classes */
        switch (i - NSTD) {
        case 0:
            hm.mean[0] = NAN, says = "mean";
            break;
        case 1:
            hm.record.n_mean = 1, says = "1 means";
            break;
        case 2:
            hm.record.n_mean = hm.record.n_std = 3, says = "2 input channels";
            break;
        case 3:
            hm.record.n_std = 0, says = "0 stds";
            break;
        case 4:
            hm.record.n_class_names = 2, says = "2 class names for 3 classes";
            break;
        case 5:
            hm.names[3] = "three", hm.record.n_class_names = 4, says = "4 class names";
            break;
        case 6:
            hm.record.layout = "NHWC", says = "layout";
            break;
        case 7:
            hm.record.layout = "", says = "layout";
            break;
        case 8:
            hm.record.layout = "nchw", says = "layout";
            break;
        default:
            hm.std[1] = bad_std[i];
            break;
        }
        expect_hm_refused(&hm, says);
    }
}
END_TEST

/* An input too large to allocate activations for (2^60 floats a sample):
 * refused, and the message says why in words (not uninitialised bytes). */
START_TEST(refuse_input_too_large_to_allocate)
{
    struct handmade hm;
    hm_init(&hm);
    hm.input.c = hm.input.h = hm.input.w = 1 << 20;
    hm.specs[0].kind = SILA__LAYER_KIND__RELU;
    hm.model.n_layers = 1;
    hm.model.n_tensors = 0;
    hm.model.num_classes = 1 << 20;
    hm_write(&hm, tpath("m"));

    struct sila_model m;
    struct sila_err err;
    memset(err.msg, 0x7f, sizeof err.msg - 1); /* DEL: not printable */
    err.msg[sizeof err.msg - 1] = '\0';
    int r = sila_model_load(&m, tpath("m"), 1, &err);
    bool loaded = r == 0;
    if (loaded)
        sila_model_fini(&m);
    ck_assert_msg(!loaded && r < 0, "an input of 2^60 floats was loaded (%d)", r);
    ck_assert_ptr_null(m.net);
    ck_assert_msg(strstr(err.msg, tpath("m")), "message does not name the file");
    for (const char *p = err.msg; *p; p++)
        ck_assert_msg(*p >= 0x20 && *p < 0x7f, "message byte %d is 0x%02x: uninitialised?",
                      (int)(p - err.msg), (unsigned char)*p);
    ck_assert_msg(strstr(err.msg, "memory") || strstr(err.msg, "large"),
                  "message '%s' does not say the model is too large", err.msg);
}
END_TEST

/* The same input with max_batch 4: 4 bytes x 4 samples x 2^60 floats is
 * 2^64 bytes, which wraps to 0 in a size_t. Loading must not succeed with
 * activation buffers of 0 bytes that the first forward pass would overrun. */
START_TEST(refuse_activation_size_overflow)
{
    struct handmade hm;
    hm_init(&hm);
    hm.input.c = hm.input.h = hm.input.w = 1 << 20;
    hm.specs[0].kind = SILA__LAYER_KIND__RELU;
    hm.model.n_layers = 1;
    hm.model.n_tensors = 0;
    hm.model.num_classes = 1 << 20;
    hm_write(&hm, tpath("m"));
    expect_refused_at(__LINE__, tpath("m"), 4, 0, "");
}
END_TEST

/* Layer sizes from the file whose parameter count, times sizeof(float),
 * wraps a size_t: input (C, 1, 1), batchnorm, conv2d(d channels, kernel K,
 * pad (K-1)/2, stride 2^30, no bias), linear(d - k), linear(k), no biases.
 * C·K² ≡ -d (mod 2^62), so the conv weight's d·C·K² ≡ -d² and the whole
 * count plus one is 2C + 1 - k² (mod 2^62): a block of 58 floats for the
 * 2C = 20506 batch-norm values that come first. The file holds those
 * values (and no conv weight, which is 2^64-ish floats); loading must
 * refuse it without writing past the parameter block (run under valgrind
 * to see the writes; without it the heap is usually corrupted visibly). */
enum { OVF_C = 10253, OVF_K = 2145492957, OVF_D = 88545739, OVF_SMALL = 143 };

START_TEST(refuse_param_count_overflow)
{
    Sila__Model model = SILA__MODEL__INIT;
    Sila__Shape input = SILA__SHAPE__INIT;
    Sila__LayerSpec specs[4], *spec_ptrs[4];
    Sila__Tensor tensors[7], *tensor_ptrs[7];
    int32_t shapes[7][4] = {
        {OVF_C},
        {OVF_C},
        {OVF_C},
        {OVF_C},
        {OVF_D, OVF_C, OVF_K, OVF_K},
        {OVF_D - OVF_SMALL, OVF_D},
        {OVF_SMALL, OVF_D - OVF_SMALL},
    };
    const size_t ndims[7] = {1, 1, 1, 1, 4, 2, 2};
    static const char *const names[7] = {"0.weight", "0.bias",   "0.running_mean", "0.running_var",
                                         "1.weight", "2.weight", "3.weight"};
    float *values = malloc(sizeof *values * OVF_C);
    ck_assert_ptr_nonnull(values);
    for (int i = 0; i < OVF_C; i++)
        values[i] = 1.0f + (float)(i % 7);
    for (int i = 0; i < 4; i++) {
        sila__layer_spec__init(&specs[i]);
        spec_ptrs[i] = &specs[i];
    }
    specs[0].kind = SILA__LAYER_KIND__BATCHNORM;
    specs[0].bn_momentum = 0.1f, specs[0].bn_eps = 1e-5f;
    specs[1].kind = SILA__LAYER_KIND__CONV2D;
    specs[1].out = OVF_D, specs[1].kernel = OVF_K, specs[1].pad = (OVF_K - 1) / 2;
    specs[1].stride = 1 << 30;
    specs[2].kind = SILA__LAYER_KIND__LINEAR;
    specs[2].out = OVF_D - OVF_SMALL;
    specs[3].kind = SILA__LAYER_KIND__LINEAR;
    specs[3].out = OVF_SMALL;
    for (int i = 0; i < 7; i++) {
        sila__tensor__init(&tensors[i]);
        tensors[i].name = (char *)names[i];
        tensors[i].n_shape = ndims[i];
        tensors[i].shape = shapes[i];
        tensors[i].n_data = i < 4 ? OVF_C : 0;
        tensors[i].data = i < 4 ? values : NULL;
        tensor_ptrs[i] = &tensors[i];
    }
    input.c = OVF_C, input.h = 1, input.w = 1;
    model.format_version = SILA_MODEL_FORMAT_VERSION;
    model.input = &input;
    model.num_classes = OVF_SMALL;
    model.n_layers = 4, model.layers = spec_ptrs;
    model.n_tensors = 7, model.tensors = tensor_ptrs;

    size_t len = sila__model__get_packed_size(&model);
    uint8_t *buf = malloc(HEADER_BYTES + len);
    ck_assert_ptr_nonnull(buf);
    sila__model__pack(&model, buf + HEADER_BYTES);
    put_header(buf, SILA_MODEL_FORMAT_VERSION, buf + HEADER_BYTES, len);
    write_bytes(tpath("m"), buf, HEADER_BYTES + len);
    free(buf);
    free(values);
    expect_refused_at(__LINE__, tpath("m"), 1, 0, "");
}
END_TEST

/* ---- suite ---- */

Suite *test_suite(void)
{
    Suite *s = suite_create("modelfile");
    TCase *tc = tcase_create("modelfile");
    testdir_add_fixtures(tc);
    tcase_add_test(tc, cnn_round_trip);
    tcase_add_test(tc, mlp_round_trip);
    tcase_add_test(tc, old_file_gets_kind_values);
    tcase_add_test(tc, created_filled_in_utc_when_empty);
    tcase_add_test(tc, save_leaves_no_temporary_file);
    tcase_add_test(tc, save_replaces_existing_file);
    tcase_add_test(tc, failed_save_leaves_nothing);
    tcase_add_test(tc, refuse_missing_file);
    tcase_add_test(tc, refuse_empty_file);
    tcase_add_test(tc, refuse_directory);
    tcase_add_test(tc, handmade_model_loads);
    tcase_add_test(tc, handmade_record_loads);
    tcase_add_test(tc, long_provenance_strings_truncated);
    tcase_add_test(tc, refuse_bad_magic);
    tcase_add_test(tc, refuse_wrong_format_version);
    tcase_add_test(tc, refuse_truncated_header);
    tcase_add_test(tc, refuse_truncated_payload);
    tcase_add_test(tc, refuse_appended_byte);
    tcase_add_test(tc, refuse_checksum_mismatch);
    tcase_add_test(tc, refuse_garbage_payload);
    tcase_add_test(tc, refuse_wrong_tensor_shape);
    tcase_add_test(tc, refuse_transposed_tensor_shape);
    tcase_add_test(tc, refuse_wrong_tensor_name);
    tcase_add_test(tc, refuse_missing_or_extra_tensor);
    tcase_add_test(tc, refuse_unknown_layer_kind);
    tcase_add_test(tc, refuse_unchained_layers);
    tcase_add_test(tc, refuse_inconsistent_num_classes);
    tcase_add_test(tc, refuse_bad_model_fields);
    tcase_add_test(tc, refuse_bad_input_record);
    tcase_add_test(tc, refuse_input_too_large_to_allocate);
    tcase_add_test(tc, refuse_activation_size_overflow);
    tcase_add_test(tc, refuse_param_count_overflow);
    suite_add_tcase(s, tc);
    return s;
}
