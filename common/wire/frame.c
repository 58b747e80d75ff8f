/* Data frame codec (see frame.h). protobuf-c's NULL on a failed unpack is
 * mapped here, once, to -EBADMSG with a sentence. */
#include "frame.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "sila.pb-c.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "sila's wire and file formats are little-endian; this host is not");

#define PREFIX 8 /* magic + header length */
static const uint8_t MAGIC[4] = {'S', 'I', 'L', 'F'};

static size_t pad4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

static void fill_header(Sila__FrameHeader *ph, uint32_t shape[4], const struct sila_frame_hdr *h)
{
    sila__frame_header__init(ph);
    ph->version = SILA_WIRE_VERSION;
    ph->generation = h->generation;
    ph->seq = h->seq;
    ph->batch = h->batch;
    ph->round = h->round;
    ph->phase = (Sila__Phase)h->phase;
    ph->gradient = h->gradient;
    shape[0] = h->n, shape[1] = h->c, shape[2] = h->h, shape[3] = h->w;
    ph->n_shape = 4;
    ph->shape = shape;
    ph->nlabels = h->nlabels;
    ph->target_classes = h->target_classes;
    ph->image_size = h->image_size;
    ph->dtype = (Sila__Dtype)h->dtype;
}

enum sila_dtype sila_frame_dtype(const struct sila_frame_limits *lim, enum sila_phase phase)
{
    bool training = phase == SILA_PHASE_LOCAL || phase == SILA_PHASE_GLOBAL;
    return training ? lim->dtype : SILA_DTYPE_F32;
}

static size_t tensor_values(const struct sila_frame_hdr *h)
{
    return (size_t)h->n * h->c * h->h * h->w;
}

static size_t tensor_bytes(const struct sila_frame_hdr *h)
{
    return sila_dtype_size(h->dtype) * tensor_values(h);
}

static size_t target_bytes(const struct sila_frame_hdr *h)
{
    return sizeof(float) * (size_t)h->n * h->target_classes;
}

static size_t image_bytes(const struct sila_frame_hdr *h)
{
    return sizeof(float) * (size_t)h->n * h->image_size;
}

size_t sila_frame_size(const struct sila_frame_hdr *h)
{
    Sila__FrameHeader ph;
    uint32_t shape[4];
    fill_header(&ph, shape, h);
    return PREFIX + pad4(sila__frame_header__get_packed_size(&ph)) + sizeof(int32_t) * h->nlabels +
           target_bytes(h) + image_bytes(h) + tensor_bytes(h);
}

void sila_frame_encode(uint8_t *buf, const struct sila_frame_hdr *h, const int32_t *labels,
                       const float *targets, const float *image, const float *x)
{
    Sila__FrameHeader ph;
    uint32_t shape[4];
    fill_header(&ph, shape, h);
    size_t hl = sila__frame_header__pack(&ph, buf + PREFIX);
    memcpy(buf, MAGIC, sizeof MAGIC);
    uint32_t hl32 = (uint32_t)hl;
    memcpy(buf + 4, &hl32, sizeof hl32);
    memset(buf + PREFIX + hl, 0, pad4(hl) - hl);
    uint8_t *p = buf + PREFIX + pad4(hl);
    if (h->nlabels)
        memcpy(p, labels, sizeof(int32_t) * h->nlabels);
    p += sizeof(int32_t) * h->nlabels;
    if (h->target_classes)
        memcpy(p, targets, target_bytes(h));
    p += target_bytes(h);
    if (h->image_size)
        memcpy(p, image, image_bytes(h));
    p += image_bytes(h);
    if (h->dtype == SILA_DTYPE_F32)
        memcpy(p, x, tensor_bytes(h));
    else
        sila_dtype_pack(h->dtype, x, (uint16_t *)p, tensor_values(h));
}

/* Where the network's input travels: on exactly the local training batches
 * (forward, labelled) of an edge that carries it, at its size. */
static int check_image_header(const struct sila_frame_hdr *h, const struct sila_frame_limits *lim,
                              struct sila_err *err)
{
    bool want = lim->image_size && h->phase == SILA_PHASE_LOCAL && !h->gradient;
    if (want && h->image_size != lim->image_size)
        return sila_err_set(err, -EINVAL,
                            "frame: a local batch with %u input values per sample, expected %u "
                            "(a module from here on reconstructs the network's input)",
                            h->image_size, lim->image_size);
    if (!want && h->image_size)
        return sila_err_set(err, -EINVAL,
                            "frame: the network's input (%u values per sample) on a %s, which "
                            "carries none",
                            h->image_size,
                            lim->image_size ? "global, evaluation or gradient batch"
                                            : "edge of a job without reconstruction");
    return 0;
}

/* Where soft targets may travel: with labels, outside evaluation, on an
 * edge of a collab job, one row of the job's classes per sample. */
static int check_targets_header(const struct sila_frame_hdr *h, const struct sila_frame_limits *lim,
                                struct sila_err *err)
{
    if (h->target_classes == 0)
        return 0;
    if (!lim->collab)
        return sila_err_set(err, -EINVAL,
                            "frame: soft targets (target_classes %u) on an edge of a job "
                            "without collab",
                            h->target_classes);
    if (h->nlabels != h->n)
        return sila_err_set(err, -EINVAL,
                            "frame: soft targets without labels (%u labels, %u "
                            "samples)",
                            h->nlabels, h->n);
    if (h->phase == SILA_PHASE_EVAL)
        return sila_err_set(err, -EINVAL, "frame: soft targets on an evaluation batch");
    if (h->target_classes != lim->nclasses)
        return sila_err_set(err, -EINVAL, "frame: soft targets of %u classes, expected %u",
                            h->target_classes, lim->nclasses);
    return 0;
}

/* A MAN snapshot's header: on a gradient edge that takes them, one row of
 * their size; the request for one, downstream: one value; nothing else. */
static int check_snapshot_header(const struct sila_frame_hdr *h,
                                 const struct sila_frame_limits *lim, struct sila_err *err)
{
    if (!lim->snapshot)
        return sila_err_set(err, -EINVAL, "frame: %s on an edge that carries none",
                            h->gradient ? "a snapshot" : "a snapshot request");
    uint32_t c = h->gradient ? lim->snapshot : 1;
    if (h->n != 1 || h->c != c || h->h != 1 || h->w != 1)
        return sila_err_set(err, -EINVAL,
                            "frame: a snapshot%s of shape %ux%ux%ux%u, expected 1x%ux1x1",
                            h->gradient ? "" : " request", h->n, h->c, h->h, h->w, c);
    if (h->nlabels || h->target_classes || h->image_size)
        return sila_err_set(err, -EINVAL, "frame: a snapshot with labels, targets or an input");
    return 0;
}

/* A greeting's header (greet.h): on any edge, one value, nothing else. */
static int check_hello_header(const struct sila_frame_hdr *h, struct sila_err *err)
{
    if (h->n != 1 || h->c != 1 || h->h != 1 || h->w != 1)
        return sila_err_set(err, -EINVAL,
                            "frame: a greeting of shape %ux%ux%ux%u, expected 1x1x1x1", h->n, h->c,
                            h->h, h->w);
    if (h->nlabels || h->target_classes || h->image_size)
        return sila_err_set(err, -EINVAL, "frame: a greeting with labels, targets or an input");
    return 0;
}

/* Header fields against the limits of this edge. */
static int check_limits(const struct sila_frame_hdr *h, const struct sila_frame_limits *lim,
                        struct sila_err *err)
{
    if (h->gradient != lim->gradient)
        return sila_err_set(err, -EINVAL, "frame: %s frame on an edge that carries %s",
                            h->gradient ? "gradient" : "activation",
                            lim->gradient ? "gradients" : "activations");
    enum sila_dtype want = sila_frame_dtype(lim, h->phase);
    if (h->dtype != want)
        return sila_err_set(err, -EINVAL, "frame: values in %s, the plan says %s here",
                            (unsigned)h->dtype <= SILA_DTYPE_F16 ? sila_dtype_names[h->dtype]
                                                                 : "an unknown type",
                            sila_dtype_names[want]);
    if (h->phase == SILA_PHASE_SNAPSHOT)
        return check_snapshot_header(h, lim, err);
    if (h->phase == SILA_PHASE_HELLO)
        return check_hello_header(h, err);
    if (h->n < 1 || h->n > lim->max_n)
        return sila_err_set(err, -EINVAL, "frame: batch of %u samples, expected 1..%u", h->n,
                            lim->max_n);
    if (h->c != lim->c || h->h != lim->h || h->w != lim->w)
        return sila_err_set(err, -EINVAL, "frame: samples of shape %ux%ux%u, expected %ux%ux%u",
                            h->c, h->h, h->w, lim->c, lim->h, lim->w);
    if (h->nlabels != 0 && h->nlabels != h->n)
        return sila_err_set(err, -EINVAL, "frame: %u labels for %u samples", h->nlabels, h->n);
    if (h->phase < SILA_PHASE_LOCAL || h->phase > SILA_PHASE_EVAL)
        return sila_err_set(err, -EINVAL, "frame: unknown phase %d", (int)h->phase);
    int r = check_targets_header(h, lim, err);
    return r ? r : check_image_header(h, lim, err);
}

/* Decodes the header at buf + PREFIX (hl bytes) into *h. */
static int decode_header(const uint8_t *buf, size_t hl, struct sila_frame_hdr *h,
                         struct sila_err *err)
{
    Sila__FrameHeader *ph = sila__frame_header__unpack(NULL, hl, buf + PREFIX);
    if (!ph)
        return sila_err_set(err, -EBADMSG, "frame: header of %zu bytes does not decode", hl);
    int r = 0;
    if (ph->version != SILA_WIRE_VERSION)
        r = sila_err_set(err, -EPROTO, "frame: wire protocol version %u, this sila speaks %u",
                         ph->version, SILA_WIRE_VERSION);
    else if (ph->n_shape != 4)
        r = sila_err_set(err, -EBADMSG, "frame: shape has %zu dimensions, expected 4", ph->n_shape);
    if (r == 0)
        *h = (struct sila_frame_hdr){.generation = ph->generation,
                                     .seq = ph->seq,
                                     .batch = ph->batch,
                                     .round = ph->round,
                                     .phase = (enum sila_phase)ph->phase,
                                     .gradient = ph->gradient,
                                     .n = ph->shape[0],
                                     .c = ph->shape[1],
                                     .h = ph->shape[2],
                                     .w = ph->shape[3],
                                     .nlabels = ph->nlabels,
                                     .target_classes = ph->target_classes,
                                     .image_size = ph->image_size,
                                     .dtype = (enum sila_dtype)ph->dtype};
    sila__frame_header__free_unpacked(ph, NULL);
    return r;
}

/* The values of n rows of C soft targets: each finite in [0, 1], each row
 * of zeros (no target yet) or a distribution. */
static int check_targets(const float *q, uint32_t n, uint32_t C, struct sila_err *err)
{
    for (uint32_t i = 0; i < n; i++) {
        const float *row = q + (size_t)i * C;
        if (!sila_all_finite(row, C))
            return sila_err_set(err, -EINVAL, "frame: soft targets of sample %u are not finite", i);
        double mass = 0.0;
        for (uint32_t j = 0; j < C; j++) {
            if (row[j] < 0.0f || row[j] > 1.0f)
                return sila_err_set(err, -EINVAL,
                                    "frame: soft target %u of sample %u is %g, outside [0, 1]", j,
                                    i, (double)row[j]);
            mass += row[j];
        }
        if (mass != 0.0 && fabs(mass - 1.0) > SILA_FRAME_TARGET_SUM)
            return sila_err_set(err, -EINVAL,
                                "frame: soft targets of sample %u sum to %g, expected 0 or 1", i,
                                mass);
    }
    return 0;
}

int sila_frame_decode(const uint8_t *buf, size_t len, const struct sila_frame_limits *lim,
                      struct sila_frame_view *ret_view, struct sila_err *err)
{
    if (len < PREFIX || memcmp(buf, MAGIC, sizeof MAGIC) != 0)
        return sila_err_set(err, -EBADMSG, "frame: %zu bytes without the SILF prefix", len);
    uint32_t hl;
    memcpy(&hl, buf + 4, sizeof hl);
    if (hl == 0 || hl > SILA_FRAME_MAX_HEADER || PREFIX + pad4(hl) > len)
        return sila_err_set(err, -EBADMSG, "frame: header length %u in a frame of %zu bytes", hl,
                            len);
    struct sila_frame_hdr h;
    int r = decode_header(buf, hl, &h, err);
    if (r || (r = check_limits(&h, lim, err)))
        return r;
    /* n <= max_n, c, h, w, target_classes and image_size equal the plan's:
     * the products cannot overflow */
    uint64_t want = PREFIX + pad4(hl) + sizeof(int32_t) * (uint64_t)h.nlabels +
                    sizeof(float) * (uint64_t)h.n * h.target_classes +
                    sizeof(float) * (uint64_t)h.n * h.image_size +
                    sila_dtype_size(h.dtype) * (uint64_t)h.n * h.c * h.h * h.w;
    if (want != len)
        return sila_err_set(err, -EBADMSG, "frame: %zu bytes, its header describes %llu", len,
                            (unsigned long long)want);
    const uint8_t *p = buf + PREFIX + pad4(hl);
    const int32_t *labels = h.nlabels ? (const int32_t *)p : NULL;
    for (uint32_t i = 0; labels && lim->nclasses && i < h.nlabels; i++)
        if (labels[i] < 0 || (uint32_t)labels[i] >= lim->nclasses)
            return sila_err_set(err, -EINVAL, "frame: label %d of sample %u outside [0, %u)",
                                labels[i], i, lim->nclasses);
    p += sizeof(int32_t) * h.nlabels;
    const float *targets = h.target_classes ? (const float *)p : NULL;
    if (targets && (r = check_targets(targets, h.n, h.target_classes, err)))
        return r;
    p += sizeof(float) * (size_t)h.n * h.target_classes;
    const float *image = h.image_size ? (const float *)p : NULL;
    if (image && !sila_all_finite(image, (size_t)h.n * h.image_size))
        return sila_err_set(err, -EINVAL, "frame: the network's input carried along is not finite");
    p += sizeof(float) * (size_t)h.n * h.image_size;
    const float *x = h.dtype == SILA_DTYPE_F32 ? (const float *)p : NULL;
    if (h.phase == SILA_PHASE_SNAPSHOT && !sila_all_finite(x, h.c))
        return sila_err_set(err, -EINVAL, "frame: a snapshot that is not finite");
    ret_view->hdr = h;
    ret_view->labels = labels;
    ret_view->targets = targets;
    ret_view->image = image;
    ret_view->x = x;
    ret_view->x16 = x ? NULL : (const uint16_t *)p;
    return 0;
}
