#!/bin/sh
# The README's two quick-start commands, for a Debian 12 machine as root:
#   deploy/bootstrap.sh run    install what is missing, build, train the default job
#                              over local worker processes
#   deploy/bootstrap.sh test   install what is missing, build, run the whole test suite
# Installs only packages that are absent (apt-get update first, when needed),
# builds into ./build with warnings as errors, and never downloads anything
# but Debian packages.
set -eu

cd "$(dirname "$0")/.."

BUILD_PACKAGES="gcc meson ninja-build pkg-config libuv1-dev libnanomsg-dev libprotobuf-c-dev
protobuf-c-compiler libopenblas-dev libdnnl-dev check libinih-dev zlib1g-dev libsodium-dev libsystemd-dev scdoc dataset-fashion-mnist"
# what the tests use besides: nanocat and protoc speak the RPC by hand, gnuplot
# draws silactl plot, systemd-nspawn boots the units under a real systemd
TEST_PACKAGES="nanomsg-utils protobuf-compiler python3 gnuplot-nox systemd systemd-container"

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

build() {
    if [ -f build/build.ninja ]; then
        meson configure build -Dwerror=true >/dev/null
    else
        meson setup build -Dwerror=true
    fi
    meson compile -C build
}

[ $# -eq 1 ] || usage
case "$1" in
run)
    install_missing $BUILD_PACKAGES
    build
    exec build/daemon/silad --job deploy/jobs/fmnist-cnn-k4.ini --spawn
    ;;
test)
    install_missing $BUILD_PACKAGES $TEST_PACKAGES
    build
    exec meson test -C build --print-errorlogs
    ;;
*)
    usage
    ;;
esac
