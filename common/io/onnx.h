/* ONNX export: a loaded model's network as a standard ONNX graph (opset
 * 13), for ONNX Runtime and other frameworks (docs/model-format.md).
 *
 * The graph takes "pixels", float32 (N, C, H, W) with N free: raw pixels
 * divided by 255. Its first nodes subtract the record's mean and divide by
 * its std per channel; its output "logits" is float32 (N, classes). Every
 * layer kind maps to standard operators with sila's semantics: batch norm
 * to BatchNormalization (not folded), dropout and drop-path to nothing
 * (inference), adaptive average pooling and upsampling to a MatMul with
 * the matrix sila's own kernel computes on one-hot planes. */
#ifndef SILA_ONNX_H
#define SILA_ONNX_H

#include "err.h"
#include "modelfile.h"

#define SILA_ONNX_OPSET 13

/* Writes m's network to path as an ONNX model, atomically (temporary name,
 * fsync, rename); `version` is the exporter's, recorded as the producer's.
 * Errors: -EINVAL (a resizing layer too large to express as a matrix, or
 * a tensor the layers need missing; err names it), -ENOMEM, or the file's
 * (err names the path). */
int sila_onnx_export(const struct sila_model *m, const char *path, const char *version,
                     struct sila_err *err);

#endif
