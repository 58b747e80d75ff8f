/* Data frames: a batch of activations (or their gradients) with its labels
 * and, for the collab objective, its soft targets, and for a module that
 * reconstructs the network's input (InfoPro), that input, as it travels on
 * one pipeline edge. Layout (docs/protocol.md): magic "SILF", header length
 * (LE uint32), a sila.FrameHeader, zero padding to a multiple of 4, labels
 * (LE int32), soft targets, the input and the tensor (LE float32) raw.
 *
 * Encoding writes into a caller's buffer of sila_frame_size() bytes (so a
 * transport can hand over a buffer it allocated). Decoding never trusts the
 * bytes: it checks the length before anything else, decodes the header,
 * checks it against limits from the job's plan, and only then points into
 * the buffer. sila runs on little-endian hosts only (checked at build). */
#ifndef SILA_FRAME_H
#define SILA_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "half.h"

#define SILA_WIRE_VERSION 6u
#define SILA_FRAME_MAX_HEADER 256  /* bytes of encoded FrameHeader, at most */
#define SILA_FRAME_TARGET_SUM 1e-3 /* a soft target row sums to 1 within this */

enum sila_phase {
    SILA_PHASE_LOCAL = 1,
    SILA_PHASE_GLOBAL = 2,
    SILA_PHASE_EVAL = 3,
    SILA_PHASE_SNAPSHOT = 4, /* upstream: MAN's snapshot of a module's first unit, (1, floats,
                                1, 1), batch = its tag (docs/protocol.md) */
    SILA_PHASE_HELLO = 5,    /* a link's greeting (downstream) and its answer (upstream),
                                (1, 1, 1, 1), outside the edge's sequence (greet.h) */
};

struct sila_frame_hdr {
    uint32_t generation;
    uint64_t seq;
    uint64_t batch;
    uint32_t round; /* the plan's round (plan.h): of the step, or the evaluation closing it */
    enum sila_phase phase;
    bool gradient;
    uint32_t n, c, h, w;     /* tensor (n, c, h, w) */
    uint32_t nlabels;        /* 0 or n */
    uint32_t target_classes; /* 0, or collab's soft targets (n, target_classes) */
    uint32_t image_size;     /* 0, or the network's input (n, image_size) */
    enum sila_dtype dtype;   /* of the tensor's values */
};

/* What a receiving edge accepts, from the job's plan. */
struct sila_frame_limits {
    uint32_t max_n;        /* largest batch */
    uint32_t c, h, w;      /* exact per-sample shape on this edge */
    uint32_t nclasses;     /* labels must lie in [0, nclasses) */
    bool gradient;         /* the direction of this edge */
    bool collab;           /* the job uses collab: labelled training frames may carry
                              soft targets of nclasses */
    uint32_t image_size;   /* local training frames carry the network's input, this many
                              floats per sample (a module from here on reconstructs it);
                              0: no frame does */
    uint32_t snapshot;     /* MAN: a gradient edge's snapshots have this many floats, an
                              activation edge takes requests for them (1x1x1x1) when not 0 */
    enum sila_dtype dtype; /* of training frames' tensors; every other frame's is f32 */
};

/* The dtype of a frame of this phase on an edge of these limits: the
 * limits' for training frames (LOCAL, GLOBAL), f32 for every other. */
enum sila_dtype sila_frame_dtype(const struct sila_frame_limits *lim, enum sila_phase phase);

/* Bytes of the encoded frame. */
size_t sila_frame_size(const struct sila_frame_hdr *h);

/* Writes the frame into buf, which holds sila_frame_size(h) bytes; labels
 * (h->nlabels) may be NULL when nlabels is 0, targets (n*target_classes
 * floats) when target_classes is 0, image (n*image_size floats) when
 * image_size is 0; x holds n*c*h*w floats, written as h->dtype (rounded to
 * nearest, half.h). */
void sila_frame_encode(uint8_t *buf, const struct sila_frame_hdr *h, const int32_t *labels,
                       const float *targets, const float *image, const float *x);

/* A decoded frame: the header, and pointers INTO the decoded buffer (valid
 * as long as it is; 4-byte aligned when the buffer is). */
struct sila_frame_view {
    struct sila_frame_hdr hdr;
    const int32_t *labels; /* NULL when nlabels is 0 */
    const float *targets;  /* (n, target_classes), NULL when target_classes is 0 */
    const float *image;    /* (n, image_size), NULL when image_size is 0 */
    const float *x;        /* NULL when the tensor is in 16 bits: */
    const uint16_t *x16;   /* then its values as hdr.dtype (sila_dtype_unpack), else NULL */
};

/* Decodes and validates len bytes. Errors: -EBADMSG for anything that is
 * not a well-formed frame (bad magic, sizes, undecodable header), -EPROTO
 * for a wire version other than ours, -EINVAL for a frame that breaks the
 * limits (shape, batch, direction, labels, the dtype: the limits' on
 * training frames, f32 on the others; a greeting: 1x1x1x1 and bare;
 * a snapshot: only where the limits name its size, finite; soft targets:
 * allowed only with labels, outside evaluation, on a collab edge, of
 * nclasses; each value finite in [0, 1], each row a zero row or summing to
 * 1 within SILA_FRAME_TARGET_SUM; the input: on exactly the local training
 * frames of an edge whose limits name its size, finite); err names the
 * field and the expected and actual values. */
int sila_frame_decode(const uint8_t *buf, size_t len, const struct sila_frame_limits *lim,
                      struct sila_frame_view *ret_view, struct sila_err *err);

#endif
