#!/bin/bash
# silactl export --onnx, checked by tools that are not sila's. Short runs
# of the CNN (fmnist-cnn-k4), the ResNet (fmnist-resnet-k8) and a small job
# holding every layer kind a model file can (padded, strided and biased
# convolutions, both poolings with padding, upsampling, adaptive pooling,
# both kinds of residual block, dropout, drop-path, batch norm after a
# linear layer, ...) are exported; onnx.checker (Debian's python3-onnx,
# full check) accepts each file, and ONNX Runtime (npm onnxruntime-node,
# which `npm ci` installs into tests/onnx) runs each on the whole
# Fashion-MNIST test set from raw pixels / 255: its predicted class equals
# sila's on every image and its logits are within 1e-4 of those silactl
# eval --logits writes. silactl inspect shows the model's input record.
# A missing tool fails the test (deploy/bootstrap.sh test installs them).
. "$(dirname "$0")/lib.sh"

ORT_DIR=$SILA_SOURCE_DIR/tests/onnx
SYSTEM_PYTHON=/usr/bin/python3 # python3-onnx is Debian's, for Debian's python
TOLERANCE=1e-4

missing=
command -v node >/dev/null || missing="$missing node (Debian package nodejs);"
[ -d "$ORT_DIR/node_modules/onnxruntime-node" ] ||
    missing="$missing onnxruntime-node (npm ci --ignore-scripts in tests/onnx);"
"$SYSTEM_PYTHON" -c 'import onnx' 2>/dev/null ||
    missing="$missing the onnx module of $SYSTEM_PYTHON (Debian package python3-onnx);"
if [ -n "$missing" ]; then
    not_ok "the tools are installed: missing$missing"
    done_testing
fi

cat >every-kind.ini <<'EOF'
[job]
name = every-kind
dataset = fmnist
epochs = 1
batch = 64
algorithm = pgl
period = 2
global_steps = 1
train_limit = 640
test_limit = 128
[optimizer]
lr = 0.05
momentum = 0.9
[module]
[conv2d]
out = 8
kernel = 5
stride = 2
pad = 2
[batchnorm]
[relu]
[avgpool]
kernel = 3
stride = 2
pad = 1
[upsample]
out = 12
[maxpool]
kernel = 3
stride = 1
pad = 1
[module]
[block]
out = 8
p = 0.1
[block]
out = 16
stride = 2
[adaptive_avgpool]
out = 4
[conv2d]
out = 16
kernel = 1
bias = false
[dropout]
p = 0.2
[gap]
[linear]
out = 32
bias = false
[batchnorm]
[relu]
[droppath]
p = 0.1
[flatten]
[linear]
out = 10
EOF

# step NAME STEP CMD...: runs CMD with its output in NAME.STEP.out and its
# exit status in NAME.STEP.status; returns that status.
step()
{
    local name=$1 what=$2 st
    shift 2
    "$@" >"$name.$what.out" 2>&1
    st=$?
    echo "$st" >"$name.$what.status"
    return "$st"
}

# train NAME JOB [ARG...]: silad_run, then the line naming the model saved.
train()
{
    silad_run "$@" && tail -n 1 "$1.stdout"
}

# chain NAME JOB [--set ...]: trains JOB briefly into NAME, exports its
# model, checks the file with onnx.checker, evaluates it with sila on the
# whole test set and runs it in ONNX Runtime; stops at the first failure.
chain()
{
    local name=$1 job=$2
    shift 2
    step "$name" train train "$name" "$job" --set job.epochs=1 "$@" &&
        step "$name" export "$SILACTL" export "$name/model.sila" --onnx "$name.onnx" &&
        step "$name" checker "$SYSTEM_PYTHON" - "$name.onnx" <<'EOF' &&
import sys, onnx
model = onnx.load(sys.argv[1])
onnx.checker.check_model(model, full_check=True)
ops = [n.op_type for n in model.graph.node]
assert ops[:2] == ["Sub", "Div"], f"the graph starts with {ops[:2]}, not the normalisation"
print(f"opset {model.opset_import[0].version}, {len(ops)} nodes: {' '.join(sorted(set(ops)))}")
EOF
        step "$name" eval "$SILACTL" eval "$name/model.sila" --data "fmnist:$FMNIST_DIR" \
            --logits "$name.logits" &&
        step "$name" ort node "$ORT_DIR/ort_check.js" "$name.onnx" "$FMNIST_DIR" "$name.logits" \
            "$TOLERANCE"
}

# report NAME STEP DESC: the step's case; the first line of its output is
# appended to DESC when it passed (the figures), shown when it failed.
report()
{
    local name=$1 what=$2 desc=$3 st
    st=$(cat "$name.$what.status" 2>/dev/null) || st="not run"
    if [ "$st" = 0 ]; then
        ok "$desc: $(head -n 1 "$name.$what.out")"
    else
        not_ok "$desc (exit $st)" "$name.$what.out" "$name.stderr"
    fi
}

# Both cores, three chains; the ResNet's evaluations take longest.
chain cnn "$JOBS_DIR/fmnist-cnn-k4.ini" --set job.train_limit=7680 --set job.test_limit=256 &
chain resnet "$JOBS_DIR/fmnist-resnet-k8.ini" --set job.train_limit=5120 \
    --set job.test_limit=256 &
chain every-kind every-kind.ini &
wait

for name in cnn resnet every-kind; do
    report "$name" train "$name: a short run saves a model"
    report "$name" export "$name: silactl export --onnx"
    report "$name" checker "$name: onnx.checker accepts the file"
    report "$name" eval "$name: silactl eval --logits on the whole test set"
    report "$name" ort "$name: ONNX Runtime's classes and logits are sila's"
done

check "silactl inspect --json shows the CNN's input record: Fashion-MNIST's" \
    python3 - <<'EOF'
import json, subprocess, os
out = subprocess.run([os.environ["SILACTL"], "inspect", "cnn/model.sila", "--json"],
                     check=True, capture_output=True, text=True).stdout
r = json.loads(out)
print({k: r[k] for k in ("layout", "mean", "std", "input_recorded", "input_dataset")})
assert r["layout"] == "NCHW" and r["input_recorded"] and r["input_dataset"] == "fmnist"
assert abs(r["mean"][0] - 0.2860) < 1e-7 and abs(r["std"][0] - 0.3530) < 1e-7 and len(r["mean"]) == 1
assert r["class_names"] == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                            "Shirt", "Sneaker", "Bag", "Ankle boot"], r["class_names"]
EOF

done_testing
