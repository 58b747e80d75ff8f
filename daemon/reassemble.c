/* Reassembly of the aux-free model (see reassemble.h). Each module's body
 * tensors are the full network's tensors of its layers, in order, so the
 * blocks concatenate. */
#include "reassemble.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelfile.h"

int reassemble_save(const struct sila_job *job, const struct body_state *bodies, const char *path,
                    double accuracy, struct sila_err *err)
{
    struct sila_net *net;
    int r = sila_net_new(&net, job->layers, job->nlayers, job->input, 1, err);
    if (r)
        return r;
    size_t np = 0, nb = 0;
    for (int k = 0; k < job->nmodules; k++)
        np += bodies[k].nparams, nb += bodies[k].nbuffers;
    float *params = NULL, *buffers = NULL;
    if (np != sila_net_param_count(net) || nb != sila_net_buffer_count(net)) {
        r = sila_err_set(err, -EINVAL,
                         "reassembly: modules hold %zu parameters and %zu buffers, the network "
                         "%zu and %zu",
                         np, nb, sila_net_param_count(net), sila_net_buffer_count(net));
        goto out;
    }
    params = malloc(sizeof *params * (np + 1));
    buffers = malloc(sizeof *buffers * (nb + 1));
    if (!params || !buffers) {
        r = sila_err_set(err, -ENOMEM, "out of memory while reassembling the model");
        goto out;
    }
    np = nb = 0;
    for (int k = 0; k < job->nmodules; k++) {
        memcpy(params + np, bodies[k].params, sizeof *params * bodies[k].nparams);
        memcpy(buffers + nb, bodies[k].buffers, sizeof *buffers * bodies[k].nbuffers);
        np += bodies[k].nparams, nb += bodies[k].nbuffers;
    }
    struct sila_model_info info = {
        .seed = job->seed, .epochs = job->epochs, .accuracy = (float)accuracy};
    snprintf(info.job, sizeof info.job, "%s", job->name);
    snprintf(info.algorithm, sizeof info.algorithm, "%s", sila_algorithm_name(job->algorithm));
    snprintf(info.dataset_kind, sizeof info.dataset_kind, "%s",
             sila_dataset_kind_name(job->dataset));
    snprintf(info.dataset_path, sizeof info.dataset_path, "%s", job->data_dir);
    snprintf(info.sila_version, sizeof info.sila_version, "%s", SILA_VERSION);
    r = sila_model_save(path, net, params, buffers, &info, err);
out:
    free(params);
    free(buffers);
    sila_net_free(net);
    return r;
}
