#!/usr/bin/python3
"""PyTorch reference implementation of a sila job.

Trains the same job as `silad --job FILE --inproc` (same job file, same
overrides, same network, aux heads, optimizers, schedule, data order and
augmentation draws, and by default the same initial weights), so that
accuracy and speed can be compared side by side. See README.md next to this
file for what matches sila exactly and where it knowingly differs.

Needs Debian's python3-torch (tested with torch 1.13) and numpy only.
"""
import argparse
import gzip
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# sila's random number generator (common/nn/rng.c): xoshiro256** seeded through
# splitmix64, Lemire's unbiased `below`. Pure Python integers.

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
EPOCH_STREAM = 0x5EED0000  # common/io/dataset.c
AUG_STREAM = 1             # daemon/train.c: sila_rng_seed(&aug_rng, seed, 1)
INIT_STREAM = 1000         # common/nn/module.c: sila_rng_seed(&init, seed, 1000 + k)


class SilaRng:
    __slots__ = ("s",)

    def __init__(self, seed, stream):
        x = (seed ^ (stream * 0xD1342543DE82EF95)) & M64
        s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            s.append(z ^ (z >> 31))
        self.s = s

    def u64(self):
        s0, s1, s2, s3 = self.s
        r = ((s1 * 5) & M64)
        r = (((r << 7) | (r >> 57)) & M64) * 9 & M64
        t = (s1 << 17) & M64
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = ((s3 << 45) | (s3 >> 19)) & M64
        self.s = [s0, s1, s2, s3]
        return r

    def below(self, n):
        m = (self.u64() >> 32) * n
        low = m & M32
        if low < n:
            threshold = ((1 << 32) - n) % n
            while low < threshold:
                m = (self.u64() >> 32) * n
                low = m & M32
        return m >> 32

    def shuffle(self, perm):
        """Fisher-Yates as sila_rng_shuffle, inlined for speed."""
        s0, s1, s2, s3 = self.s
        for i in range(len(perm), 1, -1):
            threshold = -1
            while True:
                r = (s1 * 5) & M64
                r = (((r << 7) | (r >> 57)) & M64) * 9 & M64
                t = (s1 << 17) & M64
                s2 ^= s0
                s3 ^= s1
                s1 ^= s2
                s0 ^= s3
                s2 ^= t
                s3 = ((s3 << 45) | (s3 >> 19)) & M64
                m = (r >> 32) * i
                low = m & M32
                if low >= i:
                    break
                if threshold < 0:
                    threshold = ((1 << 32) - i) % i
                if low >= threshold:
                    break
            j = m >> 32
            perm[i - 1], perm[j] = perm[j], perm[i - 1]
        self.s = [s0, s1, s2, s3]

    def top24(self, n):
        """n draws of (u64 >> 40), the integer behind sila_rng_uniform."""
        s0, s1, s2, s3 = self.s
        out = [0] * n
        for k in range(n):
            r = (s1 * 5) & M64
            out[k] = ((((r << 7) | (r >> 57)) & M64) * 9 & M64) >> 40
            t = (s1 << 17) & M64
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = ((s3 << 45) | (s3 >> 19)) & M64
        self.s = [s0, s1, s2, s3]
        return out


def epoch_order(n, seed, epoch):
    """sila_dataset_epoch_order(perm, n, seed, epoch)."""
    perm = list(range(n))
    SilaRng(seed, EPOCH_STREAM + epoch).shuffle(perm)
    return perm


# ---------------------------------------------------------------------------
# Job files (common/io/job_*.c, docs/jobs.md): a small INI reader that keeps
# repeated sections in order, libinih's syntax rules, sila's key tables.

class JobError(Exception):
    pass


INF = math.inf


def _f32(x):
    return float(np.float32(x))


def p_int(v):
    try:
        if v.strip() != v or not v or not (v.lstrip("+-").isdigit()):
            raise ValueError
        x = int(v, 10)
    except ValueError:
        raise JobError("'%s' is not an integer" % v)
    if not -2**31 <= x < 2**31:
        raise JobError("'%s' is out of range" % v)
    return x


def p_uint(bits):
    def parse(v):
        if not v or "-" in v or not v.lstrip("+").isdigit():
            raise JobError("'%s' is not a non-negative integer" % v)
        x = int(v, 10)
        if x >= 1 << bits:
            raise JobError("'%s' is out of range" % v)
        return x
    return parse


def p_float(v):
    try:
        x = float(v)
    except ValueError:
        raise JobError("'%s' is not a number" % v)
    if not math.isfinite(x) or abs(x) > float(np.finfo(np.float32).max):
        raise JobError("'%s' is not a finite number" % v)
    return _f32(x)


def p_bool(v):
    low = v.lower()
    if low in ("true", "yes", "on", "1"):
        return True
    if low in ("false", "no", "off", "0"):
        return False
    raise JobError("'%s' is not a boolean (true/false, yes/no, on/off, 1/0)" % v)


def p_enum(*names):
    def parse(v):
        if v not in names:
            raise JobError("'%s' is not one of %s" % (v, ", ".join(names)))
        return v
    return parse


def p_str(maxlen, ident=False):
    def parse(v):
        if len(v) > maxlen:
            raise JobError("'%s' is too long (at most %d characters)" % (v, maxlen))
        if ident and not (v[0].isalnum() and all(c.isalnum() or c in "._-" for c in v)):
            raise JobError("'%s' is not a plain name" % v)
        return v
    return parse


# key: (parser, default, lo, hi, lo_open, hi_open, required)
def K(parse, default=None, lo=None, hi=None, lo_open=False, hi_open=False, required=False):
    return (parse, default, lo, hi, lo_open, hi_open, required)


JOB_KEYS = {
    "name": K(p_str(63, True), required=True),
    "dataset": K(p_enum("mnist", "fmnist", "cifar10", "cifar100"), required=True),
    "data_dir": K(p_str(255)),
    "epochs": K(p_int, None, 1, INF, required=True),
    "batch": K(p_int, None, 1, 65536, required=True),
    "seed": K(p_uint(64), 1),
    "algorithm": K(p_enum("e2e", "local", "pgl"), required=True),
    "period": K(p_int, 10, 1, INF),
    "global_steps": K(p_int, 1, 1, INF),
    "local_weight": K(p_float, 0.0, 0, INF),
    "global_state": K(p_enum("shared", "separate"), "shared"),
    "global_ramp": K(p_bool, False),
    "global_epoch_end": K(p_int, 0, 0, INF),
    "heads_in_global": K(p_bool, False),
    "local_weight_decay": K(p_bool, False),
    "eval_every": K(p_int, 1, 1, INF),
    "evals_per_epoch": K(p_int, 1, 1, 1000),
    "train_limit": K(p_uint(32), 0),
    "test_limit": K(p_uint(32), 0),
    "augment_crop": K(p_int, 0, 0, 16),
    "augment_flip": K(p_bool, False),
    "label_smoothing": K(p_float, 0.0, 0, 1, hi_open=True),
}
OPTIM_KEYS = {
    "kind": K(p_enum("sgd", "adamw"), "sgd"),
    "lr": K(p_float, None, 0, INF, lo_open=True, required=True),
    "momentum": K(p_float, 0.0, 0, 1, hi_open=True),
    "nesterov": K(p_bool, False),
    "weight_decay": K(p_float, 0.0, 0, INF),
    "beta1": K(p_float, _f32(0.9), 0, 1, hi_open=True),
    "beta2": K(p_float, _f32(0.999), 0, 1, hi_open=True),
    "eps": K(p_float, _f32(1e-8), 0, INF, lo_open=True),
}
SCHED_KEYS = {
    "kind": K(p_enum("constant", "step", "cosine"), "constant"),
    "min_lr": K(p_float, 0.0, 0, INF),
    "warmup_epochs": K(p_float, 0.0, 0, INF),
    "step_epochs": K(p_float, 0.0, 0, INF, lo_open=True),
    "gamma": K(p_float, _f32(0.1), 0, 1, lo_open=True),
}
AUX_KEYS = {
    "aux": K(p_enum("linear", "conv", "mlp", "dgl", "infopro", "auglocal"), "linear"),
    "aux_hidden": K(p_int, 256, 1, 65536),
    "aux_grid": K(p_int, 8, 1, 64),
    "aux_convs": K(p_int, 2, 0, 4),
    "aux_mlp": K(p_int, 2, 0, 4),
    "aux_depth": K(p_int, 3, 1, 8),
    "aux_pyramid": K(p_float, _f32(0.5), 0, 1),
    "recon_first": K(p_float, 0.0, 0, INF),
    "recon_last": K(p_float, 0.0, 0, INF),
    "task_first": K(p_float, 1.0, 0, INF),
    "task_last": K(p_float, 1.0, 0, INF),
    "recon_width": K(p_int, 12, 1, 4096),
    "man_momentum": K(p_float, 0.0, 0, 1, hi_open=True),
    "man_period": K(p_int, 10, 1, 100000),
}
# [objective] and [module]: the aux head's keys and InfoPro's weights, and
# the plain local objective otherwise (this reference trains ce).
OBJECTIVE_KEYS = {"kind": K(p_enum("ce"), "ce"), **AUX_KEYS}
MODULE_KEYS = {"objective": K(p_enum("ce"), "ce"), **AUX_KEYS}
LAYER_KEYS = {
    "out": K(p_int, None, 1, 65536),
    "kernel": K(p_int, None, 1, 64),
    "stride": K(p_int, 1, 1, 64),
    "pad": K(p_int, 0, 0, 64),
    "bias": K(p_bool, True),
    "p": K(p_float, 0.0, 0, 1, hi_open=True),
    "momentum": K(p_float, _f32(0.1), 0, 1),
    "eps": K(p_float, _f32(1e-5), 0, INF, lo_open=True),
}
LAYER_KINDS = {
    "linear": ("out", "bias"),
    "conv2d": ("out", "kernel", "stride", "pad", "bias"),
    "batchnorm": ("momentum", "eps"),
    "relu": (),
    "maxpool": ("kernel", "stride", "pad"),
    "avgpool": ("kernel", "stride", "pad"),
    "gap": (),
    "flatten": (),
    "block": ("out", "stride", "p", "momentum", "eps"),
    "dropout": ("p",),
    "droppath": ("p",),
    "adaptive_avgpool": ("out",),
    "upsample": ("out",),
}
UNIQUE = {"job": JOB_KEYS, "optimizer": OPTIM_KEYS, "schedule": SCHED_KEYS,
          "objective": OBJECTIVE_KEYS}


def range_check(keys, name, x):
    _, _, lo, hi, lo_open, hi_open, _ = keys[name]
    if lo is None or isinstance(x, (bool, str)):
        return None
    ok = (x > lo if lo_open else x >= lo) and (x < hi if hi_open else x <= hi)
    if ok:
        return None
    lo_s = "%s%g" % ("(" if lo_open else "[", lo)
    hi_s = "inf)" if hi == INF else "%g%s" % (hi, ")" if hi_open else "]")
    return "%g is out of range (must be in %s, %s)" % (x, lo_s, hi_s)


def layer_default(kind):
    """sila_layer_spec_default."""
    s = {"kind": kind, "out": 0, "kernel": 0, "stride": 1, "pad": 0,
         "bias": kind in ("linear", "conv2d"), "p": 0.0,
         "momentum": _f32(0.1), "eps": _f32(1e-5)}
    if kind in ("maxpool", "avgpool"):
        s["kernel"] = s["stride"] = 2
    if kind == "conv2d":
        s["kernel"] = 3
    return s


def _strip_inline_comment(s):
    """libinih: ';' preceded by whitespace starts a comment."""
    for i in range(1, len(s)):
        if s[i] == ";" and s[i - 1].isspace():
            return s[:i]
    return s


def load_job(path, overrides=()):
    """Parses and validates a job file like sila_job_load; returns a dict."""
    job = {k: v[1] for k, v in JOB_KEYS.items()}
    optim = {k: v[1] for k, v in OPTIM_KEYS.items()}
    sched = {k: v[1] for k, v in SCHED_KEYS.items()}
    objective = {k: v[1] for k, v in OBJECTIVE_KEYS.items()}
    unique = {"job": job, "optimizer": optim, "schedule": sched, "objective": objective}
    seen_unique, is_set = {}, set()
    modules, layers = [], []
    cur, cur_name, cur_keys, cur_set, cur_line = None, None, None, set(), 0

    def err(line, sec, key, msg):
        where = "%s:%d" % (path, line)
        head = ("[%s] %s: " % (sec, key)) if sec and key else ("[%s]: " % sec if sec else "")
        return JobError("%s: %s%s" % (where, head, msg))

    def close(line):
        if cur_name in LAYER_KINDS:
            if cur_name in ("maxpool", "avgpool") and "stride" not in cur_set:
                cur["stride"] = cur["kernel"]
            if "out" in LAYER_KINDS[cur_name] and "out" not in cur_set:
                raise err(cur_line, cur_name, "out", "missing (required)")

    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    for num, raw in enumerate(raw_lines, 1):
        if num == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        line = raw.decode("utf-8").rstrip("\r\n")
        if len(line) > 197:
            raise err(num, cur_name, None, "line is too long (%d characters)" % len(line))
        s = line.strip()
        if not s or s[0] in ";#":
            continue
        if s[0] == "[":
            close(num)
            end = s.find("]")
            rest = s[end + 1:].strip() if end >= 0 else ""
            if end < 0 or (rest and rest[0] not in ";#"):
                raise err(num, None, None, "malformed section header '%s'" % s)
            name = s[1:end]
            cur_set, cur_line, cur_name = set(), num, name
            if name in UNIQUE:
                if name in seen_unique:
                    raise err(num, name, None, "duplicate section (first at line %d)"
                              % seen_unique[name])
                seen_unique[name] = num
                cur, cur_keys = unique[name], UNIQUE[name]
            elif name == "module":
                cur = {"layers": [], "line": num, "set": cur_set}
                modules.append(cur)
                cur_keys = MODULE_KEYS
            elif name in LAYER_KINDS:
                if not modules:
                    raise err(num, name, None, "layer before the first [module]: every layer "
                              "belongs to a module")
                cur = layer_default(name)
                cur["line"] = num
                modules[-1]["layers"].append(cur)
                layers.append(cur)
                cur_keys = {k: LAYER_KEYS[k] for k in LAYER_KINDS[name]}
            else:
                raise err(num, name, None, "unknown section")
            continue
        seps = [i for i in (s.find("="), s.find(":")) if i >= 0]
        body = _strip_inline_comment(s)
        if not seps or min(seps) >= len(body):
            raise err(num, cur_name, None, "expected 'key = value' or '[section]', got '%s'" % s)
        i = min(seps)
        key, value = body[:i].strip(), body[i + 1:].strip()
        if cur is None:
            raise err(num, None, key, "key outside any section")
        if key not in cur_keys:
            raise err(num, cur_name, key, "unknown key (%s takes %s)"
                      % (cur_name, ", ".join(cur_keys) or "no keys"))
        if key in cur_set:
            raise err(num, cur_name, key, "duplicate key")
        cur_set.add(key)
        if not value:
            raise err(num, cur_name, key, "'' is empty")
        try:
            cur[key] = cur_keys[key][0](value)
        except JobError as e:
            raise err(num, cur_name, key, str(e))
        if cur_name in UNIQUE:
            is_set.add((cur_name, key))
        else:
            why = range_check(cur_keys, key, cur[key])
            if why:
                raise err(num, cur_name, key, why)
    close(len(raw_lines))

    for text in overrides:
        eq, dot = text.find("="), text.find(".")
        if eq < 0 or dot < 0 or dot > eq:
            raise JobError("override '%s': expected section.key=value" % text)
        sec, key, value = text[:dot].strip(), text[dot + 1:eq].strip(), text[eq + 1:].strip()
        if sec not in UNIQUE:
            raise JobError("override '%s': unknown section '%s' (overrides apply to job, "
                           "optimizer, schedule and objective)" % (text, sec))
        if key not in UNIQUE[sec]:
            raise JobError("override '%s': [%s] %s: unknown key" % (text, sec, key))
        if not value:
            raise JobError("override '%s': [%s] %s: '' is empty" % (text, sec, key))
        try:
            unique[sec][key] = UNIQUE[sec][key][0](value)
        except JobError as e:
            raise JobError("override '%s': [%s] %s: %s" % (text, sec, key, e))
        is_set.add((sec, key))

    # whole-job checks (check_present, check_ranges, check_dataset, check_rules)
    for sec in ("job", "optimizer"):
        if sec not in seen_unique:
            raise JobError("%s:1: [%s]: missing section" % (path, sec))
    for sec, keys in UNIQUE.items():
        for key, spec in keys.items():
            if spec[6] and (sec, key) not in is_set:
                raise JobError("%s: [%s] %s: missing (required)" % (path, sec, key))
            if (sec, key) in is_set:
                why = range_check(keys, key, unique[sec][key])
                if why:
                    raise JobError("%s: [%s] %s: %s" % (path, sec, key, why))
    ds = job["dataset"]
    idx = ds in ("mnist", "fmnist")
    job["input"] = (1, 28, 28) if idx else (3, 32, 32)
    job["nclasses"] = 100 if ds == "cifar100" else 10
    if job["data_dir"] is None:
        if not idx:
            raise JobError("%s: [job] data_dir: missing (required for %s)" % (path, ds))
        job["data_dir"] = ("/usr/share/datasets/mnist" if ds == "mnist"
                           else "/usr/share/datasets/fashion-mnist")
    if job["global_steps"] > job["period"]:
        raise JobError("%s: [job] global_steps: %d exceeds period %d"
                       % (path, job["global_steps"], job["period"]))
    for key, plain in (("global_state", "shared"), ("heads_in_global", False)):
        if job[key] != plain:
            raise JobError("%s: [job] %s: this reference trains only %s = %s"
                           % (path, key, key, str(plain).lower()))
    if optim["nesterov"] and (optim["kind"] != "sgd" or optim["momentum"] <= 0):
        raise JobError("%s: [optimizer] nesterov: needs kind = sgd and momentum > 0" % path)
    if sched["kind"] == "step" and ("schedule", "step_epochs") not in is_set:
        raise JobError("%s: [schedule] step_epochs: missing (required for kind = step)" % path)
    if sched["kind"] == "cosine" and sched["min_lr"] > optim["lr"]:
        raise JobError("%s: [schedule] min_lr: exceeds the optimizer's lr" % path)
    if sched["warmup_epochs"] >= job["epochs"]:
        raise JobError("%s: [schedule] warmup_epochs: not shorter than the run" % path)
    if not modules:
        raise JobError("%s: no [module] sections: the network needs at least one module" % path)
    for k, m in enumerate(modules):
        if not m["layers"]:
            raise JobError("%s:%d: [module]: module %d has no layers" % (path, m["line"], k + 1))
        for key in AUX_KEYS:  # resolve_objectives: [objective] gives what [module] leaves
            if key not in m["set"]:
                m[key] = objective[key]
    job["optimizer"] = optim
    job["schedule"] = sched
    job["modules"] = modules
    job["path"] = path
    return job


# ---------------------------------------------------------------------------
# Network. Activations are always 4-D (N, C, H, W), a flat vector being
# (N, C, 1, 1), as in sila. Module names follow sila's tensor names
# ("3.conv1.weight"), which are PyTorch's state_dict names.

class Flatten(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1, 1, 1)


class GAP(nn.Module):
    def forward(self, x):
        if x.shape[2] == 1 and x.shape[3] == 1:
            return x
        return x.mean(dim=(2, 3), keepdim=True)


class Linear(nn.Linear):
    def forward(self, x):
        n = x.shape[0]
        return F.linear(x.reshape(n, -1), self.weight, self.bias).reshape(n, -1, 1, 1)


class DropPath(nn.Module):
    """Drops whole samples with probability p, survivors scaled 1/(1-p)."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = (torch.rand(x.shape[0], 1, 1, 1) >= self.p).to(x.dtype) / (1.0 - self.p)
        return x * keep


def batchnorm(c, spec):
    return nn.BatchNorm2d(c, eps=spec["eps"], momentum=spec["momentum"])


class Block(nn.Module):
    """ResNet basic block (common/nn/block.c)."""

    def __init__(self, cin, spec):
        super().__init__()
        out, stride = spec["out"], spec["stride"]
        self.conv1 = nn.Conv2d(cin, out, 3, stride, 1, bias=False)
        self.bn1 = batchnorm(out, spec)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = batchnorm(out, spec)
        self.drop_path = DropPath(spec["p"]) if spec["p"] > 0 else None
        if stride != 1 or out != cin:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, out, 1, stride, 0, bias=False),
                                          batchnorm(out, spec))
        else:
            self.shortcut = None

    def forward(self, x):
        m = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.drop_path is not None:
            m = self.drop_path(m)
        s = x if self.shortcut is None else self.shortcut(x)
        return F.relu(m + s)


def window_out(n, k, stride, pad):
    span = n + 2 * pad - k
    return -1 if span < 0 else span // stride + 1


def build_layer(spec, shape, where):
    """One sila layer on per-sample input shape (c, h, w): (module, out shape)."""
    c, h, w = shape
    kind = spec["kind"]
    if kind == "linear":
        if h != 1 or w != 1:
            raise JobError("%s: [linear] out: expects a flat input, got %dx%dx%d (add a flatten "
                           "or gap layer before it)" % (where, c, h, w))
        return Linear(c, spec["out"], bias=spec["bias"]), (spec["out"], 1, 1)
    if kind in ("conv2d", "block"):
        k, pad = (3, 1) if kind == "block" else (spec["kernel"], spec["pad"])
        oh, ow = window_out(h, k, spec["stride"], pad), window_out(w, k, spec["stride"], pad)
        if oh < 1 or ow < 1:
            raise JobError("%s: [%s] kernel: a %dx%d kernel does not fit the %dx%dx%d input "
                           "padded by %d" % (where, kind, k, k, c, h, w, pad))
        if kind == "block":
            return Block(c, spec), (spec["out"], oh, ow)
        return (nn.Conv2d(c, spec["out"], k, spec["stride"], pad, bias=spec["bias"]),
                (spec["out"], oh, ow))
    if kind == "batchnorm":
        return batchnorm(c, spec), shape
    if kind == "relu":
        return nn.ReLU(inplace=True), shape
    if kind in ("maxpool", "avgpool"):
        k, st, pad = spec["kernel"], spec["stride"], spec["pad"]
        if 2 * pad > k:
            raise JobError("%s: [%s] pad: %d exceeds half the kernel" % (where, kind, pad))
        oh, ow = window_out(h, k, st, pad), window_out(w, k, st, pad)
        if oh < 1 or ow < 1:
            raise JobError("%s: [%s] kernel: a %dx%d window does not fit the %dx%dx%d input"
                           % (where, kind, k, k, c, h, w))
        if kind == "maxpool":
            return nn.MaxPool2d(k, st, pad), (c, oh, ow)
        return nn.AvgPool2d(k, st, pad, count_include_pad=True), (c, oh, ow)
    if kind == "gap":
        return GAP(), (c, 1, 1)
    if kind == "adaptive_avgpool":
        return nn.AdaptiveAvgPool2d(spec["out"]), (c, spec["out"], spec["out"])
    if kind == "upsample":
        return (nn.Upsample(size=(spec["out"], spec["out"]), mode="bilinear", align_corners=True),
                (c, spec["out"], spec["out"]))
    if kind == "flatten":
        return Flatten(), (c * h * w, 1, 1)
    if kind == "dropout":
        return nn.Dropout(spec["p"]), shape
    if kind == "droppath":
        return DropPath(spec["p"]), shape
    raise JobError("%s: unknown layer kind %s" % (where, kind))


def build_net(specs, shape, where):
    mods = []
    for i, spec in enumerate(specs):
        m, shape = build_layer(spec, shape, "%s:%d" % (where, spec.get("line", 0)))
        if i == 0 and isinstance(m, nn.ReLU):
            m.inplace = False  # never write the module's input (the previous z_k)
        mods.append(m)
    return nn.Sequential(*mods), shape


def bn_relu_layers(n, kind, out, bias):
    """n x (linear or 1x1 conv2d to out, BN, ReLU) (add_bn_relu_layers)."""
    specs = []
    for _ in range(n):
        s = layer_default(kind)
        s.update(out=out, bias=bias)
        if kind == "conv2d":
            s["kernel"] = 1
        specs += [s, layer_default("batchnorm"), layer_default("relu")]
    return specs


def adaptive_pool(side):
    s = layer_default("adaptive_avgpool")
    s["out"] = side
    return s


def auglocal_specs(job, k):
    """auglocal_specs (common/nn/module.c): copies of a spaced subset of the
    blocks and convs after module k, each redoing one pending downsampling."""
    f = np.float32
    jm = job["modules"][k]
    later = [l for m in job["modules"][k + 1:] for l in m["layers"]]
    is_unit = [l["kind"] in ("block", "conv2d") for l in later]
    units, K = sum(is_unit), len(job["modules"])
    if units == 0:
        raise JobError("an auglocal head needs a block or conv2d layer after module %d" % (k + 1))
    r = f(k) * f(jm["aux_pyramid"]) / f(K - 2) if K > 2 else f(0)
    d = int(np.floor(f(jm["aux_depth"]) * (f(1) - r) + r + f(0.5)))
    d = min(max(d, 1), units)
    specs, unit, nxt, pending = [], 0, 1, 0
    for l, u in zip(later, is_unit):
        pending += l["stride"] > 1 and (u or l["kind"] in ("maxpool", "avgpool"))
        if not u:
            continue
        unit += 1
        if unit != int(np.floor(f(units) / f(d) * f(nxt) + f(0.5))):
            continue
        s = dict(l)
        s.update(stride=2 if pending > 0 else 1, p=0.0)
        pending -= pending > 0
        nxt += 1
        if l["kind"] == "block":
            specs.append(s)
        else:
            s["bias"] = False
            specs += [s, layer_default("batchnorm"), layer_default("relu")]
    specs.append(layer_default("gap"))
    if d == 1:
        specs.append(layer_default("batchnorm"))
    return specs


def aux_head_specs(job, k, shape):
    """sila_aux_head_specs (common/nn/module.c) for module k's aux keys."""
    jm = job["modules"][k]
    nclasses = job["nclasses"]
    c, h, w = shape
    flat = h == 1 and w == 1
    kind = jm["aux"]
    specs = []
    if kind == "conv":
        if flat:
            raise JobError("a conv head cannot take a flat input")
        s = layer_default("conv2d")
        s.update(out=c, pad=1, bias=False)
        specs += [s, layer_default("batchnorm"), layer_default("relu"), layer_default("gap")]
    elif kind == "mlp":
        if not flat:
            if h < 2 or w < 2 or h != w:
                raise JobError("an mlp head cannot take input %dx%dx%d" % (c, h, w))
            s = layer_default("avgpool")
            s["kernel"] = s["stride"] = h // 2
            specs.append(s)
        specs.append(layer_default("flatten"))
        specs += bn_relu_layers(2, "linear", jm["aux_hidden"], True)
    elif kind == "auglocal":
        if flat:
            raise JobError("an auglocal head cannot take a flat input")
        specs += auglocal_specs(job, k)
    elif kind == "infopro":
        if flat:
            raise JobError("an infopro head cannot take a flat input")
        s = layer_default("conv2d")
        s.update(out=2 * c if h > 8 else c, stride=2 if h > 8 else 1, pad=1, bias=False)
        lin = layer_default("linear")
        lin["out"] = jm["aux_hidden"]
        specs += [s, layer_default("batchnorm"), layer_default("relu"), layer_default("gap"),
                  lin, layer_default("relu")]
    elif kind == "dgl":
        if flat:
            raise JobError("a dgl head cannot take a flat input")
        specs.append(adaptive_pool(jm["aux_grid"]))
        specs += bn_relu_layers(jm["aux_convs"], "conv2d", c, False)
        specs += [adaptive_pool(2), layer_default("flatten")]
        specs += bn_relu_layers(jm["aux_mlp"], "linear", jm["aux_hidden"], False)
    else:
        specs.append(layer_default("gap"))
    s = layer_default("linear")
    s["out"] = nclasses
    specs.append(s)
    return specs


def man_unit_specs(job, k):
    """sila_man_unit_specs (common/nn/heads.c): module k + 1's layers from its
    first through its first block or conv2d and a batchnorm and a relu right
    after it, drop-path off."""
    nxt = job["modules"][k + 1]["layers"]
    filters = ("block", "conv2d")
    n = 0
    while n < len(nxt) and n < 6 and nxt[n]["kind"] not in filters:
        n += 1
    if n == len(nxt) or nxt[n]["kind"] not in filters:
        raise JobError("%s: MAN copies the first [block] or [conv2d] of the next module, and "
                       "module %d has none among its first 6 layers" % (job["path"], k + 2))
    n += 1
    for follow in ("batchnorm", "relu"):
        if n < len(nxt) and nxt[n]["kind"] == follow:
            n += 1
    specs = [dict(spec) for spec in nxt[:n]]
    for spec in specs:
        if spec["kind"] != "dropout" and "p" in spec:
            spec["p"] = 0.0
    return specs


def infopro_weights(jm, k, K):
    """sila_objective_infopro_weights: (recon, task) of module k of K, in float32."""
    f = np.float32
    r = f(k) / f(K - 2) if K > 2 else f(0)

    def lerp(a, b):
        return f(a) if f(a) == f(b) else f(a) * (f(1) - r) + f(b) * r
    return (float(lerp(jm["recon_first"], jm["recon_last"])),
            float(lerp(jm["task_first"], jm["task_last"])))


def make_decoder(c, width, image):
    """InfoPro's decoder (module.c build_decoder): upsample to the input's
    size (bilinear, corners aligned), conv3x3 to width + BN + ReLU, conv3x3
    to the input's channels; pixel logits."""
    c0, h0, w0 = image
    return nn.Sequential(nn.Upsample(size=(h0, w0), mode="bilinear", align_corners=True),
                         nn.Conv2d(c, width, 3, 1, 1, bias=False),
                         batchnorm(width, layer_default("batchnorm")), nn.ReLU(inplace=True),
                         nn.Conv2d(width, c0, 3, 1, 1))


class Module:
    """Module k: body, aux head (None for the last) and one optimizer for each."""

    def __init__(self, job, k, shape):
        jm = job["modules"][k]
        self.body, self.out_shape = build_net(jm["layers"], shape, job["path"])
        self.head = self.decoder = self.lb = self.ema = None
        self.inbox, self.target, self.sent, self.sent_layers = [], None, None, 0
        if k > 0 and job["modules"][k - 1]["man_momentum"] > 0:  # sends MAN snapshots
            self.sent_layers = len(man_unit_specs(job, k - 1))
        self.recon_w, self.task_w = 0.0, 1.0
        if k < len(job["modules"]) - 1:
            c, h, w = self.out_shape
            if jm["aux"] == "mlp" and (h < 2 or w < 2):  # common/io/job_check.c check_head
                raise JobError("%s:%d: [module] aux: module %d: an mlp head pools to 2x2 and "
                               "needs an output of at least 2x2, the module ends in %dx%dx%d "
                               "(use linear or conv)" % (job["path"], jm["line"], k + 1, c, h, w))
            if jm["aux"] in ("dgl", "infopro", "auglocal") and h == 1 and w == 1:
                raise JobError("%s:%d: [module] aux: module %d: a %s head convolves a feature "
                               "map and needs an output larger than 1x1, the module ends in "
                               "%dx1x1 (use linear or mlp)"
                               % (job["path"], jm["line"], k + 1, jm["aux"], c))
            aux_shape = self.out_shape
            if jm["man_momentum"] > 0:  # module.c build_man
                unit = man_unit_specs(job, k)
                self.lb, aux_shape = build_net(unit, self.out_shape, "module %d MAN" % (k + 1))
                self.ema, _ = build_net(unit, self.out_shape, "module %d MAN" % (k + 1))
                for prm in self.ema.parameters():
                    prm.requires_grad_(False)
                self.mom, self.period = jm["man_momentum"], jm["man_period"]
                c = aux_shape[0]
            specs = aux_head_specs(job, k, aux_shape)
            self.head, _ = build_net(specs, aux_shape, "module %d head" % (k + 1))
            self.recon_w, self.task_w = infopro_weights(jm, k, len(job["modules"]))
            if self.recon_w > 0:
                self.decoder = make_decoder(c, jm["recon_width"], job["input"])
        if self.out_shape != (job["nclasses"], 1, 1) and self.head is None:
            raise JobError("%s: the network ends in %dx%dx%d, the last layer must output %dx1x1"
                           % (job["path"], *self.out_shape, job["nclasses"]))
        self.in_shape = shape

    def nets(self):
        """In sila's order of initialisation (module.c sila_module_new)."""
        return [n for n in (self.body, self.head, self.decoder, self.lb, self.ema)
                if n is not None]

    def aux(self, z):
        """What the head reads (module.c aux_input): z, or lb(z) + ema(z)."""
        return z if self.lb is None else self.lb(z) + self.ema(z)

    def man_init(self):
        """After the initial weights: ema's target, and the snapshot sent."""
        if self.ema is not None:
            self.target = [t.detach().clone() for t in self.ema.parameters()]
        if self.sent_layers:
            self.snapshot()

    def snapshot(self):
        """sila_module_man_snapshot: a copy of the first unit's params."""
        self.sent = [t.detach().clone() for t in self.body[:self.sent_layers].parameters()]
        return self.sent

    @torch.no_grad()
    def man_average(self):
        """module.c update(): ema <- mom ema + (1 - mom) target."""
        if self.ema is not None:
            for e, t in zip(self.ema.parameters(), self.target):
                e.mul_(self.mom).add_(t, alpha=1.0 - self.mom)

    def make_optimizers(self, optim):
        self.opt_body = make_optimizer(self.body.parameters(), optim)
        head = (list(self.lb.parameters()) if self.lb is not None else []) + \
            (list(self.head.parameters()) if self.head else [])
        self.opt_head = make_optimizer(head, optim) if self.head else None
        self.opt_decoder = (make_optimizer(self.decoder.parameters(), optim)
                            if self.decoder else None)


def make_optimizer(params, o):
    params = list(params)
    if o["kind"] == "sgd":
        return torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"],
                               nesterov=o["nesterov"], weight_decay=o["weight_decay"])
    return torch.optim.AdamW(params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                             weight_decay=o["weight_decay"])


def init_sila(net, rng):
    """sila_net_init_params: tensors in order, weight/bias U(+-1/sqrt(fan_in))
    from sila's rng (bit-identical float32 values), BN gamma 1, beta 0."""
    for mod in net.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            fan_in = mod.weight[0].numel()
            bound = np.float32(1.0) / np.sqrt(np.float32(fan_in))
            for t in (mod.weight, mod.bias):
                if t is None:
                    continue
                u = np.array(rng.top24(t.numel()), dtype=np.float32) * np.float32(2.0 ** -24)
                v = bound * (np.float32(2.0) * u - np.float32(1.0))
                with torch.no_grad():
                    t.copy_(torch.from_numpy(v.astype(np.float32)).view_as(t))
        elif isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.weight.fill_(1.0)
                mod.bias.fill_(0.0)
            mod.running_mean.zero_()
            mod.running_var.fill_(1.0)


# ---------------------------------------------------------------------------
# Data (common/io/dataset.c).

NORM = {
    "mnist": ((0.1307, 0, 0), (0.3081, 1, 1)),
    "fmnist": ((0.2860, 0, 0), (0.3530, 1, 1)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def read_idx(path, ndims):
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic != 0x800 + ndims:
        raise JobError("%s: bad magic 0x%08x" % (path, magic))
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndims)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndims)
    return arr.reshape(dims)


def load_split(job, train):
    d, ds = job["data_dir"], job["dataset"]
    if ds in ("mnist", "fmnist"):
        split = "train" if train else "t10k"
        images = read_idx(os.path.join(d, split + "-images-idx3-ubyte"), 3)[:, None]
        labels = read_idx(os.path.join(d, split + "-labels-idx1-ubyte"), 1)
        return images, labels
    if ds == "cifar10":
        names = (["data_batch_%d.bin" % i for i in range(1, 6)] if train else ["test_batch.bin"])
        lb = 1
    else:
        names, lb = ["train.bin" if train else "test.bin"], 2
    recs = [np.fromfile(os.path.join(d, n), dtype=np.uint8).reshape(-1, lb + 3072)
            for n in names]
    recs = np.concatenate(recs)
    return recs[:, lb:].reshape(-1, 3, 32, 32), recs[:, lb - 1].copy()


def norm_lut(ds, c):
    """lut[ch][v] = ((float)v / 255.0f - mean) / std, in float32 as sila does."""
    mean, std = NORM[ds]
    v = np.arange(256, dtype=np.float32) / np.float32(255.0)
    return np.stack([(v - np.float32(mean[ch])) / np.float32(std[ch]) for ch in range(c)])


class Data:
    def __init__(self, job):
        tr_x, tr_y = load_split(job, True)
        te_x, te_y = load_split(job, False)
        if job["train_limit"]:
            tr_x, tr_y = tr_x[:job["train_limit"]], tr_y[:job["train_limit"]]
        if job["test_limit"]:
            te_x, te_y = te_x[:job["test_limit"]], te_y[:job["test_limit"]]
        if len(tr_x) < job["batch"]:
            raise JobError("%s: %d training samples, fewer than one batch of %d"
                           % (job["path"], len(tr_x), job["batch"]))
        self.ntrain, self.ntest = len(tr_x), len(te_x)
        n, c, h, w = tr_x.shape
        self.c, self.h, self.w = c, h, w
        lut = norm_lut(job["dataset"], c)
        self.lut = torch.from_numpy(lut)
        self.train_y = torch.from_numpy(tr_y.astype(np.int64))
        self.test_y = torch.from_numpy(te_y.astype(np.int64))
        self.test_x = torch.from_numpy(self.normalise(te_x, lut))
        self.crop, self.flip = job["augment_crop"], job["augment_flip"]
        if self.crop or self.flip:
            p = self.crop
            raw = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=np.uint8)  # raw 0 outside
            raw[:, :, p:p + h, p:p + w] = tr_x
            self.train_raw = torch.from_numpy(raw)
            self.lut_flat = self.lut.reshape(-1)
            self.ch_off = (torch.arange(c) * 256).view(1, c, 1, 1)
            self.ar_h = torch.arange(h)
            self.ar_w = torch.arange(w)
            self.ar_c = torch.arange(c).view(1, c, 1, 1)
        else:
            self.train_x = torch.from_numpy(self.normalise(tr_x, lut))

    @staticmethod
    def normalise(x, lut):
        out = np.empty(x.shape, dtype=np.float32)
        for ch in range(x.shape[1]):
            out[:, ch] = lut[ch][x[:, ch]]
        return out

    def aug_draws(self, rng, count):
        """view_draw for `count` samples in order: dy, dx (crop), then flip."""
        dy = np.zeros(count, dtype=np.int64)
        dx = np.zeros(count, dtype=np.int64)
        fl = np.zeros(count, dtype=bool)
        span, p = 2 * self.crop + 1, self.crop
        for i in range(count):
            if p:
                dy[i] = rng.below(span) - p
                dx[i] = rng.below(span) - p
            if self.flip:
                fl[i] = rng.below(2) == 1
        return torch.from_numpy(dy), torch.from_numpy(dx), torch.from_numpy(fl)

    def train_batch(self, idx, draws=None):
        if draws is None:
            return self.train_x.index_select(0, idx), self.train_y.index_select(0, idx)
        dy, dx, fl = draws
        p, h, w = self.crop, self.h, self.w
        rows = (dy.view(-1, 1) + self.ar_h.view(1, h) + p).view(-1, 1, h, 1)
        cols = torch.where(fl.view(-1, 1), (w - 1 - self.ar_w).view(1, w), self.ar_w.view(1, w))
        cols = (cols + dx.view(-1, 1) + p).view(-1, 1, 1, w)
        raw = self.train_raw[idx.view(-1, 1, 1, 1), self.ar_c, rows, cols]
        x = self.lut_flat.take(raw.long() + self.ch_off)
        return x, self.train_y.index_select(0, idx)


# ---------------------------------------------------------------------------
# Schedule (common/nn/optim.c sila_sched_lr, daemon/train.c plan_schedule).

def llround(x):
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


class Schedule:
    def __init__(self, job, spe):
        s = job["schedule"]
        self.kind, self.lr, self.min_lr, self.gamma = s["kind"], job["optimizer"]["lr"], \
            s["min_lr"], s["gamma"]
        self.total = job["epochs"] * spe
        # float * uint64 in C: float arithmetic, then llround
        self.warmup = llround(float(np.float32(s["warmup_epochs"]) * np.float32(spe)))
        self.step_size = llround(float(np.float32(s["step_epochs"]) * np.float32(spe)))

    def __call__(self, t):
        if t < self.warmup:
            return _f32(self.lr * (t + 1) / self.warmup)
        T = self.total - self.warmup if self.total > self.warmup else 0
        t -= self.warmup
        if self.kind == "constant":
            v = self.lr
        elif self.kind == "step":
            v = self.lr if self.step_size == 0 else self.lr * self.gamma ** (t // self.step_size)
        elif t >= T:
            v = self.min_lr
        else:
            v = self.min_lr + (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * t / T)) / 2.0
        return _f32(v)


# ---------------------------------------------------------------------------
# Training (daemon/train.c, common/nn/module.c).

def set_lr(opt, lr):
    for g in opt.param_groups:
        g["lr"] = lr


class Trainer:
    def __init__(self, job, init):
        self.job = job
        torch.manual_seed(job["seed"])
        self.mods, shape = [], job["input"]
        for k in range(len(job["modules"])):
            m = Module(job, k, shape)
            if init == "sila":
                rng = SilaRng(job["seed"], INIT_STREAM + k)
                for net in m.nets():
                    init_sila(net, rng)
            m.make_optimizers(job["optimizer"])
            m.man_init()
            self.mods.append(m)
            shape = m.out_shape
        self.K = len(self.mods)
        for k in range(1, self.K):  # stage.c sila_stage_man_start: step 0's offer
            if self.mods[k].sent is not None:
                self.mods[k - 1].inbox.append((0, self.mods[k].sent))
        mean, std = NORM[job["dataset"]]
        c0 = job["input"][0]
        self.mean = torch.tensor(mean[:c0], dtype=torch.float32).view(1, c0, 1, 1)
        self.std = torch.tensor(std[:c0], dtype=torch.float32).view(1, c0, 1, 1)
        self.smoothing = job["label_smoothing"]
        self.global_steps = 0
        self.spe = self.total = 1  # steps per epoch and in all: set by plan()

    def plan(self, spe):
        self.spe, self.total = spe, spe * self.job["epochs"]

    def mu(self, t):
        """The local weight of global step t (plan.c: sila_plan_local_weight)."""
        job = self.job
        if job["algorithm"] != "pgl":
            return 0.0
        if not job["local_weight_decay"]:
            return job["local_weight"]
        return float(np.float32(job["local_weight"]) * np.float32(1.0 - t / self.total))

    def ce(self, logits, y):
        return F.cross_entropy(logits.reshape(logits.shape[0], -1), y,
                               label_smoothing=self.smoothing)

    def is_global(self, t):
        a = self.job["algorithm"]
        if a == "e2e":
            return True
        if a == "local":
            return False
        job = self.job
        if t % self.spe + job["global_epoch_end"] >= self.spe:
            return True
        P, G = job["period"], job["global_steps"]
        if job["global_ramp"]:  # G grows from 0 to 2G over the run (lround: halves up)
            G = min(P, int(math.floor(2.0 * G * (t + 1) / self.total + 0.5)))
        return t % P >= P - G

    def man_after(self, k, t):
        """stage.c man_after: module k learned step t."""
        m, done = self.mods[k], t + 1
        m.man_average()
        if m.sent is not None and done % self.mods[k - 1].period == 0:
            self.mods[k - 1].inbox.append((done, m.snapshot()))
        if m.ema is not None and done % m.period == 0:
            want = done - m.period
            m.inbox = [(tag, v) for tag, v in m.inbox if tag >= want]
            best = min(range(len(m.inbox)), key=lambda i: m.inbox[i][0])
            m.target = m.inbox.pop(best)[1]

    def local_step(self, x, y, lr, losses, t):
        image = x
        for k, m in enumerate(self.mods):
            m.opt_body.zero_grad(set_to_none=True)
            z = m.body(x)
            if m.head is None:
                loss = self.ce(z, y)
            else:
                m.opt_head.zero_grad(set_to_none=True)
                a = m.aux(z)
                loss = self.ce(m.head(a), y)
                if m.task_w != 1.0:
                    loss = m.task_w * loss
                if m.decoder is not None:  # module.c reconstruction()
                    m.opt_decoder.zero_grad(set_to_none=True)
                    pixels = image * self.std + self.mean
                    loss = loss + m.recon_w * F.binary_cross_entropy_with_logits(
                        m.decoder(a), pixels)
            loss.backward()
            set_lr(m.opt_body, lr)
            m.opt_body.step()
            if m.head is not None:
                set_lr(m.opt_head, lr)
                m.opt_head.step()
            if m.decoder is not None:
                set_lr(m.opt_decoder, lr)
                m.opt_decoder.step()
            self.man_after(k, t)
            losses[k].append(loss.detach())
            x = z.detach()

    def global_step(self, x, y, lr, mu, losses, t):
        self.global_steps += 1
        zs = []
        for m in self.mods:
            m.opt_body.zero_grad(set_to_none=True)
            x = m.body(x)
            zs.append(x)
        loss = self.ce(x, y)
        losses[self.K - 1].append(loss.detach())
        total = loss
        if mu > 0:
            for k, m in enumerate(self.mods[:-1]):
                m.opt_head.zero_grad(set_to_none=True)
                lk = self.ce(m.head(m.aux(zs[k])), y)
                losses[k].append(lk.detach())
                total = total + mu * lk
        total.backward()
        for k in reversed(range(self.K)):  # stage.c: the last module first
            m = self.mods[k]
            set_lr(m.opt_body, lr)
            m.opt_body.step()
            if mu > 0 and m.head is not None:  # a head without gradient sits out
                set_lr(m.opt_head, lr)
                m.opt_head.step()
            self.man_after(k, t)

    def train(self, flag):
        for m in self.mods:
            for net in m.nets():
                net.train(flag)

    @torch.no_grad()
    def evaluate(self, data):
        self.train(False)
        correct = [0] * self.K
        B = self.job["batch"]
        for s in range(0, data.ntest, B):
            x, y = data.test_x[s:s + B], data.test_y[s:s + B]
            for k, m in enumerate(self.mods):
                x = m.body(x)
                a = m.head(m.aux(x)) if m.head is not None else x
                correct[k] += int((a.reshape(a.shape[0], -1).argmax(1) == y).sum())
        self.train(True)
        return [c / data.ntest if data.ntest else 0.0 for c in correct]


def fmt_losses(losses):
    return " ".join("%.3f" % float(torch.stack(l).mean()) if l else "-" for l in losses)


def run(job, args):
    t_load = time.perf_counter()
    data = Data(job)
    spe = data.ntrain // job["batch"]
    sched = Schedule(job, spe)
    tr = Trainer(job, args.init)
    tr.plan(spe)
    B, E = job["batch"], job["epochs"]
    print("job %s: %s, %d modules, %u training samples, %d epochs of %d steps, batch %d "
          "(PyTorch %s, %d threads, init %s, setup %.1f s)"
          % (job["name"], job["algorithm"], tr.K, data.ntrain, E, spe, B, torch.__version__,
             torch.get_num_threads(), args.init, time.perf_counter() - t_load), flush=True)
    aug_rng = SilaRng(job["seed"], AUG_STREAM)
    augment = data.crop > 0 or data.flip
    train_seconds, prep_seconds, eval_seconds, accuracy = 0.0, 0.0, 0.0, [0.0] * tr.K
    samples, evaluations = 0, []
    N = job["evals_per_epoch"]
    if N > spe:
        raise JobError("%s: evals_per_epoch %d: more than the %d steps of an epoch"
                       % (job["path"], N, spe))
    # sila_plan_round_end: the evaluations of epoch e after its steps
    # floor((j + 1) spe / N), j < N
    round_ends = [(j + 1) * spe // N for j in range(N)]
    tr.train(True)
    for e in range(E):
        t0 = time.perf_counter()
        order = torch.tensor(epoch_order(data.ntrain, job["seed"], e)[:spe * B], dtype=torch.long)
        draws = data.aug_draws(aug_rng, spe * B) if augment else None
        prep_seconds += time.perf_counter() - t0
        losses = [[] for _ in range(tr.K)]
        t0 = last = time.perf_counter()
        epoch_base = train_seconds  # the epoch's training time: train_seconds - this + now - t0
        for s in range(spe):
            t = e * spe + s
            sl = slice(s * B, (s + 1) * B)
            x, y = data.train_batch(order[sl], None if draws is None else
                                    tuple(d[sl] for d in draws))
            lr = sched(t)
            if tr.is_global(t):
                tr.global_step(x, y, lr, tr.mu(t), losses, t)
            else:
                tr.local_step(x, y, lr, losses, t)
            samples += B
            now = time.perf_counter()
            if (t + 1) % 50 == 0 or s + 1 == spe or now - last >= 10.0:
                rate = (samples - (e * spe * B)) / (train_seconds - epoch_base + now - t0)
                print("epoch %d/%d step %d/%d  loss [%s]  %.0f samples/s"
                      % (e + 1, E, s + 1, spe, fmt_losses(losses), rate), flush=True)
                losses = [[] for _ in range(tr.K)]
                last = now
            if s + 1 in round_ends and ((e + 1) % job["eval_every"] == 0 or e + 1 == E):
                train_seconds += time.perf_counter() - t0
                t_eval = time.perf_counter()
                accuracy = tr.evaluate(data)
                eval_seconds += time.perf_counter() - t_eval
                evaluations.append({"step": t + 1, "train_s": round(train_seconds, 3),
                                    "accuracy": [round(a, 6) for a in accuracy]})
                print("eval after epoch %.4g: test accuracy%s classifier %.2f%%"
                      % ((t + 1) / spe, "".join(" head%d %.2f%%," % (k + 1, 100 * a)
                                                for k, a in enumerate(accuracy[:-1])),
                         100 * accuracy[-1]), flush=True)
                t0 = last = time.perf_counter()
        train_seconds += time.perf_counter() - t0
    rate = samples / train_seconds if train_seconds > 0 else 0.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("trained %d samples in %.2f s: %.0f samples/s (not counted: data order%s %.2f s, "
          "evaluation %.2f s); %d global steps of %d; peak RSS %.0f MB"
          % (samples, train_seconds, rate, " and augmentation draws" if augment else "",
             prep_seconds, eval_seconds, tr.global_steps, E * spe, rss), flush=True)
    if args.json:
        print(json.dumps({"accuracy": [round(a, 6) for a in accuracy],
                          "samples_per_s": round(rate, 1),
                          "train_seconds": round(train_seconds, 3),
                          "eval_seconds": round(eval_seconds, 3),
                          "evaluations": evaluations,
                          "peak_rss_mb": round(rss, 1)}), flush=True)


def print_init(job):
    """Per module: parameter counts, first values and sums, for comparison
    with sila_module_new (see README.md)."""
    tr = Trainer(job, "sila")
    for k, m in enumerate(tr.mods):
        body = torch.cat([p.detach().reshape(-1) for p in m.body.parameters()])
        head = (torch.cat([p.detach().reshape(-1) for p in m.head.parameters()])
                if m.head is not None else torch.zeros(0))
        allp = torch.cat([body, head]).double()
        print("module %d: body %d head %d first %s sum %.9g abs %.9g"
              % (k + 1, body.numel(), head.numel(),
                 " ".join("%.9g" % float(v) for v in body[:3]),
                 float(allp.sum()), float(allp.abs().sum())))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", help="sila job file (deploy/jobs/*.ini)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a key of [job], [optimizer] or [schedule] (repeatable)")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch intra-op threads (default 2; printed at start)")
    ap.add_argument("--init", choices=("sila", "torch"), default="sila",
                    help="sila: draw the initial weights from sila's rng, bit-identical to "
                         "silad's (default); torch: PyTorch's own default init")
    ap.add_argument("--json", action="store_true", help="print a final JSON line")
    ap.add_argument("--print-order", nargs=3, type=int, metavar=("SEED", "EPOCH", "N"),
                    help="print the first 10 indices of sila's epoch order and exit")
    ap.add_argument("--print-init", action="store_true",
                    help="print per-module parameter counts and init checksums and exit")
    args = ap.parse_args()

    if args.print_order:
        seed, epoch, n = args.print_order
        t0 = time.perf_counter()
        perm = epoch_order(n, seed, epoch)
        dt = time.perf_counter() - t0
        chk = sum(i * v for i, v in enumerate(perm)) & M64
        print("order seed %d epoch %d n %d: %s checksum %d"
              % (seed, epoch, n, " ".join(map(str, perm[:10])), chk))
        print("(shuffle took %.3f s)" % dt, file=sys.stderr)
        return 0
    if not args.job:
        ap.error("--job is required")
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    try:
        job = load_job(args.job, args.set)
        if args.print_init:
            print_init(job)
            return 0
        run(job, args)
    except (JobError, OSError) as e:
        print("sila_torch: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
