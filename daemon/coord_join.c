/* Joining a distributed run: the rendezvous where workers say hello and
 * are admitted or refused, their control links (received on the loop, sent
 * through each one's outbox), and the start of the run once every module
 * has a ready worker. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "coord_state.h"
#include "ctl.h"
#include "endpoint.h"

/* A worker that takes no control message for this long is failing. */
#define CTL_DEADLINE_MS 30000
/* The run's end waits this long for each worker to take its Stop: a live
 * one takes it at once, one that died unnoticed never will (and one that
 * misses it learns of the end from the coordinator's silence). */
#define STOP_DEADLINE_MS 2000

/* How long a control message of kind msg_case may wait to leave: a
 * heartbeat is tried once (a full queue says enough). */
static int ctl_deadline_ms(uint64_t msg_case)
{
    return msg_case == SILA__CONTROL__MSG_HEARTBEAT ? 0
           : msg_case == SILA__CONTROL__MSG_STOP    ? STOP_DEADLINE_MS
                                                    : CTL_DEADLINE_MS;
}

struct sila_link_auth coord_link_auth(const struct coord *c, const char *channel)
{
    return (struct sila_link_auth){.key = c->o->key,
                                   .channel = channel,
                                   .window_ms = c->o->auth_window_ms,
                                   .seal = c->o->encrypt};
}

static int poll_link(struct coord *c, uv_poll_t *h, const struct sila_link *l, void *data,
                     uv_poll_cb cb)
{
    int rfd, sfd;
    int r = sila_link_fds(l, &rfd, &sfd);
    if (r)
        return r;
    if ((r = uv_poll_init(&c->loop, h, rfd)))
        return r;
    h->data = data;
    return uv_poll_start(h, UV_READABLE, cb);
}

/* The outcome of a control message to p (sent through its outbox within
 * ctl_deadline_ms). */
static void on_ctl_sent(void *ctx, uint64_t msg_case, int status)
{
    struct peer *p = ctx;
    struct coord *c = p->coord;
    if (!status || status == -ECANCELED || c->finished || msg_case == SILA__CONTROL__MSG_HEARTBEAT)
        return;
    char mods[32];
    sila_modules_text(p->first, p->last, mods, sizeof mods);
    /* a worker that misses these cannot go on; a Halt or a Stop it misses,
     * it learns of from the next message or the coordinator's silence */
    const char *what = msg_case == SILA__CONTROL__MSG_START     ? "its start"
                       : msg_case == SILA__CONTROL__MSG_STATE   ? "a module's state"
                       : msg_case == SILA__CONTROL__MSG_COLLECT ? "a request for its state"
                                                                : NULL;
    if (what)
        coord_fail(c, -EIO, "cannot send the worker for %s %s: %s", mods, what, strerror(-status));
    else
        fprintf(stderr, "silad: the worker for %s: cannot send a control message: %s\n", mods,
                strerror(-status));
}

int coord_peer_send(struct coord *c, struct peer *p, Sila__Control *m, const float *tail,
                    size_t ntail)
{
    if (!p->out)
        return -ENOTCONN;
    m->generation = p->gen;
    uint8_t *buf;
    size_t len;
    struct sila_err e;
    int r = sila_ctl_encode(m, tail, ntail, &buf, &len, &e);
    if (r == 0 && (r = outbox_submit(p->out, buf, len, ctl_deadline_ms(m->msg_case), m->msg_case)))
        snprintf(e.msg, sizeof e.msg, "%s", strerror(-r));
    if (r) {
        char mods[32];
        coord_fail(c, r, "the worker for %s: %s", sila_modules_text(p->first, p->last, mods, 32),
                   e.msg);
    }
    return r;
}

struct sila_link *coord_peer_link(const struct peer *p)
{
    return p->out ? outbox_link(p->out) : NULL;
}

uint64_t coord_peer_rejected(const struct peer *p)
{
    return p->rejected + (p->out ? outbox_link(p->out)->rejected : 0);
}

/* Why a Hello cannot join, or NULL when it can. */
static const char *refusal(struct coord *c, const Sila__Hello *h, char *buf, size_t len)
{
    uint8_t hash[SILA_PLAN_HASH_BYTES];
    if (h->version != SILA_WIRE_VERSION)
        snprintf(buf, len, "wire protocol version %u, this coordinator speaks %u", h->version,
                 SILA_WIRE_VERSION);
    else if (h->sealed && !c->o->encrypt)
        snprintf(buf, len,
                 "the worker on %.200s (pid %u) takes only sealed links (--encrypt) and this "
                 "coordinator does not seal them: start silad with --encrypt too, or the worker "
                 "without it",
                 *h->host ? h->host : "?", h->pid);
    else if (h->first_module < 1 || h->last_module < h->first_module ||
             h->last_module > (uint32_t)c->K)
        snprintf(buf, len, "modules %u-%u asked for, the job %s has modules 1-%d", h->first_module,
                 h->last_module, c->job->name, c->K);
    else if (h->max_frame < c->max_frame)
        snprintf(buf, len, "the job needs frames of %zu bytes, the worker accepts %llu",
                 c->max_frame, (unsigned long long)h->max_frame);
    else if (h->plan_hash.len &&
             (sila_job_plan_hash(c->job, hash),
              h->plan_hash.len != sizeof hash || memcmp(h->plan_hash.data, hash, sizeof hash)))
        snprintf(buf, len, "the worker's job plan differs from %.300s", c->job->path);
    else if (c->started) {
        const struct peer *p = c->peers[c->owner[h->first_module - 1]];
        if (c->collecting || c->stop_requested)
            snprintf(buf, len, "the run is ending; it takes no new workers");
        else if (!p->lost)
            snprintf(buf, len,
                     "module %u is served by the worker on %s (pid %u, generation %u); a worker "
                     "is replaced once it has been silent for %d s",
                     h->first_module, p->host, p->pid, p->gen, c->o->worker_timeout);
        else if (p->first != (int)h->first_module - 1 || p->last != (int)h->last_module - 1)
            snprintf(buf, len, "modules %d-%d were lost together: a replacement takes all of them",
                     p->first + 1, p->last + 1);
        else
            return NULL;
    } else {
        for (uint32_t k = h->first_module - 1; k < h->last_module; k++)
            if (c->owner[k] >= 0) {
                const struct peer *p = c->peers[c->owner[k]];
                snprintf(buf, len, "module %u is taken by the worker on %s (pid %u, generation %u)",
                         k + 1, p->host, p->pid, p->gen);
                return buf;
            }
        return NULL;
    }
    return buf;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* Opens p's control link at its module's address, its outbox, and polls
 * it. Errors with e set, nothing left open. */
static int open_control(struct coord *c, struct peer *p, struct sila_err *e)
{
    char url[SILA_URL_MAX + 64], channel[32];
    sila_endpoint_control(&c->base, p->first + 1, url, sizeof url);
    snprintf(channel, sizeof channel, "control-%d", p->first + 1);
    struct sila_link_auth la = coord_link_auth(c, channel);
    struct sila_link l;
    int r = sila_link_open(&l, SILA_LINK_PAIR, url, true, c->ctl_limit, &la, e);
    if (r == 0)
        r = outbox_new(&p->out, &c->loop, &l, on_ctl_sent, p, e);
    if (r == 0 && !(p->poll = calloc(1, sizeof *p->poll)))
        r = sila_err_set(e, -ENOMEM, "out of memory");
    else if (r == 0 && (r = poll_link(c, p->poll, outbox_link(p->out), p, coord_on_peer_readable)))
        sila_err_set(e, r, "event loop: %s", uv_strerror(r));
    if (r)
        coord_close_control(p, false);
    p->opened = sila_clock_s();
    return r;
}

void coord_close_control(struct peer *p, bool drain)
{
    if (p->poll && p->poll->loop) /* initialised: closing stops it */
        uv_close((uv_handle_t *)p->poll, free_handle);
    else
        free(p->poll);
    p->poll = NULL;
    if (p->out)
        p->rejected += outbox_link(p->out)->rejected;
    outbox_free(p->out, drain);
    p->out = NULL;
}

void coord_reopen_control(struct coord *c, struct peer *p)
{
    char mods[32];
    sila_modules_text(p->first, p->last, mods, sizeof mods);
    fprintf(stderr,
            "silad: the control link of the worker for %s (generation %u) has carried nothing "
            "for %.0f s: opened again\n",
            mods, p->gen, sila_clock_s() - p->opened);
    coord_close_control(p, false);
    struct sila_err e;
    if (open_control(c, p, &e)) {
        char why[400];
        snprintf(why, sizeof why, "cannot open its control link again: %.300s", e.msg);
        coord_lose_peer(c, p, why);
    }
}

/* Accepts h: a control link for it and a Welcome. */
static int admit(struct coord *c, const Sila__Hello *h, Sila__Welcome *w, char *why, size_t len)
{
    struct peer *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(why, len, "the coordinator is out of memory");
        return -ENOMEM;
    }
    p->first = (int)h->first_module - 1;
    p->last = (int)h->last_module - 1;
    p->gen = ++c->generation[p->first];
    p->pid = h->pid;
    snprintf(p->host, sizeof p->host, "%s", *h->host ? h->host : "?");
    p->coord = c;
    struct sila_err e;
    int r = open_control(c, p, &e);
    if (r) {
        snprintf(why, len, "the coordinator cannot open its control link: %.300s", e.msg);
        free(p);
        return r;
    }
    p->last_message = sila_clock_s();
    if (c->started) { /* replaces the lost worker of the same modules */
        struct peer *old = c->peers[c->owner[p->first]];
        old->next_retired = c->retired;
        c->retired = old;
        c->peers[c->owner[p->first]] = p;
        p->fresh = true;
        c->replacements++;
    } else {
        c->peers[c->npeers] = p;
        for (int k = p->first; k <= p->last; k++)
            c->owner[k] = c->npeers;
        c->npeers++;
    }
    w->version = SILA_WIRE_VERSION;
    w->generation = p->gen;
    w->job_path = (char *)c->job->path;
    w->job_text = c->job->text;
    w->overrides = c->job->overrides;
    w->n_overrides = (size_t)c->job->noverrides;
    w->train_samples = c->run->feed.train.n;
    w->test_samples = c->run->feed.test.n;
    w->sealed = c->o->encrypt;
    char buf[32];
    printf("worker for %s joined from %s (pid %u)%s\n",
           sila_modules_text(p->first, p->last, buf, 32), p->host, p->pid,
           c->o->encrypt ? ", its links sealed" : "");
    fflush(stdout);
    return 0;
}

static void answer_hello(struct coord *c, const struct sila_ctl_msg *m, const char *bad)
{
    char why[512];
    uint8_t hash[SILA_PLAN_HASH_BYTES];
    Sila__Welcome w = SILA__WELCOME__INIT;
    Sila__Refusal ref = SILA__REFUSAL__INIT;
    Sila__Control out = SILA__CONTROL__INIT;
    const char *no = bad;
    if (!no && m->msg->msg_case != SILA__CONTROL__MSG_HELLO)
        no = "expected a hello";
    if (!no)
        no = refusal(c, m->msg->hello, why, sizeof why);
    if (!no && admit(c, m->msg->hello, &w, why, sizeof why))
        no = why;
    if (no) {
        ref.reason = (char *)no;
        out.msg_case = SILA__CONTROL__MSG_REFUSAL;
        out.refusal = &ref;
        fprintf(stderr, "silad: refused a worker: %s\n", no);
    } else {
        sila_job_plan_hash(c->job, hash);
        w.plan_hash.data = hash;
        w.plan_hash.len = sizeof hash;
        out.msg_case = SILA__CONTROL__MSG_WELCOME;
        out.welcome = &w;
    }
    struct sila_err e;
    if (sila_ctl_send(&c->rdv, &out, NULL, 0, 0, &e)) /* a reply never waits */
        fprintf(stderr, "silad: cannot answer a worker: %s\n", e.msg);
}

static void on_rdv_readable(uv_poll_t *h, int status, int events)
{
    struct coord *c = h->data;
    (void)status, (void)events;
    while (!c->finished) {
        struct sila_ctl_msg m;
        struct sila_err e;
        int r = sila_ctl_recv(&c->rdv, 0, &m, &e);
        if (r == -EAGAIN)
            return;
        if (r && r != -EBADMSG) {
            fprintf(stderr, "silad: rendezvous: %s\n", strerror(-r));
            return;
        }
        answer_hello(c, &m, r ? e.msg : NULL);
        sila_ctl_msg_free(&m);
    }
}

int coord_join_open(struct coord *c)
{
    struct sila_link_auth la = coord_link_auth(c, "rendezvous");
    /* MAC'd only, sealed run or not: its Welcome is what tells a worker
     * that the run is sealed (docs/protocol.md, "Sealed links") */
    la.seal = false;
    int r = sila_link_open(&c->rdv, SILA_LINK_REPLY, c->base_url, true, sila_ctl_frame_limit(0),
                           &la, c->err);
    if (r)
        return r;
    if ((r = poll_link(c, &c->rdv_poll, &c->rdv, c, on_rdv_readable)))
        return sila_err_set(c->err, -EIO, "event loop: %s", uv_strerror(r));
    c->rdv_polling = true;
    return 0;
}

int coord_restore_modules(struct coord *c, const struct checkpoint *ck, int first, int last)
{
    for (int k = first; k <= last; k++) {
        const struct checkpoint_module *m = &ck->mods[k];
        Sila__ModuleState st = SILA__MODULE_STATE__INIT;
        st.module = (uint32_t)k + 1;
        st.params = m->layout.params;
        st.optimizer = m->layout.optimizer;
        st.buffers = m->layout.buffers;
        st.body_params = m->layout.body_params;
        st.body_buffers = m->layout.body_buffers;
        st.counters = (uint64_t *)m->counters;
        st.n_counters = SILA_MODULE_COUNTERS;
        Sila__Control msg = SILA__CONTROL__INIT;
        msg.msg_case = SILA__CONTROL__MSG_STATE;
        msg.state = &st;
        int r = coord_peer_send(c, c->peers[c->owner[k]], &msg, m->state,
                                m->layout.params + m->layout.optimizer + m->layout.buffers);
        if (r)
            return r;
    }
    return 0;
}

int coord_send_start(struct coord *c, struct peer *p)
{
    char url[SILA_URL_MAX + 64];
    uint64_t trained[SILA_MAX_MODULES], tested[SILA_MAX_MODULES];
    Sila__Start st = SILA__START__INIT;
    st.downstream_url = "";
    if (p->last + 1 < c->K) {
        const struct peer *d = c->peers[c->owner[p->last + 1]];
        sila_endpoint_data(&c->base, d->first + 1, d->host, url, sizeof url);
        st.downstream_url = url;
        st.reconnect = d->fresh;
    }
    st.pipeline = c->pipeline;
    for (int k = p->first; k <= p->last; k++) {
        trained[k - p->first] = c->trained[k];
        tested[k - p->first] = c->tested[k];
    }
    st.trained = trained;
    st.n_trained = (size_t)(p->last - p->first + 1);
    st.evaluated = tested;
    st.n_evaluated = st.n_trained;
    Sila__Control m = SILA__CONTROL__INIT;
    m.msg_case = SILA__CONTROL__MSG_START;
    m.start = &st;
    return coord_peer_send(c, p, &m, NULL, 0);
}

static void start_run(struct coord *c)
{
    char url[SILA_URL_MAX + 64];
    if (c->o->resume) {
        int r = coord_restore_modules(c, &c->run->resume, 0, c->K - 1);
        checkpoint_free(&c->run->resume); /* the evaluations live on in the report */
        if (r)
            return;
    }
    for (int i = 0; i < c->npeers; i++)
        if (coord_send_start(c, c->peers[i]))
            return;
    const struct peer *p0 = c->peers[c->owner[0]];
    sila_endpoint_data(&c->base, 1, p0->host, url, sizeof url);
    int r = coord_feed_connect(c, url);
    if (r) {
        coord_finish(c, r);
        return;
    }
    c->started = true;
    c->phase = SILA__RUN_PHASE__TRAINING;
    c->last_report = sila_clock_s();
    c->feeder.window = coord_window(c->o, c->job, c->npeers);
    char where[64];
    snprintf(where, sizeof where, "on %d worker%s, window %d", c->npeers, c->npeers > 1 ? "s" : "",
             c->feeder.window);
    report_start(&c->run->rep, c->job, &c->run->feed.plan, where);
    coord_feed_pump(c);
}

static void on_ready(struct coord *c, struct peer *p, const Sila__Ready *r)
{
    if (r->generation != p->gen || r->first_module != (uint32_t)p->first + 1) {
        p->bad_messages++;
        return;
    }
    if (p->ready) /* sent again while it waits for its Start (worker_join.c) */
        return;
    p->ready = true;
    char buf[32];
    printf("worker for %s ready (%s, pid %u, generation %u)\n",
           sila_modules_text(p->first, p->last, buf, sizeof buf), p->host, p->pid, p->gen);
    fflush(stdout);
    if (c->started) { /* a replacement: waits, like the others, for the restart */
        p->halted = true;
        coord_restore_replacement(c, p);
        coord_try_restart(c);
        return;
    }
    for (int k = 0; k < c->K; k++)
        if (c->owner[k] < 0 || !c->peers[c->owner[k]]->ready)
            return;
    start_run(c);
}

static void on_peer_message(struct coord *c, struct peer *p, const struct sila_ctl_msg *m)
{
    const Sila__Control *msg = m->msg;
    if (msg->generation != p->gen) { /* from a worker since replaced */
        p->bad_messages++;
        return;
    }
    p->last_message = sila_clock_s();
    switch (msg->msg_case) {
    case SILA__CONTROL__MSG_READY:
        on_ready(c, p, msg->ready);
        break;
    case SILA__CONTROL__MSG_DONE:
        if (c->started)
            coord_on_done(c, p, msg->done, m->tail);
        else
            p->bad_messages++;
        break;
    case SILA__CONTROL__MSG_STATE:
        coord_on_state(c, p, msg->state, m->tail);
        break;
    case SILA__CONTROL__MSG_HEARTBEAT:
        break;
    case SILA__CONTROL__MSG_HALT:
        if (!c->halted || msg->halt->pipeline != c->pipeline + 1) {
            p->bad_messages++;
            break;
        }
        p->halted = true;
        coord_try_restart(c);
        break;
    case SILA__CONTROL__MSG_STOP: {
        char mods[32];
        coord_fail(c, -ECANCELED, "the worker for %s failed: %.400s",
                   sila_modules_text(p->first, p->last, mods, sizeof mods), msg->stop->reason);
        break;
    }
    default:
        p->bad_messages++;
        break;
    }
}

void coord_on_peer_readable(uv_poll_t *h, int status, int events)
{
    struct peer *p = h->data;
    struct coord *c = h->loop->data;
    (void)status, (void)events;
    while (!c->finished && p->out) {
        struct sila_ctl_msg m;
        struct sila_err e;
        int r = sila_ctl_recv(outbox_link(p->out), 0, &m, &e);
        if (r == -EAGAIN)
            return;
        if (r) {
            p->bad_messages++;
            char buf[32];
            fprintf(stderr, "silad: dropped a message from the worker for %s: %s\n",
                    sila_modules_text(p->first, p->last, buf, sizeof buf),
                    r == -EBADMSG ? e.msg : strerror(-r));
            continue;
        }
        on_peer_message(c, p, &m);
        sila_ctl_msg_free(&m);
    }
}
