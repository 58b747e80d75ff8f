/* Tests of common/bucket.h, the token bucket of the RPC's rate limit, on
 * a clock the test drives: bursts, refill at the rate, the wait it
 * announces, the long-run average under a flood, and no limit at rate 0. */
#include "bucket.h"
#include "check_main.h"

/* Tokens taken from b by attempts every dt seconds from t0 for n attempts. */
static int flood(struct sila_bucket *b, double t0, double dt, int n)
{
    int taken = 0;
    for (int i = 0; i < n; i++)
        taken += sila_bucket_take(b, t0 + i * dt);
    return taken;
}

START_TEST(test_burst_then_refused)
{
    struct sila_bucket b;
    sila_bucket_init(&b, 10, 5, 100.0);
    ck_assert_int_eq(flood(&b, 100.0, 0, 20), 5);
    ck_assert(!sila_bucket_take(&b, 100.0));
}
END_TEST

START_TEST(test_refills_at_rate)
{
    struct sila_bucket b;
    sila_bucket_init(&b, 10, 1, 0.0);
    ck_assert(sila_bucket_take(&b, 0.0));
    ck_assert(!sila_bucket_take(&b, 0.05)); /* half a token */
    ck_assert(sila_bucket_take(&b, 0.1 + 1e-9));
    ck_assert(!sila_bucket_take(&b, 0.1 + 1e-9));
}
END_TEST

START_TEST(test_wait_announces_the_next_token)
{
    struct sila_bucket b;
    sila_bucket_init(&b, 4, 2, 0.0);
    ck_assert(sila_bucket_wait(&b, 0.0) == 0);
    flood(&b, 0.0, 0, 2);
    ck_assert_double_eq_tol(sila_bucket_wait(&b, 0.0), 0.25, 1e-12);
    ck_assert_double_eq_tol(sila_bucket_wait(&b, 0.1), 0.15, 1e-12);
    ck_assert(!sila_bucket_take(&b, 0.2));
    ck_assert(sila_bucket_take(&b, 0.25 + 1e-9));
}
END_TEST

START_TEST(test_idle_bucket_holds_burst_only)
{
    struct sila_bucket b;
    sila_bucket_init(&b, 100, 3, 0.0);
    flood(&b, 0.0, 0, 3);
    ck_assert_int_eq(flood(&b, 3600.0, 0, 10), 3);
}
END_TEST

START_TEST(test_flood_gets_the_rate)
{
    /* 1000 attempts a second for 10 s against 100 a second, burst 100:
     * the burst, then one token every 10 attempts */
    struct sila_bucket b;
    sila_bucket_init(&b, 100, 100, 0.0);
    int taken = flood(&b, 0.0, 0.001, 10000);
    ck_assert_int_ge(taken, 100 + 999 - 1);
    ck_assert_int_le(taken, 100 + 1000);
}
END_TEST

START_TEST(test_clock_going_back_adds_nothing)
{
    struct sila_bucket b;
    sila_bucket_init(&b, 10, 1, 5.0);
    ck_assert(sila_bucket_take(&b, 5.0));
    ck_assert(!sila_bucket_take(&b, 1.0));
    ck_assert(!sila_bucket_take(&b, 5.05));
    ck_assert(sila_bucket_take(&b, 5.1 + 1e-9));
}
END_TEST

START_TEST(test_rate_zero_is_no_limit)
{
    struct sila_bucket b;
    sila_bucket_init(&b, 0, 1, 0.0);
    ck_assert_int_eq(flood(&b, 0.0, 0, 100000), 100000);
    ck_assert(sila_bucket_wait(&b, 0.0) == 0);
    struct sila_bucket zero = {0};
    ck_assert(sila_bucket_take(&zero, 0.0)); /* a zeroed bucket: no limit */
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("bucket");
    TCase *tc = tcase_create("bucket");
    tcase_add_test(tc, test_burst_then_refused);
    tcase_add_test(tc, test_refills_at_rate);
    tcase_add_test(tc, test_wait_announces_the_next_token);
    tcase_add_test(tc, test_idle_bucket_holds_burst_only);
    tcase_add_test(tc, test_flood_gets_the_rate);
    tcase_add_test(tc, test_clock_going_back_adds_nothing);
    tcase_add_test(tc, test_rate_zero_is_no_limit);
    suite_add_tcase(s, tc);
    return s;
}
