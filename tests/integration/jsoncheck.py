#!/usr/bin/env python3
"""Assertions on what silad and silactl write, for the integration tests.

    jsoncheck.py SUBCOMMAND ARGS...

Each subcommand checks one thing and exits 0 if it holds, or prints why not
and exits 1. A FILE argument of '-' is stdin. The expected values come from
the test (the job it wrote, the labels of the test split), never from the
program under test.
"""
import gzip
import json
import math
import os
import re
import struct
import sys


def fail(msg):
    print(msg)
    sys.exit(1)


def load_json(path):
    text = sys.stdin.read() if path == "-" else open(path).read()
    try:
        return json.loads(text)
    except ValueError as e:
        fail(f"{path}: not one JSON document ({e}): {text[:300]!r}")


def load_metrics(path):
    """The records of a metrics.jsonl, each line one JSON object."""
    recs = []
    for n, line in enumerate(open(path), 1):
        try:
            recs.append(json.loads(line))
        except ValueError as e:
            fail(f"{path}:{n}: not JSON ({e}): {line!r}")
    return recs


def records(path, kind):
    return [r for r in load_metrics(path) if r.get("type") == kind]


def read_labels(path):
    """Labels of an IDX label file, plain or gzip."""
    data = open(path, "rb").read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    magic, n = struct.unpack(">II", data[:8])
    if magic != 0x801 or len(data) != 8 + n:
        fail(f"{path}: not an IDX label file")
    return list(data[8:])


def cmd_field(path, key):
    """Prints one top-level field."""
    doc = load_json(path)
    if key not in doc:
        fail(f"no field '{key}' in {sorted(doc)}")
    print(doc[key])


def cmd_loss_decreases(metrics):
    """The last module's (the classifier's) loss is lower in the last step
    record than in the first."""
    steps = records(metrics, "step")
    if len(steps) < 2:
        fail(f"{len(steps)} step records, need at least 2 to compare")
    first, last = steps[0]["loss"][-1], steps[-1]["loss"][-1]
    print(f"classifier loss: step {steps[0]['step']}: {first}, step {steps[-1]['step']}: {last}")
    if first is None or last is None:
        fail("a classifier loss is null")
    if not (math.isfinite(first) and math.isfinite(last) and last < first):
        fail("the classifier loss did not decrease")


def cmd_evals(metrics, k, epochs):
    """Every eval record holds K accuracies in [0, 1]; the last is after the
    last epoch."""
    k, epochs = int(k), int(epochs)
    evals = records(metrics, "eval")
    if not evals:
        fail("no eval record")
    for r in evals:
        acc = r.get("accuracy")
        if not isinstance(acc, list) or len(acc) != k:
            fail(f"eval record {r}: expected {k} accuracies")
        if not all(isinstance(a, (int, float)) and 0.0 <= a <= 1.0 for a in acc):
            fail(f"eval record {r}: an accuracy outside [0, 1]")
    if evals[-1]["epoch"] != epochs:
        fail(f"last eval record is after epoch {evals[-1]['epoch']}, expected {epochs}")
    steps = records(metrics, "step")
    if any(len(r["loss"]) != k for r in steps):
        fail(f"a step record without {k} losses")


def classifier_accuracy(metrics):
    evals = records(metrics, "eval")
    if not evals:
        fail("no eval record")
    return evals[-1]["accuracy"][-1]


def cmd_saved_line(stdout, model, metrics):
    """silad's last words name the model and the recorded classifier accuracy."""
    text = open(stdout).read()
    m = re.search(r"^model saved to (.*): classifier, test accuracy ([0-9.]+)%$", text, re.M)
    if not m:
        fail(f"no 'model saved to' line in: {text[-500:]!r}")
    want = f"{100 * classifier_accuracy(metrics):.2f}"
    if m.group(1) != model or m.group(2) != want:
        fail(f"printed '{m.group(0)}', expected path {model} and accuracy {want}%")


def cmd_eval_matches(eval_json, metrics, labels_path):
    """silactl eval of the saved model counts exactly the test samples silad
    recorded as right, over the samples in labels_path, and its per-class
    figures and confusion matrix add up to those labels."""
    doc = load_json(eval_json)
    labels = read_labels(labels_path)
    n = len(labels)
    if doc.get("samples") != n:
        fail(f"silactl evaluated {doc.get('samples')} samples, the split has {n}")
    want = round(classifier_accuracy(metrics) * n)
    print(f"silad recorded {classifier_accuracy(metrics)} of {n} = {want} correct; "
          f"silactl: {doc.get('correct')} correct, accuracy {doc.get('accuracy')}")
    if doc.get("correct") != want:
        fail("silactl's correct count differs from silad's")
    if abs(doc["accuracy"] - want / n) > 5e-7:
        fail("accuracy is not correct / samples")
    conf = doc["confusion"]
    classes = len(conf)
    per_true = [labels.count(c) for c in range(classes)]
    if [sum(row) for row in conf] != per_true:
        fail(f"confusion rows add up to {[sum(r) for r in conf]}, the labels to {per_true}")
    if sum(conf[c][c] for c in range(classes)) != want:
        fail("the confusion matrix's diagonal is not the correct count")
    for c in range(classes):
        pc = conf[c][c] / per_true[c] if per_true[c] else 0.0
        if abs(doc["per_class"][c] - pc) > 5e-7:
            fail(f"per_class[{c}] = {doc['per_class'][c]}, the confusion matrix gives {pc}")


def cmd_inspect(inspect_json, metrics, algorithm, seed, epochs, parameters, *kinds):
    """silactl inspect reports the job's algorithm, seed, epochs, the recorded
    accuracy, and the architecture the test computed by hand."""
    doc = load_json(inspect_json)
    want = {"algorithm": algorithm, "seed": int(seed), "epochs": int(epochs),
            "parameters": int(parameters)}
    got = {key: doc.get(key) for key in want}
    if got != want:
        fail(f"inspect says {got}, expected {want}")
    if abs(doc.get("accuracy", -1) - classifier_accuracy(metrics)) > 1e-6:
        fail(f"inspect's accuracy {doc.get('accuracy')} is not the recorded "
             f"{classifier_accuracy(metrics)}")
    got_kinds = [layer.get("kind") for layer in doc.get("layers", [])]
    if got_kinds != list(kinds):
        fail(f"layers {got_kinds}, expected {list(kinds)}")
    if not re.fullmatch(r"[0-9a-f]{64}", str(doc.get("weights_sha256"))):
        fail(f"weights_sha256 {doc.get('weights_sha256')!r} is not a SHA-256")


def cmd_same_evals(metrics_a, metrics_b):
    """Two runs recorded the same eval records but for their timing."""
    def strip(path):
        return [{k: v for k, v in r.items() if k != "train_s"} for r in records(path, "eval")]
    a, b = strip(metrics_a), strip(metrics_b)
    if not a or a != b:
        fail(f"eval records differ:\n{a}\n{b}")


def cmd_eval_steps(metrics, steps_per_epoch, *steps):
    """The eval records fall after exactly these steps, each at its epoch
    (step / steps_per_epoch), with training seconds that never go down."""
    evals = records(metrics, "eval")
    got = [r["step"] for r in evals]
    if got != [int(s) for s in steps]:
        fail(f"evaluations after steps {got}, expected {list(steps)}")
    for r in evals:
        if abs(r["epoch"] - r["step"] / int(steps_per_epoch)) > 1e-4:
            fail(f"eval record {r}: epoch is not step / {steps_per_epoch}")
    times = [r["train_s"] for r in evals]
    if any(t < 0 for t in times) or times != sorted(times):
        fail(f"training seconds {times} are negative or go down")


def cmd_same_steps(metrics_a, metrics_b):
    """Two runs recorded the same step records but for their speed."""
    def strip(path):
        return [{k: v for k, v in r.items() if k != "samples_per_s"}
                for r in records(path, "step")]
    a, b = strip(metrics_a), strip(metrics_b)
    if not a or a != b:
        fail("step records differ:\n" + "\n".join(f"{x}\n{y}\n" for x, y in zip(a, b)))


def cmd_same_step_numbers(metrics_a, metrics_b):
    """Two runs recorded the same steps (epoch, step, learning rate), whatever
    their losses: no step was lost or counted twice."""
    def numbers(path):
        return [(r["epoch"], r["step"], r["lr"]) for r in records(path, "step")]
    a, b = numbers(metrics_a), numbers(metrics_b)
    if not a or a != b:
        extra = [x for x in b if x not in a][:5]
        missing = [x for x in a if x not in b][:5]
        fail(f"{len(a)} and {len(b)} step records; only in the second {extra}, "
             f"missing from it {missing}")


def cmd_accuracy_near(metrics_a, metrics_b, points):
    """The last classifier accuracies of two runs differ by at most POINTS."""
    a, b = classifier_accuracy(metrics_a), classifier_accuracy(metrics_b)
    print(f"classifier {100 * a:.2f}% and {100 * b:.2f}%")
    if abs(a - b) * 100 > float(points):
        fail(f"classifier {100 * a:.2f}% and {100 * b:.2f}%: more than {points} points apart")


def cmd_status(path, phase, modules):
    """silactl status --json: the phase, K modules, a step within the run."""
    st = load_json(path)
    if st["phase"] != phase or st["modules"] != int(modules):
        fail(f"phase {st['phase']}, {st['modules']} modules; expected {phase}, {modules}")
    if not 0 < st["step"] <= st["total_steps"] or not 1 <= st["epoch"] <= st["epochs"]:
        fail(f"step {st['step']} of {st['total_steps']}, epoch {st['epoch']} of {st['epochs']}")
    if st["samples_per_s"] <= 0 or st["elapsed_s"] <= 0:
        fail(f"samples/s {st['samples_per_s']}, elapsed {st['elapsed_s']}")


def cmd_workers(path, rows):
    """silactl workers --json: one training row per worker, modules in order."""
    ws = load_json(path)["workers"]
    if len(ws) != int(rows):
        fail(f"{len(ws)} rows, expected {rows}")
    mods = [w["modules"] for w in ws]
    if mods[0][0] != 1 or any(a[1] + 1 != b[0] for a, b in zip(mods, mods[1:])):
        fail(f"module ranges {mods} do not cover the job in order")
    for w in ws:
        if w["state"] != "training" or w["pid"] <= 0 or w["step"] <= 0 or w["generation"] < 1:
            fail(f"implausible row {w}")
        if not 0 <= w["busy"] <= 1 or w["peak_rss_mb"] <= 0 or w["last_message_age_s"] < 0:
            fail(f"implausible row {w}")
        # loss and accuracy are the head's at the last step it learned,
        # even when the steps since were global ones it took no part in
        if w["loss"] is None or not 1 <= w["loss_step"] <= w["step"]:
            fail(f"no head loss, or one of no step of the run: {w}")
        if not 0 < w["accuracy"] <= 1:
            fail(f"implausible head accuracy: {w}")


def cmd_metrics(path, modules):
    """silactl metrics --json: increasing steps, a loss per module."""
    m = load_json(path)
    pts = m["points"]
    if not pts:
        fail("no points")
    steps = [p["step"] for p in pts]
    if steps != sorted(set(steps)) or any(len(p["loss"]) != int(modules) for p in pts):
        fail(f"points {pts}")


def cmd_flood(path):
    """tests/bench_rpc_load's record of a flood over silad's --rpc-rate: some
    replies said busy, some carried the status, none was another error."""
    rec = load_json(path)
    if not (rec["busy"] > 0 and rec["replies"] > rec["busy"] and rec["errors"] == 0):
        fail(f"flood: {rec}")


COMMANDS = {
    "status": cmd_status,
    "workers": cmd_workers,
    "metrics": cmd_metrics,
    "field": cmd_field,
    "loss-decreases": cmd_loss_decreases,
    "evals": cmd_evals,
    "saved-line": cmd_saved_line,
    "eval-matches": cmd_eval_matches,
    "inspect": cmd_inspect,
    "same-evals": cmd_same_evals,
    "eval-steps": cmd_eval_steps,
    "same-steps": cmd_same_steps,
    "same-step-numbers": cmd_same_step_numbers,
    "accuracy-near": cmd_accuracy_near,
    "flood": cmd_flood,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        fail(f"usage: {os.path.basename(sys.argv[0])} {'|'.join(COMMANDS)} ARGS...")
    try:
        COMMANDS[sys.argv[1]](*sys.argv[2:])
    except (OSError, KeyError, IndexError, TypeError) as e:
        fail(f"{sys.argv[1]}: {type(e).__name__}: {e}")
