/* Datasets: loading, normalisation, augmentation and data order.
 *
 * A dataset is held in memory as uint8 pixels (N, C, H, W) and uint8 labels;
 * batches are produced as normalised float32 (B, C, H, W) with int32 labels.
 * Loaders check every file thoroughly (existence, magic, sizes, counts) and
 * report problems through struct sila_err naming the file; they never crash
 * on bad input. */
#ifndef SILA_DATASET_H
#define SILA_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"

enum sila_dataset_kind {
    SILA_DATASET_MNIST = 1,   /* IDX files, 28x28x1, 10 classes */
    SILA_DATASET_FMNIST = 2,  /* IDX files, same format as MNIST */
    SILA_DATASET_CIFAR10 = 3, /* CIFAR-10 binary version, 32x32x3 */
    SILA_DATASET_CIFAR100 = 4 /* CIFAR-100 binary version, fine labels */
};

struct sila_dataset {
    uint32_t n;  /* number of samples */
    int c, h, w; /* per-sample shape */
    int nclasses;
    uint8_t *images; /* (n, c, h, w), owned */
    uint8_t *labels; /* (n), each < nclasses, owned */
};

/* Name of a kind ("mnist", "fmnist", "cifar10", "cifar100") and back.
 * sila_dataset_kind_parse returns 0 or -EINVAL. */
const char *sila_dataset_kind_name(enum sila_dataset_kind kind);
int sila_dataset_kind_parse(const char *name, enum sila_dataset_kind *ret_kind);

/* Loads an IDX pair (images: magic 0x00000803, labels: 0x00000801), each
 * file plain or gzip-compressed (detected from its content). Errors:
 * -ENOENT (missing), -EINVAL (bad magic, truncated, count mismatch, label out
 * of range, wrong dimensions). On failure ds is left zeroed. */
int sila_dataset_load_idx(struct sila_dataset *ds, const char *images_path, const char *labels_path,
                          struct sila_err *err);

/* Loads and concatenates CIFAR binary batch files (each record: label
 * byte(s) then 3072 pixel bytes; CIFAR-100 records carry a coarse and a fine
 * label, the fine one is used). nclasses is 10 or 100. A file whose size is
 * not a whole number of records is refused. */
int sila_dataset_load_cifar(struct sila_dataset *ds, const char *const *paths, int npaths,
                            int nclasses, struct sila_err *err);

/* Loads the train or test split of `kind` from directory `dir` using the
 * standard file names (IDX: train-images-idx3-ubyte[.gz],
 * train-labels-idx1-ubyte[.gz], t10k-*; CIFAR-10: data_batch_1..5.bin,
 * test_batch.bin; CIFAR-100: train.bin, test.bin). */
int sila_dataset_open(struct sila_dataset *ds, enum sila_dataset_kind kind, const char *dir,
                      bool train, struct sila_err *err);

/* Frees the dataset's arrays and zeroes it; safe on a zeroed dataset. */
void sila_dataset_fini(struct sila_dataset *ds);

/* Per-channel normalisation x = (pixel/255 - mean[c]) / std[c]. */
struct sila_norm {
    float mean[3];
    float std[3];
};
/* Standard normalisation constants of a kind (mean and std of its training
 * set, as commonly used). */
struct sila_norm sila_dataset_default_norm(enum sila_dataset_kind kind);

/* Names of a kind's classes by label, a static table written to
 * *ret_names; returns their count, 0 (and NULL) when none are known
 * (CIFAR-100, unknown kinds). */
int sila_dataset_class_names(enum sila_dataset_kind kind, const char *const **ret_names);

/* Training-time augmentation: random crop after zero padding of `crop_pad`
 * pixels on each side (0 disables it; padded pixels are raw 0 before
 * normalisation, as torchvision does), and horizontal flip with probability
 * 1/2 when `flip` is set. */
struct sila_augment {
    int crop_pad;
    bool flip;
};

/* Writes B samples, indices idx[0..B) into ds, as normalised floats x
 * (B, c, h, w) and labels (B). aug may be NULL (no augmentation, rng
 * unused). Random draws per sample, in order: crop dy, crop dx (each
 * sila_rng_below(r, 2·crop_pad + 1)) when crop_pad > 0, then flip
 * (sila_rng_below(r, 2)) when flip is set. */
void sila_dataset_batch(const struct sila_dataset *ds, const uint32_t *idx, int B,
                        const struct sila_norm *norm, const struct sila_augment *aug,
                        struct sila_rng *rng, float *x, int32_t *labels);

/* Data order of one epoch: perm[0..n) is a permutation of 0..n-1 that
 * depends only on (seed, epoch), so a resumed run can recompute it. */
void sila_dataset_epoch_order(uint32_t *perm, uint32_t n, uint64_t seed, uint64_t epoch);

#endif
