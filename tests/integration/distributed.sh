#!/bin/bash
# Distributed runs against the in-process reference, and the ways workers
# join: the same job and seed trained --inproc and over spawned workers (one
# per module, and two workers hosting 2+2 modules) writes bit-identical
# weights for e2e, local and pgl, for e2e and pgl whose global steps are
# learned late (job.global_lag), and for the collab objective (whose soft
# targets travel with the batches) with local and pgl; workers started by
# hand join silad
# --listen over tcp on a non-default address and port, one of them before
# silad is up; a second worker claiming a taken module, a bad --connect and
# a range beyond the job are refused with messages naming what is wrong;
# a frozen worker not replaced in time makes silad fail naming it instead
# of hanging; silad stopped by a signal leaves no worker behind.
# (Workers replaced in place: faults.sh.)
. "$(dirname "$0")/lib.sh"

: "${SILAWORKER:?SILAWORKER must name the silaworker executable}"
JOB=$JOBS_DIR/fmnist-cnn-k4.ini
SMALL=(--set job.train_limit=512 --set job.test_limit=256 --set job.batch=32
       --set job.epochs=2 --set job.period=4 --set job.global_steps=1
       --set job.global_ramp=false)

for algo in e2e local pgl; do
    silad_run "in-$algo" "$JOB" "${SMALL[@]}" --set "job.algorithm=$algo" ||
        not_ok "$algo: --inproc exits 0" "in-$algo.stderr"
    check_like_inproc "$algo" "in-$algo" "$JOB" "$algo" "${SMALL[@]}" --set "job.algorithm=$algo"
done
# late global steps (job.global_lag): each gradient travels upstream while
# later batches go down, and is learned at the step the plan says
LAG=(--set job.global_lag=2)
for algo in e2e pgl; do
    silad_run "in-lag-$algo" "$JOB" "${SMALL[@]}" "${LAG[@]}" --set "job.algorithm=$algo" ||
        not_ok "lag $algo: --inproc exits 0" "in-lag-$algo.stderr"
    lagged=$(sha_of "in-lag-$algo/model.sila" 2>/dev/null)
    plain=$(sha_of "in-$algo/model.sila" 2>/dev/null)
    if [ -n "$lagged" ] && [ "$lagged" != "$plain" ]; then
        ok "lag $algo: late global steps change the weights (--inproc)"
    else
        not_ok "lag $algo: late global steps change the weights (--inproc: $lagged, at once: $plain)"
    fi
    check_like_inproc "lag $algo" "in-lag-$algo" "$JOB" "lag-$algo" "${SMALL[@]}" "${LAG[@]}" \
        --set "job.algorithm=$algo"
done
# a residual job, whose modules begin with a block: a block keeps its
# input for the backward, which comes steps later
write_res3 res3.ini
RLAG=(--set job.algorithm=pgl --set job.global_lag=1)
silad_run in-lag-res3 res3.ini "${RLAG[@]}" || not_ok "lag res3: --inproc exits 0" in-lag-res3.stderr
check_like_inproc "lag res3" in-lag-res3 res3.ini lag-res3 "${RLAG[@]}"
# evaluations within epochs (job.evals_per_epoch): 16 steps an epoch cut
# into rounds of 5, 5 and 6, each closed by an evaluation that drains the
# pipeline; the weights are those of one evaluation an epoch
ROUNDS=(--set job.evals_per_epoch=3 --set job.algorithm=pgl)
silad_run in-rounds "$JOB" "${SMALL[@]}" "${ROUNDS[@]}" || not_ok "rounds: --inproc exits 0" \
    in-rounds.stderr
check "rounds: evaluations after steps 5, 10, 16, 21, 26, 32 (--inproc)" \
    python3 "$JSONCHECK" eval-steps in-rounds/metrics.jsonl 16 5 10 16 21 26 32
if [ -n "$(sha_of in-rounds/model.sila 2>/dev/null)" ] &&
    [ "$(sha_of in-rounds/model.sila)" = "$(sha_of in-pgl/model.sila)" ]; then
    ok "rounds: the weights of one evaluation an epoch"
else
    not_ok "rounds: the weights of one evaluation an epoch"
fi
check_like_inproc "rounds" in-rounds "$JOB" rounds "${SMALL[@]}" "${ROUNDS[@]}"
# collab: the coordinator learns the soft targets from the last worker's
# logits and sends them with the batches. Epoch 1 has no evaluation (which
# would drain the pipeline anyway): epoch 2's targets match --inproc's only
# when silad learns every step of epoch 1 before it fills epoch 2's.
COLLAB=(--set objective.kind=collab --set job.eval_every=2)
for algo in local pgl; do
    silad_run "in-collab-$algo" "$JOB" "${SMALL[@]}" "${COLLAB[@]}" --set "job.algorithm=$algo" ||
        not_ok "collab $algo: --inproc exits 0" "in-collab-$algo.stderr"
    ref=$(sha_of "in-collab-$algo/model.sila" 2>/dev/null)
    plain=$(sha_of "in-$algo/model.sila" 2>/dev/null)
    if [ -n "$ref" ] && [ "$ref" != "$plain" ]; then
        ok "collab $algo: the soft targets change the weights (--inproc)"
    else
        not_ok "collab $algo: the soft targets change the weights (--inproc: $ref, ce: $plain)"
    fi
    check_like_inproc "collab $algo" "in-collab-$algo" "$JOB" "collab-$algo" "${SMALL[@]}" \
        "${COLLAB[@]}" --set "job.algorithm=$algo"
done
# the MLP's modules are megabytes: their states exceed a plain control
# frame when collected at the end
MLP=$JOBS_DIR/fmnist-mlp.ini
MSMALL=(--set job.train_limit=256 --set job.test_limit=128 --set job.epochs=1)
silad_run mlp-in "$MLP" "${MSMALL[@]}" || not_ok "mlp: --inproc exits 0" mlp-in.stderr
timeout 120 "$SILAD" --job "$MLP" --spawn=2 --threads 1 --out mlp-sp "${MSMALL[@]}" \
    >mlp-sp.stdout 2>mlp-sp.stderr
st=$?
if [ $st -eq 0 ] && [ "$(sha_of mlp-sp/model.sila)" = "$(sha_of mlp-in/model.sila)" ]; then
    ok "mlp (8 MB module states): --spawn=2 ends, with --inproc's weights"
else
    not_ok "mlp (8 MB module states): --spawn=2 ends, with --inproc's weights (exit $st)" \
        mlp-sp.stderr
fi
check "--spawn=2: each worker reports its busy share, bytes and memory" \
    grep -q '"type":"worker","modules":\[3,4\]' spawn=2-local/metrics.jsonl

# ---- workers started by hand, over tcp on 127.0.0.2 (another address of
# the loopback) and a port of this test's
PORT=$(claim_ports 340) || exit 99
URL=tcp://127.0.0.2:$PORT
"$SILAWORKER" --module 1 --connect "$URL" --threads 1 --join-timeout 60 >w1.out 2>w1.err &
w1=$!
sleep 1 # the first worker waits for silad
"$SILAD" --job "$JOB" --listen "$URL" --out listen "${SMALL[@]}" >listen.stdout 2>listen.stderr &
silad=$!
"$SILAWORKER" --module 2-3 --connect "$URL" --threads 1 --join-timeout 60 >w2.out 2>w2.err &
w2=$!
for _ in $(seq 50); do grep -q "modules 2-3 ready" listen.stdout && break; sleep 0.2; done
"$SILAWORKER" --module 3 --connect "$URL" --threads 1 --join-timeout 20 >dup.out 2>dup.err
st=$?
if [ "$st" -ne 0 ] && grep -q "refused this worker: module 3 is taken" dup.err; then
    ok "a second worker for a taken module is refused, and says by whom"
else
    not_ok "a second worker for a taken module is refused (exit $st)" dup.err
fi
"$SILAWORKER" --module 4-9 --connect "$URL" --threads 1 --join-timeout 20 >big.out 2>big.err
if grep -q "modules 4-9 asked for, the job fmnist-cnn-k4 has modules 1-4" big.err; then
    ok "a worker for modules the job does not have is refused"
else
    not_ok "a worker for modules the job does not have is refused" big.err
fi
# a keyless run with its coordinator on loopback listens on loopback only,
# the workers' data edges included (the run waits for module 4 meanwhile)
ss -Hltnp >listeners.txt 2>&1
check "a keyless loopback run: silad and each worker listen, on 127.0.0.0/8 only (ss -ltn)" \
    python3 - listeners.txt "$silad" "$w1" "$w2" <<'EOF'
import re, sys
path, *pids = sys.argv[1:]
mine = [l.split() for l in open(path) if any("pid=%s," % p in l for p in pids)]
for f in mine:
    print(f[3], f[-1])
owners = {p for f in mine for p in re.findall(r"pid=(\d+),", f[-1]) if p in pids}
assert owners == set(pids), "listeners of pids %s, expected %s" % (sorted(owners), sorted(pids))
wide = [f[3] for f in mine if not f[3].startswith("127.")]
assert not wide, "listening outside 127.0.0.0/8: %s" % wide
EOF
"$SILAWORKER" --module 4 --connect "$URL" --threads 1 --join-timeout 60 >w4.out 2>w4.err &
w4=$!
wait "$silad"
st=$?
wait "$w1" "$w2" "$w4"
if [ "$st" -eq 0 ] && [ "$(sha_of listen/model.sila 2>/dev/null)" = "$(sha_of in-pgl/model.sila)" ]
then
    ok "--listen over tcp with hand-started workers: same weights as --inproc"
else
    not_ok "--listen over tcp with hand-started workers (exit $st)" listen.stderr w1.err w2.err \
        w4.err
fi

# ---- losing peers: a frozen worker is declared lost by silad, which stops
# the run naming it when no replacement comes; workers whose coordinator
# died exit instead of hanging
PORT2=$((PORT + 200))
URL2=tcp://127.0.0.1:$PORT2
"$SILAD" --job "$JOB" --listen "$URL2" --out lost --worker-timeout 3 --replace-timeout 3 \
    --rpc none \
    --set job.train_limit=12800 --set job.epochs=20 >lost.stdout 2>lost.stderr &
silad=$!
for m in 1-2 3-4; do
    "$SILAWORKER" --module $m --connect "$URL2" --threads 1 --timeout 3 >"lost-$m.out" \
        2>"lost-$m.err" &
done
for _ in $(seq 100); do grep -q "^job fmnist-cnn-k4" lost.stdout && break; sleep 0.2; done
frozen=$(pgrep -f -- "--module 3-4 --connect $URL2")
kill -STOP "$frozen"
timeout 30 tail --pid=$silad -f /dev/null
wait $silad
st=$?
kill -9 "$frozen" 2>/dev/null
if [ "$st" -ne 0 ] &&
    grep -q "the worker for modules 3-4 on 127.0.0.1 (pid $frozen, generation 1) is lost: no message for [3-5] s" lost.stderr &&
    grep -q "no replacement for modules 3-4 within 3 s" lost.stderr; then
    ok "a frozen worker is declared lost within the timeout, named, and without a replacement the run stops"
else
    not_ok "a frozen worker is declared lost within the timeout (exit $st)" lost.stderr
fi
wait
# told to stop by silad, or finding it gone first, it ends and says why
if grep -qE "stopped the run|has been silent" lost-1-2.err; then
    ok "its partner worker stops too"
else
    not_ok "its partner worker stops too" lost-1-2.err
fi

PORT3=$((PORT + 300))
URL3=tcp://127.0.0.1:$PORT3
"$SILAD" --job "$JOB" --listen "$URL3" --out orphan --rpc none --set job.train_limit=12800 \
    --set job.epochs=20 >orphan.stdout 2>orphan.stderr &
silad=$!
"$SILAWORKER" --module 1-4 --connect "$URL3" --threads 1 --timeout 3 >orphan-w.out \
    2>orphan-w.err &
worker=$!
for _ in $(seq 100); do grep -q "^job fmnist-cnn-k4" orphan.stdout && break; sleep 0.2; done
kill -9 $silad
wait $silad 2>/dev/null
timeout 30 tail --pid=$worker -f /dev/null
wait $worker
st=$?
if [ "$st" -ne 0 ] && grep -q "the coordinator at $URL3 has been silent for [3-5] s: lost" orphan-w.err
then
    ok "a worker whose coordinator died exits within its timeout, saying why"
else
    kill -9 $worker 2>/dev/null
    not_ok "a worker whose coordinator died exits within its timeout (exit $st)" orphan-w.err
fi

# ---- mistakes
"$SILAWORKER" --module 1 --connect udp://x:1 >bad.out 2>bad.err
check "a bad --connect address is named" grep -q "udp://x:1: not a tcp://HOST:PORT" bad.err
"$SILAD" --job "$JOB" --inproc --spawn >both.out 2>both.err
check "--inproc with --spawn is refused" grep -q "inproc goes alone" both.err

# ---- silad stopped by a signal stops its spawned workers
"$SILAD" --job "$JOB" --spawn=2 --threads 1 --out killed --set job.train_limit=12800 \
    --set job.epochs=50 >killed.stdout 2>killed.stderr &
silad=$!
for _ in $(seq 100); do grep -q "^job fmnist-cnn-k4" killed.stdout && break; sleep 0.2; done
sleep 1
children=$(pgrep -P $silad -d ' ')
kill -TERM $silad
timeout 60 tail --pid="$silad" -f /dev/null
wait "$silad"
st=$?
if [ "$st" -ne 0 ] && grep -q "stopped by Terminated" killed.stderr; then
    ok "silad stopped by SIGTERM fails the run, saying so"
else
    kill -9 "$silad" 2>/dev/null
    not_ok "silad stopped by SIGTERM fails the run, saying so (exit $st)" killed.stderr
fi
sleep 0.5
left=""
for pid in $children; do kill -0 "$pid" 2>/dev/null && left="$left $pid"; done
if [ -z "$children" ] || [ -n "$left" ]; then
    not_ok "no worker outlives the failed run (children: ${children:-none}, left:${left:- none})"
else
    ok "no worker outlives the failed run"
fi

done_testing
