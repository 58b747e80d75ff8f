# shellcheck shell=bash disable=SC2034
# Shared helpers of the integration tests (sourced by bash scripts).
#
# A test script runs the real silad and silactl in a fresh temporary
# directory (removed on exit) and reports each assertion as one TAP case, so
# `meson test` names what failed. The environment gives the programs:
#   SILAD, SILACTL     the built executables (tests/meson.build sets them)
#   SILA_SOURCE_DIR    the source tree (for deploy/jobs/ and this directory)
#   SILA_FMNIST_DIR    Fashion-MNIST, default /usr/share/datasets/fashion-mnist

set -u

: "${SILAD:?SILAD must name the silad executable}"
: "${SILACTL:?SILACTL must name the silactl executable}"
: "${SILA_SOURCE_DIR:?SILA_SOURCE_DIR must name the source tree}"
FMNIST_DIR=${SILA_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
JOBS_DIR=$SILA_SOURCE_DIR/deploy/jobs
JSONCHECK=$SILA_SOURCE_DIR/tests/integration/jsoncheck.py
export OPENBLAS_NUM_THREADS=1

TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sila-it.XXXXXX") || exit 99
trap 'rm -rf "$TEST_TMP"' EXIT
trap 'exit 130' INT    # so that the EXIT trap also cleans up after a
trap 'exit 143' TERM   # timeout or an interrupt
cd "$TEST_TMP" || exit 99

# Under `meson test --setup sanitize` (ASAN_OPTIONS set) done_testing's last
# case is that no process the script started reported anything: a report of
# a worker that silad replaced, or of a program meant to fail, would
# otherwise go unseen. AddressSanitizer and LeakSanitizer write theirs to
# $TEST_TMP/sanitizer.PID; UBSan, whose gcc runtime ignores log_path beside
# ASan's, writes to the stderr of the process, which the scripts keep in
# files under $TEST_TMP (check() keeps each case's in its own).
sanitized() { [ -n "${ASAN_OPTIONS-}" ]; }
if sanitized; then
    export ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$TEST_TMP/sanitizer"
fi

tap_n=0
tap_failed=0

# ok DESC / not_ok DESC [DIAGNOSTIC_FILE...]: reports one TAP case; not_ok
# also copies the files (a command's output) to stderr as '#' lines.
ok()
{
    tap_n=$((tap_n + 1))
    echo "ok $tap_n - $1"
}

not_ok()
{
    tap_n=$((tap_n + 1))
    tap_failed=$((tap_failed + 1))
    echo "not ok $tap_n - $1"
    echo "not ok $tap_n - $1" >&2  # stderr: shown by meson test --print-errorlogs
    shift
    local f
    for f in "$@"; do
        [ -s "$f" ] && sed 's/^/#   /' "$f" >&2
    done
    return 0
}

# check DESC CMD...: one case, passing iff CMD exits 0 (its stdin is the
# caller's, so a here-document can feed it). CMD's output is shown on failure.
check()
{
    local desc=$1 out=$TEST_TMP/.check-$((tap_n + 1)).out
    shift
    if "$@" >"$out" 2>&1; then
        ok "$desc"
    else
        not_ok "$desc (exit $?)" "$out"
    fi
}

# wait_for SECONDS CMD...: runs CMD (its stderr silenced) every 0.2 s until
# it succeeds; returns 1 when SECONDS pass first.
wait_for()
{
    local end=$((SECONDS + $1))
    shift
    until "$@" 2>/dev/null; do
        [ $SECONDS -ge $end ] && return 1
        sleep 0.2
    done
}

# ended PID SECONDS: waits at most SECONDS for PID (a child of the script)
# to exit, kills it then; returns its exit status.
ended()
{
    timeout "$2" tail --pid="$1" -f /dev/null
    kill -9 "$1" 2>/dev/null
    wait "$1"
}

# kill_tree PID: ends PID and every process below it, children first, by
# the pids ps lists: SIGTERM, then SIGKILL to one still there after 10 s.
# For programs that may start helpers of their own.
kill_tree()
{
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        kill_tree "$child"
    done
    kill "$1" 2>/dev/null
    ended "$1" 10 2>/dev/null
    return 0
}

# claim_ports N: prints the first of N consecutive tcp ports that are free
# now and claimed by no other test script still running, and claims them
# for this script until it exits. Tests run side by side, and a port of one
# inside another's range lets one's worker connect to the other's
# coordinator (a nanomsg pair takes the first peer that arrives). Claims
# are lines "FIRST N PID" in $PORT_CLAIMS, changed under its lock; ports
# 10000-19999 keep clear of the kernel's ephemeral ones and of the unit
# tests' (20000-39999).
PORT_CLAIMS=${TMPDIR:-/tmp}/sila-test-ports
claim_ports()
{
    python3 - "$1" "$$" "$PORT_CLAIMS" <<'EOF'
import fcntl, os, random, socket, sys
n, pid, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def alive(p):
    try:
        os.kill(p, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True

def free(first):
    for port in range(first, first + n):
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True

with open(path + ".lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    claims = []
    if os.path.exists(path):
        for line in open(path):
            f = line.split()
            if len(f) == 3 and alive(int(f[2])):
                claims.append(tuple(map(int, f)))
    for _ in range(500):
        first = random.randrange(10000, 20000 - n)
        apart = all(first + n <= b or b + m <= first for b, m, _ in claims)
        if apart and free(first):
            break
    else:
        sys.exit("claim_ports: no %d free ports in 10000-19999" % n)
    claims.append((first, n, pid))
    with open(path + ".new", "w") as out:
        out.writelines("%d %d %d\n" % c for c in claims)
    os.replace(path + ".new", path)
print(first)
EOF
}

# done_testing: prints the TAP plan and exits 1 if any case failed. In a
# sanitized run its last case is that no sanitizer reported an error.
done_testing()
{
    if sanitized; then
        local reports
        reports=$(grep -rlI -E '^==[0-9]+==ERROR: |: runtime error: ' "$TEST_TMP")
        if [ -z "$reports" ]; then
            ok "no sanitizer reported an error"
        else
            # shellcheck disable=SC2086 # the files are named by the scripts, without spaces
            not_ok "no sanitizer reported an error (${reports//$'\n'/, })" $reports
        fi
    fi
    echo "1..$tap_n"
    [ "$tap_failed" -eq 0 ] || echo "# $tap_failed of $tap_n failed"
    exit $((tap_failed > 0))
}

# silad_run DIR JOB [ARG...]: trains JOB in-process into DIR with one BLAS
# thread and no RPC (unless ARG gives one); DIR.stdout, DIR.stderr and
# DIR.status hold what it said and its exit status. Returns that status.
silad_run()
{
    local dir=$1 job=$2
    shift 2
    "$SILAD" --job "$job" --inproc --out "$dir" --threads 1 --rpc none "$@" \
        >"$dir.stdout" 2>"$dir.stderr"
    local st=$?
    echo "$st" >"$dir.status"
    return "$st"
}

# spawn_run DIR JOB SPAWN-ARG [ARG...]: like silad_run, distributed
# (SPAWN-ARG --spawn or --spawn=N), stopped after 300 s.
spawn_run()
{
    local dir=$1 job=$2 spawn=$3
    shift 3
    timeout 300 "$SILAD" --job "$job" "$spawn" --threads 1 --out "$dir" --rpc none "$@" \
        >"$dir.stdout" 2>"$dir.stderr"
    local st=$?
    echo "$st" >"$dir.status"
    return "$st"
}

# check_same_run LABEL DIR-A DIR-B: asserts that the runs in DIR-A and DIR-B
# saved the same weights and recorded the same evaluations.
check_same_run()
{
    local label=$1 a b
    a=$(sha_of "$2/model.sila" 2>/dev/null) b=$(sha_of "$3/model.sila" 2>/dev/null)
    if [ -n "$a" ] && [ "$a" = "$b" ]; then
        ok "$label: equal weights ($a)"
    else
        echo "$2 $a, $3 $b" >"$3.sha"
        not_ok "$label: equal weights" "$3.sha"
    fi
    check "$label: equal evaluations" python3 "$JSONCHECK" same-evals "$2/metrics.jsonl" \
        "$3/metrics.jsonl"
}

# check_like_inproc LABEL INPROC-DIR JOB NAME [ARG...]: trains JOB with ARGs
# over spawned workers, one per module (into spawn-NAME) and two (into
# spawn=2-NAME); asserts of each that it exits 0, with the weights and the
# evaluations of the --inproc run in INPROC-DIR.
check_like_inproc()
{
    local label=$1 indir=$2 job=$3 name=$4 spawn dir
    shift 4
    for spawn in --spawn --spawn=2; do
        dir=${spawn#--}-$name
        if spawn_run "$dir" "$job" "$spawn" "$@"; then
            ok "$label: silad $spawn exits 0"
        else
            not_ok "$label: silad $spawn exits 0" "$dir.stderr" "$dir.stdout"
            continue
        fi
        check_same_run "$label: $spawn against --inproc" "$indir" "$dir"
    done
}

# install_staged ROOT: meson install of the build directory into ROOT
# (--destdir); sets PREFIX, the configured prefix the files are under
# (ROOT$PREFIX/bin/silaworker), and UNITDIR, where the units are (in ROOT).
# A failed install is a failed case, and returns 1.
install_staged()
{
    : "${SILA_BUILD_ROOT:?SILA_BUILD_ROOT must name the build directory}"
    if ! meson install -C "$SILA_BUILD_ROOT" --destdir "$1" --no-rebuild >install.log 2>&1; then
        not_ok "meson install --destdir works" install.log
        return 1
    fi
    UNITDIR=$(dirname "$(find "$1" -name silad.service | head -1)")
    PREFIX=${UNITDIR%/lib/systemd/system}
    PREFIX=${PREFIX#"$1"}
}

# field MODEL KEY: a field of silactl inspect --json.
field()
{
    "$SILACTL" inspect "$1" --json | python3 "$JSONCHECK" field - "$2"
}

# sha_of MODEL: prints the weights_sha256 silactl inspect reports.
sha_of()
{
    field "$1" weights_sha256
}

# damage_byte FILE OFFSET: inverts every bit of the byte at OFFSET (from
# 0), so that FILE always changes, whatever the byte held.
damage_byte()
{
    local b
    b=$(od -An -tu1 -j "$2" -N 1 "$1" | tr -d ' ')
    [ -n "$b" ] || return 1
    # shellcheck disable=SC2059 # the format is the octal escape of one byte
    printf "$(printf '\\%03o' $((b ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# make_test_subset DIR N: writes the first N samples of Fashion-MNIST's test
# split to DIR as plain IDX files, so silactl eval --data fmnist:DIR sees
# exactly the samples silad evaluated with job.test_limit=N.
make_test_subset()
{
    mkdir -p "$1" && python3 - "$FMNIST_DIR" "$1" "$2" <<'EOF'
import gzip, os, struct, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def read(stem):
    p = os.path.join(src, "t10k-" + stem)
    return open(p, "rb").read() if os.path.exists(p) else gzip.open(p + ".gz").read()
img, lab = read("images-idx3-ubyte"), read("labels-idx1-ubyte")
assert struct.unpack(">IIII", img[:16]) == (0x803, 10000, 28, 28)
assert struct.unpack(">II", lab[:8]) == (0x801, 10000)
with open(os.path.join(dst, "t10k-images-idx3-ubyte"), "wb") as f:
    f.write(struct.pack(">IIII", 0x803, n, 28, 28) + img[16:16 + n * 784])
with open(os.path.join(dst, "t10k-labels-idx1-ubyte"), "wb") as f:
    f.write(struct.pack(">II", 0x801, n) + lab[8:8 + n])
EOF
}

# write_tiny_mlp FILE: a 2-module MLP job (flatten, linear 64, relu | linear
# 10) on 256 training samples; the line numbers matter to cli_errors.
write_tiny_mlp()
{
    cat >"$1" <<'EOF'
[job]
name = tiny-mlp
dataset = fmnist
epochs = 1
batch = 32
algorithm = local
train_limit = 256
test_limit = 100
[optimizer]
lr = 0.05
momentum = 0.9
[module]
[flatten]
[linear]
out = 64
[relu]
[module]
[linear]
out = 10
EOF
}

# write_res3 FILE: a 3-module residual job (stem conv and a block | a
# strided block | a block, gap, linear) with drop-path, on 320 training
# and 128 test samples.
write_res3()
{
    cat >"$1" <<'EOF'
[job]
name = res3
dataset = fmnist
epochs = 2
batch = 32
algorithm = local
train_limit = 320
test_limit = 128
period = 3
drop_path = 0.2
[optimizer]
lr = 0.05
momentum = 0.9
weight_decay = 5e-4
[module]
[conv2d]
out = 8
stride = 2
pad = 1
bias = false
[batchnorm]
[relu]
[block]
out = 8
[module]
[block]
out = 16
stride = 2
[module]
[block]
out = 16
[gap]
[linear]
out = 10
EOF
}
