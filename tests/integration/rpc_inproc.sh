#!/bin/bash
# The RPC of an in-process run (silad --inproc): status and a one-row
# workers table while it trains; pause holds it, resume goes on, and a run
# paused and resumed ends with the weights of one that was not; a
# checkpoint asked for by RPC is written and resumes to those weights too;
# a run flooded with reads beyond its --rpc-rate answers busy, silactl
# watch rides it out, and the run ends with the same weights too; stop
# saves a model that evaluates.
. "$(dirname "$0")/lib.sh"

: "${RPC_LOAD:?RPC_LOAD must name tests/bench_rpc_load}"

EP=ipc://$TEST_TMP/rpc.sock
ctl() { "$SILACTL" --connect "$EP" "$@"; }
step_now() { ctl status --json | python3 "$JSONCHECK" field - step; }
SETS=(--set job.train_limit=2560 --set job.test_limit=200 --set job.batch=32 --set job.epochs=2)
JOB=$JOBS_DIR/fmnist-cnn-k4.ini

# resume_to_the_end RUN STEP: resumes the paused run $silad writing RUN/
# (STEP: a pattern of the step it was paused at), which goes on to its end
# with the weights of the run without requests
resume_to_the_end()
{
    ctl resume >resume.out 2>&1
    check "$1: resume is acknowledged" grep -q "^resumed at step $2\$" resume.out
    if ended $silad 120; then
        ok "$1: the paused run goes on to its end"
    else
        not_ok "$1: the paused run goes on to its end" "$1.stderr"
    fi
    check "$1: the weights of the run without requests" \
        test "$(sha_of "$1/model.sila")" = "$(sha_of plain/model.sila)"
}

silad_run plain "$JOB" "${SETS[@]}"
check "the run without requests trains" test "$(cat plain.status)" = 0

"$SILAD" --job "$JOB" --inproc --out held --threads 1 --rpc "$EP" "${SETS[@]}" \
    >held.stdout 2>held.stderr &
silad=$!
watcher=
trap 'kill $silad $watcher 2>/dev/null; rm -rf "$TEST_TMP"' EXIT
wait_for 60 sh -c "[ \"\$('$SILACTL' --connect $EP status --json | python3 '$JSONCHECK' field - step)\" -gt 0 ]"
if ctl status --json >status.json 2>status.err &&
    python3 "$JSONCHECK" status status.json training 4 >check.out 2>&1; then
    ok "status: job, phase training, 4 modules, step within the run"
else
    not_ok "status answers" status.err check.out status.json held.stderr
fi
ctl workers --json >workers.json 2>workers.err
check "workers: the process, one row holding the 4 modules" \
    python3 "$JSONCHECK" workers workers.json 1

ctl pause >pause.out 2>&1
check "pause is acknowledged" grep -q "^paused at step" pause.out
s1=$(step_now)
sleep 2
s2=$(step_now)
if [ -n "$s1" ] && [ "$s1" = "$s2" ]; then
    ok "paused: no progress in 2 s (step $s1)"
else
    not_ok "paused: no progress in 2 s (step $s1 then $s2)"
fi
check "status says paused" sh -c "'$SILACTL' --connect $EP status | grep -q ': paused'"
ctl checkpoint >ckpt.out 2>&1
check "checkpoint is acknowledged with its path" \
    grep -q "^checkpoint at this step boundary: held/checkpoints/step-0*$s1.ckpt" ckpt.out
wait_for 10 test -s held/checkpoints/MANIFEST
check "the checkpoint is written while paused" test -s "held/checkpoints/step-$(printf %010d "$s1").ckpt"
check "status names it" sh -c "'$SILACTL' --connect $EP status | grep -q '^last checkpoint: held/checkpoints/step-'"
cp -r held resumed
resume_to_the_end held "$s1"

"$SILAD" --job "$JOB" --inproc --out resumed --threads 1 --rpc none --resume "${SETS[@]}" \
    >resumed.stdout 2>resumed.stderr
check "resumed from the checkpoint asked for: exit 0" test $? = 0
check "resumed from it: the same weights again" \
    test "$(sha_of resumed/model.sila)" = "$(sha_of plain/model.sila)"

# ---- floods of reads beyond --rpc-rate 2: while it trains (served between
# steps), then while it is paused (served at once) with silactl watch beside
"$SILAD" --job "$JOB" --inproc --out flooded --threads 1 --rpc "$EP" --rpc-rate 2 "${SETS[@]}" \
    >flooded.stdout 2>flooded.stderr &
silad=$!
wait_for 60 grep -q "serving the RPC" flooded.stdout
"$RPC_LOAD" "$EP" 1000 6 >flood-training.json 2>flood.err
check "training: the flood got busy replies and statuses, no other error" \
    python3 "$JSONCHECK" flood flood-training.json
ctl pause >pause.out 2>&1
check "after the flood pause is served" grep -q "^paused at step" pause.out
"$SILACTL" --connect "$EP" watch >watch.out 2>&1 &
watcher=$!
"$RPC_LOAD" "$EP" 1000 16 >flood-paused.json 2>>flood.err
check "paused: the flood got busy replies and statuses, no other error" \
    python3 "$JSONCHECK" flood flood-paused.json
# a busy line, then a status drawn after it
BUSY="silactl: $EP: busy: over the limit of 2 read requests a second (silad --rpc-rate); ask again in"
drawn_after_busy() { awk -v busy="$BUSY" 'index($0, busy) == 1 { b = 1 } b && /^job fmnist-cnn-k4/ { d = 1 } END { exit !d }' watch.out; }
if wait_for 30 drawn_after_busy; then
    ok "watch says silad is busy, and why, and draws the status at a later tick"
else
    not_ok "watch says silad is busy, and why, and draws the status at a later tick" watch.out
fi
kill $watcher
wait $watcher 2>/dev/null
watcher=
sleep 1 # the budget fills up again
check "after the floods status answers" sh -c "'$SILACTL' --connect $EP status | grep -q ': paused'"
resume_to_the_end flooded "[0-9]*"

"$SILAD" --job "$JOB" --inproc --out stopped --threads 1 --rpc "$EP" "${SETS[@]}" \
    >stopped.stdout 2>stopped.stderr &
silad=$!
wait_for 60 sh -c "[ \"\$('$SILACTL' --connect $EP status --json | python3 '$JSONCHECK' field - step)\" -gt 2 ]"
ctl stop >stop.out 2>&1
check "stop is acknowledged" grep -q "^stopping after step [0-9]*: the model is saved to stopped/model.sila" stop.out
if ended $silad 60 && [ -s stopped/model.sila ]; then
    ok "stop: silad saves the model and exits 0"
else
    not_ok "stop: silad saves the model and exits 0" stopped.stderr
fi
check "the stopped run's model evaluates" "$SILACTL" eval stopped/model.sila
"$SILAD" --job "$JOB" --inproc --out taken --threads 1 --rpc "$EP" "${SETS[@]}" --set job.epochs=1 \
    >taken.stdout 2>taken.stderr &
other=$!
wait_for 30 grep -q "serving the RPC" taken.stdout
"$SILAD" --job "$JOB" --inproc --out second --threads 1 --rpc "$EP" "${SETS[@]}" \
    >second.stdout 2>second.stderr
st=$?
check "an --rpc endpoint in use is an error naming it" \
    sh -c "[ $st != 0 ] && grep -q -- '--rpc: .*rpc.sock' second.stderr"
kill $other 2>/dev/null
wait $other 2>/dev/null

done_testing
