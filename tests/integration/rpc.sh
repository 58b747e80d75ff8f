#!/bin/bash
# The RPC of a running distributed run, through silactl and by hand: every
# read method answers with plausible values while training goes on; pause
# stops progress and resume restarts it; bad requests (garbage, oversized,
# another version, no method) get error replies while training continues;
# the documented nanocat + protoc recipe works; workers rows keep their
# heads' last loss through global steps; a flood of reads beyond
# --rpc-rate gets busy replies while pause and resume are still served,
# and reads answer again after it; stop saves a model that evaluates;
# silactl names an endpoint where nobody answers.
. "$(dirname "$0")/lib.sh"

: "${SILAWORKER:?SILAWORKER must name the silaworker executable}"
: "${RPC_LOAD:?RPC_LOAD must name tests/bench_rpc_load}"
export SILAWORKER
PROTO_DIR=$SILA_SOURCE_DIR/proto
PORT=$(claim_ports 1) || exit 99
EP=tcp://127.0.0.1:$PORT
ctl() { "$SILACTL" --connect "$EP" "$@"; }
step_now() { ctl status --json | python3 "$JSONCHECK" field - step; }

# systemd's notification socket, played by a datagram listener
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "w") as f:
    while True:
        f.write(s.recv(4096).decode() + "\n---\n")
        f.flush()
' "$TEST_TMP/notify.sock" notify.log &
notifier=$!
for _ in $(seq 50); do [ -S "$TEST_TMP/notify.sock" ] && break; sleep 0.1; done
NOTIFY_SOCKET=$TEST_TMP/notify.sock \
"$SILAD" --job "$JOBS_DIR/fmnist-cnn-k4.ini" --spawn --threads 1 --rpc "$EP" --out run \
    --set job.train_limit=9600 --set job.test_limit=500 --set job.batch=32 --set job.epochs=4 \
    --set job.global_ramp=false \
    >run.stdout 2>run.stderr &
silad=$!
flood=
trap 'kill $silad $notifier $flood 2>/dev/null; rm -rf "$TEST_TMP"' EXIT
for _ in $(seq 100); do grep -q "^job fmnist-cnn-k4" run.stdout && break; sleep 0.2; done
sleep 2

if ctl status --json >status.json 2>status.err &&
    python3 "$JSONCHECK" status status.json training 4 >check.out 2>&1; then
    ok "status: job, phase training, 4 modules, step within the run"
else
    not_ok "status answers" status.err check.out status.json
fi
# half the steps are global (no ramp), and modules 1 to 3 take no part in
# them with their heads: sampled a few times, a row's loss is still its
# head's last one, never NaN (the rows in module order)
for i in 1 2 3 4 5; do
    ctl workers --json >workers$i.json 2>>workers.err
    ctl workers >>workers.txt 2>&1
    sleep 0.3
done
check "workers: 4 rows in module order, each training, each with its head's last loss" \
    bash -c 'for i in 1 2 3 4 5; do python3 "$0" workers workers$i.json 4 || exit 1; done' \
    "$JSONCHECK"
check "workers prints a table" grep -q "^modules .*samples/s" workers.txt
check "workers prints no nan" bash -c '! grep -qi nan workers.txt'

ctl pause >pause.out 2>&1
check "pause is acknowledged" grep -q "^paused at step" pause.out
sleep 2 # the batches in flight finish
s1=$(step_now)
sleep 3
s2=$(step_now)
if [ -n "$s1" ] && [ "$s1" = "$s2" ]; then
    ok "paused: no progress in 3 s (step $s1)"
else
    not_ok "paused: no progress in 3 s (step $s1 then $s2)"
fi
check "status says paused" sh -c "'$SILACTL' --connect $EP status | grep -q ': paused'"
ctl resume >resume.out 2>&1
check "resume is acknowledged" grep -q "^resumed at step" resume.out
sleep 3
s3=$(step_now)
if [ -n "$s3" ] && [ "$s3" -gt "$s2" ]; then
    ok "resumed: steps go on ($s2 -> $s3)"
else
    not_ok "resumed: steps go on ($s2 -> $s3)"
fi

# ---- a flood of reads beyond the default --rpc-rate (100 a second)
"$RPC_LOAD" "$EP" 1000 400 >flood.json 2>flood.err &
flood=$!
sleep 0.5 # past the burst of 100
for _ in 1 2 3; do
    ctl pause
    ctl resume
done >flood-control.out 2>&1
check "during the flood pause and resume are served (a budget of their own)" \
    test "$(grep -c '^paused at step\|^resumed at step' flood-control.out)" = 6
wait $flood
flood=
check "the flood got busy replies and statuses, no other error" \
    python3 "$JSONCHECK" flood flood.json
sleep 1 # the budget fills up again
check "after the flood status answers" ctl status

# ---- by hand, as docs/rpc.md shows, and bad requests
echo 'version: 1 status {}' |
    protoc --proto_path="$PROTO_DIR" --encode=sila.Request "$PROTO_DIR/sila.proto" >req.bin
nanocat --req --connect "$EP" --file req.bin --raw --recv-timeout 5 >reply.bin 2>nanocat.err
protoc --proto_path="$PROTO_DIR" --decode=sila.Reply "$PROTO_DIR/sila.proto" <reply.bin \
    >reply.txt 2>&1
check "nanocat + protoc: a status request gets the status" grep -q 'job: "fmnist-cnn-k4"' reply.txt

# bad_request NAME FILE WORDS: FILE sent raw gets an error reply saying WORDS
bad_request()
{
    nanocat --req --connect "$EP" --file "$2" --raw --recv-timeout 5 2>/dev/null |
        protoc --proto_path="$PROTO_DIR" --decode=sila.Reply "$PROTO_DIR/sila.proto" >"$1.txt" 2>&1
    check "$1: error reply" grep -q "error: \".*$3" "$1.txt"
}
printf 'garbage, not protobuf \377\377' >garbage.bin
bad_request garbage garbage.bin "does not decode"
head -c 100000 /dev/zero >big.bin
bad_request oversized big.bin "at most 65536"
printf '\010\002\022\000' >v2.bin
bad_request "version 2" v2.bin "RPC version 2"
printf '\010\001\242\001\000' >nomethod.bin
bad_request "unknown method" nomethod.bin "names no method"
s4=$(step_now)
sleep 2
s5=$(step_now)
if [ -n "$s5" ] && [ "$s5" -gt "$s4" ] && kill -0 $silad 2>/dev/null; then
    ok "after the bad requests silad still trains ($s4 -> $s5)"
else
    not_ok "after the bad requests silad still trains ($s4 -> $s5)" run.stderr
fi

ctl metrics --json >metrics.json 2>metrics.err
check "metrics: step records with a loss per module" \
    python3 "$JSONCHECK" metrics metrics.json 4

ctl checkpoint >ckpt.out 2>&1
check "checkpoint is acknowledged with the path it will have" \
    grep -q "^checkpoint at the next step boundary: run/checkpoints/step-" ckpt.out
for _ in $(seq 50); do [ -s run/checkpoints/MANIFEST ] && break; sleep 0.2; done
check "status names the checkpoint written" \
    sh -c "'$SILACTL' --connect $EP status | grep -q '^last checkpoint: run/checkpoints/step-'"

ctl metrics --prometheus >prom.txt 2>prom.err
check "prometheus: the run's counters" grep -q '^sila_steps_done_total{job="fmnist-cnn-k4"} [0-9]' prom.txt
check "prometheus: a busy ratio per worker" \
    test "$(grep -c '^sila_worker_busy_ratio{job="fmnist-cnn-k4",module="[1-4]"' prom.txt)" = 4

ctl stop >stop.out 2>&1
check "stop is acknowledged" grep -q "^stopping after step" stop.out
timeout 120 tail --pid=$silad -f /dev/null
wait $silad
st=$?
if [ "$st" -eq 0 ] && [ -s run/model.sila ]; then
    ok "stop: silad saves the model and exits 0"
else
    not_ok "stop: silad saves the model and exits 0 (exit $st)" run.stderr
fi
check "the stopped run's model evaluates" "$SILACTL" eval run/model.sila
"$SILACTL" plot run/metrics.jsonl -o curves.png >plot.out 2>&1
check "plot draws a PNG of the run's curves" sh -c 'head -c 4 curves.png | grep -q PNG'
"$SILACTL" plot run/metrics.jsonl -o curves.svg >plot.out 2>&1
check "plot draws an SVG too" grep -q "<svg" curves.svg
check "systemd is told READY=1" grep -qx "READY=1" notify.log
check "systemd's status line shows the epoch and step" \
    grep -q "^STATUS=training, epoch [1-4]/4, step [0-9]*/1200" notify.log
check "systemd is told the run finished" grep -q "^STATUS=finished" notify.log

# ---- nobody there
"$SILACTL" --connect "$EP" status --timeout 1 >gone.out 2>gone.err
check "no daemon: silactl says where nobody answered" grep -q "no silad answered at $EP" gone.err
"$SILACTL" --connect udp://nowhere:1 status >badep.out 2>badep.err
check "a bad endpoint is named" grep -q "udp://nowhere:1" badep.err

done_testing
