#!/bin/bash
# Training activations and gradients crossing module boundaries in 16 bits
# (job.wire_dtype, docs/jobs.md): with bf16 and with f16 a small residual
# pgl job trains --inproc and over spawned workers (one per module, and two
# workers) to bit-identical weights, the in-process trainer rounding at every
# boundary as the wire does, also with its global steps learned late
# (job.global_lag = 1: their gradients cross late); the weights differ from
# f32's; and the first
# worker sends about half the bytes per sample it sends with f32 (its
# evaluation batches stay f32). A frame in a dtype the plan does not name
# is refused: peers.sh; the frame format and the rounding: test_frame.
. "$(dirname "$0")/lib.sh"

: "${SILAWORKER:?SILAWORKER must name the silaworker executable}"
JOB=res3.ini
write_res3 "$JOB"
PGL=(--set job.algorithm=pgl --set job.test_limit=32)

# kb_sent DIR: the kB per sample the worker of module 1 sent (silad's summary).
kb_sent()
{
    sed -n 's/^worker for module 1: .*, \([0-9.]*\) kB sent per sample.*/\1/p' "$1.stdout"
}

silad_run f32 "$JOB" "${PGL[@]}" || not_ok "f32: --inproc exits 0" f32.stderr
F32_SHA=$(sha_of f32/model.sila 2>/dev/null)
spawn_run spawn-f32 "$JOB" --spawn "${PGL[@]}" || not_ok "f32: --spawn exits 0" spawn-f32.stderr
for d in bf16 f16; do
    if ! silad_run "in-$d" "$JOB" "${PGL[@]}" --set job.wire_dtype=$d; then
        not_ok "$d: --inproc exits 0" "in-$d.stderr"
        continue
    fi
    check "$d: weights differ from f32's" \
        test "$(sha_of "in-$d/model.sila" 2>/dev/null)" != "$F32_SHA"
    check_like_inproc "$d" "in-$d" "$JOB" "$d" "${PGL[@]}" --set job.wire_dtype=$d
    f32_kb=$(kb_sent spawn-f32)
    kb=$(kb_sent "spawn-$d")
    echo "# module 1 sent $kb kB per sample with $d, $f32_kb with f32"
    check "$d: module 1 sends at most 0.6 of f32's bytes per sample" \
        python3 -c "import sys; sys.exit(not 0 < float('$kb') <= 0.6 * float('$f32_kb'))"
done
# late global steps in bf16, as docs/performance.md measures them
LATE=("${PGL[@]}" --set job.wire_dtype=bf16 --set job.global_lag=1)
if silad_run in-late-bf16 "$JOB" "${LATE[@]}"; then
    check "late bf16: weights differ from bf16's at once" \
        test "$(sha_of in-late-bf16/model.sila 2>/dev/null)" != "$(sha_of in-bf16/model.sila)"
    check_like_inproc "late bf16" in-late-bf16 "$JOB" late-bf16 "${LATE[@]}"
else
    not_ok "late bf16: --inproc exits 0" in-late-bf16.stderr
fi
done_testing
