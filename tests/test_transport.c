/* Links over real nanomsg sockets (ipc:// in a temporary directory): frames
 * far above nanomsg's default 1 MiB limit arrive whole, a frame above the
 * link's own limit never arrives, timeouts and bad addresses are reported;
 * a greeting (greet.h) gets a frame through to a listener that still held
 * another connection when the greeter connected. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "frame.h"
#include "greet.h"
#include "testdir.h"
#include "transport.h"

static struct sila_link a, b;
static char url[600];

static void open_pair(size_t limit)
{
    snprintf(url, sizeof url, "ipc://%s", tpath("edge"));
    struct sila_err err = {""};
    ck_assert_msg(sila_link_open(&a, SILA_LINK_PAIR, url, true, limit, NULL, &err) == 0, "%s",
                  err.msg);
    ck_assert_msg(sila_link_open(&b, SILA_LINK_PAIR, url, false, limit, NULL, &err) == 0, "%s",
                  err.msg);
}

static void close_pair(void)
{
    sila_link_close(&a);
    sila_link_close(&b);
}

/* Sends len bytes filled with a pattern from a to b (waiting up to 5 s). */
static void send_pattern(size_t len)
{
    uint8_t *buf = sila_link_alloc(len);
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 131 + len);
    ck_assert_int_eq(sila_link_send(&a, buf, len, 5000), 0);
}

static void expect_pattern(size_t len)
{
    uint8_t *got;
    size_t n;
    ck_assert_int_eq(sila_link_recv(&b, &got, &n, 5000), 0);
    ck_assert_uint_eq(n, len);
    for (size_t i = 0; i < len; i++)
        if (got[i] != (uint8_t)(i * 131 + len))
            ck_abort_msg("byte %zu of a %zu-byte frame differs", i, len);
    sila_link_release(got);
}

START_TEST(large_frames_arrive_whole)
{
    open_pair(16u << 20);
    size_t sizes[] = {1, 1000, 3u << 20, 16u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        send_pattern(sizes[i]);
        expect_pattern(sizes[i]);
    }
    close_pair();
}
END_TEST

START_TEST(frame_above_limit_never_arrives)
{
    open_pair(1u << 16);
    send_pattern(1u << 17); /* nanomsg drops it (and the connection) */
    uint8_t *got;
    size_t n;
    ck_assert_int_eq(sila_link_recv(&b, &got, &n, 500), -ETIMEDOUT);
    close_pair();
}
END_TEST

START_TEST(timeouts)
{
    open_pair(1024);
    uint8_t *got;
    size_t n;
    ck_assert_int_eq(sila_link_recv(&b, &got, &n, 0), -EAGAIN);
    ck_assert_int_eq(sila_link_recv(&b, &got, &n, 50), -ETIMEDOUT);
    int rfd = -1, sfd = -1;
    ck_assert_int_eq(sila_link_fds(&b, &rfd, &sfd), 0);
    ck_assert_int_ge(rfd, 0);
    ck_assert_int_ge(sfd, 0);
    close_pair();
}
END_TEST

START_TEST(bad_addresses)
{
    struct sila_link l;
    struct sila_err err = {""};
    ck_assert_int_eq(sila_link_open(&l, SILA_LINK_PAIR, "udp://1.2.3.4:5", true, 100, NULL, &err),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "udp://1.2.3.4:5"));
    ck_assert_int_eq(
        sila_link_open(&l, SILA_LINK_PAIR, "tcp://127.0.0.1:7600", true, 0, NULL, &err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "limit"));
    ck_assert_int_lt(
        sila_link_open(&l, SILA_LINK_PAIR, "tcp://not an address", true, 100, NULL, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "cannot listen"));
    sila_link_close(&l); /* closed links close again safely */
}
END_TEST

START_TEST(address_in_use)
{
    struct sila_link l1, l2;
    struct sila_err err = {""};
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", 20000 + (int)(getpid() % 20000));
    ck_assert_msg(sila_link_open(&l1, SILA_LINK_PAIR, url, true, 100, NULL, &err) == 0, "%s",
                  err.msg);
    ck_assert_int_eq(sila_link_open(&l2, SILA_LINK_PAIR, url, true, 100, NULL, &err), -EADDRINUSE);
    ck_assert_ptr_nonnull(strstr(err.msg, url));
    sila_link_close(&l1);
}
END_TEST

/* The listener's side of a greeting: answers every HELLO on a until
 * another frame comes (then *got is its length) or 10 s pass. */
struct answerer {
    pthread_t thread;
    size_t got;
};

static void *answer_hellos(void *arg)
{
    struct answerer *an = arg;
    const struct sila_frame_limits lim = {.max_n = 1, .c = 1, .h = 1, .w = 1};
    for (int i = 0; i < 100 && !an->got; i++) {
        uint8_t *buf;
        size_t n;
        if (sila_link_recv(&a, &buf, &n, 100) != 0)
            continue;
        struct sila_frame_view v;
        struct sila_err err;
        bool hello =
            sila_frame_decode(buf, n, &lim, &v, &err) == 0 && v.hdr.phase == SILA_PHASE_HELLO;
        sila_link_release(buf);
        if (!hello) {
            an->got = n;
            break;
        }
        size_t len;
        uint8_t *answer = sila_greet_frame(v.hdr.generation, true, &len);
        if (sila_link_send(&a, answer, len, 1000) != 0)
            sila_link_release(answer);
    }
    return NULL;
}

/* Between attempts: the connection a held first goes away. */
static int close_old(void *ctx, struct sila_err *err)
{
    (void)err;
    sila_link_close(ctx);
    return 0;
}

static int give_up(void *ctx, struct sila_err *err)
{
    (void)ctx;
    return sila_err_set(err, -ECANCELED, "given up");
}

/* a listens and holds old's connection (heard once) when b connects: a
 * drops b's connections until old's goes, and a frame b sent into one
 * would be lost (nanomsg's pair holds one connection). Greeted, b's first
 * frame arrives, every time. */
START_TEST(greeting_gets_through_a_held_listener)
{
    for (int round = 0; round < 10; round++) {
        snprintf(url, sizeof url, "ipc://%s-%d", tpath("held"), round);
        struct sila_err err = {""};
        struct sila_link old;
        ck_assert_msg(sila_link_open(&a, SILA_LINK_PAIR, url, true, 4096, NULL, &err) == 0, "%s",
                      err.msg);
        ck_assert_int_eq(sila_link_open(&old, SILA_LINK_PAIR, url, false, 4096, NULL, &err), 0);
        uint8_t *buf = sila_link_alloc(1), *got;
        size_t n;
        ck_assert_int_eq(sila_link_send(&old, buf, 1, 5000), 0);
        ck_assert_int_eq(sila_link_recv(&a, &got, &n, 5000), 0);
        sila_link_release(got);
        ck_assert_int_eq(sila_link_open(&b, SILA_LINK_PAIR, url, false, 4096, NULL, &err), 0);
        struct answerer an = {0};
        ck_assert_int_eq(pthread_create(&an.thread, NULL, answer_hellos, &an), 0);
        ck_assert_msg(sila_greet(&b, 1, close_old, &old, &err) == 0, "%s", err.msg);
        buf = sila_link_alloc(77);
        memset(buf, 0, 77);
        ck_assert_int_eq(sila_link_send(&b, buf, 77, 5000), 0);
        pthread_join(an.thread, NULL);
        ck_assert_uint_eq(an.got, 77);
        sila_link_close(&old);
        close_pair();
    }
}
END_TEST

/* Nobody answers: the greeting ends with what the wait says. */
START_TEST(unanswered_greeting_ends_with_the_wait)
{
    open_pair(4096);
    struct sila_err err = {""};
    ck_assert_int_eq(sila_greet(&b, 1, give_up, NULL, &err), -ECANCELED);
    ck_assert_str_eq(err.msg, "given up");
    close_pair();
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("transport");
    TCase *tc = tcase_create("links");
    testdir_add_fixtures(tc);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, large_frames_arrive_whole);
    tcase_add_test(tc, frame_above_limit_never_arrives);
    tcase_add_test(tc, timeouts);
    tcase_add_test(tc, bad_addresses);
    tcase_add_test(tc, address_in_use);
    tcase_add_test(tc, greeting_gets_through_a_held_listener);
    tcase_add_test(tc, unanswered_greeting_ends_with_the_wait);
    suite_add_tcase(s, tc);
    return s;
}
