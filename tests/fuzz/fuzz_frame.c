/* Fuzz target: data frames (common/wire/frame.h) against a plan's limits,
 * those of an edge without and of an edge with the network's input, and of
 * an edge whose training frames are bfloat16. */
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "fuzz.h"
#include "kernels.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct sila_frame_limits lims[] = {
        {.max_n = 8, .c = 2, .h = 4, .w = 5, .nclasses = 10, .gradient = false, .collab = true},
        {.max_n = 8, .c = 2, .h = 4, .w = 5, .nclasses = 10, .collab = true, .image_size = 6},
        {.max_n = 8, .c = 2, .h = 4, .w = 5, .nclasses = 10, .dtype = SILA_DTYPE_BF16}};
    static float wide[8 * 2 * 4 * 5];
    uint8_t *buf = malloc(size ? size : 1); /* aligned, as a received frame is */
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    struct sila_frame_view v;
    struct sila_err err;
    for (int l = 0; l < 3; l++) {
        if (sila_frame_decode(buf, size, &lims[l], &v, &err) != 0)
            continue;
        /* read everything the view promises */
        size_t n = (size_t)v.hdr.n * v.hdr.c * v.hdr.h * v.hdr.w;
        if (v.x16) { /* as a worker widens it */
            sila_dtype_unpack(v.hdr.dtype, v.x16, wide, n);
            v.x = wide;
        }
        volatile float sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += v.x[i];
        for (uint32_t i = 0; i < v.hdr.nlabels; i++)
            sum += (float)v.labels[i];
        for (size_t i = 0; v.targets && i < (size_t)v.hdr.n * v.hdr.target_classes; i++)
            sum += v.targets[i];
        for (size_t i = 0; v.image && i < (size_t)v.hdr.n * v.hdr.image_size; i++)
            sum += v.image[i];
        (void)sum;
        (void)sila_all_finite(v.x, n);
    }
    free(buf);
    return 0;
}
