#!/bin/bash
# Checkpoints and resume: a run killed with -9 after a checkpoint and
# resumed with --resume ends with the weights and evaluations of the same
# run uninterrupted, in process (local, pgl) and over spawned workers (pgl,
# and local with the collab objective, whose soft targets the checkpoint
# carries; the coordinator killed: its workers die with it). A checkpoint being
# written when the kill came is never loaded; a damaged one, or one of
# another plan, is refused with a message naming it. A run that diverges
# (NaN or infinity) stops naming the module and step, in process and over
# workers, and its last good checkpoint stays the newest.
. "$(dirname "$0")/lib.sh"

: "${SILAWORKER:?SILAWORKER must name the silaworker executable}"
export SILAWORKER
: >children
JOB=$JOBS_DIR/fmnist-cnn-k4.ini
SMALL=(--set job.train_limit=512 --set job.test_limit=256 --set job.batch=32
       --set job.epochs=3 --set job.period=4 --set job.global_steps=1 --set job.global_ramp=false
       --set job.checkpoint_every=8)

# interrupted NAME MODE ALGO [ARG...]: trains into NAME, kill -9 once the
# checkpoint after step 24 is reported, resumes; NAME.status holds the
# resume's status.
interrupted()
{
    local name=$1 mode=$2 algo=$3
    shift 3
    "$SILAD" --job "$JOB" "$mode" --threads 1 --out "$name" --rpc none "${SMALL[@]}" \
        --set "job.algorithm=$algo" "$@" >"$name.stdout" 2>"$name.stderr" &
    local pid=$!
    for _ in $(seq 600); do grep -q "checkpoint after step 24" "$name.stdout" && break; sleep 0.05; done
    pgrep -P $pid >>children # spawned workers, which must die with it
    kill -9 $pid
    wait $pid 2>/dev/null
    "$SILAD" --job "$JOB" "$mode" --threads 1 --resume "$name" --rpc none "${SMALL[@]}" \
        --set "job.algorithm=$algo" "$@" >"$name.resume.stdout" 2>"$name.resume.stderr"
    echo $? >"$name.status"
}

# the checkpoint after step 24 lies inside epoch 2 (16 steps an epoch): a
# collab run resumed there needs the soft targets learned so far
# evaluations within epochs (rounds of 5, 5, 6 steps): step 24 lies inside
# the round that ends at 26
for run in "inproc local --inproc" "inproc pgl --inproc" "spawn pgl --spawn=2" \
    "spawn-collab local --spawn=2 --set objective.kind=collab" \
    "inproc-rounds pgl --inproc --set job.evals_per_epoch=3" \
    "spawn-rounds pgl --spawn=2 --set job.evals_per_epoch=3"; do
    set -- $run
    name=$1-$2 mode=$3 algo=$2
    shift 3
    "$SILAD" --job "$JOB" "$mode" --threads 1 --out "$name-whole" --rpc none "${SMALL[@]}" \
        --set "job.algorithm=$algo" "$@" >"$name-whole.stdout" 2>"$name-whole.stderr" ||
        not_ok "$name: the uninterrupted run exits 0" "$name-whole.stderr"
    interrupted "$name" "$mode" "$algo" "$@"
    if [ "$(cat "$name.status")" = 0 ] && grep -q "resuming from .*step-0000000024.ckpt" \
        "$name.resume.stdout"; then
        ok "$name: killed after step 24, resumed from that checkpoint, exits 0"
    else
        not_ok "$name: resumed from the checkpoint after step 24" "$name.resume.stderr" \
            "$name.resume.stdout"
    fi
    check_same_run "$name: resumed against uninterrupted" "$name-whole" "$name"
done
sleep 0.5
left=""
for pid in $(cat children); do kill -0 "$pid" 2>/dev/null && left="$left $pid"; done
if [ -s children ] && [ -z "$left" ]; then
    ok "the workers of the killed coordinator died with it"
else
    not_ok "the workers of the killed coordinator died with it (left:${left:- none})"
fi

# a kill in the middle of writing leaves a temporary file: never loaded
cp -r inproc-pgl partial
printf 'half a checkpoint' >"partial/checkpoints/step-0000000040.ckpt.tmp.12345"
"$SILAD" --job "$JOB" --inproc --threads 1 --rpc none --resume partial "${SMALL[@]}" \
    --set job.algorithm=pgl >partial.stdout 2>partial.stderr
check "a half-written checkpoint is ignored; the manifest's newest is used" \
    grep -q "resuming from .*step-0000000040.ckpt:" partial.stdout
check "... and the run still ends with the same weights" \
    test "$(sha_of partial/model.sila)" = "$(sha_of inproc-pgl-whole/model.sila)"

# damaged, or of another plan
cp -r inproc-pgl damaged
newest=damaged/checkpoints/$(cat damaged/checkpoints/MANIFEST)
damage_byte "$newest" 200
"$SILAD" --job "$JOB" --inproc --threads 1 --rpc none --resume damaged "${SMALL[@]}" \
    --set job.algorithm=pgl >damaged.stdout 2>damaged.stderr
st=$?
if [ "$st" -eq 1 ] && grep -q "step-0000000040.ckpt: checksum mismatch" damaged.stderr; then
    ok "a damaged checkpoint is refused, named"
else
    not_ok "a damaged checkpoint is refused, named (exit $st)" damaged.stderr
fi
"$SILAD" --job "$JOB" --inproc --threads 1 --rpc none --resume inproc-local "${SMALL[@]}" \
    --set job.algorithm=pgl --set job.seed=2 >other.stdout 2>other.stderr
check "a checkpoint of another plan is refused" grep -q "a checkpoint of another plan" other.stderr
"$SILAD" --job "$JOB" --inproc --threads 1 --rpc none --resume nowhere "${SMALL[@]}" >none.out 2>none.err
check "--resume without a checkpoint says so" grep -q "no checkpoint recorded" none.err

# a learning rate that makes the weights overflow after the first steps
for mode in --inproc --spawn=2; do
    name=diverged${mode#--}
    "$SILAD" --job "$JOB" "$mode" --threads 1 --out "$name" --rpc none "${SMALL[@]}" \
        --set job.checkpoint_every=1 --set optimizer.lr=1e30 >"$name.stdout" 2>"$name.stderr"
    st=$?
    if [ $st -ne 0 ] &&
        grep -qE "module [1-4]: NaN or infinite values in its (output|input gradient) at step [0-9]+: the training diverged" \
            "$name.stderr"; then
        ok "$mode: a diverging run stops, naming the module and the step"
    else
        not_ok "$mode: a diverging run stops, naming the module and the step (exit $st)" \
            "$name.stderr"
    fi
    step=$(grep -oE "at step [0-9]+" "$name.stderr" | head -1 | grep -oE "[0-9]+")
    if [ -n "$step" ] && [ "$step" -ge 1 ] &&
        [ "$(tail -n 1 "$name/checkpoints/MANIFEST" 2>/dev/null)" = "$(printf 'step-%010d.ckpt' "$step")" ]
    then
        ok "$mode: its newest checkpoint is the one before the bad step ($step)"
    else
        not_ok "$mode: its newest checkpoint is the one before the bad step (step ${step:-?})" \
            "$name.stdout"
    fi
done

done_testing
