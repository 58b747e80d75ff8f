/* Data frames: round trips, and every malformed or out-of-plan frame refused
 * with the error code and a message naming what is wrong. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "frame.h"
#include "greet.h"
#include "kernels.h"
#include "sila.pb-c.h"

#define N 3
#define C 2
#define H 4
#define W 5
#define VALUES (N * C * H * W)

#define CLASSES 10

static const struct sila_frame_limits LIMITS = {
    .max_n = 8, .c = C, .h = H, .w = W, .nclasses = CLASSES, .gradient = false};
/* an edge of a collab job: training frames may carry soft targets */
static const struct sila_frame_limits COLLAB = {
    .max_n = 8, .c = C, .h = H, .w = W, .nclasses = CLASSES, .gradient = false, .collab = true};
/* an edge before a module that reconstructs the network's input (IMAGE
 * values per sample): local training frames carry it */
#define IMAGE 6
static const struct sila_frame_limits INFOPRO = {
    .max_n = 8, .c = C, .h = H, .w = W, .nclasses = CLASSES, .image_size = IMAGE};

static struct sila_frame_hdr sample_hdr(void)
{
    return (struct sila_frame_hdr){.generation = 7,
                                   .seq = 123456789012ull,
                                   .batch = 42,
                                   .round = 3,
                                   .phase = SILA_PHASE_GLOBAL,
                                   .gradient = false,
                                   .n = N,
                                   .c = C,
                                   .h = H,
                                   .w = W,
                                   .nlabels = N};
}

static int32_t labels[N] = {0, 9, 4};
/* the network's input carried along (N, IMAGE) */
static float image[N * IMAGE];
/* soft targets (N, CLASSES): set by set_targets() */
static float targets[N * CLASSES];
/* the sample tensor, with room for the larger ones of the refusal tests
 * (one more channel) */
static float x[VALUES * (C + 1) / C];
#define X_BYTES (sizeof(float) * VALUES)

/* Encodes hdr into a fresh buffer (x and labels as above). */
static uint8_t *encode(const struct sila_frame_hdr *h, size_t *ret_len)
{
    for (int i = 0; i < VALUES; i++)
        x[i] = (float)i * 0.25f - 3.0f;
    *ret_len = sila_frame_size(h);
    uint8_t *buf = malloc(*ret_len);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < N * IMAGE; i++)
        image[i] = 0.5f - (float)i / 8.0f;
    sila_frame_encode(buf, h, labels, h->target_classes ? targets : NULL,
                      h->image_size ? image : NULL, x);
    return buf;
}

/* Valid soft targets: sample 0 has none yet (zeros), sample 1 a uniform
 * distribution, sample 2 one split between classes 3 and 7. */
static void set_targets(void)
{
    memset(targets, 0, sizeof targets);
    for (int j = 0; j < CLASSES; j++)
        targets[CLASSES + j] = 0.1f;
    targets[2 * CLASSES + 3] = 0.25f;
    targets[2 * CLASSES + 7] = 0.75f;
}

static struct sila_frame_hdr collab_hdr(void)
{
    struct sila_frame_hdr h = sample_hdr();
    h.phase = SILA_PHASE_LOCAL;
    h.target_classes = CLASSES;
    set_targets();
    return h;
}

static void expect_refused_on(const struct sila_frame_limits *lim, const uint8_t *buf, size_t len,
                              int code, const char *word)
{
    struct sila_frame_view v;
    struct sila_err err = {""};
    int r = sila_frame_decode(buf, len, lim, &v, &err);
    ck_assert_int_eq(r, code);
    ck_assert_msg(strstr(err.msg, word), "message '%s' lacks '%s'", err.msg, word);
}

static void expect_refused(const uint8_t *buf, size_t len, int code, const char *word)
{
    expect_refused_on(&LIMITS, buf, len, code, word);
}

START_TEST(round_trip)
{
    struct sila_frame_hdr h = sample_hdr();
    size_t len;
    uint8_t *buf = encode(&h, &len);
    ck_assert_uint_eq(len % 4, 0);
    struct sila_frame_view v;
    struct sila_err err = {""};
    ck_assert_int_eq(sila_frame_decode(buf, len, &LIMITS, &v, &err), 0);
    ck_assert_uint_eq(v.hdr.generation, h.generation);
    ck_assert_uint_eq(v.hdr.seq, h.seq);
    ck_assert_uint_eq(v.hdr.batch, h.batch);
    ck_assert_uint_eq(v.hdr.round, h.round);
    ck_assert_int_eq(v.hdr.phase, h.phase);
    ck_assert_int_eq(v.hdr.gradient, h.gradient);
    ck_assert_uint_eq(v.hdr.n, N);
    ck_assert_uint_eq(v.hdr.c, C);
    ck_assert_uint_eq(v.hdr.h, H);
    ck_assert_uint_eq(v.hdr.w, W);
    ck_assert_uint_eq(v.hdr.nlabels, N);
    ck_assert_int_eq(memcmp(v.labels, labels, sizeof labels), 0);
    ck_assert_int_eq(memcmp(v.x, x, X_BYTES), 0);
    ck_assert_uint_eq(((uintptr_t)v.x) % 4, 0);
    free(buf);
}
END_TEST

START_TEST(round_trip_without_labels)
{
    struct sila_frame_hdr h = sample_hdr();
    h.nlabels = 0;
    h.gradient = true;
    h.phase = SILA_PHASE_GLOBAL;
    size_t len;
    uint8_t *buf = encode(&h, &len);
    struct sila_frame_limits lim = LIMITS;
    lim.gradient = true;
    struct sila_frame_view v;
    ck_assert_int_eq(sila_frame_decode(buf, len, &lim, &v, NULL), 0);
    ck_assert_ptr_null(v.labels);
    ck_assert_int_eq(memcmp(v.x, x, X_BYTES), 0);
    free(buf);
}
END_TEST

/* The tensor lies raw after the header: byte-for-byte the floats. */
START_TEST(tensor_is_raw_little_endian)
{
    struct sila_frame_hdr h = sample_hdr();
    size_t len;
    uint8_t *buf = encode(&h, &len);
    const uint8_t *tail = buf + len - X_BYTES;
    /* x[VALUES-1] = (VALUES-1)*0.25 - 3 = 26.75 = 0x41D60000 */
    ck_assert_uint_eq(tail[X_BYTES - 4], 0x00);
    ck_assert_uint_eq(tail[X_BYTES - 2], 0xD6);
    ck_assert_uint_eq(tail[X_BYTES - 1], 0x41);
    free(buf);
}
END_TEST

START_TEST(refuses_malformed)
{
    struct sila_frame_hdr h = sample_hdr();
    size_t len;
    uint8_t *buf = encode(&h, &len);
    expect_refused(buf, 0, -EBADMSG, "prefix");
    expect_refused(buf, 7, -EBADMSG, "prefix");
    expect_refused(buf, len - 1, -EBADMSG, "describes");
    uint8_t *longer = calloc(1, len + 4);
    memcpy(longer, buf, len);
    expect_refused(longer, len + 4, -EBADMSG, "describes");
    free(longer);
    buf[0] = 'X';
    expect_refused(buf, len, -EBADMSG, "prefix");
    buf[0] = 'S';
    uint32_t hl, bad = 100000;
    memcpy(&hl, buf + 4, 4);
    memcpy(buf + 4, &bad, 4);
    expect_refused(buf, len, -EBADMSG, "header length");
    bad = 0;
    memcpy(buf + 4, &bad, 4);
    expect_refused(buf, len, -EBADMSG, "header length");
    memcpy(buf + 4, &hl, 4);
    memset(buf + 8, 0xff, hl); /* garbage header bytes */
    expect_refused(buf, len, -EBADMSG, "does not decode");
    free(buf);
}
END_TEST

START_TEST(refuses_out_of_plan)
{
    struct sila_frame_hdr h = sample_hdr();
    size_t len;
    uint8_t *buf;

    h.c = C + 1; /* another shape */
    buf = encode(&h, &len);
    expect_refused(buf, len, -EINVAL, "shape");
    free(buf);

    h = sample_hdr();
    h.gradient = true; /* a gradient on an activation edge */
    buf = encode(&h, &len);
    expect_refused(buf, len, -EINVAL, "gradient");
    free(buf);

    h = sample_hdr();
    h.nlabels = 2; /* labels for some samples only */
    buf = encode(&h, &len);
    expect_refused(buf, len, -EINVAL, "labels");
    free(buf);

    h = sample_hdr();
    h.phase = (enum sila_phase)9;
    buf = encode(&h, &len);
    expect_refused(buf, len, -EINVAL, "phase");
    free(buf);
}
END_TEST

START_TEST(refuses_batch_beyond_plan)
{
    struct sila_frame_hdr h = sample_hdr();
    h.n = 9; /* max_n is 8; the buffer must hold the larger tensor */
    h.nlabels = 0;
    size_t len = sila_frame_size(&h);
    uint8_t *buf = calloc(1, len);
    float *big = calloc((size_t)9 * C * H * W, sizeof *big);
    sila_frame_encode(buf, &h, NULL, NULL, NULL, big);
    expect_refused(buf, len, -EINVAL, "batch of 9");
    free(big);
    free(buf);
}
END_TEST

START_TEST(refuses_bad_labels)
{
    int32_t saved = labels[1];
    labels[1] = 10;
    struct sila_frame_hdr h = sample_hdr();
    size_t len;
    uint8_t *buf = encode(&h, &len);
    expect_refused(buf, len, -EINVAL, "label 10");
    free(buf);
    labels[1] = -1;
    buf = encode(&h, &len);
    expect_refused(buf, len, -EINVAL, "label -1");
    free(buf);
    labels[1] = saved;
}
END_TEST

START_TEST(round_trip_with_targets)
{
    struct sila_frame_hdr h = collab_hdr();
    size_t len;
    uint8_t *buf = encode(&h, &len);
    struct sila_frame_hdr plain = h;
    plain.target_classes = 0;
    ck_assert_uint_eq(len, sila_frame_size(&plain) + sizeof targets);
    struct sila_frame_view v;
    struct sila_err err = {""};
    ck_assert_int_eq(sila_frame_decode(buf, len, &COLLAB, &v, &err), 0);
    ck_assert_uint_eq(v.hdr.target_classes, CLASSES);
    ck_assert_int_eq(memcmp(v.labels, labels, sizeof labels), 0);
    ck_assert_ptr_nonnull(v.targets);
    ck_assert_int_eq(memcmp(v.targets, targets, sizeof targets), 0);
    ck_assert_uint_eq(((uintptr_t)v.targets) % 4, 0);
    ck_assert_int_eq(memcmp(v.x, x, X_BYTES), 0);
    /* the targets lie raw between the labels and the tensor */
    ck_assert_ptr_eq(v.targets, (const float *)(v.labels + N));
    ck_assert_ptr_eq(v.x, v.targets + N * CLASSES);
    free(buf);
    /* a collab edge still takes frames without targets (evaluation) */
    buf = encode(&plain, &len);
    ck_assert_int_eq(sila_frame_decode(buf, len, &COLLAB, &v, &err), 0);
    ck_assert_ptr_null(v.targets);
    ck_assert_int_eq(memcmp(v.x, x, X_BYTES), 0);
    free(buf);
    /* a row may miss 1 by rounding, within SILA_FRAME_TARGET_SUM */
    targets[CLASSES] += 0.0005f;
    buf = encode(&h, &len);
    ck_assert_int_eq(sila_frame_decode(buf, len, &COLLAB, &v, &err), 0);
    free(buf);
}
END_TEST

/* Where targets may not travel, and the sizes they imply. */
START_TEST(refuses_misplaced_targets)
{
    struct sila_frame_hdr h = collab_hdr();
    size_t len;
    uint8_t *buf = encode(&h, &len);
    expect_refused_on(&LIMITS, buf, len, -EINVAL, "without collab");
    expect_refused_on(&COLLAB, buf, len - 4, -EBADMSG, "describes");
    free(buf);

    h = collab_hdr();
    h.nlabels = 0;
    buf = encode(&h, &len);
    expect_refused_on(&COLLAB, buf, len, -EINVAL, "soft targets without labels");
    free(buf);

    h = collab_hdr();
    h.phase = SILA_PHASE_EVAL;
    buf = encode(&h, &len);
    expect_refused_on(&COLLAB, buf, len, -EINVAL, "soft targets on an evaluation batch");
    free(buf);

    h = collab_hdr();
    h.target_classes = CLASSES - 1;
    buf = encode(&h, &len);
    expect_refused_on(&COLLAB, buf, len, -EINVAL, "soft targets of 9 classes, expected 10");
    free(buf);

    /* a header announcing targets on the bytes of a frame without them */
    h = collab_hdr();
    h.target_classes = 0;
    buf = encode(&h, &len);
    struct sila_frame_hdr liar = collab_hdr();
    size_t want = sila_frame_size(&liar);
    uint8_t *forged = calloc(1, want);
    sila_frame_encode(forged, &liar, labels, targets, NULL, x);
    expect_refused_on(&COLLAB, forged, len, -EBADMSG, "describes");
    free(forged);
    free(buf);
}
END_TEST

static struct sila_frame_hdr image_hdr(void)
{
    struct sila_frame_hdr h = sample_hdr();
    h.phase = SILA_PHASE_LOCAL;
    h.image_size = IMAGE;
    return h;
}

START_TEST(round_trip_with_image)
{
    struct sila_frame_hdr h = image_hdr();
    size_t len;
    uint8_t *buf = encode(&h, &len);
    struct sila_frame_hdr plain = h;
    plain.image_size = 0;
    ck_assert_uint_eq(len, sila_frame_size(&plain) + sizeof image);
    struct sila_frame_view v;
    struct sila_err err = {""};
    ck_assert_int_eq(sila_frame_decode(buf, len, &INFOPRO, &v, &err), 0);
    ck_assert_uint_eq(v.hdr.image_size, IMAGE);
    ck_assert_ptr_nonnull(v.image);
    ck_assert_int_eq(memcmp(v.image, image, sizeof image), 0);
    /* raw between the labels and the tensor */
    ck_assert_ptr_eq(v.image, (const float *)(v.labels + N));
    ck_assert_ptr_eq(v.x, v.image + N * IMAGE);
    ck_assert_int_eq(memcmp(v.x, x, X_BYTES), 0);
    free(buf);
    /* global and evaluation batches travel without it */
    plain.phase = SILA_PHASE_EVAL;
    buf = encode(&plain, &len);
    ck_assert_int_eq(sila_frame_decode(buf, len, &INFOPRO, &v, &err), 0);
    ck_assert_ptr_null(v.image);
    free(buf);
}
END_TEST

/* Where the input may not travel, where it must, and its values. */
START_TEST(refuses_misplaced_image)
{
    struct sila_frame_hdr h = image_hdr();
    size_t len;
    uint8_t *buf = encode(&h, &len);
    expect_refused_on(&LIMITS, buf, len, -EINVAL, "job without reconstruction");
    expect_refused_on(&INFOPRO, buf, len - 4, -EBADMSG, "describes");
    free(buf);

    h.phase = SILA_PHASE_GLOBAL;
    buf = encode(&h, &len);
    expect_refused_on(&INFOPRO, buf, len, -EINVAL, "on a global, evaluation or gradient batch");
    free(buf);

    h = image_hdr();
    h.image_size = 0;
    buf = encode(&h, &len);
    expect_refused_on(&INFOPRO, buf, len, -EINVAL, "with 0 input values per sample, expected 6");
    free(buf);

    h = image_hdr();
    h.image_size = IMAGE - 1;
    buf = encode(&h, &len);
    expect_refused_on(&INFOPRO, buf, len, -EINVAL, "with 5 input values per sample, expected 6");
    free(buf);

    h = image_hdr();
    buf = encode(&h, &len);
    float inf = INFINITY;
    memcpy(buf + len - X_BYTES - sizeof(float), &inf, sizeof inf); /* its last value */
    expect_refused_on(&INFOPRO, buf, len, -EINVAL, "input carried along is not finite");
    free(buf);
}
END_TEST

/* MAN's snapshots: upstream on a gradient edge of their size, requests
 * (1x1x1x1) downstream on an edge that takes them; nothing else. */
#define SNAP 7
static const struct sila_frame_limits SNAP_UP = {
    .max_n = 8, .c = C, .h = H, .w = W, .nclasses = CLASSES, .gradient = true, .snapshot = SNAP};
static const struct sila_frame_limits SNAP_DOWN = {
    .max_n = 8, .c = C, .h = H, .w = W, .nclasses = CLASSES, .snapshot = 1};

static struct sila_frame_hdr snapshot_hdr(bool gradient)
{
    return (struct sila_frame_hdr){.seq = 5,
                                   .batch = 20,
                                   .phase = SILA_PHASE_SNAPSHOT,
                                   .gradient = gradient,
                                   .n = 1,
                                   .c = gradient ? SNAP : 1,
                                   .h = 1,
                                   .w = 1};
}

START_TEST(snapshots)
{
    struct sila_frame_hdr h = snapshot_hdr(true);
    size_t len;
    uint8_t *buf = encode(&h, &len);
    struct sila_frame_view v;
    struct sila_err err = {""};
    ck_assert_msg(sila_frame_decode(buf, len, &SNAP_UP, &v, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(v.hdr.batch, 20);
    ck_assert_uint_eq(v.hdr.c, SNAP);
    ck_assert(v.x[SNAP - 1] == x[SNAP - 1]);
    struct sila_frame_limits without = SNAP_UP;
    without.snapshot = 0;
    expect_refused_on(&without, buf, len, -EINVAL, "a snapshot on an edge that carries none");
    without.snapshot = SNAP + 1;
    expect_refused_on(&without, buf, len, -EINVAL, "expected 1x8x1x1");
    float nan = NAN;
    memcpy(buf + len - sizeof nan, &nan, sizeof nan);
    expect_refused_on(&SNAP_UP, buf, len, -EINVAL, "a snapshot that is not finite");
    free(buf);

    h.nlabels = 1;
    buf = encode(&h, &len);
    expect_refused_on(&SNAP_UP, buf, len, -EINVAL, "with labels");
    free(buf);

    h = snapshot_hdr(false);
    buf = encode(&h, &len);
    ck_assert_msg(sila_frame_decode(buf, len, &SNAP_DOWN, &v, &err) == 0, "%s", err.msg);
    expect_refused_on(&LIMITS, buf, len, -EINVAL, "a snapshot request on an edge");
    expect_refused_on(&SNAP_UP, buf, len, -EINVAL, "activation frame on an edge");
    free(buf);
}
END_TEST

/* Training frames in 16 bits (job.wire_dtype): half the tensor's bytes,
 * the values back exactly (x's are multiples of 0.25 below 27); accepted
 * only where the plan names that dtype, and every other frame is f32. */
START_TEST(sixteen_bit_tensors)
{
    struct sila_frame_hdr h = sample_hdr();
    size_t len32;
    free(encode(&h, &len32));
    for (enum sila_dtype d = SILA_DTYPE_BF16; d <= SILA_DTYPE_F16; d++) {
        struct sila_frame_limits lim = LIMITS;
        lim.dtype = d;
        h = sample_hdr();
        h.dtype = d;
        size_t len;
        uint8_t *buf = encode(&h, &len);
        ck_assert_uint_le(len + 2 * VALUES - 4, len32);
        struct sila_frame_view v;
        struct sila_err err = {""};
        ck_assert_msg(sila_frame_decode(buf, len, &lim, &v, &err) == 0, "%s", err.msg);
        ck_assert_ptr_null(v.x);
        ck_assert_ptr_nonnull(v.x16);
        float back[VALUES];
        sila_dtype_unpack(d, v.x16, back, VALUES);
        ck_assert_int_eq(memcmp(back, x, X_BYTES), 0);
        ck_assert_int_eq(memcmp(v.labels, labels, sizeof labels), 0);
        expect_refused_on(&LIMITS, buf, len, -EINVAL,
                          d == SILA_DTYPE_BF16 ? "values in bf16, the plan says f32 here"
                                               : "values in f16, the plan says f32 here");
        free(buf);

        h.phase = SILA_PHASE_EVAL; /* evaluation batches stay f32 */
        buf = encode(&h, &len);
        expect_refused_on(&lim, buf, len, -EINVAL, "the plan says f32 here");
        free(buf);
        h = sample_hdr(); /* an f32 training frame on a 16-bit edge */
        buf = encode(&h, &len);
        expect_refused_on(&lim, buf, len, -EINVAL, "values in f32, the plan says");
        free(buf);
    }
    h.dtype = (enum sila_dtype)7;
    size_t len;
    uint8_t *buf = encode(&h, &len);
    expect_refused(buf, len, -EINVAL, "values in an unknown type");
    free(buf);
}
END_TEST

/* One value through dtype d and back. */
static float through(enum sila_dtype d, float v)
{
    float y;
    sila_dtype_round(d, &v, &y, 1);
    uint16_t u;
    sila_dtype_pack(d, &v, &u, 1);
    float z;
    sila_dtype_unpack(d, &u, &z, 1);
    ck_assert_msg(memcmp(&y, &z, sizeof y) == 0, "rounding and the wire disagree on %a", v);
    return y;
}

static uint16_t bits16(enum sila_dtype d, float v)
{
    uint16_t u;
    sila_dtype_pack(d, &v, &u, 1);
    return u;
}

/* Rounding to nearest, ties to even; binary16's range and subnormals;
 * rounding twice is rounding once. */
START_TEST(sixteen_bit_rounding)
{
    ck_assert_uint_eq(bits16(SILA_DTYPE_BF16, 1.0f / 3.0f), 0x3EAB);
    ck_assert_uint_eq(bits16(SILA_DTYPE_F16, 1.0f / 3.0f), 0x3555);
    ck_assert_uint_eq(bits16(SILA_DTYPE_F16, -1.0f / 3.0f), 0xB555);
    ck_assert(through(SILA_DTYPE_BF16, 1.0f + 0x1p-8f) == 1.0f);
    ck_assert(through(SILA_DTYPE_BF16, 1.0f + 0x3p-8f) == 1.0f + 0x1p-6f);
    ck_assert(through(SILA_DTYPE_F16, 1.0f + 0x1p-11f) == 1.0f);
    ck_assert(through(SILA_DTYPE_F16, 1.0f + 0x3p-11f) == 1.0f + 0x1p-9f);
    ck_assert(through(SILA_DTYPE_F16, 65504.0f) == 65504.0f);
    ck_assert(through(SILA_DTYPE_F16, 65519.0f) == 65504.0f);
    ck_assert(isinf(through(SILA_DTYPE_F16, 65520.0f)));
    ck_assert(isinf(through(SILA_DTYPE_F16, -1e30f)) && through(SILA_DTYPE_F16, -1e30f) < 0);
    ck_assert(isfinite(through(SILA_DTYPE_BF16, 1e38f)));
    ck_assert(through(SILA_DTYPE_F16, 0x1p-25f) == 0.0f);
    ck_assert(through(SILA_DTYPE_F16, 0x3p-26f) == 0x1p-24f);
    ck_assert(through(SILA_DTYPE_F16, 0x1p-20f + 0x1p-25f) == 0x1p-20f);
    ck_assert(through(SILA_DTYPE_F16, 0x1p-14f) == 0x1p-14f); /* the smallest normal */
    uint32_t s = 12345;
    for (int i = 0; i < 10000; i++) {
        s = s * 1664525u + 1013904223u;
        float v = ((float)(s >> 8) / 16777216.0f - 0.5f) * 2000.0f;
        for (enum sila_dtype d = SILA_DTYPE_BF16; d <= SILA_DTYPE_F16; d++) {
            float once = through(d, v);
            ck_assert(through(d, once) == once);
            ck_assert(fabsf(once - v) <= fabsf(v) * (d == SILA_DTYPE_BF16 ? 0x1p-8f : 0x1p-11f));
        }
    }
}
END_TEST

/* A link's greeting (greet.h): one bare value, either way, on any edge;
 * the encoder's frame decodes as such. */
START_TEST(greetings)
{
    struct sila_frame_limits up = LIMITS;
    up.gradient = true;
    for (int answer = 0; answer < 2; answer++) {
        size_t len;
        uint8_t *buf = sila_greet_frame(3, answer, &len);
        ck_assert_ptr_nonnull(buf);
        struct sila_frame_view v;
        struct sila_err err = {""};
        ck_assert_msg(sila_frame_decode(buf, len, answer ? &up : &LIMITS, &v, &err) == 0, "%s",
                      err.msg);
        ck_assert_int_eq(v.hdr.phase, SILA_PHASE_HELLO);
        ck_assert_uint_eq(v.hdr.generation, 3);
        expect_refused_on(answer ? &LIMITS : &up, buf, len, -EINVAL, "frame on an edge that");
        sila_link_release(buf);
    }
    struct sila_frame_hdr h = {.phase = SILA_PHASE_HELLO, .n = 1, .c = 2, .h = 1, .w = 1};
    size_t len;
    uint8_t *buf = encode(&h, &len);
    expect_refused_on(&LIMITS, buf, len, -EINVAL, "a greeting of shape 1x2x1x1");
    free(buf);
    h.c = 1;
    h.nlabels = 1;
    buf = encode(&h, &len);
    expect_refused_on(&LIMITS, buf, len, -EINVAL, "a greeting with labels");
    free(buf);
}
END_TEST

/* Encodes the collab frame with targets[at] = value and expects word. */
static void expect_bad_target(int at, float value, const char *word)
{
    struct sila_frame_hdr h = collab_hdr();
    targets[at] = value;
    size_t len;
    uint8_t *buf = encode(&h, &len);
    expect_refused_on(&COLLAB, buf, len, -EINVAL, word);
    free(buf);
}

START_TEST(refuses_bad_target_values)
{
    expect_bad_target(CLASSES + 4, NAN, "soft targets of sample 1 are not finite");
    expect_bad_target(2 * CLASSES + 9, INFINITY, "soft targets of sample 2 are not finite");
    expect_bad_target(CLASSES - 1, -INFINITY, "soft targets of sample 0 are not finite");
    expect_bad_target(2 * CLASSES + 3, -0.25f,
                      "soft target 3 of sample 2 is -0.25, outside [0, 1]");
    expect_bad_target(2 * CLASSES + 7, 1.5f, "soft target 7 of sample 2 is 1.5, outside [0, 1]");
    /* rows that are neither zeros nor a distribution */
    expect_bad_target(2 * CLASSES + 7, 0.25f,
                      "soft targets of sample 2 sum to 0.5, expected 0 or 1");
    expect_bad_target(5, 0.0001f, "soft targets of sample 0 sum to 0.0001, expected 0 or 1");
    expect_bad_target(CLASSES, 0.12f, "soft targets of sample 1 sum to 1.02, expected 0 or 1");
}
END_TEST

/* A frame whose header says another wire version: written by hand. */
START_TEST(refuses_other_version)
{
    Sila__FrameHeader ph = SILA__FRAME_HEADER__INIT;
    uint32_t shape[4] = {N, C, H, W};
    ph.version = SILA_WIRE_VERSION + 1;
    ph.phase = SILA__PHASE__LOCAL;
    ph.n_shape = 4;
    ph.shape = shape;
    size_t hl = sila__frame_header__get_packed_size(&ph), padded = (hl + 3) & ~(size_t)3;
    size_t len = 8 + padded + X_BYTES;
    uint8_t *buf = calloc(1, len);
    memcpy(buf, "SILF", 4);
    uint32_t hl32 = (uint32_t)hl;
    memcpy(buf + 4, &hl32, 4);
    sila__frame_header__pack(&ph, buf + 8);
    expect_refused(buf, len, -EPROTO, "version");
    free(buf);
}
END_TEST

START_TEST(finite_check)
{
    float v[4] = {0.0f, 1.0f, -2.0f, 3.0f};
    ck_assert(sila_all_finite(v, 4));
    v[2] = NAN;
    ck_assert(!sila_all_finite(v, 4));
    v[2] = INFINITY;
    ck_assert(!sila_all_finite(v, 4));
    v[2] = -INFINITY;
    ck_assert(!sila_all_finite(v, 4));
    v[2] = FLT_MAX;
    v[3] = FLT_TRUE_MIN;
    ck_assert(sila_all_finite(v, 4));
    /* one bad value anywhere in a long array: first, last, across the
     * check's blocks of 4096, and past n (not looked at) */
    enum { LONG = 3 * 4096 + 7 };
    static float big[LONG + 1];
    const size_t at[] = {0, 4095, 4096, 8191, 12000, LONG - 1};
    for (size_t i = 0; i < LONG + 1; i++)
        big[i] = (float)i - 5000.0f;
    ck_assert(sila_all_finite(big, LONG));
    big[LONG] = NAN;
    ck_assert(sila_all_finite(big, LONG));
    for (size_t j = 0; j < sizeof at / sizeof at[0]; j++) {
        big[at[j]] = j % 2 ? NAN : -INFINITY;
        ck_assert_msg(!sila_all_finite(big, LONG), "bad value at %zu not seen", at[j]);
        big[at[j]] = 1.0f;
    }
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("frame");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, round_trip_without_labels);
    tcase_add_test(tc, tensor_is_raw_little_endian);
    tcase_add_test(tc, refuses_malformed);
    tcase_add_test(tc, refuses_out_of_plan);
    tcase_add_test(tc, refuses_batch_beyond_plan);
    tcase_add_test(tc, refuses_bad_labels);
    tcase_add_test(tc, round_trip_with_targets);
    tcase_add_test(tc, refuses_misplaced_targets);
    tcase_add_test(tc, refuses_bad_target_values);
    tcase_add_test(tc, round_trip_with_image);
    tcase_add_test(tc, snapshots);
    tcase_add_test(tc, greetings);
    tcase_add_test(tc, sixteen_bit_tensors);
    tcase_add_test(tc, sixteen_bit_rounding);
    tcase_add_test(tc, refuses_misplaced_image);
    tcase_add_test(tc, refuses_other_version);
    tcase_add_test(tc, finite_check);
    suite_add_tcase(s, tc);
    return s;
}
