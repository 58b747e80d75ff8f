/* Finite-difference gradient checks of every layer kind, through sila_net.
 *
 * Each case builds a real net (one layer, or a short chain), binds its
 * blocks, initialises it from a seeded rng (batch-norm gamma and beta then
 * moved away from 1 and 0) and randomises the input. The objective is
 * J = Σ out·R for a fixed random R (so dout = R), accumulated in double. The
 * analytic d J/d input (din of sila_net_backward) and d J/d every parameter
 * (the zeroed grads block after one backward) are compared with central
 * differences (J(v+h) - J(v-h)) / ((v+h) - (v-h)) of train-mode forwards,
 * the denominator taken from the floats actually stored. One float is
 * perturbed at a time: every element of a tensor of at most GC_ALL, else
 * GC_SAMPLE elements drawn at random.
 *
 * Stochastic layers draw their masks from the rng passed to the forward: an
 * identical rng is re-seeded before EVERY forward, so each perturbed
 * evaluation sees the mask of the analytic pass.
 *
 * Kinks. A central difference is only valid when no ReLU input changes sign
 * and no max-pool arg-max changes between v-h and v+h. Layers fed directly by
 * the test get inputs built away from kinks (|x| >= 10h for ReLU, values 5h
 * apart for max pool), so no difference there can cross one. Kinks inside a
 * net (after conv+BN, inside a block) are not under the test's control: a
 * perturbed weight shifts every unit of its channel. Such cases list probes,
 * shadow nets made of a prefix of the layers and bound to the SAME parameter
 * block (their layout is asserted to match), whose output sign pattern (or
 * max-pool arg-max pattern) is recorded at every evaluation. A difference
 * whose pattern changed is proved invalid and left out of the comparison;
 * more than one such difference and more than a quarter of a tensor's fails
 * the case (choose another seed or a smaller net). The exclusion depends on
 * the forward pass only, never on the gradient under test.
 *
 * Step h. Round-off: the float32 forward perturbs J by about 1e-7·Σ|out·R|,
 * which the difference divides by 2h; truncation: O(h²) relative.
 * GC_H_SMOOTH = 1e-2 for layers without hidden kinks (inputs and weights are
 * O(0.1..1)): measured errors 1e-6..3e-4. GC_H_KINK = 2e-3 for probed nets:
 * kink crossings grow with h, round-off with 1/h; at 1e-3 round-off alone
 * gave element errors up to 2.8e-2 in the conv+BN nets, at 2e-3 it stays
 * below 1.3e-2 with few crossings.
 *
 * Error bounds, per checked tensor, analytic a against numeric n:
 *   norm error    ||a-n||₂ / (||a||₂ + ||n||₂)                  <= 1e-2
 *   element error max_i |a_i-n_i| / (|a_i| + |n_i| + 0.1·rms(n)) <= 3e-2
 * (the 0.1·rms(n) floor keeps round-off on near-zero elements from counting
 * as relative error). Correct gradients measure at most ~5e-4 and ~1.3e-2.
 * A gradient scaled by 1.1 gives a norm error of 0.048; the largest element
 * off by 10% an element error near 0.045: test_checker_detects_errors
 * proves these, a swap and a sign error fail. A tensor whose true gradient
 * is identically zero (a conv bias feeding a batch norm) cannot be checked
 * relatively, so the cases avoid it.
 *
 * Also checked: parameter gradients accumulate across backward passes, nets
 * built for a larger max_batch give right gradients on smaller batches, and
 * no layer writes the caller's input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "job.h"
#include "heads.h"
#include "net.h"

#define GC_NORM_TOL 1e-2
#define GC_ELEM_TOL 3e-2
#define GC_ALL 128   /* tensors up to this size are checked element by element */
#define GC_SAMPLE 64 /* elements drawn from larger tensors */
#define GC_MAX_CHECKS 24
#define GC_MAX_PROBES 6
#define GC_H_SMOOTH 1e-2 /* see the header comment */
#define GC_H_KINK 2e-3   /* cases whose kinks are watched by probes */

/* rng streams of one case seed */
enum { STREAM_PARAMS = 1, STREAM_INPUT, STREAM_R, STREAM_MASK, STREAM_PICK };

/* ---- layer specs ------------------------------------------------------- */

static struct sila_layer_spec sp_linear(int out, bool bias)
{
    struct sila_layer_spec s = sila_layer_spec_default(SILA_LAYER_LINEAR);
    s.out = out;
    s.bias = bias;
    return s;
}

static struct sila_layer_spec sp_conv(int out, int k, int stride, int pad, bool bias)
{
    struct sila_layer_spec s = sila_layer_spec_default(SILA_LAYER_CONV2D);
    s.out = out;
    s.kernel = k;
    s.stride = stride;
    s.pad = pad;
    s.bias = bias;
    return s;
}

static struct sila_layer_spec sp_pool(enum sila_layer_kind kind, int k, int stride, int pad)
{
    struct sila_layer_spec s = sila_layer_spec_default(kind);
    s.kernel = k;
    s.stride = stride;
    s.pad = pad;
    return s;
}

static struct sila_layer_spec sp_kind(enum sila_layer_kind kind)
{
    return sila_layer_spec_default(kind);
}

static struct sila_layer_spec sp_drop(enum sila_layer_kind kind, float p)
{
    struct sila_layer_spec s = sila_layer_spec_default(kind);
    s.p = p;
    return s;
}

static struct sila_layer_spec sp_block(int out, int stride, float p)
{
    struct sila_layer_spec s = sila_layer_spec_default(SILA_LAYER_BLOCK);
    s.out = out;
    s.stride = stride;
    s.p = p;
    return s;
}

static struct sila_shape shp(int c, int h, int w)
{
    return (struct sila_shape){c, h, w};
}

/* ---- a net with its bound blocks ---------------------------------------- */

struct gc_net {
    struct sila_net *net;
    float *params; /* owned unless borrowed */
    float *grads, *buffers;
    bool borrowed;
};

static float *zalloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* Builds the net; binds `params` when non-NULL (a shadow net reading another
 * net's parameters), else its own parameter and gradient blocks. */
static void net_open(struct gc_net *g, const struct sila_layer_spec *specs, int n,
                     struct sila_shape in, int B, float *params)
{
    struct sila_err err = {{0}};
    memset(g, 0, sizeof *g);
    int r = sila_net_new(&g->net, specs, n, in, B, &err);
    ck_assert_msg(r == 0, "sila_net_new failed (%d): %s", r, err.msg);
    g->borrowed = params != NULL;
    g->params = params ? params : zalloc(sila_net_param_count(g->net));
    g->grads = zalloc(sila_net_param_count(g->net));
    g->buffers = zalloc(sila_net_buffer_count(g->net));
    sila_net_bind(g->net, g->params, g->grads, g->buffers);
}

static void net_close(struct gc_net *g)
{
    sila_net_free(g->net);
    if (!g->borrowed)
        free(g->params);
    free(g->grads);
    free(g->buffers);
    memset(g, 0, sizeof *g);
}

/* PyTorch's initialisation, then batch-norm gamma and beta moved away from
 * 1 and 0 so that a gradient forgetting either factor is caught. */
static void net_randomise(struct gc_net *g, uint64_t seed)
{
    struct sila_rng r;
    sila_rng_seed(&r, seed, STREAM_PARAMS);
    sila_net_init_params(g->net, &r);
    for (int i = 0; i < sila_net_tensor_count(g->net); i++) {
        const struct sila_tensor *t = sila_net_tensor(g->net, i);
        for (size_t j = 0; j < t->n && t->role == SILA_TENSOR_BN_GAMMA; j++)
            g->params[t->offset + j] = 0.5f + sila_rng_uniform(&r);
        for (size_t j = 0; j < t->n && t->role == SILA_TENSOR_BN_BETA; j++)
            g->params[t->offset + j] = sila_rng_uniform(&r) - 0.5f;
    }
}

/* Offset in the parameter block of the tensor called `name`. */
static size_t tensor_offset(const struct sila_net *net, const char *name)
{
    for (int i = 0; i < sila_net_tensor_count(net); i++)
        if (strcmp(sila_net_tensor(net, i)->name, name) == 0)
            return sila_net_tensor(net, i)->offset;
    ck_abort_msg("no tensor %s", name);
    return 0;
}

/* A shadow net must read exactly the main net's parameters: every one of its
 * parameter tensors must match a main tensor of the same role and size at
 * the same place. */
static void assert_same_layout(const struct sila_net *main_net, const struct sila_net *shadow,
                               size_t param_off)
{
    for (int i = 0; i < sila_net_tensor_count(shadow); i++) {
        const struct sila_tensor *s = sila_net_tensor(shadow, i);
        if (sila_tensor_is_buffer(s))
            continue;
        bool found = false;
        for (int j = 0; j < sila_net_tensor_count(main_net) && !found; j++) {
            const struct sila_tensor *m = sila_net_tensor(main_net, j);
            found = m->offset == s->offset + param_off && m->role == s->role && m->n == s->n &&
                    !sila_tensor_is_buffer(m);
        }
        ck_assert_msg(found, "shadow tensor %s has no twin in the main net", s->name);
    }
}

/* ---- inputs ------------------------------------------------------------- */

typedef void gen_fn(float *x, size_t n, struct sila_rng *r);

static void gen_normal(float *x, size_t n, struct sila_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = sila_rng_normal(r);
}

/* |x| in [0.1, 1.1]: at least 10h from the ReLU kink for h = 1e-2. */
static void gen_margin(float *x, size_t n, struct sila_rng *r)
{
    for (size_t i = 0; i < n; i++) {
        float m = 0.1f + sila_rng_uniform(r);
        x[i] = sila_rng_uniform(r) < 0.5f ? -m : m;
    }
}

/* A random permutation of {-n/2, ..., n/2}·0.05: every value distinct and
 * 5h apart (h = 1e-2), so no max-pool arg-max can change. */
static void gen_distinct(float *x, size_t n, struct sila_rng *r)
{
    uint32_t *perm = malloc(sizeof *perm * n);
    ck_assert_ptr_nonnull(perm);
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    sila_rng_shuffle(r, perm, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        x[i] = 0.05f * ((float)perm[i] - (float)n / 2.0f);
    free(perm);
}

/* ---- cases and probes ----------------------------------------------------- */

/* A shadow net over layers `specs` reading the main parameters from
 * param_off; its output pattern is the sign of every value, or, when
 * pool_k > 0, the arg-max of every max-pool window over it (-1 when the
 * window's maximum is not positive, i.e. all ReLU zeros, whose gradient is
 * 0 whichever cell wins). */
struct gc_probe {
    const struct sila_layer_spec *specs;
    int n;
    int pool_k, pool_s, pool_p;
};

struct gc_case {
    const char *name;
    const struct sila_layer_spec *specs;
    int n;
    struct sila_shape in;
    int B;
    double h;
    gen_fn *gen;
    const struct gc_probe *probes;
    int nprobes;
    uint64_t seed;
};

static struct gc_case gc_case_of(const char *name, const struct sila_layer_spec *specs, int n,
                                 struct sila_shape in, int B, double h, gen_fn *gen,
                                 const struct gc_probe *probes, int nprobes, uint64_t seed)
{
    return (struct gc_case){.name = name,
                            .specs = specs,
                            .n = n,
                            .in = in,
                            .B = B,
                            .h = h,
                            .gen = gen,
                            .probes = probes,
                            .nprobes = nprobes,
                            .seed = seed};
}

/* Analytic and numeric gradients of the checked elements of one tensor. */
struct gc_check {
    char name[64];
    int k;
    size_t idx[GC_ALL];
    double a[GC_ALL], num[GC_ALL];
    bool crossed[GC_ALL]; /* a probe saw a kink crossed: difference invalid */
    int ncrossed;
};

struct gc_report {
    int nchecks;
    struct gc_check checks[GC_MAX_CHECKS];
    int kinks; /* evaluations whose probe pattern differed from the base */
    int evals;
};

struct gc_run {
    const struct gc_case *c;
    struct gc_net main;
    struct gc_net shadow[GC_MAX_PROBES];
    float *x, *R; /* (B, in), (B, out) */
    size_t n_in, n_out;
    int32_t *pat0, *pat;
    size_t npat;
};

/* Writes the probe pattern of the current params and x; returns its length
 * (pat may be NULL to measure it). */
static size_t probe_pattern(struct gc_run *run, int32_t *pat)
{
    size_t k = 0;
    int B = run->c->B;
    for (int p = 0; p < run->c->nprobes; p++) {
        const struct gc_probe *pr = &run->c->probes[p];
        struct sila_rng r;
        sila_rng_seed(&r, run->c->seed, STREAM_MASK);
        const float *y = sila_net_forward(run->shadow[p].net, run->x, B, true, &r);
        struct sila_shape s = sila_net_out_shape(run->shadow[p].net);
        if (pr->pool_k == 0) {
            for (size_t i = 0; i < (size_t)B * sila_shape_size(s); i++, k++)
                if (pat)
                    pat[k] = y[i] > 0.0f;
            continue;
        }
        int OH = (s.h + 2 * pr->pool_p - pr->pool_k) / pr->pool_s + 1;
        int OW = (s.w + 2 * pr->pool_p - pr->pool_k) / pr->pool_s + 1;
        for (int plane = 0; plane < B * s.c; plane++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++, k++) {
                    int at = -1;
                    float best = 0.0f;
                    for (int i = 0; i < pr->pool_k; i++)
                        for (int j = 0; j < pr->pool_k; j++) {
                            int ih = oh * pr->pool_s - pr->pool_p + i;
                            int iw = ow * pr->pool_s - pr->pool_p + j;
                            if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w)
                                continue;
                            float v = y[((size_t)plane * s.h + ih) * s.w + iw];
                            if (v > best) {
                                best = v;
                                at = ih * s.w + iw;
                            }
                        }
                    if (pat)
                        pat[k] = at;
                }
    }
    return k;
}

/* J = Σ out·R of a train-mode forward with the case's mask rng; sets
 * *crossed when a probe pattern differs from the base pattern. */
static double objective(struct gc_run *run, struct gc_report *rep, bool *crossed)
{
    struct sila_rng r;
    sila_rng_seed(&r, run->c->seed, STREAM_MASK);
    const float *y = sila_net_forward(run->main.net, run->x, run->c->B, true, &r);
    double J = 0.0;
    for (size_t i = 0; i < run->n_out; i++)
        J += (double)y[i] * (double)run->R[i];
    if (run->npat) {
        probe_pattern(run, run->pat);
        bool k = memcmp(run->pat, run->pat0, sizeof *run->pat * run->npat) != 0;
        rep->kinks += k;
        *crossed |= k;
    }
    rep->evals++;
    return J;
}

/* Builds the case's nets for batches of up to max_batch >= c->B. */
static void run_open(struct gc_run *run, const struct gc_case *c, int max_batch)
{
    memset(run, 0, sizeof *run);
    run->c = c;
    ck_assert_int_le(c->nprobes, GC_MAX_PROBES);
    net_open(&run->main, c->specs, c->n, c->in, max_batch, NULL);
    net_randomise(&run->main, c->seed);
    for (int p = 0; p < c->nprobes; p++) {
        net_open(&run->shadow[p], c->probes[p].specs, c->probes[p].n, c->in, max_batch,
                 run->main.params);
        assert_same_layout(run->main.net, run->shadow[p].net, 0);
    }
    run->n_in = (size_t)c->B * sila_shape_size(c->in);
    run->n_out = (size_t)c->B * sila_shape_size(sila_net_out_shape(run->main.net));
    run->x = zalloc(run->n_in);
    run->R = zalloc(run->n_out);
    struct sila_rng r;
    sila_rng_seed(&r, c->seed, STREAM_INPUT);
    c->gen(run->x, run->n_in, &r);
    sila_rng_seed(&r, c->seed, STREAM_R);
    gen_normal(run->R, run->n_out, &r);
    run->npat = probe_pattern(run, NULL);
    if (run->npat) {
        run->pat0 = malloc(sizeof *run->pat0 * run->npat);
        run->pat = malloc(sizeof *run->pat * run->npat);
        ck_assert(run->pat0 && run->pat);
        probe_pattern(run, run->pat0);
    }
}

static void run_close(struct gc_run *run)
{
    for (int p = 0; p < run->c->nprobes; p++)
        net_close(&run->shadow[p]);
    net_close(&run->main);
    free(run->x);
    free(run->R);
    free(run->pat0);
    free(run->pat);
}

/* Which elements of a tensor of n to check: all, or GC_SAMPLE at random. */
static int pick(size_t *idx, size_t n, uint64_t seed, int which)
{
    if (n <= GC_ALL) {
        for (size_t i = 0; i < n; i++)
            idx[i] = i;
        return (int)n;
    }
    uint32_t *perm = malloc(sizeof *perm * n);
    ck_assert_ptr_nonnull(perm);
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    struct sila_rng r;
    sila_rng_seed(&r, seed + (uint64_t)which, STREAM_PICK);
    sila_rng_shuffle(&r, perm, (uint32_t)n);
    for (int i = 0; i < GC_SAMPLE; i++)
        idx[i] = perm[i];
    free(perm);
    return GC_SAMPLE;
}

/* Central differences of J over the chosen elements of v (n floats, either
 * the input or a parameter tensor), against the analytic gradient g. */
static void check_tensor(struct gc_run *run, struct gc_report *rep, const char *name, float *v,
                         size_t n, const float *g)
{
    ck_assert_int_lt(rep->nchecks, GC_MAX_CHECKS);
    struct gc_check *ch = &rep->checks[rep->nchecks];
    snprintf(ch->name, sizeof ch->name, "%s", name);
    ch->k = pick(ch->idx, n, run->c->seed, rep->nchecks);
    rep->nchecks++;
    for (int i = 0; i < ch->k; i++) {
        size_t j = ch->idx[i];
        float v0 = v[j];
        float vp = v0 + (float)run->c->h, vm = v0 - (float)run->c->h;
        bool crossed = false;
        v[j] = vp;
        double jp = objective(run, rep, &crossed);
        v[j] = vm;
        double jm = objective(run, rep, &crossed);
        v[j] = v0;
        ch->num[i] = (jp - jm) / ((double)vp - (double)vm);
        ch->a[i] = g[j];
        ch->crossed[i] = crossed;
        ch->ncrossed += crossed;
    }
}

/* Runs one case on nets built for max_batch: the analytic pass, then the
 * differences of every tensor. */
static struct gc_report *gc_run(const struct gc_case *c, int max_batch)
{
    struct gc_report *rep = calloc(1, sizeof *rep);
    ck_assert_ptr_nonnull(rep);
    struct gc_run run;
    run_open(&run, c, max_batch);
    size_t np = sila_net_param_count(run.main.net);
    float *din = zalloc(run.n_in), *grads = zalloc(np);
    memset(run.main.grads, 0, sizeof *grads * np);
    struct sila_rng r;
    sila_rng_seed(&r, c->seed, STREAM_MASK);
    sila_net_forward(run.main.net, run.x, c->B, true, &r);
    sila_net_backward(run.main.net, run.x, run.R, din, c->B);
    memcpy(grads, run.main.grads, sizeof *grads * np);

    check_tensor(&run, rep, "input", run.x, run.n_in, din);
    for (int i = 0; i < sila_net_tensor_count(run.main.net); i++) {
        const struct sila_tensor *t = sila_net_tensor(run.main.net, i);
        if (!sila_tensor_is_buffer(t))
            check_tensor(&run, rep, t->name, run.main.params + t->offset, t->n, grads + t->offset);
    }
    free(din);
    free(grads);
    run_close(&run);
    return rep;
}

static struct gc_report *gc_run_case(const struct gc_case *c)
{
    return gc_run(c, c->B);
}

/* ---- judging -------------------------------------------------------------- */

static double norm_error(const struct gc_check *ch)
{
    double d = 0.0, a = 0.0, n = 0.0;
    for (int i = 0; i < ch->k; i++) {
        if (ch->crossed[i])
            continue;
        d += (ch->a[i] - ch->num[i]) * (ch->a[i] - ch->num[i]);
        a += ch->a[i] * ch->a[i];
        n += ch->num[i] * ch->num[i];
    }
    return d == 0.0 ? 0.0 : sqrt(d) / (sqrt(a) + sqrt(n));
}

static double elem_error(const struct gc_check *ch, int *ret_worst)
{
    double ss = 0.0, worst = 0.0;
    for (int i = 0; i < ch->k; i++)
        ss += ch->crossed[i] ? 0.0 : ch->num[i] * ch->num[i];
    double floor = 0.1 * sqrt(ss / (ch->k - ch->ncrossed > 0 ? ch->k - ch->ncrossed : 1));
    *ret_worst = 0;
    for (int i = 0; i < ch->k; i++) {
        if (ch->crossed[i])
            continue;
        double d = fabs(ch->a[i] - ch->num[i]);
        double e = d == 0.0 ? 0.0 : d / (fabs(ch->a[i]) + fabs(ch->num[i]) + floor);
        if (e > worst) {
            worst = e;
            *ret_worst = i;
        }
    }
    return worst;
}

/* Judges every check of the report: returns whether all pass, the worst
 * errors, and in msg the first failure. */
static bool gc_judge(const struct gc_report *rep, char *msg, size_t len, double *ret_norm,
                     double *ret_elem)
{
    bool ok = true;
    *ret_norm = *ret_elem = 0.0;
    msg[0] = '\0';
    for (int c = 0; c < rep->nchecks; c++) {
        const struct gc_check *ch = &rep->checks[c];
        int w;
        double ne = norm_error(ch), ee = elem_error(ch, &w);
        *ret_norm = fmax(*ret_norm, ne);
        *ret_elem = fmax(*ret_elem, ee);
        if (getenv("SILA_GC_VERBOSE") && ch->ncrossed)
            fprintf(stderr, "   %s: %d of %d crossed\n", ch->name, ch->ncrossed, ch->k);
        if (ok && ch->ncrossed > 1 && 4 * ch->ncrossed > ch->k) {
            ok = false;
            snprintf(msg, len,
                     "%s: %d of %d differences crossed a ReLU or max-pool kink (more than one "
                     "and a quarter): pick another seed, a smaller h or a smaller net",
                     ch->name, ch->ncrossed, ch->k);
        }
        if (ok && (ne > GC_NORM_TOL || ee > GC_ELEM_TOL)) {
            ok = false;
            snprintf(msg, len,
                     "%s: norm error %.3g, element error %.3g at [%zu]: analytic %.6g, "
                     "numeric %.6g",
                     ch->name, ne, ee, ch->idx[w], ch->a[w], ch->num[w]);
        }
    }
    return ok;
}

/* Runs a case on nets built for max_batch and asserts every gradient within
 * bounds (SILA_GC_VERBOSE=1 prints the measured errors of every case). */
static void gc_assert_case_mb(const struct gc_case *c, int max_batch)
{
    struct gc_report *rep = gc_run(c, max_batch);
    char msg[512];
    double ne, ee;
    bool ok = gc_judge(rep, msg, sizeof msg, &ne, &ee);
    if (getenv("SILA_GC_VERBOSE"))
        fprintf(stderr, "%-28s h %.0e checks %2d evals %5d kinks %3d  norm %.2e elem %.2e\n",
                c->name, c->h, rep->nchecks, rep->evals, rep->kinks, ne, ee);
    free(rep);
    ck_assert_msg(ok, "%s: %s", c->name, msg);
}

static void gc_assert_case(const struct gc_case *c)
{
    gc_assert_case_mb(c, c->B);
}

/* ---- the checker itself can fail ---------------------------------------- */

START_TEST(test_checker_detects_errors)
{
    /* A linear layer checked correctly, then with its analytic gradients
     * corrupted in the ways a real bug would: each corruption must fail. */
    const struct sila_layer_spec specs[] = {sp_linear(6, true)};
    const struct gc_case c =
        gc_case_of("linear", specs, 1, shp(8, 1, 1), 3, GC_H_SMOOTH, gen_normal, NULL, 0, 11);
    struct gc_report *rep = gc_run_case(&c);
    struct gc_report *bad = malloc(sizeof *bad);
    ck_assert_ptr_nonnull(bad);
    char msg[512];
    double ne, ee;
    ck_assert_msg(gc_judge(rep, msg, sizeof msg, &ne, &ee), "baseline fails: %s", msg);
    ck_assert_int_eq(rep->nchecks, 3); /* input, weight, bias */

    for (int t = 0; t < rep->nchecks; t++) {
        /* the whole gradient of one tensor scaled by 1.1 */
        *bad = *rep;
        for (int i = 0; i < bad->checks[t].k; i++)
            bad->checks[t].a[i] *= 1.1;
        ck_assert_msg(!gc_judge(bad, msg, sizeof msg, &ne, &ee), "x1.1 on %s passes",
                      rep->checks[t].name);
        ck_assert_double_gt(ne, GC_NORM_TOL);

        /* one element off by 10% of its value */
        *bad = *rep;
        struct gc_check *ch = &bad->checks[t];
        int big = 0;
        for (int i = 1; i < ch->k; i++)
            if (fabs(ch->a[i]) > fabs(ch->a[big]))
                big = i;
        ch->a[big] *= 1.1;
        ck_assert_msg(!gc_judge(bad, msg, sizeof msg, &ne, &ee), "one element x1.1 on %s passes",
                      rep->checks[t].name);

        /* the largest element swapped with the smallest (an indexing bug) */
        *bad = *rep;
        ch = &bad->checks[t];
        int small = 0;
        for (int i = 1; i < ch->k; i++)
            if (fabs(ch->a[i]) < fabs(ch->a[small]))
                small = i;
        double tmp = ch->a[big];
        ch->a[big] = ch->a[small];
        ch->a[small] = tmp;
        ck_assert_msg(!gc_judge(bad, msg, sizeof msg, &ne, &ee), "swap on %s passes",
                      rep->checks[t].name);
    }

    /* a sign error on one element */
    *bad = *rep;
    bad->checks[1].a[5] = -bad->checks[1].a[5];
    ck_assert(!gc_judge(bad, msg, sizeof msg, &ne, &ee));
    free(bad);
    free(rep);
}
END_TEST

START_TEST(test_checker_detects_kinks)
{
    /* Normal inputs into a ReLU with h = 0.3 must cross kinks, and a probe
     * watching the ReLU input must report them. */
    const struct sila_layer_spec specs[] = {sp_conv(3, 3, 1, 1, true), sp_kind(SILA_LAYER_RELU)};
    const struct gc_probe probes[] = {{specs, 1, 0, 0, 0}};
    const struct gc_case c =
        gc_case_of("kinks", specs, 2, shp(2, 5, 5), 2, 0.3, gen_normal, probes, 1, 5);
    struct gc_report *rep = gc_run_case(&c);
    ck_assert_int_gt(rep->kinks, 0);
    char msg[512];
    double ne, ee;
    ck_assert(!gc_judge(rep, msg, sizeof msg, &ne, &ee));
    ck_assert_msg(strstr(msg, "kink") != NULL, "%s", msg);
    free(rep);
}
END_TEST

/* ---- layer kinds ----------------------------------------------------------- */

START_TEST(test_linear)
{
    static const struct {
        int in, out, B;
        bool bias;
    } geo[] = {
        {5, 3, 3, true}, {7, 4, 2, false}, {1, 6, 4, true}, {12, 1, 2, true}, {20, 9, 3, false},
    };
    const struct sila_layer_spec specs[] = {sp_linear(geo[_i].out, geo[_i].bias)};
    char name[64];
    snprintf(name, sizeof name, "linear %d->%d B%d bias %d", geo[_i].in, geo[_i].out, geo[_i].B,
             geo[_i].bias);
    const struct gc_case c = gc_case_of(name, specs, 1, shp(geo[_i].in, 1, 1), geo[_i].B,
                                        GC_H_SMOOTH, gen_normal, NULL, 0, 100 + (uint64_t)_i);
    gc_assert_case(&c);
}
END_TEST

struct conv_geo {
    int C, H, W, OC, K, stride, pad, B;
    bool bias;
};

static const struct conv_geo conv_geo[] = {
    {2, 5, 6, 3, 3, 1, 1, 2, true}, {3, 7, 5, 2, 3, 2, 1, 3, false},
    {1, 6, 7, 4, 1, 1, 0, 2, true}, {4, 4, 3, 2, 1, 2, 0, 2, false},
    {2, 8, 9, 3, 5, 2, 2, 2, true}, {3, 5, 5, 4, 5, 1, 2, 2, false},
    {2, 6, 7, 3, 5, 1, 0, 3, true}, {5, 4, 6, 3, 3, 2, 0, 2, true},
    {3, 6, 5, 6, 3, 1, 2, 2, true}, {1, 9, 4, 1, 3, 2, 1, 4, false},
    {1, 6, 5, 6, 5, 1, 2, 1, true}, /* din's scratch exceeds the forward's */
    {32, 4, 4, 64, 3, 1, 1, 2, false}, /* Winograd's forward and dX (conv.c) */
};

START_TEST(test_conv2d)
{
    const struct conv_geo *g = &conv_geo[_i];
    const struct sila_layer_spec specs[] = {sp_conv(g->OC, g->K, g->stride, g->pad, g->bias)};
    char name[96];
    snprintf(name, sizeof name, "conv %dx%dx%d->%d k%d s%d p%d B%d bias %d", g->C, g->H, g->W,
             g->OC, g->K, g->stride, g->pad, g->B, g->bias);
    const struct gc_case c = gc_case_of(name, specs, 1, shp(g->C, g->H, g->W), g->B, GC_H_SMOOTH,
                                        gen_normal, NULL, 0, 200 + (uint64_t)_i);
    gc_assert_case(&c);
}
END_TEST

/* Normal inputs shifted per element, so each channel has its own mean. */
static void gen_shifted(float *x, size_t n, struct sila_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 1.5f * sila_rng_normal(r) + 0.3f * (float)(i % 5);
}

START_TEST(test_batchnorm_train)
{
    static const struct {
        int C, H, W, B;
        float eps;
    } geo[] = {
        {3, 4, 5, 2, 1e-5f},
        {5, 1, 1, 4, 1e-5f},
        {2, 3, 3, 3, 1e-3f},
        {1, 2, 2, 2, 1e-5f},
    };
    struct sila_layer_spec bn = sp_kind(SILA_LAYER_BATCHNORM);
    bn.bn_eps = geo[_i].eps;
    const struct sila_layer_spec specs[] = {bn};
    char name[64];
    snprintf(name, sizeof name, "bn %dx%dx%d B%d", geo[_i].C, geo[_i].H, geo[_i].W, geo[_i].B);
    const struct gc_case c =
        gc_case_of(name, specs, 1, shp(geo[_i].C, geo[_i].H, geo[_i].W), geo[_i].B, GC_H_SMOOTH,
                   gen_shifted, NULL, 0, 300 + (uint64_t)_i);
    gc_assert_case(&c);
}
END_TEST

START_TEST(test_relu)
{
    const struct sila_layer_spec specs[] = {sp_kind(SILA_LAYER_RELU)};
    const struct gc_case c1 =
        gc_case_of("relu 3x4x4", specs, 1, shp(3, 4, 4), 2, GC_H_SMOOTH, gen_margin, NULL, 0, 400);
    const struct gc_case c2 =
        gc_case_of("relu 10", specs, 1, shp(10, 1, 1), 3, GC_H_SMOOTH, gen_margin, NULL, 0, 401);
    gc_assert_case(&c1);
    gc_assert_case(&c2);
}
END_TEST

struct pool_geo {
    int C, H, W, K, stride, pad, B;
};

static const struct pool_geo pool_geo[] = {
    {2, 6, 6, 2, 2, 0, 2}, {2, 7, 6, 3, 2, 1, 2}, {1, 5, 5, 3, 1, 1, 2}, {2, 5, 7, 2, 2, 0, 2},
    {3, 4, 5, 3, 2, 0, 2}, {1, 6, 4, 2, 1, 1, 3}, {2, 7, 8, 2, 3, 0, 2}, /* stride > kernel: cells
                                                                            no window sees */
};

static void pool_case(enum sila_layer_kind kind, int i, gen_fn *gen)
{
    const struct pool_geo *g = &pool_geo[i];
    const struct sila_layer_spec specs[] = {sp_pool(kind, g->K, g->stride, g->pad)};
    char name[96];
    snprintf(name, sizeof name, "%s %dx%dx%d k%d s%d p%d B%d", sila_layer_kind_name(kind), g->C,
             g->H, g->W, g->K, g->stride, g->pad, g->B);
    const struct gc_case c = gc_case_of(name, specs, 1, shp(g->C, g->H, g->W), g->B, GC_H_SMOOTH,
                                        gen, NULL, 0, 500 + (uint64_t)i);
    gc_assert_case(&c);
}

START_TEST(test_maxpool)
{
    pool_case(SILA_LAYER_MAXPOOL, _i, gen_distinct);
}
END_TEST

START_TEST(test_avgpool)
{
    pool_case(SILA_LAYER_AVGPOOL, _i, gen_normal);
}
END_TEST

/* A layer of `kind` resizing a (C, H, W) input to (C, out, out), as
 * g = {C, H, W, out}. */
static void resize_case(enum sila_layer_kind kind, const int *g, uint64_t seed)
{
    struct sila_layer_spec specs[] = {sp_kind(kind)};
    specs[0].out = g[3];
    char name[64];
    snprintf(name, sizeof name, "%s %dx%dx%d to %d", sila_layer_kind_name(kind), g[0], g[1], g[2],
             g[3]);
    const struct gc_case c = gc_case_of(name, specs, 1, shp(g[0], g[1], g[2]), 2, GC_H_SMOOTH,
                                        gen_normal, NULL, 0, seed);
    gc_assert_case(&c);
}

/* Adaptive average pooling: uneven and overlapping windows (5->3, 7->2),
 * the identity (3->3) and repeated rows (3->5, 4->5). */
static const int adapool_geo[][4] = {{2, 5, 7, 3}, {1, 7, 7, 2}, {2, 3, 3, 3}, {1, 3, 4, 5}};

START_TEST(test_adaptive_avgpool)
{
    resize_case(SILA_LAYER_ADAPTIVE_AVGPOOL, adapool_geo[_i], 550 + (uint64_t)_i);
}
END_TEST

/* Bilinear upsampling with aligned corners: up (3->5, 2->7), down (5->3),
 * the identity (4->4) and to one cell (3->1). */
static const int upsample_geo[][4] = {
    {2, 3, 3, 5}, {1, 2, 2, 7}, {2, 5, 5, 3}, {1, 4, 4, 4}, {1, 3, 3, 1}};

START_TEST(test_upsample)
{
    resize_case(SILA_LAYER_UPSAMPLE, upsample_geo[_i], 560 + (uint64_t)_i);
}
END_TEST

START_TEST(test_gap)
{
    const struct sila_layer_spec specs[] = {sp_kind(SILA_LAYER_GAP)};
    const struct gc_case c1 =
        gc_case_of("gap 3x4x5", specs, 1, shp(3, 4, 5), 2, GC_H_SMOOTH, gen_normal, NULL, 0, 600);
    const struct gc_case c2 =
        gc_case_of("gap 2x1x1", specs, 1, shp(2, 1, 1), 3, GC_H_SMOOTH, gen_normal, NULL, 0, 601);
    gc_assert_case(&c1);
    gc_assert_case(&c2);
}
END_TEST

START_TEST(test_flatten)
{
    /* alone (a view of the caller's input), and after a layer */
    const struct sila_layer_spec s1[] = {sp_kind(SILA_LAYER_FLATTEN)};
    const struct sila_layer_spec s2[] = {sp_pool(SILA_LAYER_AVGPOOL, 2, 1, 0),
                                         sp_kind(SILA_LAYER_FLATTEN), sp_linear(3, true)};
    const struct gc_case c1 =
        gc_case_of("flatten 2x3x4", s1, 1, shp(2, 3, 4), 2, GC_H_SMOOTH, gen_normal, NULL, 0, 700);
    const struct gc_case c2 = gc_case_of("avgpool+flatten+linear", s2, 3, shp(2, 3, 4), 2,
                                         GC_H_SMOOTH, gen_normal, NULL, 0, 701);
    gc_assert_case(&c1);
    gc_assert_case(&c2);
}
END_TEST

/* Asserts that a train-mode forward of a single dropout/drop-path layer over
 * inputs without zeros both drops and keeps, so that both branches of the
 * mask are under test. */
static void assert_mixed_mask(const struct gc_case *c)
{
    struct gc_run run;
    run_open(&run, c, c->B);
    struct sila_rng r;
    sila_rng_seed(&r, c->seed, STREAM_MASK);
    const float *y = sila_net_forward(run.main.net, run.x, c->B, true, &r);
    size_t zeros = 0;
    for (size_t i = 0; i < run.n_out; i++)
        zeros += y[i] == 0.0f;
    ck_assert_msg(zeros > 0 && zeros < run.n_out, "%s: %zu of %zu dropped", c->name, zeros,
                  run.n_out);
    run_close(&run);
}

START_TEST(test_dropout)
{
    const struct sila_layer_spec s1[] = {sp_drop(SILA_LAYER_DROPOUT, 0.3f)};
    const struct sila_layer_spec s2[] = {sp_drop(SILA_LAYER_DROPOUT, 0.5f)};
    /* in place after a linear layer, whose backward needs its input only */
    const struct sila_layer_spec s3[] = {sp_linear(6, true), sp_drop(SILA_LAYER_DROPOUT, 0.4f)};
    const struct gc_case c1 = gc_case_of("dropout 4x3x3 p.3", s1, 1, shp(4, 3, 3), 3, GC_H_SMOOTH,
                                         gen_margin, NULL, 0, 800);
    const struct gc_case c2 = gc_case_of("dropout 20 p.5", s2, 1, shp(20, 1, 1), 2, GC_H_SMOOTH,
                                         gen_margin, NULL, 0, 801);
    const struct gc_case c3 =
        gc_case_of("linear+dropout", s3, 2, shp(5, 1, 1), 3, GC_H_SMOOTH, gen_normal, NULL, 0, 802);
    assert_mixed_mask(&c1);
    assert_mixed_mask(&c2);
    gc_assert_case(&c1);
    gc_assert_case(&c2);
    gc_assert_case(&c3);
}
END_TEST

START_TEST(test_droppath)
{
    const struct sila_layer_spec s1[] = {sp_drop(SILA_LAYER_DROPPATH, 0.4f)};
    const struct sila_layer_spec s2[] = {sp_drop(SILA_LAYER_DROPPATH, 0.5f)};
    const struct gc_case c1 = gc_case_of("droppath 3x2x2 p.4", s1, 1, shp(3, 2, 2), 4, GC_H_SMOOTH,
                                         gen_margin, NULL, 0, 900);
    const struct gc_case c2 =
        gc_case_of("droppath 6 p.5", s2, 1, shp(6, 1, 1), 4, GC_H_SMOOTH, gen_margin, NULL, 0, 901);
    assert_mixed_mask(&c1);
    assert_mixed_mask(&c2);
    gc_assert_case(&c1);
    gc_assert_case(&c2);
}
END_TEST

/* ---- residual blocks ------------------------------------------------------- */

/* A block alone: probes on its first ReLU (shadow conv3x3+BN, which has the
 * block's conv1/bn1 layout) and on its output ReLU (the block itself). */
static void block_case(const char *name, int C, int H, int W, int out, int stride, float p, int B,
                       uint64_t seed)
{
    const struct sila_layer_spec specs[] = {sp_block(out, stride, p)};
    const struct sila_layer_spec relu1[] = {sp_conv(out, 3, stride, 1, false),
                                            sp_kind(SILA_LAYER_BATCHNORM)};
    const struct gc_probe probes[] = {{relu1, 2, 0, 0, 0}, {specs, 1, 0, 0, 0}};
    const struct gc_case c =
        gc_case_of(name, specs, 1, shp(C, H, W), B, GC_H_KINK, gen_normal, probes, 2, seed);
    gc_assert_case(&c);
}

/* Drop-path inside a block: a dropped sample's output is ReLU(shortcut(x))
 * alone. Asserts that the case's mask drops some samples and keeps others,
 * by comparing with a shadow of the shortcut (identity, or the 1x1
 * conv+BN projection bound to the block's shortcut tensors). */
static void assert_block_mixed_mask(int C, int H, int W, int out, int stride, float p, int B,
                                    uint64_t seed)
{
    const struct sila_layer_spec specs[] = {sp_block(out, stride, p)};
    const struct gc_case c =
        gc_case_of("mask", specs, 1, shp(C, H, W), B, GC_H_KINK, gen_normal, NULL, 0, seed);
    struct gc_run run;
    run_open(&run, &c, B);
    struct sila_rng r;
    sila_rng_seed(&r, seed, STREAM_MASK);
    const float *y = sila_net_forward(run.main.net, run.x, B, true, &r);
    const float *s = run.x;
    struct gc_net sc = {0};
    bool proj = stride != 1 || out != C;
    if (proj) {
        const struct sila_layer_spec sspec[] = {sp_conv(out, 1, stride, 0, false),
                                                sp_kind(SILA_LAYER_BATCHNORM)};
        size_t off = tensor_offset(run.main.net, "0.shortcut.0.weight");
        net_open(&sc, sspec, 2, shp(C, H, W), B, run.main.params + off);
        assert_same_layout(run.main.net, sc.net, off);
        s = sila_net_forward(sc.net, run.x, B, true, NULL);
    }
    size_t per = run.n_out / (size_t)B;
    int dropped = 0;
    for (int b = 0; b < B; b++) {
        bool same = true;
        for (size_t i = 0; i < per; i++)
            same &= fabsf(y[b * per + i] - fmaxf(s[b * per + i], 0.0f)) <= 1e-6f;
        dropped += same;
    }
    ck_assert_msg(dropped > 0 && dropped < B, "%d of %d samples dropped", dropped, B);
    if (proj)
        net_close(&sc);
    run_close(&run);
}

START_TEST(test_block_identity)
{
    block_case("block id 3x4x5", 3, 4, 5, 3, 1, 0.0f, 2, 1000);
    block_case("block id 3x4x6", 3, 4, 6, 3, 1, 0.0f, 2, 1005);
    /* whole channel blocks of the layouts oneDNN's convolutions pick */
    block_case("block id 16x3x3", 16, 3, 3, 16, 1, 0.0f, 2, 1006);
}
END_TEST

START_TEST(test_block_projection)
{
    block_case("block proj 3x6x5->6 s2", 3, 6, 5, 6, 2, 0.0f, 2, 1100);
    block_case("block proj 4x4x4->2 s2", 4, 4, 4, 2, 2, 0.0f, 2, 1101);
    block_case("block proj 3x4x4->5 s1", 3, 4, 4, 5, 1, 0.0f, 2, 1102);
    block_case("block proj 16x4x4->32 s2", 16, 4, 4, 32, 2, 0.0f, 2, 1103);
}
END_TEST

START_TEST(test_block_droppath)
{
    assert_block_mixed_mask(3, 3, 4, 3, 1, 0.4f, 4, 1200);
    block_case("block id droppath", 3, 3, 4, 3, 1, 0.4f, 4, 1200);
    assert_block_mixed_mask(3, 5, 6, 5, 2, 0.4f, 4, 1201);
    block_case("block proj droppath", 3, 5, 6, 5, 2, 0.4f, 4, 1201);
}
END_TEST

/* ---- multi-layer nets ---------------------------------------------------- */

START_TEST(test_net_conv_bn_relu_pool_linear)
{
    /* ReLU works in place on the BN output; max pool reads it. */
    const struct sila_layer_spec specs[] = {
        sp_conv(4, 3, 1, 1, false),  sp_kind(SILA_LAYER_BATCHNORM),
        sp_kind(SILA_LAYER_RELU),    sp_pool(SILA_LAYER_MAXPOOL, 2, 2, 0),
        sp_kind(SILA_LAYER_FLATTEN), sp_linear(3, true),
    };
    const struct gc_probe probes[] = {{specs, 2, 0, 0, 0}, {specs, 3, 2, 2, 0}};
    const struct gc_case c = gc_case_of("conv+bn+relu+maxpool+linear", specs, 6, shp(2, 4, 6), 2,
                                        GC_H_KINK, gen_normal, probes, 2, 1300);
    gc_assert_case(&c);
}
END_TEST

START_TEST(test_net_conv_relu_dropout_avgpool)
{
    /* ReLU and dropout both in place on the conv output; dropout at the end
     * in place on the linear output. */
    const struct sila_layer_spec specs[] = {
        sp_conv(4, 3, 2, 1, true),          sp_kind(SILA_LAYER_RELU),
        sp_drop(SILA_LAYER_DROPOUT, 0.3f),  sp_pool(SILA_LAYER_AVGPOOL, 3, 2, 1),
        sp_kind(SILA_LAYER_FLATTEN),        sp_linear(5, true),
        sp_drop(SILA_LAYER_DROPOUT, 0.25f),
    };
    const struct gc_probe probes[] = {{specs, 1, 0, 0, 0}};
    const struct gc_case c = gc_case_of("conv+relu+dropout+avgpool+linear", specs, 7, shp(3, 7, 6),
                                        2, GC_H_KINK, gen_normal, probes, 1, 1400);
    gc_assert_case(&c);
}
END_TEST

/* The aux head of module 1 of a job whose module 1 ends in 3x5x5 and whose
 * module 2 has two blocks (what an auglocal head copies), under overrides;
 * checks the number of specs. */
static int head_of(const char *const *sets, int nsets, struct sila_layer_spec *specs, int want_n)
{
    static const char text[] = "[job]\nname = h\ndataset = fmnist\nepochs = 1\nbatch = 4\n"
                               "algorithm = local\n[optimizer]\nlr = 0.1\n"
                               "[module]\n[conv2d]\nout = 3\nkernel = 8\nstride = 5\n"
                               "[module]\n[block]\nout = 4\nstride = 2\n[block]\nout = 4\n"
                               "[gap]\n[linear]\nout = 10\n";
    struct sila_job job;
    struct sila_err err = {""};
    ck_assert_msg(sila_job_parse(&job, "h.ini", text, strlen(text), sets, nsets, &err) == 0, "%s",
                  err.msg);
    int n;
    ck_assert_int_eq(sila_aux_head_specs(&job, 0, shp(3, 5, 5), specs, &n), 0);
    ck_assert_int_eq(n, want_n);
    sila_job_fini(&job);
    return n;
}

START_TEST(test_net_dgl_head)
{
    /* the dgl aux head as module.c builds it: pool to 2x2 from 5x5, a 1x1
     * conv+BN+ReLU, pool to 2x2, flatten, a linear+BN+ReLU, linear (more
     * of each stack more batch norms, whose input gradients shrink to the
     * differences' round-off) */
    const char *const sets[] = {"objective.aux=dgl", "objective.aux_hidden=6",
                                "objective.aux_grid=2", "objective.aux_convs=1",
                                "objective.aux_mlp=1"};
    struct sila_layer_spec specs[SILA_AUX_MAX_SPECS];
    int n = head_of(sets, 5, specs, 10);
    /* the input of each ReLU: after each BN */
    const struct gc_probe probes[] = {{specs, 3, 0, 0, 0}, {specs, 8, 0, 0, 0}};
    const struct gc_case c = gc_case_of("dgl head 3x5x5", specs, n, shp(3, 5, 5), 4, GC_H_KINK,
                                        gen_normal, probes, 2, 1450);
    gc_assert_case(&c);
}
END_TEST

START_TEST(test_net_auglocal_head)
{
    /* depth 2: copies of both later blocks, the first at stride 2, then gap
     * and the linear layer; depth 1: a copy of the last block alone, at
     * stride 2 (it redoes the downsampling of the block it skips), gap, BN,
     * linear, whose gradients are checked (the blocks' are in block_case) */
    const char *const deep[] = {"objective.aux=auglocal", "objective.aux_depth=2"};
    const char *const one[] = {"objective.aux=auglocal", "objective.aux_depth=1"};
    struct sila_layer_spec specs[SILA_AUX_MAX_SPECS];
    head_of(deep, 2, specs, 4);
    ck_assert_int_eq(specs[0].kind, SILA_LAYER_BLOCK);
    ck_assert_int_eq(specs[0].stride, 2);
    ck_assert_int_eq(specs[1].kind, SILA_LAYER_BLOCK);
    ck_assert_int_eq(specs[1].stride, 1);
    ck_assert_int_eq(specs[2].kind, SILA_LAYER_GAP);
    int n = head_of(one, 2, specs, 4);
    ck_assert_int_eq(specs[0].kind, SILA_LAYER_BLOCK);
    ck_assert_int_eq(specs[0].stride, 2);
    ck_assert_int_eq(specs[2].kind, SILA_LAYER_BATCHNORM);
    const struct sila_layer_spec relu1[] = {sp_conv(4, 3, 2, 1, false),
                                            sp_kind(SILA_LAYER_BATCHNORM)};
    const struct gc_probe probes[] = {{relu1, 2, 0, 0, 0}, {specs, 1, 0, 0, 0}};
    const struct gc_case c = gc_case_of("auglocal head, depth 1", specs, n, shp(3, 5, 5), 4,
                                        GC_H_KINK, gen_normal, probes, 2, 1461);
    gc_assert_case(&c);
}
END_TEST

START_TEST(test_net_resnet)
{
    /* stem, identity block, projection block with drop-path, head */
    const struct sila_layer_spec specs[] = {
        sp_conv(3, 3, 1, 1, false),  sp_kind(SILA_LAYER_BATCHNORM),
        sp_kind(SILA_LAYER_RELU),    sp_block(3, 1, 0.0f),
        sp_block(4, 2, 0.3f),        sp_kind(SILA_LAYER_GAP),
        sp_kind(SILA_LAYER_FLATTEN), sp_linear(3, true),
    };
    /* shadows reaching each ReLU input: the stem's BN, each block's conv1+BN
     * (same layout as the block's first tensors), each block's output */
    const struct sila_layer_spec b1r1[] = {specs[0], specs[1], specs[2], sp_conv(3, 3, 1, 1, false),
                                           sp_kind(SILA_LAYER_BATCHNORM)};
    const struct sila_layer_spec b2r1[] = {specs[0],
                                           specs[1],
                                           specs[2],
                                           specs[3],
                                           sp_conv(4, 3, 2, 1, false),
                                           sp_kind(SILA_LAYER_BATCHNORM)};
    const struct gc_probe probes[] = {
        {specs, 2, 0, 0, 0}, {b1r1, 5, 0, 0, 0},  {specs, 4, 0, 0, 0},
        {b2r1, 6, 0, 0, 0},  {specs, 5, 0, 0, 0},
    };
    const struct gc_case c =
        gc_case_of("resnet", specs, 8, shp(2, 4, 4), 2, GC_H_KINK, gen_normal, probes, 5, 1500);
    gc_assert_case(&c);
}
END_TEST

/* ---- contracts of the backward pass -------------------------------------- */

START_TEST(test_backward_accumulates)
{
    /* Parameter gradients are ADDED into the grads block: a second backward
     * doubles them; din NULL leaves them unchanged. */
    const struct sila_layer_spec specs[] = {sp_conv(3, 3, 1, 1, true),
                                            sp_kind(SILA_LAYER_BATCHNORM), sp_kind(SILA_LAYER_GAP),
                                            sp_linear(2, true)};
    const struct gc_case c =
        gc_case_of("acc", specs, 4, shp(2, 4, 4), 2, GC_H_SMOOTH, gen_normal, NULL, 0, 1600);
    struct gc_run run;
    run_open(&run, &c, c.B);
    size_t np = sila_net_param_count(run.main.net);
    float *once = zalloc(np), *din = zalloc(run.n_in);
    sila_net_forward(run.main.net, run.x, c.B, true, NULL);
    sila_net_backward(run.main.net, run.x, run.R, din, c.B);
    memcpy(once, run.main.grads, sizeof *once * np);
    sila_net_backward(run.main.net, run.x, run.R, NULL, c.B);
    size_t nonzero = 0;
    for (size_t i = 0; i < np; i++) {
        ck_assert_float_eq_tol(run.main.grads[i], 2.0f * once[i], 1e-5f * (1.0f + fabsf(once[i])));
        nonzero += once[i] != 0.0f;
    }
    ck_assert_uint_gt(nonzero, np / 2);
    free(once);
    free(din);
    run_close(&run);
}
END_TEST

START_TEST(test_batch_below_max)
{
    /* Nets built for max_batch 5 run on batches of 2: every kernel must use
     * the batch of the call, not the one the net was built for. */
    const struct sila_layer_spec s1[] = {
        sp_conv(3, 3, 2, 1, false),  sp_kind(SILA_LAYER_BATCHNORM),
        sp_kind(SILA_LAYER_RELU),    sp_pool(SILA_LAYER_MAXPOOL, 2, 2, 0),
        sp_kind(SILA_LAYER_FLATTEN), sp_linear(4, true),
    };
    const struct gc_probe p1[] = {{s1, 2, 0, 0, 0}, {s1, 3, 2, 2, 0}};
    const struct gc_case c1 = gc_case_of("small batch conv net", s1, 6, shp(2, 7, 8), 2, GC_H_KINK,
                                         gen_normal, p1, 2, 1700);
    const struct sila_layer_spec s2[] = {
        sp_block(4, 2, 0.0f),        sp_pool(SILA_LAYER_AVGPOOL, 2, 1, 0), sp_kind(SILA_LAYER_GAP),
        sp_kind(SILA_LAYER_FLATTEN), sp_drop(SILA_LAYER_DROPOUT, 0.3f),    sp_linear(3, false),
    };
    const struct sila_layer_spec b1[] = {sp_conv(4, 3, 2, 1, false), sp_kind(SILA_LAYER_BATCHNORM)};
    const struct gc_probe p2[] = {{b1, 2, 0, 0, 0}, {s2, 1, 0, 0, 0}};
    const struct gc_case c2 = gc_case_of("small batch block net", s2, 6, shp(3, 5, 6), 2, GC_H_KINK,
                                         gen_normal, p2, 2, 1701);
    gc_assert_case_mb(&c1, 5);
    gc_assert_case_mb(&c2, 5);
}
END_TEST

START_TEST(test_input_never_written)
{
    /* Element-wise layers work in place on their input buffer, except on
     * the caller's input: a forward and backward of nets starting with each
     * of them (or with a view of the input) leave x untouched. */
    const struct sila_layer_spec first[][3] = {
        {sp_kind(SILA_LAYER_RELU), sp_kind(SILA_LAYER_FLATTEN), sp_linear(2, true)},
        {sp_drop(SILA_LAYER_DROPOUT, 0.5f), sp_kind(SILA_LAYER_FLATTEN), sp_linear(2, true)},
        {sp_drop(SILA_LAYER_DROPPATH, 0.5f), sp_kind(SILA_LAYER_FLATTEN), sp_linear(2, true)},
        {sp_kind(SILA_LAYER_FLATTEN), sp_kind(SILA_LAYER_RELU), sp_linear(2, true)},
        {sp_kind(SILA_LAYER_FLATTEN), sp_drop(SILA_LAYER_DROPOUT, 0.5f), sp_linear(2, true)},
        {sp_block(2, 1, 0.5f), sp_kind(SILA_LAYER_RELU), sp_kind(SILA_LAYER_GAP)},
    };
    for (size_t k = 0; k < sizeof first / sizeof first[0]; k++) {
        const struct gc_case c = gc_case_of("input", first[k], 3, shp(2, 3, 3), 4, GC_H_SMOOTH,
                                            gen_normal, NULL, 0, 1800 + k);
        struct gc_run run;
        run_open(&run, &c, c.B);
        float *copy = zalloc(run.n_in), *din = zalloc(run.n_in);
        memcpy(copy, run.x, sizeof *copy * run.n_in);
        struct sila_rng r;
        sila_rng_seed(&r, 1, 2);
        sila_net_forward(run.main.net, run.x, c.B, true, &r);
        sila_net_backward(run.main.net, run.x, run.R, din, c.B);
        ck_assert_msg(memcmp(copy, run.x, sizeof *copy * run.n_in) == 0,
                      "net %zu (first layer %s) wrote its input", k,
                      sila_layer_kind_name(first[k][0].kind));
        free(copy);
        free(din);
        run_close(&run);
    }
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_checker_detects_errors);
    tcase_add_test(tc, test_checker_detects_kinks);
    tcase_add_loop_test(tc, test_linear, 0, 5);
    tcase_add_loop_test(tc, test_conv2d, 0, (int)(sizeof conv_geo / sizeof conv_geo[0]));
    tcase_add_loop_test(tc, test_batchnorm_train, 0, 4);
    tcase_add_test(tc, test_relu);
    tcase_add_loop_test(tc, test_maxpool, 0, (int)(sizeof pool_geo / sizeof pool_geo[0]));
    tcase_add_loop_test(tc, test_avgpool, 0, (int)(sizeof pool_geo / sizeof pool_geo[0]));
    tcase_add_loop_test(tc, test_adaptive_avgpool, 0,
                        (int)(sizeof adapool_geo / sizeof adapool_geo[0]));
    tcase_add_loop_test(tc, test_upsample, 0, (int)(sizeof upsample_geo / sizeof upsample_geo[0]));
    tcase_add_test(tc, test_gap);
    tcase_add_test(tc, test_flatten);
    tcase_add_test(tc, test_dropout);
    tcase_add_test(tc, test_droppath);
    tcase_add_test(tc, test_block_identity);
    tcase_add_test(tc, test_block_projection);
    tcase_add_test(tc, test_block_droppath);
    tcase_add_test(tc, test_net_conv_bn_relu_pool_linear);
    tcase_add_test(tc, test_net_conv_relu_dropout_avgpool);
    tcase_add_test(tc, test_net_dgl_head);
    tcase_add_test(tc, test_net_auglocal_head);
    tcase_add_test(tc, test_net_resnet);
    tcase_add_test(tc, test_backward_accumulates);
    tcase_add_test(tc, test_batch_below_max);
    tcase_add_test(tc, test_input_never_written);
    suite_add_tcase(s, tc);
    return s;
}
