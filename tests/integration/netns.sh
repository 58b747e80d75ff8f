#!/bin/bash
# Several hosts on one machine: the coordinator and two workers each in a
# network namespace of their own, joined by veth pairs to a bridge, with
# addresses 10.88.N.1-3, so every frame crosses real interfaces. A short
# run gives the weights of the in-process run; then cutting one worker's
# link makes the coordinator declare it lost (naming its address; with no
# replacement in --replace-timeout, the run stops) and the
# cut-off worker give up on its coordinator. A worker listens on the
# address it announces (by default, its address on the route to the
# coordinator), not on every interface. Skipped where namespaces
# cannot be made (not root, no iproute2). Every process has the cluster
# key: the coordinator listens on a non-loopback address.
. "$(dirname "$0")/lib.sh"

: "${SILAWORKER:?SILAWORKER must name the silaworker executable}"
JOB=$JOBS_DIR/fmnist-cnn-k4.ini
SMALL=(--set job.train_limit=512 --set job.test_limit=256 --set job.batch=32
       --set job.epochs=2 --set job.period=4 --set job.global_steps=1
       --set job.global_ramp=false)
ID=$(( $$ % 250 + 1 ))
NET=10.88.$ID
P=sila$ID

cleanup()
{
    for h in c w1 w2 hub; do ip netns del "$P$h" 2>/dev/null; done
    rm -rf "$TEST_TMP"
}
if ! command -v ip >/dev/null || ! ip netns add "${P}hub" 2>/dev/null; then
    echo "1..0 # SKIP cannot create network namespaces here (needs root and iproute2)"
    exit 0
fi
trap cleanup EXIT
ip -n "${P}hub" link add br0 type bridge && ip -n "${P}hub" link set br0 up
n=1
for h in c w1 w2; do
    ip netns add "$P$h"
    ip link add "$P${h}a" type veth peer name "$P${h}b"
    ip link set "$P${h}a" netns "$P$h"
    ip link set "$P${h}b" netns "${P}hub"
    ip -n "${P}hub" link set "$P${h}b" master br0 up
    ip -n "$P$h" addr add "$NET.$n/24" dev "$P${h}a"
    ip -n "$P$h" link set "$P${h}a" up
    ip -n "$P$h" link set lo up
    n=$((n + 1))
done
ok "three hosts: coordinator $NET.1, workers $NET.2 and $NET.3"

silad_run inproc "$JOB" "${SMALL[@]}" || not_ok "the in-process reference exits 0" inproc.stderr
"$SILACTL" keygen key >keygen.out 2>&1 || not_ok "silactl keygen" keygen.out
export SILA_KEY_FILE=$TEST_TMP/key
URL=tcp://$NET.1:7600
ip netns exec "${P}c" "$SILAD" --job "$JOB" --listen "$URL" --rpc none --out hosts "${SMALL[@]}" \
    >hosts.stdout 2>hosts.stderr &
silad=$!
ip netns exec "${P}w1" "$SILAWORKER" --module 1-2 --connect "$URL" \
    --threads 1 --join-timeout 60 >w1.out 2>w1.err &
ip netns exec "${P}w2" "$SILAWORKER" --module 3-4 --connect "$URL" --advertise "$NET.3" \
    --threads 1 --join-timeout 60 >w2.out 2>w2.err &
wait $silad
st=$?
wait
if [ $st -eq 0 ] && grep -q "joined from $NET.3" hosts.stdout; then
    ok "a run across the three hosts completes"
else
    not_ok "a run across the three hosts completes (exit $st)" hosts.stderr w1.err w2.err
fi
check "its weights equal the in-process run's" \
    test "$(sha_of hosts/model.sila)" = "$(sha_of inproc/model.sila)"
check "a worker without --advertise announces its address on the route to the coordinator" \
    grep -q "worker for modules 1-2 joined from $NET.2 " hosts.stdout

# cut the second worker's host off the network mid-run
ip netns exec "${P}c" "$SILAD" --job "$JOB" --listen "$URL" --rpc none --out cut \
    --worker-timeout 3 --replace-timeout 3 --set job.train_limit=12800 --set job.epochs=20 \
    >cut.stdout 2>cut.stderr &
silad=$!
ip netns exec "${P}w1" "$SILAWORKER" --module 1-2 --connect "$URL" --advertise "$NET.2" \
    --threads 1 --timeout 3 >c1.out 2>c1.err &
ip netns exec "${P}w2" "$SILAWORKER" --module 3-4 --connect "$URL" --advertise "$NET.3" \
    --threads 1 --timeout 3 >c2.out 2>c2.err &
w2=$!
for _ in $(seq 150); do grep -q "^job fmnist-cnn-k4" cut.stdout && break; sleep 0.2; done
ip netns exec "${P}w2" ss -Hltn >w2-listeners.txt
check "a worker listens on the address it announces, not on every interface" \
    grep -qE "^LISTEN +[0-9]+ +[0-9]+ +$NET.3:[0-9]+ " w2-listeners.txt
sleep 1
ip -n "${P}w2" link set "${P}w2a" down
timeout 60 tail --pid=$silad -f /dev/null
wait $silad
st=$?
if [ $st -ne 0 ] && grep -q "the worker for modules 3-4 on $NET.3 (pid [0-9]*, generation 1) is lost" cut.stderr
then
    ok "the cut-off worker is declared lost, named by its address"
else
    kill $silad 2>/dev/null
    not_ok "the cut-off worker is declared lost (exit $st)" cut.stderr
fi
timeout 60 tail --pid=$w2 -f /dev/null
wait $w2
st=$?
if [ $st -ne 0 ] && grep -q "the coordinator at $URL has been silent" c2.err; then
    ok "the cut-off worker gives up on its coordinator"
else
    not_ok "the cut-off worker gives up on its coordinator (exit $st)" c2.err
fi
wait
done_testing
