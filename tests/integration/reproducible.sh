#!/bin/bash
# A run is a function of its job and seed: the same job and seed trained
# twice with one BLAS thread gives bit-identical weights (the same
# weights_sha256 in silactl inspect) and the same recorded accuracies, and
# another seed gives other weights. The job is the default CNN with PGL
# (P = 4, so both local and global steps run), made short.
#
# The second run has a terminal for its stdout (through script(1)), where
# silad prints progress every 0.5 s instead of every 10 s: what it records in
# metrics.jsonl must not depend on that, so its step records (but for their
# samples/s) must equal the first run's too.
. "$(dirname "$0")/lib.sh"

JOB=$JOBS_DIR/fmnist-cnn-k4.ini
SMALL=(--set job.train_limit=512 --set job.test_limit=300 --set job.batch=32
       --set job.epochs=2 --set job.period=4 --set job.global_steps=1
       --set job.global_ramp=false)

# silad_run_tty DIR JOB [ARG...]: silad_run with stdout on a pseudo-terminal.
silad_run_tty()
{
    local dir=$1 job=$2
    shift 2
    script -qec "$(printf '%q ' "$SILAD" --job "$job" --inproc --out "$dir" --threads 1 "$@")" \
        /dev/null </dev/null >"$dir.stdout" 2>"$dir.stderr"
}
have_script=false
script -qec true /dev/null </dev/null >/dev/null 2>&1 && have_script=true

declare -A sha
for run in a b seed2; do
    args=("${SMALL[@]}")
    [ "$run" = seed2 ] && args+=(--set job.seed=2)
    train=silad_run
    [ "$run" = b ] && $have_script && train=silad_run_tty
    if $train "$run" "$JOB" "${args[@]}"; then
        ok "run $run: silad exits 0"
    else
        not_ok "run $run: silad exits 0" "$run.stderr"
    fi
    sha[$run]=$(sha_of "$run/model.sila" 2>/dev/null)
    echo "# run $run: weights_sha256 ${sha[$run]:-(none)}"
done

check "the same job and seed give the same weights" \
    test -n "${sha[a]}" -a "${sha[a]}" = "${sha[b]}"
check "the same job and seed give the same eval records" \
    python3 "$JSONCHECK" same-evals a/metrics.jsonl b/metrics.jsonl
if $have_script; then
    check "the same job and seed record the same step losses, on a terminal or not" \
        python3 "$JSONCHECK" same-steps a/metrics.jsonl b/metrics.jsonl
else
    ok "the same job and seed record the same step losses # SKIP no script(1) for a terminal"
fi
check "another seed gives other weights" \
    test -n "${sha[seed2]}" -a "${sha[seed2]}" != "${sha[a]}"

done_testing
