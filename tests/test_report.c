/* Tests of the metrics' step records (daemon/report.h): each holds the
 * mean losses of exactly the steps since the record before, for every
 * module, whatever order the modules' reports come in (workers ahead of
 * the last module by a window, a worker's report of a step arriving after
 * the last module's), with a head that took no part in a step left out of
 * its mean; and a resumed run's first record starts at the checkpoint's
 * step. */
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "report.h"
#include "testdir.h"

enum { K = 3, STEPS_PER_EPOCH = 60, EPOCHS = 2, LEAD = 7 };

/* Module k's loss at step t: module 1's head sits out every tenth step. */
static double loss_of(int k, uint64_t t)
{
    return k == 1 && t % 10 == 0 ? NAN : 1000.0 * k + (double)t;
}

static float lr_of(uint64_t t)
{
    return 0.001f * (float)t;
}

/* Module k's mean loss over steps (from, to]. */
static double mean_loss(int k, uint64_t from, uint64_t to)
{
    double sum = 0;
    int n = 0;
    for (uint64_t t = from + 1; t <= to; t++)
        if (!isnan(loss_of(k, t))) {
            sum += loss_of(k, t);
            n++;
        }
    return sum / n;
}

/* Whether step t ends with a record: every 50 steps and at epoch ends. */
static bool record_step(uint64_t t)
{
    return t % 50 == 0 || t % STEPS_PER_EPOCH == 0;
}

/* The last module's report of step t, and the step's. */
static void last_reports(struct report *r, uint64_t t)
{
    report_step_loss(r, K - 1, t, loss_of(K - 1, t), 0.5);
    report_step(r, (int)((t - 1) / STEPS_PER_EPOCH), (t - 1) % STEPS_PER_EPOCH, 32, lr_of(t),
                false);
}

/* Checks metrics.jsonl in tmpdir: a record at each of `steps` (n), each
 * with the mean losses since the one before (from `first`). */
static void check_records(const uint64_t *steps, int n, uint64_t first)
{
    FILE *f = fopen(tpath("metrics.jsonl"), "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    int got = 0;
    uint64_t prev = first;
    while (fgets(line, sizeof line, f)) {
        int epoch;
        unsigned long long step;
        float lr;
        double rate, loss[K];
        ck_assert_int_eq(sscanf(line,
                                "{\"type\":\"step\",\"epoch\":%d,\"step\":%llu,\"lr\":%g,"
                                "\"samples_per_s\":%lf,\"loss\":[%lf,%lf,%lf]}",
                                &epoch, &step, &lr, &rate, &loss[0], &loss[1], &loss[2]),
                         7);
        ck_assert_int_lt(got, n);
        ck_assert_uint_eq(step, steps[got]);
        ck_assert_int_eq(epoch, (int)((step - 1) / STEPS_PER_EPOCH) + 1);
        ck_assert_float_eq_tol(lr, lr_of(step), 1e-6);
        for (int k = 0; k < K; k++)
            ck_assert_double_eq_tol(loss[k], mean_loss(k, prev, step), 1e-9);
        prev = step;
        got++;
    }
    fclose(f);
    ck_assert_int_eq(got, n);
}

START_TEST(test_records_hold_whole_steps)
{
    struct report r;
    struct sila_err err = {0};
    ck_assert_int_eq(report_open(&r, tmpdir, K, EPOCHS, STEPS_PER_EPOCH, NULL, &err), 0);
    uint64_t total = (uint64_t)EPOCHS * STEPS_PER_EPOCH;
    /* modules 0 and 1 (0-based) run LEAD steps ahead of the last; module
     * 1's report of a record's step comes after the last module's */
    for (uint64_t t = 1; t <= total + LEAD; t++) {
        if (t <= total) {
            report_step_loss(&r, 0, t, loss_of(0, t), 0.5);
            if (!record_step(t))
                report_step_loss(&r, 1, t, loss_of(1, t), 0.5);
        }
        if (t > LEAD) {
            uint64_t s = t - LEAD;
            last_reports(&r, s);
            if (record_step(s))
                report_step_loss(&r, 1, s, loss_of(1, s), 0.5);
        }
    }
    ck_assert_uint_eq(r.npoints, 4);
    report_close(&r);
    const uint64_t steps[] = {50, 60, 100, 120};
    check_records(steps, 4, 0);
}
END_TEST

START_TEST(test_resumed_run_starts_at_its_step)
{
    FILE *f = fopen(tpath("metrics.jsonl"), "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    struct report r;
    struct sila_err err = {0};
    const struct report_resume resume = {.metrics_bytes = 0, .step = 60};
    ck_assert_int_eq(report_open(&r, tmpdir, K, EPOCHS, STEPS_PER_EPOCH, &resume, &err), 0);
    for (uint64_t t = 61; t <= 100; t++) {
        for (int k = 0; k < K - 1; k++)
            report_step_loss(&r, k, t, loss_of(k, t), 0.5);
        last_reports(&r, t);
    }
    report_close(&r);
    const uint64_t steps[] = {100};
    check_records(steps, 1, 60);
}
END_TEST

/* The report's progress lines go to stdout, where Check writes TAP: each
 * test runs with stdout on /dev/null, put back after it. */
static int saved_stdout = -1;

static void quiet_setup(void)
{
    fflush(stdout);
    int null = open("/dev/null", O_WRONLY);
    ck_assert_int_ge(null, 0);
    saved_stdout = dup(STDOUT_FILENO);
    ck_assert_int_ge(saved_stdout, 0);
    ck_assert_int_ge(dup2(null, STDOUT_FILENO), 0);
    close(null);
}

static void quiet_teardown(void)
{
    fflush(stdout);
    dup2(saved_stdout, STDOUT_FILENO);
    close(saved_stdout);
}

Suite *test_suite(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("step records");
    testdir_add_fixtures(tc);
    tcase_add_checked_fixture(tc, quiet_setup, quiet_teardown);
    tcase_add_test(tc, test_records_hold_whole_steps);
    tcase_add_test(tc, test_resumed_run_starts_at_its_step);
    suite_add_tcase(s, tc);
    return s;
}
