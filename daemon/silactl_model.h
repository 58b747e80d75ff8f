/* silactl's offline commands on model files: eval, inspect and export. */
#ifndef SILA_SILACTL_MODEL_H
#define SILA_SILACTL_MODEL_H

/* `silactl eval MODEL [--data KIND:DIR] [--json] [--batch N]`; argv starts
 * after "eval". Returns the process exit status. */
int silactl_eval(int argc, char **argv);

/* `silactl inspect MODEL [--json]`. Returns the process exit status. */
int silactl_inspect(int argc, char **argv);

/* `silactl export MODEL --onnx OUT.onnx`: the model as an ONNX graph
 * (common/io/onnx.h). Returns the process exit status. */
int silactl_export(int argc, char **argv);

#endif
