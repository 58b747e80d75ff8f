#!/bin/sh
# The README's two quick-start commands, for a Debian 12 machine as root:
#   deploy/bootstrap.sh run    install what is missing, build, train the default job
#                              over local worker processes
#   deploy/bootstrap.sh test   install what is missing, build, run the whole test suite,
#                              then its sanitized subset
# Installs only packages that are absent (apt-get update first, when needed)
# and builds into ./build with warnings as errors. `run` downloads nothing
# but Debian packages; `test` also installs the npm packages locked in
# tests/onnx/package-lock.json (ONNX Runtime, which runs silactl export's
# files; `npm ci --ignore-scripts`: no install script runs). `test` also
# builds ./build-sanitize with AddressSanitizer (LeakSanitizer included)
# and UBSan, and runs the tests of suite 'sanitize' there
# (tests/meson.build) with the test setup that makes every report fail its
# test (meson.build); gcc brings their runtimes (libasan8, libubsan1).
set -eu

cd "$(dirname "$0")/.."

BUILD_PACKAGES="gcc meson ninja-build pkg-config libuv1-dev libnanomsg-dev libprotobuf-c-dev
protobuf-c-compiler libopenblas-dev libdnnl-dev check libinih-dev zlib1g-dev libsodium-dev libsystemd-dev
libmicrohttpd-dev libonnx-dev scdoc dataset-fashion-mnist"
# what the tests use besides: nanocat and protoc speak the RPC by hand, gnuplot
# draws silactl plot, systemd-nspawn boots the units under a real systemd,
# curl fetches silad's /metrics page and a real prometheus scrapes it,
# python3-onnx checks and node runs (ONNX Runtime) the exported models,
# Slurm's daemons and munge run deploy/slurm/sila.sbatch on a cluster of one
TEST_PACKAGES="nanomsg-utils protobuf-compiler python3 gnuplot-nox systemd systemd-container curl
prometheus python3-onnx nodejs slurmctld slurmd slurm-client munge"

usage() {
    echo "usage: deploy/bootstrap.sh run|test" >&2
    exit 2
}

install_missing() {
    missing=""
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing="$missing $p"
        fi
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: missing packages:$missing; run as root or install them" >&2
        exit 1
    fi
    echo "bootstrap: installing$missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
}

# build DIR [OPTION...]: configures DIR with warnings as errors and the
# OPTIONs (set up on the first call), and builds it.
build() {
    dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson configure "$dir" -Dwerror=true "$@" >/dev/null
    else
        meson setup "$dir" -Dwerror=true "$@"
    fi
    meson compile -C "$dir"
}

[ $# -eq 1 ] || usage
case "$1" in
run)
    install_missing $BUILD_PACKAGES
    build build
    exec build/daemon/silad --job deploy/jobs/fmnist-cnn-k4.ini --spawn
    ;;
test)
    install_missing $BUILD_PACKAGES $TEST_PACKAGES
    # Debian's npm; a nodejs from elsewhere (NodeSource) brings its own
    command -v npm >/dev/null || install_missing npm
    (cd tests/onnx && npm ci --ignore-scripts --no-audit --no-fund)
    build build
    build build-sanitize -Db_sanitize=address,undefined -Dbuildtype=debugoptimized
    status=0
    meson test -C build --print-errorlogs || status=1
    meson test -C build-sanitize --setup sanitize --suite sanitize --print-errorlogs || status=1
    exit $status
    ;;
*)
    usage
    ;;
esac
