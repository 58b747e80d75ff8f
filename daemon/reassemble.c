/* Reassembly of the deployed model (see reassemble.h). Each module's body
 * tensors are the full network's tensors of its layers, in order, so the
 * bodies concatenate; a head's tensors follow its module's body in the
 * module state as they follow the body's layers in the exit's net. */
#include "reassemble.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heads.h"
#include "modelfile.h"
#include "plan.h"

/* The net of exit k (batch 1, unbound): the layers of modules 0..k, then
 * module k's aux head unless k is the last module. */
static int exit_net(const struct sila_job *job, int k, struct sila_net **ret, struct sila_err *err)
{
    const struct sila_job_module *m = &job->modules[k];
    int nbody = m->first_layer + m->nlayers;
    struct sila_layer_spec *specs = malloc(sizeof *specs * (size_t)(nbody + SILA_AUX_MAX_SPECS));
    if (!specs)
        return sila_err_set(err, -ENOMEM, "out of memory while reassembling the model");
    memcpy(specs, job->layers, sizeof *specs * (size_t)nbody);
    struct sila_shape z;
    int r = 0, nhead = 0;
    if (k < job->nmodules - 1 && (r = sila_plan_edge_shape(job, k + 1, &z, err)) == 0 &&
        sila_aux_head_specs(job, k, z, specs + nbody, &nhead))
        r = sila_err_set(err, -EINVAL, "reassembly: module %d's head takes no %dx%dx%d", k + 1, z.c,
                         z.h, z.w);
    if (r == 0)
        r = sila_net_new(ret, specs, nbody + nhead, job->input, 1, err);
    free(specs);
    return r;
}

/* The exit job->deploy names, given costs[k] of every exit: best_head
 * takes the exits within deploy_tolerance points of the best held-out
 * accuracy of last and of them the one of fewest multiply-adds (the
 * shallower on a tie); with no held-out figures, the classifier. */
static int choose(const struct sila_job *job, const struct report_eval *last,
                  const struct deploy_exit *costs)
{
    int K = job->nmodules;
    if (job->deploy > 0)
        return job->deploy - 1;
    if (job->deploy != SILA_DEPLOY_BEST_HEAD || !last || !report_eval_has_holdout(last))
        return K - 1;
    double best = 0.0;
    for (int k = 0; k < K; k++)
        best = fmax(best, last->holdout[k]);
    int pick = -1;
    for (int k = K - 1; k >= 0; k--)
        if (last->holdout[k] >= best - job->deploy_tolerance / 100.0 - 1e-12 &&
            (pick < 0 || costs[k].macs <= costs[pick].macs))
            pick = k;
    return pick;
}

/* Copies the floats of exit k's net out of the module states into params
 * and buffers (sized for the net): each module's body, then module k's
 * head. Errors: -EINVAL when the states do not hold them. */
static int gather(const struct sila_job *job, const struct body_state *bodies, int k,
                  const struct sila_net *net, float *params, float *buffers, struct sila_err *err)
{
    size_t np = 0, nb = 0;
    for (int j = 0; j <= k; j++) {
        memcpy(params + np, bodies[j].params, sizeof *params * bodies[j].nparams);
        memcpy(buffers + nb, bodies[j].buffers, sizeof *buffers * bodies[j].nbuffers);
        np += bodies[j].nparams, nb += bodies[j].nbuffers;
    }
    size_t hp = sila_net_param_count(net) - np, hb = sila_net_buffer_count(net) - nb;
    bool fits = np <= sila_net_param_count(net) && nb <= sila_net_buffer_count(net) &&
                bodies[k].all_params - bodies[k].nparams >= hp &&
                bodies[k].all_buffers - bodies[k].nbuffers >= hb &&
                (k < job->nmodules - 1 || (hp == 0 && hb == 0));
    if (!fits)
        return sila_err_set(err, -EINVAL,
                            "reassembly: modules 1-%d hold %zu parameters and %zu buffers, the "
                            "model ending at %s %d needs %zu and %zu",
                            k + 1, np, nb, k < job->nmodules - 1 ? "head" : "module", k + 1,
                            sila_net_param_count(net), sila_net_buffer_count(net));
    memcpy(params + np, bodies[k].params + bodies[k].nparams, sizeof *params * hp);
    memcpy(buffers + nb, bodies[k].buffers + bodies[k].nbuffers, sizeof *buffers * hb);
    return 0;
}

/* The provenance of the model ending at exit x. */
static void describe(const struct sila_job *job, const struct report_eval *last,
                     const struct deploy_exit *x, struct sila_model_info *info)
{
    int K = job->nmodules;
    *info = (struct sila_model_info){.seed = job->seed,
                                     .epochs = job->epochs,
                                     .accuracy = (float)x->test,
                                     .exit_module = x->module == K - 1 ? 0 : x->module + 1,
                                     .modules = K,
                                     .full_params = x->full_params,
                                     .full_macs = x->full_macs,
                                     .holdout = job->holdout,
                                     .nexits = last ? K : 0};
    for (int k = 0; last && k < K; k++) {
        info->exit_test[k] = (float)last->accuracy[k];
        info->exit_holdout[k] = (float)last->holdout[k];
    }
    sila_deploy_text(job->deploy, info->deploy, sizeof info->deploy);
    snprintf(info->job, sizeof info->job, "%s", job->name);
    snprintf(info->algorithm, sizeof info->algorithm, "%s", sila_algorithm_name(job->algorithm));
    snprintf(info->dataset_kind, sizeof info->dataset_kind, "%s",
             sila_dataset_kind_name(job->dataset));
    snprintf(info->dataset_path, sizeof info->dataset_path, "%s", job->data_dir);
    snprintf(info->sila_version, sizeof info->sila_version, "%s", SILA_VERSION);
}

int reassemble_save(const struct sila_job *job, const struct body_state *bodies,
                    const struct report_eval *last, const char *path, struct deploy_exit *ret,
                    struct sila_err *err)
{
    int K = job->nmodules, r = 0;
    struct deploy_exit costs[SILA_MAX_MODULES];
    struct sila_net *nets[SILA_MAX_MODULES] = {0};
    /* best_head compares every exit's cost; otherwise only the chosen
     * exit's and the whole network's are needed */
    for (int k = 0; k < K && r == 0; k++) {
        if (job->deploy != SILA_DEPLOY_BEST_HEAD && k != K - 1 && k != job->deploy - 1)
            continue;
        if ((r = exit_net(job, k, &nets[k], err)) == 0)
            costs[k] = (struct deploy_exit){.module = k,
                                            .params = sila_net_param_count(nets[k]),
                                            .macs = sila_net_macs(nets[k]),
                                            .test = last ? last->accuracy[k] : NAN,
                                            .holdout = last ? last->holdout[k] : NAN};
    }
    float *params = NULL, *buffers = NULL;
    if (r)
        goto out;
    int k = choose(job, last, costs);
    *ret = costs[k];
    ret->full_params = costs[K - 1].params;
    ret->full_macs = costs[K - 1].macs;
    params = malloc(sizeof *params * (sila_net_param_count(nets[k]) + 1));
    buffers = malloc(sizeof *buffers * (sila_net_buffer_count(nets[k]) + 1));
    if (!params || !buffers) {
        r = sila_err_set(err, -ENOMEM, "out of memory while reassembling the model");
        goto out;
    }
    if ((r = gather(job, bodies, k, nets[k], params, buffers, err)))
        goto out;
    struct sila_model_info info;
    describe(job, last, ret, &info);
    struct sila_norm norm = sila_dataset_default_norm(job->dataset);
    struct sila_model_input input =
        sila_model_input_of_kind(job->dataset, job->input.c, job->nclasses, &norm);
    r = sila_model_save(path, nets[k], params, buffers, &info, &input, err);
out:
    free(params);
    free(buffers);
    for (int j = 0; j < K; j++)
        sila_net_free(nets[j]);
    return r;
}
