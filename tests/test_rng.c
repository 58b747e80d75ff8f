/* Tests of common/nn/rng.h: reproducibility from (seed, stream), the first
 * outputs pinned against an independent reference, and the distributions of
 * below/uniform/normal/shuffle within generous statistical bounds (about
 * 5 sigma, so a correct generator fails with negligible probability while a
 * biased one fails at once). Fixed seeds keep every run identical. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check_main.h"
#include "rng.h"

#define DRAWS 100000

START_TEST(test_same_seed_same_sequence)
{
    struct sila_rng a, b;
    sila_rng_seed(&a, 42, 3);
    sila_rng_seed(&b, 42, 3);
    for (int i = 0; i < 1000; i++)
        ck_assert_uint_eq(sila_rng_u64(&a), sila_rng_u64(&b));
}
END_TEST

/* Number of equal outputs in the first 1000 of two generators. */
static int count_equal(struct sila_rng *a, struct sila_rng *b)
{
    int equal = 0;
    for (int i = 0; i < 1000; i++)
        equal += sila_rng_u64(a) == sila_rng_u64(b);
    return equal;
}

START_TEST(test_streams_differ)
{
    struct sila_rng a, b, c;
    sila_rng_seed(&a, 42, 0);
    sila_rng_seed(&b, 42, 1);
    ck_assert_int_eq(count_equal(&a, &b), 0);
    sila_rng_seed(&a, 42, 0);
    sila_rng_seed(&c, 43, 0);
    ck_assert_int_eq(count_equal(&a, &c), 0);
}
END_TEST

START_TEST(test_copy_forks_stream)
{
    /* The state is plain data: a copy continues the same sequence. */
    struct sila_rng a, b;
    sila_rng_seed(&a, 7, 0);
    for (int i = 0; i < 10; i++)
        sila_rng_u64(&a);
    b = a;
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(sila_rng_u64(&a), sila_rng_u64(&b));
}
END_TEST

START_TEST(test_pinned_outputs)
{
    /* Produced once by an independent Python 3 reimplementation of rng.c:
     * x = seed ^ (stream * 0xd1342543de82ef95) mod 2^64, s[0..3] = four
     * splitmix64(x) outputs, then xoshiro256** (result = rotl(s1 * 5, 7) * 9)
     * for seed 42, stream 0. The same script reproduces the published
     * vectors splitmix64(0) = 0xe220a8397b1dcdaf and xoshiro256** from
     * {1, 2, 3, 4} = 11520, 0, 1509978240. */
    struct sila_rng r;
    sila_rng_seed(&r, 42, 0);
    ck_assert_uint_eq(sila_rng_u64(&r), 0x15780b2e0c2ec716ull);
    ck_assert_uint_eq(sila_rng_u64(&r), 0x6104d9866d113a7eull);
    ck_assert_uint_eq(sila_rng_u64(&r), 0xae17533239e499a1ull);
}
END_TEST

START_TEST(test_below_range)
{
    static const uint32_t ns[] = {1, 2, 3, 7, 1000, 0x80000001u, 3000000000u, UINT32_MAX};
    struct sila_rng r;
    sila_rng_seed(&r, 1, 0);
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        uint32_t max = 0;
        for (int i = 0; i < 10000; i++) {
            uint32_t x = sila_rng_below(&r, ns[k]);
            ck_assert_uint_lt(x, ns[k]);
            max = x > max ? x : max;
        }
        /* 10000 draws reach the top half of the range. */
        ck_assert_uint_ge(max, ns[k] / 2);
    }
}
END_TEST

START_TEST(test_below_uniform)
{
    /* Chi-square over 10 cells of 10000 expected draws: 9 degrees of
     * freedom, mean 9, sd sqrt(18) = 4.2; 50 lies 9.7 sd out (p < 1e-7). */
    struct sila_rng r;
    uint32_t count[10] = {0};
    sila_rng_seed(&r, 2, 0);
    for (int i = 0; i < DRAWS; i++)
        count[sila_rng_below(&r, 10)]++;
    double expected = DRAWS / 10.0, chi2 = 0.0;
    for (int c = 0; c < 10; c++)
        chi2 += (count[c] - expected) * (count[c] - expected) / expected;
    ck_assert_double_lt(chi2, 50.0);
}
END_TEST

START_TEST(test_uniform)
{
    /* Mean of N uniforms: 0.5 with sd sqrt(1/12 / N) = 9.1e-4; 5 sd = 4.6e-3. */
    struct sila_rng r;
    double sum = 0.0;
    sila_rng_seed(&r, 3, 0);
    for (int i = 0; i < DRAWS; i++) {
        float u = sila_rng_uniform(&r);
        ck_assert_float_ge(u, 0.0f);
        ck_assert_float_lt(u, 1.0f);
        sum += u;
    }
    ck_assert_double_eq_tol(sum / DRAWS, 0.5, 4.6e-3);
}
END_TEST

START_TEST(test_normal)
{
    /* N standard normals: the mean has sd 1/sqrt(N) = 3.2e-3 (5 sd = 1.6e-2);
     * the variance has sd sqrt(2/N) = 4.5e-3 (5 sd = 2.2e-2). */
    struct sila_rng r;
    double sum = 0.0, sum2 = 0.0;
    sila_rng_seed(&r, 4, 0);
    for (int i = 0; i < DRAWS; i++) {
        double x = sila_rng_normal(&r);
        ck_assert(isfinite(x));
        sum += x;
        sum2 += x * x;
    }
    double mean = sum / DRAWS;
    double var = sum2 / DRAWS - mean * mean;
    ck_assert_double_eq_tol(mean, 0.0, 1.6e-2);
    ck_assert_double_eq_tol(var, 1.0, 2.2e-2);
}
END_TEST

START_TEST(test_shuffle_permutation)
{
    enum { N = 1000 };
    uint32_t perm[N];
    uint8_t seen[N];
    struct sila_rng r;
    int moved = 0;
    for (uint32_t i = 0; i < N; i++)
        perm[i] = i;
    memset(seen, 0, sizeof seen);
    sila_rng_seed(&r, 5, 0);
    sila_rng_shuffle(&r, perm, N);
    for (uint32_t i = 0; i < N; i++) {
        ck_assert_uint_lt(perm[i], N);
        ck_assert_uint_eq(seen[perm[i]], 0);
        seen[perm[i]] = 1;
        moved += perm[i] != i;
    }
    /* A uniform permutation leaves about one fixed point. */
    ck_assert_int_gt(moved, N - 20);
}
END_TEST

START_TEST(test_shuffle_tiny)
{
    /* n = 0 and n = 1 are no-ops that draw nothing. */
    struct sila_rng r, before;
    uint32_t one = 0;
    sila_rng_seed(&r, 6, 0);
    before = r;
    sila_rng_shuffle(&r, NULL, 0);
    sila_rng_shuffle(&r, &one, 1);
    ck_assert_uint_eq(one, 0);
    ck_assert_int_eq(memcmp(&r, &before, sizeof r), 0);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("rng");
    TCase *seq = tcase_create("sequence");
    tcase_add_test(seq, test_same_seed_same_sequence);
    tcase_add_test(seq, test_streams_differ);
    tcase_add_test(seq, test_copy_forks_stream);
    tcase_add_test(seq, test_pinned_outputs);
    suite_add_tcase(s, seq);
    TCase *dist = tcase_create("distributions");
    tcase_add_test(dist, test_below_range);
    tcase_add_test(dist, test_below_uniform);
    tcase_add_test(dist, test_uniform);
    tcase_add_test(dist, test_normal);
    tcase_add_test(dist, test_shuffle_permutation);
    tcase_add_test(dist, test_shuffle_tiny);
    suite_add_tcase(s, dist);
    return s;
}
