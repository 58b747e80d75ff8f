/* The modules' states, collected from the workers once the pipeline is
 * drained: for a checkpoint, or at the end for the reassembled model. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "coord_state.h"
#include "module.h"
#include "reassemble.h"

/* Asks every module for its whole state, for a checkpoint or for the end. */
static void collect(struct coord *c, bool for_checkpoint)
{
    c->collecting = true;
    c->collect_for_checkpoint = for_checkpoint;
    for (int k = 0; k < c->K; k++) {
        Sila__Collect col = SILA__COLLECT__INIT;
        col.module = (uint32_t)k + 1;
        Sila__Control m = SILA__CONTROL__INIT;
        m.msg_case = SILA__CONTROL__MSG_COLLECT;
        m.collect = &col;
        if (coord_peer_send(c, c->peers[c->owner[k]], &m, NULL, 0))
            return;
    }
}

void coord_check_drained(struct coord *c)
{
    bool stop = c->evaluations_left == 0 || c->stop_requested;
    if ((!stop && !c->ckpt_pending) || c->collecting || c->finished || c->halted)
        return;
    uint64_t fed = c->feeder.next_pos;
    for (int k = 0; k < c->K; k++)
        if (c->done[k] < fed)
            return;
    collect(c, !stop);
}

static void save_and_stop(struct coord *c)
{
    struct body_state bodies[SILA_MAX_MODULES];
    for (int k = 0; k < c->K; k++) {
        const struct checkpoint_module *m = &c->collected[k];
        bodies[k] = (struct body_state){m->state,
                                        m->layout.body_params,
                                        m->layout.params,
                                        m->state + m->layout.params + m->layout.optimizer,
                                        m->layout.body_buffers,
                                        m->layout.buffers};
    }
    char path[SILA_PATH_MAX];
    snprintf(path, sizeof path, "%s/model.sila", c->out_dir);
    struct deploy_exit x;
    int r = reassemble_save(c->job, bodies, report_last_eval(&c->run->rep), path, &x, c->err);
    if (r) {
        coord_finish(c, r);
        return;
    }
    report_saved(&c->run->rep, path, &x);
    for (int k = 0; k < c->K; k++) { /* in the order of the modules */
        const struct peer *p = c->peers[c->owner[k]];
        if (p->first == k)
            report_worker(&c->run->rep, &p->summary, c->samples[k]);
    }
    coord_finish(c, 0);
}

/* Frees the module states collected so far and ends the collection. */
void coord_drop_collected(struct coord *c)
{
    for (int k = 0; k < c->K; k++) {
        free(c->collected[k].state);
        c->collected[k].state = NULL;
    }
    c->states = 0;
    c->collecting = false;
}

/* Writes the collected states as a checkpoint and lets the feeding go on. */
static void write_checkpoint(struct coord *c)
{
    uint64_t step = c->ckpt_step;
    /* the feeding stopped there: its augmentation RNG is at the boundary */
    struct checkpoint ck = checkpoint_at(step, &c->run->rep, &c->run->feed.aug_rng, c->K);
    memcpy(ck.mods, c->collected, sizeof *ck.mods * (size_t)c->K);
    ck.collab = c->run->collab.q; /* every step fed is learned: drained */
    ck.ncollab = collab_floats(&c->run->collab);
    char path[SILA_PATH_MAX];
    struct sila_err e;
    if (checkpoint_write(c->out_dir, c->job, &ck, path, sizeof path, &e) == 0) {
        report_checkpoint(&c->run->rep, path, step);
        snprintf(c->last_checkpoint, sizeof c->last_checkpoint, "%s", path);
        rpc_refresh(&c->rpc);
    } else
        fprintf(stderr, "silad: checkpoint after step %llu not written: %s\n",
                (unsigned long long)step, e.msg);
    coord_drop_collected(c);
    c->ckpt_pending = false;
    c->feeder.last_checkpoint = sila_clock_s();
    coord_feed_pump(c);
}

void coord_on_state(struct coord *c, struct peer *p, const Sila__ModuleState *st, const float *tail)
{
    int k = (int)st->module - 1;
    if (c->halted)
        return; /* of a collection a lost worker interrupted: asked for again */
    if (!c->collecting || k < p->first || k > p->last || c->collected[k].state ||
        st->body_params != c->body_params[k] || st->body_buffers != c->body_buffers[k] ||
        st->n_counters != SILA_MODULE_COUNTERS) {
        char mods[32];
        coord_fail(c, -EPROTO,
                   "the worker for %s sent an unexpected or inconsistent state of module %u",
                   sila_modules_text(p->first, p->last, mods, sizeof mods), st->module);
        return;
    }
    struct checkpoint_module *m = &c->collected[k];
    m->layout = (struct sila_module_layout){st->params, st->optimizer, st->buffers, st->body_params,
                                            st->body_buffers};
    size_t n = st->params + st->optimizer + st->buffers;
    m->state = malloc(sizeof *tail * (n + 1));
    if (!m->state) {
        coord_fail(c, -ENOMEM, "out of memory for module %d's state", k + 1);
        return;
    }
    memcpy(m->state, tail, sizeof *tail * n);
    memcpy(m->counters, st->counters, sizeof m->counters);
    p->summary = (struct worker_summary){p->first,     p->last,       st->active_s,   st->busy_s,
                                         st->global_s, st->bytes_out, st->peak_rss_kb};
    if (++c->states < c->K)
        return;
    if (c->collect_for_checkpoint)
        write_checkpoint(c);
    else
        save_and_stop(c);
}
