/* Checkpoint files and their manifest (see checkpoint.h). */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sealed.h"
#include "sila.pb-c.h"

#define FORMAT 1u
static const char MAGIC[8] = {'S', 'I', 'L', 'A', 'C', 'K', 'P', 'T'};

static int ckpt_dir(const char *out_dir, char *dir, size_t len, struct sila_err *err)
{
    snprintf(dir, len, "%s/checkpoints", out_dir);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return sila_err_set(err, -errno, "%s: cannot create: %s", dir, strerror(errno));
    return 0;
}

/* Removes every checkpoint but the newest and the one before it. */
static void prune(const char *dir, uint64_t prev, uint64_t newest)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned long long step;
        char tail[8], path[SILA_PATH_MAX];
        if (sscanf(e->d_name, "step-%10llu.ckp%1s", &step, tail) != 2 || step == prev ||
            step == newest)
            continue;
        if (sila_path_join(path, dir, e->d_name, NULL) == 0)
            unlink(path);
    }
    closedir(d);
}

static int read_manifest(const char *dir, char *name, size_t len, uint64_t *ret_step,
                         struct sila_err *err);

bool checkpoint_due(const struct sila_job *job, uint64_t done, uint64_t total, double since_last_s)
{
    if (done == 0 || done >= total)
        return false;
    if (job->checkpoint_every && done % (uint64_t)job->checkpoint_every == 0)
        return true;
    return job->checkpoint_minutes > 0 && since_last_s >= 60.0 * job->checkpoint_minutes;
}

struct checkpoint checkpoint_at(uint64_t step, struct report *rep, const struct sila_rng *aug,
                                int K)
{
    struct checkpoint c = {.step = step,
                           .metrics_bytes = report_metrics_bytes(rep),
                           .evals = rep->evals,
                           .nevals = rep->nevals,
                           .K = K};
    memcpy(c.aug_rng, aug->s, sizeof c.aug_rng);
    return c;
}

int checkpoint_write(const char *out_dir, const struct sila_job *job, const struct checkpoint *c,
                     char *ret_path, size_t len, struct sila_err *err)
{
    char dir[SILA_PATH_MAX];
    int r = ckpt_dir(out_dir, dir, sizeof dir, err);
    if (r)
        return r;
    uint8_t hash[SILA_PLAN_HASH_BYTES];
    sila_job_plan_hash(job, hash);
    Sila__Checkpoint ck = SILA__CHECKPOINT__INIT;
    ck.plan_hash.data = hash;
    ck.plan_hash.len = sizeof hash;
    ck.step = c->step;
    ck.aug_rng = (uint64_t *)c->aug_rng;
    ck.n_aug_rng = 4;
    ck.metrics_bytes = c->metrics_bytes;
    char created[32];
    time_t now = time(NULL);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    ck.created = created;
    Sila__ModuleState ms[SILA_MAX_MODULES], *msp[SILA_MAX_MODULES];
    Sila__Evaluation *ev = calloc(c->nevals + 1, sizeof *ev);
    Sila__Evaluation **evp = calloc(c->nevals + 1, sizeof *evp);
    uint8_t *buf = NULL;
    r = -ENOMEM;
    if (!ev || !evp)
        goto out;
    for (size_t i = 0; i < c->nevals; i++) {
        sila__evaluation__init(&ev[i]);
        ev[i].epoch = (uint32_t)c->evals[i].epoch;
        ev[i].step = c->evals[i].step;
        ev[i].train_s = c->evals[i].train_s;
        ev[i].accuracy = (double *)c->evals[i].accuracy;
        ev[i].n_accuracy = (size_t)c->K;
        ev[i].holdout = (double *)c->evals[i].holdout;
        ev[i].n_holdout = report_eval_has_holdout(&c->evals[i]) ? (size_t)c->K : 0;
        evp[i] = &ev[i];
    }
    ck.evaluations = evp;
    ck.n_evaluations = c->nevals;
    for (int k = 0; k < c->K; k++) {
        const struct checkpoint_module *m = &c->mods[k];
        sila__module_state__init(&ms[k]);
        ms[k].module = (uint32_t)k + 1;
        ms[k].params = m->layout.params;
        ms[k].optimizer = m->layout.optimizer;
        ms[k].buffers = m->layout.buffers;
        ms[k].body_params = m->layout.body_params;
        ms[k].body_buffers = m->layout.body_buffers;
        ms[k].counters = (uint64_t *)m->counters;
        ms[k].n_counters = SILA_MODULE_COUNTERS;
        ms[k].state = m->state;
        ms[k].n_state = m->layout.params + m->layout.optimizer + m->layout.buffers;
        msp[k] = &ms[k];
    }
    ck.modules = msp;
    ck.n_modules = (size_t)c->K;
    ck.collab_targets = c->collab;
    ck.n_collab_targets = c->ncollab;
    size_t n = sila__checkpoint__get_packed_size(&ck);
    if (!(buf = malloc(SILA_SEALED_HEADER + n)))
        goto out;
    sila__checkpoint__pack(&ck, buf + SILA_SEALED_HEADER);
    snprintf(ret_path, len, "%s/step-%010llu.ckpt", dir, (unsigned long long)c->step);
    if ((r = sila_sealed_write(ret_path, MAGIC, FORMAT, buf, n, err)))
        goto out;
    /* the manifest names the new checkpoint only once it is whole on disk */
    char manifest[SILA_PATH_MAX], line[64], prev_name[64];
    uint64_t prev = c->step;
    struct sila_err ignored;
    read_manifest(dir, prev_name, sizeof prev_name, &prev, &ignored);
    if ((r = sila_path_join(manifest, dir, "MANIFEST", err)))
        goto out;
    int ll = snprintf(line, sizeof line, "step-%010llu.ckpt\n", (unsigned long long)c->step);
    if ((r = sila_write_atomic(manifest, (const uint8_t *)line, (size_t)ll, err)))
        goto out;
    prune(dir, prev, c->step);
out:
    if (r == -ENOMEM)
        sila_err_set(err, r, "out of memory while writing a checkpoint");
    free(buf);
    free(ev);
    free(evp);
    return r;
}

bool checkpoint_recorded(const char *out_dir)
{
    char dir[SILA_PATH_MAX], manifest[SILA_PATH_MAX];
    return sila_path_join(dir, out_dir, "checkpoints", NULL) == 0 &&
           sila_path_join(manifest, dir, "MANIFEST", NULL) == 0 && access(manifest, F_OK) == 0;
}

static int read_manifest(const char *dir, char *name, size_t len, uint64_t *ret_step,
                         struct sila_err *err)
{
    char path[SILA_PATH_MAX];
    int r = sila_path_join(path, dir, "MANIFEST", err);
    if (r)
        return r;
    FILE *f = fopen(path, "r");
    if (!f)
        return sila_err_set(err, errno == ENOENT ? -ENOENT : -errno, "%s: %s", path,
                            errno == ENOENT ? "no checkpoint recorded" : strerror(errno));
    char line[128] = "";
    unsigned long long step;
    char tail[8];
    bool ok = fgets(line, sizeof line, f) && sscanf(line, "step-%10llu.ckp%1s", &step, tail) == 2;
    fclose(f);
    if (!ok)
        return sila_err_set(err, -EINVAL, "%s: not a checkpoint manifest", path);
    snprintf(name, len, "step-%010llu.ckpt", step);
    *ret_step = step;
    return 0;
}

static int from_proto(const Sila__Checkpoint *ck, const struct sila_job *job, struct checkpoint *c,
                      const char *path, struct sila_err *err)
{
    uint8_t hash[SILA_PLAN_HASH_BYTES];
    sila_job_plan_hash(job, hash);
    if (ck->plan_hash.len != sizeof hash || memcmp(ck->plan_hash.data, hash, sizeof hash))
        return sila_err_set(err, -EINVAL,
                            "%s: a checkpoint of another plan than %s and its "
                            "--set overrides",
                            path, job->path);
    if (ck->n_modules != (size_t)job->nmodules || ck->n_aug_rng != 4)
        return sila_err_set(err, -EINVAL, "%s: %zu modules, the job has %d", path, ck->n_modules,
                            job->nmodules);
    c->step = ck->step;
    c->metrics_bytes = ck->metrics_bytes;
    memcpy(c->aug_rng, ck->aug_rng, sizeof c->aug_rng);
    c->K = job->nmodules;
    c->evals = calloc(ck->n_evaluations + 1, sizeof *c->evals);
    if (!c->evals)
        return sila_err_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < ck->n_evaluations; i++) {
        const Sila__Evaluation *e = ck->evaluations[i];
        if (e->n_accuracy != (size_t)c->K || (e->n_holdout && e->n_holdout != (size_t)c->K))
            return sila_err_set(err, -EINVAL, "%s: an evaluation of %zu heads (%zu held out)", path,
                                e->n_accuracy, e->n_holdout);
        struct report_eval *ev = &c->evals[i];
        *ev = (struct report_eval){.epoch = (int)e->epoch, .step = e->step, .train_s = e->train_s};
        for (int k = 0; k < c->K; k++) {
            ev->accuracy[k] = e->accuracy[k];
            ev->holdout[k] = e->n_holdout ? e->holdout[k] : NAN;
        }
        c->nevals++;
    }
    for (int k = 0; k < c->K; k++) {
        const Sila__ModuleState *ms = ck->modules[k];
        uint64_t n = ms->params + ms->optimizer + ms->buffers;
        if (ms->module != (uint32_t)k + 1 || ms->n_counters != SILA_MODULE_COUNTERS ||
            ms->n_state != n || ms->body_params > ms->params || ms->body_buffers > ms->buffers)
            return sila_err_set(err, -EINVAL, "%s: module %d's state is inconsistent", path, k + 1);
        struct checkpoint_module *m = &c->mods[k];
        m->layout = (struct sila_module_layout){ms->params, ms->optimizer, ms->buffers,
                                                ms->body_params, ms->body_buffers};
        memcpy(m->counters, ms->counters, sizeof m->counters);
        if (!(m->state = malloc(sizeof *m->state * (n + 1))))
            return sila_err_set(err, -ENOMEM, "out of memory");
        memcpy(m->state, ms->state, sizeof *m->state * n);
    }
    if (ck->n_collab_targets) {
        if (!(c->collab = malloc(sizeof *c->collab * ck->n_collab_targets)))
            return sila_err_set(err, -ENOMEM, "out of memory");
        memcpy(c->collab, ck->collab_targets, sizeof *c->collab * ck->n_collab_targets);
        c->ncollab = ck->n_collab_targets;
    }
    return 0;
}

int checkpoint_read_latest(const char *dir, const struct sila_job *job, struct checkpoint *c,
                           char *ret_path, size_t len, struct sila_err *err)
{
    *c = (struct checkpoint){0};
    char cdir[SILA_PATH_MAX], name[64];
    uint64_t step;
    snprintf(cdir, sizeof cdir, "%s/checkpoints", dir);
    int r = read_manifest(cdir, name, sizeof name, &step, err);
    if (r)
        return r;
    snprintf(ret_path, len, "%s/%s", cdir, name);
    uint8_t *buf;
    size_t n;
    if ((r = sila_sealed_read(ret_path, MAGIC, FORMAT, "checkpoint", &buf, &n, err)))
        return r;
    Sila__Checkpoint *ck = sila__checkpoint__unpack(NULL, n, buf + SILA_SEALED_HEADER);
    if (!ck)
        r = sila_err_set(err, -EINVAL, "%s: payload is not a sila.Checkpoint", ret_path);
    else
        r = from_proto(ck, job, c, ret_path, err);
    if (ck)
        sila__checkpoint__free_unpacked(ck, NULL);
    free(buf);
    if (r)
        checkpoint_free(c);
    return r;
}

int checkpoint_check_module(const struct checkpoint *c, const char *path, int k,
                            const struct sila_module_layout *m, struct sila_err *err)
{
    const struct sila_module_layout *l = &c->mods[k].layout;
    if (l->params != m->params || l->optimizer != m->optimizer || l->buffers != m->buffers ||
        l->body_params != m->body_params || l->body_buffers != m->body_buffers)
        return sila_err_set(err, -EINVAL,
                            "%s: module %d holds %zu parameters, %zu optimizer and %zu buffer "
                            "floats; the job's module %zu, %zu and %zu",
                            path, k + 1, l->params, l->optimizer, l->buffers, m->params,
                            m->optimizer, m->buffers);
    return 0;
}

void checkpoint_free(struct checkpoint *c)
{
    for (int k = 0; k < SILA_MAX_MODULES; k++)
        free(c->mods[k].state);
    free(c->evals);
    free(c->collab);
    *c = (struct checkpoint){0};
}
