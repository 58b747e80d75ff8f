#!/bin/bash
# The systemd units as `meson install` writes them: systemd-analyze verify
# says nothing about them (it exits 0 even on unknown keys, so any output
# fails the test), and their exposure under systemd-analyze security stays
# at most 2.5 (of 10). The binaries the units name are the installed ones
# in a staging directory.
. "$(dirname "$0")/lib.sh"

if ! command -v systemd-analyze >/dev/null; then
    echo "1..0 # SKIP systemd-analyze is not installed (Debian package systemd)"
    exit 0
fi
ROOT=$TEST_TMP/root
install_staged "$ROOT" || done_testing
ok "meson install --destdir works"
check "the units, their settings, the jobs and the man pages are installed" test -f \
    "$ROOT$PREFIX/lib/systemd/system/silaworker@.service" -a -f "$ROOT$PREFIX/etc/sila/sila.env" \
    -a -f "$ROOT$PREFIX/share/sila/jobs/fmnist-cnn-k4.ini" \
    -a -f "$ROOT$PREFIX/share/man/man8/silad.8"

# the units as installed, pointed at the staged binaries
mkdir units
sed "s|$PREFIX/|$ROOT$PREFIX/|g" "$UNITDIR/silad.service" >units/silad.service
sed "s|$PREFIX/|$ROOT$PREFIX/|g" "$UNITDIR/silaworker@.service" >units/silaworker@3.service
for u in silad.service silaworker@3.service; do
    systemd-analyze verify --man=no "units/$u" >"$u.verify" 2>&1
    if [ $? -eq 0 ] && [ ! -s "$u.verify" ]; then
        ok "$u: systemd-analyze verify has nothing to say"
    else
        not_ok "$u: systemd-analyze verify has nothing to say" "$u.verify"
    fi
    systemd-analyze security --offline=true --threshold=25 "units/$u" >"$u.security" 2>&1
    st=$?
    exposure=$(grep -o 'Overall exposure level for [^:]*: [0-9.]*' "$u.security" | awk '{print $NF}')
    if [ $st -eq 0 ] && [ -n "$exposure" ]; then
        ok "$u: exposure $exposure, at most 2.5"
    else
        not_ok "$u: exposure ${exposure:-?}, at most 2.5" "$u.security"
    fi
done
done_testing
