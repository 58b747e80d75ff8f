#!/bin/bash
# A real Prometheus scrapes silad's /metrics page (silad --metrics): Debian's
# prometheus, with a scrape config written here (every second, honor_labels
# as docs/operations.md shows), its storage in the test's directory and its
# own web port, scrapes a run over spawned workers; its query API gives
# sila_steps_done_total back, rising between two scrapes, and up 1; every
# panel of deploy/grafana/sila.json names metrics silad exports, and
# Prometheus answers each panel's expression. Prometheus and anything it
# started are killed by pid at the end. Skipped, saying so, where Debian's
# prometheus is not installed.
. "$(dirname "$0")/lib.sh"

PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
if [ ! -x "$PROMETHEUS" ]; then
    echo "1..0 # SKIP $PROMETHEUS not found (Debian package prometheus; deploy/bootstrap.sh test installs it)"
    exit 0
fi

PROMCHECK=$SILA_SOURCE_DIR/tests/integration/promcheck.py
DASHBOARD=$SILA_SOURCE_DIR/deploy/grafana/sila.json
JOB=$JOBS_DIR/fmnist-cnn-k4.ini
EP=ipc://$TEST_TMP/rpc.sock
PORT=$(claim_ports 2) || exit 99
PROM_URL=http://127.0.0.1:$((PORT + 1))
silad=
prom=
trap 'kill $silad 2>/dev/null; [ -n "$prom" ] && kill_tree $prom; rm -rf "$TEST_TMP"' EXIT

# evaluations every 10 steps, so that the page soon has sila_test_accuracy
"$SILAD" --job "$JOB" --spawn=2 --threads 1 --out run --rpc "$EP" --metrics "$PORT" \
    --set job.train_limit=12800 --set job.test_limit=200 --set job.evals_per_epoch=10 \
    >run.stdout 2>run.stderr &
silad=$!
wait_for 60 grep -q "^serving /metrics at http://127.0.0.1:$PORT/metrics\$" run.stdout ||
    not_ok "silad serves /metrics" run.stdout run.stderr

cat >prometheus.yml <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: sila
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
EOF
"$PROMETHEUS" --config.file=prometheus.yml --storage.tsdb.path="$TEST_TMP/tsdb" \
    --web.listen-address="127.0.0.1:$((PORT + 1))" --log.level=warn >prometheus.log 2>&1 &
prom=$!

check "Prometheus reads sila_steps_done_total back, rising between two scrapes" \
    python3 "$PROMCHECK" "$PROM_URL" rising 40
sed -n 's/^/# /p' "$TEST_TMP"/.check-$tap_n.out
check 'up{job="sila"} is 1' python3 "$PROMCHECK" "$PROM_URL" up
# the page has every series once the workers reported and an evaluation ended
wait_for 30 sh -c "curl -s http://127.0.0.1:$PORT/metrics >page.txt && grep -q '^sila_test_accuracy{' page.txt"
sleep 2 # two scrapes more, so that the newest series are in Prometheus too
check "every panel of deploy/grafana/sila.json names exported metrics, and Prometheus answers it" \
    python3 "$PROMCHECK" "$PROM_URL" dashboard "$DASHBOARD" page.txt
sed -n 's/^/# /p' "$TEST_TMP"/.check-$tap_n.out

"$SILACTL" --connect "$EP" stop >stop.out 2>&1
if ended $silad 60; then
    ok "the run stops with exit 0"
else
    not_ok "the run stops with exit 0" run.stderr stop.out
fi
silad=
kill_tree $prom
prom=
check "Prometheus logged no error" sh -c "! grep -E 'level=(error|fatal)' prometheus.log"

done_testing
