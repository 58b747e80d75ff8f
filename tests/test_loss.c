/* Tests of common/nn/loss.h against references written here, independently of
 * loss.c: hand-computed values, and naive long-double implementations whose
 * log-softmax is log p_c = -log Σ_j exp((z_j - z_c)/T) (no max shift, no
 * shared helper; long double's range covers every logit used here). The
 * gradients are checked by central differences in double of the loss value
 * itself, the `scale` argument and the ADD-into-dlogits contract by
 * pre-filling dlogits, and numerical stability on logits of ±80 and beyond.
 *
 * Bounds: losses are computed in double from float logits, so values agree
 * with the long-double references to ~1e-12 relative (bound VAL_TOL). The
 * differences use h = 1e-3 on float logits; the loss is smooth with O(1)
 * third derivatives, so truncation is ~1e-7 relative and round-off ~1e-13;
 * the analytic gradient is rounded to float (6e-8). Bound: GRAD_TOL relative
 * to the largest gradient of the batch. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check_main.h"
#include "testfill.h"
#include "loss.h"
#include "rng.h"

#define VAL_TOL 1e-9
#define GRAD_TOL 2e-5
#define FD_H 1e-3f
#define MAXN 256

/* ---- naive references ------------------------------------------------------ */

/* log softmax(z/T)_c of one row, in long double. */
static long double ref_log_softmax(const float *z, int C, float T, int c)
{
    long double s = 0.0L;
    for (int j = 0; j < C; j++)
        s += expl(((long double)z[j] - (long double)z[c]) / (long double)T);
    return -logl(s);
}

static double ref_ce(const float *logits, const int32_t *labels, int B, int C, float smoothing)
{
    long double total = 0.0L;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            long double t = (long double)smoothing / C + (c == labels[b] ? 1.0L - smoothing : 0.0L);
            total -= t * ref_log_softmax(logits + b * C, C, 1.0f, c);
        }
    return (double)(total / B);
}

/* -(t log σ(x) + (1-t) log(1-σ(x))), mean over B·C; for |x| small enough that
 * σ(x) stays away from 0 and 1 in long double. */
static double ref_bce(const float *x, const float *t, int n)
{
    long double total = 0.0L;
    for (int i = 0; i < n; i++) {
        long double s = 1.0L / (1.0L + expl(-(long double)x[i]));
        total -= t[i] * logl(s) + (1.0L - t[i]) * logl(1.0L - s);
    }
    return (double)(total / n);
}

static double ref_kl(const float *logits, const float *q, int B, int C, float T)
{
    long double total = 0.0L;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            if (q[b * C + c] > 0.0f)
                total +=
                    q[b * C + c] * (logl(q[b * C + c]) - ref_log_softmax(logits + b * C, C, T, c));
    return (double)(total / B);
}

/* q = softmax(z / T) per row, as a float target distribution. */
static void ref_softmax(float *q, const float *z, int B, int C, float T)
{
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            q[b * C + c] = (float)expl(ref_log_softmax(z + b * C, C, T, c));
}

/* ---- helpers ------------------------------------------------------------------ */

static void assert_rel(double got, double want, double tol, const char *what)
{
    ck_assert_msg(fabs(got - want) <= tol * fmax(1.0, fabs(want)), "%s: got %.17g, want %.17g",
                  what, got, want);
}

/* One loss, its arguments bound, as a function of the logits. */
struct loss_fn {
    double (*f)(const struct loss_fn *, float *dlogits, const float *logits, float scale);
    const int32_t *labels;
    const float *target;
    int B, C;
    float smoothing, T;
};

static double call_ce(const struct loss_fn *l, float *d, const float *z, float scale)
{
    return sila_ce_loss(d, z, l->labels, l->B, l->C, l->smoothing, scale);
}

static double call_bce(const struct loss_fn *l, float *d, const float *z, float scale)
{
    return sila_bce_logits_loss(d, z, l->target, l->B, l->C, scale);
}

static double call_kl(const struct loss_fn *l, float *d, const float *z, float scale)
{
    return sila_kl_loss(d, z, l->target, l->B, l->C, l->T, scale);
}

/* Central differences of the loss value at z (modified and restored). */
static void numeric_grad(const struct loss_fn *l, float *z, double *g)
{
    for (int i = 0; i < l->B * l->C; i++) {
        float z0 = z[i], zp = z0 + FD_H, zm = z0 - FD_H;
        z[i] = zp;
        double lp = l->f(l, NULL, z, 1.0f);
        z[i] = zm;
        double lm = l->f(l, NULL, z, 1.0f);
        z[i] = z0;
        g[i] = (lp - lm) / ((double)zp - (double)zm);
    }
}

/* The analytic gradient, added with `scale` into dlogits pre-filled with
 * `fill`, equals fill + scale·(numeric gradient); the value does not depend
 * on scale or on dlogits being NULL. */
static void check_grad(const struct loss_fn *l, float *z, float fill, float scale)
{
    int n = l->B * l->C;
    ck_assert_int_le(n, MAXN);
    double g[MAXN], gmax = 0.0;
    float d[MAXN];
    numeric_grad(l, z, g);
    for (int i = 0; i < n; i++) {
        d[i] = fill;
        gmax = fmax(gmax, fabs(g[i]));
    }
    ck_assert_double_gt(gmax, 0.0);
    double v = l->f(l, d, z, scale);
    double v0 = l->f(l, NULL, z, 1.0f);
    ck_assert_msg(v == v0, "value depends on scale/dlogits: %.17g vs %.17g", v, v0);
    for (int i = 0; i < n; i++) {
        double want = fill + scale * g[i];
        ck_assert_msg(fabs(d[i] - want) <= GRAD_TOL * fabs(scale) * gmax + 1e-7 * fabs(fill),
                      "dlogits[%d] = %.9g, want %.9g (fill %g + scale %g x numeric %.9g)", i, d[i],
                      want, fill, scale, g[i]);
    }
}

/* ---- cross-entropy --------------------------------------------------------- */

START_TEST(test_ce_hand_values)
{
    /* two equal logits: ln 2 */
    const float z2[2] = {0.0f, 0.0f};
    const int32_t y0[1] = {0};
    assert_rel(sila_ce_loss(NULL, z2, y0, 1, 2, 0.0f, 1.0f), M_LN2, VAL_TOL, "ln 2");
    /* ten equal logits, any smoothing: ln 10 */
    float z10[10];
    for (int i = 0; i < 10; i++)
        z10[i] = 3.5f;
    const int32_t y7[1] = {7};
    assert_rel(sila_ce_loss(NULL, z10, y7, 1, 10, 0.0f, 1.0f), log(10.0), VAL_TOL, "ln 10");
    assert_rel(sila_ce_loss(NULL, z10, y7, 1, 10, 0.2f, 1.0f), log(10.0), 1e-7, "ln 10 s=.2");
    /* {1,2,3}, label 2: -log(e³/(e+e²+e³)) = log(1 + e⁻¹ + e⁻²) */
    const float z3[3] = {1.0f, 2.0f, 3.0f};
    const int32_t y2[1] = {2};
    double l3 = log(1.0 + exp(-1.0) + exp(-2.0)); /* 0.40760596444437... */
    assert_rel(sila_ce_loss(NULL, z3, y2, 1, 3, 0.0f, 1.0f), l3, VAL_TOL, "{1,2,3}");
    /* smoothing 0.3 over C=3: t = {0.1, 0.1, 0.8}; -Σ t log p with
     * log p = {-2-l3, -1-l3, -l3}: l3 + 0.1·2 + 0.1·1 */
    assert_rel(sila_ce_loss(NULL, z3, y2, 1, 3, 0.3f, 1.0f), l3 + 0.3, 1e-7, "{1,2,3} s=.3");
    /* the batch mean: rows {1,2,3}/2 and {0,0,0}/0 give (l3 + ln 3)/2 */
    const float zb[6] = {1.0f, 2.0f, 3.0f, 0.0f, 0.0f, 0.0f};
    const int32_t yb[2] = {2, 0};
    assert_rel(sila_ce_loss(NULL, zb, yb, 2, 3, 0.0f, 1.0f), (l3 + log(3.0)) / 2, VAL_TOL,
               "batch mean");
}
END_TEST

static const float smoothings[] = {0.0f, 0.1f, 0.3f};

START_TEST(test_ce_vs_naive)
{
    enum { B = 6, C = 9 };
    float z[B * C];
    int32_t y[B];
    fill_normal(z, B * C, 2.0f, 10 + (uint64_t)_i);
    fill_labels(y, B, C, 10 + (uint64_t)_i);
    double want = ref_ce(z, y, B, C, smoothings[_i]);
    assert_rel(sila_ce_loss(NULL, z, y, B, C, smoothings[_i], 1.0f), want, VAL_TOL, "ce");
}
END_TEST

START_TEST(test_ce_grad)
{
    enum { B = 5, C = 7 };
    float z[B * C];
    int32_t y[B];
    fill_normal(z, B * C, 1.5f, 20 + (uint64_t)_i);
    fill_labels(y, B, C, 20 + (uint64_t)_i);
    struct loss_fn l = {call_ce, y, NULL, B, C, smoothings[_i], 1.0f};
    check_grad(&l, z, 0.0f, 1.0f);
    check_grad(&l, z, 0.375f, 2.5f); /* added to what is there, times scale */
    check_grad(&l, z, -1.25f, -0.5f);
}
END_TEST

START_TEST(test_ce_extreme)
{
    /* ±80 (e^160 overflows float) and ±1000 (overflows double) */
    enum { B = 3, C = 4 };
    const float z[B * C] = {80.0f,  -80.0f, 0.0f,    79.5f,    -80.0f, -80.0f,
                            -80.0f, -80.0f, 1000.0f, -1000.0f, 0.0f,   999.0f};
    const int32_t y[B] = {1, 2, 3};
    float d[B * C] = {0};
    double v = sila_ce_loss(d, z, y, B, C, 0.1f, 1.0f);
    ck_assert(isfinite(v));
    for (int i = 0; i < B * C; i++)
        ck_assert_msg(isfinite(d[i]), "dlogits[%d] = %g", i, d[i]);
    assert_rel(v, ref_ce(z, y, B, C, 0.1f), VAL_TOL, "extreme ce");
    /* row 0, label 1 (no smoothing): p ≈ {1/(1+e^-.5), 0, 0, e^-.5/(1+e^-.5)}
     * and the loss is 160 + log(1 + e^-.5) to double precision */
    const int32_t y1[1] = {1};
    float d1[C] = {0};
    assert_rel(sila_ce_loss(d1, z, y1, 1, C, 0.0f, 1.0f), 160.0 + log1p(exp(-0.5)), 1e-12, "row 0");
    double p0 = 1.0 / (1.0 + exp(-0.5));
    ck_assert_double_eq_tol(d1[0], p0, 1e-6);
    ck_assert_double_eq_tol(d1[1], -1.0, 1e-6);
    ck_assert_double_eq_tol(d1[2], 0.0, 1e-30);
    ck_assert_double_eq_tol(d1[3], 1.0 - p0, 1e-6);
    /* the gradient stays right at the extremes */
    float zz[B * C];
    memcpy(zz, z, sizeof zz);
    struct loss_fn l = {call_ce, y, NULL, B, C, 0.1f, 1.0f};
    check_grad(&l, zz, 0.0f, 1.0f);
}
END_TEST

/* ---- binary cross-entropy ---------------------------------------------------- */

START_TEST(test_bce_hand_values)
{
    /* x = 0: ln 2 whatever the target; x = ln 3, t = 1: σ = 3/4, -ln(3/4) */
    const float x[4] = {0.0f, 0.0f, 0.0f, (float)log(3.0)};
    const float t[4] = {0.0f, 1.0f, 0.3f, 1.0f};
    assert_rel(sila_bce_logits_loss(NULL, x, t, 1, 3, 1.0f), M_LN2, VAL_TOL, "ln 2");
    assert_rel(sila_bce_logits_loss(NULL, x + 3, t + 3, 1, 1, 1.0f), -log(0.75), 1e-7, "ln 4/3");
    /* mean over B·C, not over B */
    assert_rel(sila_bce_logits_loss(NULL, x, t, 2, 2, 1.0f), (3 * M_LN2 - log(0.75)) / 4, 1e-7,
               "mean");
}
END_TEST

START_TEST(test_bce_vs_naive_and_grad)
{
    enum { B = 4, C = 6 };
    float x[B * C], t[B * C];
    fill_normal(x, B * C, 3.0f, 30);
    struct sila_rng r;
    sila_rng_seed(&r, 31, 0);
    for (int i = 0; i < B * C; i++)
        t[i] = i % 3 == 0 ? sila_rng_uniform(&r) : (float)(i % 2); /* soft and hard */
    assert_rel(sila_bce_logits_loss(NULL, x, t, B, C, 1.0f), ref_bce(x, t, B * C), VAL_TOL, "bce");
    struct loss_fn l = {call_bce, NULL, t, B, C, 0.0f, 1.0f};
    check_grad(&l, x, 0.0f, 1.0f);
    check_grad(&l, x, 0.375f, 2.5f);
    check_grad(&l, x, -1.25f, -0.5f);
}
END_TEST

START_TEST(test_bce_extreme)
{
    /* naive log(1-σ(80)) is log(0) in double; the exact losses are
     * log1p(e^-80) ≈ 1.8048513878454153e-35 and 80 + that */
    const float x[4] = {80.0f, 80.0f, -80.0f, -80.0f};
    const float t[4] = {1.0f, 0.0f, 1.0f, 0.0f};
    const double tiny = 1.8048513878454153e-35;
    const double want[4] = {tiny, 80.0 + tiny, 80.0 + tiny, tiny};
    for (int i = 0; i < 4; i++) {
        float d = 0.0f;
        double v = sila_bce_logits_loss(&d, x + i, t + i, 1, 1, 1.0f);
        ck_assert_msg(isfinite(v) && isfinite(d), "x %g t %g: loss %g grad %g", x[i], t[i], v, d);
        ck_assert_msg(fabs(v - want[i]) <= 1e-12 * fmax(want[i], 1e-30), "x %g t %g: %.17g", x[i],
                      t[i], v);
        /* σ(x) - t: 1 - 1 = 0 (to 1e-35), 1, -1, 0 */
        ck_assert_double_eq_tol(d, (x[i] > 0 ? 1.0 : 0.0) - t[i], 1e-7);
    }
    const float big[2] = {1000.0f, -1000.0f};
    const float tb[2] = {0.5f, 0.5f};
    float db[2] = {0};
    double v = sila_bce_logits_loss(db, big, tb, 1, 2, 1.0f);
    assert_rel(v, 500.0, VAL_TOL, "±1000"); /* (1000 - 500 + 0 + 500) / 2 */
    ck_assert(isfinite(db[0]) && isfinite(db[1]));
    ck_assert_double_eq_tol(db[0], 0.25, 1e-7);
    ck_assert_double_eq_tol(db[1], -0.25, 1e-7);
}
END_TEST

/* ---- KL divergence ---------------------------------------------------------- */

static const float temps[] = {0.5f, 1.0f, 2.0f, 4.0f};

/* Teacher distribution q = softmax(zt / T) with one exact zero per row. */
static void make_target(float *q, int B, int C, float T, uint64_t seed)
{
    float zt[MAXN];
    fill_normal(zt, B * C, 2.0f, seed);
    ref_softmax(q, zt, B, C, T);
    for (int b = 0; b < B; b++) {
        float moved = q[b * C + b % C];
        q[b * C + b % C] = 0.0f;
        q[b * C + (b + 1) % C] += moved;
    }
}

START_TEST(test_kl_vs_naive)
{
    enum { B = 4, C = 7 };
    float T = temps[_i], z[B * C], q[B * C];
    fill_normal(z, B * C, 2.0f, 40 + (uint64_t)_i);
    make_target(q, B, C, T, 50 + (uint64_t)_i);
    double want = ref_kl(z, q, B, C, T);
    ck_assert_double_gt(want, 0.01);
    assert_rel(sila_kl_loss(NULL, z, q, B, C, T, 1.0f), want, VAL_TOL, "kl");
}
END_TEST

START_TEST(test_kl_grad)
{
    enum { B = 4, C = 7 };
    float T = temps[_i], z[B * C], q[B * C];
    fill_normal(z, B * C, 2.0f, 60 + (uint64_t)_i);
    make_target(q, B, C, T, 70 + (uint64_t)_i);
    struct loss_fn l = {call_kl, NULL, q, B, C, 0.0f, T};
    check_grad(&l, z, 0.0f, 1.0f);
    check_grad(&l, z, 0.375f, 2.5f);
    check_grad(&l, z, -1.25f, T * T); /* the distillation T² weight */
}
END_TEST

START_TEST(test_kl_zero_at_target)
{
    /* q = p_T: the divergence and its gradient vanish; shifting every logit of
     * a row by a constant changes nothing */
    enum { B = 3, C = 5 };
    float T = temps[_i], z[B * C], q[B * C], d[B * C] = {0};
    fill_normal(z, B * C, 2.0f, 80 + (uint64_t)_i);
    ref_softmax(q, z, B, C, T);
    for (int i = 0; i < C; i++)
        z[i] += 5.0f;
    double v = sila_kl_loss(d, z, q, B, C, T, 1.0f);
    ck_assert_double_eq_tol(v, 0.0, 1e-6);
    for (int i = 0; i < B * C; i++)
        ck_assert_double_eq_tol(d[i], 0.0, 1e-6);
}
END_TEST

START_TEST(test_kl_extreme)
{
    enum { B = 2, C = 4 };
    const float z[B * C] = {80.0f, -80.0f, 0.0f, 79.0f, -1000.0f, 1000.0f, 0.0f, 0.0f};
    const float q[B * C] = {0.25f, 0.25f, 0.25f, 0.25f, 0.5f, 0.0f, 0.5f, 0.0f};
    for (int k = 0; k < 4; k++) {
        float T = temps[k], d[B * C] = {0};
        double v = sila_kl_loss(d, z, q, B, C, T, 1.0f);
        ck_assert_msg(isfinite(v), "T %g: %g", T, v);
        for (int i = 0; i < B * C; i++)
            ck_assert_msg(isfinite(d[i]), "T %g: dlogits[%d] = %g", T, i, d[i]);
        assert_rel(v, ref_kl(z, q, B, C, T), VAL_TOL, "extreme kl");
        /* row 1: p_T ≈ onehot(1), so the gradient is (p - q)/(T·B) */
        ck_assert_double_eq_tol(d[4], -0.5 / (T * B), 1e-7);
        ck_assert_double_eq_tol(d[5], 1.0 / (T * B), 1e-7);
    }
}
END_TEST

/* ---- softmax and accuracy ---------------------------------------------------- */

START_TEST(test_softmax)
{
    enum { B = 5, C = 8 };
    float T = temps[_i], z[B * C], p[B * C], inplace[B * C];
    fill_normal(z, B * C, 3.0f, 90 + (uint64_t)_i);
    z[0] = 80.0f; /* extreme values in row 0 and 1 */
    z[1] = -80.0f;
    z[C] = 1000.0f;
    z[C + 1] = -1000.0f;
    sila_softmax(p, z, B, C, T);
    memcpy(inplace, z, sizeof z);
    sila_softmax(inplace, inplace, B, C, T); /* probs may alias logits */
    for (int b = 0; b < B; b++) {
        double sum = 0.0;
        for (int c = 0; c < C; c++) {
            int i = b * C + c;
            ck_assert_msg(isfinite(p[i]) && p[i] >= 0.0f, "p[%d] = %g", i, p[i]);
            double want = (double)expl(ref_log_softmax(z + b * C, C, T, c));
            ck_assert_msg(fabs(p[i] - want) <= 1e-6 * want + 1e-30, "p[%d] = %.9g, want %.9g", i,
                          p[i], want);
            ck_assert_float_eq(inplace[i], p[i]);
            sum += p[i];
        }
        ck_assert_double_eq_tol(sum, 1.0, 1e-6);
    }
    ck_assert_double_eq_tol(p[C], 1.0, 1e-7); /* 1000 dominates row 1 */
}
END_TEST

START_TEST(test_count_correct)
{
    const float z[4 * 3] = {
        0.1f,   0.7f,  0.2f,  /* arg-max 1 */
        -5.0f,  -4.0f, -6.0f, /* 1 */
        3.0f,   -1.0f, 2.9f,  /* 0 */
        -80.0f, 0.0f,  80.0f, /* 2 */
    };
    const int32_t all[4] = {1, 1, 0, 2};
    const int32_t some[4] = {1, 0, 2, 2};
    const int32_t none[4] = {0, 2, 1, 1};
    ck_assert_int_eq(sila_count_correct(z, all, 4, 3), 4);
    ck_assert_int_eq(sila_count_correct(z, some, 4, 3), 2);
    ck_assert_int_eq(sila_count_correct(z, none, 4, 3), 0);
    ck_assert_int_eq(sila_count_correct(z + 3, all + 1, 3, 3), 3); /* a sub-batch */
    ck_assert_int_eq(sila_count_correct(z, all, 1, 3), 1);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("loss");
    TCase *tc = tcase_create("loss");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_ce_hand_values);
    tcase_add_loop_test(tc, test_ce_vs_naive, 0, 3);
    tcase_add_loop_test(tc, test_ce_grad, 0, 3);
    tcase_add_test(tc, test_ce_extreme);
    tcase_add_test(tc, test_bce_hand_values);
    tcase_add_test(tc, test_bce_vs_naive_and_grad);
    tcase_add_test(tc, test_bce_extreme);
    tcase_add_loop_test(tc, test_kl_vs_naive, 0, 4);
    tcase_add_loop_test(tc, test_kl_grad, 0, 4);
    tcase_add_loop_test(tc, test_kl_zero_at_target, 0, 4);
    tcase_add_test(tc, test_kl_extreme);
    tcase_add_loop_test(tc, test_softmax, 0, 4);
    tcase_add_test(tc, test_count_correct);
    suite_add_tcase(s, tc);
    return s;
}
