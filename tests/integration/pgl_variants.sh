#!/bin/bash
# The PGL schedule variants of [job] (docs/jobs.md): each trains and saves a
# model, each changes what plain pgl trains, and the ones with an exact
# equivalent reproduce it bit for bit:
#   global_epoch_end = steps per epoch   makes every step global: e2e
#   global_ramp with G = 0 steps early   starts as local, so differs from pgl
#   local_weight_decay with mu = 0       is plain pgl
# The runs: 512 samples, batch 32 (16 steps an epoch), 2 epochs, P = 4, G = 1.
. "$(dirname "$0")/lib.sh"

JOB=$JOBS_DIR/fmnist-cnn-k4.ini
SMALL=(--set job.train_limit=512 --set job.test_limit=200 --set job.batch=32
       --set job.epochs=2 --set job.period=4 --set job.global_steps=1
       --set job.global_ramp=false)

declare -A sha
train()  # NAME ALGORITHM [--set ...]: trains and records weights_sha256
{
    local name=$1 algo=$2
    shift 2
    if silad_run "$name" "$JOB" "${SMALL[@]}" --set "job.algorithm=$algo" "$@" &&
        [ -s "$name/model.sila" ]; then
        ok "$name: trains and saves a model"
        sha[$name]=$(sha_of "$name/model.sila")
    else
        not_ok "$name: trains and saves a model" "$name.stderr"
        sha[$name]=""
    fi
}

train e2e e2e
train pgl pgl
train separate pgl --set job.global_state=separate
train ramp pgl --set job.global_ramp=true
train epoch-end pgl --set job.global_epoch_end=2
train all-global pgl --set job.global_epoch_end=16
train heads pgl --set job.heads_in_global=true
train mu pgl --set job.local_weight=1
train mu-decay pgl --set job.local_weight=1 --set job.local_weight_decay=true
train mu0-decay pgl --set job.local_weight_decay=true

for v in separate ramp epoch-end heads mu mu-decay; do
    check "$v trains other weights than plain pgl" \
        test -n "${sha[$v]}" -a "${sha[$v]}" != "${sha[pgl]}"
done
check "mu decaying trains other weights than constant mu" \
    test -n "${sha[mu-decay]}" -a "${sha[mu-decay]}" != "${sha[mu]}"
check "global_epoch_end covering the epoch trains exactly what e2e trains" \
    test -n "${sha[e2e]}" -a "${sha[all-global]}" = "${sha[e2e]}"
check "local_weight_decay with mu = 0 trains exactly what plain pgl trains" \
    test -n "${sha[pgl]}" -a "${sha[mu0-decay]}" = "${sha[pgl]}"
check "global_state is refused unless shared or separate" \
    bash -c 'out=$("$0" --job "$1" --inproc --set job.global_state=both --out x 2>&1)
             [ $? -ne 0 ] && printf "%s" "$out" | grep -q "global_state"' "$SILAD" "$JOB"
done_testing
