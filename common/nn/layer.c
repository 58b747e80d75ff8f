/* One layer of a net: the kinds' names and defaults, the builder's tensor
 * layout, and building, running and differentiating a layer through its
 * kind's descriptor (layer_kinds.c; see layer.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

const char *sila_layer_kind_name(enum sila_layer_kind kind)
{
    const struct sila_layer_desc *d = sila_layer_desc(kind);
    return d ? d->name : NULL;
}

int sila_layer_kind_parse(const char *name, enum sila_layer_kind *ret_kind)
{
    for (int k = SILA_LAYER_LINEAR; k <= SILA_LAYER_KIND_MAX; k++) {
        const struct sila_layer_desc *d = sila_layer_desc((enum sila_layer_kind)k);
        if (d && strcmp(name, d->name) == 0) {
            *ret_kind = (enum sila_layer_kind)k;
            return 0;
        }
    }
    return -EINVAL;
}

int sila_layer_kind_from_proto(int proto, enum sila_layer_kind *ret_kind)
{
    for (int k = SILA_LAYER_LINEAR; k <= SILA_LAYER_KIND_MAX; k++) {
        const struct sila_layer_desc *d = sila_layer_desc((enum sila_layer_kind)k);
        if (d && d->proto_kind == proto) {
            *ret_kind = (enum sila_layer_kind)k;
            return 0;
        }
    }
    return -EINVAL;
}

struct sila_layer_spec sila_layer_spec_default(enum sila_layer_kind kind)
{
    const struct sila_layer_desc *d = sila_layer_desc(kind);
    return d ? d->defaults : (struct sila_layer_spec){.kind = kind};
}

int sila_builder_add_tensor(struct sila_builder *b, const char *prefix, const char *suffix,
                            enum sila_tensor_role role, int fan_in, int ndim, const int *shape,
                            size_t *ret_offset, struct sila_err *err)
{
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (uint64_t)shape[i]; /* each <= SILA_MAX_DIM: no overflow before the check */
    if (n > SILA_MAX_TENSOR)
        return sila_err_set(err, -EINVAL, "layer %s: tensor %s has %llu values, more than %llu",
                            prefix, suffix, (unsigned long long)n,
                            (unsigned long long)SILA_MAX_TENSOR);
    if (b->ntensors == b->cap) {
        int cap = b->cap ? 2 * b->cap : 16;
        struct sila_tensor *t = realloc(b->tensors, sizeof *t * cap);
        if (!t)
            return -ENOMEM;
        b->tensors = t;
        b->cap = cap;
    }
    struct sila_tensor *t = &b->tensors[b->ntensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s.%s", prefix, suffix);
    t->role = role;
    t->fan_in = fan_in;
    t->ndim = ndim;
    t->n = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->n *= (size_t)shape[i];
    }
    size_t *count = sila_tensor_is_buffer(t) ? &b->nbuffers : &b->nparams;
    t->offset = *count;
    *count += t->n;
    *ret_offset = t->offset;
    return 0;
}

/* Every dimension in 1..SILA_MAX_DIM and at most SILA_MAX_ACTIVATION values. */
static bool shape_ok(struct sila_shape s)
{
    if (s.c < 1 || s.h < 1 || s.w < 1 || s.c > SILA_MAX_DIM || s.h > SILA_MAX_DIM ||
        s.w > SILA_MAX_DIM)
        return false;
    return (uint64_t)s.c * (uint64_t)s.h * (uint64_t)s.w <= SILA_MAX_ACTIVATION;
}

static bool spec_ints_ok(const struct sila_layer_spec *s)
{
    int v[4] = {s->out, s->kernel, s->stride, s->pad};
    for (int i = 0; i < 4; i++)
        if (v[i] < 0 || v[i] > SILA_MAX_DIM)
            return false;
    return true;
}

int sila_layer_build(struct sila_layer *L, const struct sila_layer_spec *spec, struct sila_shape in,
                     float *in_buf, const char *prefix, struct sila_builder *b,
                     struct sila_err *err)
{
    memset(L, 0, sizeof *L);
    L->spec = *spec;
    L->in = in;
    if (!shape_ok(in))
        return sila_err_set(err, -EINVAL,
                            "layer %s: input shape %dx%dx%d is empty or too large "
                            "(each dimension 1..%d, at most %llu values)",
                            prefix, in.c, in.h, in.w, SILA_MAX_DIM,
                            (unsigned long long)SILA_MAX_ACTIVATION);
    if (!spec_ints_ok(spec))
        return sila_err_set(err, -EINVAL,
                            "layer %s (%s): out, kernel, stride and pad must lie "
                            "in 0..%d",
                            prefix, sila_layer_kind_name(spec->kind), SILA_MAX_DIM);
    const struct sila_layer_desc *d = sila_layer_desc(spec->kind);
    if (!d)
        return sila_err_set(err, -EINVAL, "layer %s: unknown kind %d", prefix, (int)spec->kind);
    int r = d->build(L, prefix, b, err);
    if (r)
        return r;
    if (!shape_ok(L->out))
        return sila_err_set(err, -EINVAL,
                            "layer %s (%s): output shape %dx%dx%d is empty or too "
                            "large (each dimension 1..%d, at most %llu values)",
                            prefix, sila_layer_kind_name(spec->kind), L->out.c, L->out.h, L->out.w,
                            SILA_MAX_DIM, (unsigned long long)SILA_MAX_ACTIVATION);
    if ((d->flags & SILA_LAYER_VIEW) || (in_buf && (d->flags & SILA_LAYER_IN_PLACE))) {
        L->y = in_buf; /* NULL for a view of the caller's input: set per forward */
        return 0;
    }
    if (d->flags & SILA_LAYER_OWN_OUTPUT)
        return 0;
    L->y = sila_floats_alloc((size_t)b->max_batch * sila_shape_size(L->out));
    L->y_owned = true;
    return L->y ? 0 : -ENOMEM;
}

void sila_layer_fini(struct sila_layer *L)
{
    if (L->y_owned)
        free(L->y);
    free(L->mean);
    free(L->invstd);
    free(L->argmax);
    free(L->mask);
    sila_block_free(L->block);
    sila_conv_plan_free(&L->conv);
    memset(L, 0, sizeof *L);
}

void sila_layer_forward(struct sila_layer *L, const float *in, const struct sila_ctx *ctx)
{
    sila_layer_desc(L->spec.kind)->forward(L, in, ctx);
}

void sila_layer_backward(struct sila_layer *L, const float *in, const float *dout, float *din,
                         const struct sila_ctx *ctx)
{
    const struct sila_layer_desc *d = sila_layer_desc(L->spec.kind);
    if (din || (d->flags & SILA_LAYER_PARAMS))
        d->backward(L, in, dout, din, ctx);
}
