#!/bin/bash
# Trains short jobs with each algorithm (e2e, local, pgl) and checks what a
# user relies on: silad exits 0, the classifier's loss goes down, every head's
# accuracy is recorded, the saved model scores in silactl eval exactly what
# silad recorded, and silactl inspect describes the job that made it. Then a
# linear-only MLP (written here) and the 8-module ResNet job (blocks).
#
# The CNN runs use 512 training and 500 test samples, batch 32, 2 epochs:
# 16 steps an epoch, so metrics.jsonl has a step record at steps 16 and 32.
. "$(dirname "$0")/lib.sh"

CNN_JOB=$JOBS_DIR/fmnist-cnn-k4.ini
NTEST=500
SMALL=(--set job.train_limit=512 --set "job.test_limit=$NTEST" --set job.batch=32
       --set job.epochs=2)

make_test_subset sub "$NTEST" || { not_ok "write the first $NTEST test samples"; done_testing; }

# Parameters of fmnist-cnn-k4.ini, counted by hand: 4 conv3x3 without bias,
# 4 batch norms (weight, bias), linear 64*7*7 -> 10.
CNN_PARAMS=$((1*32*9 + 32*32*9 + 32*64*9 + 64*64*9 + 2*(32 + 32 + 64 + 64) + 3136*10 + 10))
CNN_LAYERS=(conv2d batchnorm relu conv2d batchnorm relu maxpool conv2d batchnorm relu
            conv2d batchnorm relu maxpool flatten linear)

# check_run NAME K EPOCHS ALGORITHM LABELS PARAMS LAYER...: the checks of one
# finished run in directory NAME, evaluated again on the samples whose labels
# file is LABELS (with --data fmnist:DIR when LABELS is in ./sub).
check_run()
{
    local name=$1 k=$2 epochs=$3 algo=$4 labels=$5 params=$6
    shift 6
    local model=$name/model.sila data=()
    [ "${labels#sub/}" != "$labels" ] && data=(--data "fmnist:sub")
    if [ "$(cat "$name.status")" = 0 ] && [ -s "$model" ]; then
        ok "$name: silad exits 0 and writes $model"
    else
        not_ok "$name: silad exits 0 and writes $model" "$name.stderr"
        return
    fi
    check "$name: classifier loss decreases" \
        python3 "$JSONCHECK" loss-decreases "$name/metrics.jsonl"
    check "$name: eval records hold $k accuracies in [0,1]" \
        python3 "$JSONCHECK" evals "$name/metrics.jsonl" "$k" "$epochs"
    check "$name: silad prints the saved model and its accuracy" \
        python3 "$JSONCHECK" saved-line "$name.stdout" "$model" "$name/metrics.jsonl"
    if "$SILACTL" eval "$model" "${data[@]}" --json >"$name.eval" 2>"$name.eval.err"; then
        check "$name: silactl eval counts the correct samples silad recorded" \
            python3 "$JSONCHECK" eval-matches "$name.eval" "$name/metrics.jsonl" "$labels"
    else
        not_ok "$name: silactl eval exits 0" "$name.eval.err"
    fi
    if "$SILACTL" inspect "$model" --json >"$name.inspect" 2>"$name.inspect.err"; then
        check "$name: silactl inspect reports $algo and the architecture" \
            python3 "$JSONCHECK" inspect "$name.inspect" "$name/metrics.jsonl" "$algo" 1 \
            "$epochs" "$params" "$@"
    else
        not_ok "$name: silactl inspect exits 0" "$name.inspect.err"
    fi
}

# ---- the CNN with each algorithm; pgl with P = 4, G = 1: steps 3, 7, ... global
silad_run e2e "$CNN_JOB" "${SMALL[@]}" --set job.algorithm=e2e
silad_run local "$CNN_JOB" "${SMALL[@]}" --set job.algorithm=local
silad_run pgl "$CNN_JOB" "${SMALL[@]}" --set job.algorithm=pgl \
    --set job.period=4 --set job.global_steps=1 --set job.global_ramp=false
for algo in e2e local pgl; do
    check_run "$algo" 4 2 "$algo" sub/t10k-labels-idx1-ubyte "$CNN_PARAMS" "${CNN_LAYERS[@]}"
done

# pgl mixes both kinds of step: its weights differ from either pure run's.
# At the extremes it is either: P = 1 makes every step global (e2e), and a
# period longer than the run makes none global (local).
silad_run pgl-p1 "$CNN_JOB" "${SMALL[@]}" --set job.algorithm=pgl \
    --set job.period=1 --set job.global_steps=1 --set job.global_ramp=false
silad_run pgl-p1000 "$CNN_JOB" "${SMALL[@]}" --set job.algorithm=pgl \
    --set job.period=1000 --set job.global_steps=1 --set job.global_ramp=false
declare -A sha
for run in e2e local pgl pgl-p1 pgl-p1000; do
    sha[$run]=$(sha_of "$run/model.sila" 2>/dev/null)
    echo "# $run: weights_sha256 ${sha[$run]:-(none)}"
done
check "pgl (P=4, G=1) trains other weights than e2e and local" \
    test -n "${sha[pgl]}" -a "${sha[pgl]}" != "${sha[e2e]}" -a "${sha[pgl]}" != "${sha[local]}"
check "pgl with P=1 trains exactly what e2e trains" \
    test -n "${sha[e2e]}" -a "${sha[pgl-p1]}" = "${sha[e2e]}"
check "pgl with no global step in the run trains exactly what local trains" \
    test -n "${sha[local]}" -a "${sha[pgl-p1000]}" = "${sha[local]}"

# ---- a linear-only net in 2 modules, evaluated on the whole test split
# through the dataset the model records (no --data)
write_tiny_mlp mlp.ini
silad_run mlp mlp.ini --set job.train_limit=1024 --set job.test_limit=0 --set job.epochs=2
check_run mlp 2 2 local "$FMNIST_DIR/t10k-labels-idx1-ubyte.gz" \
    $((784*64 + 64 + 64*10 + 10)) flatten linear relu linear

# ---- the 8-module ResNet: one basic block a module. Two epochs of 8 steps,
# so that there are two step records to compare.
block_params()  # IN OUT: two conv3x3 without bias and two BNs, + a 1x1 projection and BN if IN != OUT
{
    echo $(($1*$2*9 + $2*$2*9 + 4*$2 + ($1 != $2 ? $1*$2 + 2*$2 : 0)))
}
RESNET_PARAMS=$((1*16*9 + 2*16 + $(block_params 16 16) * 2 + $(block_params 16 32) +
                 $(block_params 32 32) * 2 + $(block_params 32 64) + $(block_params 64 64) * 2 +
                 64*10 + 10))
make_test_subset sub200 200
silad_run resnet "$JOBS_DIR/fmnist-resnet-k8.ini" --set job.train_limit=256 \
    --set job.test_limit=200 --set job.batch=32 --set job.epochs=2
rm -rf sub && mv sub200 sub  # check_run evaluates on ./sub
check_run resnet 8 2 pgl sub/t10k-labels-idx1-ubyte "$RESNET_PARAMS" \
    conv2d batchnorm relu block block block block block block block block gap linear

done_testing
