#!/bin/bash
# The local objectives end to end (docs/methods.md): on a small residual
# job with drop-path, each objective and head kind trains --inproc and over
# spawned workers (one per module, and two workers) to bit-identical
# weights, with pgl too (InfoPro's reconstruction at module 2 needs the
# network's input there: the frames carry it from the first worker; MAN's
# snapshots travel upstream between workers); the
# saved model has the parameters of a plain ce model (nothing of a twin, a
# second pass, a decoder or a bigger head is left in it); every objective at weight 0
# writes the weights of plain ce; a run with an objective reports a loss
# that falls; collab's table holds each sample's own soft target. (collab
# in distributed runs: distributed.sh; gradients and loss terms:
# test_objective.)
. "$(dirname "$0")/lib.sh"

: "${SILAWORKER:?SILAWORKER must name the silaworker executable}"
JOB=res3.ini
write_res3 "$JOB"

silad_run ce "$JOB" || not_ok "ce: --inproc exits 0" ce.stderr
CE_SHA=$(sha_of ce/model.sila 2>/dev/null)
CE_PARAMS=$(field ce/model.sila parameters 2>/dev/null)

# name|overrides (space-separated)
CASES=(
    "sila-dml|objective.kind=sila objective.dml_weight=1 objective.temperature=3"
    "cosub|objective.kind=cosub"
    "penalties|objective.redundancy=0.1 objective.kernel_similarity=0.1"
    "pgl-sila|objective.kind=sila objective.dml_weight=0.5 job.algorithm=pgl"
    "dgl|objective.aux=dgl objective.aux_grid=4 objective.aux_hidden=32"
    "auglocal|objective.aux=auglocal objective.aux_depth=2"
    "infopro|objective.aux=infopro objective.aux_hidden=16 objective.recon_first=1 objective.recon_last=0.5 objective.task_first=0.5"
    "pgl-infopro-dgl|objective.aux=dgl objective.recon_first=0.5 objective.recon_last=0.5 job.algorithm=pgl"
    "man|objective.aux=dgl objective.aux_grid=4 objective.aux_hidden=32 objective.man_momentum=0.9 objective.man_period=2"
    "pgl-man-infopro|objective.man_momentum=0.8 objective.man_period=3 objective.recon_first=0.5 job.algorithm=pgl"
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
    "infopro|objective.recon_first=0 objective.recon_last=0 objective.task_first=1 objective.task_last=1"
    "man|objective.man_momentum=0 objective.man_period=7"
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

# MAN through a replaced worker: module 2's worker (it sends module 1 its
# snapshots and takes module 3's) is killed mid-run; its replacement starts
# from the newest checkpoint, sends its newest snapshot again and takes up
# module 3's, and the run completes with every step recorded once, as the
# fault-free run does (docs/protocol.md)
MAN=(--set objective.man_momentum=0.9 --set objective.man_period=2 --set job.algorithm=pgl
     --set job.epochs=40 --set job.checkpoint_every=8)
PORT=$(claim_ports 1) || exit 99
if silad_run man-ref "$JOB" "${MAN[@]}"; then
    "$SILAD" --job "$JOB" --spawn --threads 1 --out man-kill --rpc "tcp://127.0.0.1:$PORT" \
        "${MAN[@]}" >man-kill.stdout 2>man-kill.stderr &
    silad=$!
    past_step() {
        [ "$("$SILACTL" --connect "tcp://127.0.0.1:$PORT" status --json --timeout 2 |
            python3 "$JSONCHECK" field - step)" -ge 100 ] || ! kill -0 $silad
    }
    if wait_for 300 past_step; then
        victim=$(for p in $(pgrep -P $silad); do
            tr '\0' ' ' <"/proc/$p/cmdline" | grep -q -- '--module 2-2 ' && echo "$p"; done)
        kill -9 $victim
    fi
    ended $silad 300
    st=$?
    check "MAN: a killed worker is replaced and the run completes (exit $st)" \
        test "$st" -eq 0 -a "$(grep -c '^pipeline restarted' man-kill.stdout)" -eq 1
    check "MAN: every step is recorded once, as in the fault-free run" \
        python3 "$JSONCHECK" same-step-numbers man-ref/metrics.jsonl man-kill/metrics.jsonl
else
    not_ok "MAN, 40 epochs: --inproc exits 0" man-ref.stderr
fi

# the objective's loss falls: module 1's reported loss, first step against last
check "sila-dml: module 1's loss falls over the run" python3 - in-sila-dml/metrics.jsonl <<'EOF'
import json, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if r.get("type") == "step"]
first, last = steps[0]["loss"][0], steps[-1]["loss"][0]
sys.exit(0 if last < first else f"loss {first} -> {last}")
EOF

# collab learns each sample's own target: after 4 epochs of the tiny MLP
# on 2048 samples, the newest checkpoint's table has a target for every
# sample, and its argmax is the sample's label about as often as the
# classifier is right on the training data (a table learned from other
# samples' logits would agree about 10% of the time)
write_tiny_mlp tiny.ini
if silad_run tiny-collab tiny.ini --set objective.kind=collab --set job.train_limit=2048 \
    --set job.epochs=4 --set job.checkpoint_every=64; then
    ckpt=$(ls tiny-collab/checkpoints/*.ckpt | tail -n 1)
    tail -c +25 "$ckpt" | protoc --proto_path="$SILA_SOURCE_DIR/proto" \
        --decode=sila.Checkpoint "$SILA_SOURCE_DIR/proto/sila.proto" >ckpt.txt
    check "collab: every training sample's target is learned from its own logits" \
        python3 - ckpt.txt "$FMNIST_DIR" <<'EOF'
import gzip, os, sys
q = [float(l.split(":")[1]) for l in open(sys.argv[1]) if l.startswith("collab_targets:")]
p = os.path.join(sys.argv[2], "train-labels-idx1-ubyte")
labels = open(p, "rb").read() if os.path.exists(p) else gzip.open(p + ".gz").read()
labels = labels[8:]
C, n = 10, len(q) // 10
rows = [q[i * C:(i + 1) * C] for i in range(n)]
assert n == 2048, f"{n} rows"
assert all(abs(sum(r) - 1) < 1e-3 for r in rows), "a row without a target"
agree = sum(r.index(max(r)) == labels[i] for i, r in enumerate(rows)) / n
print(f"argmax = label for {agree:.3f} of the samples")
sys.exit(0 if agree > 0.5 else f"argmax = label for only {agree:.3f}")
EOF
else
    not_ok "collab on the tiny MLP: --inproc exits 0" tiny-collab.stderr
fi

done_testing
