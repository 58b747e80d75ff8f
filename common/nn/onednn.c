/* oneDNN passes, plans and layouts shared by conv.c and blocked.c
 * (see onednn.h). */
#include "onednn.h"

#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

int sila_dnnl_errno(dnnl_status_t s)
{
    return s == dnnl_success ? 0 : s == dnnl_out_of_memory ? -ENOMEM : -EINVAL;
}

size_t sila_dnnl_aligned(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

size_t sila_dnnl_floats(const dnnl_memory_desc_t *md)
{
    return sila_dnnl_aligned((dnnl_memory_desc_get_size(md) + sizeof(float) - 1) / sizeof(float));
}

static dnnl_format_tag_t layout_tag(enum sila_layout l)
{
    switch (l) {
    case SILA_LAYOUT_NCHW8C:
        return dnnl_nChw8c;
    case SILA_LAYOUT_NCHW16C:
        return dnnl_nChw16c;
    case SILA_LAYOUT_NCHW:
        break;
    }
    return dnnl_nchw;
}

int sila_dnnl_act_md(dnnl_memory_desc_t *md, int B, int C, int H, int W, enum sila_layout l)
{
    dnnl_dims_t d = {B, C, H, W};
    return sila_dnnl_errno(dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, layout_tag(l)));
}

enum sila_layout sila_dnnl_layout_of(const dnnl_memory_desc_t *md)
{
    static const enum sila_layout blocked[] = {SILA_LAYOUT_NCHW16C, SILA_LAYOUT_NCHW8C};
    if (md->ndims != 4 || md->data_type != dnnl_f32)
        return SILA_LAYOUT_NCHW;
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
        dnnl_memory_desc_t want;
        if (!sila_dnnl_act_md(&want, (int)md->dims[0], (int)md->dims[1], (int)md->dims[2],
                              (int)md->dims[3], blocked[i]) &&
            dnnl_memory_desc_equal(md, &want))
            return blocked[i];
    }
    return SILA_LAYOUT_NCHW;
}

int sila_dnnl_attr_new(dnnl_primitive_attr_t *ret_attr)
{
    dnnl_primitive_attr_t a;
    int r = sila_dnnl_errno(dnnl_primitive_attr_create(&a));
    if (r)
        return r;
    if ((r = sila_dnnl_errno(
             dnnl_primitive_attr_set_scratchpad_mode(a, dnnl_scratchpad_mode_user)))) {
        dnnl_primitive_attr_destroy(a);
        return r;
    }
    *ret_attr = a;
    return 0;
}

int sila_dnnl_open(struct sila_dnnl *d)
{
    memset(d, 0, sizeof *d);
    int r = sila_dnnl_errno(dnnl_engine_create(&d->engine, dnnl_cpu, 0));
    if (!r)
        r = sila_dnnl_errno(dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags));
    return r;
}

void sila_dnnl_close(struct sila_dnnl *d)
{
    if (d->stream)
        dnnl_stream_destroy(d->stream);
    if (d->engine)
        dnnl_engine_destroy(d->engine);
    memset(d, 0, sizeof *d);
}

void sila_dnnl_threads(int threads)
{
    if (omp_get_max_threads() != threads)
        omp_set_num_threads(threads);
}

int sila_pass_tensor(struct sila_pass *p, dnnl_engine_t e, const_dnnl_primitive_desc_t pd, int arg,
                     const dnnl_memory_desc_t *plain, bool input, size_t *off)
{
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
    if (!want || !plain)
        plain = want;
    if (!plain || p->nt == SILA_PASS_TENSORS)
        return -EINVAL;
    struct sila_pass_tensor *t = &p->t[p->nt];
    p->args[p->nt++] = arg;
    t->input = input;
    dnnl_status_t s = dnnl_memory_create(&t->plain, plain, e, DNNL_MEMORY_NONE);
    if (s != dnnl_success)
        return sila_dnnl_errno(s);
    if (dnnl_memory_desc_equal(plain, want)) {
        t->used = t->plain;
        return 0;
    }
    if ((s = dnnl_memory_create(&t->used, want, e, DNNL_MEMORY_NONE)) != dnnl_success)
        return sila_dnnl_errno(s);
    t->off = *off;
    *off += sila_dnnl_floats(want);
    dnnl_primitive_desc_t rpd;
    s = input ? dnnl_reorder_primitive_desc_create(&rpd, plain, e, want, e, NULL)
              : dnnl_reorder_primitive_desc_create(&rpd, want, e, plain, e, NULL);
    if (s != dnnl_success)
        return sila_dnnl_errno(s);
    s = dnnl_primitive_create(&t->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    return sila_dnnl_errno(s);
}

int sila_pass_prim(struct sila_pass *p, dnnl_engine_t e, const_dnnl_primitive_desc_t pd,
                   size_t *off)
{
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    dnnl_status_t s;
    if (smd && dnnl_memory_desc_get_size(smd) > 0) {
        if ((s = dnnl_memory_create(&p->scratch, smd, e, DNNL_MEMORY_NONE)) != dnnl_success)
            return sila_dnnl_errno(s);
        p->scratch_off = *off;
        *off += sila_dnnl_floats(smd);
    }
    p->floats = *off;
    return sila_dnnl_errno(dnnl_primitive_create(&p->prim, pd));
}

void sila_pass_run(struct sila_pass *p, dnnl_stream_t s, void *const *ptr, float *work,
                   bool reordered)
{
    dnnl_exec_arg_t args[SILA_PASS_TENSORS + 1];
    int n = 0;
    for (int i = 0; i < p->nt; i++) {
        struct sila_pass_tensor *t = &p->t[i];
        dnnl_memory_set_data_handle(t->plain, ptr[i]);
        if (t->used != t->plain)
            dnnl_memory_set_data_handle(t->used, work + t->off);
        args[n++] = (dnnl_exec_arg_t){p->args[i], t->used};
    }
    if (p->scratch) {
        dnnl_memory_set_data_handle(p->scratch, work + p->scratch_off);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
    }
    for (int i = reordered ? 1 : 0; i < p->nt; i++) /* inputs into the primitive's layouts */
        if (p->t[i].reorder && p->t[i].input) {
            dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, p->t[i].plain}, {DNNL_ARG_TO, p->t[i].used}};
            dnnl_primitive_execute(p->t[i].reorder, s, 2, ra);
        }
    dnnl_primitive_execute(p->prim, s, n, args);
    for (int i = 0; i < p->nt; i++) /* outputs back to the caller's */
        if (p->t[i].reorder && !p->t[i].input) {
            dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, p->t[i].used}, {DNNL_ARG_TO, p->t[i].plain}};
            dnnl_primitive_execute(p->t[i].reorder, s, 2, ra);
        }
    dnnl_stream_wait(s);
}

void sila_pass_fini(struct sila_pass *p)
{
    for (int i = 0; i < p->nt; i++) {
        struct sila_pass_tensor *t = &p->t[i];
        if (t->reorder)
            dnnl_primitive_destroy(t->reorder);
        if (t->used && t->used != t->plain)
            dnnl_memory_destroy(t->used);
        if (t->plain)
            dnnl_memory_destroy(t->plain);
    }
    if (p->prim)
        dnnl_primitive_destroy(p->prim);
    if (p->scratch)
        dnnl_memory_destroy(p->scratch);
    memset(p, 0, sizeof *p);
}

/* Floats of work the largest of the passes uses. */
static size_t passes_floats(const struct sila_pass *pass)
{
    size_t n = 0;
    for (int k = 0; k < SILA_DNNL_PASSES; k++)
        if (pass[k].floats > n)
            n = pass[k].floats;
    return n;
}

static void passes_fini(struct sila_pass *pass)
{
    for (int k = 0; k < SILA_DNNL_PASSES; k++)
        sila_pass_fini(&pass[k]);
}

/* *ret_i := index of the variant of batch B, built (replacing the least
 * recently used) when new: 0, or the negative errno of building it. */
static int variant_for(struct sila_dnnl_plan *pl, int B, int *ret_i)
{
    int pick = 0;
    for (int i = 0; i < SILA_DNNL_VARIANTS; i++) {
        if (pl->B[i] == B) {
            pl->use[i] = ++pl->clock;
            *ret_i = i;
            return 0;
        }
        if (pl->use[i] < pl->use[pick])
            pick = i;
    }
    passes_fini(pl->v[pick]);
    pl->B[pick] = 0;
    int r = pl->build(pl, pl->v[pick], B);
    if (!r && pl->cap && passes_floats(pl->v[pick]) > pl->cap) { /* more work than was planned */
        passes_fini(pl->v[pick]);
        r = pl->fallback ? pl->fallback(pl, pl->v[pick], B) : -ENOMEM;
        if (!r && passes_floats(pl->v[pick]) > pl->cap)
            r = -ENOMEM;
    }
    if (r) {
        passes_fini(pl->v[pick]);
        return r;
    }
    pl->B[pick] = B;
    pl->use[pick] = ++pl->clock;
    *ret_i = pick;
    return 0;
}

int sila_dnnl_plan_new(void **ret_plan, size_t size, const void *g, size_t g_off, size_t g_size,
                       int (*build)(struct sila_dnnl_plan *, struct sila_pass *, int),
                       int (*fallback)(struct sila_dnnl_plan *, struct sila_pass *, int), int B,
                       int threads)
{
    struct sila_dnnl_plan *pl = calloc(1, size);
    if (!pl)
        return -ENOMEM;
    memcpy((char *)pl + g_off, g, g_size);
    pl->build = build;
    pl->fallback = fallback;
    sila_dnnl_threads(threads);
    int i, r = sila_dnnl_open(&pl->dnnl);
    if (!r)
        r = variant_for(pl, B, &i);
    if (r) {
        sila_dnnl_plan_free(pl);
        return r;
    }
    pl->cap = passes_floats(pl->v[i]); /* the most any smaller batch may use */
    *ret_plan = pl;
    return 0;
}

void sila_dnnl_plan_free(void *plan)
{
    struct sila_dnnl_plan *pl = plan;
    if (!pl)
        return;
    for (int i = 0; i < SILA_DNNL_VARIANTS; i++)
        passes_fini(pl->v[i]);
    sila_dnnl_close(&pl->dnnl);
    free(pl);
}

struct sila_pass *sila_dnnl_plan_passes(struct sila_dnnl_plan *pl, int B, int threads)
{
    sila_dnnl_threads(threads);
    int i;
    if (variant_for(pl, B, &i))
        abort();
    return pl->v[i];
}
