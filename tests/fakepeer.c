/* fakepeer: joins a distributed run as the worker of one module, follows
 * the protocol up to the first training frame, then breaks it in one way,
 * so that the integration tests (tests/integration/peers.sh) can check that
 * silad and the real workers refuse it with a sentence and end cleanly.
 *
 *   fakepeer --connect URL --module K --misbehave HOW
 *
 * HOW, after receiving its first training frame:
 *   logits-count  (last module) reports it done with one logit too few
 *   logits-nan    (last module) reports it with the right count, one NaN
 *   logits-extra  (not the last module) reports it done with logits
 *   no-targets    (not the last) sends it downstream without soft targets
 *   garbage       (not the last) sends 100 bytes of noise downstream
 *   bf16          (not the last) sends it downstream in bfloat16 (the plan
 *                 of a job without wire_dtype says f32)
 *
 * Then it waits for the coordinator's Stop and exits 0 if the Stop says the
 * run failed, 1 otherwise (also on any error of its own, printed). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ctl.h"
#include "endpoint.h"
#include "frame.h"
#include "greet.h"
#include "job.h"
#include "plan.h"
#include "transport.h"

#define TICK_MS 200
#define WAIT_S 60.0

enum how { LOGITS_COUNT, LOGITS_NAN, LOGITS_EXTRA, NO_TARGETS, GARBAGE, BF16 };

static const char *const hows[] = {"logits-count", "logits-nan", "logits-extra",
                                   "no-targets",   "garbage",    "bf16"};

struct peer {
    struct sila_url base;
    int k; /* 0-based module */
    enum how how;
    struct sila_job job;
    uint32_t gen, pipeline;
    struct sila_link ctl, up, down;
};

/* Receives the next control message other than a heartbeat, for WAIT_S. */
/* A greeting waits at most WAIT_S from *ctx (a sila_clock_s() time). */
static int greet_wait(void *ctx, struct sila_err *err)
{
    if (sila_clock_s() - *(const double *)ctx < WAIT_S)
        return 0;
    return sila_err_set(err, -ETIMEDOUT, "no answer to a greeting downstream");
}

static int next_ctl(struct sila_link *l, struct sila_ctl_msg *m, struct sila_err *err)
{
    for (double t0 = sila_clock_s(); sila_clock_s() - t0 < WAIT_S;) {
        int r = sila_ctl_recv(l, TICK_MS, m, err);
        if (r == -ETIMEDOUT || r == -EAGAIN)
            continue;
        if (r || m->msg->msg_case != SILA__CONTROL__MSG_HEARTBEAT)
            return r;
        sila_ctl_msg_free(m);
    }
    return sila_err_set(err, -ETIMEDOUT, "no control message in %.0f s", WAIT_S);
}

static int send_ctl(struct peer *p, Sila__Control *c, const float *tail, size_t ntail,
                    struct sila_err *err)
{
    c->generation = p->gen;
    return sila_ctl_send(&p->ctl, c, tail, ntail, (int)(WAIT_S * 1000), err);
}

/* Hello on the rendezvous until the Welcome; takes its job. */
static int join(struct peer *p, const char *url, struct sila_err *err)
{
    struct sila_link req;
    int r = sila_link_open(&req, SILA_LINK_REQUEST, url, false, sila_ctl_frame_limit(0), NULL, err);
    if (r)
        return r;
    Sila__Hello hello = SILA__HELLO__INIT;
    hello.version = SILA_WIRE_VERSION;
    hello.first_module = hello.last_module = (uint32_t)p->k + 1;
    hello.host = "127.0.0.1";
    hello.pid = (uint32_t)getpid();
    hello.max_frame = 1u << 30;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_HELLO;
    c.hello = &hello;
    struct sila_ctl_msg m = {0};
    r = -ETIMEDOUT;
    for (double t0 = sila_clock_s(); r == -ETIMEDOUT && sila_clock_s() - t0 < WAIT_S;) {
        r = sila_ctl_send(&req, &c, NULL, 0, TICK_MS, err);
        if (r == 0)
            r = sila_ctl_recv(&req, 5 * TICK_MS, &m, err);
        if (r == -EAGAIN)
            r = -ETIMEDOUT;
    }
    sila_link_close(&req);
    if (r)
        return sila_err_set(err, r, "joining %s: %s", url,
                            r == -ETIMEDOUT ? "no answer" : err->msg);
    const Sila__Welcome *w = m.msg->welcome;
    if (m.msg->msg_case != SILA__CONTROL__MSG_WELCOME)
        r = sila_err_set(err, -EPROTO, "%s did not welcome this peer", url);
    else if ((r = sila_job_parse(&p->job, w->job_path, w->job_text, strlen(w->job_text),
                                 (const char *const *)w->overrides, (int)w->n_overrides, err)) == 0)
        p->gen = w->generation;
    sila_ctl_msg_free(&m);
    return r;
}

/* Opens the control link and the data edge, says Ready, takes the Start. */
static int connect_run(struct peer *p, struct sila_err *err)
{
    char url[SILA_URL_MAX + 64];
    size_t max_frame;
    int r = sila_plan_max_frame(&p->job, &max_frame, err);
    if (r)
        return r;
    sila_endpoint_control(&p->base, p->k + 1, url, sizeof url);
    if ((r = sila_link_open(&p->ctl, SILA_LINK_PAIR, url, false, sila_ctl_frame_limit(0), NULL,
                            err)))
        return r;
    sila_endpoint_data(&p->base, p->k + 1, "127.0.0.1", url, sizeof url);
    if ((r = sila_link_open(&p->up, SILA_LINK_PAIR, url, true, max_frame, NULL, err)))
        return r;
    Sila__Ready ready = SILA__READY__INIT;
    ready.first_module = (uint32_t)p->k + 1;
    ready.generation = p->gen;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_READY;
    c.ready = &ready;
    struct sila_ctl_msg m;
    if ((r = send_ctl(p, &c, NULL, 0, err)) || (r = next_ctl(&p->ctl, &m, err)))
        return r;
    if (m.msg->msg_case != SILA__CONTROL__MSG_START)
        r = sila_err_set(err, -EPROTO, "control message %d before the start", (int)m.msg->msg_case);
    else if (*m.msg->start->downstream_url &&
             (r = sila_link_open(&p->down, SILA_LINK_PAIR, m.msg->start->downstream_url, false,
                                 max_frame, NULL, err)) == 0)
        r = sila_greet(&p->down, m.msg->start->pipeline, greet_wait, &(double){sila_clock_s()},
                       err);
    if (r == 0)
        p->pipeline = m.msg->start->pipeline;
    sila_ctl_msg_free(&m);
    return r;
}

/* Receives the first frame from upstream into *buf, decoded into *v. */
static int first_frame(struct peer *p, uint8_t **buf, struct sila_frame_view *v,
                       struct sila_err *err)
{
    struct sila_shape in;
    int r = sila_plan_edge_shape(&p->job, p->k, &in, err);
    if (r)
        return r;
    struct sila_frame_limits lim = {.max_n = (uint32_t)p->job.batch,
                                    .c = (uint32_t)in.c,
                                    .h = (uint32_t)in.h,
                                    .w = (uint32_t)in.w,
                                    .nclasses = (uint32_t)p->job.nclasses,
                                    .collab = sila_job_uses_collab(&p->job)};
    double t0 = sila_clock_s();
    for (;;) { /* greetings answered, as a worker does */
        size_t len;
        r = -ETIMEDOUT;
        while (r == -ETIMEDOUT && sila_clock_s() - t0 < WAIT_S)
            if ((r = sila_link_recv(&p->up, buf, &len, TICK_MS)) == -EAGAIN)
                r = -ETIMEDOUT;
        if (r)
            return sila_err_set(err, r, "no frame from upstream: %s", strerror(-r));
        if ((r = sila_frame_decode(*buf, len, &lim, v, err))) {
            sila_link_release(*buf);
            return r;
        }
        if (v->hdr.phase != SILA_PHASE_HELLO)
            return 0;
        sila_link_release(*buf);
        uint8_t *answer = sila_greet_frame(p->pipeline, true, &len);
        if (!answer)
            return sila_err_set(err, -ENOMEM, "out of memory");
        if ((r = sila_link_send(&p->up, answer, len, TICK_MS))) {
            sila_link_release(answer);
            return sila_err_set(err, r, "cannot answer a greeting: %s", strerror(-r));
        }
    }
}

/* Reports batch h done with nlogits logits (NaN at the first when nan). */
static int send_done(struct peer *p, const struct sila_frame_hdr *h, uint32_t nlogits, bool nan,
                     struct sila_err *err)
{
    float *logits = calloc(nlogits ? nlogits : 1, sizeof *logits);
    if (!logits)
        return sila_err_set(err, -ENOMEM, "out of memory");
    if (nan)
        logits[0] = NAN;
    Sila__Done d = SILA__DONE__INIT;
    d.module = (uint32_t)p->k + 1;
    d.phase = (Sila__Phase)h->phase;
    d.round = h->round;
    d.batch = h->batch;
    d.loss = 2.3f;
    d.samples = h->n;
    d.logits = nlogits;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_DONE;
    c.done = &d;
    int r = send_ctl(p, &c, logits, nlogits, err);
    free(logits);
    return r;
}

/* Sends len bytes of buf (from sila_link_alloc, taken) downstream. */
static int send_down(struct peer *p, uint8_t *buf, size_t len, struct sila_err *err)
{
    int r = sila_link_send(&p->down, buf, len, (int)(WAIT_S * 1000));
    if (r) {
        sila_link_release(buf);
        return sila_err_set(err, r, "cannot send downstream: %s", strerror(-r));
    }
    return 0;
}

/* Sends v's batch downstream as module k's output (zeros) in dtype d, with
 * its labels and without soft targets. */
static int send_without_targets(struct peer *p, const struct sila_frame_view *v, enum sila_dtype d,
                                struct sila_err *err)
{
    struct sila_shape out;
    int r = sila_plan_edge_shape(&p->job, p->k + 1, &out, err);
    if (r)
        return r;
    struct sila_frame_hdr h = v->hdr;
    h.generation = p->pipeline;
    h.seq = 0;
    h.c = (uint32_t)out.c;
    h.h = (uint32_t)out.h;
    h.w = (uint32_t)out.w;
    h.target_classes = 0;
    h.dtype = d;
    size_t len = sila_frame_size(&h);
    float *x = calloc((size_t)h.n * h.c * h.h * h.w, sizeof *x);
    uint8_t *buf = sila_link_alloc(len);
    if (!x || !buf) {
        free(x);
        sila_link_release(buf);
        return sila_err_set(err, -ENOMEM, "out of memory");
    }
    sila_frame_encode(buf, &h, v->labels, NULL, NULL, x);
    free(x);
    return send_down(p, buf, len, err);
}

static int send_garbage(struct peer *p, struct sila_err *err)
{
    uint8_t *buf = sila_link_alloc(100);
    if (!buf)
        return sila_err_set(err, -ENOMEM, "out of memory");
    for (int i = 0; i < 100; i++)
        buf[i] = (uint8_t)rand();
    return send_down(p, buf, 100, err);
}

static int misbehave(struct peer *p, const struct sila_frame_view *v, struct sila_err *err)
{
    bool last = p->k == p->job.nmodules - 1;
    uint32_t logits = v->hdr.n * (uint32_t)p->job.nclasses;
    if (last != (p->how == LOGITS_COUNT || p->how == LOGITS_NAN))
        return sila_err_set(err, -EINVAL, "%s needs %s module", hows[p->how],
                            last ? "another than the last" : "the last");
    switch (p->how) {
    case LOGITS_COUNT:
        return send_done(p, &v->hdr, logits - 1, false, err);
    case LOGITS_NAN:
        return send_done(p, &v->hdr, logits, true, err);
    case LOGITS_EXTRA:
        return send_done(p, &v->hdr, logits, false, err);
    case NO_TARGETS:
        return send_without_targets(p, v, SILA_DTYPE_F32, err);
    case BF16:
        return send_without_targets(p, v, SILA_DTYPE_BF16, err);
    case GARBAGE:
        return send_garbage(p, err);
    }
    return 0;
}

/* Waits for the Stop; 0 when it says the run failed. */
static int wait_stop(struct peer *p, struct sila_err *err)
{
    for (;;) {
        struct sila_ctl_msg m;
        int r = next_ctl(&p->ctl, &m, err);
        if (r)
            return r;
        bool stop = m.msg->msg_case == SILA__CONTROL__MSG_STOP;
        if (stop) {
            printf("fakepeer: stopped (%s): %s\n", m.msg->stop->failed ? "failed" : "not failed",
                   m.msg->stop->reason);
            r = m.msg->stop->failed ? 0 : -EPROTO;
        }
        sila_ctl_msg_free(&m);
        if (stop)
            return r ? sila_err_set(err, r, "the run did not fail") : 0;
    }
}

static int run(struct peer *p, const char *url, struct sila_err *err)
{
    uint8_t *buf;
    struct sila_frame_view v;
    int r = sila_url_parse(url, &p->base, err);
    if (r || (r = join(p, url, err)) || (r = connect_run(p, err)) ||
        (r = first_frame(p, &buf, &v, err)))
        return r;
    r = misbehave(p, &v, err);
    sila_link_release(buf);
    if (r)
        return r;
    printf("fakepeer: module %d did %s\n", p->k + 1, hows[p->how]);
    fflush(stdout);
    return wait_stop(p, err);
}

int main(int argc, char **argv)
{
    const char *url = NULL, *how = NULL;
    int k = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--connect"))
            url = argv[i + 1];
        else if (!strcmp(argv[i], "--module"))
            k = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--misbehave"))
            how = argv[i + 1];
    }
    struct peer p = {.k = k - 1};
    p.ctl.sock = p.up.sock = p.down.sock = -1;
    p.how = (enum how)(sizeof hows / sizeof *hows);
    for (size_t i = 0; how && i < sizeof hows / sizeof *hows; i++)
        if (!strcmp(how, hows[i]))
            p.how = (enum how)i;
    if (!url || k < 1 || p.how == (enum how)(sizeof hows / sizeof *hows)) {
        fprintf(stderr, "usage: fakepeer --connect URL --module K --misbehave "
                        "logits-count|logits-nan|logits-extra|no-targets|garbage|bf16\n");
        return 2;
    }
    struct sila_err err = {0};
    int r = run(&p, url, &err);
    if (r)
        fprintf(stderr, "fakepeer: %s\n", err.msg);
    sila_link_close(&p.down);
    sila_link_close(&p.up);
    sila_link_close(&p.ctl);
    sila_job_fini(&p.job);
    return r ? 1 : 0;
}
