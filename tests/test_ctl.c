/* Control frames over a real link: round trips with and without a tensor
 * tail, and every malformed frame refused with -EBADMSG and a sentence,
 * the link still usable afterwards. Also the run's addresses. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "ctl.h"
#include "endpoint.h"

static struct sila_link a, b;

static void open_pair(void)
{
    char url[64];
    struct sila_err err;
    snprintf(url, sizeof url, "inproc://ctl-%d", getpid());
    ck_assert_msg(sila_link_open(&a, SILA_LINK_PAIR, url, true, 1 << 20, NULL, &err) == 0, "%s",
                  err.msg);
    ck_assert_msg(sila_link_open(&b, SILA_LINK_PAIR, url, false, 1 << 20, NULL, &err) == 0, "%s",
                  err.msg);
}

static void close_pair(void)
{
    sila_link_close(&a);
    sila_link_close(&b);
}

/* Sends raw bytes as one frame from a to b. */
static void send_raw(const void *bytes, size_t len)
{
    uint8_t *buf = sila_link_alloc(len ? len : 1);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, bytes, len);
    ck_assert_int_eq(sila_link_send(&a, buf, len ? len : 1, 1000), 0);
}

START_TEST(round_trip_done)
{
    struct sila_err err;
    Sila__Done d = SILA__DONE__INIT;
    d.module = 3, d.phase = SILA__PHASE__GLOBAL, d.round = 2, d.batch = 123456789012ull;
    d.loss = 0.25f, d.correct = 17, d.samples = 32;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_DONE;
    c.done = &d;
    ck_assert_msg(sila_ctl_send(&a, &c, NULL, 0, 1000, &err) == 0, "%s", err.msg);
    struct sila_ctl_msg m;
    ck_assert_msg(sila_ctl_recv(&b, 1000, &m, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(m.msg->msg_case, SILA__CONTROL__MSG_DONE);
    ck_assert_uint_eq(m.msg->done->batch, 123456789012ull);
    ck_assert_uint_eq(m.msg->done->correct, 17);
    ck_assert_ptr_null(m.tail);
    sila_ctl_msg_free(&m);
}
END_TEST

START_TEST(round_trip_state_tail)
{
    struct sila_err err;
    float v[7] = {1, -2, 3.5f, 0, 1e-30f, -0.0f, 42};
    Sila__ModuleState st = SILA__MODULE_STATE__INIT;
    st.module = 1, st.params = 5, st.buffers = 2;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_STATE;
    c.state = &st;
    ck_assert_msg(sila_ctl_send(&a, &c, v, 7, 1000, &err) == 0, "%s", err.msg);
    struct sila_ctl_msg m;
    ck_assert_msg(sila_ctl_recv(&b, 1000, &m, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(m.ntail, 7);
    ck_assert_int_eq(memcmp(m.tail, v, sizeof v), 0);
    sila_ctl_msg_free(&m);
}
END_TEST

/* A Done carries collab's logits as its tail, announced by `logits`. */
START_TEST(round_trip_done_logits)
{
    struct sila_err err;
    float logits[6] = {2.5f, -1, 0, 7, -3.25f, 1e-20f};
    Sila__Done d = SILA__DONE__INIT;
    d.module = 4, d.phase = SILA__PHASE__LOCAL, d.batch = 9, d.samples = 2, d.logits = 6;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_DONE;
    c.done = &d;
    ck_assert_msg(sila_ctl_send(&a, &c, logits, 6, 1000, &err) == 0, "%s", err.msg);
    struct sila_ctl_msg m;
    ck_assert_msg(sila_ctl_recv(&b, 1000, &m, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(m.msg->done->logits, 6);
    ck_assert_uint_eq(m.ntail, 6);
    ck_assert_int_eq(memcmp(m.tail, logits, sizeof logits), 0);
    sila_ctl_msg_free(&m);
    /* a tail other than the one announced */
    ck_assert_msg(sila_ctl_send(&a, &c, logits, 5, 1000, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(sila_ctl_recv(&b, 1000, &m, &err), -EBADMSG);
    ck_assert_msg(strstr(err.msg, "announces 6 floats"), "'%s'", err.msg);
    d.logits = 0;
    ck_assert_msg(sila_ctl_send(&a, &c, logits, 6, 1000, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(sila_ctl_recv(&b, 1000, &m, &err), -EBADMSG);
    ck_assert_msg(strstr(err.msg, "announces 0 floats"), "'%s'", err.msg);
}
END_TEST

/* A frame of a ModuleState announcing `announced` floats with `sent` after it. */
static size_t state_frame(uint8_t *out, uint64_t announced, size_t sent)
{
    Sila__ModuleState st = SILA__MODULE_STATE__INIT;
    st.module = 1, st.params = announced;
    Sila__Control c = SILA__CONTROL__INIT;
    c.msg_case = SILA__CONTROL__MSG_STATE;
    c.state = &st;
    uint32_t ml = (uint32_t)sila__control__pack(&c, out + 8);
    memcpy(out, "SILC", 4);
    memcpy(out + 4, &ml, 4);
    size_t len = 8 + ((ml + 3) & ~3u);
    memset(out + 8 + ml, 0, len - 8 - ml);
    memset(out + len, 0, sent * 4);
    return len + sent * 4;
}

static void expect_refused(const void *bytes, size_t len, const char *words)
{
    struct sila_err err = {""};
    struct sila_ctl_msg m;
    send_raw(bytes, len);
    ck_assert_int_eq(sila_ctl_recv(&b, 1000, &m, &err), -EBADMSG);
    ck_assert_msg(strstr(err.msg, words), "'%s' does not say '%s'", err.msg, words);
    ck_assert_ptr_null(m.msg);
}

START_TEST(refuses_malformed)
{
    uint8_t buf[256];
    expect_refused("", 0, "without the SILC prefix");
    expect_refused("SILF\0\0\0\0", 8, "without the SILC prefix");
    expect_refused("SILC\xff\xff\xff\x7f", 8, "message length");
    expect_refused("SILC\x04\0\0\0\xff\xff\xff\xff", 12, "does not decode");
    expect_refused("SILC\0\0\0\0", 8, "empty message");
    expect_refused(buf, state_frame(buf, 3, 2), "announces 3 floats");
    expect_refused(buf, state_frame(buf, 1, 2), "announces 1 floats");
    expect_refused(buf, state_frame(buf, UINT64_MAX, 0), "announces");
    size_t len = state_frame(buf, 1, 1);
    expect_refused(buf, len - 1, "tail bytes");
    /* the link still carries good frames */
    ck_assert_uint_eq(len, state_frame(buf, 1, 1));
    send_raw(buf, len);
    struct sila_err err;
    struct sila_ctl_msg m;
    ck_assert_msg(sila_ctl_recv(&b, 1000, &m, &err) == 0, "%s", err.msg);
    sila_ctl_msg_free(&m);
}
END_TEST

START_TEST(addresses)
{
    struct sila_url u;
    struct sila_err err = {""};
    char s[SILA_URL_MAX + 64];
    ck_assert_int_eq(sila_url_parse("tcp://10.0.0.5:7600", &u, &err), 0);
    sila_endpoint_control(&u, 3, s, sizeof s);
    ck_assert_str_eq(s, "tcp://10.0.0.5:7603");
    sila_endpoint_data(&u, 2, "node7", s, sizeof s);
    ck_assert_str_eq(s, "tcp://node7:7666");
    ck_assert(!sila_url_loopback(&u));
    ck_assert(sila_host_loopback("127.0.0.2") && sila_host_loopback("localhost"));
    ck_assert(!sila_host_loopback("10.0.0.5") && !sila_host_loopback("*"));
    ck_assert(sila_host_numeric("10.0.0.5") && sila_host_numeric("*"));
    ck_assert(!sila_host_numeric("node7") && !sila_host_numeric("10.0.0"));
    /* the route to a loopback address leaves from the loopback */
    ck_assert_int_eq(sila_url_parse("tcp://127.0.0.1:7600", &u, &err), 0);
    ck_assert_int_eq(sila_url_route_address(&u, s, sizeof s, &err), 0);
    ck_assert_str_eq(s, "127.0.0.1");
    ck_assert_int_eq(sila_url_parse("tcp://no-such-host.invalid:7600", &u, &err), 0);
    ck_assert_int_eq(sila_url_route_address(&u, s, sizeof s, &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, "no-such-host.invalid"), "%s", err.msg);
    ck_assert_int_eq(sila_url_parse("ipc:///run/sila/s", &u, &err), 0);
    sila_endpoint_data(&u, 4, "ignored", s, sizeof s);
    ck_assert_str_eq(s, "ipc:///run/sila/s.data-4");
    const char *bad[] = {"udp://x:1",        "tcp://:7600",    "tcp://host", "tcp://host:0",
                         "tcp://host:65535", "tcp://host:12x", "ipc://"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_int_eq(sila_url_parse(bad[i], &u, &err), -EINVAL);
        ck_assert_msg(strstr(err.msg, bad[i]), "'%s' does not name '%s'", err.msg, bad[i]);
    }
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("ctl");
    TCase *tc = tcase_create("ctl");
    tcase_add_checked_fixture(tc, open_pair, close_pair);
    tcase_add_test(tc, round_trip_done);
    tcase_add_test(tc, round_trip_state_tail);
    tcase_add_test(tc, round_trip_done_logits);
    tcase_add_test(tc, refuses_malformed);
    tcase_add_test(tc, addresses);
    suite_add_tcase(s, tc);
    return s;
}
