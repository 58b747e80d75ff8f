#!/bin/bash
# The model may end at a head (job.deploy, docs/jobs.md): on a small
# residual job with DGL heads, best_head picks the exit most accurate on the
# held-out samples, in process and over spawned workers alike (the same
# weights); the saved model is that exit's network and classifies the test
# samples exactly as the run's evaluation of that exit did (silactl eval),
# costs less than the whole network, and silactl inspect says which exit,
# what it costs and every exit's accuracies; head:N takes module N's head;
# a head behind MAN's copies, which a model file cannot hold, is refused
# before training. (The held-out split's place in the data: test_job.)
. "$(dirname "$0")/lib.sh"

: "${SILAWORKER:?SILAWORKER must name the silaworker executable}"
JOB=res3.ini
write_res3 "$JOB"
# DGL heads, 256 test samples and 256 held out
SETS=(--set objective.aux=dgl --set objective.aux_grid=4 --set objective.aux_hidden=32
      --set job.test_limit=256 --set job.holdout=256)
make_test_subset test256 256

# exit_checks NAME WANT: the run in NAME saved the exit WANT ("best": the
# one best_head must take from the last evaluation's held-out figures;
# else a module number) and its model matches the run's figures.
exit_checks()
{
    local name=$1 want=$2
    "$SILACTL" inspect "$name/model.sila" --json >"$name.inspect.json" 2>"$name.inspect.err" ||
        { not_ok "$name: silactl inspect reads the model" "$name.inspect.err"; return; }
    "$SILACTL" eval "$name/model.sila" --data fmnist:test256 --json >"$name.eval.json" \
        2>"$name.eval.err" || { not_ok "$name: silactl eval runs the model" "$name.eval.err"; return; }
    check "$name: exit, cost and accuracies in model file, metrics and eval agree" \
        python3 - "$name" "$want" <<'EOF'
import json, sys
name, want = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for l in open(f"{name}/metrics.jsonl")]
last = [r for r in recs if r["type"] == "eval"][-1]
model = [r for r in recs if r["type"] == "model"][-1]
ins = json.load(open(f"{name}.inspect.json"))
ev = json.load(open(f"{name}.eval.json"))
K = len(last["accuracy"])
exit_module = ins["exit_module"]
k = exit_module - 1 if exit_module else K - 1
held = last["holdout"]
print(f"exit {exit_module} of {K}; held-out {held}; test {last['accuracy']}")
if want == "best":
    assert held[k] == max(held), f"exit {k + 1} is not the best held out"
else:
    assert exit_module == int(want), f"exit {exit_module}, wanted {want}"
assert model["exit_module"] == exit_module == ev["exit_module"], (model, ev)
assert ins["modules"] == K and len(ins["exits"]) == K
near = lambda a, b: len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b))
assert near([e["test"] for e in ins["exits"]], last["accuracy"]), "the file's test accuracies"
assert near([e["holdout"] for e in ins["exits"]], held), "the file's held-out accuracies"
assert ev["correct"] == round(last["accuracy"][k] * 256), \
    f"silactl eval: {ev['correct']} right, the run's evaluation {last['accuracy'][k] * 256}"
assert abs(ins["accuracy"] - last["accuracy"][k]) < 1e-6
assert ins["parameters"] == model["parameters"] and ins["macs"] == model["macs"]
assert ins["full_parameters"] == model["full_parameters"]
if exit_module:
    assert ins["macs"] < ins["full_macs"], "a head's exit costs less than the whole network"
EOF
}

if silad_run best "$JOB" "${SETS[@]}" --set job.deploy=best_head; then
    ok "best_head: --inproc exits 0"
    exit_checks best best
    check "best_head: the saved line names the exit" \
        grep -E "^model saved to best/model.sila: (head of module [12]|classifier), test accuracy" \
        best.stdout
else
    not_ok "best_head: --inproc exits 0" best.stderr
fi
if spawn_run best-spawn "$JOB" --spawn "${SETS[@]}" --set job.deploy=best_head; then
    check_same_run "best_head over --spawn as --inproc" best best-spawn
else
    not_ok "best_head: --spawn exits 0" best-spawn.stderr
fi

if silad_run head1 "$JOB" "${SETS[@]}" --set job.deploy=head:1; then
    exit_checks head1 1
    check "head:1: the model is module 1's layers and its head" \
        test "$(field head1/model.sila parameters)" -lt "$(field head1/model.sila full_parameters)"
else
    not_ok "head:1: --inproc exits 0" head1.stderr
fi

silad_run man "$JOB" "${SETS[@]}" --set job.deploy=head:1 --set objective.man_momentum=0.9
check "a head behind MAN is refused before training, naming the key" \
    grep -q "\[job\] deploy: module 1's head reads MAN's two parallel copies" man.stderr
check "  ... and no model is written" test ! -e man/model.sila

done_testing
