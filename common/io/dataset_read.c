/* Reading a dataset's files (see dataset.h): IDX files, gzipped or not,
 * and CIFAR's binary batches, into a struct sila_dataset; and finding a
 * split's files by their standard names.
 *
 * The loaders trust a header only as far as the bytes behind it: an IDX
 * payload buffer grows with the data that actually arrives, a CIFAR file is
 * sized from stat(2), and counts are capped at SILA_MAX_SAMPLES. Every error
 * names the file and what is wrong with it. */
#include "dataset.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "path.h"

/* Limits on what a header may claim, far above any real dataset. */
#define MAX_SAMPLES (UINT32_C(1) << 31)
#define MAX_SIDE UINT32_C(32768)
/* First allocation of an IDX payload; it doubles as data keeps arriving. */
#define READ_CHUNK ((size_t)1 << 20)
/* Largest single gzread (its length is an unsigned int). */
#define GZ_MAX_READ (1u << 30)

#define IDX_CLASSES 10
#define IDX_SIDE 28
#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE) /* (3, 32, 32) */
#define CIFAR100_COARSE 20

/* ---- small helpers ---- */

/* *ret = a * b; false (and *ret untouched) if that overflows size_t. */
static bool mul_size(size_t a, size_t b, size_t *ret)
{
    if (b != 0 && a > SIZE_MAX / b)
        return false;
    *ret = a * b;
    return true;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reports the errno of a failed call on path; returns -e. */
static int err_errno(struct sila_err *err, int e, const char *path)
{
    return sila_err_set(err, -e, "%s: %s", path, strerror(e));
}

/* ---- reading through zlib ---- */

/* Turns the error state of gz into a report: -EIO for a system read error,
 * -EINVAL for a corrupt or cut gzip stream. */
static int gz_error(gzFile gz, const char *path, struct sila_err *err)
{
    int errnum = Z_OK;
    const char *msg = gzerror(gz, &errnum);
    if (errnum == Z_ERRNO)
        return sila_err_set(err, -EIO, "%s: read error: %s", path, strerror(errno));
    return sila_err_set(err, -EINVAL, "%s: corrupt gzip data: %s", path, msg);
}

/* Opens a regular file for reading through zlib, which passes a plain file
 * through and inflates a gzip one (told apart by content). The caller
 * gzcloses *ret_gz. Errors: the errno of open(2), -EINVAL if not a file. */
static int gz_open(const char *path, gzFile *ret_gz, struct sila_err *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_errno(err, errno, path);
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sila_err_set(err, -EINVAL, "%s: not a regular file", path);
    }
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        return sila_err_set(err, -ENOMEM, "%s: cannot start a zlib reader", path);
    }
    *ret_gz = gz;
    return 0;
}

/* Reads up to len bytes into buf; fewer only at end of file. *ret_got is
 * written on success. Errors as gz_error. */
static int gz_read_full(gzFile gz, uint8_t *buf, size_t len, size_t *ret_got, const char *path,
                        struct sila_err *err)
{
    size_t got = 0;
    while (got < len) {
        size_t want = len - got;
        int r = gzread(gz, buf + got, want > GZ_MAX_READ ? GZ_MAX_READ : (unsigned)want);
        if (r < 0)
            return gz_error(gz, path, err);
        if (r == 0)
            break;
        got += (size_t)r;
    }
    *ret_got = got;
    return 0;
}

/* Reads up to `size` bytes into a new buffer (owned by the caller; *ret_got
 * says how many arrived). Memory grows with the bytes actually read, never
 * with what a header claims, so a hostile count cannot exhaust memory. */
static int gz_read_alloc(gzFile gz, size_t size, uint8_t **ret_buf, size_t *ret_got,
                         const char *path, struct sila_err *err)
{
    uint8_t *buf = NULL;
    size_t cap = 0, got = 0, n = 0;
    int rc = 0;
    while (got == cap && cap < size) {
        size_t ncap = cap == 0 ? READ_CHUNK : (cap > size / 2 ? size : 2 * cap);
        ncap = ncap < size ? ncap : size;
        uint8_t *nbuf = realloc(buf, ncap);
        if (!nbuf) {
            rc = sila_err_set(err, -ENOMEM, "%s: out of memory for %zu bytes", path, ncap);
            goto fail;
        }
        buf = nbuf;
        cap = ncap;
        rc = gz_read_full(gz, buf + got, cap - got, &n, path, err);
        if (rc < 0)
            goto fail;
        got += n;
    }
    *ret_buf = buf;
    *ret_got = got;
    return 0;
fail:
    free(buf);
    return rc;
}

/* Checks that the file ends after `expected` bytes and that the stream
 * closed cleanly: reaching the end makes zlib verify a gzip file's CRC and
 * length, and a cut trailer shows as Z_BUF_ERROR. */
static int gz_check_end(gzFile gz, size_t expected, const char *path, struct sila_err *err)
{
    uint8_t extra;
    int errnum = Z_OK;
    int r = gzread(gz, &extra, 1);
    if (r < 0)
        return gz_error(gz, path, err);
    if (r > 0)
        return sila_err_set(err, -EINVAL,
                            "%s: trailing data after the %zu bytes its header "
                            "announces",
                            path, expected);
    gzerror(gz, &errnum);
    return errnum == Z_OK ? 0 : gz_error(gz, path, err);
}

/* ---- IDX ---- */

/* What an IDX file of one role must look like. */
struct idx_format {
    uint32_t magic; /* 0x0000 08 nd: unsigned bytes, nd dimensions */
    int ndims;
    const char *what; /* for messages: "IDX images" */
    const char *unit; /* for messages: "pixel bytes" */
};

static const struct idx_format idx_images = {0x00000803, 3, "IDX images", "pixel bytes"};
static const struct idx_format idx_labels = {0x00000801, 1, "IDX labels", "label bytes"};

/* One IDX file in memory. */
struct idx_file {
    uint32_t dims[3]; /* dims[0] is the sample count; unused ones are 1 */
    uint8_t *data;    /* product of dims bytes, owned */
};

static int idx_bad_magic(const struct idx_format *f, uint32_t magic, const char *path,
                         struct sila_err *err)
{
    if ((magic & 0xffffff00u) == (f->magic & 0xffffff00u))
        return sila_err_set(err, -EINVAL,
                            "%s: bad magic 0x%08x, expected 0x%08x (%s): "
                            "%u dimensions instead of %d",
                            path, (unsigned)magic, (unsigned)f->magic, f->what,
                            (unsigned)(magic & 0xff), f->ndims);
    return sila_err_set(err, -EINVAL, "%s: bad magic 0x%08x, expected 0x%08x (%s)", path,
                        (unsigned)magic, (unsigned)f->magic, f->what);
}

/* Refuses an empty or absurd sample count and zero or absurd image sides. */
static int idx_check_dims(const struct idx_format *f, const uint32_t *dims, const char *path,
                          struct sila_err *err)
{
    if (dims[0] == 0)
        return sila_err_set(err, -EINVAL, "%s: sample count is 0 (%s)", path, f->what);
    if (dims[0] > MAX_SAMPLES)
        return sila_err_set(err, -EINVAL, "%s: sample count %u exceeds the limit of %u", path,
                            (unsigned)dims[0], (unsigned)MAX_SAMPLES);
    for (int i = 1; i < f->ndims; i++)
        if (dims[i] == 0 || dims[i] > MAX_SIDE)
            return sila_err_set(err, -EINVAL,
                                "%s: image dimension %d is %u, expected "
                                "1..%u",
                                path, i, (unsigned)dims[i], (unsigned)MAX_SIDE);
    return 0;
}

/* Reads and checks the magic and dimensions; dims gets f->ndims values. */
static int idx_read_header(gzFile gz, const struct idx_format *f, uint32_t *dims, const char *path,
                           struct sila_err *err)
{
    uint8_t hdr[4 + 4 * 3];
    size_t len = 4 + 4 * (size_t)f->ndims, got = 0;
    int rc = gz_read_full(gz, hdr, len, &got, path, err);
    if (rc < 0)
        return rc;
    if (got >= 4 && be32(hdr) != f->magic)
        return idx_bad_magic(f, be32(hdr), path, err);
    if (got < len)
        return sila_err_set(err, -EINVAL,
                            "%s: truncated header: expected %zu bytes, got %zu "
                            "(%s)",
                            path, len, got, f->what);
    for (int i = 0; i < f->ndims; i++)
        dims[i] = be32(hdr + 4 + 4 * i);
    return idx_check_dims(f, dims, path, err);
}

/* Reads the payload of `size` bytes that follows the header, and nothing
 * more. *ret_data is owned by the caller. */
static int idx_read_payload(gzFile gz, const struct idx_format *f, size_t size, uint8_t **ret_data,
                            const char *path, struct sila_err *err)
{
    uint8_t *data = NULL;
    size_t got = 0;
    int rc = gz_read_alloc(gz, size, &data, &got, path, err);
    if (rc < 0)
        return rc;
    if (got < size)
        rc = sila_err_set(err, -EINVAL, "%s: truncated: expected %zu %s, got %zu", path, size,
                          f->unit, got);
    else
        rc = gz_check_end(gz, size, path, err);
    if (rc < 0) {
        free(data);
        return rc;
    }
    *ret_data = data;
    return 0;
}

/* Loads and checks one IDX file of format f into *ret (written on success). */
static int idx_read(const char *path, const struct idx_format *f, struct idx_file *ret,
                    struct sila_err *err)
{
    struct idx_file idx = {.dims = {1, 1, 1}};
    size_t size = 0;
    gzFile gz = NULL;
    int rc = gz_open(path, &gz, err);
    if (rc < 0)
        return rc;
    rc = idx_read_header(gz, f, idx.dims, path, err);
    if (rc == 0 &&
        !(mul_size(idx.dims[0], idx.dims[1], &size) && mul_size(size, idx.dims[2], &size)))
        rc = sila_err_set(err, -EINVAL, "%s: header sizes overflow", path);
    if (rc == 0)
        rc = idx_read_payload(gz, f, size, &idx.data, path, err);
    gzclose(gz);
    if (rc == 0)
        *ret = idx;
    return rc;
}

/* Refuses the first label >= nclasses; labels has n entries. */
static int check_labels(const uint8_t *labels, size_t n, int nclasses, const char *path,
                        struct sila_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (labels[i] >= nclasses)
            return sila_err_set(err, -EINVAL,
                                "%s: label %u of sample %zu out of range "
                                "[0, %d)",
                                path, labels[i], i, nclasses);
    return 0;
}

int sila_dataset_load_idx(struct sila_dataset *ds, const char *images_path, const char *labels_path,
                          struct sila_err *err)
{
    struct idx_file img = {.data = NULL}, lab = {.data = NULL};
    memset(ds, 0, sizeof *ds);
    int rc = idx_read(images_path, &idx_images, &img, err);
    if (rc == 0)
        rc = idx_read(labels_path, &idx_labels, &lab, err);
    if (rc == 0 && img.dims[0] != lab.dims[0])
        rc = sila_err_set(err, -EINVAL, "image count %u != label count %u (files %s and %s)",
                          (unsigned)img.dims[0], (unsigned)lab.dims[0], images_path, labels_path);
    if (rc == 0)
        rc = check_labels(lab.data, lab.dims[0], IDX_CLASSES, labels_path, err);
    if (rc < 0)
        goto fail;
    *ds = (struct sila_dataset){
        .n = img.dims[0],
        .c = 1,
        .h = (int)img.dims[1],
        .w = (int)img.dims[2],
        .nclasses = IDX_CLASSES,
        .images = img.data,
        .labels = lab.data,
    };
    return 0;
fail:
    free(img.data);
    free(lab.data);
    return rc;
}

/* ---- CIFAR ---- */

/* Bytes of label in front of each record: CIFAR-100 has coarse then fine. */
static size_t cifar_label_bytes(int nclasses)
{
    return nclasses == 100 ? 2 : 1;
}

/* Number of records in a CIFAR file, from its size, which must be a nonzero
 * multiple of rec bytes. */
static int cifar_count(const char *path, size_t rec, size_t *ret_n, struct sila_err *err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return err_errno(err, errno, path);
    if (!S_ISREG(st.st_mode))
        return sila_err_set(err, -EINVAL, "%s: not a regular file", path);
    if (st.st_size == 0)
        return sila_err_set(err, -EINVAL, "%s: empty file, expected %zu-byte records", path, rec);
    if ((uint64_t)st.st_size % rec != 0)
        return sila_err_set(err, -EINVAL,
                            "%s: size %llu is not a whole number of %zu-byte "
                            "records (partial record at the end)",
                            path, (unsigned long long)st.st_size, rec);
    *ret_n = (size_t)((uint64_t)st.st_size / rec);
    return 0;
}

/* Total record count of all files, capped at MAX_SAMPLES. */
static int cifar_count_all(const char *const *paths, int npaths, size_t rec, size_t *ret_n,
                           struct sila_err *err)
{
    size_t total = 0, n = 0;
    for (int i = 0; i < npaths; i++) {
        int rc = cifar_count(paths[i], rec, &n, err);
        if (rc < 0)
            return rc;
        if (n > MAX_SAMPLES - total)
            return sila_err_set(err, -EINVAL, "%s: more than %u records in all", paths[i],
                                (unsigned)MAX_SAMPLES);
        total += n;
    }
    *ret_n = total;
    return 0;
}

/* Checks the label bytes of record i (CIFAR-100: coarse < 20, fine < 100). */
static int cifar_check_record(const uint8_t *rec, int nclasses, size_t i, const char *path,
                              struct sila_err *err)
{
    if (nclasses == 100 && rec[0] >= CIFAR100_COARSE)
        return sila_err_set(err, -EINVAL,
                            "%s: record %zu: coarse label %u out of range "
                            "[0, %d)",
                            path, i, rec[0], CIFAR100_COARSE);
    uint8_t label = rec[cifar_label_bytes(nclasses) - 1];
    if (label >= nclasses)
        return sila_err_set(err, -EINVAL, "%s: record %zu: label %u out of range [0, %d)", path, i,
                            label, nclasses);
    return 0;
}

/* Reads the n records of one file into images (n, 3, 32, 32) and labels (n). */
static int cifar_read_file(const char *path, size_t n, int nclasses, uint8_t *images,
                           uint8_t *labels, struct sila_err *err)
{
    size_t lb = cifar_label_bytes(nclasses), rec = lb + CIFAR_PIXELS;
    uint8_t buf[2 + CIFAR_PIXELS];
    int rc = 0;
    FILE *f = fopen(path, "rbe");
    if (!f)
        return err_errno(err, errno, path);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (fread(buf, 1, rec, f) != rec)
            rc = ferror(f) ? sila_err_set(err, -EIO, "%s: read error", path)
                           : sila_err_set(err, -EINVAL,
                                          "%s: truncated at record %zu of %zu "
                                          "(file changed while loading?)",
                                          path, i, n);
        else
            rc = cifar_check_record(buf, nclasses, i, path, err);
        if (rc == 0) {
            labels[i] = buf[lb - 1];
            memcpy(images + i * CIFAR_PIXELS, buf + lb, CIFAR_PIXELS);
        }
    }
    fclose(f);
    return rc;
}

/* Reads every file in turn into images and labels, sized for `total`. */
static int cifar_read_all(const char *const *paths, int npaths, int nclasses, size_t total,
                          uint8_t *images, uint8_t *labels, struct sila_err *err)
{
    size_t rec = cifar_label_bytes(nclasses) + CIFAR_PIXELS, at = 0, n = 0;
    for (int i = 0; i < npaths; i++) {
        int rc = cifar_count(paths[i], rec, &n, err);
        if (rc == 0 && n > total - at)
            rc = sila_err_set(err, -EINVAL, "%s: grew while loading", paths[i]);
        if (rc == 0)
            rc = cifar_read_file(paths[i], n, nclasses, images + at * CIFAR_PIXELS, labels + at,
                                 err);
        if (rc < 0)
            return rc;
        at += n;
    }
    if (at != total)
        return sila_err_set(err, -EINVAL, "%s: shrank while loading", paths[npaths - 1]);
    return 0;
}

int sila_dataset_load_cifar(struct sila_dataset *ds, const char *const *paths, int npaths,
                            int nclasses, struct sila_err *err)
{
    size_t rec = cifar_label_bytes(nclasses) + CIFAR_PIXELS, total = 0, bytes;
    uint8_t *images = NULL, *labels = NULL;
    memset(ds, 0, sizeof *ds);
    if (nclasses != 10 && nclasses != 100)
        return sila_err_set(err, -EINVAL, "CIFAR: %d classes, expected 10 or 100", nclasses);
    if (!paths || npaths < 1)
        return sila_err_set(err, -EINVAL, "CIFAR: no files given");
    int rc = cifar_count_all(paths, npaths, rec, &total, err);
    if (rc < 0)
        return rc;
    if (!mul_size(total, CIFAR_PIXELS, &bytes) || !(images = malloc(bytes)) ||
        !(labels = malloc(total))) {
        rc = sila_err_set(err, -ENOMEM, "CIFAR: out of memory for %zu records", total);
        goto fail;
    }
    rc = cifar_read_all(paths, npaths, nclasses, total, images, labels, err);
    if (rc < 0)
        goto fail;
    *ds = (struct sila_dataset){
        .n = (uint32_t)total,
        .c = 3,
        .h = CIFAR_SIDE,
        .w = CIFAR_SIDE,
        .nclasses = nclasses,
        .images = images,
        .labels = labels,
    };
    return 0;
fail:
    free(images);
    free(labels);
    return rc;
}

/* ---- opening a split by its standard file names ---- */

/* Finds dir/<split>-<stem>, plain or with ".gz" (plain preferred), into buf. */
static int idx_find(char *buf, size_t len, const char *dir, const char *split, const char *stem,
                    struct sila_err *err)
{
    int n = snprintf(buf, len, "%s/%s-%s", dir, split, stem);
    if (n < 0 || (size_t)n + sizeof ".gz" > len)
        return sila_err_set(err, -ENAMETOOLONG, "%s/%s-%s: path too long", dir, split, stem);
    if (access(buf, F_OK) == 0)
        return 0;
    strcpy(buf + n, ".gz");
    if (access(buf, F_OK) == 0)
        return 0;
    buf[n] = '\0';
    return sila_err_set(err, -ENOENT, "%s[.gz]: %s", buf, strerror(ENOENT));
}

static int open_idx(struct sila_dataset *ds, enum sila_dataset_kind kind, const char *dir,
                    bool train, struct sila_err *err)
{
    char images[SILA_PATH_MAX], labels[SILA_PATH_MAX];
    const char *split = train ? "train" : "t10k";
    int rc = idx_find(images, sizeof images, dir, split, "images-idx3-ubyte", err);
    if (rc == 0)
        rc = idx_find(labels, sizeof labels, dir, split, "labels-idx1-ubyte", err);
    if (rc == 0)
        rc = sila_dataset_load_idx(ds, images, labels, err);
    if (rc < 0)
        return rc;
    if (ds->h != IDX_SIDE || ds->w != IDX_SIDE) {
        rc = sila_err_set(err, -EINVAL, "%s: images are %dx%d, expected %dx%d for %s", images,
                          ds->h, ds->w, IDX_SIDE, IDX_SIDE, sila_dataset_kind_name(kind));
        sila_dataset_fini(ds);
    }
    return rc;
}

static int open_cifar(struct sila_dataset *ds, const char *dir, const char *const *names,
                      int nnames, int nclasses, struct sila_err *err)
{
    char paths[5][SILA_PATH_MAX];
    const char *ptrs[5];
    assert(nnames <= 5);
    for (int i = 0; i < nnames; i++) {
        int rc = sila_path_join(paths[i], dir, names[i], err);
        if (rc < 0)
            return rc;
        ptrs[i] = paths[i];
    }
    return sila_dataset_load_cifar(ds, ptrs, nnames, nclasses, err);
}

static const char *const cifar10_train[] = {
    "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
    "data_batch_4.bin", "data_batch_5.bin",
};
static const char *const cifar10_test[] = {"test_batch.bin"};
static const char *const cifar100_train[] = {"train.bin"};
static const char *const cifar100_test[] = {"test.bin"};

int sila_dataset_open(struct sila_dataset *ds, enum sila_dataset_kind kind, const char *dir,
                      bool train, struct sila_err *err)
{
    memset(ds, 0, sizeof *ds);
    switch (kind) {
    case SILA_DATASET_MNIST:
    case SILA_DATASET_FMNIST:
        return open_idx(ds, kind, dir, train, err);
    case SILA_DATASET_CIFAR10:
        return train ? open_cifar(ds, dir, cifar10_train, 5, 10, err)
                     : open_cifar(ds, dir, cifar10_test, 1, 10, err);
    case SILA_DATASET_CIFAR100:
        return open_cifar(ds, dir, train ? cifar100_train : cifar100_test, 1, 100, err);
    }
    return sila_err_set(err, -EINVAL, "unknown dataset kind %d", (int)kind);
}
