/* The aux-free model at the end of a run: the bodies of all modules, one
 * after the other, saved with the run's provenance. */
#ifndef SILA_REASSEMBLE_H
#define SILA_REASSEMBLE_H

#include <stddef.h>

#include "err.h"
#include "job.h"

/* The trained state of one module's body, borrowed. */
struct body_state {
    const float *params;
    size_t nparams;
    const float *buffers;
    size_t nbuffers;
};

/* Writes the model of job from its K = job->nmodules bodies to path, with
 * the final classifier accuracy in its provenance. Errors: -EINVAL when the
 * bodies do not add up to the network, -ENOMEM, or the file's. */
int reassemble_save(const struct sila_job *job, const struct body_state *bodies, const char *path,
                    double accuracy, struct sila_err *err);

#endif
