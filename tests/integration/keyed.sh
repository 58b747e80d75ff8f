#!/bin/bash
# Who may talk to the cluster: silactl keygen writes a private key and
# never overwrites one; keys readable by others or malformed are refused;
# silad refuses a non-loopback address without a key unless --insecure
# (and warns then), and so does a worker asked to listen on one (--bind,
# --advertise). A keyed run over tcp with hand-started workers writes
# the weights of an unkeyed run; meanwhile a worker with another key, or
# none, is not admitted and says why it may be, garbage and a replayed
# (hand-signed) hello on the rendezvous are dropped and counted, and the
# other workers go on. On a keyed run's RPC, status needs no key on
# loopback, pause does; silactl with another key gets no answer it takes;
# --rpc-reads authenticated closes the reads too. A keyed worker drops the
# answers of a coordinator without a key, and says so.
. "$(dirname "$0")/lib.sh"

: "${SILAWORKER:?SILAWORKER must name the silaworker executable}"
export SILAWORKER
unset SILA_KEY_FILE
JOB=$JOBS_DIR/fmnist-cnn-k4.ini
SMALL=(--set job.train_limit=512 --set job.test_limit=256 --set job.batch=32
       --set job.epochs=2 --set job.period=4 --set job.global_steps=1
       --set job.global_ramp=false)
SIGN=$SILA_SOURCE_DIR/tests/integration/signmsg.py
PORT=$(claim_ports 700) || exit 99
URL=tcp://127.0.0.1:$PORT
RPC=tcp://127.0.0.1:$((PORT + 140))

rejected() { "$SILACTL" --connect "$RPC" status --json | python3 "$JSONCHECK" field - rejected_messages; }

# ---- keys
"$SILACTL" keygen k1 >keygen.out 2>&1
check "keygen writes a key and says its id" grep -q "wrote a new cluster key to k1 (id [0-9a-f]\{8\}" keygen.out
check "the key file is mode 0600" test "$(stat -c %a k1)" = 600
check "the key file is one line: 'sila-key-1 ' and 64 hex digits" \
    grep -qx 'sila-key-1 [0-9a-f]\{64\}' k1
before=$(sha256sum <k1)
"$SILACTL" keygen k1 >again.out 2>&1
st=$?
if [ $st -ne 0 ] && grep -q "k1 exists: a key is never overwritten" again.out &&
    [ "$(sha256sum <k1)" = "$before" ]; then
    ok "keygen never overwrites a key"
else
    not_ok "keygen never overwrites a key (exit $st)" again.out
fi
mkdir sub && (cd sub && "$SILACTL" keygen >/dev/null 2>&1)
check "keygen without a file writes ./sila.key" test "$(stat -c %a sub/sila.key)" = 600
"$SILACTL" keygen k2 >/dev/null 2>&1
cp k1 k-shared && chmod 640 k-shared
"$SILAD" --job "$JOB" --listen "$URL" --key k-shared >shared.out 2>&1
check "a key its group may read is refused, naming the file and its mode" \
    grep -q "key file k-shared: mode 0640 lets its group or others" shared.out
head -c 40 k1 >k-short && chmod 600 k-short
"$SILAWORKER" --module 1 --connect "$URL" --key k-short >short.out 2>&1
check "a key file of the wrong size is refused" \
    grep -q "key file k-short: 40 bytes, not a sila key file" short.out
SILA_KEY_FILE=k-short "$SILACTL" --connect "$RPC" status >env.out 2>&1
check "SILA_KEY_FILE names the key when --key does not" grep -q "key file k-short" env.out

# ---- safe defaults
ANY=tcp://0.0.0.0:$((PORT + 300))
"$SILAD" --job "$JOB" --listen "$ANY" --out any >any.out 2>&1
st=$?
if [ $st -ne 0 ] && grep -q "listen $ANY is not a loopback address" any.out &&
    grep -q -- "--key FILE" any.out && grep -q -- "--insecure" any.out; then
    ok "silad --listen on all interfaces without a key is refused, saying what to do"
else
    not_ok "silad --listen on all interfaces without a key is refused (exit $st)" any.out
fi
"$SILAD" --job "$JOB" --listen "$URL" --rpc "tcp://0.0.0.0:$((PORT + 301))" --out any \
    >anyrpc.out 2>&1
check "so is an RPC on all interfaces" grep -q -- "--rpc tcp://0.0.0.0:.* is not a loopback" \
    anyrpc.out
"$SILAD" --job "$JOB" --listen "$ANY" --insecure --rpc none --out insecure \
    >insecure.stdout 2>insecure.stderr &
insecure=$!
if wait_for 60 grep -q "waiting for workers" insecure.stdout && kill -0 $insecure 2>/dev/null &&
    grep -q "warning: --insecure: messages on $ANY are not authenticated" insecure.stderr; then
    ok "with --insecure it listens, and warns"
else
    ps -o pid,stat,etime,args -p $insecure >insecure.ps 2>&1
    not_ok "with --insecure it listens, and warns" insecure.stderr insecure.stdout insecure.ps
fi
kill $insecure 2>/dev/null
wait $insecure 2>/dev/null
"$SILAWORKER" --module 1 --connect "tcp://192.0.2.1:$PORT" >wany.out 2>&1
check "a worker without a key refuses a coordinator that is not on loopback" \
    grep -q "tcp://192.0.2.1:$PORT is not a loopback address" wany.out
for bind in '*' 0.0.0.0 192.0.2.7; do
    "$SILAWORKER" --module 1 --connect "$URL" --bind "$bind" --join-timeout 2 >wbind.out 2>&1
    st=$?
    if [ $st -eq 1 ] && grep -qF -- "--bind $bind is not a loopback address" wbind.out &&
        grep -q -- "--insecure" wbind.out; then
        ok "a worker without a key refuses to listen on --bind $bind"
    else
        not_ok "a worker without a key refuses to listen on --bind $bind (exit $st)" wbind.out
    fi
done
"$SILAWORKER" --module 1 --connect "$URL" --advertise 192.0.2.7 --join-timeout 2 >wadv.out 2>&1
check "... or on a non-loopback --advertise address" \
    grep -qF -- "--advertise 192.0.2.7 is not a loopback address" wadv.out
"$SILAWORKER" --module 1 --connect "$URL" --bind node7 >wname.out 2>&1
check "--bind takes an address, not a name" \
    grep -qF -- "--bind needs an IPv4 address or *, not 'node7'" wname.out

# ---- the reference: no key
"$SILAD" --job "$JOB" --spawn=2 --threads 1 --out ref "${SMALL[@]}" --rpc none \
    >ref.stdout 2>ref.stderr || not_ok "the unkeyed reference run exits 0" ref.stderr
REF=$(sha_of ref/model.sila 2>/dev/null)

# ---- a keyed run over tcp, workers started by hand
"$SILAD" --job "$JOB" --listen "$URL" --rpc "$RPC" --key k1 --out keyed "${SMALL[@]}" \
    >keyed.stdout 2>keyed.stderr &
silad=$!
trap 'kill $silad 2>/dev/null; rm -rf "$TEST_TMP"' EXIT
"$SILAWORKER" --module 1-2 --connect "$URL" --key k1 --threads 1 --join-timeout 60 \
    >w1.out 2>w1.err &
w1=$!
wait_for 30 grep -q "modules 1-2 ready" keyed.stdout || not_ok "the first worker joins" keyed.stdout w1.err
"$SILAWORKER" --module 3-4 --connect "$URL" --key k2 --threads 1 --join-timeout 4 \
    >wrong.out 2>wrong.err
st=$?
if [ $st -ne 0 ] && grep -q "no coordinator answered within 4 s" wrong.err &&
    grep -q "a wrong key is one possible reason" wrong.err; then
    ok "a worker with another key is not admitted, and says a wrong key may be why"
else
    not_ok "a worker with another key is not admitted (exit $st)" wrong.err
fi
"$SILAWORKER" --module 3-4 --connect "$URL" --threads 1 --join-timeout 3 >nokey.out 2>nokey.err
st=$?
if [ $st -ne 0 ] && grep -q "no coordinator answered within 3 s (one with a cluster key" nokey.err
then
    ok "a worker without a key is not admitted either, and is told about --key"
else
    not_ok "a worker without a key is not admitted (exit $st)" nokey.err
fi
check "silad logs the hellos it dropped, signed with another key" \
    wait_for 10 grep -q "on the rendezvous that failed authentication.*another key" keyed.stderr
check "no worker for modules 3-4 joined" sh -c "! grep -q 'modules 3-4' keyed.stdout"

"$SILACTL" --connect "$RPC" status --json >st0.json 2>st0.err
check "status needs no key on a loopback RPC" python3 "$JSONCHECK" field st0.json job
n0=$(rejected)
check "status counts the messages dropped (${n0:-none} so far)" test "${n0:-0}" -ge 2
printf 'SILC\377\377\377\377 garbage' >garbage.bin
nanocat --req --connect "$URL" --file garbage.bin --raw --recv-timeout 2 >garbage.out 2>&1
check "garbage on the rendezvous gets no answer" test ! -s garbage.out
python3 "$SIGN" --hello 1 2 k1 >hello.bin
nanocat --req --connect "$URL" --file hello.bin --raw --recv-timeout 5 >hello.out 2>&1
check "a hello signed by hand is answered (modules 1-2 are taken)" grep -qa "is taken" hello.out
nanocat --req --connect "$URL" --file hello.bin --raw --recv-timeout 2 >replay.out 2>&1
check "the same hello again, replayed, gets no answer" test ! -s replay.out
n1=$(rejected)
if [ -n "$n1" ] && [ "$n1" -eq $((n0 + 2)) ]; then
    ok "the garbage and the replay are counted ($n0 -> $n1)"
else
    not_ok "the garbage and the replay are counted ($n0 -> $n1)"
fi
"$SILACTL" --connect "$RPC" metrics --prometheus >prom.txt 2>&1
check "prometheus has the count too" \
    grep -qx "sila_messages_rejected_total{job=\"fmnist-cnn-k4\"} $n1" prom.txt
# at most a line every 10 s per link
check "silad logs the replay" wait_for 30 grep -q "rendezvous that failed.*replayed" keyed.stderr

"$SILAWORKER" --module 3-4 --connect "$URL" --key k1 --threads 1 --join-timeout 60 \
    >w2.out 2>w2.err &
w2=$!
ended $silad 180
st=$?
ended $w1 10
ended $w2 10
if [ $st -eq 0 ] && [ -n "$REF" ] && [ "$(sha_of keyed/model.sila 2>/dev/null)" = "$REF" ]; then
    ok "the keyed run over tcp ends with the unkeyed run's weights ($REF)"
else
    not_ok "the keyed run over tcp ends with the unkeyed run's weights (exit $st)" keyed.stderr \
        w1.err w2.err
fi

# ---- the RPC of a keyed run: spawned workers, given the key by silad
URL2=tcp://127.0.0.1:$((PORT + 500))
"$SILAD" --job "$JOB" --spawn=2 --threads 1 --listen "$URL2" --rpc "$RPC" --key k1 --out steer \
    --set job.train_limit=9600 --set job.epochs=20 >steer.stdout 2>steer.stderr &
silad=$!
wait_for 30 grep -q "^job fmnist-cnn-k4" steer.stdout || not_ok "the keyed spawned run starts" steer.stderr
"$SILACTL" --connect "$RPC" pause >pause-nokey.out 2>&1
st=$?
if [ $st -ne 0 ] && grep -q "control methods need the cluster key" pause-nokey.out; then
    ok "pause without the key is refused"
else
    not_ok "pause without the key is refused (exit $st)" pause-nokey.out
fi
"$SILACTL" --connect "$RPC" --key k1 pause >pause.out 2>&1
check "pause with the key is accepted" grep -q "^paused at step" pause.out
"$SILACTL" --connect "$RPC" status >status-nokey.out 2>&1
check "status without the key still answers, on loopback" grep -q ": paused" status-nokey.out
"$SILACTL" --connect "$RPC" --key k2 status --timeout 2 >k2.out 2>&1
st=$?
if [ $st -ne 0 ] && grep -q "does it have the key in k2" k2.out; then
    ok "silactl with another key gets no answer, and says the key may differ"
else
    not_ok "silactl with another key gets no answer (exit $st)" k2.out
fi
SILA_KEY_FILE=k1 "$SILACTL" --connect "$RPC" stop >stop.out 2>&1
check "stop with the key from SILA_KEY_FILE is accepted" grep -q "^stopping after step" stop.out
ended $silad 120
st=$?
if [ $st -eq 0 ] && [ -s steer/model.sila ]; then
    ok "the keyed spawned run stops and saves its model"
else
    not_ok "the keyed spawned run stops and saves its model (exit $st)" steer.stderr
fi

# ---- reads closed too
"$SILAD" --job "$JOB" --listen "$URL2" --rpc "$RPC" --key k1 --rpc-reads authenticated \
    --out closed >closed.stdout 2>closed.stderr &
silad=$!
wait_for 30 grep -q "serving the RPC" closed.stdout || not_ok "silad --rpc-reads authenticated starts" \
    closed.stderr
"$SILACTL" --connect "$RPC" status >closed-nokey.out 2>&1
check "--rpc-reads authenticated: status without the key is refused" \
    grep -q "answers authenticated requests only" closed-nokey.out
"$SILACTL" --connect "$RPC" --key k1 status >closed-key.out 2>&1
check "--rpc-reads authenticated: status with the key answers" grep -q ": joining" closed-key.out
"$SILAD" --job "$JOB" --listen "$URL2" --rpc-reads sometimes >reads.out 2>&1
check "--rpc-reads takes open or authenticated only" grep -q "open or authenticated" reads.out
kill $silad
wait $silad 2>/dev/null

# ---- a keyed worker, a coordinator without a key: its answers are dropped
"$SILAD" --job "$JOB" --listen "$URL2" --rpc none --out bare >bare.stdout 2>bare.stderr &
silad=$!
wait_for 30 grep -q "waiting for workers" bare.stdout || not_ok "silad without a key starts" bare.stderr
"$SILAWORKER" --module 1 --connect "$URL2" --key k1 --threads 1 --join-timeout 4 >kw.out 2>kw.err
st=$?
if [ $st -ne 0 ] && grep -q "dropped 1 message on the rendezvous that failed auth.*MAC" kw.err &&
    grep -q "an answer was dropped (.*MAC" kw.err; then
    ok "a keyed worker drops the unsigned answers of a coordinator without a key, and says so"
else
    not_ok "a keyed worker drops the unsigned answers of a coordinator without a key (exit $st)" \
        kw.err
fi
kill $silad
wait $silad 2>/dev/null

done_testing
