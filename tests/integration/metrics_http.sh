#!/bin/bash
# silad's /metrics page (silad --metrics, daemon/metrics_http.c), served by
# two runs of one job side by side: in process, good and bad HTTP (garbage,
# oversized requests, clients dripping bytes or holding every connection,
# a flood) while it trains; over two spawned workers, with --rpc-rate 10,
# the lines `silactl metrics --prometheus` prints, and a flood answered 200
# or 503 with Retry-After; both end with exit 0 and the same step records
# and weights (an in-process run and a distributed one of a job do: HTTP
# changed neither). Meanwhile, --metrics refused off the loopback without a
# key unless --insecure (with a key: served, with a warning), a bad value
# or a port in use named at start.
. "$(dirname "$0")/lib.sh"

PROBE=$SILA_SOURCE_DIR/tests/integration/httpprobe.py
JOB=$JOBS_DIR/fmnist-cnn-k4.ini
# a run of LONG trains ~25 s on one core of a 2-core machine, about twice
# as long as the probes of the in-process run take; SHORT bounds a run that
# should have been refused
LONG=(--set job.train_limit=12800 --set job.test_limit=200 --set job.epochs=2)
SHORT=(--set job.train_limit=256 --set job.test_limit=100 --set job.epochs=1)
PORT=$(claim_ports 3) || exit 99
MPORT=$((PORT + 1))
EP=ipc://$TEST_TMP/rpc.sock
probe() { python3 "$PROBE" 127.0.0.1 "$@"; }
pids=
trap 'kill $pids 2>/dev/null; rm -rf "$TEST_TMP"' EXIT

# ---- in process (served between steps), and over two spawned workers
# on all interfaces with --insecure
"$SILAD" --job "$JOB" --inproc --out abused --threads 1 --rpc none --metrics "$PORT" "${LONG[@]}" \
    >abused.stdout 2>abused.stderr &
silad=$!
"$SILAD" --job "$JOB" --spawn=2 --threads 1 --out spawned --rpc "$EP" --rpc-rate 10 \
    --metrics "0.0.0.0:$MPORT" --insecure "${LONG[@]}" >spawned.stdout 2>spawned.stderr &
spawned=$!
pids="$pids $silad $spawned"
if wait_for 60 grep -q "^serving /metrics at http://127.0.0.1:$PORT/metrics\$" abused.stdout; then
    ok "silad says where it serves /metrics"
else
    not_ok "silad says where it serves /metrics" abused.stdout abused.stderr
fi
(
    probe "$PORT" drip >drip.out 2>&1 &
    probe "$PORT" get head post path garbage oversized flood >probe.out 2>&1
    wait
    probe "$PORT" hold >>probe.out 2>&1
    cat drip.out >>probe.out
    curl -s "http://127.0.0.1:$PORT/metrics" >after.txt
) &
prober=$!
pids="$pids $prober"

# ---- meanwhile, at start
"$SILAD" --job "$JOB" --inproc --out refused --rpc none --metrics "0.0.0.0:$((PORT + 2))" "${SHORT[@]}" \
    >any.out 2>&1
st=$?
check "--metrics on all interfaces without a key: refused, naming --key and --insecure" \
    sh -c "[ $st = 1 ] && grep -q -- '--metrics 0.0.0.0:$((PORT + 2)) is not a loopback address' any.out &&
           grep -q -- '--key FILE' any.out && grep -q -- '--insecure' any.out"
for bad in 7598x host:0 host:65536 ::1:7598 '[::1' ''; do
    "$SILAD" --job "$JOB" --inproc --out bad --rpc none --metrics "$bad" "${SHORT[@]}" >bad.out 2>&1
    st=$?
    if [ $st = 2 ] && grep -qF -- "--metrics $bad: expected HOST:PORT, [IPv6]:PORT or PORT" bad.out; then
        ok "--metrics '$bad': refused at start, naming it"
    else
        not_ok "--metrics '$bad': refused at start, naming it (exit $st)" bad.out
    fi
done
"$SILACTL" keygen key >keygen.out 2>&1
"$SILAD" --job "$JOB" --inproc --out keyed --rpc none --key key --metrics "0.0.0.0:$((PORT + 2))" \
    "${SHORT[@]}" >keyed.out 2>&1
st=$?
check "with a key, --metrics on all interfaces is served, with a warning that HTTP is not authenticated" \
    sh -c "[ $st = 0 ] && grep -q -- 'warning: the cluster key does not cover --metrics 0.0.0.0:$((PORT + 2))' keyed.out"
"$SILAD" --job "$JOB" --inproc --out taken --rpc none --metrics "$PORT" "${SHORT[@]}" >taken.out 2>&1
st=$?
check "a port in use: an error naming the address and why (exit $st)" \
    sh -c "[ $st = 1 ] && grep -q -- '--metrics 127.0.0.1:$PORT: cannot listen: Address already in use' taken.out"

wait $prober
sed 's/^/# /' probe.out
for c in get head post path garbage oversized flood hold drip; do
    check "in process: $c ($(sed -n "s/^$c [a-zA-Z]*: //p" probe.out))" grep -q "^$c ok:" probe.out
done
check "the run was still training after the probes" \
    grep -q '^sila_phase{job="fmnist-cnn-k4",phase="training"} 1$' after.txt

# ---- over spawned workers, meanwhile
if wait_for 60 sh -c "[ \"\$(curl -s http://127.0.0.1:$MPORT/metrics | grep -c '^sila_worker_busy_ratio{')\" = 2 ]"; then
    ok "spawned: the page has a row per worker (2)"
else
    not_ok "spawned: the page has a row per worker (2)" spawned.stderr
fi
check "spawned: --insecure warns that the page is open to anyone" \
    grep -q "warning: --insecure: the page at 0.0.0.0:$MPORT is not authenticated; anyone who reaches it can read the run's figures" \
    spawned.stderr
EXPECT_BUSY=1 probe "$MPORT" flood >flood.out 2>&1
check "spawned: a flood beyond --rpc-rate: 200 or 503 with Retry-After ($(sed 's/^flood [a-zA-Z]*: //' flood.out))" \
    grep -q "^flood ok:" flood.out
sleep 1 # the budget fills up again
# the page, then silactl's lines, then the page again when an evaluation
# (new lines) ended between them
same_lines()
{
    curl -s "http://127.0.0.1:$MPORT/metrics" >page.txt &&
        "$SILACTL" --connect "$EP" metrics --prometheus >ctl.txt &&
        diff <(sed 's/} .*/}/' ctl.txt) <(sed 's/} .*/}/' page.txt) >lines.diff
}
if wait_for 10 same_lines; then
    ok "spawned: after the flood the page has silactl metrics --prometheus's lines, but for the values"
else
    not_ok "spawned: after the flood the page has silactl metrics --prometheus's lines, but for the values" \
        lines.diff page.txt
fi
check "spawned: and the same figures" \
    diff <(grep -E '^sila_(steps_planned|worker_generation)' ctl.txt) \
    <(grep -E '^sila_(steps_planned|worker_generation)' page.txt)

# ---- the ends
if ended $silad 180; then
    ok "in process: the run under bad HTTP exits 0"
else
    not_ok "in process: the run under bad HTTP exits 0" abused.stderr
fi
if ended $spawned 180; then
    ok "spawned: the run exits 0"
else
    not_ok "spawned: the run exits 0" spawned.stderr
fi
check "the same step records in process and over spawned workers" \
    python3 "$JSONCHECK" same-steps abused/metrics.jsonl spawned/metrics.jsonl
check_same_run "in process and over spawned workers, under HTTP" abused spawned

done_testing
