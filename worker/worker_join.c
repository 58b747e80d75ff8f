/* Joining a run: the rendezvous with the coordinator, the plan of its
 * Welcome, the links of a Start, and halting until a restart. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "module.h"
#include "worker_state.h"

#define READY_RESEND_S 2.0 /* a Ready not answered by a Start this long is sent again */

int wjoin_addresses(struct worker *w, struct sila_err *err)
{
    const struct worker_options *o = w->o;
    const char *bind = o->bind, *adv = o->advertise;
    char route[64] = "127.0.0.1"; /* ipc or loopback: the whole run is on this machine */
    if (w->base.tcp && !sila_url_loopback(&w->base) && !(bind && adv)) {
        int r = sila_url_route_address(&w->base, route, sizeof route, err);
        if (r)
            return r;
    }
    if (!bind)
        bind = adv && sila_host_numeric(adv) ? adv : route;
    if (!adv)
        adv = o->bind && strcmp(o->bind, "*") && strcmp(o->bind, "0.0.0.0") ? o->bind : route;
    snprintf(w->bind_host, sizeof w->bind_host, "%s", bind);
    snprintf(w->adv_host, sizeof w->adv_host, "%s", adv);
    return 0;
}

/* Why joining timed out, as far as the worker can tell. */
static int join_timed_out(const struct worker *w, const struct sila_link *req, struct sila_err *err)
{
    const struct worker_options *o = w->o;
    char id[9] = "";
    if (o->key)
        sila_key_id_text(o->key->id, id);
    if (!o->key)
        return sila_err_set(err, -ETIMEDOUT,
                            "%s: no coordinator answered within %d s (one with a cluster key "
                            "ignores workers without it: --key FILE)",
                            o->connect, o->join_timeout_s);
    if (req->rejected)
        return sila_err_set(err, -ETIMEDOUT,
                            "%s: no coordinator answered within %d s with a message signed "
                            "with the key in %s (id %s): an answer was dropped (%.150s); a "
                            "wrong key is one possible reason",
                            o->connect, o->join_timeout_s, o->key_path, id, req->rejection);
    return sila_err_set(err, -ETIMEDOUT,
                        "%s: no coordinator answered within %d s (is one running there? a "
                        "wrong key is one possible reason: a coordinator ignores a worker whose "
                        "key differs from its own; this one's is %s, id %s)",
                        o->connect, o->join_timeout_s, o->key_path, id);
}

int wjoin_ask(struct worker *w, struct sila_ctl_msg *ret, struct sila_err *err)
{
    struct sila_link req;
    char ch[32];
    struct sila_link_auth la = wlink_auth(w, ch, "rendezvous%.0d", 0);
    int r = sila_link_open(&req, SILA_LINK_REQUEST, w->o->connect, false, sila_ctl_frame_limit(0),
                           &la, err);
    if (r)
        return r;
    Sila__Hello hello = SILA__HELLO__INIT;
    hello.version = SILA_WIRE_VERSION;
    hello.first_module = (uint32_t)w->o->first;
    hello.last_module = (uint32_t)w->o->last;
    hello.host = w->adv_host;
    hello.pid = (uint32_t)getpid();
    hello.max_frame = w->o->max_frame;
    hello.sealed = w->o->encrypt;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_HELLO;
    c.hello = &hello;
    double start = sila_clock_s(), said = start;
    for (;;) {
        if (w->o->join_timeout_s && sila_clock_s() - start > w->o->join_timeout_s) {
            r = join_timed_out(w, &req, err);
            break;
        }
        if (sila_clock_s() - said >= 10.0) {
            fprintf(stderr, "silaworker: still waiting for the coordinator at %s\n", w->o->connect);
            said = sila_clock_s();
        }
        struct sila_err e; /* answers dropped: another key, or none */
        if (sila_link_rejections(&req, "the rendezvous", sila_clock_s(), 10.0, &e))
            fprintf(stderr, "silaworker: %s\n", e.msg);
        r = sila_ctl_send(&req, &c, NULL, 0, TICK_MS, err);
        if (r == -ETIMEDOUT || r == -EAGAIN)
            continue;
        if (r)
            break;
        r = sila_ctl_recv(&req, 3 * TICK_MS, ret, err);
        if (r == -ETIMEDOUT || r == -EAGAIN)
            continue;
        if (r == -EBADMSG)
            r = sila_err_set(err, r, "%s: %.400s", w->o->connect, err->msg);
        else if (r)
            r = sila_err_set(err, r, "%s: %s", w->o->connect, strerror(-r));
        break;
    }
    sila_link_close(&req);
    return r;
}

int wjoin_take_plan(struct worker *w, const Sila__Welcome *wel, struct sila_err *err)
{
    if (wel->version != SILA_WIRE_VERSION)
        return sila_err_set(err, -EPROTO, "%s speaks wire protocol %u, this worker %u",
                            w->o->connect, wel->version, SILA_WIRE_VERSION);
    if (w->o->encrypt && !wel->sealed)
        return sila_err_set(err, -EPROTO,
                            "%s does not seal the run's links (a coordinator without --encrypt, "
                            "or an older one); this worker takes only sealed ones (--encrypt)",
                            w->o->connect);
    w->sealed = wel->sealed;
    char path[SILA_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s (from the coordinator)", wel->job_path);
    int r = sila_job_parse(&w->job, path, wel->job_text, strlen(wel->job_text),
                           (const char *const *)wel->overrides, (int)wel->n_overrides, err);
    if (r)
        return r;
    uint8_t hash[SILA_PLAN_HASH_BYTES];
    sila_job_plan_hash(&w->job, hash);
    if (wel->plan_hash.len != sizeof hash || memcmp(wel->plan_hash.data, hash, sizeof hash))
        return sila_err_set(err, -EPROTO, "the plan received does not match its hash");
    if (w->o->last > w->job.nmodules)
        return sila_err_set(err, -EINVAL, "%s has %d modules, this worker was given %d-%d",
                            wel->job_path, w->job.nmodules, w->o->first, w->o->last);
    if ((r = sila_plan_init(&w->plan, &w->job, wel->train_samples, wel->test_samples, err)))
        return r;
    size_t need;
    if ((r = sila_plan_max_frame(&w->job, &need, err)))
        return r;
    if (need > w->o->max_frame)
        return sila_err_set(err, -EMSGSIZE,
                            "the job needs frames of %zu bytes, this worker "
                            "accepts at most %zu (--max-frame)",
                            need, w->o->max_frame);
    w->gen = wel->generation;
    if ((r = sila_stage_init(&w->stage, &w->job, w->o->first - 1, w->o->last - 1, w->job.batch,
                             err)))
        return r;
    struct sila_shape in = sila_net_in_shape(w->stage.mods[w->stage.first]->body),
                      out = worker_out_shape(w);
    uint32_t B = (uint32_t)w->job.batch, nc = (uint32_t)w->job.nclasses;
    w->up_lim =
        (struct sila_frame_limits){.max_n = B,
                                   .c = (uint32_t)in.c,
                                   .h = (uint32_t)in.h,
                                   .w = (uint32_t)in.w,
                                   .nclasses = nc,
                                   .collab = sila_job_uses_collab(&w->job),
                                   .image_size = sila_plan_edge_image(&w->job, w->stage.first),
                                   .snapshot = (uint32_t)sila_stage_man_out_floats(&w->stage),
                                   .dtype = sila_plan_edge_dtype(&w->job, w->stage.first)};
    w->down_lim =
        (struct sila_frame_limits){.max_n = B,
                                   .c = (uint32_t)out.c,
                                   .h = (uint32_t)out.h,
                                   .w = (uint32_t)out.w,
                                   .nclasses = nc,
                                   .gradient = true,
                                   .snapshot = (uint32_t)sila_stage_man_in_floats(&w->stage),
                                   .dtype = sila_plan_edge_dtype(&w->job, w->stage.last + 1)};
    if (w->up_lim.dtype != SILA_DTYPE_F32 &&
        !(w->up_x = malloc(sizeof(float) * B * sila_shape_size(in))))
        return sila_err_set(err, -ENOMEM, "out of memory for the upstream edge");
    if (w->down_lim.dtype != SILA_DTYPE_F32 &&
        !(w->down_x = malloc(sizeof(float) * B * sila_shape_size(out))))
        return sila_err_set(err, -ENOMEM, "out of memory for the downstream edge");
    return 0;
}

/* Takes a Start: the pipeline generation, the progress of each module,
 * and the downstream link, (re)opened when it is new and greeted until it
 * has been (a Halt may interrupt a greeting). Edges count their frames
 * from 0 again. */
static int take_start(struct worker *w, const Sila__Start *st, struct sila_err *err)
{
    size_t n = (size_t)(w->stage.last - w->stage.first + 1);
    bool down = w->stage.last + 1 < w->job.nmodules;
    if (st->n_trained != n || st->n_evaluated != n)
        return sila_err_set(err, -EPROTO,
                            "the coordinator's start has progress for %zu modules, "
                            "this worker has %zu",
                            st->n_trained, n);
    if (!*st->downstream_url == down)
        return sila_err_set(err, -EPROTO, "the coordinator's start %s a downstream address",
                            down ? "lacks" : "has");
    for (size_t i = 0; i < n; i++)
        sila_stage_resume(&w->stage, w->stage.first + (int)i, st->trained[i], st->evaluated[i]);
    if (w->stale_frames)
        fprintf(stderr, "silaworker: dropped %llu frames of pipeline %u\n",
                (unsigned long long)w->stale_frames, w->pipeline);
    w->stale_frames = 0;
    w->pipeline = st->pipeline;
    w->up_in = w->up_out = w->down_in = w->down_out = 0;
    if (down && (!worker_has_down(w) || st->reconnect)) {
        sila_link_close(&w->down);
        w->down_greeted = false;
        char ch[32];
        struct sila_link_auth la = wlink_auth(w, ch, "data-%d", w->stage.last + 2);
        int r = sila_link_open(&w->down, SILA_LINK_PAIR, st->downstream_url, false, w->max_frame,
                               &la, err);
        if (r)
            return r;
    }
    return down && !w->down_greeted ? wlink_greet_down(w, err) : 0;
}

/* Tells the coordinator this worker has halted (w->halt_pipeline). */
static int ack_halt(struct worker *w, struct sila_err *err)
{
    Sila__Halt h = SILA__HALT__INIT;
    h.pipeline = w->halt_pipeline;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_HALT;
    c.halt = &h;
    return wlink_send_ctl(w, &c, NULL, 0, err);
}

/* Waits for the coordinator's Start, handling what comes before it (the
 * states of restored modules, heartbeats, a Halt, the Stop). ready, when
 * not NULL, goes again every READY_RESEND_S: a pair link may take it into
 * a connection the coordinator's end drops (one holding the pair already),
 * and nothing would tell either end. */
static int wait_start(struct worker *w, Sila__Control *ready, struct sila_err *err)
{
    for (double sent = sila_clock_s();;) {
        int r = wlink_keep_alive(w, err);
        if (r)
            return r;
        if (ready && sila_clock_s() - sent >= READY_RESEND_S) {
            if ((r = wlink_send_ctl(w, ready, NULL, 0, err)))
                return r;
            sent = sila_clock_s();
        }
        struct sila_ctl_msg m;
        r = wlink_recv_ctl(w, TICK_MS, &m, err);
        if (r == -ETIMEDOUT || r == -EAGAIN)
            continue;
        if (r)
            return r;
        bool started = m.msg->msg_case == SILA__CONTROL__MSG_START;
        if (started) {
            if ((r = take_start(w, m.msg->start, err)) == 0 && !w->stopped)
                r = worker_man_start(w, err);
            if (r == -ERESTART) /* halted again while it started */
                started = false, r = ack_halt(w, err);
        } else if ((r = wlink_on_control(w, &m, err)) == -ERESTART) {
            r = 0; /* halted already */
        }
        sila_ctl_msg_free(&m);
        if (r || w->stopped || started)
            return r;
    }
}

int wjoin_halt(struct worker *w, struct sila_err *err)
{
    int r = ack_halt(w, err);
    return r ? r : wait_start(w, NULL, err);
}

int wjoin_connect(struct worker *w, struct sila_err *err)
{
    char url[SILA_URL_MAX + 64], ch[32];
    sila_endpoint_control(&w->base, w->stage.first + 1, url, sizeof url);
    /* restored states arrive on it: the limit holds the largest of ours */
    size_t most = 0;
    for (int k = w->stage.first; k <= w->stage.last; k++) {
        struct sila_module_layout l = sila_module_layout(w->stage.mods[k]);
        most =
            l.params + l.optimizer + l.buffers > most ? l.params + l.optimizer + l.buffers : most;
    }
    struct sila_link_auth la = wlink_auth(w, ch, "control-%d", w->stage.first + 1);
    int r =
        sila_link_open(&w->ctl, SILA_LINK_PAIR, url, false, sila_ctl_frame_limit(most), &la, err);
    if (r)
        return r;
    w->last_heard = sila_clock_s();
    w->last_beat = 0.0; /* a heartbeat at once: the coordinator times a joining worker too */
    sila_endpoint_data(&w->base, w->stage.first + 1, w->bind_host, url, sizeof url);
    la = wlink_auth(w, ch, "data-%d", w->stage.first + 1);
    /* a worker this one replaces may hold the address until it exits */
    for (int tries = 0;; tries++) {
        r = sila_link_open(&w->up, SILA_LINK_PAIR, url, true, w->max_frame, &la, err);
        if (r != -EADDRINUSE || tries == 60)
            break;
        if (tries == 0)
            fprintf(stderr,
                    "silaworker: %s is in use (by the worker this one replaces?): "
                    "trying again for a minute\n",
                    url);
        for (double t0 = sila_clock_s(); sila_clock_s() - t0 < 1.0;) {
            if ((r = wlink_drain_control(w, err)) || w->stopped)
                return r;
            nanosleep(&(struct timespec){0, 100000000}, NULL);
        }
    }
    if (r)
        return r;
    Sila__Ready ready = SILA__READY__INIT;
    ready.first_module = (uint32_t)w->stage.first + 1;
    ready.generation = w->gen;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_READY;
    c.ready = &ready;
    if ((r = wlink_send_ctl(w, &c, NULL, 0, err)))
        return r;
    return wait_start(w, &c, err);
}
