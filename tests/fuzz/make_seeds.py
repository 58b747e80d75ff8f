#!/usr/bin/python3
"""Writes the seed inputs of the fuzz corpora (tests/fuzz/corpus/TARGET/seed-*):
well-formed frames, control messages, RPC requests and job files, encoded
with protoc from proto/sila.proto, and messages signed as a keyed link does
with fuzz_auth.c's fixed key and clock. Findings of fuzzing runs are added to
the same directories by hand, named after what they found.

    tests/fuzz/make_seeds.py
"""
import hashlib
import hmac
import os
import re
import shutil
import struct
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO = os.path.join(ROOT, "proto")
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")


def encode(msg, text):
    return subprocess.run(["protoc", f"--proto_path={PROTO}", f"--encode=sila.{msg}",
                           os.path.join(PROTO, "sila.proto")], input=text.encode(),
                          capture_output=True, check=True).stdout


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


# the wire version frames and the join handshake speak (common/wire/frame.h)
WIRE = int(re.search(r"#define SILA_WIRE_VERSION (\d+)u",
                     open(os.path.join(ROOT, "common", "wire", "frame.h")).read()).group(1))


def frame(n, c, h, w, labels, gradient=False, phase="LOCAL", targets=None, image=0,
          dtype="F32"):
    """targets: rows of collab's soft targets (one per sample), or None;
    image: values per sample of the network's input carried along; dtype:
    the tensor's (F32, or BF16 / F16: written as the halves of 0.5 i)."""
    classes = len(targets[0]) if targets else 0
    hdr = encode("FrameHeader", f"version: {WIRE} generation: 1 seq: 7 batch: 3 round: 0 "
                                f"phase: {phase} gradient: {str(gradient).lower()} "
                                f"shape: [{n}, {c}, {h}, {w}] nlabels: {len(labels)} "
                                f"target_classes: {classes} image_size: {image} "
                                f"dtype: {dtype}")
    body = struct.pack(f"<{len(labels)}i", *labels)
    for row in targets or []:
        body += struct.pack(f"<{classes}f", *row)
    body += struct.pack(f"<{n * image}f", *[0.25 * i for i in range(n * image)])
    values = struct.pack(f"<{n * c * h * w}f", *[0.5 * i for i in range(n * c * h * w)])
    if dtype == "BF16":  # the upper halves of multiples of 0.5: exact
        values = b"".join(values[i + 2:i + 4] for i in range(0, len(values), 4))
    elif dtype == "F16":
        values = struct.pack(f"<{n * c * h * w}e", *[0.5 * i for i in range(n * c * h * w)])
    body += values
    return b"SILF" + struct.pack("<I", len(hdr)) + pad4(hdr) + body


def ctl(text, tail=()):
    msg = encode("Control", text)
    return b"SILC" + struct.pack("<I", len(msg)) + pad4(msg) + struct.pack(f"<{len(tail)}f", *tail)


# fuzz_auth.c's key, key id and clock
AUTH_KEY = bytes((i * 37 + 1) & 0xFF for i in range(32))
AUTH_KEY_ID = bytes([1, 2, 3, 4])
AUTH_NOW = 1700000000000


def signed(payload, session, seq, key_id=AUTH_KEY_ID):
    """payload and the trailer of docs/protocol.md, sent on channel data-2
    by its connecting side."""
    head = b"SLA1" + key_id + struct.pack("<QQQ", session, seq, AUTH_NOW)
    label = b"sila/1/data-2/connect\0"
    mac = hmac.new(AUTH_KEY, label + payload + head + bytes(16), hashlib.sha512).digest()[:32]
    return payload + head + mac


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    write("frame", "activations", frame(3, 2, 4, 5, [0, 9, 4]))
    write("frame", "no-labels", frame(2, 2, 4, 5, []))
    write("frame", "targets", frame(2, 2, 4, 5, [1, 7], targets=[[0.1] * 10, [0.0] * 10]))
    write("frame", "eval", frame(1, 2, 4, 5, [3], phase="EVAL"))
    write("frame", "image", frame(2, 2, 4, 5, [2, 8], image=6))
    write("frame", "gradient", frame(3, 2, 4, 5, [], gradient=True, phase="GLOBAL"))
    write("frame", "bf16", frame(3, 2, 4, 5, [0, 9, 4], dtype="BF16"))
    write("frame", "hello", frame(1, 1, 1, 1, [], phase="HELLO"))
    write("frame", "hello-answer", frame(1, 1, 1, 1, [], gradient=True, phase="HELLO"))
    write("ctl", "done", ctl("done { module: 2 phase: GLOBAL round: 1 batch: 99 loss: 0.5 "
                             "correct: 30 samples: 32 }"))
    write("ctl", "state", ctl("state { module: 1 params: 3 optimizer: 2 buffers: 1 "
                              "counters: [1, 2, 3, 4, 5, 6, 7, 8] }", [1, 2, 3, 4, 5, 6]))
    write("ctl", "hello", ctl(f'hello {{ version: {WIRE} first_module: 1 last_module: 2 '
                              'host: "127.0.0.1" pid: 42 max_frame: 1048576 }'))
    write("ctl", "welcome", ctl(f'welcome {{ version: {WIRE} generation: 1 job_path: "x.ini" '
                                'job_text: "[job]\\nname = x\\n" overrides: "job.epochs=1" '
                                'train_samples: 512 test_samples: 100 }'))
    write("ctl", "start", ctl('start { downstream_url: "tcp://h:7666" pipeline: 1 }'))
    for name, text in [("status", "status {}"), ("workers", "workers {}"),
                       ("metrics", "metrics { since_step: 50 }"), ("pause", "pause {}"),
                       ("checkpoint", "checkpoint {}"), ("stop", "stop {}")]:
        write("rpc", name, encode("Request", "version: 1 " + text))
    write("auth", "signed-frame", signed(frame(1, 2, 4, 5, [3]), 0x1111, 1))
    write("auth", "signed-empty", signed(b"", 0x2222, 7))
    write("auth", "another-key", signed(b"hello", 0x3333, 1, key_id=b"\xaa\xbb\xcc\xdd"))
    write("auth", "bare", b"no trailer at all")
    write("job", "objectives.ini", OBJECTIVES_JOB.encode())
    jobs = os.path.join(ROOT, "deploy", "jobs")
    for f in sorted(os.listdir(jobs)):
        if f.endswith(".ini"):
            shutil.copy(os.path.join(jobs, f), os.path.join(OUT, "job", "seed-" + f))


# A job with every objective key, in [objective] and per module.
OBJECTIVES_JOB = """[job]
name = objectives
dataset = fmnist
epochs = 1
batch = 16
algorithm = pgl
drop_path = 0.1
[optimizer]
lr = 0.05
[objective]
kind = collab
collab_beta = 0.3
collab_rate = 0.25
temperature = 3
redundancy = 0.1
aux = dgl
aux_grid = 4
recon_first = 2
task_first = 0.5
[module]
objective = sila
sila_weight = 0.5
dml_weight = 1
aux = auglocal
aux_depth = 2
[conv2d]
out = 8
[block]
out = 8
[module]
objective = cosub
cosub_weight = 0.5
kernel_similarity = 0.2
[block]
out = 8
stride = 2
[gap]
[linear]
out = 10
"""


if __name__ == "__main__":
    os.makedirs(os.path.join(OUT, "job"), exist_ok=True)
    main()
