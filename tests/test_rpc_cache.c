/* Tests of daemon/rpc_cache.h, the encoded replies silad sends again to
 * the same read request: found while fresh, for those request bytes only;
 * stale after a change of the run or RPC_CACHE_MAX_AGE_S; the oldest entry
 * makes room; requests too long to key are never kept. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "rpc_cache.h"

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

Suite *test_suite(void)
{
    Suite *s = suite_create("rpc_cache");
    TCase *tc = tcase_create("rpc_cache");
    tcase_add_test(tc, test_found_for_the_same_bytes);
    tcase_add_test(tc, test_stale_after_a_change);
    tcase_add_test(tc, test_stale_with_age);
    tcase_add_test(tc, test_oldest_makes_room);
    tcase_add_test(tc, test_long_request_not_kept);
    suite_add_tcase(s, tc);
    return s;
}
