/* Global steps of a module with and without `apply`: a module passing a
 * gradient on for a step it has already learned from (a distributed
 * pipeline restarted after a worker was replaced) must leave its whole state
 * as it was, and hand down exactly the gradient a learning pass would. A
 * late global step (job.global_lag) computes, after other steps moved the
 * module, the gradient the step would have had at once. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "module.h"
#include "stage.h"

#define B 8

static struct sila_job job;

/* A shipped job at batch 8 with late global steps, into *j. */
static void load_small(struct sila_job *j, const char *file)
{
    static const char *const small[] = {"job.batch=8", "job.global_lag=1"};
    struct sila_err err;
    ck_assert_msg(sila_job_load(j, file, small, 2, &err) == 0, "%s", err.msg);
}

static void load_job(void)
{
    load_small(&job, SILA_SOURCE_DIR "/deploy/jobs/fmnist-cnn-k4.ini");
}

static void free_job(void)
{
    sila_job_fini(&job);
}

/* Deterministic inputs, labels and gradient from above for module k. */
static void make_batch(const struct sila_module *m, float *x, int32_t *labels, float *dz)
{
    size_t in = sila_shape_size(sila_net_in_shape(m->body)) * B;
    size_t out = sila_shape_size(sila_net_out_shape(m->body)) * B;
    for (size_t i = 0; i < in; i++)
        x[i] = (float)sin(0.37 * (double)i);
    for (size_t i = 0; i < out; i++)
        dz[i] = 1e-3f * (float)cos(0.11 * (double)i);
    for (int i = 0; i < B; i++)
        labels[i] = i % 10;
}

static float *state_of(const struct sila_module *m, uint64_t *counters)
{
    struct sila_module_layout l = sila_module_layout(m);
    float *s = malloc(sizeof *s * (l.params + l.optimizer + l.buffers));
    ck_assert_ptr_nonnull(s);
    sila_module_get_state(m, s, counters);
    return s;
}

/* One global step of module k (a middle one, with a head, mu > 0 so the
 * head takes part too): apply = false keeps the state, and both passes
 * write the same input gradient. */
static void check_module(int k, float mu)
{
    struct sila_err err;
    struct sila_module *a, *b;
    ck_assert_msg(sila_module_new(&a, &job, k, B, &err) == 0, "%s", err.msg);
    ck_assert_msg(sila_module_new(&b, &job, k, B, &err) == 0, "%s", err.msg);
    size_t in = sila_shape_size(sila_net_in_shape(a->body)) * B;
    size_t out = sila_shape_size(sila_net_out_shape(a->body)) * B;
    float *x = malloc(sizeof *x * in), *dz = malloc(sizeof *dz * out);
    float *din_a = malloc(sizeof *din_a * in), *din_b = malloc(sizeof *din_b * in);
    int32_t labels[B];
    ck_assert(x && dz && din_a && din_b);
    make_batch(a, x, labels, dz);
    const float *above = k + 1 < job.nmodules ? dz : NULL;

    uint64_t c0[SILA_MODULE_COUNTERS], c1[SILA_MODULE_COUNTERS];
    float *before = state_of(a, c0);
    struct sila_step_stats st;
    sila_module_global_forward(a, x, B);
    sila_module_global_backward(a, x, above, labels, B, 0.05f, 0.0f, mu, false, din_a, &st);
    float *after = state_of(a, c1);
    struct sila_module_layout l = sila_module_layout(a);
    /* the forward pass in train mode moves batch-norm statistics (buffers),
     * as a replayed batch does; parameters, optimizer state and update
     * counts must not move */
    ck_assert_msg(memcmp(before, after, sizeof *before * (l.params + l.optimizer)) == 0,
                  "module %d: parameters or optimizer state changed without apply", k + 1);
    ck_assert_msg(memcmp(c0, c1, sizeof(uint64_t) * 4) == 0,
                  "module %d: update counts changed without apply", k + 1);

    sila_module_global_forward(b, x, B);
    sila_module_global_backward(b, x, above, labels, B, 0.05f, 0.0f, mu, true, din_b, &st);
    float *learned = state_of(b, c1);
    ck_assert_msg(memcmp(before, learned, sizeof *before * l.params) != 0,
                  "module %d: apply changed nothing (the test would prove nothing)", k + 1);
    ck_assert_msg(memcmp(din_a, din_b, sizeof *din_a * in) == 0,
                  "module %d: the gradient passed on differs with and without apply", k + 1);
    free(before);
    free(after);
    free(learned);
    free(x);
    free(dz);
    free(din_a);
    free(din_b);
    sila_module_free(a);
    sila_module_free(b);
}

START_TEST(pass_on_keeps_state_middle)
{
    check_module(1, 0.0f);
    check_module(2, 1.0f);
}
END_TEST

START_TEST(pass_on_keeps_state_last)
{
    check_module(job.nmodules - 1, 0.0f);
}
END_TEST

/* Module c goes forward on a global step on x keeping its state into
 * *then, then learns a local step on x2: what check_late's modules do
 * before the late step. */
static void before_late(struct sila_module *c, struct sila_module_then *then, const float *x,
                        const float *x2, const int32_t *labels)
{
    struct sila_err err;
    struct sila_step_stats st;
    ck_assert_msg(sila_module_then_init(c, then, &err) == 0, "%s", err.msg);
    sila_module_global_forward_kept(c, x, B, then);
    sila_module_local_step(c, x2, labels, NULL, NULL, B, 0.05f, 0.0f, &st);
}

/* Module k (not the last) goes forward on a global step keeping its state,
 * learns a local step on another batch, then takes the global step late:
 * it passes down the gradient module b, which took the step at once, did;
 * its body's batch-norm statistics stay those of the local step; without
 * apply its parameters stay too, with apply they move. Module c takes the
 * late step in two passes (its input gradient first, as a worker sending
 * it does): the same gradient, the same state after. */
static void check_late(const struct sila_job *j, int k, float mu, bool apply)
{
    struct sila_err err;
    struct sila_module *a, *b, *c;
    ck_assert_msg(sila_module_new(&a, j, k, B, &err) == 0, "%s", err.msg);
    ck_assert_msg(sila_module_new(&b, j, k, B, &err) == 0, "%s", err.msg);
    ck_assert_msg(sila_module_new(&c, j, k, B, &err) == 0, "%s", err.msg);
    size_t in = sila_shape_size(sila_net_in_shape(a->body)) * B;
    size_t out = sila_shape_size(sila_net_out_shape(a->body)) * B;
    float *x = malloc(sizeof *x * in), *x2 = malloc(sizeof *x2 * in),
          *dz = malloc(sizeof *dz * out);
    float *din_a = malloc(sizeof *din_a * in), *din_b = malloc(sizeof *din_b * in),
          *din_c = malloc(sizeof *din_c * in);
    struct sila_module_then then, then_c;
    int32_t labels[B];
    ck_assert(x && x2 && dz && din_a && din_b && din_c);
    make_batch(a, x, labels, dz);
    for (size_t i = 0; i < in; i++)
        x2[i] = (float)cos(0.23 * (double)i);
    struct sila_step_stats st;

    sila_module_global_forward(b, x, B);
    sila_module_global_backward(b, x, dz, labels, B, 0.05f, 0.0f, mu, true, din_b, &st);

    before_late(a, &then, x, x2, labels);
    uint64_t c0[SILA_MODULE_COUNTERS], c1[SILA_MODULE_COUNTERS];
    float *before = state_of(a, c0);
    sila_module_global_late(a, &then, x, dz, labels, B, 0.05f, 0.0f, mu, apply, din_a, &st);
    float *after = state_of(a, c1);
    struct sila_module_layout l = sila_module_layout(a);
    ck_assert_msg(memcmp(din_a, din_b, sizeof *din_a * in) == 0,
                  "module %d (mu %g): the late gradient differs from the one at once", k + 1, mu);

    before_late(c, &then_c, x, x2, labels);
    struct sila_late_pass pass;
    sila_module_late_input(c, &then_c, x, dz, labels, B, 0.0f, mu, din_c, &pass, &st);
    sila_module_late_params(c, &then_c, x, &pass, B, 0.05f, apply);
    float *after_c = state_of(c, c1);
    ck_assert_msg(memcmp(din_c, din_a, sizeof *din_a * in) == 0,
                  "module %d (mu %g): the input gradient of two passes differs", k + 1, mu);
    ck_assert_msg(memcmp(after_c, after, sizeof *after * (l.params + l.optimizer + l.buffers)) == 0,
                  "module %d (mu %g): two passes leave another state", k + 1, mu);
    ck_assert_msg(memcmp(before + l.params + l.optimizer, after + l.params + l.optimizer,
                         sizeof *before * l.body_buffers) == 0,
                  "module %d: the late step moved the body's batch-norm statistics", k + 1);
    bool moved = memcmp(before, after, sizeof *before * l.params) != 0;
    ck_assert_msg(moved == apply, "module %d: apply %d, parameters %s", k + 1, apply,
                  moved ? "moved" : "kept");
    free(before);
    free(after);
    free(after_c);
    free(x);
    free(x2);
    free(dz);
    free(din_a);
    free(din_b);
    free(din_c);
    sila_module_then_fini(&then);
    sila_module_then_fini(&then_c);
    sila_module_free(a);
    sila_module_free(b);
    sila_module_free(c);
}

START_TEST(late_gradient_is_the_one_at_once)
{
    check_late(&job, 0, 0.0f, true);
    check_late(&job, 1, 0.0f, true);
    check_late(&job, 2, 1.0f, true);
    check_late(&job, 1, 0.0f, false);
}
END_TEST

/* The same for the ResNet's modules, whose residual blocks keep their
 * state on oneDNN's blocked layout: the stem and a block, a strided block
 * with its projection, a block at 64 channels. */
START_TEST(late_gradient_is_the_one_at_once_resnet)
{
    struct sila_job resnet;
    load_small(&resnet, SILA_SOURCE_DIR "/deploy/jobs/fmnist-resnet-k8.ini");
    check_late(&resnet, 0, 0.0f, true);
    check_late(&resnet, 2, 0.0f, true);
    check_late(&resnet, 6, 1.0f, true);
    sila_job_fini(&resnet);
}
END_TEST

static int ignore_done(void *ctx, int k, const struct sila_step_stats *s, struct sila_err *err)
{
    (void)ctx, (void)k, (void)s, (void)err;
    return 0;
}

/* A stage of modules 2-3 of 4 (a worker's), job.global_lag = 1: module 3
 * awaits the gradient of the global step it went forward on, and refuses
 * one for another step, a second one, or one of another size. */
START_TEST(late_gradient_refused)
{
    struct sila_err err;
    struct sila_stage st;
    ck_assert_msg(sila_stage_init(&st, &job, 1, 2, B, &err) == 0, "%s", err.msg);
    size_t in = sila_shape_size(sila_net_in_shape(st.mods[1]->body)) * B;
    size_t out = sila_shape_size(sila_net_out_shape(st.mods[2]->body)) * B;
    float *x = calloc(in, sizeof *x), *dz = calloc(out, sizeof *dz);
    int32_t labels[B] = {0};
    ck_assert(x && dz);
    const struct sila_stage_sink sink = {.done = ignore_done};
    const float *z;
    ck_assert_msg(
        sila_stage_global_late(&st, x, labels, B, 7, 0.05f, 0.0f, 0.0f, &sink, &z, &err) == 0, "%s",
        err.msg);
    ck_assert(sila_stage_late_awaits(&st, 7));
    ck_assert(!sila_stage_late_awaits(&st, 8));
    ck_assert_int_eq(sila_stage_late_put(&st, 8, dz, out, &err), -EPROTO);
    ck_assert_msg(strstr(err.msg, "module 3") && strstr(err.msg, "global step 8") &&
                      strstr(err.msg, "does not hold"),
                  "%s", err.msg);
    ck_assert_int_eq(sila_stage_late_put(&st, 7, dz, out - 1, &err), -EPROTO);
    ck_assert_msg(strstr(err.msg, "another size"), "%s", err.msg);
    ck_assert_int_eq(sila_stage_late_put(&st, 7, dz, out, &err), 0);
    ck_assert(!sila_stage_late_awaits(&st, 7));
    ck_assert_int_eq(sila_stage_late_put(&st, 7, dz, out, &err), -EPROTO);
    ck_assert_msg(strstr(err.msg, "already"), "%s", err.msg);
    free(x);
    free(dz);
    sila_stage_fini(&st);
}
END_TEST

/* What a stage's sink saw of the gradients it sent upstream. */
struct sent {
    int n;
    uint64_t step;
    float *din; /* a copy of the last one */
    size_t floats;
};

static int keep_gradient(void *ctx, uint64_t step, int b, const float *din, struct sila_err *err)
{
    (void)err;
    struct sent *s = ctx;
    s->n++;
    s->step = step;
    memcpy(s->din, din, sizeof *din * (size_t)b * s->floats);
    return 0;
}

/* A stage of modules 3-4 of 4 (the last worker's), job.global_lag = 1,
 * global step 7 then local step 8, at which module 3 learns step 7 late.
 * With `early`, sila_stage_late_send after step 7 sends module 3's input
 * gradient (once: a second call sends nothing); else it goes at step 8.
 * Returns what was sent; module 3's state after step 8 into *ret_state. */
static struct sent run_stage(float mu, bool early, float **ret_state)
{
    struct sila_err err;
    struct sila_stage st;
    ck_assert_msg(sila_stage_init(&st, &job, 2, 3, B, &err) == 0, "%s", err.msg);
    size_t in = sila_shape_size(sila_net_in_shape(st.mods[2]->body));
    struct sent sent = {.din = calloc(in * B, sizeof(float)), .floats = in};
    float *x = malloc(sizeof *x * in * B);
    int32_t labels[B];
    ck_assert(x && sent.din);
    for (size_t i = 0; i < in * B; i++)
        x[i] = (float)sin(0.37 * (double)i);
    for (int i = 0; i < B; i++)
        labels[i] = i % 10;
    const struct sila_stage_sink sink = {.done = ignore_done, .gradient = keep_gradient,
                                         .ctx = &sent};
    const float *z;
    ck_assert_msg(
        sila_stage_global_late(&st, x, labels, B, 7, 0.05f, 0.0f, mu, &sink, &z, &err) == 0, "%s",
        err.msg);
    ck_assert_int_eq(sent.n, 0);
    for (int i = 0; early && i < 2; i++)
        ck_assert_msg(sila_stage_late_send(&st, &sink, &err) == 0, "%s", err.msg);
    int before = sent.n;
    const struct sila_batch_side side = {labels, NULL, NULL};
    ck_assert_msg(sila_stage_local(&st, x, &side, B, 8, 0.05f, 0.0f, &sink, &z, &err) == 0, "%s",
                  err.msg);
    ck_assert_msg(sent.n == 1 && sent.step == 7, "%d gradients sent, the last of step %llu",
                  sent.n, (unsigned long long)sent.step);
    ck_assert_msg(before == (early && mu == 0.0f), "%s, mu %g: %d sent before step 8",
                  early ? "early" : "at the due step", mu, before);
    uint64_t c[SILA_MODULE_COUNTERS];
    *ret_state = state_of(st.mods[2], c);
    free(x);
    sila_stage_fini(&st);
    return sent;
}

/* The input gradient of a late global step sent as soon as the stage
 * holds it (sila_stage_late_send) is the one sent at the step the module
 * learns from it, and the module learns the same; a step whose objective
 * takes in the aux head (mu > 0) keeps it for the due step. */
START_TEST(late_gradient_sent_early)
{
    for (int i = 0; i < 2; i++) {
        float mu = i ? 1.0f : 0.0f, *state_due, *state_early;
        struct sent due = run_stage(mu, false, &state_due);
        struct sent early = run_stage(mu, true, &state_early);
        struct sila_module *m;
        struct sila_err err;
        ck_assert_msg(sila_module_new(&m, &job, 2, B, &err) == 0, "%s", err.msg);
        struct sila_module_layout l = sila_module_layout(m);
        ck_assert_msg(memcmp(due.din, early.din, sizeof *due.din * due.floats * B) == 0,
                      "mu %g: the gradient sent early differs", mu);
        ck_assert_msg(memcmp(state_due, state_early,
                             sizeof(float) * (l.params + l.optimizer + l.buffers)) == 0,
                      "mu %g: the module learned otherwise", mu);
        sila_module_free(m);
        free(due.din);
        free(early.din);
        free(state_due);
        free(state_early);
    }
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("module");
    TCase *tc = tcase_create("module");
    tcase_add_checked_fixture(tc, load_job, free_job);
    tcase_add_test(tc, pass_on_keeps_state_middle);
    tcase_add_test(tc, pass_on_keeps_state_last);
    tcase_add_test(tc, late_gradient_is_the_one_at_once);
    tcase_add_test(tc, late_gradient_is_the_one_at_once_resnet);
    tcase_add_test(tc, late_gradient_refused);
    tcase_add_test(tc, late_gradient_sent_early);
    suite_add_tcase(s, tc);
    return s;
}
