/* Batches of a run, in order (see feed.h). */
#include "feed.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

int feed_open(struct feed *f, const struct sila_job *job, struct sila_err *err)
{
    *f = (struct feed){.order.epoch = -1};
    int r = sila_dataset_open(&f->train, job->dataset, job->data_dir, true, err);
    if (r == 0)
        r = sila_dataset_open(&f->test, job->dataset, job->data_dir, false, err);
    if (r == 0)
        r = sila_plan_init(&f->plan, job, f->train.n, f->test.n, err);
    if (r)
        return r;
    f->norm = sila_dataset_default_norm(job->dataset);
    f->aug = (struct sila_augment){job->augment_crop, job->augment_flip};
    sila_rng_seed(&f->aug_rng, job->seed, 1);
    const struct sila_plan *pl = &f->plan;
    f->eval_idx = malloc(sizeof *f->eval_idx * (pl->ntest + pl->nholdout + 1));
    if (feed_order_init(&f->order, pl) || !f->eval_idx)
        return sila_err_set(err, -ENOMEM, "out of memory");
    for (uint32_t i = 0; i < pl->ntest; i++)
        f->eval_idx[i] = i;
    for (uint32_t i = 0; i < pl->nholdout; i++)
        f->eval_idx[pl->ntest + i] = pl->holdout_first + i;
    return 0;
}

void feed_close(struct feed *f)
{
    feed_order_fini(&f->order);
    free(f->eval_idx);
    sila_dataset_fini(&f->train);
    sila_dataset_fini(&f->test);
    *f = (struct feed){.order.epoch = -1};
}

int feed_order_init(struct feed_order *o, const struct sila_plan *plan)
{
    *o = (struct feed_order){.epoch = -1};
    o->idx = malloc(sizeof *o->idx * (plan->ntrain + 1));
    return o->idx ? 0 : -ENOMEM;
}

void feed_order_fini(struct feed_order *o)
{
    free(o->idx);
    *o = (struct feed_order){.epoch = -1};
}

const uint32_t *feed_order_step(struct feed_order *o, const struct sila_plan *plan, uint64_t t)
{
    int epoch = (int)(t / plan->steps_per_epoch);
    if (epoch != o->epoch) {
        sila_dataset_epoch_order(o->idx, plan->ntrain, plan->job->seed, (uint64_t)epoch);
        o->epoch = epoch;
    }
    return o->idx + t % plan->steps_per_epoch * (uint64_t)plan->job->batch;
}

const uint32_t *feed_train_batch(struct feed *f, uint64_t t, float *x, int32_t *labels)
{
    const struct sila_job *job = f->plan.job;
    const uint32_t *idx = feed_order_step(&f->order, &f->plan, t);
    sila_dataset_batch(&f->train, idx, job->batch, &f->norm, &f->aug, &f->aug_rng, x, labels);
    return idx;
}

int feed_eval_batch(const struct feed *f, uint32_t i, float *x, int32_t *labels)
{
    const struct sila_plan *pl = &f->plan;
    uint32_t B = (uint32_t)pl->job->batch;
    bool test = i < pl->test_batches;
    uint32_t s = test ? i * B : (i - pl->test_batches) * B, n = test ? pl->ntest : pl->nholdout;
    int nb = n - s < B ? (int)(n - s) : (int)B;
    sila_dataset_batch(test ? &f->test : &f->train, f->eval_idx + (test ? 0 : pl->ntest) + s, nb,
                       &f->norm, NULL, NULL, x, labels);
    return nb;
}
