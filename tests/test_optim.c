/* Tests of common/nn/optim.h: SGD (plain, momentum, Nesterov) and AdamW against
 * PyTorch's update rules, and the learning-rate schedules. Every expected
 * value is worked out by hand (exact decimal arithmetic, shown in the
 * comments) from the formulas of torch.optim.SGD / torch.optim.AdamW, not
 * from the code under test. */
#include <math.h>
#include <stdint.h>

#include "check_main.h"
#include "optim.h"

/* Float updates of values near 1 agree with exact arithmetic to a few ulps. */
#define TOL 2e-6

/* p = {1, -2}, g = {0.5, 0.25} at every step, lr 0.1, wd 5e-4. */
static const float sgd_g[2] = {0.5f, 0.25f};

/* Runs `steps` SGD updates from p = {1, -2} with the constant gradient. */
static void sgd_run(const struct sila_optim_cfg *cfg, int steps, float p[2], float *state)
{
    p[0] = 1.0f;
    p[1] = -2.0f;
    for (int t = 1; t <= steps; t++)
        sila_optim_step(cfg, 0.1f, (uint64_t)t, p, sgd_g, state, 2);
}

START_TEST(test_state_floats)
{
    struct sila_optim_cfg plain = {.kind = SILA_OPTIM_SGD, .momentum = 0.0f};
    struct sila_optim_cfg mom = {.kind = SILA_OPTIM_SGD, .momentum = 0.9f};
    struct sila_optim_cfg adamw = {.kind = SILA_OPTIM_ADAMW, .beta1 = 0.9f, .beta2 = 0.999f};
    ck_assert_uint_eq(sila_optim_state_floats(&plain, 7), 0);
    ck_assert_uint_eq(sila_optim_state_floats(&mom, 7), 7);
    ck_assert_uint_eq(sila_optim_state_floats(&adamw, 7), 14);
}
END_TEST

START_TEST(test_sgd_plain)
{
    /* d = g + wd p; p -= lr d.
     * step 1: d = {0.5 + 0.0005, 0.25 - 0.001} = {0.5005, 0.249}
     *         p = {1 - 0.05005, -2 - 0.0249} = {0.94995, -2.0249}
     * step 2: d = {0.5 + 5e-4 * 0.94995, 0.25 - 5e-4 * 2.0249}
     *           = {0.500474975, 0.24898755}
     *         p = {0.94995 - 0.0500474975, -2.0249 - 0.024898755}
     *           = {0.8999025025, -2.049798755}
     * No momentum means no state: a NULL state must not be touched. */
    struct sila_optim_cfg cfg = {.kind = SILA_OPTIM_SGD, .weight_decay = 5e-4f};
    float p[2];
    sgd_run(&cfg, 2, p, NULL);
    ck_assert_double_eq_tol(p[0], 0.8999025025, TOL);
    ck_assert_double_eq_tol(p[1], -2.049798755, TOL);
}
END_TEST

START_TEST(test_sgd_momentum)
{
    /* d = g + wd p; buf = 0.9 buf + d (buf = d at step 1); p -= lr buf.
     * step 1: d = buf = {0.5005, 0.249}; p = {0.94995, -2.0249}
     * step 2: d = {0.500474975, 0.24898755}
     *         buf = {0.45045 + 0.500474975, 0.2241 + 0.24898755}
     *             = {0.950924975, 0.47308755}
     *         p = {0.94995 - 0.0950924975, -2.0249 - 0.047308755}
     *           = {0.8548575025, -2.072208755}
     * step 3: d = {0.5 + 5e-4 * 0.8548575025, 0.25 - 5e-4 * 2.072208755}
     *           = {0.50042742875125, 0.2489638956225}
     *         buf = {0.8558324775 + 0.50042742875125,
     *                0.425778795 + 0.2489638956225}
     *             = {1.35625990625125, 0.6747426906225}
     *         p = {0.8548575025 - 0.135625990625125,
     *              -2.072208755 - 0.06747426906225}
     *           = {0.719231511874875, -2.13968302406225} */
    struct sila_optim_cfg cfg = {.kind = SILA_OPTIM_SGD, .momentum = 0.9f, .weight_decay = 5e-4f};
    float p[2], buf[2] = {0.0f, 0.0f};
    sgd_run(&cfg, 3, p, buf);
    ck_assert_double_eq_tol(p[0], 0.719231511874875, TOL);
    ck_assert_double_eq_tol(p[1], -2.13968302406225, TOL);
    ck_assert_double_eq_tol(buf[0], 1.35625990625125, TOL);
    ck_assert_double_eq_tol(buf[1], 0.6747426906225, TOL);
}
END_TEST

START_TEST(test_sgd_nesterov)
{
    /* d = g + wd p; buf = 0.9 buf + d; p -= lr (d + 0.9 buf).
     * step 1: d = buf = {0.5005, 0.249}; d + 0.9 buf = {0.95095, 0.4731}
     *         p = {1 - 0.095095, -2 - 0.04731} = {0.904905, -2.04731}
     * step 2: d = {0.5 + 5e-4 * 0.904905, 0.25 - 5e-4 * 2.04731}
     *           = {0.5004524525, 0.248976345}
     *         buf = {0.45045 + 0.5004524525, 0.2241 + 0.248976345}
     *             = {0.9509024525, 0.473076345}
     *         d + 0.9 buf = {0.5004524525 + 0.85581220725,
     *                        0.248976345 + 0.4257687105}
     *                     = {1.35626465975, 0.6747450555}
     *         p = {0.904905 - 0.135626465975, -2.04731 - 0.06747450555}
     *           = {0.769278534025, -2.11478450555}
     * step 3: d = {0.5 + 5e-4 * 0.769278534025, 0.25 - 5e-4 * 2.11478450555}
     *           = {0.5003846392670125, 0.248942607747225}
     *         buf = {0.85581220725 + 0.5003846392670125,
     *                0.4257687105 + 0.248942607747225}
     *             = {1.3561968465170125, 0.674711318247225}
     *         d + 0.9 buf = {0.5003846392670125 + 1.22057716186531125,
     *                        0.248942607747225 + 0.6072401864225025}
     *                     = {1.72096180113232375, 0.8561827941697275}
     *         p = {0.769278534025 - 0.172096180113232375,
     *              -2.11478450555 - 0.08561827941697275}
     *           = {0.597182353911767625, -2.20040278496697275} */
    struct sila_optim_cfg cfg = {
        .kind = SILA_OPTIM_SGD, .momentum = 0.9f, .nesterov = true, .weight_decay = 5e-4f};
    float p[2], buf[2] = {0.0f, 0.0f};
    sgd_run(&cfg, 3, p, buf);
    ck_assert_double_eq_tol(p[0], 0.597182353911767625, TOL);
    ck_assert_double_eq_tol(p[1], -2.20040278496697275, TOL);
}
END_TEST

/* AdamW on p = {1, -2}, lr 0.01, wd 0.01, betas (0.9, 0.999), eps 1e-8, with
 * the gradients g1 = {0.5, -0.25}, g2 = {0.1, 0.3}, g3 = {-0.2, 0.3}. */
static const float adamw_g[3][2] = {{0.5f, -0.25f}, {0.1f, 0.3f}, {-0.2f, 0.3f}};

/* The betas are floats: 1 - 0.999f = 0.00099998713 is 1.3e-5 away from 0.001
 * relative, so the moments carry that much against exact decimals (the
 * bias-corrected update does not: bc2 uses the same beta2). */
#define MOM_TOL 1e-7
#define VAR_TOL 1e-8

static const struct sila_optim_cfg adamw_cfg = {
    .kind = SILA_OPTIM_ADAMW,
    .weight_decay = 0.01f,
    .beta1 = 0.9f,
    .beta2 = 0.999f,
    .eps = 1e-8f,
};

/* Runs `steps` AdamW updates from p = {1, -2}; state (4) is zeroed here. */
static void adamw_run(int steps, float p[2], float state[4])
{
    p[0] = 1.0f;
    p[1] = -2.0f;
    for (int i = 0; i < 4; i++)
        state[i] = 0.0f;
    for (int t = 1; t <= steps; t++)
        sila_optim_step(&adamw_cfg, 0.01f, (uint64_t)t, p, adamw_g[t - 1], state, 2);
}

START_TEST(test_adamw_step1)
{
    /* p *= 1 - lr wd = 0.9999; m = 0.1 g; v = 0.001 g^2;
     * bc1 = 0.1, bc2 = 0.001, so mhat = g, sqrt(vhat) = |g|, and
     * p -= 0.01 g / (|g| + 1e-8):
     *   p0 = 0.9999 - 0.01 * 0.5 / 0.50000001 = 0.9999 - 0.0099999998
     *      = 0.9899000002
     *   p1 = -1.9998 + 0.01 * 0.25 / 0.25000001 = -1.9998 + 0.0099999996
     *      = -1.9898000004
     * State is m then v: {0.05, -0.025, 0.00025, 0.0000625}. */
    float p[2], state[4];
    adamw_run(1, p, state);
    ck_assert_double_eq_tol(p[0], 0.9899000002, TOL);
    ck_assert_double_eq_tol(p[1], -1.9898000004, TOL);
    ck_assert_double_eq_tol(state[0], 0.05, MOM_TOL);
    ck_assert_double_eq_tol(state[1], -0.025, MOM_TOL);
    ck_assert_double_eq_tol(state[2], 0.00025, VAR_TOL);
    ck_assert_double_eq_tol(state[3], 0.0000625, VAR_TOL);
}
END_TEST

START_TEST(test_adamw_step3)
{
    /* step 2: bc1 = 1 - 0.81 = 0.19, bc2 = 1 - 0.998001 = 0.001999
     *   [0] p = 0.9899000002 * 0.9999 = 0.98980101
     *       m = 0.045 + 0.01 = 0.055; v = 0.00024975 + 0.00001 = 0.00025975
     *       mhat = 0.055 / 0.19 = 0.28947368; sqrt(vhat) = sqrt(0.12993997) = 0.36047187
     *       p -= 0.01 * 0.28947368 / 0.36047188 = 0.00803041 -> 0.98177060
     *   [1] p = -1.9898000004 * 0.9999 = -1.98960102
     *       m = -0.0225 + 0.03 = 0.0075; v = 0.0000624375 + 0.00009 = 0.0001524375
     *       mhat = 0.03947368; sqrt(vhat) = sqrt(0.07625688) = 0.27614648
     *       p -= 0.01 * 0.03947368 / 0.27614649 = 0.00142945 -> -1.99103047
     * step 3: bc1 = 1 - 0.729 = 0.271, bc2 = 1 - 0.997002999 = 0.002997001
     *   [0] p = 0.98177060 * 0.9999 = 0.98167242
     *       m = 0.0495 - 0.02 = 0.0295; v = 0.00025949025 + 0.00004 = 0.00029949025
     *       mhat = 0.10885609; sqrt(vhat) = 0.31611704
     *       p -= 0.01 * 0.10885609 / 0.31611705 = 0.00344354 -> 0.97822889
     *   [1] p = -1.99103047 * 0.9999 = -1.99083136
     *       m = 0.00675 + 0.03 = 0.03675; v = 0.0001522850625 + 0.00009 = 0.0002422850625
     *       mhat = 0.13560886; sqrt(vhat) = 0.28432816
     *       p -= 0.01 * 0.13560886 / 0.28432817 = 0.00476945 -> -1.99560081
     * (Values to 8 decimals; the literals below carry the exact results.) */
    float p[2], state[4];
    adamw_run(3, p, state);
    ck_assert_double_eq_tol(p[0], 0.978228886123465, TOL);
    ck_assert_double_eq_tol(p[1], -1.995600813082964, TOL);
    ck_assert_double_eq_tol(state[0], 0.0295, MOM_TOL);
    ck_assert_double_eq_tol(state[1], 0.03675, MOM_TOL);
    ck_assert_double_eq_tol(state[2], 0.00029949025, VAR_TOL);
    ck_assert_double_eq_tol(state[3], 0.0002422850625, VAR_TOL);
}
END_TEST

/* Rates are floats from a float base rate: compare to 1e-6 relative. */
#define ck_assert_lr(got, want) ck_assert_double_eq_tol(got, want, 1e-6 * (want))

static float lr_at(enum sila_sched_kind kind, uint64_t warmup, uint64_t total, uint64_t t)
{
    struct sila_sched_cfg s = {
        .kind = kind,
        .lr = 0.1f,
        .min_lr = 0.001f,
        .step_size = 10,
        .gamma = 0.1f,
        .warmup_steps = warmup,
        .total_steps = total,
    };
    return sila_sched_lr(&s, t);
}

START_TEST(test_sched_constant)
{
    ck_assert_lr(lr_at(SILA_SCHED_CONSTANT, 0, 100, 0), 0.1);
    ck_assert_lr(lr_at(SILA_SCHED_CONSTANT, 0, 100, 99), 0.1);
    ck_assert_lr(lr_at(SILA_SCHED_CONSTANT, 0, 100, 1000), 0.1);
}
END_TEST

START_TEST(test_sched_step)
{
    /* lr 0.1 * 0.1^floor(t / 10). */
    ck_assert_lr(lr_at(SILA_SCHED_STEP, 0, 100, 0), 0.1);
    ck_assert_lr(lr_at(SILA_SCHED_STEP, 0, 100, 9), 0.1);
    ck_assert_lr(lr_at(SILA_SCHED_STEP, 0, 100, 10), 0.01);
    ck_assert_lr(lr_at(SILA_SCHED_STEP, 0, 100, 19), 0.01);
    ck_assert_lr(lr_at(SILA_SCHED_STEP, 0, 100, 20), 0.001);
    ck_assert_lr(lr_at(SILA_SCHED_STEP, 0, 100, 35), 0.0001);
}
END_TEST

START_TEST(test_sched_step_size_zero)
{
    /* A step schedule that never steps keeps the base rate. */
    struct sila_sched_cfg s = {
        .kind = SILA_SCHED_STEP, .lr = 0.1f, .gamma = 0.1f, .step_size = 0, .total_steps = 100};
    ck_assert_lr(sila_sched_lr(&s, 50), 0.1);
}
END_TEST

START_TEST(test_sched_cosine)
{
    /* lr 0.1, min_lr 0.001, T = 100: 0.001 + 0.099 (1 + cos(pi t / 100)) / 2.
     *   t = 0:   0.001 + 0.099 = 0.1
     *   t = 25:  0.001 + 0.099 (1 + 0.70710678118655) / 2 = 0.08550178566
     *   t = 50:  0.001 + 0.099 / 2 = 0.0505
     *   t = 100 and beyond: min_lr = 0.001 */
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 0, 100, 0), 0.1);
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 0, 100, 25), 0.08550178566);
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 0, 100, 50), 0.0505);
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 0, 100, 100), 0.001);
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 0, 100, 150), 0.001);
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 0, 100, UINT64_MAX), 0.001);
}
END_TEST

START_TEST(test_sched_warmup)
{
    /* Warm-up of 4 steps: lr (t + 1) / 4 = 0.025, 0.05, 0.075, 0.1; then 0.1. */
    ck_assert_lr(lr_at(SILA_SCHED_CONSTANT, 4, 100, 0), 0.025);
    ck_assert_lr(lr_at(SILA_SCHED_CONSTANT, 4, 100, 1), 0.05);
    ck_assert_lr(lr_at(SILA_SCHED_CONSTANT, 4, 100, 2), 0.075);
    ck_assert_lr(lr_at(SILA_SCHED_CONSTANT, 4, 100, 3), 0.1);
    ck_assert_lr(lr_at(SILA_SCHED_CONSTANT, 4, 100, 4), 0.1);
}
END_TEST

START_TEST(test_sched_warmup_step)
{
    /* Warm-up 5 then step decay on t' = t - 5: t = 14 is t' = 9, t = 15 is t' = 10. */
    ck_assert_lr(lr_at(SILA_SCHED_STEP, 5, 100, 14), 0.1);
    ck_assert_lr(lr_at(SILA_SCHED_STEP, 5, 100, 15), 0.01);
}
END_TEST

START_TEST(test_sched_warmup_cosine)
{
    /* Warm-up 10, total 110: cosine over T = 100 on t' = t - 10.
     *   t = 0:   0.1 * 1 / 10 = 0.01
     *   t = 9:   0.1 * 10 / 10 = 0.1
     *   t = 10:  t' = 0, 0.1
     *   t = 60:  t' = 50, 0.001 + 0.099 / 2 = 0.0505
     *   t = 85:  t' = 75, 0.001 + 0.099 (1 - 0.70710678118655) / 2 = 0.01549821434
     *   t = 110: t' = 100, 0.001 */
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 10, 110, 0), 0.01);
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 10, 110, 9), 0.1);
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 10, 110, 10), 0.1);
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 10, 110, 60), 0.0505);
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 10, 110, 85), 0.01549821434);
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 10, 110, 110), 0.001);
}
END_TEST

START_TEST(test_sched_total_within_warmup)
{
    /* total_steps <= warmup_steps: warm-up runs as usual (t = 4 of 10 gives
     * 0.1 * 5 / 10 = 0.05), then the empty cosine sits at min_lr. */
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 10, 5, 4), 0.05);
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 10, 5, 9), 0.1);
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 10, 5, 10), 0.001);
    ck_assert_lr(lr_at(SILA_SCHED_COSINE, 10, 10, 10), 0.001);
    ck_assert_lr(lr_at(SILA_SCHED_CONSTANT, 10, 10, 20), 0.1);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *opt = tcase_create("optimizers");
    tcase_add_test(opt, test_state_floats);
    tcase_add_test(opt, test_sgd_plain);
    tcase_add_test(opt, test_sgd_momentum);
    tcase_add_test(opt, test_sgd_nesterov);
    tcase_add_test(opt, test_adamw_step1);
    tcase_add_test(opt, test_adamw_step3);
    suite_add_tcase(s, opt);
    TCase *sched = tcase_create("schedules");
    tcase_add_test(sched, test_sched_constant);
    tcase_add_test(sched, test_sched_step);
    tcase_add_test(sched, test_sched_step_size_zero);
    tcase_add_test(sched, test_sched_cosine);
    tcase_add_test(sched, test_sched_warmup);
    tcase_add_test(sched, test_sched_warmup_step);
    tcase_add_test(sched, test_sched_warmup_cosine);
    tcase_add_test(sched, test_sched_total_within_warmup);
    suite_add_tcase(s, sched);
    return s;
}
