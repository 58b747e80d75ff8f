/* The start-up every mode of silad shares (see startup.h). */
#include "startup.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "module.h"

/* The newest checkpoint under out_dir, each module's state checked against
 * the job's module (built for one sample to count its floats), its collab
 * table and augmentation RNG taken up; *rr: where the report resumes. */
static int take_checkpoint(struct startup *s, const struct sila_job *job, const char *out_dir,
                           struct report_resume *rr, struct sila_err *err)
{
    char path[SILA_PATH_MAX];
    struct checkpoint *c = &s->resume;
    int r = checkpoint_read_latest(out_dir, job, c, path, sizeof path, err);
    if (r)
        return r;
    for (int k = 0; k < job->nmodules; k++) {
        struct sila_module_layout l;
        if ((r = sila_module_job_layout(job, k, &l, err)) ||
            (r = checkpoint_check_module(c, path, k, &l, err)))
            return r;
    }
    if ((r = collab_restore(&s->collab, c->collab, c->ncollab, path, err)))
        return r;
    memcpy(s->feed.aug_rng.s, c->aug_rng, sizeof c->aug_rng);
    *rr = (struct report_resume){c->metrics_bytes, c->step, c->evals, c->nevals};
    printf("resuming from %s: %llu steps done\n", path, (unsigned long long)c->step);
    return 0;
}

int startup_open(struct startup *s, const struct sila_job *job, const char *out_dir, bool resume,
                 struct sila_err *err)
{
    *s = (struct startup){0};
    struct report_resume rr;
    int r = feed_open(&s->feed, job, err);
    if (r == 0)
        r = collab_open(&s->collab, job, s->feed.plan.ntrain, err);
    if (r == 0 && resume)
        r = take_checkpoint(s, job, out_dir, &rr, err);
    if (r == 0)
        r = report_open(&s->rep, out_dir, job->nmodules, job->epochs, s->feed.plan.steps_per_epoch,
                        resume ? &rr : NULL, err);
    return r;
}

void startup_close(struct startup *s)
{
    checkpoint_free(&s->resume);
    report_close(&s->rep);
    collab_close(&s->collab);
    feed_close(&s->feed);
}
