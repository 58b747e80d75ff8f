#!/bin/bash
# The local objectives end to end (docs/methods.md): on a small residual
# job with drop-path, each objective trains --inproc and over spawned
# workers (one per module, and two workers) to bit-identical weights, with
# pgl too; the saved model has the parameters of a plain ce model (nothing
# of a twin or a second pass is left in it); every objective at weight 0
# writes the weights of plain ce; a run with an objective reports a loss
# that falls. (collab in distributed runs: distributed.sh; gradients and
# loss terms: test_objective.)
. "$(dirname "$0")/lib.sh"

: "${SILAWORKER:?SILAWORKER must name the silaworker executable}"
JOB=res3.ini
cat >"$JOB" <<'EOF'
[job]
name = res3
dataset = fmnist
epochs = 2
batch = 32
algorithm = local
train_limit = 320
test_limit = 128
period = 3
drop_path = 0.2
[optimizer]
lr = 0.05
momentum = 0.9
weight_decay = 5e-4
[module]
[conv2d]
out = 8
stride = 2
pad = 1
bias = false
[batchnorm]
[relu]
[block]
out = 8
[module]
[block]
out = 16
stride = 2
[module]
[block]
out = 16
[gap]
[linear]
out = 10
EOF

# field MODEL KEY: a field of silactl inspect --json.
field()
{
    "$SILACTL" inspect "$1" --json | python3 "$JSONCHECK" field - "$2"
}

silad_run ce "$JOB" || not_ok "ce: --inproc exits 0" ce.stderr
CE_SHA=$(sha_of ce/model.sila 2>/dev/null)
CE_PARAMS=$(field ce/model.sila parameters 2>/dev/null)

# name|overrides (space-separated)
CASES=(
    "sila-dml|objective.kind=sila objective.dml_weight=1 objective.temperature=3"
    "cosub|objective.kind=cosub"
    "penalties|objective.redundancy=0.1 objective.kernel_similarity=0.1"
    "pgl-sila|objective.kind=sila objective.dml_weight=0.5 job.algorithm=pgl"
)
for c in "${CASES[@]}"; do
    name=${c%%|*}
    sets=()
    for s in ${c#*|}; do sets+=(--set "$s"); done
    if ! silad_run "in-$name" "$JOB" "${sets[@]}"; then
        not_ok "$name: --inproc exits 0" "in-$name.stderr"
        continue
    fi
    check "$name: the model has the parameters of a ce model ($CE_PARAMS)" \
        test "$(field "in-$name/model.sila" parameters)" = "$CE_PARAMS"
    check "$name: weights differ from plain ce's" \
        test "$(sha_of "in-$name/model.sila" 2>/dev/null)" != "$CE_SHA"
    check_like_inproc "$name" "in-$name" "$JOB" "$name" "${sets[@]}"
done

# every objective at weight 0 is plain ce, bit for bit
ZERO=(
    "sila|objective.kind=sila objective.sila_weight=0 objective.dml_weight=0"
    "collab|objective.kind=collab objective.collab_beta=1"
    "cosub|objective.kind=cosub objective.cosub_weight=0"
    "penalties|objective.redundancy=0 objective.kernel_similarity=0"
)
for c in "${ZERO[@]}"; do
    name=${c%%|*}
    sets=()
    for s in ${c#*|}; do sets+=(--set "$s"); done
    if silad_run "zero-$name" "$JOB" "${sets[@]}"; then
        got=$(sha_of "zero-$name/model.sila" 2>/dev/null)
        echo "ce $CE_SHA, $name at 0 $got" >"zero-$name.sha"
        check "$name at weight 0: the weights of plain ce" test "$got" = "$CE_SHA"
    else
        not_ok "$name at weight 0: --inproc exits 0" "zero-$name.stderr"
    fi
done

# the objective's loss falls: module 1's reported loss, first step against last
check "sila-dml: module 1's loss falls over the run" python3 - in-sila-dml/metrics.jsonl <<'EOF'
import json, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if r.get("type") == "step"]
first, last = steps[0]["loss"][0], steps[-1]["loss"][0]
sys.exit(0 if last < first else f"loss {first} -> {last}")
EOF

done_testing
