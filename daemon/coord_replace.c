/* Replacing a lost worker (docs/protocol.md, "Replacing a worker"): the
 * pipeline halts, the other workers keep their state, a replacement takes
 * the lost modules' newest checkpointed state, and the pipeline restarts as
 * a new generation from the oldest batch a module has not finished. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "coord_state.h"
#include "endpoint.h"

/* The address a replacement connects to, for the message that asks for
 * one: the base address, with this machine's name for a wildcard host
 * (--listen on 0.0.0.0 or *). */
static void connect_hint(const struct coord *c, char *out, size_t len)
{
    char host[256];
    if (!c->base.tcp || (strcmp(c->base.host, "0.0.0.0") && strcmp(c->base.host, "*")) ||
        gethostname(host, sizeof host) || !*host) {
        snprintf(out, len, "%s", c->base_url);
        return;
    }
    host[sizeof host - 1] = 0;
    snprintf(out, len, "tcp://%s:%d", host, c->base.port);
}

/* A worker is gone. Once the run has started, the pipeline halts and waits
 * for a replacement of the worker's modules (a collection under way is
 * dropped, and asked for again after the restart); the other workers keep
 * their state. Before the start the run fails instead. */
void coord_lose_peer(struct coord *c, struct peer *p, const char *why)
{
    if (c->finished || p->lost)
        return;
    char mods[32];
    sila_modules_text(p->first, p->last, mods, sizeof mods);
    if (!c->started) {
        coord_fail(c, -ETIMEDOUT, "the worker for %s on %s (pid %u) %s", mods, p->host, p->pid,
                   why);
        return;
    }
    if (c->collecting) /* collected again once the pipeline is whole */
        coord_drop_collected(c);
    p->lost = true;
    p->ready = p->halted = false;
    coord_close_control(p, false); /* closed: a replacement may take the address */
    char url[SILA_URL_MAX + 16];
    connect_hint(c, url, sizeof url);
    fprintf(stderr,
            "silad: the worker for %s on %s (pid %u, generation %u) %s: waiting for a "
            "replacement (silaworker --module %d-%d --connect %s)\n",
            mods, p->host, p->pid, p->gen, why, p->first + 1, p->last + 1, url);
    if (c->halted)
        return;
    c->halted = true;
    c->halted_since = sila_clock_s();
    c->phase = SILA__RUN_PHASE__RECOVERING;
    outbox_cancel(c->feeder.data); /* sent again after the restart */
    Sila__Halt h = SILA__HALT__INIT;
    h.pipeline = c->pipeline + 1;
    Sila__Control m = SILA__CONTROL__INIT;
    m.msg_case = SILA__CONTROL__MSG_HALT;
    m.halt = &h;
    for (int i = 0; i < c->npeers; i++)
        if (c->peers[i]->ready)
            coord_peer_send(c, c->peers[i], &m, NULL, 0);
}

/* A replacement is ready: its modules get their state from the run's
 * newest checkpoint, or keep their initial weights when there is none. */
void coord_restore_replacement(struct coord *c, struct peer *p)
{
    char mods[32], path[SILA_PATH_MAX];
    sila_modules_text(p->first, p->last, mods, sizeof mods);
    struct checkpoint ck;
    struct sila_err e;
    /* a checkpoint of this run: written by it, or the one it resumed */
    int r = *c->last_checkpoint || c->o->resume
                ? checkpoint_read_latest(c->out_dir, c->job, &ck, path, sizeof path, &e)
                : -ENOENT;
    if (r == -ENOENT) {
        printf("%s start again from their initial weights (no checkpoint yet)\n", mods);
        return;
    }
    if (r) {
        coord_fail(c, r, "cannot restore %s for their replacement: %s", mods, e.msg);
        return;
    }
    if (coord_restore_modules(c, &ck, p->first, p->last) == 0)
        printf("%s restored from %s (step %llu)\n", mods, path, (unsigned long long)ck.step);
    checkpoint_free(&ck);
}

/* Once every module has a ready worker and every old one has halted:
 * restarts the pipeline from the oldest batch the last module has not
 * finished, as a new generation of it. */
void coord_try_restart(struct coord *c)
{
    if (!c->halted || c->finished)
        return;
    for (int i = 0; i < c->npeers; i++)
        if (!c->peers[i]->ready || !c->peers[i]->halted)
            return;
    const struct peer *p0 = c->peers[c->owner[0]];
    char url[SILA_URL_MAX + 64];
    sila_endpoint_data(&c->base, 1, p0->host, url, sizeof url);
    bool reconnect = p0->fresh;
    /* from the oldest batch a module has not reported: the last module's,
     * or one a lost worker finished but whose report died with it */
    uint64_t from = c->done[c->K - 1];
    for (int k = 0; k < c->K; k++)
        from = c->done[k] < from ? c->done[k] : from;
    c->pipeline++;
    for (int i = 0; i < c->npeers; i++)
        if (coord_send_start(c, c->peers[i]))
            return;
    for (int i = 0; i < c->npeers; i++)
        c->peers[i]->fresh = c->peers[i]->halted = false;
    c->phase = SILA__RUN_PHASE__TRAINING;
    c->last_report = sila_clock_s();
    printf("pipeline restarted (generation %u) from batch %llu, after %.1f s\n", c->pipeline,
           (unsigned long long)from, sila_clock_s() - c->halted_since);
    fflush(stdout);
    c->halted = false;
    int r = coord_feed_restart(c, from, reconnect ? url : NULL);
    if (r) {
        coord_finish(c, r);
        return;
    }
    coord_check_drained(c); /* a collection the loss interrupted, with nothing in flight */
    coord_feed_pump(c);
}
