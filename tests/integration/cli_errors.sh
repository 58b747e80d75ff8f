#!/bin/bash
# Bad input meets a clear error: silad refuses a missing or broken job file,
# a bad --set, a missing --job, a bad --threads and an ipc:// address on a
# file or directory (which it leaves as it was), exits non-zero (not by a
# signal), says what is wrong on stderr (naming the file and line, or the
# override) and writes no model. silactl refuses a missing, corrupted or
# truncated model and a wrong --data, naming the file; export and eval
# --logits refuse an output path they cannot write, naming it and leaving
# no file behind; an unknown command exits 2.
. "$(dirname "$0")/lib.sh"

# failed_cleanly STATUS WANT: STATUS is WANT, or for WANT 'error' a clean
# failure (1..125: not 0, not a signal, not "cannot execute").
failed_cleanly()
{
    if [ "$2" = error ]; then
        [ "$1" -ge 1 ] && [ "$1" -le 125 ]
    else
        [ "$1" -eq "$2" ]
    fi
}

# verdict DESC WHY: ok DESC when WHY is empty; else not_ok, with WHY and the
# case's output ($out, $err).
verdict()
{
    if [ -z "$2" ]; then
        ok "$1"
    else
        { echo "[$2] stdout:"; cat "$out"; echo "stderr:"; cat "$err"; } >"$out.why"
        not_ok "$1" "$out.why"
    fi
}

# refuses DESC WANT TEXT CMD...: one case: CMD fails (WANT as in
# failed_cleanly) and its stderr contains TEXT. Sets $out and $err to its
# output files.
case_n=0
refuses()
{
    local desc=$1 want=$2 text=$3 st why=
    shift 3
    case_n=$((case_n + 1))
    out=$TEST_TMP/case$case_n.out err=$TEST_TMP/case$case_n.err
    "$@" >"$out" 2>"$err"
    st=$?
    failed_cleanly "$st" "$want" || why="exit status $st, expected $want"
    grep -qF -- "$text" "$err" || why="${why:+$why; }stderr does not say: $text"
    verdict "$desc" "$why"
}

# silad_refuses DESC TEXT ARG...: silad with ARGs and --out DIR (a fresh
# directory name) fails cleanly, says TEXT, and leaves no DIR/model.sila.
silad_refuses()
{
    local desc=$1 text=$2 dir=$TEST_TMP/run$((case_n + 1))
    shift 2
    refuses "silad $desc" error "$text" "$SILAD" "$@" --out "$dir"
    if [ -e "$dir/model.sila" ]; then
        not_ok "silad $desc: writes no model"
    else
        ok "silad $desc: writes no model"
    fi
}

# left_running MARK: the processes whose environment holds SILA_TEST_MARK=MARK
# (silad and every worker it started inherit it).
left_running()
{
    grep -lsxzF "SILA_TEST_MARK=$1" /proc/[0-9]*/environ | cut -d/ -f3 | tr '\n' ' '
}

# every_mode_refuses DESC TEXT ARG...: silad with ARGs refuses the same way
# in process, over spawned workers and waiting for workers to join: exit
# status 1, TEXT on stderr and nothing else there but the same lines in
# every mode, no model in the --out directory (ARGs give it, or a fresh one
# is named), and no process of it left running.
every_mode_refuses()
{
    local desc=$1 text=$2 dir=$TEST_TMP/run$((case_n + 1)) first= mode st why left
    shift 2
    case " $* " in *" --out "* | *" --resume "*) dir= ;; esac
    for mode in --inproc --spawn=2 "--listen=ipc://$TEST_TMP/rdv"; do
        case_n=$((case_n + 1))
        out=$TEST_TMP/case$case_n.out err=$TEST_TMP/case$case_n.err why=
        SILA_TEST_MARK=case$case_n timeout 60 "$SILAD" "$@" "$mode" --threads 1 --rpc none \
            ${dir:+--out "$dir"} >"$out" 2>"$err"
        st=$?
        [ "$st" -eq 1 ] || why="exit status $st, expected 1"
        grep -qF -- "$text" "$err" || why="${why:+$why; }stderr does not say: $text"
        [ -z "$first" ] || cmp -s "$first" "$err" ||
            why="${why:+$why; }stderr differs from --inproc's: $(cat "$first")"
        [ -z "$dir" ] || [ ! -e "$dir/model.sila" ] || why="${why:+$why; }a model was written"
        left=$(left_running "case$case_n")
        [ -z "$left" ] || why="${why:+$why; }processes left running: $left"
        verdict "silad ${mode%%=*} $desc" "$why"
        [ -n "$first" ] || first=$err
    done
}

write_tiny_mlp tiny.ini
# A known-bad line in an otherwise good job: line N of tiny.ini replaced.
bad_job()  # NAME LINE TEXT
{
    sed "$2s/.*/$3/" tiny.ini >"$1"
}
bad_job bad-key.ini 15 'outs = 64'          # [linear] of module 1
bad_job bad-value.ini 4 'epochs = two'      # [job]
bad_job bad-comment.ini 15 'out = 64 # wide' # '#' after a value is no comment

# ---- silad, in every mode: job files
every_mode_refuses "with a missing job file names it" "$TEST_TMP/missing.ini" \
    --job "$TEST_TMP/missing.ini"
every_mode_refuses "with an unknown key names FILE:LINE" "bad-key.ini:15:" --job bad-key.ini
check "silad's unknown-key error names the key" grep -qF "outs" "$err"
every_mode_refuses "with a bad value names FILE:LINE" "bad-value.ini:4:" --job bad-value.ini
check "silad's bad-value error names the key" grep -qF "epochs" "$err"
every_mode_refuses "with '#' after a value names FILE:LINE" "bad-comment.ini:15:" \
    --job bad-comment.ini

# ---- silad, in every mode: overrides
every_mode_refuses "with --set of an unknown key names the override" "'job.bogus=1'" \
    --job tiny.ini --set job.bogus=1
every_mode_refuses "with --set of a non-integer names the override" "'job.epochs=x'" \
    --job tiny.ini --set job.epochs=x
every_mode_refuses "with --set of an out-of-range value names the override" "'job.batch=0'" \
    --job tiny.ini --set job.batch=0
every_mode_refuses "with --set of an unknown section names the override" "'layer.out=3'" \
    --job tiny.ini --set layer.out=3

# ---- silad, in every mode: datasets and the limits they set
every_mode_refuses "with a missing dataset names its directory" "$TEST_TMP/no-data" \
    --job tiny.ini --set "job.data_dir=$TEST_TMP/no-data"
mkdir short-data
for f in "$FMNIST_DIR"/*; do ln -s "$f" short-data/; done
rm short-data/train-labels-idx1-ubyte.gz
head -c 2000 "$FMNIST_DIR/train-labels-idx1-ubyte.gz" >short-data/train-labels-idx1-ubyte.gz
every_mode_refuses "with a truncated dataset file names it" "train-labels-idx1-ubyte" \
    --job tiny.ini --set "job.data_dir=$TEST_TMP/short-data"
every_mode_refuses "with a batch larger than the training samples says so" \
    "fewer than one batch" --job tiny.ini --set job.batch=512
every_mode_refuses "with more evaluations than steps an epoch names the key" \
    "evals_per_epoch" --job tiny.ini --set job.evals_per_epoch=9
every_mode_refuses "with every training sample held out names the key" "holdout" \
    --job tiny.ini --set job.holdout=60000

# ---- silad, in every mode: the output directory and the state to resume
echo precious >out-file
every_mode_refuses "with --out naming a file says so" "out-file: exists and is not a directory" \
    --job tiny.ini --out out-file
check "... and leaves the file as it was" grep -qx precious out-file
every_mode_refuses "--resume where no checkpoint is recorded says so" "no checkpoint recorded" \
    --job tiny.ini --resume "$TEST_TMP/nowhere"
if silad_run ck tiny.ini --set job.checkpoint_every=4; then
    cp -r ck damaged
    newest=damaged/checkpoints/$(tail -n 1 damaged/checkpoints/MANIFEST)
    damage_byte "$newest" 200
    every_mode_refuses "--resume of a damaged checkpoint names it" "checksum mismatch" \
        --job tiny.ini --resume damaged
    every_mode_refuses "--resume of another plan's checkpoint says so" \
        "a checkpoint of another plan" --job tiny.ini --set job.seed=2 --resume ck
else
    not_ok "a tiny run with checkpoints (for the --resume cases)" ck.stderr
fi

# ---- silad: command line
silad_refuses "without --job says --job is required" "--job" --inproc --threads 1
for threads in 0 abc 1025 4294967297; do
    silad_refuses "with --threads $threads refuses it" "'$threads'" \
        --job tiny.ini --inproc --threads "$threads"
done
# an ipc:// path that is a file or a directory: refused, the file kept
echo precious >precious.txt
mkdir adir
silad_refuses "--listen on a file's path refuses it" "precious.txt exists and is not a socket" \
    --job tiny.ini --listen "ipc://$TEST_TMP/precious.txt" --rpc none
check "silad --listen on a file's path leaves the file as it was" grep -qx precious precious.txt
silad_refuses "--listen on a directory's path refuses it" "adir exists and is not a socket" \
    --job tiny.ini --listen "ipc://$TEST_TMP/adir" --rpc none
silad_refuses "--rpc on a file's path refuses it" "precious.txt exists and is not a socket" \
    --job tiny.ini --inproc --threads 1 --rpc "ipc://$TEST_TMP/precious.txt"
check "silad --rpc on a file's path leaves the file as it was" grep -qx precious precious.txt

# ---- silactl: a good model, then broken copies of it
if silad_run tiny tiny.ini && "$SILACTL" eval tiny/model.sila --json >tiny.eval 2>tiny.eval.err
then
    ok "silactl eval accepts the model silad wrote (the control)"
else
    not_ok "silactl eval accepts the model silad wrote (the control)" tiny.stderr tiny.eval.err
fi
cp tiny/model.sila corrupt.sila
python3 - corrupt.sila <<'EOF'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[len(data) // 2] ^= 0x40
open(sys.argv[1], "wb").write(data)
EOF
size=$(stat -c %s tiny/model.sila)
head -c $((size / 2)) tiny/model.sila >truncated.sila
head -c 10 tiny/model.sila >stub.sila
mkdir cifar && head -c 3073 /dev/zero >cifar/test_batch.bin  # one all-zero CIFAR-10 record

refuses "silactl eval of a missing model names it" error "$TEST_TMP/missing.sila" \
    "$SILACTL" eval "$TEST_TMP/missing.sila" --json
refuses "silactl eval of a corrupted model names it" error corrupt.sila \
    "$SILACTL" eval corrupt.sila --json
refuses "silactl inspect of a corrupted model names it" error corrupt.sila \
    "$SILACTL" inspect corrupt.sila --json
refuses "silactl eval of a truncated model names it" error truncated.sila \
    "$SILACTL" eval truncated.sila --json
refuses "silactl eval of a model cut inside its header names it" error stub.sila \
    "$SILACTL" eval stub.sila --json
refuses "silactl eval --data of a missing cifar10 directory names the file" error \
    /nonexistent/test_batch.bin "$SILACTL" eval tiny/model.sila --data cifar10:/nonexistent --json
refuses "silactl eval --data of cifar10 for an fmnist model names the model" error \
    tiny/model.sila "$SILACTL" eval tiny/model.sila --data cifar10:cifar --json
check "... and both shapes" grep -qF \
    "takes 1x28x28 samples of 10 classes, the test split of cifar10:cifar has 3x32x32" "$err"
refuses "silactl eval --data without a kind says KIND:DIR" error "KIND:DIR" \
    "$SILACTL" eval tiny/model.sila --data "$FMNIST_DIR" --json
refuses "silactl eval --logits into a missing directory names the file" 1 nodir/tiny.logits \
    "$SILACTL" eval tiny/model.sila --logits nodir/tiny.logits

# ---- silactl export
check "silactl export --onnx writes the model silad wrote (the control)" \
    "$SILACTL" export tiny/model.sila --onnx tiny.onnx
refuses "silactl export of a missing model names it" 1 "$TEST_TMP/missing.sila" \
    "$SILACTL" export "$TEST_TMP/missing.sila" --onnx missing.onnx
refuses "silactl export of a corrupted model names it" 1 corrupt.sila \
    "$SILACTL" export corrupt.sila --onnx corrupt.onnx
check "... and writes nothing" test ! -e corrupt.onnx
refuses "silactl export into a missing directory names the path" 1 nodir/tiny.onnx \
    "$SILACTL" export tiny/model.sila --onnx nodir/tiny.onnx
mkdir -p outdir/taken.onnx/inside
refuses "silactl export onto a directory names it" 1 "outdir/taken.onnx: cannot write" \
    "$SILACTL" export tiny/model.sila --onnx outdir/taken.onnx
check "... and leaves the directory, and no temporary file" \
    test "$(ls outdir)" = taken.onnx -a -d outdir/taken.onnx/inside
refuses "silactl export without --onnx prints its usage, exit 2" 2 "--onnx OUT.onnx" \
    "$SILACTL" export tiny/model.sila
refuses "silactl with an unknown command exits 2" 2 "'frobnicate'" "$SILACTL" frobnicate

done_testing
