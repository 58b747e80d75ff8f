/* Tests of the local objectives: the loss terms of common/nn/objective.h by
 * central differences, and the objectives inside a module.
 *
 * Loss terms. Each term's gradient is compared with central differences in
 * double of a value function. Terms with a stop-gradient (sg) are checked
 * one input at a time with the sg input frozen, against the value built
 * from loss.h's functions (tested in test_loss.c) with that input's
 * distribution held constant, so a gradient that leaked through a sg would
 * fail. The penalties are checked against naive double implementations
 * written here (correlations from centred sums, cosines from dot products).
 * Bounds as in test_loss.c: h = 1e-3 on float inputs of O(1), gradients
 * rounded to float: GRAD_TOL relative to the largest gradient; the
 * penalties, whose normalisations and products run in float, PENALTY_TOL.
 *
 * Modules. A two-module job whose first module is smooth (conv without
 * ReLU, a linear head: no kink to cross) is built per objective, and the
 * gradient sila_module_local_grad writes for sampled parameters is compared
 * with central differences of the loss value it reports (for objectives
 * without sg terms: sila without DML, collab, the penalties). With every
 * weight of an objective at 0, eight local steps end with the parameters of
 * plain ce bit for bit; with a weight above 0 they do not. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "testfill.h"
#include "job.h"
#include "loss.h"
#include "module.h"
#include "objective.h"
#include "rng.h"

#define GRAD_TOL 2e-5
#define PENALTY_TOL 2e-4 /* the penalties normalise and multiply in float */
#define FD_H 1e-3f
#define MAXN 512

/* A value as a function of one input vector v (n floats). */
struct value_fn {
    double (*f)(const struct value_fn *, const float *v);
    const void *ctx;
};

/* Asserts analytic d (n floats) equals central differences of fn at v. */
static void check_against_fd(const struct value_fn *fn, float *v, const float *d, int n, double tol,
                             const char *what)
{
    ck_assert_int_le(n, 1 << 20);
    double *g = malloc(sizeof *g * n), gmax = 0.0;
    ck_assert_ptr_nonnull(g);
    for (int i = 0; i < n; i++) {
        float v0 = v[i], vp = v0 + FD_H, vm = v0 - FD_H;
        v[i] = vp;
        double lp = fn->f(fn, v);
        v[i] = vm;
        double lm = fn->f(fn, v);
        v[i] = v0;
        g[i] = (lp - lm) / ((double)vp - (double)vm);
        gmax = fmax(gmax, fabs(g[i]));
    }
    ck_assert_msg(gmax > 0.0, "%s: zero gradient", what);
    for (int i = 0; i < n; i++)
        ck_assert_msg(fabs(d[i] - g[i]) <= tol * gmax, "%s: d[%d] = %.9g, numeric %.9g", what, i,
                      d[i], g[i]);
    free(g);
}

/* ---- SiLa with DML ---- */

struct dml_ctx {
    const float *other; /* the frozen logits */
    const int32_t *labels;
    int B, C;
    float lambda, alpha, T, own; /* own: weight of this input's CE */
};

/* own CE + alpha T^2 KL_T(sg softmax_T(other) || softmax_T(v)) */
static double dml_side(const struct value_fn *fn, const float *v)
{
    const struct dml_ctx *c = fn->ctx;
    float q[MAXN];
    sila_softmax(q, c->other, c->B, c->C, c->T);
    return c->own * sila_ce_loss(NULL, v, c->labels, c->B, c->C, 0.0f, 1.0f) +
           c->alpha * c->T * c->T * sila_kl_loss(NULL, v, q, c->B, c->C, c->T, 1.0f);
}

START_TEST(test_dml_pair)
{
    enum { B = 6, C = 5 };
    const float alpha[] = {0.0f, 0.5f, 2.0f}, T[] = {1.0f, 2.0f, 4.0f};
    float a[B * C], b[B * C], da[B * C] = {0}, db[B * C] = {0}, scratch[2 * B * C];
    int32_t y[B];
    fill_normal(a, B * C, 1.5f, 10 + (uint64_t)_i);
    fill_normal(b, B * C, 1.5f, 20 + (uint64_t)_i);
    fill_labels(y, B, C, 30 + (uint64_t)_i);
    float lambda = 0.75f;
    double v = sila_dml_pair_loss(da, db, a, b, y, B, C, 0.0f, lambda, alpha[_i], T[_i], scratch);
    struct dml_ctx ca = {b, y, B, C, lambda, alpha[_i], T[_i], 1.0f};
    struct dml_ctx cb = {a, y, B, C, lambda, alpha[_i], T[_i], lambda};
    struct value_fn fa = {dml_side, &ca}, fb = {dml_side, &cb};
    /* the value: both CEs and both KL terms */
    double want = dml_side(&fa, a) + dml_side(&fb, b);
    ck_assert_msg(fabs(v - want) <= 1e-9 * fabs(want), "value %.17g, want %.17g", v, want);
    check_against_fd(&fa, a, da, B * C, GRAD_TOL, "dml d/da");
    check_against_fd(&fb, b, db, B * C, GRAD_TOL, "dml d/db");
}
END_TEST

/* ---- collab ---- */

struct collab_ctx {
    const float *q;
    const int32_t *labels;
    int B, C;
    float beta, T;
};

static double collab_value(const struct value_fn *fn, const float *v)
{
    const struct collab_ctx *c = fn->ctx;
    return sila_collab_loss(NULL, v, c->q, c->labels, c->B, c->C, 0.0f, c->beta, c->T);
}

START_TEST(test_collab)
{
    enum { B = 6, C = 4 };
    float a[B * C], q[B * C], d[B * C] = {0}, z[B * C];
    int32_t y[B];
    fill_normal(a, B * C, 1.5f, 40);
    fill_normal(z, B * C, 2.0f, 41);
    fill_labels(y, B, C, 42);
    sila_softmax(q, z, B, C, 2.0f);
    memset(q + 2 * C, 0, sizeof *q * C); /* samples 2 and 5 have no target yet */
    memset(q + 5 * C, 0, sizeof *q * C);
    struct collab_ctx c = {q, y, B, C, 0.3f, 2.0f};
    struct value_fn fn = {collab_value, &c};
    sila_collab_loss(d, a, q, y, B, C, 0.0f, c.beta, c.T);
    check_against_fd(&fn, a, d, B * C, GRAD_TOL, "collab");
    /* by hand: a sample without target is plain CE, one with a target mixes */
    double ce2 = sila_ce_loss(NULL, a + 2 * C, y + 2, 1, C, 0.0f, 1.0f);
    double ce0 = sila_ce_loss(NULL, a, y, 1, C, 0.0f, 1.0f);
    double kl0 = sila_kl_loss(NULL, a, q, 1, C, 2.0f, 1.0f);
    double two = sila_collab_loss(NULL, a, q, y, 1, C, 0.0f, 0.3f, 2.0f) +
                 sila_collab_loss(NULL, a + 2 * C, q + 2 * C, y + 2, 1, C, 0.0f, 0.3f, 2.0f);
    ck_assert_double_eq_tol(two, 0.3 * ce0 + 0.7 * 4.0 * kl0 + ce2, 1e-6);
    /* beta = 1 is CE bit for bit, value and gradient */
    float dc[B * C] = {0}, dce[B * C] = {0};
    double vc = sila_collab_loss(dc, a, q, y, B, C, 0.1f, 1.0f, 2.0f);
    double vce = sila_ce_loss(dce, a, y, B, C, 0.1f, 1.0f);
    ck_assert(vc == vce);
    ck_assert(memcmp(dc, dce, sizeof dc) == 0);
}
END_TEST

/* ---- cosub ---- */

struct cosub_ctx {
    const float *other;
    const int32_t *labels;
    int B, C;
    float w;
    bool first; /* v is a1 (carries the CE term) */
};

/* [first] (1-w) CE(v) + w/4 [BCE(v, y) + BCE(v, sg sigmoid(other))] */
static double cosub_side(const struct value_fn *fn, const float *v)
{
    const struct cosub_ctx *c = fn->ctx;
    int n = c->B * c->C;
    float y[MAXN] = {0}, s[MAXN];
    for (int b = 0; b < c->B; b++)
        y[b * c->C + c->labels[b]] = 1.0f;
    for (int i = 0; i < n; i++)
        s[i] = (float)(1.0 / (1.0 + exp(-(double)c->other[i])));
    double v_ = c->w / 4.0 *
                (sila_bce_logits_loss(NULL, v, y, c->B, c->C, 1.0f) +
                 sila_bce_logits_loss(NULL, v, s, c->B, c->C, 1.0f));
    if (c->first)
        v_ += (1.0 - c->w) * sila_ce_loss(NULL, v, c->labels, c->B, c->C, 0.0f, 1.0f);
    return v_;
}

START_TEST(test_cosub)
{
    enum { B = 5, C = 6 };
    const float w[] = {1.0f, 0.4f};
    float a1[B * C], a2[B * C], d1[B * C] = {0}, d2[B * C] = {0}, scratch[2 * B * C];
    int32_t y[B];
    fill_normal(a1, B * C, 2.0f, 50 + (uint64_t)_i);
    fill_normal(a2, B * C, 2.0f, 60 + (uint64_t)_i);
    fill_labels(y, B, C, 70);
    double v = sila_cosub_loss(d1, d2, a1, a2, y, B, C, 0.0f, w[_i], scratch);
    struct cosub_ctx c1 = {a2, y, B, C, w[_i], true}, c2 = {a1, y, B, C, w[_i], false};
    struct value_fn f1 = {cosub_side, &c1}, f2 = {cosub_side, &c2};
    double want = cosub_side(&f1, a1) + cosub_side(&f2, a2);
    ck_assert_msg(fabs(v - want) <= 1e-7 * fabs(want), "value %.17g, want %.17g", v, want);
    check_against_fd(&f1, a1, d1, B * C, GRAD_TOL, "cosub d/da1");
    check_against_fd(&f2, a2, d2, B * C, GRAD_TOL, "cosub d/da2");
}
END_TEST

START_TEST(test_cosub_weight_zero_is_ce)
{
    enum { B = 4, C = 3 };
    float a1[B * C], a2[B * C], d1[B * C] = {0}, d2[B * C] = {0}, dce[B * C] = {0};
    float scratch[2 * B * C];
    int32_t y[B];
    fill_normal(a1, B * C, 1.0f, 80);
    fill_normal(a2, B * C, 1.0f, 81);
    fill_labels(y, B, C, 82);
    double v = sila_cosub_loss(d1, d2, a1, a2, y, B, C, 0.1f, 0.0f, scratch);
    ck_assert(v == sila_ce_loss(dce, a1, y, B, C, 0.1f, 1.0f));
    ck_assert(memcmp(d1, dce, sizeof d1) == 0);
    for (int i = 0; i < B * C; i++)
        ck_assert_float_eq(d2[i], 0.0f);
}
END_TEST

/* ---- redundancy ---- */

struct red_ctx {
    int B;
    struct sila_shape s;
};

/* Naive: correlations from centred double sums, eps as the code's. */
static double redundancy_ref(const struct value_fn *fn, const float *z)
{
    const struct red_ctx *c = fn->ctx;
    int C = c->s.c, HW = c->s.h * c->s.w;
    double N = (double)c->B * HW, mean[16], sd[16], total = 0.0;
    for (int k = 0; k < C; k++) {
        double m = 0.0, v = 0.0;
        for (int b = 0; b < c->B; b++)
            for (int i = 0; i < HW; i++)
                m += z[(b * C + k) * HW + i];
        m /= N;
        for (int b = 0; b < c->B; b++)
            for (int i = 0; i < HW; i++) {
                double d = z[(b * C + k) * HW + i] - m;
                v += d * d;
            }
        mean[k] = m, sd[k] = sqrt(v / N + 1e-5);
    }
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            if (i == j)
                continue;
            double r = 0.0;
            for (int b = 0; b < c->B; b++)
                for (int p = 0; p < HW; p++)
                    r += (z[(b * C + i) * HW + p] - mean[i]) / sd[i] *
                         (z[(b * C + j) * HW + p] - mean[j]) / sd[j];
            r /= N;
            total += r * r;
        }
    return total / (C * (C - 1.0));
}

START_TEST(test_redundancy)
{
    const struct red_ctx cases[] = {{3, {4, 3, 3}}, {8, {5, 1, 1}}, {2, {2, 4, 2}}};
    const struct red_ctx *c = &cases[_i];
    int n = c->B * (int)sila_shape_size(c->s);
    float z[MAXN], d[MAXN], mix[MAXN];
    fill_normal(z, n, 1.0f, 90 + (uint64_t)_i);
    /* correlate channel 1 with channel 0, so the penalty has something to see */
    size_t HW = (size_t)c->s.h * c->s.w;
    for (int b = 0; b < c->B; b++)
        for (size_t i = 0; i < HW; i++)
            z[(b * c->s.c + 1) * HW + i] += 0.8f * z[b * c->s.c * HW + i];
    float *scratch = malloc(sizeof *scratch * sila_redundancy_scratch(c->s));
    ck_assert_ptr_nonnull(scratch);
    for (int i = 0; i < n; i++)
        d[i] = 0.5f, mix[i] = 0.0f;
    double v = sila_redundancy_penalty(d, z, c->B, c->s, 2.0f, scratch);
    struct value_fn fn = {redundancy_ref, c};
    double want = redundancy_ref(&fn, z);
    ck_assert_msg(fabs(v - want) <= 1e-5 * want, "value %.9g, want %.9g", v, want);
    for (int i = 0; i < n; i++) /* added to 0.5, weighted by 2 */
        mix[i] = (d[i] - 0.5f) / 2.0f;
    check_against_fd(&fn, z, mix, n, PENALTY_TOL, "redundancy");
    free(scratch);
}
END_TEST

/* ---- filter similarity ---- */

struct filt_ctx {
    int oc, fan;
};

static double filter_ref(const struct value_fn *fn, const float *w)
{
    const struct filt_ctx *c = fn->ctx;
    double total = 0.0;
    for (int i = 0; i < c->oc; i++)
        for (int j = 0; j < c->oc; j++) {
            if (i == j)
                continue;
            double dot = 0.0, ni = 0.0, nj = 0.0;
            for (int f = 0; f < c->fan; f++) {
                dot += (double)w[i * c->fan + f] * w[j * c->fan + f];
                ni += (double)w[i * c->fan + f] * w[i * c->fan + f];
                nj += (double)w[j * c->fan + f] * w[j * c->fan + f];
            }
            total += dot * dot / (ni * nj);
        }
    return total / (c->oc * (c->oc - 1.0));
}

START_TEST(test_filter_similarity)
{
    const struct filt_ctx cases[] = {{4, 9}, {6, 18}, {2, 3}};
    const struct filt_ctx *c = &cases[_i];
    int n = c->oc * c->fan;
    float w[MAXN], d[MAXN] = {0};
    /* enough for this case and for the 3 x 3 one below */
    size_t need = (size_t)c->oc * (c->fan + c->oc + 1) + c->fan;
    float *scratch = malloc(sizeof *scratch * (need > 24 ? need : 24));
    ck_assert_ptr_nonnull(scratch);
    fill_normal(w, n, 0.3f, 100 + (uint64_t)_i);
    double v = sila_filter_similarity(d, w, c->oc, c->fan, 1.0f, scratch);
    struct value_fn fn = {filter_ref, c};
    double want = filter_ref(&fn, w);
    ck_assert_msg(fabs(v - want) <= 1e-5 * want, "value %.9g, want %.9g", v, want);
    check_against_fd(&fn, w, d, n, PENALTY_TOL, "filter similarity");
    /* orthogonal filters: no penalty, no gradient */
    float e[3 * 3] = {1, 0, 0, 0, 2, 0, 0, 0, -3}, de[9] = {0};
    ck_assert_double_eq_tol(sila_filter_similarity(de, e, 3, 3, 1.0f, scratch), 0.0, 1e-12);
    for (int i = 0; i < 9; i++)
        ck_assert_float_eq_tol(de[i], 0.0f, 1e-7f);
    free(scratch);
}
END_TEST

/* ---- inside a module ---- */

/* Module 1: conv3x3(1->3, stride 4) (smooth), linear head; module 2:
 * `next_layers` (plain_next: flatten, linear to 10). Blocks with drop-path
 * for cosub: module 1 is then a block instead. */
static void load_job(struct sila_job *j, const char *first_layers, const char *next_layers,
                     const char *const *sets, int nsets)
{
    char text[2048];
    snprintf(text, sizeof text,
             "[job]\nname = m\ndataset = fmnist\nepochs = 1\nbatch = 6\nalgorithm = local\n"
             "[optimizer]\nlr = 0.05\nmomentum = 0.9\nweight_decay = 0.001\n"
             "[module]\n%s\n[module]\n%s\n",
             first_layers, next_layers);
    struct sila_err err = {""};
    ck_assert_msg(sila_job_parse(j, "m.ini", text, strlen(text), sets, nsets, &err) == 0, "%s",
                  err.msg);
}

static const char smooth_layers[] = "[conv2d]\nout = 3\nstride = 4\npad = 1";
static const char block_layers[] = "[block]\nout = 2\nstride = 4\np = 0.3";
static const char plain_next[] = "[flatten]\n[linear]\nout = 10";
/* what MAN copies, then the classifier: a conv and a batch norm (smooth:
 * the ReLU of a unit or of a block puts kinks at the scale of any step
 * that float32 losses can difference) */
static const char conv_next[] =
    "[conv2d]\nout = 4\npad = 1\nbias = false\n[batchnorm]\n[flatten]\n[linear]\nout = 10";

struct module_ctx {
    struct sila_module *m;
    const float *x, *targets; /* x is also the network's input: module 1's */
    const int32_t *labels;
    int B;
    size_t at; /* the parameter perturbed */
};

static double module_value(const struct value_fn *fn, const float *v)
{
    const struct module_ctx *c = fn->ctx;
    struct sila_step_stats st;
    c->m->params[c->at] = v[0];
    sila_module_local_grad(c->m, c->x, c->labels, c->targets, c->x, c->B, 0.0f, &st);
    return st.loss;
}

/* The module's local gradient of every sampled parameter of module 1
 * against central differences of its reported loss, with step h (smaller
 * where the ReLUs of a decoder make the loss kinked at the scale of 1e-2). */
static void check_module_grad(const char *next, const char *const *sets, int nsets, float h,
                              const char *what)
{
    enum { B = 6 };
    struct sila_job job;
    load_job(&job, smooth_layers, next, sets, nsets);
    struct sila_module *m;
    struct sila_err err = {""};
    ck_assert_msg(sila_module_new(&m, &job, 0, B, &err) == 0, "%s", err.msg);
    float x[B * 28 * 28], q[B * 10], z[B * 10];
    int32_t y[B];
    fill_normal(x, B * 28 * 28, 1.0f, 110);
    fill_labels(y, B, 10, 111);
    fill_normal(z, B * 10, 2.0f, 112);
    sila_softmax(q, z, B, 10, 2.0f);
    memset(q + 10, 0, sizeof *q * 10); /* sample 1 without target */
    struct sila_step_stats st;
    sila_module_local_grad(m, x, y, q, x, B, 0.0f, &st);
    float *grads = malloc(sizeof *grads * m->nparams);
    ck_assert_ptr_nonnull(grads);
    memcpy(grads, m->grads, sizeof *grads * m->nparams);
    struct module_ctx c = {m, x, q, y, B, 0};
    struct value_fn fn = {module_value, &c};
    /* every body parameter (what crosses into the body is where the terms
     * meet), then a sample of the head's and the extras' */
    double gmax = 0.0, err2[2] = {0}, norm2[2] = {0};
    for (size_t i = 0; i < m->nparams; i += i < m->body_params ? 1 : 1 + m->nparams / 60) {
        float v = m->params[i], vp = v + h, vm = v - h;
        c.at = i;
        double lp = module_value(&fn, &vp), lm = module_value(&fn, &vm);
        m->params[i] = v;
        double g = (lp - lm) / ((double)vp - (double)vm);
        int part = i >= m->body_params;
        gmax = fmax(gmax, fabs(g));
        err2[part] += (grads[i] - g) * (grads[i] - g);
        norm2[part] += g * g + (double)grads[i] * grads[i];
    }
    ck_assert_msg(gmax > 0.0, "%s: zero gradient", what);
    for (int part = 0; part < 2; part++)
        ck_assert_msg(sqrt(err2[part] / norm2[part]) <= 1e-2,
                      "%s: relative gradient error %.3g of the %s", what,
                      sqrt(err2[part] / norm2[part]), part ? "head and extras" : "body");
    free(grads);
    sila_module_free(m);
    sila_job_fini(&job);
}

START_TEST(test_module_gradients)
{
    const char *const ce[] = {"objective.kind=ce"};
    const char *const sila[] = {"objective.kind=sila", "objective.sila_weight=0.7"};
    const char *const collab[] = {"objective.kind=collab", "objective.collab_beta=0.4"};
    const char *const red[] = {"objective.redundancy=0.8"};
    const char *const ks[] = {"objective.kernel_similarity=0.9"};
    /* InfoPro: the decoder's reconstruction of the input, the head's loss
     * weighted; and with InfoPro's own head */
    const char *const recon[] = {"objective.recon_first=0.7", "objective.task_first=0.6"};
    const char *const recon_only[] = {"objective.recon_first=2", "objective.task_first=0"};
    const char *const infopro[] = {"objective.recon_first=1.5", "objective.aux=infopro",
                                   "objective.aux_hidden=8"};
    check_module_grad(plain_next, ce, 1, 1e-2f, "ce");
    check_module_grad(plain_next, sila, 2, 1e-2f, "sila");
    check_module_grad(plain_next, collab, 2, 1e-2f, "collab");
    check_module_grad(plain_next, red, 1, 1e-2f, "redundancy");
    check_module_grad(plain_next, ks, 1, 1e-2f, "kernel_similarity");
    check_module_grad(plain_next, recon, 2, 1e-3f, "reconstruction");
    check_module_grad(plain_next, recon_only, 2, 1e-3f, "reconstruction alone");
    check_module_grad(plain_next, infopro, 3, 1e-3f, "reconstruction with the infopro head");
}
END_TEST

/* MAN: both copies of the next module's unit before the head (the frozen
 * one's weights are not params: its gradient only passes through) */
START_TEST(test_man_gradients)
{
    const char *const man[] = {"objective.man_momentum=0.9"};
    const char *const man_recon[] = {"objective.man_momentum=0.9", "objective.recon_first=0.7",
                                     "objective.task_first=0.6"};
    const char *const man_collab[] = {"objective.man_momentum=0.9", "objective.kind=collab",
                                      "objective.collab_beta=0.4"};
    check_module_grad(conv_next, man, 1, 1e-2f, "MAN");
    check_module_grad(conv_next, man_recon, 3, 1e-3f, "MAN with reconstruction");
    check_module_grad(conv_next, man_collab, 3, 1e-2f, "MAN with collab");
}
END_TEST

/* Parameters of module 1 after eight local steps under the overrides. */
static float *params_after_steps(const char *layers, const char *next, const char *const *sets,
                                 int nsets, size_t *ret_n)
{
    enum { B = 6 };
    struct sila_job job;
    load_job(&job, layers, next, sets, nsets);
    struct sila_module *m;
    struct sila_err err = {""};
    ck_assert_msg(sila_module_new(&m, &job, 0, B, &err) == 0, "%s", err.msg);
    float x[B * 28 * 28], q[B * 10], z[B * 10];
    int32_t y[B];
    for (int s = 0; s < 8; s++) {
        fill_normal(x, B * 28 * 28, 1.0f, 200 + (uint64_t)s);
        fill_labels(y, B, 10, 300 + (uint64_t)s);
        fill_normal(z, B * 10, 2.0f, 400 + (uint64_t)s);
        sila_softmax(q, z, B, 10, 2.0f);
        struct sila_step_stats st;
        sila_module_local_step(m, x, y, q, x, B, 0.05f, 0.0f, &st);
    }
    *ret_n = m->body_params + m->head_params; /* the twin's and decoder's, if any, are extra */
    float *p = malloc(sizeof *p * *ret_n);
    ck_assert_ptr_nonnull(p);
    memcpy(p, m->params, sizeof *p * *ret_n);
    sila_module_free(m);
    sila_job_fini(&job);
    return p;
}

struct zero_case {
    const char *what;
    const char *layers;
    const char *zero[3], *on[3];
};

static const struct zero_case zero_cases[] = {
    {"sila",
     smooth_layers,
     {"objective.kind=sila", "objective.sila_weight=0", "objective.dml_weight=0"},
     {"objective.kind=sila", "objective.sila_weight=0", "objective.dml_weight=0.5"}},
    {"collab",
     smooth_layers,
     {"objective.kind=collab", "objective.collab_beta=1"},
     {"objective.kind=collab", "objective.collab_beta=0.9"}},
    {"cosub",
     block_layers,
     {"objective.kind=cosub", "objective.cosub_weight=0"},
     {"objective.kind=cosub", "objective.cosub_weight=0.1"}},
    {"redundancy", smooth_layers, {"objective.redundancy=0"}, {"objective.redundancy=0.01"}},
    {"kernel_similarity",
     smooth_layers,
     {"objective.kernel_similarity=0"},
     {"objective.kernel_similarity=0.01"}},
    {"reconstruction",
     smooth_layers,
     {"objective.recon_first=0", "objective.recon_last=0", "objective.task_first=1"},
     {"objective.recon_first=0.01"}},
    {"task weight", smooth_layers, {"objective.task_first=1"}, {"objective.task_first=0.9"}},
};

static int count(const char *const *sets)
{
    int n = 0;
    while (n < 3 && sets[n])
        n++;
    return n;
}

START_TEST(test_weight_zero_is_ce)
{
    const struct zero_case *c = &zero_cases[_i];
    const char *const ce[] = {"objective.kind=ce"};
    size_t n_ce, n_zero, n_on;
    float *p_ce = params_after_steps(c->layers, plain_next, ce, 1, &n_ce);
    float *p_zero = params_after_steps(c->layers, plain_next, c->zero, count(c->zero), &n_zero);
    float *p_on = params_after_steps(c->layers, plain_next, c->on, count(c->on), &n_on);
    ck_assert_uint_eq(n_ce, n_zero);
    ck_assert_uint_eq(n_ce, n_on);
    ck_assert_msg(memcmp(p_ce, p_zero, sizeof *p_ce * n_ce) == 0, "%s at weight 0 differs from ce",
                  c->what);
    ck_assert_msg(memcmp(p_ce, p_on, sizeof *p_ce * n_ce) != 0, "%s above 0 changed nothing",
                  c->what);
    free(p_ce);
    free(p_zero);
    free(p_on);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("objective");
    TCase *tc = tcase_create("objective");
    tcase_set_timeout(tc, 200); /* whole modules differenced: minutes when loaded */
    tcase_add_loop_test(tc, test_dml_pair, 0, 3);
    tcase_add_test(tc, test_collab);
    tcase_add_loop_test(tc, test_cosub, 0, 2);
    tcase_add_test(tc, test_cosub_weight_zero_is_ce);
    tcase_add_loop_test(tc, test_redundancy, 0, 3);
    tcase_add_loop_test(tc, test_filter_similarity, 0, 3);
    tcase_add_test(tc, test_module_gradients);
    tcase_add_test(tc, test_man_gradients);
    tcase_add_loop_test(tc, test_weight_zero_is_ce, 0,
                        (int)(sizeof zero_cases / sizeof zero_cases[0]));
    suite_add_tcase(s, tc);
    return s;
}
