/* ONNX export (see onnx.h). The graph is built from onnx.proto's protobuf-c
 * structs, each allocated in the builder's list and freed with it; the
 * model's tensors are borrowed as initializers, not copied. Values flow
 * 4-D (N, C, H, W) through convolutions and pools and 2-D (N, C·H·W) after
 * a flatten or a linear layer; a layer that needs the other rank gets a
 * Flatten or a Reshape first, which moves no value (sila's shapes are
 * row-major NCHW throughout). */
#include "onnx.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "layer.h"
#include "onnx.pb-c.h"
#include "sealed.h"

#define IR_VERSION 7              /* the IR of opset 13 (ONNX 1.8) */
#define MAX_MAP_FLOATS (1u << 24) /* a resizing layer's matrix and its making */

/* The graph under construction. Every allocation is in owned[] and freed
 * by graph_fini; a failed one sets oom, and later calls do nothing. */
struct graph {
    const struct sila_model *m;
    Onnx__NodeProto **nodes;
    size_t nnodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t ninits, cap_inits;
    void **owned;
    size_t nowned, cap_owned;
    bool oom;
    const char *missing; /* a tensor the graph needs and the model lacks */
};

/* The value flowing from layer to layer: its name in the graph, sila's
 * shape of it, and its rank in the graph (4 or 2). */
struct flow {
    const char *name;
    struct sila_shape shape;
    int rank;
};

/* ---- allocation ---------------------------------------------------------- */

/* Appends p to the array *arr of *n entries (capacity *cap); false when out
 * of memory. */
static bool push(void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        void **a = realloc(*arr, sizeof *a * c);
        if (!a)
            return false;
        *arr = a, *cap = c;
    }
    (*arr)[(*n)++] = p;
    return true;
}

/* n zeroed bytes owned by g, or NULL (g->oom set). */
static void *alloc(struct graph *g, size_t n)
{
    void *p = g->oom ? NULL : calloc(1, n ? n : 1);
    if (p && push(&g->owned, &g->nowned, &g->cap_owned, p))
        return p;
    free(p);
    g->oom = true;
    return NULL;
}

/* A printf-formatted string owned by g ("" when out of memory). */
static char *text(struct graph *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = alloc(g, (size_t)n + 1);
    if (!s)
        return "";
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void graph_fini(struct graph *g)
{
    for (size_t i = 0; i < g->nowned; i++)
        free(g->owned[i]);
    free(g->owned);
    free(g->nodes);
    free(g->inits);
}

/* ---- nodes and initializers --------------------------------------------- */

/* A node op(in[0..nin)) -> out, appended to the graph; NULL when out of
 * memory (the node's attributes are then dropped too). */
static Onnx__NodeProto *node(struct graph *g, const char *op, const char *out, int nin,
                             const char *const *in)
{
    Onnx__NodeProto *n = alloc(g, sizeof *n);
    char **ins = alloc(g, sizeof *ins * (size_t)nin), **outs = alloc(g, sizeof *outs);
    if (!n || !ins || !outs)
        return NULL;
    onnx__node_proto__init(n);
    for (int i = 0; i < nin; i++)
        ins[i] = (char *)in[i];
    outs[0] = (char *)out;
    n->op_type = (char *)op;
    n->name = (char *)out;
    n->n_input = (size_t)nin, n->input = ins;
    n->n_output = 1, n->output = outs;
    if (!push((void ***)&g->nodes, &g->nnodes, &g->cap_nodes, n)) {
        g->oom = true;
        return NULL;
    }
    return n;
}

/* An attribute of n (NULL: none is added), its value set by the caller. */
static Onnx__AttributeProto *attr(struct graph *g, Onnx__NodeProto *n, const char *name,
                                  Onnx__AttributeProto__AttributeType type)
{
    if (!n)
        return NULL;
    Onnx__AttributeProto *a = alloc(g, sizeof *a);
    Onnx__AttributeProto **list = alloc(g, sizeof *list * (n->n_attribute + 1));
    if (!a || !list)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = true, a->type = type;
    if (n->n_attribute)
        memcpy(list, n->attribute, sizeof *list * n->n_attribute);
    list[n->n_attribute] = a;
    n->attribute = list, n->n_attribute++;
    return a;
}

static void attr_int(struct graph *g, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a)
        a->has_i = true, a->i = v;
}

static void attr_float(struct graph *g, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a)
        a->has_f = true, a->f = v;
}

/* ints: v repeated `count` times. */
static void attr_ints(struct graph *g, Onnx__NodeProto *n, const char *name, int count, int64_t v)
{
    Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *ints = alloc(g, sizeof *ints * (size_t)count);
    if (!a || !ints)
        return;
    for (int i = 0; i < count; i++)
        ints[i] = v;
    a->n_ints = (size_t)count, a->ints = ints;
}

/* A float initializer `name` of shape dims[0..ndim) over data (borrowed:
 * it must live until the graph is written). Returns name. */
static const char *init_floats(struct graph *g, const char *name, int ndim, const int64_t *dims,
                               const float *data)
{
    Onnx__TensorProto *t = alloc(g, sizeof *t);
    int64_t *d = alloc(g, sizeof *d * (size_t)ndim);
    if (!t || !d)
        return name;
    onnx__tensor_proto__init(t);
    memcpy(d, dims, sizeof *d * (size_t)ndim);
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)dims[i];
    t->name = (char *)name;
    t->n_dims = (size_t)ndim, t->dims = d;
    t->has_data_type = true, t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->n_float_data = n, t->float_data = (float *)data;
    if (!push((void ***)&g->inits, &g->ninits, &g->cap_inits, t))
        g->oom = true;
    return name;
}

/* An int64 initializer `name` holding v[0..n) (copied), a 1-D shape. */
static const char *init_shape(struct graph *g, const char *name, int n, const int64_t *v)
{
    Onnx__TensorProto *t = alloc(g, sizeof *t);
    int64_t *dims = alloc(g, sizeof *dims), *data = alloc(g, sizeof *data * (size_t)n);
    if (!t || !dims || !data)
        return name;
    onnx__tensor_proto__init(t);
    dims[0] = n;
    memcpy(data, v, sizeof *data * (size_t)n);
    t->name = (char *)name;
    t->n_dims = 1, t->dims = dims;
    t->has_data_type = true, t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    t->n_int64_data = (size_t)n, t->int64_data = data;
    if (!push((void ***)&g->inits, &g->ninits, &g->cap_inits, t))
        g->oom = true;
    return name;
}

/* The model's tensor `name`, NULL when it has none. */
static const struct sila_tensor *tensor_named(const struct graph *g, const char *name)
{
    const struct sila_net *net = g->m->net;
    for (int i = 0; i < sila_net_tensor_count(net); i++)
        if (strcmp(sila_net_tensor(net, i)->name, name) == 0)
            return sila_net_tensor(net, i);
    return NULL;
}

/* The model's tensor `name` as an initializer of the same name and shape;
 * NULL when the model has none, which a `required` one it must have (a
 * loaded model always does: its tensors are named after its layers). */
static const char *param(struct graph *g, const char *name, bool required)
{
    const struct sila_tensor *t = tensor_named(g, name);
    if (!t && required && !g->missing)
        g->missing = name;
    if (!t)
        return required ? "" : NULL;
    int64_t dims[4];
    for (int d = 0; d < t->ndim; d++)
        dims[d] = t->shape[d];
    const float *block = sila_tensor_is_buffer(t) ? g->m->buffers : g->m->params;
    return init_floats(g, t->name, t->ndim, dims, block + t->offset);
}

/* ---- values and their rank ---------------------------------------------- */

/* A node of one input and the value it makes, "<prefix>.<what>". */
static Onnx__NodeProto *unary(struct graph *g, struct flow *f, const char *op, const char *prefix,
                              const char *what)
{
    const char *in = f->name;
    f->name = text(g, "%s.%s", prefix, what);
    return node(g, op, f->name, 1, &in);
}

/* f as (N, C·H·W). */
static void to_2d(struct graph *g, struct flow *f, const char *prefix)
{
    if (f->rank == 2)
        return;
    const char *in = f->name;
    f->name = text(g, "%s.flat", prefix);
    attr_int(g, node(g, "Flatten", f->name, 1, &in), "axis", 1);
    f->rank = 2;
}

/* Reshapes f to (N, dims...) with a shape initializer "<prefix>.<what>". */
static void reshape(struct graph *g, struct flow *f, const char *prefix, const char *what, int n,
                    const int64_t *dims)
{
    int64_t shape[4] = {0}; /* 0: the batch dimension, as it is */
    memcpy(shape + 1, dims, sizeof *dims * (size_t)n);
    const char *in[2] = {f->name,
                         init_shape(g, text(g, "%s.%s_shape", prefix, what), n + 1, shape)};
    f->name = text(g, "%s.%s", prefix, what);
    node(g, "Reshape", f->name, 2, in);
}

/* f as (N, C, H, W). */
static void to_4d(struct graph *g, struct flow *f, const char *prefix)
{
    if (f->rank == 4)
        return;
    reshape(g, f, prefix, "image", 3, (const int64_t[]){f->shape.c, f->shape.h, f->shape.w});
    f->rank = 4;
}

/* ---- layers -------------------------------------------------------------- */

/* Convolution "<prefix>" of f with its weight (and bias when it has one):
 * k x k, stride, pad on every side. */
static void conv(struct graph *g, struct flow *f, const char *prefix, int k, int stride, int pad)
{
    const char *in[3] = {f->name, param(g, text(g, "%s.weight", prefix), true),
                         param(g, text(g, "%s.bias", prefix), false)};
    f->name = text(g, "%s.out", prefix);
    Onnx__NodeProto *n = node(g, "Conv", f->name, in[2] ? 3 : 2, in);
    attr_ints(g, n, "kernel_shape", 2, k);
    attr_ints(g, n, "strides", 2, stride);
    attr_ints(g, n, "pads", 4, pad);
}

/* Batch norm "<prefix>" of f with its running statistics. */
static void batchnorm(struct graph *g, struct flow *f, const char *prefix, float eps)
{
    const char *in[5] = {f->name, param(g, text(g, "%s.weight", prefix), true),
                         param(g, text(g, "%s.bias", prefix), true),
                         param(g, text(g, "%s.running_mean", prefix), true),
                         param(g, text(g, "%s.running_var", prefix), true)};
    f->name = text(g, "%s.out", prefix);
    attr_float(g, node(g, "BatchNormalization", f->name, 5, in), "epsilon", eps);
}

/* Max or average pooling (floor; an average divides by k·k, padding
 * included, as sila's kernel does). */
static void pool(struct graph *g, struct flow *f, const char *prefix,
                 const struct sila_layer_spec *s)
{
    bool avg = s->kind == SILA_LAYER_AVGPOOL;
    Onnx__NodeProto *n = unary(g, f, avg ? "AveragePool" : "MaxPool", prefix, "out");
    attr_ints(g, n, "kernel_shape", 2, s->kernel);
    attr_ints(g, n, "strides", 2, s->stride);
    attr_ints(g, n, "pads", 4, s->pad);
    if (avg)
        attr_int(g, n, "count_include_pad", 1);
}

/* Linear layer "<prefix>": y = x W^T + b on (N, in). */
static void linear(struct graph *g, struct flow *f, const char *prefix)
{
    to_2d(g, f, prefix);
    const char *in[3] = {f->name, param(g, text(g, "%s.weight", prefix), true),
                         param(g, text(g, "%s.bias", prefix), false)};
    f->name = text(g, "%s.out", prefix);
    attr_int(g, node(g, "Gemm", f->name, in[2] ? 3 : 2, in), "transB", 1);
}

/* Residual block "<prefix>": conv3x3(stride) bn relu conv3x3 bn, plus the
 * input or its projection (conv1x1(stride) bn, when the model has one),
 * then relu. Drop-path is the identity in inference. */
static void block(struct graph *g, struct flow *f, const char *prefix,
                  const struct sila_layer_spec *s)
{
    struct flow main = *f, sc = *f;
    const char *p = prefix;
    conv(g, &main, text(g, "%s.conv1", p), 3, s->stride, 1);
    batchnorm(g, &main, text(g, "%s.bn1", p), s->bn_eps);
    unary(g, &main, "Relu", p, "relu1");
    conv(g, &main, text(g, "%s.conv2", p), 3, 1, 1);
    batchnorm(g, &main, text(g, "%s.bn2", p), s->bn_eps);
    if (tensor_named(g, text(g, "%s.shortcut.0.weight", p))) {
        conv(g, &sc, text(g, "%s.shortcut.0", p), 1, s->stride, 0);
        batchnorm(g, &sc, text(g, "%s.shortcut.1", p), s->bn_eps);
    }
    f->name = text(g, "%s.sum", p);
    node(g, "Add", f->name, 2, (const char *[]){main.name, sc.name});
    unary(g, f, "Relu", p, "out");
}

typedef void plane_map_fn(float *out, const float *in, int B, int C, int H, int W, int OH, int OW);

/* A per-plane linear map (adaptive average pool, bilinear upsampling) from
 * (H, W) to (OH, OW), as f's planes times the (H·W, OH·OW) matrix whose
 * row j is what sila's kernel makes of the one-hot plane j. Errors:
 * -EINVAL when the matrix would exceed MAX_MAP_FLOATS. */
static int plane_map(struct graph *g, struct flow *f, const char *prefix, struct sila_shape out,
                     plane_map_fn *kernel, struct sila_err *err)
{
    struct sila_shape in = f->shape;
    size_t hw = (size_t)in.h * in.w, ohw = (size_t)out.h * out.w;
    if (hw * (hw + ohw) > MAX_MAP_FLOATS)
        return sila_err_set(err, -EINVAL,
                            "layer %s: resizing %dx%d to %dx%d takes a matrix of %zux%zu, larger "
                            "than the export makes (%u values with its one-hot input)",
                            prefix, in.h, in.w, out.h, out.w, hw, ohw, MAX_MAP_FLOATS);
    float *onehot = alloc(g, sizeof *onehot * hw * hw),
          *matrix = alloc(g, sizeof *matrix * hw * ohw);
    if (!onehot || !matrix)
        return -ENOMEM;
    for (size_t j = 0; j < hw; j++)
        onehot[j * hw + j] = 1.0f;
    kernel(matrix, onehot, 1, (int)hw, in.h, in.w, out.h, out.w);
    reshape(g, f, prefix, "planes", 2, (const int64_t[]){in.c, (int64_t)hw});
    const char *mm[2] = {f->name,
                         init_floats(g, text(g, "%s.matrix", prefix), 2,
                                     (const int64_t[]){(int64_t)hw, (int64_t)ohw}, matrix)};
    f->name = text(g, "%s.mapped", prefix);
    node(g, "MatMul", f->name, 2, mm);
    reshape(g, f, prefix, "out", 3, (const int64_t[]){out.c, out.h, out.w});
    return 0;
}

/* Whether a kind's operators take a value of either rank. */
static bool any_rank(enum sila_layer_kind kind)
{
    return kind == SILA_LAYER_LINEAR || kind == SILA_LAYER_FLATTEN || kind == SILA_LAYER_RELU ||
           kind == SILA_LAYER_DROPOUT || kind == SILA_LAYER_DROPPATH;
}

/* Layer l's nodes after f; f becomes its output. */
static int layer(struct graph *g, struct flow *f, int l, struct sila_err *err)
{
    const struct sila_layer_spec *s = sila_net_layer_spec(g->m->net, l);
    struct sila_shape out = sila_net_layer_out_shape(g->m->net, l);
    const char *p = text(g, "%d", l);
    int r = 0;
    if (!any_rank(s->kind))
        to_4d(g, f, p);
    switch (s->kind) {
    case SILA_LAYER_LINEAR:
        linear(g, f, p);
        break;
    case SILA_LAYER_CONV2D:
        conv(g, f, p, s->kernel, s->stride, s->pad);
        break;
    case SILA_LAYER_BATCHNORM:
        batchnorm(g, f, p, s->bn_eps);
        break;
    case SILA_LAYER_RELU:
        unary(g, f, "Relu", p, "out");
        break;
    case SILA_LAYER_MAXPOOL:
    case SILA_LAYER_AVGPOOL:
        pool(g, f, p, s);
        break;
    case SILA_LAYER_GAP:
        unary(g, f, "GlobalAveragePool", p, "out");
        break;
    case SILA_LAYER_FLATTEN:
        to_2d(g, f, p);
        break;
    case SILA_LAYER_BLOCK:
        block(g, f, p, s);
        break;
    case SILA_LAYER_DROPOUT:
    case SILA_LAYER_DROPPATH:
        break; /* the identity in inference */
    case SILA_LAYER_ADAPTIVE_AVGPOOL:
        r = plane_map(g, f, p, out, sila_adapool_forward, err);
        break;
    case SILA_LAYER_UPSAMPLE:
        r = plane_map(g, f, p, out, sila_upsample_forward, err);
        break;
    }
    f->shape = out;
    return r;
}

/* ---- the model ----------------------------------------------------------- */

/* A float32 tensor type (N, dims...) with N named "N". */
static Onnx__ValueInfoProto *value_info(struct graph *g, const char *name, int n,
                                        const int64_t *dims)
{
    Onnx__ValueInfoProto *v = alloc(g, sizeof *v);
    Onnx__TypeProto *type = alloc(g, sizeof *type);
    Onnx__TypeProto__Tensor *tensor = alloc(g, sizeof *tensor);
    Onnx__TensorShapeProto *shape = alloc(g, sizeof *shape);
    Onnx__TensorShapeProto__Dimension *dim = alloc(g, sizeof *dim * (size_t)(n + 1));
    Onnx__TensorShapeProto__Dimension **dimp = alloc(g, sizeof *dimp * (size_t)(n + 1));
    if (!v || !type || !tensor || !shape || !dim || !dimp)
        return NULL;
    for (int i = 0; i <= n; i++) {
        onnx__tensor_shape_proto__dimension__init(&dim[i]);
        if (i == 0)
            dim[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM,
            dim[i].dim_param = "N";
        else
            dim[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE,
            dim[i].dim_value = dims[i - 1];
        dimp[i] = &dim[i];
    }
    onnx__tensor_shape_proto__init(shape);
    shape->n_dim = (size_t)n + 1, shape->dim = dimp;
    onnx__type_proto__tensor__init(tensor);
    tensor->has_elem_type = true, tensor->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tensor->shape = shape;
    onnx__type_proto__init(type);
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, type->tensor_type = tensor;
    onnx__value_info_proto__init(v);
    v->name = (char *)name, v->type = type;
    return v;
}

/* "pixels" -> Sub mean -> Div std, per channel from the input record. */
static void normalise(struct graph *g, struct flow *f)
{
    const struct sila_model_input *r = &g->m->input;
    const int64_t dims[4] = {1, r->channels, 1, 1};
    const char *sub[2] = {"pixels", init_floats(g, "input.mean", 4, dims, r->mean)};
    node(g, "Sub", "input.centred", 2, sub);
    const char *div[2] = {"input.centred", init_floats(g, "input.std", 4, dims, r->std)};
    node(g, "Div", "input", 2, div);
    f->name = "input";
}

/* What a reader of the file may want besides the graph. */
static void metadata(struct graph *g, Onnx__ModelProto *model)
{
    const struct sila_model_input *r = &g->m->input;
    size_t len = 1;
    for (int c = 0; c < r->nnames; c++)
        len += strlen(r->names[c]) + 1;
    char *names = alloc(g, len);
    Onnx__StringStringEntryProto *e = alloc(g, sizeof *e * 2), **ep = alloc(g, sizeof *ep * 2);
    if (!names || !e || !ep)
        return;
    char *end = names;
    for (int c = 0; c < r->nnames; c++)
        end = stpcpy(stpcpy(end, c ? "\n" : ""), r->names[c]);
    for (int i = 0; i < 2; i++) {
        onnx__string_string_entry_proto__init(&e[i]);
        ep[i] = &e[i];
    }
    e[0].key = "dataset_kind", e[0].value = (char *)r->dataset_kind;
    e[1].key = "class_names", e[1].value = names;
    model->n_metadata_props = 2, model->metadata_props = ep;
}

/* The graph of m: normalisation, every layer, a flatten if the last
 * output is 4-D, the last value renamed "logits". */
static int build(struct graph *g, Onnx__GraphProto *graph, struct sila_err *err)
{
    const struct sila_net *net = g->m->net;
    struct sila_shape in = sila_net_in_shape(net);
    struct flow f = {.shape = in, .rank = 4};
    normalise(g, &f);
    int r = 0;
    for (int l = 0; r == 0 && l < sila_net_layer_count(net); l++)
        r = layer(g, &f, l, err);
    if (r)
        return r;
    to_2d(g, &f, "output");
    if (g->oom)
        return -ENOMEM;
    if (g->missing)
        return sila_err_set(err, -EINVAL, "the model has no tensor %s", g->missing);
    Onnx__NodeProto *last = g->nodes[g->nnodes - 1]; /* makes f: layers end with their maker */
    last->output[0] = "logits";
    onnx__graph_proto__init(graph);
    graph->name = g->m->info.job[0] ? (char *)g->m->info.job : "sila";
    graph->n_node = g->nnodes, graph->node = g->nodes;
    graph->n_initializer = g->ninits, graph->initializer = g->inits;
    Onnx__ValueInfoProto **io = alloc(g, sizeof *io * 2);
    if (!io)
        return -ENOMEM;
    io[0] = value_info(g, "pixels", 3, (const int64_t[]){in.c, in.h, in.w});
    io[1] = value_info(g, "logits", 1, (const int64_t[]){g->m->num_classes});
    graph->n_input = 1, graph->input = &io[0];
    graph->n_output = 1, graph->output = &io[1];
    return g->oom ? -ENOMEM : 0;
}

int sila_onnx_export(const struct sila_model *m, const char *path, const char *version,
                     struct sila_err *err)
{
    struct graph g = {.m = m};
    Onnx__GraphProto graph;
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsets = &opset;
    uint8_t *buf = NULL;
    int r = build(&g, &graph, err);
    if (r)
        goto out;
    opset.domain = "";
    opset.has_version = true, opset.version = SILA_ONNX_OPSET;
    model.has_ir_version = true, model.ir_version = IR_VERSION;
    model.n_opset_import = 1, model.opset_import = &opsets;
    model.producer_name = "sila";
    model.producer_version = (char *)version;
    model.graph = &graph;
    metadata(&g, &model);
    size_t len = onnx__model_proto__get_packed_size(&model);
    if (g.oom || !(buf = malloc(len + 1))) {
        r = -ENOMEM;
        goto out;
    }
    onnx__model_proto__pack(&model, buf);
    r = sila_write_atomic(path, buf, len, err);
out:
    if (r == -ENOMEM) {
        sila_err_set(err, r, "%s: out of memory while building the ONNX graph", path);
    } else if (r == -EINVAL) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        sila_err_set(err, r, "%s: cannot export: %s", path, why);
    }
    free(buf);
    graph_fini(&g);
    return r;
}
