/* Internal to common/nn: oneDNN primitives over caller-owned float arrays,
 * the machinery conv.c and blocked.c share (see kernels.h for what they
 * compute).
 *
 * A pass is one primitive with its tensors. Each tensor is described as the
 * caller holds it ("plain": NCHW, OIHW, a vector, or one of sila_layout's
 * blocked layouts) and as the primitive wants it; when the two differ, a
 * reorder runs between them (into the primitive's layout before an input
 * is read, back after an output is written) through a copy in the caller's
 * work buffer. The primitive's scratchpad lives there too (user scratchpad
 * mode), so running a pass allocates nothing. A plan keeps its passes for
 * up to SILA_DNNL_VARIANTS batch sizes (struct sila_dnnl_plan). */
#ifndef SILA_ONEDNN_H
#define SILA_ONEDNN_H

#include <oneapi/dnnl/dnnl.h>
#include <stdbool.h>
#include <stddef.h>

#include "kernels.h"

/* Batch sizes a plan keeps primitives for: a job meets two or three (the
 * batch, the last batch of an epoch, the last test batch). */
#define SILA_DNNL_VARIANTS 4
/* Tensors of one pass at most (batch norm's backward has ten). */
#define SILA_PASS_TENSORS 10

/* 0, -ENOMEM or -EINVAL for a oneDNN status. */
int sila_dnnl_errno(dnnl_status_t s);
/* n floats rounded up to 16 (64 bytes): copies placed at such offsets are
 * cache-line aligned when the work buffer is. */
size_t sila_dnnl_aligned(size_t n);
/* Floats of memory described by md, rounded up by sila_dnnl_aligned. */
size_t sila_dnnl_floats(const dnnl_memory_desc_t *md);
/* md := activations (B, C, H, W) in layout l: 0 or a negative errno. */
int sila_dnnl_act_md(dnnl_memory_desc_t *md, int B, int C, int H, int W, enum sila_layout l);
/* The layout md has, among sila_layout's; NCHW when it has none of them
 * (a caller then holds NCHW and a reorder runs). */
enum sila_layout sila_dnnl_layout_of(const dnnl_memory_desc_t *md);
/* *ret_attr := a new attribute with user scratchpad mode (the caller
 * destroys it): 0 or a negative errno. */
int sila_dnnl_attr_new(dnnl_primitive_attr_t *ret_attr);

/* An engine and its stream, one per plan. */
struct sila_dnnl {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
};
/* 0 or a negative errno; sila_dnnl_close is safe on a failed open. */
int sila_dnnl_open(struct sila_dnnl *d);
void sila_dnnl_close(struct sila_dnnl *d);
/* Sets OpenMP's thread count to `threads` unless it is that already:
 * primitives run on as many threads as OpenMP has when they run. */
void sila_dnnl_threads(int threads);

/* One tensor of a pass; used == plain when no reorder is needed. */
struct sila_pass_tensor {
    dnnl_memory_t plain, used;
    dnnl_primitive_t reorder; /* NULL when no reorder is needed */
    size_t off;               /* the primitive's copy, in floats into work */
    bool input;               /* read by the primitive (else written) */
};

struct sila_pass {
    dnnl_primitive_t prim;
    dnnl_memory_t scratch; /* NULL when the primitive needs none */
    size_t scratch_off;
    struct sila_pass_tensor t[SILA_PASS_TENSORS];
    int args[SILA_PASS_TENSORS]; /* DNNL_ARG_* of each tensor */
    int nt;
    size_t floats; /* work the pass uses (set by sila_pass_prim) */
};

/* Adds execution argument `arg` of primitive descriptor pd to p, held by
 * the caller as `plain` (NULL: as the primitive wants it). A reorder's
 * copy goes at *off floats into work, which advances. 0 or a negative
 * errno (p is then left for sila_pass_fini). */
int sila_pass_tensor(struct sila_pass *p, dnnl_engine_t e, const_dnnl_primitive_desc_t pd, int arg,
                     const dnnl_memory_desc_t *plain, bool input, size_t *off);
/* Creates p's primitive from pd (after its tensors), its scratchpad at *off
 * (advanced); p->floats := *off. 0 or a negative errno. */
int sila_pass_prim(struct sila_pass *p, dnnl_engine_t e, const_dnnl_primitive_desc_t pd,
                   size_t *off);
/* Runs p on the caller's arrays ptr[i] (one per tensor, in the order they
 * were added; inputs are never written) with p->floats floats of work.
 * `reordered`: the first tensor, an input, is already in work in the
 * primitive's layout (left there by a previous pass). Waits for the end. */
void sila_pass_run(struct sila_pass *p, dnnl_stream_t s, void *const *ptr, float *work,
                   bool reordered);
/* Frees what p holds and zeroes it; safe on a zeroed or partly built pass. */
void sila_pass_fini(struct sila_pass *p);

/* Passes of one variant of a plan at most (a convolution's three). */
#define SILA_DNNL_PASSES 3

/* A plan: for each batch size met, up to SILA_DNNL_PASSES passes built by
 * `build` on the first call with that size and kept, the least recently
 * used replaced beyond SILA_DNNL_VARIANTS. A batch whose passes would need
 * more work than the plan's own batch did is built by `fallback` instead,
 * when the kind has one. A plan kind embeds it as its first member. */
struct sila_dnnl_plan {
    struct sila_dnnl dnnl;
    /* fill the zeroed passes of batch size B: 0 or a negative errno */
    int (*build)(struct sila_dnnl_plan *pl, struct sila_pass *pass, int B);
    int (*fallback)(struct sila_dnnl_plan *pl, struct sila_pass *pass, int B); /* or NULL */
    size_t cap;                /* work floats of the largest pass at the plan's own batch */
    int B[SILA_DNNL_VARIANTS]; /* batch size of each variant, 0: none */
    unsigned long use[SILA_DNNL_VARIANTS], clock;
    struct sila_pass v[SILA_DNNL_VARIANTS][SILA_DNNL_PASSES];
};
/* A plan kind's object of `size` bytes (zeroed, its sila_dnnl_plan first)
 * with the geometry g_size bytes from g copied at g_off, its builds (see
 * struct sila_dnnl_plan; fallback may be NULL), and its variant for batch
 * B built on `threads` threads, the count its passes will run on (oneDNN
 * sizes scratchpads by the threads a primitive is created with): 0 and
 * *ret_plan, or a negative errno. */
int sila_dnnl_plan_new(void **ret_plan, size_t size, const void *g, size_t g_off, size_t g_size,
                       int (*build)(struct sila_dnnl_plan *, struct sila_pass *, int),
                       int (*fallback)(struct sila_dnnl_plan *, struct sila_pass *, int), int B,
                       int threads);
/* Frees a plan made by sila_dnnl_plan_new; safe on NULL. */
void sila_dnnl_plan_free(void *plan);
/* The passes of batch size B, built when new, on `threads` OpenMP threads
 * (sila_dnnl_threads). A variant is built only at a batch size's first
 * call; failing then (memory exhausted in the library, or more work than
 * the plan's batch even from the fallback) leaves nothing to compute
 * with, and aborts. */
struct sila_pass *sila_dnnl_plan_passes(struct sila_dnnl_plan *pl, int B, int threads);

#endif
