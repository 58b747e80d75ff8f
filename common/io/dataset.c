/* Datasets (see dataset.h): their kinds, normalised and augmented batches,
 * and the data order of an epoch. Reading the files is dataset_read.c's. */
#include "dataset.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Stream of the epoch-order rng: sila_rng_seed(seed, EPOCH_STREAM + epoch).
 * Part of the resume contract: changing it changes every run's data order. */
#define EPOCH_STREAM UINT64_C(0x5eed0000)

/* ---- kinds ---- */

static const char *const kind_names[] = {
    [SILA_DATASET_MNIST] = "mnist",
    [SILA_DATASET_FMNIST] = "fmnist",
    [SILA_DATASET_CIFAR10] = "cifar10",
    [SILA_DATASET_CIFAR100] = "cifar100",
};
#define NKINDS ((int)(sizeof kind_names / sizeof kind_names[0]))

/* An unknown kind is named "unknown", so the result is always printable. */
const char *sila_dataset_kind_name(enum sila_dataset_kind kind)
{
    if ((int)kind <= 0 || (int)kind >= NKINDS)
        return "unknown";
    return kind_names[kind];
}

int sila_dataset_kind_parse(const char *name, enum sila_dataset_kind *ret_kind)
{
    for (int k = 1; name && k < NKINDS; k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            *ret_kind = (enum sila_dataset_kind)k;
            return 0;
        }
    }
    return -EINVAL;
}

void sila_dataset_fini(struct sila_dataset *ds)
{
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

/* ---- normalisation and class names, augmentation, batches ---- */

/* Unknown kinds get mean 0 and std 1 (x = pixel/255); single-channel kinds
 * fill channel 0 and leave the others at mean 0, std 1. */
struct sila_norm sila_dataset_default_norm(enum sila_dataset_kind kind)
{
    switch (kind) {
    case SILA_DATASET_MNIST:
        return (struct sila_norm){{0.1307f, 0, 0}, {0.3081f, 1, 1}};
    case SILA_DATASET_FMNIST:
        return (struct sila_norm){{0.2860f, 0, 0}, {0.3530f, 1, 1}};
    case SILA_DATASET_CIFAR10:
        return (struct sila_norm){{0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}};
    case SILA_DATASET_CIFAR100:
        return (struct sila_norm){{0.5071f, 0.4865f, 0.4409f}, {0.2673f, 0.2564f, 0.2762f}};
    }
    return (struct sila_norm){{0, 0, 0}, {1, 1, 1}};
}

static const char *const mnist_names[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
static const char *const fmnist_names[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                             "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                             "Bag",         "Ankle boot"};
static const char *const cifar10_names[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                              "dog",      "frog",       "horse", "ship", "truck"};

int sila_dataset_class_names(enum sila_dataset_kind kind, const char *const **ret_names)
{
    switch (kind) {
    case SILA_DATASET_MNIST:
        *ret_names = mnist_names;
        return 10;
    case SILA_DATASET_FMNIST:
        *ret_names = fmnist_names;
        return 10;
    case SILA_DATASET_CIFAR10:
        *ret_names = cifar10_names;
        return 10;
    case SILA_DATASET_CIFAR100:
        break;
    }
    *ret_names = NULL;
    return 0;
}

/* lut[ch][v] is raw pixel value v of channel ch after normalisation. */
static void norm_table(float lut[3][256], const struct sila_norm *norm, int c)
{
    for (int ch = 0; ch < c; ch++)
        for (int v = 0; v < 256; v++)
            lut[ch][v] = ((float)v / 255.0f - norm->mean[ch]) / norm->std[ch];
}

/* Where one output sample reads from: out(y, x) = in(y + dy, x' + dx) with
 * x' = w-1-x when flipped, raw 0 outside the image. dy, dx in [-pad, pad]. */
struct view {
    int dy, dx;
    bool flip;
};

/* Draws one sample's view in the order dataset.h documents; a flip draw of
 * 1 flips. aug NULL: identity, no draw. */
static struct view view_draw(const struct sila_augment *aug, struct sila_rng *rng)
{
    struct view v = {0, 0, false};
    if (!aug)
        return v;
    if (aug->crop_pad > 0) {
        uint32_t span = 2 * (uint32_t)aug->crop_pad + 1;
        v.dy = (int)sila_rng_below(rng, span) - aug->crop_pad;
        v.dx = (int)sila_rng_below(rng, span) - aug->crop_pad;
    }
    if (aug->flip)
        v.flip = sila_rng_below(rng, 2) == 1;
    return v;
}

/* One channel plane: out (h, w) from in (h, w) through v and lut (256). */
static void view_plane(float *out, const uint8_t *in, int h, int w, struct view v, const float *lut)
{
    for (int y = 0; y < h; y++) {
        int sy = y + v.dy;
        for (int x = 0; x < w; x++) {
            int sx = (v.flip ? w - 1 - x : x) + v.dx;
            bool inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
            out[(size_t)y * w + x] = lut[inside ? in[(size_t)sy * w + sx] : 0];
        }
    }
}

void sila_dataset_batch(const struct sila_dataset *ds, const uint32_t *idx, int B,
                        const struct sila_norm *norm, const struct sila_augment *aug,
                        struct sila_rng *rng, float *x, int32_t *labels)
{
    float lut[3][256];
    size_t plane = (size_t)ds->h * ds->w, sample = (size_t)ds->c * plane;
    assert(ds->c >= 1 && ds->c <= 3);
    norm_table(lut, norm, ds->c);
    for (int b = 0; b < B; b++) {
        assert(idx[b] < ds->n);
        struct view v = view_draw(aug, rng);
        const uint8_t *in = ds->images + idx[b] * sample;
        for (int ch = 0; ch < ds->c; ch++)
            view_plane(x + b * sample + ch * plane, in + ch * plane, ds->h, ds->w, v, lut[ch]);
        labels[b] = ds->labels[idx[b]];
    }
}

void sila_dataset_epoch_order(uint32_t *perm, uint32_t n, uint64_t seed, uint64_t epoch)
{
    struct sila_rng r;
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    sila_rng_seed(&r, seed, EPOCH_STREAM + epoch);
    sila_rng_shuffle(&r, perm, n);
}
