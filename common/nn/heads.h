/* The layers of the train-only nets around a module, as layer specs: its
 * auxiliary head (one kind per `aux` of the job's objective keys,
 * docs/methods.md) and InfoPro's reconstruction decoder. module_build.c builds
 * them; nothing of them reaches the saved model. */
#ifndef SILA_HEADS_H
#define SILA_HEADS_H

#include "job.h"
#include "net.h"

/* Head layer specs of the aux head that module k (< K - 1) of job names in
 * its objective (kind and sizes; auglocal's from the layers after it) on
 * the module's output shape `in`; writes at most SILA_AUX_MAX_SPECS specs
 * into specs and their count into *ret_n. Returns -EINVAL when the kind
 * cannot consume the shape (or auglocal finds no layer to copy). */
#define SILA_AUX_MAX_SPECS (4 + 6 * SILA_AUX_MAX_LAYERS)
int sila_aux_head_specs(const struct sila_job *job, int k, struct sila_shape in,
                        struct sila_layer_spec *specs, int *ret_n);

/* InfoPro's decoder (sila's reading of its code), into specs: upsampling
 * (bilinear) to the job's input size, conv3x3 to `width` + BN + ReLU,
 * conv3x3 to the input's channels, one logit per input pixel. Returns
 * -EINVAL when the input is not square. */
#define SILA_DECODER_SPECS 5
int sila_decoder_specs(const struct sila_job *job, int width, struct sila_layer_spec *specs);

/* MAN's unit of module k (< K - 1, docs/methods.md): the layers of module
 * k + 1 from its first through its first with filters (a block or a
 * conv2d) and a batchnorm and a relu right after that one, into specs (at
 * most SILA_MAN_MAX_SPECS, drop-path off) and their count into *ret_n: what
 * module k copies twice (a trainable copy and a frozen average) in front of
 * its head, and module k + 1 sends snapshots of. Returns -EINVAL when
 * module k + 1 has no layer with filters among its first
 * SILA_MAN_MAX_SPECS - 2. */
#define SILA_MAN_MAX_SPECS 8
int sila_man_unit_specs(const struct sila_job *job, int k, struct sila_layer_spec *specs,
                        int *ret_n);

#endif
