#!/bin/bash
# A peer that breaks the protocol in the middle of a run (tests/fakepeer.c,
# joined as one module of a collab job beside a real silaworker) ends the
# run with a sentence naming the module and what was wrong, and every
# process exits by itself, none by a signal (docs/protocol.md, "Soft
# targets" and "What a receiver checks"): a last module whose report
# carries logits of the wrong count or not finite, another module whose
# report carries logits at all, and, upstream of a real worker, a training
# frame without the soft targets or 100 bytes of noise.
. "$(dirname "$0")/lib.sh"

: "${SILAWORKER:?SILAWORKER must name the silaworker executable}"
: "${FAKEPEER:?FAKEPEER must name the fakepeer executable}"
write_tiny_mlp tiny.ini
# 32 samples a step, 10 classes: the last module's report of a step
# carries 320 logits
RUN=(--rpc none --set objective.kind=collab --set job.epochs=1)

# misbehave NAME FAKE_MODULE REAL_MODULE HOW EXPECTED: one run of silad
# with the fake peer as one module and silaworker as the other; passes when
# silad fails saying EXPECTED (a grep -E pattern), the fake peer was told
# the run failed, and every process exited by itself.
misbehave()
{
    local name=$1 fake=$2 real=$3 how=$4 expected=$5 url=ipc://$TEST_TMP/$1.sock
    "$SILAD" --job tiny.ini --listen "$url" --out "$name" --worker-timeout 30 "${RUN[@]}" \
        >"$name.silad.out" 2>"$name.silad.err" &
    local silad=$!
    "$SILAWORKER" --module "$real" --connect "$url" --threads 1 --join-timeout 60 \
        >"$name.worker.out" 2>"$name.worker.err" &
    local worker=$!
    "$FAKEPEER" --module "$fake" --connect "$url" --misbehave "$how" \
        >"$name.fake.out" 2>"$name.fake.err" &
    local peer=$!
    ended $silad 90
    local st=$?
    ended $worker 30
    local wst=$?
    ended $peer 30
    local pst=$?
    if [ $st -ne 0 ] && [ $st -lt 128 ] && grep -Eq "$expected" "$name.silad.err" &&
        [ $pst -eq 0 ] && [ $wst -lt 128 ]; then
        ok "$name: silad fails the run saying so; the peers exit by themselves"
    else
        not_ok "$name: silad fails the run saying so (silad $st, worker $wst, fake peer $pst)" \
            "$name.silad.err" "$name.worker.err" "$name.fake.out" "$name.fake.err"
    fi
}

misbehave logits-count 2 1 logits-count "module 2 reported step 0 with 319 logits, expected 320"
misbehave logits-nan 2 1 logits-nan "module 2 reported step 0 with logits that are not all finite"
misbehave logits-extra 1 2 logits-extra "module 1 reported step 0 with 320 logits, expected 0"
misbehave no-targets 1 2 no-targets \
    "the worker for module 2 failed: upstream: training batch 0 without soft targets"
misbehave garbage 1 2 garbage "the worker for module 2 failed: upstream: [a-z]"
misbehave bf16 1 2 bf16 \
    "the worker for module 2 failed: upstream: frame: values in bf16, the plan says f32 here"
# the worker's sentence names the edge once, not the message it wraps again
check "a wrapped error reads once" bash -c \
    '! grep -q "upstream: upstream" garbage.silad.err garbage.worker.err'
done_testing
