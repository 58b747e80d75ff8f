/* Fuzz target: job files (common/io/job.h), parsed and checked from text. */
#include "fuzz.h"
#include "job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const overrides[] = {"job.epochs=1"};
    struct sila_job job;
    struct sila_err err;
    if (sila_job_parse(&job, "fuzz.ini", (const char *)data, size, overrides, 1, &err) == 0)
        sila_job_fini(&job);
    return 0;
}
