/* Tests of silad's RPC server without a socket (daemon/rpc.h): the cache
 * of encoded replies (rpc_cache.h) found while fresh, for the same request
 * bytes only, stale after a change of the run or RPC_CACHE_MAX_AGE_S, the
 * oldest entry making room; and rpc_answer's use of it and of the rate
 * limit: reads built once per change, busy replies over the limit that
 * never reach the handler, bad requests drawing on the reads' budget, and
 * control requests on their own; and silad's /metrics page reading from
 * the same cache (rpc_read) and on the same budget (rpc_take_read). The buckets refill
 * at one token a second, so the few microseconds a test takes never add
 * one. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "clock.h"
#include "rpc.h"
#include "rpc_cache.h"

/* ---- the cache */

static const uint8_t STATUS[] = {0x08, 0x01, 0x12, 0x00};
static const uint8_t WORKERS[] = {0x08, 0x01, 0x1a, 0x00};

/* Whether c answers req (n bytes) at now with the text reply. */
static bool answers(const struct rpc_cache *c, const uint8_t *req, size_t n, double now,
                    const char *reply)
{
    const struct rpc_cache_entry *e = rpc_cache_find(c, req, n, now);
    return e && e->len == strlen(reply) && memcmp(e->reply, reply, e->len) == 0;
}

static void put(struct rpc_cache *c, const uint8_t *req, size_t n, double now, const char *reply)
{
    rpc_cache_put(c, req, n, (const uint8_t *)reply, strlen(reply), now);
}

START_TEST(test_found_for_the_same_bytes)
{
    struct rpc_cache c = {0};
    ck_assert_ptr_null(rpc_cache_find(&c, STATUS, sizeof STATUS, 10.0));
    put(&c, STATUS, sizeof STATUS, 10.0, "status reply");
    ck_assert(answers(&c, STATUS, sizeof STATUS, 10.5, "status reply"));
    ck_assert_ptr_null(rpc_cache_find(&c, WORKERS, sizeof WORKERS, 10.5));
    ck_assert_ptr_null(rpc_cache_find(&c, STATUS, sizeof STATUS - 1, 10.5));
    rpc_cache_fini(&c);
}
END_TEST

START_TEST(test_stale_after_a_change)
{
    struct rpc_cache c = {0};
    put(&c, STATUS, sizeof STATUS, 10.0, "step 1");
    rpc_cache_stale(&c);
    ck_assert_ptr_null(rpc_cache_find(&c, STATUS, sizeof STATUS, 10.0));
    put(&c, STATUS, sizeof STATUS, 10.1, "step 2");
    ck_assert(answers(&c, STATUS, sizeof STATUS, 10.1, "step 2"));
    rpc_cache_fini(&c);
}
END_TEST

START_TEST(test_stale_with_age)
{
    struct rpc_cache c = {0};
    put(&c, STATUS, sizeof STATUS, 10.0, "old");
    ck_assert(answers(&c, STATUS, sizeof STATUS, 10.0 + RPC_CACHE_MAX_AGE_S / 2, "old"));
    ck_assert_ptr_null(rpc_cache_find(&c, STATUS, sizeof STATUS, 10.0 + RPC_CACHE_MAX_AGE_S));
    ck_assert_ptr_null(rpc_cache_find(&c, STATUS, sizeof STATUS, 9.0)); /* clock went back */
    rpc_cache_fini(&c);
}
END_TEST

START_TEST(test_oldest_makes_room)
{
    struct rpc_cache c = {0};
    uint8_t req[RPC_CACHE_SLOTS + 1][2];
    char text[RPC_CACHE_SLOTS + 1][8];
    for (int i = 0; i <= RPC_CACHE_SLOTS; i++) {
        req[i][0] = 0x08;
        req[i][1] = (uint8_t)i;
        snprintf(text[i], sizeof text[i], "r%d", i);
        put(&c, req[i], 2, 10.0 + 0.01 * i, text[i]);
    }
    ck_assert_ptr_null(rpc_cache_find(&c, req[0], 2, 10.1));
    for (int i = 1; i <= RPC_CACHE_SLOTS; i++)
        ck_assert(answers(&c, req[i], 2, 10.1, text[i]));
    /* the same request again takes its own slot, not another's */
    put(&c, req[1], 2, 10.2, "r1 again");
    for (int i = 2; i <= RPC_CACHE_SLOTS; i++)
        ck_assert(answers(&c, req[i], 2, 10.2, text[i]));
    ck_assert(answers(&c, req[1], 2, 10.2, "r1 again"));
    rpc_cache_fini(&c);
}
END_TEST

START_TEST(test_long_request_not_kept)
{
    struct rpc_cache c = {0};
    uint8_t req[RPC_CACHE_KEY_MAX + 1];
    memset(req, 7, sizeof req);
    put(&c, req, sizeof req, 10.0, "long");
    ck_assert_ptr_null(rpc_cache_find(&c, req, sizeof req, 10.0));
    put(&c, req, RPC_CACHE_KEY_MAX, 10.0, "longest kept");
    ck_assert(answers(&c, req, RPC_CACHE_KEY_MAX, 10.0, "longest kept"));
    ck_assert_ptr_null(rpc_cache_find(&c, (const uint8_t *)"", 0, 10.0));
    rpc_cache_fini(&c);
}
END_TEST

/* ---- rpc_answer */

/* Answers every request with an Ack naming how many calls came so far. */
static void handler(void *ctx, struct rpc *rpc, const Sila__Request *req, Sila__Reply *reply)
{
    int *calls = ctx;
    char text[32];
    (void)req;
    snprintf(text, sizeof text, "answer %d", ++*calls);
    Sila__Ack *a = rpc_alloc(rpc, sizeof *a);
    ck_assert_ptr_nonnull(a);
    sila__ack__init(a);
    a->message = rpc_strdup(rpc, text);
    reply->result_case = SILA__REPLY__RESULT_ACK;
    reply->ack = a;
}

/* An rpc as rpc_open makes it, without a socket: reads limited to rate a
 * second in bursts of burst (rate 0: no limit at all), control requests
 * to SILA_RPC_CONTROL_RATE. Closed with rpc_close. */
static void setup(struct rpc *rpc, int *calls, double rate, double burst)
{
    *rpc = (struct rpc){.handler = handler, .ctx = calls, .control_allowed = true};
    rpc->link.sock = -1;
    double now = sila_clock_s();
    sila_bucket_init(&rpc->reads, rate, burst, now);
    sila_bucket_init(&rpc->control, rate ? SILA_RPC_CONTROL_RATE : 0, SILA_RPC_CONTROL_RATE, now);
}

/* The bytes of a request for method m (since: Metrics' since_step). */
static size_t request(uint8_t buf[64], Sila__Request__MethodCase m, uint64_t since)
{
    static Sila__StatusRequest st = SILA__STATUS_REQUEST__INIT;
    static Sila__MetricsRequest me = SILA__METRICS_REQUEST__INIT;
    static Sila__PauseRequest pa = SILA__PAUSE_REQUEST__INIT;
    Sila__Request req = SILA__REQUEST__INIT;
    req.version = SILA_RPC_VERSION;
    req.method_case = m;
    if (m == SILA__REQUEST__METHOD_STATUS)
        req.status = &st;
    else if (m == SILA__REQUEST__METHOD_METRICS)
        req.metrics = &me, me.since_step = since;
    else
        req.pause = &pa;
    ck_assert_uint_le(sila__request__get_packed_size(&req), 64);
    return sila__request__pack(&req, buf);
}

/* rpc's answer to len bytes of req, decoded; *ret_hold its hold_s. */
static Sila__Reply *ask(struct rpc *rpc, const uint8_t *req, size_t len, double *ret_hold)
{
    struct rpc_reply out;
    ck_assert_int_eq(rpc_answer(rpc, req, len, &out), 0);
    Sila__Reply *r = sila__reply__unpack(NULL, out.len, out.buf);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->version, SILA_RPC_VERSION);
    *ret_hold = out.hold_s;
    return r;
}

/* Whether rpc answers method m with the Ack text (NULL: any Ack). */
static bool acks(struct rpc *rpc, Sila__Request__MethodCase m, uint64_t since, const char *text)
{
    uint8_t buf[64];
    double hold;
    Sila__Reply *r = ask(rpc, buf, request(buf, m, since), &hold);
    bool ok = r->result_case == SILA__REPLY__RESULT_ACK && !*r->error && hold == 0 &&
              (!text || strcmp(r->ack->message, text) == 0);
    sila__reply__free_unpacked(r, NULL);
    return ok;
}

/* Whether rpc answers method m busy, with a message starting with text,
 * a retry_after_ms and a hold of SILA_RPC_HOLD_S at least. */
static bool busy(struct rpc *rpc, Sila__Request__MethodCase m, const char *text)
{
    uint8_t buf[64];
    double hold;
    Sila__Reply *r = ask(rpc, buf, request(buf, m, 0), &hold);
    bool ok = r->result_case == SILA__REPLY__RESULT__NOT_SET &&
              strncmp(r->error, text, strlen(text)) == 0 &&
              r->retry_after_ms >= 1e3 * SILA_RPC_HOLD_S && hold >= SILA_RPC_HOLD_S;
    sila__reply__free_unpacked(r, NULL);
    return ok;
}

#define STATUS_M SILA__REQUEST__METHOD_STATUS
#define METRICS_M SILA__REQUEST__METHOD_METRICS
#define PAUSE_M SILA__REQUEST__METHOD_PAUSE
#define READS_BUSY                                                                                 \
    "busy: over the limit of 1 read requests a second (silad --rpc-rate); ask again in "

START_TEST(test_reads_built_once_per_change)
{
    struct rpc rpc;
    int calls = 0;
    setup(&rpc, &calls, 0, 1);
    for (int i = 0; i < 5; i++)
        ck_assert(acks(&rpc, STATUS_M, 0, "answer 1"));
    ck_assert(acks(&rpc, METRICS_M, 1, "answer 2"));
    ck_assert(acks(&rpc, METRICS_M, 2, "answer 3"));
    ck_assert(acks(&rpc, METRICS_M, 1, "answer 2"));
    ck_assert(acks(&rpc, STATUS_M, 0, "answer 1"));
    rpc_refresh(&rpc); /* a step */
    ck_assert(acks(&rpc, STATUS_M, 0, "answer 4"));
    ck_assert(acks(&rpc, PAUSE_M, 0, "answer 5")); /* control: never kept */
    ck_assert(acks(&rpc, PAUSE_M, 0, "answer 6"));
    ck_assert(acks(&rpc, STATUS_M, 0, "answer 7")); /* and it may change the run */
    ck_assert_int_eq(calls, 7);
    rpc_close(&rpc);
}
END_TEST

START_TEST(test_reads_over_the_limit_busy)
{
    struct rpc rpc;
    int calls = 0;
    setup(&rpc, &calls, 1, 3);
    ck_assert(acks(&rpc, STATUS_M, 0, "answer 1"));
    ck_assert(acks(&rpc, METRICS_M, 0, "answer 2"));
    ck_assert(acks(&rpc, STATUS_M, 0, "answer 1"));
    ck_assert(busy(&rpc, STATUS_M, READS_BUSY));
    ck_assert(busy(&rpc, METRICS_M, READS_BUSY));
    ck_assert_int_eq(calls, 2); /* busy replies never reach the handler */
    ck_assert_uint_eq(rpc.busy, 2);
    rpc_close(&rpc);
}
END_TEST

START_TEST(test_bad_requests_draw_on_reads)
{
    struct rpc rpc;
    int calls = 0;
    setup(&rpc, &calls, 1, 1);
    const uint8_t garbage[] = {0xff, 0xff, 0xff};
    double hold;
    Sila__Reply *r = ask(&rpc, garbage, sizeof garbage, &hold);
    ck_assert_ptr_nonnull(strstr(r->error, "does not decode"));
    ck_assert_uint_eq(r->retry_after_ms, 0);
    sila__reply__free_unpacked(r, NULL);
    r = ask(&rpc, garbage, sizeof garbage, &hold);
    ck_assert_msg(strncmp(r->error, READS_BUSY, strlen(READS_BUSY)) == 0, "%s", r->error);
    sila__reply__free_unpacked(r, NULL);
    ck_assert_uint_eq(rpc.bad, 1);
    rpc_close(&rpc);
}
END_TEST

START_TEST(test_control_has_its_own_budget)
{
    struct rpc rpc;
    int calls = 0;
    setup(&rpc, &calls, 1, 1);
    ck_assert(acks(&rpc, STATUS_M, 0, NULL));
    ck_assert(busy(&rpc, STATUS_M, READS_BUSY));
    for (unsigned i = 0; i < SILA_RPC_CONTROL_RATE; i++)
        ck_assert(acks(&rpc, PAUSE_M, 0, NULL));
    ck_assert(
        busy(&rpc, PAUSE_M, "busy: over the limit of 10 control requests a second; ask again in "));
    rpc_close(&rpc);
}
END_TEST

START_TEST(test_no_limit)
{
    struct rpc rpc;
    int calls = 0;
    setup(&rpc, &calls, 0, 1);
    for (int i = 0; i < 1000; i++) {
        ck_assert(acks(&rpc, METRICS_M, (uint64_t)i, NULL));
        ck_assert(acks(&rpc, PAUSE_M, 0, NULL));
    }
    ck_assert_uint_eq(rpc.busy, 0);
    rpc_close(&rpc);
}
END_TEST

/* ---- rpc_read */

/* Whether rpc_read of method m answers with the Ack text. */
static bool reads(struct rpc *rpc, Sila__Request__MethodCase m, const char *text)
{
    Sila__Reply *r = NULL;
    bool ok = rpc_read(rpc, m, &r) == 0 && r->result_case == SILA__REPLY__RESULT_ACK &&
              strcmp(r->ack->message, text) == 0;
    sila__reply__free_unpacked(r, NULL);
    return ok;
}

START_TEST(test_read_shares_the_cache)
{
    struct rpc rpc;
    int calls = 0;
    setup(&rpc, &calls, 0, 1);
    ck_assert(acks(&rpc, STATUS_M, 0, "answer 1"));
    ck_assert(reads(&rpc, STATUS_M, "answer 1")); /* a client's request, the same bytes */
    ck_assert(reads(&rpc, SILA__REQUEST__METHOD_WORKERS, "answer 2"));
    ck_assert(reads(&rpc, SILA__REQUEST__METHOD_WORKERS, "answer 2"));
    ck_assert(acks(&rpc, METRICS_M, 0, "answer 3"));
    ck_assert(reads(&rpc, METRICS_M, "answer 3")); /* since step 0 */
    rpc_refresh(&rpc);
    ck_assert(reads(&rpc, STATUS_M, "answer 4"));
    ck_assert(acks(&rpc, STATUS_M, 0, "answer 4"));
    ck_assert_int_eq(calls, 4);
    rpc_close(&rpc);
}
END_TEST

START_TEST(test_take_read_draws_on_reads)
{
    struct rpc rpc;
    int calls = 0;
    setup(&rpc, &calls, 1, 2);
    double wait = -1;
    ck_assert(rpc_take_read(&rpc, &wait));
    ck_assert(reads(&rpc, STATUS_M, "answer 1")); /* takes nothing */
    ck_assert(reads(&rpc, STATUS_M, "answer 1"));
    ck_assert(acks(&rpc, STATUS_M, 0, "answer 1"));
    ck_assert(wait == -1);
    ck_assert(!rpc_take_read(&rpc, &wait));
    ck_assert(wait >= SILA_RPC_HOLD_S && wait <= 1.0);
    ck_assert(busy(&rpc, STATUS_M, READS_BUSY));
    ck_assert_uint_eq(rpc.busy, 2);
    ck_assert(acks(&rpc, PAUSE_M, 0, "answer 2")); /* control keeps its own budget */
    rpc_close(&rpc);
}
END_TEST

/* Builds no result, as a handler out of memory does. */
static void no_memory(void *ctx, struct rpc *rpc, const Sila__Request *req, Sila__Reply *reply)
{
    (void)ctx, (void)rpc, (void)req, (void)reply;
}

START_TEST(test_read_without_result)
{
    struct rpc rpc;
    int calls = 0;
    setup(&rpc, &calls, 0, 1);
    rpc.handler = no_memory;
    Sila__Reply *r = NULL;
    ck_assert_int_eq(rpc_read(&rpc, STATUS_M, &r), -ENOMEM);
    ck_assert_ptr_null(r);
    rpc_close(&rpc);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("rpc");
    TCase *cache = tcase_create("cache");
    tcase_add_test(cache, test_found_for_the_same_bytes);
    tcase_add_test(cache, test_stale_after_a_change);
    tcase_add_test(cache, test_stale_with_age);
    tcase_add_test(cache, test_oldest_makes_room);
    tcase_add_test(cache, test_long_request_not_kept);
    suite_add_tcase(s, cache);
    TCase *answer = tcase_create("answer");
    tcase_add_test(answer, test_reads_built_once_per_change);
    tcase_add_test(answer, test_reads_over_the_limit_busy);
    tcase_add_test(answer, test_bad_requests_draw_on_reads);
    tcase_add_test(answer, test_control_has_its_own_budget);
    tcase_add_test(answer, test_no_limit);
    suite_add_tcase(s, answer);
    TCase *read = tcase_create("read");
    tcase_add_test(read, test_read_shares_the_cache);
    tcase_add_test(read, test_take_read_draws_on_reads);
    tcase_add_test(read, test_read_without_result);
    suite_add_tcase(s, read);
    return s;
}
