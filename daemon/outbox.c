/* A link's sending side on a thread of its own (see outbox.h). The queue
 * and the outcomes are the only state the two threads share, under one
 * mutex; `epoch` counts cancellations, so the thread can tell that the
 * frame it is sending was cancelled meanwhile. */
#include "outbox.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "greet.h"

#define SLICE_MS 100 /* a send waits this long at a time, then looks for a cancellation */

struct frame {
    struct frame *next;
    uint8_t *buf; /* owned until sent; NULL once reported */
    size_t len;
    int deadline_ms;
    uint64_t tag;
    int status;
};

struct outbox {
    struct sila_link link; /* the thread's to send on and close; the loop's to receive on */
    outbox_sent_cb *sent;
    void *ctx;
    uv_thread_t thread;
    uv_async_t async;
    uv_mutex_t lock;
    uv_cond_t wake; /* the thread's: frames queued, or the end */
    uv_cond_t gone; /* the loop's: the thread closed the link */
    /* under lock */
    struct frame *queue, **queue_tail; /* to send, in order */
    struct frame *outcomes;            /* sent or dropped, to report (newest first) */
    uint64_t epoch;                    /* bumped by each cancellation */
    bool ending, drain, ended;
    bool greet;          /* the link is to be greeted before the next frame leaves */
    uint32_t generation; /* of the greeting */
    int greeted;         /* the greeting's outcome: 0, or the error every frame gets */
};

static void report(struct outbox *o, struct frame *f, int status)
{
    if (f->buf)
        sila_link_release(f->buf);
    f->buf = NULL;
    f->status = status;
    f->next = o->outcomes;
    o->outcomes = f;
}

/* Under lock: every queued frame to the outcomes, cancelled. */
static void drop_queue(struct outbox *o)
{
    while (o->queue) {
        struct frame *f = o->queue;
        o->queue = f->next;
        report(o, f, -ECANCELED);
    }
    o->queue_tail = &o->queue;
}

/* Sends f, waiting in slices while its deadline and epoch allow. */
static int send_frame(struct outbox *o, struct frame *f, uint64_t epoch)
{
    uint64_t waited = 0;
    for (;;) {
        int slice = f->deadline_ms == 0 ? 0 : SLICE_MS;
        int r = sila_link_send(&o->link, f->buf, f->len, slice);
        if (r == 0) {
            f->buf = NULL; /* the link's now */
            return 0;
        }
        if (r != -ETIMEDOUT && r != -EAGAIN)
            return r;
        waited += (uint64_t)slice;
        if (f->deadline_ms >= 0 && waited >= (uint64_t)f->deadline_ms)
            return -ETIMEDOUT;
        uv_mutex_lock(&o->lock);
        bool cancelled = o->epoch != epoch;
        uv_mutex_unlock(&o->lock);
        if (cancelled)
            return -ECANCELED;
    }
}

/* Between a greeting's attempts: ended by outbox_free. */
static int greet_wait(void *ctx, struct sila_err *err)
{
    struct outbox *o = ctx;
    uv_mutex_lock(&o->lock);
    bool ending = o->ending;
    uv_mutex_unlock(&o->lock);
    return ending ? sila_err_set(err, -ECANCELED, "the link is closing") : 0;
}

static void thread_main(void *arg)
{
    struct outbox *o = arg;
    bool sent = false;
    uv_mutex_lock(&o->lock);
    for (;;) {
        while (!o->queue && !o->ending)
            uv_cond_wait(&o->wake, &o->lock);
        if (!o->queue)
            break;
        struct frame *f = o->queue;
        if (!(o->queue = f->next))
            o->queue_tail = &o->queue;
        uint64_t epoch = o->epoch;
        bool greet = o->greet;
        o->greet = false;
        uv_mutex_unlock(&o->lock);
        struct sila_err e;
        if (greet)
            o->greeted = sila_greet(&o->link, o->generation, greet_wait, o, &e);
        int r = o->greeted ? o->greeted : send_frame(o, f, epoch);
        sent |= r == 0;
        uv_mutex_lock(&o->lock);
        report(o, f, r);
        uv_async_send(&o->async);
    }
    bool settle = o->drain && sent;
    uv_mutex_unlock(&o->lock);
    if (settle) /* nothing acknowledges a last Stop: let it leave first */
        sila_link_settle();
    sila_link_close(&o->link);
    uv_mutex_lock(&o->lock);
    o->ended = true;
    uv_cond_signal(&o->gone);
    uv_mutex_unlock(&o->lock);
    uv_async_send(&o->async);
}

static void on_closed(uv_handle_t *h)
{
    struct outbox *o = h->data;
    uv_mutex_destroy(&o->lock);
    uv_cond_destroy(&o->wake);
    uv_cond_destroy(&o->gone);
    free(o);
}

/* On the loop: reports the outcomes (unless ending), and once the thread
 * has ended, joins it and frees the outbox. */
static void on_async(uv_async_t *a)
{
    struct outbox *o = a->data;
    uv_mutex_lock(&o->lock);
    struct frame *f = o->outcomes;
    o->outcomes = NULL;
    bool ended = o->ended;
    uv_mutex_unlock(&o->lock);
    struct frame *in_order = NULL;
    while (f) { /* newest first: reverse */
        struct frame *next = f->next;
        f->next = in_order;
        in_order = f;
        f = next;
    }
    while (in_order) {
        struct frame *next = in_order->next;
        if (!o->ending && o->sent) /* ending: set on this thread only */
            o->sent(o->ctx, in_order->tag, in_order->status);
        free(in_order);
        in_order = next;
    }
    if (!ended)
        return;
    uv_thread_join(&o->thread);
    uv_close((uv_handle_t *)&o->async, on_closed);
}

int outbox_new(struct outbox **ret, uv_loop_t *loop, struct sila_link *link, outbox_sent_cb *sent,
               void *ctx, struct sila_err *err)
{
    struct outbox *o = calloc(1, sizeof *o);
    int r = -ENOMEM;
    if (!o)
        goto fail;
    *o = (struct outbox){.link = *link, .sent = sent, .ctx = ctx};
    o->queue_tail = &o->queue;
    if ((r = uv_mutex_init(&o->lock)))
        goto fail;
    if ((r = uv_cond_init(&o->wake))) {
        uv_mutex_destroy(&o->lock);
        goto fail;
    }
    if ((r = uv_cond_init(&o->gone))) {
        uv_cond_destroy(&o->wake);
        uv_mutex_destroy(&o->lock);
        goto fail;
    }
    if ((r = uv_async_init(loop, &o->async, on_async))) {
        uv_cond_destroy(&o->gone);
        uv_cond_destroy(&o->wake);
        uv_mutex_destroy(&o->lock);
        goto fail;
    }
    o->async.data = o;
    link->sock = -1;
    link->auth = NULL;
    if ((r = uv_thread_create(&o->thread, thread_main, o))) {
        *link = o->link;
        uv_close((uv_handle_t *)&o->async, on_closed);
        o = NULL;
        goto fail;
    }
    *ret = o;
    return 0;
fail:
    if (r == -ENOMEM)
        free(o);
    sila_link_close(link);
    return sila_err_set(err, r, "cannot start a sending thread: %s", uv_strerror(r));
}

void outbox_greet(struct outbox *o, uint32_t generation)
{
    uv_mutex_lock(&o->lock);
    o->greet = true;
    o->generation = generation;
    uv_mutex_unlock(&o->lock);
}

struct sila_link *outbox_link(struct outbox *o)
{
    return &o->link;
}

int outbox_submit(struct outbox *o, uint8_t *buf, size_t len, int deadline_ms, uint64_t tag)
{
    struct frame *f = calloc(1, sizeof *f);
    uv_mutex_lock(&o->lock);
    int r = !f ? -ENOMEM : o->ending ? -ECANCELED : 0;
    if (r == 0) {
        *f = (struct frame){.buf = buf, .len = len, .deadline_ms = deadline_ms, .tag = tag};
        *o->queue_tail = f;
        o->queue_tail = &f->next;
        uv_cond_signal(&o->wake);
    }
    uv_mutex_unlock(&o->lock);
    if (r) {
        sila_link_release(buf);
        free(f);
    }
    return r;
}

void outbox_cancel(struct outbox *o)
{
    uv_mutex_lock(&o->lock);
    o->epoch++;
    drop_queue(o);
    uv_mutex_unlock(&o->lock);
    uv_async_send(&o->async);
}

void outbox_free(struct outbox *o, bool drain)
{
    if (!o)
        return;
    uv_mutex_lock(&o->lock);
    o->ending = true;
    o->drain = drain;
    uv_cond_signal(&o->wake);
    if (!drain) { /* within a send slice: the link's address is free on return */
        o->epoch++;
        drop_queue(o);
        while (!o->ended)
            uv_cond_wait(&o->gone, &o->lock);
    }
    uv_mutex_unlock(&o->lock);
}
