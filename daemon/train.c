/* In-process training loop: data order, the local/global schedule, the
 * evaluation of every head, and the reassembly of the model (see train.h). */
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset.h"
#include "modelfile.h"
#include "module.h"
#include "report.h"

struct trainer {
    const struct sila_job *job;
    struct sila_dataset train, test;
    struct sila_norm norm;
    struct sila_module *mods[SILA_MAX_MODULES];
    int K;
    float *x;            /* (batch, input) */
    int32_t *labels;     /* (batch) */
    uint32_t *order;     /* (ntrain) */
    float *din[SILA_MAX_MODULES]; /* global steps: d(loss)/d(input of module k), k >= 1 */
    uint32_t ntrain, ntest;
    uint64_t steps_per_epoch;
    struct sila_sched_cfg sched; /* the job's, with step counts filled in */
    struct sila_rng aug_rng;
    struct report rep;
};

/* Step t is global under e2e always, never under local, and under pgl iff
 * t mod P >= P - G, with G growing from 0 to 2G over the run under
 * global_ramp, or t is among the last global_epoch_end steps of its epoch. */
static bool step_is_global(const struct trainer *tr, uint64_t t)
{
    const struct sila_job *job = tr->job;
    if (job->algorithm != SILA_ALGO_PGL)
        return job->algorithm == SILA_ALGO_E2E;
    uint64_t s = t % tr->steps_per_epoch;
    if (s + (uint64_t)job->global_epoch_end >= tr->steps_per_epoch)
        return true;
    long G = job->global_steps;
    if (job->global_ramp) {
        G = lround(2.0 * G * (double)(t + 1) / (double)tr->sched.total_steps);
        G = G > job->period ? job->period : G;
    }
    return (long)(t % (uint64_t)job->period) >= job->period - G;
}

/* mu of step t: local_weight, decaying linearly to 0 under local_weight_decay. */
static float local_weight(const struct trainer *tr, uint64_t t)
{
    const struct sila_job *job = tr->job;
    if (job->algorithm != SILA_ALGO_PGL)
        return 0.0f;
    if (!job->local_weight_decay)
        return job->local_weight;
    return job->local_weight * (float)(1.0 - (double)t / (double)tr->sched.total_steps);
}

static void local_step(struct trainer *tr, int B, float lr)
{
    const float *x = tr->x;
    for (int k = 0; k < tr->K; k++) {
        struct sila_step_stats st;
        x = sila_module_local_step(tr->mods[k], x, tr->labels, B, lr, tr->job->label_smoothing,
                                   &st);
        report_step_loss(&tr->rep, k, st.loss);
    }
}

static void global_step(struct trainer *tr, int B, float lr, float mu)
{
    const float *in[SILA_MAX_MODULES];
    const float *x = tr->x;
    for (int k = 0; k < tr->K; k++) {
        in[k] = x;
        x = sila_module_global_forward(tr->mods[k], x, B);
    }
    const float *dz = NULL;
    for (int k = tr->K - 1; k >= 0; k--) {
        struct sila_step_stats st;
        sila_module_global_backward(tr->mods[k], in[k], dz, tr->labels, B, lr,
                                    tr->job->label_smoothing, mu, k ? tr->din[k] : NULL, &st);
        if (!dz || mu > 0.0f || tr->job->heads_in_global)
            report_step_loss(&tr->rep, k, st.loss);
        dz = tr->din[k];
    }
}

/* Accuracy of every head (the last: the classifier) on the test split. */
static void evaluate(struct trainer *tr, double *accuracy)
{
    long correct[SILA_MAX_MODULES] = { 0 };
    int B = tr->job->batch;
    uint32_t *idx = tr->order; /* reused: evaluation runs between epochs */
    for (uint32_t i = 0; i < tr->ntest; i++)
        idx[i] = i;
    for (uint32_t s = 0; s < tr->ntest; s += (uint32_t)B) {
        int nb = tr->ntest - s < (uint32_t)B ? (int)(tr->ntest - s) : B;
        sila_dataset_batch(&tr->test, idx + s, nb, &tr->norm, NULL, NULL, tr->x, tr->labels);
        const float *x = tr->x;
        for (int k = 0; k < tr->K; k++) {
            int c;
            x = sila_module_eval(tr->mods[k], x, tr->labels, nb, &c);
            correct[k] += c;
        }
    }
    for (int k = 0; k < tr->K; k++)
        accuracy[k] = tr->ntest ? (double)correct[k] / tr->ntest : 0.0;
}

static void train_epoch(struct trainer *tr, int epoch)
{
    const struct sila_job *job = tr->job;
    struct sila_augment aug = { job->augment_crop, job->augment_flip };
    sila_dataset_epoch_order(tr->order, tr->train.n, job->seed, (uint64_t)epoch);
    for (uint64_t s = 0; s < tr->steps_per_epoch; s++) {
        uint64_t t = (uint64_t)epoch * tr->steps_per_epoch + s;
        sila_dataset_batch(&tr->train, tr->order + s * job->batch, job->batch, &tr->norm, &aug,
                           &tr->aug_rng, tr->x, tr->labels);
        float lr = sila_sched_lr(&tr->sched, t);
        bool global = step_is_global(tr, t);
        if (global)
            global_step(tr, job->batch, lr, local_weight(tr, t));
        else
            local_step(tr, job->batch, lr);
        report_step(&tr->rep, epoch, s, job->batch, lr, global);
    }
}

static int open_data(struct trainer *tr, struct sila_err *err)
{
    const struct sila_job *job = tr->job;
    int r = sila_dataset_open(&tr->train, job->dataset, job->data_dir, true, err);
    if (r == 0)
        r = sila_dataset_open(&tr->test, job->dataset, job->data_dir, false, err);
    if (r)
        return r;
    if (job->train_limit && job->train_limit < tr->train.n)
        tr->train.n = job->train_limit; /* the first N samples; arrays stay valid */
    if (job->test_limit && job->test_limit < tr->test.n)
        tr->test.n = job->test_limit;
    tr->ntrain = tr->train.n;
    tr->ntest = tr->test.n;
    if (tr->ntrain < (uint32_t)job->batch)
        return sila_err_set(err, -EINVAL, "%s: %u training samples, fewer than one batch of %d",
                            job->path, tr->ntrain, job->batch);
    tr->norm = sila_dataset_default_norm(job->dataset);
    /* Every step takes a full batch: the last partial batch of an epoch is
     * dropped, so all steps weigh the same and BN never sees tiny batches. */
    tr->steps_per_epoch = tr->ntrain / (uint32_t)job->batch;
    return 0;
}

static void plan_schedule(struct trainer *tr)
{
    const struct sila_job *job = tr->job;
    tr->sched = job->sched;
    tr->sched.total_steps = (uint64_t)job->epochs * tr->steps_per_epoch;
    tr->sched.warmup_steps = (uint64_t)llround(job->warmup_epochs * tr->steps_per_epoch);
    tr->sched.step_size = (uint64_t)llround(job->step_epochs * tr->steps_per_epoch);
}

static int build_modules(struct trainer *tr, struct sila_err *err)
{
    const struct sila_job *job = tr->job;
    if (job->nmodules > SILA_MAX_MODULES)
        return sila_err_set(err, -EINVAL, "%s: %d modules, at most %d", job->path, job->nmodules,
                            SILA_MAX_MODULES);
    tr->K = job->nmodules;
    for (int k = 0; k < tr->K; k++) {
        int r = sila_module_new(&tr->mods[k], job, k, job->batch, err);
        if (r)
            return r;
        if (k == 0)
            continue;
        size_t in = sila_shape_size(sila_net_in_shape(tr->mods[k]->body));
        tr->din[k] = malloc(sizeof *tr->din[k] * in * job->batch);
        if (!tr->din[k])
            return sila_err_set(err, -ENOMEM, "out of memory");
    }
    size_t in = sila_shape_size(job->input);
    uint32_t norder = tr->ntrain > tr->ntest ? tr->ntrain : tr->ntest;
    tr->x = malloc(sizeof *tr->x * in * job->batch);
    tr->labels = malloc(sizeof *tr->labels * job->batch);
    tr->order = malloc(sizeof *tr->order * norder);
    if (!tr->x || !tr->labels || !tr->order)
        return sila_err_set(err, -ENOMEM, "out of memory");
    sila_rng_seed(&tr->aug_rng, job->seed, 1);
    return 0;
}

static void trainer_fini(struct trainer *tr)
{
    for (int k = 0; k < tr->K; k++) {
        sila_module_free(tr->mods[k]);
        free(tr->din[k]);
    }
    free(tr->x);
    free(tr->labels);
    free(tr->order);
    sila_dataset_fini(&tr->train);
    sila_dataset_fini(&tr->test);
    report_close(&tr->rep);
}

/* The aux-free model: the bodies of all modules, one after the other. Each
 * module's tensors are the full net's tensors of its layers, in order, so
 * the blocks concatenate. */
static int save_model(struct trainer *tr, const char *path, double accuracy, struct sila_err *err)
{
    const struct sila_job *job = tr->job;
    struct sila_net *net;
    int r = sila_net_new(&net, job->layers, job->nlayers, job->input, 1, err);
    if (r)
        return r;
    float *params = malloc(sizeof *params * (sila_net_param_count(net) + 1));
    float *buffers = malloc(sizeof *buffers * (sila_net_buffer_count(net) + 1));
    size_t np = 0, nbuf = 0;
    r = -ENOMEM;
    if (!params || !buffers)
        goto out;
    for (int k = 0; k < tr->K; k++) {
        struct sila_module *m = tr->mods[k];
        memcpy(params + np, m->params, sizeof *params * m->body_params);
        memcpy(buffers + nbuf, m->buffers, sizeof *buffers * m->body_buffers);
        np += m->body_params;
        nbuf += m->body_buffers;
    }
    r = -EINVAL;
    if (np != sila_net_param_count(net) || nbuf != sila_net_buffer_count(net))
        goto out;
    struct sila_model_info info = { .seed = job->seed, .epochs = job->epochs,
                                    .accuracy = (float)accuracy };
    snprintf(info.job, sizeof info.job, "%s", job->name);
    snprintf(info.algorithm, sizeof info.algorithm, "%s", sila_algorithm_name(job->algorithm));
    snprintf(info.dataset_kind, sizeof info.dataset_kind, "%s",
             sila_dataset_kind_name(job->dataset));
    snprintf(info.dataset_path, sizeof info.dataset_path, "%s", job->data_dir);
    snprintf(info.sila_version, sizeof info.sila_version, "%s", SILA_VERSION);
    r = sila_model_save(path, net, params, buffers, &info, err);
out:
    if (r == -ENOMEM)
        sila_err_set(err, r, "out of memory while reassembling the model");
    else if (r == -EINVAL)
        sila_err_set(err, r, "reassembly: module parameters do not add up to the network's");
    free(params);
    free(buffers);
    sila_net_free(net);
    return r;
}

static int make_dir(const char *dir, struct sila_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return sila_err_set(err, -errno, "%s: cannot create: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return sila_err_set(err, -errno, "%s: cannot create: %s", path, strerror(errno));
    return 0;
}

static int run(struct trainer *tr, const char *out_dir, struct sila_err *err)
{
    const struct sila_job *job = tr->job;
    char path[4096];
    int r;
    if ((r = open_data(tr, err)) || (r = build_modules(tr, err)) || (r = make_dir(out_dir, err)))
        return r;
    plan_schedule(tr);
    snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
    if ((r = report_open(&tr->rep, path, tr->K, job->epochs, tr->steps_per_epoch)))
        return sila_err_set(err, r, "%s: cannot create: %s", path, strerror(-r));
    printf("job %s: %s, %d modules, %u training samples, %d epochs of %llu steps, batch %d\n",
           job->name, sila_algorithm_name(job->algorithm), tr->K, tr->ntrain, job->epochs,
           (unsigned long long)tr->steps_per_epoch, job->batch);
    double accuracy[SILA_MAX_MODULES] = { 0 };
    for (int e = 0; e < job->epochs; e++) {
        train_epoch(tr, e);
        if ((e + 1) % job->eval_every == 0 || e + 1 == job->epochs) {
            evaluate(tr, accuracy);
            report_eval(&tr->rep, e, (uint64_t)(e + 1) * tr->steps_per_epoch, accuracy);
        }
    }
    snprintf(path, sizeof path, "%s/model.sila", out_dir);
    if ((r = save_model(tr, path, accuracy[tr->K - 1], err)))
        return r;
    printf("model saved to %s (test accuracy %.2f%%)\n", path, 100.0 * accuracy[tr->K - 1]);
    return 0;
}

int train_inproc(const struct sila_job *job, const char *out_dir, struct sila_err *err)
{
    struct trainer tr = { .job = job };
    int r = run(&tr, out_dir, err);
    trainer_fini(&tr);
    return r;
}
