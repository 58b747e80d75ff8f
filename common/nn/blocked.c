/* Activations in oneDNN's channel-blocked layouts (see kernels.h): the
 * reorders between them and NCHW, and batch norm on them, as oneDNN
 * primitives run through onednn.h's plans and passes. The residual block
 * (block.c) keeps its tensors in the layout its convolutions work in and
 * uses these at its edges and between its convolutions.
 *
 * Batch norm is oneDNN's: its JIT kernels normalise 16 (or 8) channels per
 * vector in one pass over the blocked tensor, and fuse the ReLU that
 * follows (a bit mask saved for the backward pass). Its statistics are the
 * batch mean and the biased variance; the running statistics are updated
 * here with sila_bn_running_update, as sila_bn_forward_train does. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "onednn.h"

size_t sila_layout_floats(enum sila_layout l, int B, int C, int H, int W)
{
    int k = l == SILA_LAYOUT_NCHW16C ? 16 : l == SILA_LAYOUT_NCHW8C ? 8 : 1;
    return (size_t)B * (size_t)((C + k - 1) / k * k) * H * W;
}

/* ---- reorders ---- */

enum { TO, FROM };

struct sila_relayout_plan {
    struct sila_dnnl_plan core; /* first */
    struct sila_relayout g;
};

/* Pass p: a reorder from `from` to `to`. */
static int reorder_pass(struct sila_pass *p, dnnl_engine_t e, const dnnl_memory_desc_t *from,
                        const dnnl_memory_desc_t *to)
{
    dnnl_primitive_attr_t attr;
    dnnl_primitive_desc_t pd = NULL;
    size_t off = 0;
    int r = sila_dnnl_attr_new(&attr);
    if (r)
        return r;
    if (!(r = sila_dnnl_errno(dnnl_reorder_primitive_desc_create(&pd, from, e, to, e, attr))) &&
        !(r = sila_pass_tensor(p, e, pd, DNNL_ARG_FROM, NULL, true, &off)) &&
        !(r = sila_pass_tensor(p, e, pd, DNNL_ARG_TO, NULL, false, &off)))
        r = sila_pass_prim(p, e, pd, &off);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    return r;
}

static int relayout_build(struct sila_dnnl_plan *core, struct sila_pass *pass, int B)
{
    const struct sila_relayout *g = &((struct sila_relayout_plan *)core)->g;
    dnnl_memory_desc_t plain, blocked;
    int r;
    if ((r = sila_dnnl_act_md(&plain, B, g->C, g->H, g->W, SILA_LAYOUT_NCHW)) ||
        (r = sila_dnnl_act_md(&blocked, B, g->C, g->H, g->W, g->layout)) ||
        (r = reorder_pass(&pass[TO], core->dnnl.engine, &plain, &blocked)))
        return r;
    return reorder_pass(&pass[FROM], core->dnnl.engine, &blocked, &plain);
}

int sila_relayout_plan_new(struct sila_relayout *g)
{
    void *pl;
    int r = sila_dnnl_plan_new(&pl, sizeof(struct sila_relayout_plan), g,
                               offsetof(struct sila_relayout_plan, g), sizeof *g, relayout_build,
                               NULL, g->B, g->threads);
    if (!r)
        g->plan = pl;
    return r;
}

void sila_relayout_plan_free(struct sila_relayout *g)
{
    sila_dnnl_plan_free(g->plan);
    g->plan = NULL;
}

size_t sila_relayout_work_floats(const struct sila_relayout *g)
{
    return g->plan ? g->plan->core.cap : 0;
}

static void relayout_run(int which, float *out, const float *in, const struct sila_relayout *g,
                         float *work)
{
    struct sila_dnnl_plan *core = &g->plan->core;
    struct sila_pass *pass = sila_dnnl_plan_passes(core, g->B, g->threads);
    void *const ptr[2] = {(void *)in, out};
    sila_pass_run(&pass[which], core->dnnl.stream, ptr, work, false);
}

void sila_relayout_to(float *out, const float *in, const struct sila_relayout *g, float *work)
{
    relayout_run(TO, out, in, g, work);
}

void sila_relayout_from(float *out, const float *in, const struct sila_relayout *g, float *work)
{
    relayout_run(FROM, out, in, g, work);
}

/* ---- batch norm ---- */

enum { TRAIN, EVAL, BACKWARD };

struct sila_blocked_bn_plan {
    struct sila_dnnl_plan core; /* first */
    struct sila_blocked_bn g;
    size_t mask_bytes; /* at the plan's batch */
};

/* The passes' tensors, in the order their pointers are given:
 *   TRAIN     src scale shift -> dst mean variance [workspace]
 *   EVAL      src scale shift mean variance -> dst
 *   BACKWARD  src diff_dst mean variance scale shift [workspace]
 *             -> diff_src diff_scale diff_shift
 * ([workspace]: the ReLU's mask, when fused). */
static const int train_args[] = {DNNL_ARG_SRC,  DNNL_ARG_SCALE,    DNNL_ARG_SHIFT,    DNNL_ARG_DST,
                                 DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_WORKSPACE};
static const int eval_args[] = {DNNL_ARG_SRC,  DNNL_ARG_SCALE,    DNNL_ARG_SHIFT,
                                DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_DST};
static const int backward_args[] = {DNNL_ARG_SRC,       DNNL_ARG_DIFF_DST, DNNL_ARG_MEAN,
                                    DNNL_ARG_VARIANCE,  DNNL_ARG_SCALE,    DNNL_ARG_SHIFT,
                                    DNNL_ARG_WORKSPACE, DNNL_ARG_DIFF_SRC, DNNL_ARG_DIFF_SCALE,
                                    DNNL_ARG_DIFF_SHIFT};

/* Pass p of pd with the tensors args[0..n) of which the first `inputs` are
 * read, each as the primitive wants it; the workspace only when `ws`. */
static int bn_pass(struct sila_pass *p, dnnl_engine_t e, const_dnnl_primitive_desc_t pd,
                   const int *args, int n, int inputs, bool ws)
{
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (args[i] == DNNL_ARG_WORKSPACE && !ws)
            continue;
        int r = sila_pass_tensor(p, e, pd, args[i], NULL, i < inputs, &off);
        if (r)
            return r;
    }
    return sila_pass_prim(p, e, pd, &off);
}

#define NARGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* The three passes of batch size B (the plan's build); the mask's size
 * noted at the plan's own batch. */
static int bn_build(struct sila_dnnl_plan *core, struct sila_pass *pass, int B)
{
    struct sila_blocked_bn_plan *pl = (struct sila_blocked_bn_plan *)core;
    const struct sila_blocked_bn *g = &pl->g;
    const unsigned flags = dnnl_use_scale | dnnl_use_shift | (g->relu ? dnnl_fuse_norm_relu : 0);
    dnnl_engine_t e = core->dnnl.engine;
    dnnl_memory_desc_t md;
    dnnl_batch_normalization_desc_t td, ed, bd;
    dnnl_primitive_desc_t tpd = NULL, epd = NULL, bpd = NULL;
    dnnl_primitive_attr_t attr;
    int r;
    if ((r = sila_dnnl_act_md(&md, B, g->C, g->H, g->W, g->layout)) ||
        (r = sila_dnnl_attr_new(&attr)))
        return r;
    if (!(r = sila_dnnl_errno(dnnl_batch_normalization_forward_desc_init(&td, dnnl_forward_training,
                                                                         &md, g->eps, flags))) &&
        !(r = sila_dnnl_errno(dnnl_primitive_desc_create(&tpd, &td, attr, e, NULL))) &&
        !(r = sila_dnnl_errno(dnnl_batch_normalization_forward_desc_init(
              &ed, dnnl_forward_inference, &md, g->eps, flags | dnnl_use_global_stats))) &&
        !(r = sila_dnnl_errno(dnnl_primitive_desc_create(&epd, &ed, attr, e, NULL))) &&
        !(r = sila_dnnl_errno(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &md,
                                                                          &md, g->eps, flags))) &&
        !(r = sila_dnnl_errno(dnnl_primitive_desc_create(&bpd, &bd, attr, e, tpd))) &&
        !(r = bn_pass(&pass[TRAIN], e, tpd, train_args, NARGS(train_args), 3, g->relu)) &&
        !(r = bn_pass(&pass[EVAL], e, epd, eval_args, NARGS(eval_args), 5, false)))
        r = bn_pass(&pass[BACKWARD], e, bpd, backward_args, NARGS(backward_args), 7, g->relu);
    if (!r && B == g->B && g->relu)
        pl->mask_bytes = dnnl_memory_desc_get_size(
            dnnl_primitive_desc_query_md(tpd, dnnl_query_workspace_md, 0));
    if (tpd)
        dnnl_primitive_desc_destroy(tpd);
    if (epd)
        dnnl_primitive_desc_destroy(epd);
    if (bpd)
        dnnl_primitive_desc_destroy(bpd);
    dnnl_primitive_attr_destroy(attr);
    return r;
}

int sila_blocked_bn_plan_new(struct sila_blocked_bn *g)
{
    void *pl;
    int r = sila_dnnl_plan_new(&pl, sizeof(struct sila_blocked_bn_plan), g,
                               offsetof(struct sila_blocked_bn_plan, g), sizeof *g, bn_build, NULL,
                               g->B, g->threads);
    if (!r)
        g->plan = pl;
    return r;
}

void sila_blocked_bn_plan_free(struct sila_blocked_bn *g)
{
    sila_dnnl_plan_free(g->plan);
    g->plan = NULL;
}

/* Backward's diff_scale and diff_shift go to work past the passes'. */
size_t sila_blocked_bn_work_floats(const struct sila_blocked_bn *g)
{
    return g->plan ? g->plan->core.cap + 2 * sila_dnnl_aligned((size_t)g->C) : 0;
}

size_t sila_blocked_bn_mask_bytes(const struct sila_blocked_bn *g)
{
    return g->plan ? g->plan->mask_bytes : 0;
}

/* Runs pass `which` of g's batch on ptr (oneDNN never writes an input
 * through its non-const handle). */
static void bn_run(int which, void *const *ptr, const struct sila_blocked_bn *g, float *work)
{
    struct sila_dnnl_plan *core = &g->plan->core;
    struct sila_pass *pass = sila_dnnl_plan_passes(core, g->B, g->threads);
    sila_pass_run(&pass[which], core->dnnl.stream, ptr, work, false);
}

void sila_blocked_bn_forward_train(float *out, float *mean, float *var, void *mask, float *run_mean,
                                   float *run_var, const float *in, const float *gamma,
                                   const float *beta, float momentum,
                                   const struct sila_blocked_bn *g, float *work)
{
    void *const ptr[] = {(void *)in, (void *)gamma, (void *)beta, out, mean, var, mask};
    bn_run(TRAIN, ptr, g, work);
    const double n = (double)g->B * g->H * g->W;
    for (int c = 0; c < g->C; c++)
        sila_bn_running_update(run_mean + c, run_var + c, mean[c], var[c], n, momentum);
}

void sila_blocked_bn_forward_eval(float *out, const float *in, const float *gamma,
                                  const float *beta, const float *run_mean, const float *run_var,
                                  const struct sila_blocked_bn *g, float *work)
{
    void *const ptr[] = {(void *)in,       (void *)gamma,   (void *)beta,
                         (void *)run_mean, (void *)run_var, out};
    bn_run(EVAL, ptr, g, work);
}

void sila_blocked_bn_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                              const float *in, const float *mean, const float *var,
                              const void *mask, const float *gamma, const float *beta,
                              const struct sila_blocked_bn *g, float *work)
{
    struct sila_pass *pass = sila_dnnl_plan_passes(&g->plan->core, g->B, g->threads);
    float *dg = work + pass[BACKWARD].floats, *db = dg + sila_dnnl_aligned((size_t)g->C);
    void *ptr[SILA_PASS_TENSORS] = {(void *)in,  (void *)dout,  (void *)mean,
                                    (void *)var, (void *)gamma, (void *)beta};
    int n = 6;
    if (g->relu)
        ptr[n++] = (void *)mask;
    ptr[n++] = din;
    ptr[n++] = dg;
    ptr[n] = db;
    bn_run(BACKWARD, ptr, g, work);
    for (int c = 0; dgamma && c < g->C; c++) {
        dgamma[c] += dg[c];
        dbeta[c] += db[c];
    }
}
