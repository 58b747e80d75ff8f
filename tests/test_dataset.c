/* Tests of common/dataset: IDX and CIFAR loaders on small files written here
 * (valid ones, and every kind of broken one, each of which must fail with a
 * message naming the file and the fault), normalisation and augmentation
 * against hand-computed values, the epoch order, and the real Fashion-MNIST
 * test split installed by the dataset-fashion-mnist package. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "check_main.h"
#include "testdir.h"
#include "dataset.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define CIFAR_PIXELS 3072

/* ---- writing test files ---- */

static void write_file(const char *name, const void *data, size_t len, bool gz)
{
    if (gz) {
        gzFile f = gzopen(tpath(name), "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, data, (unsigned)len), (int)len);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(tpath(name), "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(data, 1, len, f), len);
        ck_assert_int_eq(fclose(f), 0);
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes an IDX file: magic, ndims header values, then plen payload bytes. */
static void write_idx(const char *name, bool gz, uint32_t magic, const uint32_t *dims, int ndims,
                      const uint8_t *payload, size_t plen)
{
    size_t hlen = 4 + 4 * (size_t)ndims;
    uint8_t *buf = malloc(hlen + plen);
    ck_assert_ptr_nonnull(buf);
    put_be32(buf, magic);
    for (int i = 0; i < ndims; i++)
        put_be32(buf + 4 + 4 * i, dims[i]);
    if (plen)
        memcpy(buf + hlen, payload, plen);
    write_file(name, buf, hlen + plen, gz);
    free(buf);
}

/* The reference IDX pair: 3 images of 2x3 with pixel i*6+j+1, labels 0 9 4. */
static const uint8_t ref_pixels[18] = {1,  2,  3,  4,  5,  6,  7,  8,  9,
                                       10, 11, 12, 13, 14, 15, 16, 17, 18};
static const uint8_t ref_labels[3] = {0, 9, 4};

static void write_ref_images(const char *name, bool gz)
{
    const uint32_t dims[3] = {3, 2, 3};
    write_idx(name, gz, 0x803, dims, 3, ref_pixels, sizeof ref_pixels);
}

static void write_ref_labels(const char *name, bool gz)
{
    const uint32_t dims[1] = {3};
    write_idx(name, gz, 0x801, dims, 1, ref_labels, sizeof ref_labels);
}

/* A CIFAR record: label byte(s), then pixel k = (seed + k) mod 256. */
static void cifar_record(uint8_t *rec, const uint8_t *label, size_t lb, unsigned seed)
{
    memcpy(rec, label, lb);
    for (size_t k = 0; k < CIFAR_PIXELS; k++)
        rec[lb + k] = (uint8_t)(seed + k);
}

/* Writes n CIFAR records with label bytes labels[i*lb ..] and pixel seeds
 * seed0 + i; `extra` further bytes make a partial record. */
static void write_cifar(const char *name, const uint8_t *labels, size_t lb, size_t n,
                        unsigned seed0, size_t extra)
{
    size_t rec = lb + CIFAR_PIXELS, len = n * rec + extra;
    uint8_t *buf = calloc(1, len ? len : 1);
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < n; i++)
        cifar_record(buf + i * rec, labels + i * lb, lb, seed0 + (unsigned)i);
    write_file(name, buf, len, false);
    free(buf);
}

/* ---- checking failures ---- */

static bool ds_is_zero(const struct sila_dataset *ds)
{
    static const struct sila_dataset zero;
    return memcmp(ds, &zero, sizeof zero) == 0;
}

/* Asserts that `call` (which fills ds and e) returns `code`, leaves ds
 * zeroed, and reports a message holding both `name` and `word`. */
#define ASSERT_FAILS(call, code, name, word)                                                       \
    do {                                                                                           \
        memset(&ds, 0x5a, sizeof ds);                                                              \
        e.msg[0] = '\0';                                                                           \
        int rc_ = (call);                                                                          \
        ck_assert_msg(rc_ == (code), "returned %d, expected %d (%s)", rc_, (code), e.msg);         \
        ck_assert_msg(ds_is_zero(&ds), "dataset not zeroed after failure");                        \
        ck_assert_msg(strstr(e.msg, (name)), "message \"%s\" lacks \"%s\"", e.msg, (name));        \
        ck_assert_msg(strstr(e.msg, (word)), "message \"%s\" lacks \"%s\"", e.msg, (word));        \
    } while (0)

#define LOAD_IDX(img, lab) sila_dataset_load_idx(&ds, tpath(img), tpath(lab), &e)

/* ---- kinds and default normalisation ---- */

START_TEST(kind_names_round_trip)
{
    const char *names[] = {"mnist", "fmnist", "cifar10", "cifar100"};
    enum sila_dataset_kind k;
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(sila_dataset_kind_parse(names[i], &k), 0);
        ck_assert_int_eq(k, i + 1);
        ck_assert_str_eq(sila_dataset_kind_name(k), names[i]);
    }
    k = SILA_DATASET_MNIST;
    ck_assert_int_eq(sila_dataset_kind_parse("cifar", &k), -EINVAL);
    ck_assert_int_eq(sila_dataset_kind_parse(NULL, &k), -EINVAL);
    ck_assert_int_eq(k, SILA_DATASET_MNIST);
    ck_assert_str_eq(sila_dataset_kind_name((enum sila_dataset_kind)99), "unknown");
}
END_TEST

START_TEST(default_norm_values)
{
    struct sila_norm m = sila_dataset_default_norm(SILA_DATASET_MNIST);
    struct sila_norm f = sila_dataset_default_norm(SILA_DATASET_FMNIST);
    struct sila_norm c10 = sila_dataset_default_norm(SILA_DATASET_CIFAR10);
    struct sila_norm c100 = sila_dataset_default_norm(SILA_DATASET_CIFAR100);
    ck_assert_float_eq(m.mean[0], 0.1307f);
    ck_assert_float_eq(m.std[0], 0.3081f);
    ck_assert_float_eq(f.mean[0], 0.2860f);
    ck_assert_float_eq(f.std[0], 0.3530f);
    ck_assert_float_eq(c10.mean[2], 0.4465f);
    ck_assert_float_eq(c10.std[1], 0.2435f);
    ck_assert_float_eq(c100.mean[1], 0.4865f);
    ck_assert_float_eq(c100.std[2], 0.2762f);
}
END_TEST

/* ---- valid IDX files ---- */

static void check_ref_idx(const struct sila_dataset *ds)
{
    ck_assert_uint_eq(ds->n, 3);
    ck_assert_int_eq(ds->c, 1);
    ck_assert_int_eq(ds->h, 2);
    ck_assert_int_eq(ds->w, 3);
    ck_assert_int_eq(ds->nclasses, 10);
    ck_assert_mem_eq(ds->images, ref_pixels, sizeof ref_pixels);
    ck_assert_mem_eq(ds->labels, ref_labels, sizeof ref_labels);
}

START_TEST(idx_plain)
{
    struct sila_dataset ds;
    struct sila_err e = {""};
    write_ref_images("img", false);
    write_ref_labels("lab", false);
    ck_assert_int_eq(LOAD_IDX("img", "lab"), 0);
    check_ref_idx(&ds);
    sila_dataset_fini(&ds);
    ck_assert(ds_is_zero(&ds));
    sila_dataset_fini(&ds);
}
END_TEST

START_TEST(idx_gzip)
{
    struct sila_dataset ds;
    struct sila_err e = {""};
    write_ref_images("img.gz", true);
    write_ref_labels("lab", false);
    ck_assert_int_eq(LOAD_IDX("img.gz", "lab"), 0);
    check_ref_idx(&ds);
    sila_dataset_fini(&ds);
    write_ref_labels("lab.gz", true);
    ck_assert_int_eq(LOAD_IDX("img.gz", "lab.gz"), 0);
    check_ref_idx(&ds);
    sila_dataset_fini(&ds);
}
END_TEST

/* ---- broken IDX files ---- */

START_TEST(idx_missing_file)
{
    struct sila_dataset ds;
    struct sila_err e;
    write_ref_labels("lab", false);
    ASSERT_FAILS(LOAD_IDX("nope-images", "lab"), -ENOENT, "nope-images", "No such file");
    write_ref_images("img", false);
    ASSERT_FAILS(LOAD_IDX("img", "nope-labels"), -ENOENT, "nope-labels", "No such file");
}
END_TEST

START_TEST(idx_truncated_images)
{
    struct sila_dataset ds;
    struct sila_err e;
    const uint32_t dims[3] = {3, 2, 3};
    write_idx("img", false, 0x803, dims, 3, ref_pixels, 17);
    write_ref_labels("lab", false);
    ASSERT_FAILS(LOAD_IDX("img", "lab"), -EINVAL, "img", "truncated");
    ck_assert_ptr_nonnull(strstr(e.msg, "expected 18 pixel bytes, got 17"));
    write_idx("img.gz", true, 0x803, dims, 3, ref_pixels, 5);
    ASSERT_FAILS(LOAD_IDX("img.gz", "lab"), -EINVAL, "img.gz", "truncated");
}
END_TEST

START_TEST(idx_truncated_labels)
{
    struct sila_dataset ds;
    struct sila_err e;
    const uint32_t dims[1] = {3};
    write_ref_images("img", false);
    write_idx("lab", false, 0x801, dims, 1, ref_labels, 2);
    ASSERT_FAILS(LOAD_IDX("img", "lab"), -EINVAL, "lab", "truncated");
    ck_assert_ptr_nonnull(strstr(e.msg, "expected 3 label bytes, got 2"));
}
END_TEST

START_TEST(idx_truncated_header)
{
    struct sila_dataset ds;
    struct sila_err e;
    const uint8_t part[6] = {0, 0, 8, 3, 0, 0};
    write_file("img", part, sizeof part, false);
    write_ref_labels("lab", false);
    ASSERT_FAILS(LOAD_IDX("img", "lab"), -EINVAL, "img", "truncated header");
    write_file("empty", "", 0, false);
    ASSERT_FAILS(LOAD_IDX("empty", "lab"), -EINVAL, "empty", "truncated header");
}
END_TEST

START_TEST(idx_bad_magic)
{
    struct sila_dataset ds;
    struct sila_err e;
    const uint32_t dims[3] = {3, 2, 3};
    write_idx("img", false, 0x00000903, dims, 3, ref_pixels, sizeof ref_pixels);
    write_ref_labels("lab", false);
    ASSERT_FAILS(LOAD_IDX("img", "lab"), -EINVAL, "img", "bad magic 0x00000903");
    ck_assert_ptr_nonnull(strstr(e.msg, "expected 0x00000803"));
    /* the two files swapped */
    write_ref_images("img", false);
    ASSERT_FAILS(LOAD_IDX("lab", "img"), -EINVAL, "lab", "magic");
}
END_TEST

START_TEST(idx_wrong_dimensions)
{
    struct sila_dataset ds;
    struct sila_err e;
    const uint32_t dims[3] = {3, 1, 1};
    write_ref_images("img", false);
    write_idx("lab", false, 0x803, dims, 3, ref_labels, 3);
    ASSERT_FAILS(LOAD_IDX("img", "lab"), -EINVAL, "lab", "3 dimensions instead of 1");
    const uint32_t flat[3] = {3, 0, 6};
    write_idx("img0", false, 0x803, flat, 3, ref_pixels, 0);
    ASSERT_FAILS(LOAD_IDX("img0", "lab"), -EINVAL, "img0", "dimension 1 is 0");
}
END_TEST

START_TEST(idx_count_mismatch)
{
    struct sila_dataset ds;
    struct sila_err e;
    const uint32_t dims[1] = {2};
    write_ref_images("img", false);
    write_idx("lab2", false, 0x801, dims, 1, ref_labels, 2);
    ASSERT_FAILS(LOAD_IDX("img", "lab2"), -EINVAL, "image count 3 != label count 2", "img");
    ck_assert_ptr_nonnull(strstr(e.msg, "lab2"));
}
END_TEST

START_TEST(idx_label_out_of_range)
{
    struct sila_dataset ds;
    struct sila_err e;
    const uint32_t dims[1] = {3};
    const uint8_t bad[3] = {1, 2, 10};
    write_ref_images("img", false);
    write_idx("lab", false, 0x801, dims, 1, bad, 3);
    ASSERT_FAILS(LOAD_IDX("img", "lab"), -EINVAL, "lab", "out of range");
    ck_assert_ptr_nonnull(strstr(e.msg, "label 10 of sample 2"));
}
END_TEST

/* Headers claiming absurd sizes must fail cleanly, without allocating for
 * the claim (valgrind runs of this test would show a huge allocation). */
START_TEST(idx_hostile_counts)
{
    struct sila_dataset ds;
    struct sila_err e;
    const uint32_t huge[3] = {0x80000000u, 28, 28};
    const uint32_t over[3] = {0xffffffffu, 28, 28};
    const uint32_t zero[3] = {0, 28, 28};
    const uint32_t wide[3] = {1, 0xffffffffu, 0xffffffffu};
    write_ref_labels("lab", false);
    write_idx("huge", false, 0x803, huge, 3, ref_pixels, sizeof ref_pixels);
    ASSERT_FAILS(LOAD_IDX("huge", "lab"), -EINVAL, "huge", "truncated");
    write_idx("huge.gz", true, 0x803, huge, 3, ref_pixels, sizeof ref_pixels);
    ASSERT_FAILS(LOAD_IDX("huge.gz", "lab"), -EINVAL, "huge.gz", "truncated");
    write_idx("over", false, 0x803, over, 3, ref_pixels, sizeof ref_pixels);
    ASSERT_FAILS(LOAD_IDX("over", "lab"), -EINVAL, "over", "limit");
    write_idx("zero", false, 0x803, zero, 3, NULL, 0);
    ASSERT_FAILS(LOAD_IDX("zero", "lab"), -EINVAL, "zero", "count is 0");
    write_idx("wide", false, 0x803, wide, 3, ref_pixels, sizeof ref_pixels);
    ASSERT_FAILS(LOAD_IDX("wide", "lab"), -EINVAL, "wide", "dimension");
}
END_TEST

START_TEST(idx_trailing_data)
{
    struct sila_dataset ds;
    struct sila_err e;
    const uint32_t dims[3] = {2, 2, 3};
    write_idx("img", false, 0x803, dims, 3, ref_pixels, sizeof ref_pixels);
    write_ref_labels("lab", false);
    ASSERT_FAILS(LOAD_IDX("img", "lab"), -EINVAL, "img", "trailing data");
}
END_TEST

/* A gzip file whose CRC is wrong, or whose trailer is cut, is corrupt even
 * though every payload byte inflates. */
START_TEST(idx_corrupt_gzip)
{
    struct sila_dataset ds;
    struct sila_err e;
    uint8_t buf[256];
    write_ref_images("img.gz", true);
    write_ref_labels("lab", false);
    FILE *f = fopen(tpath("img.gz"), "rb");
    ck_assert_ptr_nonnull(f);
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_uint_gt(len, 8);
    buf[len - 8] ^= 0xff; /* first CRC32 byte */
    write_file("crc.gz", buf, len, false);
    ASSERT_FAILS(LOAD_IDX("crc.gz", "lab"), -EINVAL, "crc.gz", "corrupt gzip");
    buf[len - 8] ^= 0xff;
    write_file("cut.gz", buf, len - 4, false);
    ASSERT_FAILS(LOAD_IDX("cut.gz", "lab"), -EINVAL, "cut.gz", "corrupt gzip");
}
END_TEST

START_TEST(idx_directory_refused)
{
    struct sila_dataset ds;
    struct sila_err e;
    write_ref_labels("lab", false);
    ASSERT_FAILS(sila_dataset_load_idx(&ds, tmpdir, tpath("lab"), &e), -EINVAL, tmpdir,
                 "not a regular file");
}
END_TEST

/* ---- CIFAR ---- */

START_TEST(cifar10_two_files)
{
    struct sila_dataset ds;
    struct sila_err e = {""};
    const uint8_t la[2] = {3, 9}, lb[1] = {0};
    uint8_t rec[1 + CIFAR_PIXELS];
    write_cifar("a.bin", la, 1, 2, 10, 0);
    write_cifar("b.bin", lb, 1, 1, 200, 0);
    const char *paths[2] = {tpath("a.bin"), tpath("b.bin")};
    ck_assert_int_eq(sila_dataset_load_cifar(&ds, paths, 2, 10, &e), 0);
    ck_assert_uint_eq(ds.n, 3);
    ck_assert_int_eq(ds.c, 3);
    ck_assert_int_eq(ds.h, 32);
    ck_assert_int_eq(ds.w, 32);
    ck_assert_int_eq(ds.nclasses, 10);
    ck_assert_mem_eq(ds.labels, ((uint8_t[]){3, 9, 0}), 3);
    cifar_record(rec, la, 1, 11);
    ck_assert_mem_eq(ds.images + CIFAR_PIXELS, rec + 1, CIFAR_PIXELS);
    cifar_record(rec, lb, 1, 200);
    ck_assert_mem_eq(ds.images + 2 * CIFAR_PIXELS, rec + 1, CIFAR_PIXELS);
    sila_dataset_fini(&ds);
}
END_TEST

START_TEST(cifar100_fine_labels)
{
    struct sila_dataset ds;
    struct sila_err e = {""};
    const uint8_t labels[4] = {19, 99, 4, 57}; /* (coarse, fine) pairs */
    uint8_t rec[2 + CIFAR_PIXELS];
    write_cifar("train.bin", labels, 2, 2, 7, 0);
    const char *paths[1] = {tpath("train.bin")};
    ck_assert_int_eq(sila_dataset_load_cifar(&ds, paths, 1, 100, &e), 0);
    ck_assert_uint_eq(ds.n, 2);
    ck_assert_int_eq(ds.nclasses, 100);
    ck_assert_uint_eq(ds.labels[0], 99);
    ck_assert_uint_eq(ds.labels[1], 57);
    cifar_record(rec, labels + 2, 2, 8);
    ck_assert_mem_eq(ds.images + CIFAR_PIXELS, rec + 2, CIFAR_PIXELS);
    sila_dataset_fini(&ds);
}
END_TEST

START_TEST(cifar_bad_files)
{
    struct sila_dataset ds;
    struct sila_err e;
    const uint8_t ok[2] = {1, 2}, bad10[2] = {1, 10}, bad100[4] = {1, 5, 20, 5};
    char okp[512], other[512];
    const char *p[2] = {okp, other};
    snprintf(okp, sizeof okp, "%s", tpath("ok.bin"));
    write_cifar("ok.bin", ok, 1, 2, 0, 0);
    write_cifar("partial.bin", ok, 1, 1, 0, 100);
    write_cifar("empty.bin", ok, 1, 0, 0, 0);
    write_cifar("bad10.bin", bad10, 1, 2, 0, 0);
    write_cifar("bad100.bin", bad100, 2, 2, 0, 0);
    snprintf(other, sizeof other, "%s", tpath("partial.bin"));
    ASSERT_FAILS(sila_dataset_load_cifar(&ds, p, 2, 10, &e), -EINVAL, "partial.bin",
                 "partial record");
    snprintf(other, sizeof other, "%s", tpath("empty.bin"));
    ASSERT_FAILS(sila_dataset_load_cifar(&ds, p, 2, 10, &e), -EINVAL, "empty.bin", "empty");
    snprintf(other, sizeof other, "%s", tpath("missing.bin"));
    ASSERT_FAILS(sila_dataset_load_cifar(&ds, p, 2, 10, &e), -ENOENT, "missing.bin",
                 "No such file");
    snprintf(other, sizeof other, "%s", tpath("bad10.bin"));
    ASSERT_FAILS(sila_dataset_load_cifar(&ds, p, 2, 10, &e), -EINVAL, "bad10.bin",
                 "record 1: label 10 out of range");
    snprintf(other, sizeof other, "%s", tpath("bad100.bin"));
    ASSERT_FAILS(sila_dataset_load_cifar(&ds, p + 1, 1, 100, &e), -EINVAL, "bad100.bin",
                 "record 1: coarse label 20 out of range");
    /* a CIFAR-10 file read as CIFAR-100: 2 x 3073 bytes is no multiple of 3074 */
    ASSERT_FAILS(sila_dataset_load_cifar(&ds, p, 1, 100, &e), -EINVAL, "ok.bin",
                 "3074-byte records");
    ASSERT_FAILS(sila_dataset_load_cifar(&ds, p, 1, 7, &e), -EINVAL, "CIFAR", "7 classes");
    ASSERT_FAILS(sila_dataset_load_cifar(&ds, p, 0, 10, &e), -EINVAL, "CIFAR", "no files");
}
END_TEST

/* ---- opening splits by standard names ---- */

START_TEST(open_mnist_names)
{
    struct sila_dataset ds;
    struct sila_err e = {""};
    uint8_t pix[2 * 28 * 28];
    const uint8_t lab[2] = {7, 1};
    const uint32_t dims[3] = {2, 28, 28};
    for (size_t i = 0; i < sizeof pix; i++)
        pix[i] = (uint8_t)(i * 7);
    write_idx("t10k-images-idx3-ubyte.gz", true, 0x803, dims, 3, pix, sizeof pix);
    write_idx("t10k-labels-idx1-ubyte", false, 0x801, dims, 1, lab, 2);
    ck_assert_int_eq(sila_dataset_open(&ds, SILA_DATASET_MNIST, tmpdir, false, &e), 0);
    ck_assert_uint_eq(ds.n, 2);
    ck_assert_int_eq(ds.h, 28);
    ck_assert_mem_eq(ds.images, pix, sizeof pix);
    ck_assert_uint_eq(ds.labels[0], 7);
    sila_dataset_fini(&ds);
    ASSERT_FAILS(sila_dataset_open(&ds, SILA_DATASET_MNIST, tmpdir, true, &e), -ENOENT,
                 "train-images-idx3-ubyte", tmpdir);
}
END_TEST

START_TEST(open_idx_wrong_shape)
{
    struct sila_dataset ds;
    struct sila_err e;
    write_ref_images("train-images-idx3-ubyte", false);
    write_ref_labels("train-labels-idx1-ubyte", false);
    ASSERT_FAILS(sila_dataset_open(&ds, SILA_DATASET_FMNIST, tmpdir, true, &e), -EINVAL,
                 "train-images-idx3-ubyte", "images are 2x3, expected 28x28 for fmnist");
    ASSERT_FAILS(sila_dataset_open(&ds, (enum sila_dataset_kind)0, tmpdir, true, &e), -EINVAL,
                 "kind", "unknown");
}
END_TEST

START_TEST(open_cifar_names)
{
    struct sila_dataset ds;
    struct sila_err e = {""};
    const uint8_t l10[1] = {4}, l100[2] = {3, 42};
    char name[32];
    for (int i = 1; i <= 5; i++) {
        snprintf(name, sizeof name, "data_batch_%d.bin", i);
        write_cifar(name, l10, 1, 1, (unsigned)i, 0);
    }
    write_cifar("test_batch.bin", l10, 1, 1, 0, 0);
    write_cifar("test.bin", l100, 2, 1, 0, 0);
    ck_assert_int_eq(sila_dataset_open(&ds, SILA_DATASET_CIFAR10, tmpdir, true, &e), 0);
    ck_assert_uint_eq(ds.n, 5);
    ck_assert_uint_eq(ds.images[4 * CIFAR_PIXELS], 5); /* seed of data_batch_5 */
    sila_dataset_fini(&ds);
    ck_assert_int_eq(sila_dataset_open(&ds, SILA_DATASET_CIFAR10, tmpdir, false, &e), 0);
    ck_assert_uint_eq(ds.n, 1);
    sila_dataset_fini(&ds);
    ck_assert_int_eq(sila_dataset_open(&ds, SILA_DATASET_CIFAR100, tmpdir, false, &e), 0);
    ck_assert_uint_eq(ds.labels[0], 42);
    sila_dataset_fini(&ds);
    ASSERT_FAILS(sila_dataset_open(&ds, SILA_DATASET_CIFAR100, tmpdir, true, &e), -ENOENT,
                 "train.bin", "No such file");
    ck_assert_int_eq(unlink(tpath("data_batch_3.bin")), 0);
    ASSERT_FAILS(sila_dataset_open(&ds, SILA_DATASET_CIFAR10, tmpdir, true, &e), -ENOENT,
                 "data_batch_3.bin", "No such file");
}
END_TEST

/* ---- batches ---- */

/* A dataset over caller-owned arrays (never passed to fini). */
static struct sila_dataset view_of(uint8_t *images, uint8_t *labels, uint32_t n, int c, int h,
                                   int w)
{
    return (struct sila_dataset){n, c, h, w, 10, images, labels};
}

START_TEST(batch_normalises)
{
    uint8_t gray[3] = {0, 51, 255}, rgb[3] = {255, 0, 102}, lab[1] = {6};
    struct sila_dataset g = view_of(gray, lab, 1, 1, 1, 3), c = view_of(rgb, lab, 1, 3, 1, 1);
    struct sila_norm ng = {{0.5f, 0, 0}, {0.25f, 1, 1}};
    struct sila_norm nc = {{0.5f, 0.25f, 0.4f}, {0.5f, 0.25f, 0.2f}};
    const uint32_t idx[1] = {0};
    float x[3];
    int32_t y[1] = {-1};
    /* by hand: (0 - .5)/.25 = -2, (.2 - .5)/.25 = -1.2, (1 - .5)/.25 = 2 */
    sila_dataset_batch(&g, idx, 1, &ng, NULL, NULL, x, y);
    ck_assert_float_eq_tol(x[0], -2.0f, 1e-5f);
    ck_assert_float_eq_tol(x[1], -1.2f, 1e-5f);
    ck_assert_float_eq_tol(x[2], 2.0f, 1e-5f);
    ck_assert_int_eq(y[0], 6);
    /* per channel: (1 - .5)/.5 = 1, (0 - .25)/.25 = -1, (.4 - .4)/.2 = 0 */
    sila_dataset_batch(&c, idx, 1, &nc, NULL, NULL, x, y);
    ck_assert_float_eq_tol(x[0], 1.0f, 1e-5f);
    ck_assert_float_eq_tol(x[1], -1.0f, 1e-5f);
    ck_assert_float_eq_tol(x[2], 0.0f, 1e-5f);
}
END_TEST

/* The 3x3 image 1..9 (row-major) used by the literal crop/flip cases. */
static uint8_t nine[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const struct sila_norm unit_norm = {{0, 0, 0}, {1, 1, 1}};

/* First seed whose stream draws `n` values below[i] equal to want[i]. */
static uint64_t seed_drawing(const uint32_t *below, const uint32_t *want, int n)
{
    for (uint64_t seed = 0; seed < 100000; seed++) {
        struct sila_rng r;
        int i = 0;
        sila_rng_seed(&r, seed, 1);
        while (i < n && sila_rng_below(&r, below[i]) == want[i])
            i++;
        if (i == n)
            return seed;
    }
    ck_abort_msg("no seed draws the wanted values");
    return 0;
}

/* Runs one augmented sample of `nine` from an rng seeded (seed, 1), checks
 * x * 255 against want (3x3) and that exactly `ndraws` draws were made. */
static void check_nine(const struct sila_augment *aug, uint64_t seed, int ndraws,
                       const uint32_t *below, const float *want)
{
    uint8_t lab[1] = {0};
    struct sila_dataset ds = view_of(nine, lab, 1, 1, 3, 3);
    struct sila_rng r, predict;
    const uint32_t idx[1] = {0};
    float x[9];
    int32_t y[1];
    sila_rng_seed(&r, seed, 1);
    sila_rng_seed(&predict, seed, 1);
    sila_dataset_batch(&ds, idx, 1, &unit_norm, aug, &r, x, y);
    for (int i = 0; i < 9; i++)
        ck_assert_msg(x[i] * 255.0f > want[i] - 1e-3f && x[i] * 255.0f < want[i] + 1e-3f,
                      "pixel %d: got %g, expected %g", i, x[i] * 255.0f, want[i]);
    for (int i = 0; i < ndraws; i++)
        sila_rng_below(&predict, below[i]);
    ck_assert_mem_eq(&r, &predict, sizeof r);
}

/* pad 1, window at (0, 2) of the padded 5x5, then mirrored: by hand. */
START_TEST(crop_flip_by_hand)
{
    const struct sila_augment aug = {1, true};
    const uint32_t below[3] = {3, 3, 2}, want[3] = {0, 2, 1};
    const float out[9] = {0, 0, 0, 0, 3, 2, 0, 6, 5};
    check_nine(&aug, seed_drawing(below, want, 3), 3, below, out);
}
END_TEST

/* pad 1, window at (2, 1) (one row down), no flip. */
START_TEST(crop_no_flip_by_hand)
{
    const struct sila_augment aug = {1, true};
    const uint32_t below[3] = {3, 3, 2}, want[3] = {2, 1, 0};
    const float out[9] = {4, 5, 6, 7, 8, 9, 0, 0, 0};
    check_nine(&aug, seed_drawing(below, want, 3), 3, below, out);
}
END_TEST

/* No crop: the only draw is the flip. */
START_TEST(flip_only_by_hand)
{
    const struct sila_augment aug = {0, true};
    const uint32_t below[1] = {2}, want[1] = {1};
    const float out[9] = {3, 2, 1, 6, 5, 4, 9, 8, 7};
    check_nine(&aug, seed_drawing(below, want, 1), 1, below, out);
}
END_TEST

/* Crop without flip: pad 2, window at (4, 0), two rows down, two left. */
START_TEST(crop_only_by_hand)
{
    const struct sila_augment aug = {2, false};
    const uint32_t below[2] = {5, 5}, want[2] = {4, 0};
    const float out[9] = {0, 0, 7, 0, 0, 0, 0, 0, 0};
    check_nine(&aug, seed_drawing(below, want, 2), 2, below, out);
}
END_TEST

/* Reference augmentation written the way torchvision composes it: build the
 * zero-padded image, cut the window at (wy, wx), then mirror the window.
 * in (c, h, w) -> out (c, h, w) as normalised doubles. */
static void reference_sample(double *out, const uint8_t *in, int c, int h, int w, int pad, int wy,
                             int wx, bool flip, const struct sila_norm *norm)
{
    int ph = h + 2 * pad, pw = w + 2 * pad;
    uint8_t *padded = calloc((size_t)c * ph * pw, 1);
    ck_assert_ptr_nonnull(padded);
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            memcpy(padded + ((size_t)ch * ph + y + pad) * pw + pad, in + ((size_t)ch * h + y) * w,
                   (size_t)w);
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                uint8_t p = padded[((size_t)ch * ph + wy + y) * pw + wx + x];
                int ox = flip ? w - 1 - x : x;
                out[((size_t)ch * h + y) * w + ox] =
                    ((double)p / 255.0 - norm->mean[ch]) / norm->std[ch];
            }
    free(padded);
}

START_TEST(batch_augment_matches_reference)
{
    enum { N = 4, C = 3, H = 5, W = 4, B = 6, PAD = 2, S = C * H * W };
    uint8_t images[N * S], labels[N] = {1, 2, 3, 4};
    const uint32_t idx[B] = {3, 0, 2, 2, 1, 3};
    const struct sila_norm norm = sila_dataset_default_norm(SILA_DATASET_CIFAR10);
    const struct sila_augment aug = {PAD, true};
    struct sila_rng r, predict, fill;
    float x[B * S];
    double want[S];
    int32_t y[B];
    sila_rng_seed(&fill, 42, 9);
    for (int i = 0; i < N * S; i++)
        images[i] = (uint8_t)(1 + sila_rng_below(&fill, 255));
    struct sila_dataset ds = view_of(images, labels, N, C, H, W);
    sila_rng_seed(&r, 1234, 5);
    predict = r;
    sila_dataset_batch(&ds, idx, B, &norm, &aug, &r, x, y);
    for (int b = 0; b < B; b++) {
        int wy = (int)sila_rng_below(&predict, 2 * PAD + 1);
        int wx = (int)sila_rng_below(&predict, 2 * PAD + 1);
        bool flip = sila_rng_below(&predict, 2) == 1;
        reference_sample(want, images + idx[b] * S, C, H, W, PAD, wy, wx, flip, &norm);
        for (int i = 0; i < S; i++)
            ck_assert_msg(fabs(x[b * S + i] - want[i]) < 1e-5, "sample %d value %d: %g != %g", b, i,
                          x[b * S + i], want[i]);
        ck_assert_int_eq(y[b], labels[idx[b]]);
    }
    ck_assert_mem_eq(&r, &predict, sizeof r);
}
END_TEST

START_TEST(batch_without_augment_draws_nothing)
{
    uint8_t lab[1] = {0};
    struct sila_dataset ds = view_of(nine, lab, 1, 1, 3, 3);
    const struct sila_augment none = {0, false};
    const uint32_t idx[2] = {0, 0};
    struct sila_rng r, before;
    float x[18];
    int32_t y[2];
    sila_rng_seed(&r, 7, 7);
    before = r;
    sila_dataset_batch(&ds, idx, 2, &unit_norm, &none, &r, x, y);
    ck_assert_mem_eq(&r, &before, sizeof r);
    sila_dataset_batch(&ds, idx, 2, &unit_norm, NULL, &r, x, y);
    ck_assert_mem_eq(&r, &before, sizeof r);
    for (int i = 0; i < 18; i++)
        ck_assert_float_eq_tol(x[i] * 255.0f, (float)nine[i % 9], 1e-3f);
}
END_TEST

/* ---- epoch order ---- */

static bool is_permutation(const uint32_t *perm, uint32_t n)
{
    bool ok = true;
    uint8_t *seen = calloc(n, 1);
    ck_assert_ptr_nonnull(seen);
    for (uint32_t i = 0; i < n && ok; i++) {
        ok = perm[i] < n && !seen[perm[i]];
        if (ok)
            seen[perm[i]] = 1;
    }
    free(seen);
    return ok;
}

START_TEST(epoch_order_permutation)
{
    enum { N = 1000 };
    static uint32_t a[N], b[N], c[N], d[N];
    uint32_t moved = 0;
    sila_dataset_epoch_order(a, N, 17, 3);
    sila_dataset_epoch_order(b, N, 17, 3);
    sila_dataset_epoch_order(c, N, 17, 4);
    sila_dataset_epoch_order(d, N, 18, 3);
    ck_assert(is_permutation(a, N));
    ck_assert(is_permutation(c, N));
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert(memcmp(a, c, sizeof a) != 0);
    ck_assert(memcmp(a, d, sizeof a) != 0);
    for (uint32_t i = 0; i < N; i++)
        moved += a[i] != i;
    ck_assert_uint_gt(moved, N / 2);
    sila_dataset_epoch_order(a, 1, 17, 3);
    ck_assert_uint_eq(a[0], 0);
    sila_dataset_epoch_order(NULL, 0, 17, 3);
}
END_TEST

/* The documented stream (seed, 0x5eed0000 + epoch) is what a resumed run
 * relies on: pin it. */
START_TEST(epoch_order_documented_stream)
{
    enum { N = 257 };
    uint32_t got[N], want[N];
    struct sila_rng r;
    for (uint32_t i = 0; i < N; i++)
        want[i] = i;
    sila_rng_seed(&r, 99, 0x5eed0000 + 12);
    sila_rng_shuffle(&r, want, N);
    sila_dataset_epoch_order(got, N, 99, 12);
    ck_assert_mem_eq(got, want, sizeof got);
}
END_TEST

/* ---- the real Fashion-MNIST test split ---- */

START_TEST(fashion_mnist_test_split)
{
    struct sila_dataset ds;
    struct sila_err e = {""};
    struct stat st;
    uint32_t per_class[10] = {0};
    ck_assert_msg(stat(FMNIST_DIR, &st) == 0 && S_ISDIR(st.st_mode),
                  "%s missing: install the package dataset-fashion-mnist (the project's "
                  "setup script does)",
                  FMNIST_DIR);
    int rc = sila_dataset_open(&ds, SILA_DATASET_FMNIST, FMNIST_DIR, false, &e);
    ck_assert_msg(rc == 0, "open failed (%d): %s", rc, e.msg);
    ck_assert_uint_eq(ds.n, 10000);
    ck_assert_int_eq(ds.c, 1);
    ck_assert_int_eq(ds.h, 28);
    ck_assert_int_eq(ds.w, 28);
    ck_assert_int_eq(ds.nclasses, 10);
    for (uint32_t i = 0; i < ds.n; i++)
        per_class[ds.labels[i]]++;
    for (int k = 0; k < 10; k++)
        ck_assert_msg(per_class[k] == 1000, "class %d has %u samples", k, per_class[k]);
    sila_dataset_fini(&ds);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("dataset");
    TCase *files = tcase_create("files");
    TCase *pure = tcase_create("pure");
    testdir_add_fixtures(files);
    tcase_add_test(pure, kind_names_round_trip);
    tcase_add_test(pure, default_norm_values);
    tcase_add_test(files, idx_plain);
    tcase_add_test(files, idx_gzip);
    tcase_add_test(files, idx_missing_file);
    tcase_add_test(files, idx_truncated_images);
    tcase_add_test(files, idx_truncated_labels);
    tcase_add_test(files, idx_truncated_header);
    tcase_add_test(files, idx_bad_magic);
    tcase_add_test(files, idx_wrong_dimensions);
    tcase_add_test(files, idx_count_mismatch);
    tcase_add_test(files, idx_label_out_of_range);
    tcase_add_test(files, idx_hostile_counts);
    tcase_add_test(files, idx_trailing_data);
    tcase_add_test(files, idx_corrupt_gzip);
    tcase_add_test(files, idx_directory_refused);
    tcase_add_test(files, cifar10_two_files);
    tcase_add_test(files, cifar100_fine_labels);
    tcase_add_test(files, cifar_bad_files);
    tcase_add_test(files, open_mnist_names);
    tcase_add_test(files, open_idx_wrong_shape);
    tcase_add_test(files, open_cifar_names);
    tcase_add_test(pure, batch_normalises);
    tcase_add_test(pure, crop_flip_by_hand);
    tcase_add_test(pure, crop_no_flip_by_hand);
    tcase_add_test(pure, flip_only_by_hand);
    tcase_add_test(pure, crop_only_by_hand);
    tcase_add_test(pure, batch_augment_matches_reference);
    tcase_add_test(pure, batch_without_augment_draws_nothing);
    tcase_add_test(pure, epoch_order_permutation);
    tcase_add_test(pure, epoch_order_documented_stream);
    tcase_add_test(pure, fashion_mnist_test_split);
    suite_add_tcase(s, pure);
    suite_add_tcase(s, files);
    return s;
}
