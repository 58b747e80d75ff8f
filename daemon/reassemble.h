/* The model at the end of a run: the bodies of the modules, one after the
 * other, ending at the classifier or at one module's aux head (job.deploy),
 * saved with the run's provenance. */
#ifndef SILA_REASSEMBLE_H
#define SILA_REASSEMBLE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "job.h"
#include "report.h"

/* The trained state of one module, borrowed: nparams body parameters then,
 * for a module with a head, the head's, all_params in all; the same for
 * buffers. A head's floats follow the body's directly whenever a job may
 * deploy it (job_check.c refuses a deployed head behind MAN). */
struct body_state {
    const float *params;
    size_t nparams, all_params;
    const float *buffers;
    size_t nbuffers, all_buffers;
};

/* Writes the model of job from its K = job->nmodules module states to
 * path, with its dataset's input record, ending at the exit job->deploy
 * names; best_head chooses from last,
 * the run's last evaluation (NULL: none, and the classifier it is). The
 * exit is written into *ret. Errors: -EINVAL when the states do not add up
 * to the network, -ENOMEM, or the file's; err says which. */
int reassemble_save(const struct sila_job *job, const struct body_state *bodies,
                    const struct report_eval *last, const char *path, struct deploy_exit *ret,
                    struct sila_err *err);

#endif
