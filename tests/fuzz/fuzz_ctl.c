/* Fuzz target: control frames (common/wire/ctl.h). */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    struct sila_ctl_msg m;
    struct sila_err err;
    if (sila_ctl_decode(buf, size, &m, &err) == 0) {
        volatile float sum = 0;
        for (size_t i = 0; i < m.ntail; i++)
            sum += m.tail[i];
        (void)sum;
        sila__control__free_unpacked(m.msg, NULL);
    }
    free(buf);
    return 0;
}
