#!/bin/bash
# The systemd units under a real systemd: a container (systemd-nspawn
# --boot) runs systemd as PID 1 over this machine's /usr, with the files
# of `meson install --destdir` laid over it, its own /etc and /var, and a
# private network. There, with a cluster key and a tiny job in sila.env,
# silad.service starts once silad has sent READY=1, silaworker@1 and
# silaworker@2 join it, a worker killed with SIGKILL is restarted by its
# unit and rejoins as generation 2 while the run goes on, and `systemctl
# stop silad` ends the run with the model saved and every unit inactive,
# none failed. Skipped, saying why, where the container cannot boot (not
# root, no systemd-nspawn, a kernel or sandbox that refuses it).
. "$(dirname "$0")/lib.sh"

skip()
{
    echo "1..0 # SKIP $*"
    exit 0
}

[ "$(id -u)" -eq 0 ] || skip "booting a container needs root"
command -v systemd-nspawn >/dev/null ||
    skip "systemd-nspawn is not installed (Debian package systemd-container)"
[ -x /lib/systemd/systemd ] || skip "no /lib/systemd/systemd to boot (Debian package systemd)"

ROOT=$TEST_TMP/root
install_staged "$ROOT" || done_testing
env_file=$(find "$ROOT" -name sila.env | head -1)
key_file=$(dirname "$env_file")/cluster.key
"$SILACTL" keygen "$key_file" >keygen.out 2>&1 || not_ok "silactl keygen" keygen.out
write_tiny_mlp "$ROOT$PREFIX/share/sila/jobs/tiny-mlp.ini"
# many epochs, so that the run is still training when a worker is killed
# and when it is stopped; a lost worker is replaced after 5 s
cat >>"$env_file" <<EOF
SILA_JOB=$PREFIX/share/sila/jobs/tiny-mlp.ini
SILA_RUN=tiny
SILAD_OPTS=--set job.epochs=1000 --set job.data_dir=/srv/fmnist --set job.checkpoint_every=40 --worker-timeout 5
EOF

# the container's root: its own /etc (no service of this machine is
# enabled there, and the machine id makes the boot not a first boot), the
# dynamic linker's view of the shared /usr, an empty /var
CT=$TEST_TMP/ct
mkdir -p "$CT"/{etc,var,tmp,run,root,usr,proc,sys,dev,srv/fmnist}
chmod 1777 "$CT/tmp"
for l in bin sbin lib lib64; do
    [ -e "/usr/$l" ] && ln -s "usr/$l" "$CT/$l"
done
cp /usr/lib/os-release "$CT/etc/os-release"
for f in /etc/nsswitch.conf /etc/ld.so.cache /etc/ld.so.conf /etc/ld.so.conf.d /etc/alternatives; do
    [ -e "$f" ] && cp -a "$f" "$CT/etc/"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' \
    >"$CT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$CT/etc/group"
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$CT/etc/machine-id"
echo >>"$CT/etc/machine-id"
for d in "$ROOT"/*; do  # what the install put outside /usr (/etc for --prefix=/usr)
    [ "$d" = "$ROOT/usr" ] || cp -a "$d" "$CT/"
done

nspawn=(systemd-nspawn --boot --directory="$CT" --overlay-ro="/usr:$ROOT/usr:/usr"
        --bind-ro="$FMNIST_DIR:/srv/fmnist" --private-network --register=no --keep-unit
        --machine="sila-$$")
"${nspawn[@]}" systemd.unit=multi-user.target >boot.log 2>&1 </dev/null &
nspawn_pid=$!
shutdown_container()
{
    if kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid"  # nspawn asks the container to halt
        ended "$nspawn_pid" 30
    fi
    rm -rf "$TEST_TMP"
}
trap shutdown_container EXIT

# in_ct CMD...: runs CMD inside the container (all its namespaces)
in_ct()
{
    nsenter --target "$init_pid" --all -- "$@"
}
booted()
{
    init_pid=$(pgrep -P "$nspawn_pid" | head -1)
    [ -n "$init_pid" ] && in_ct systemctl is-system-running 2>/dev/null | grep -qx 'running\|degraded'
}
booted_or_gone()
{
    ! kill -0 "$nspawn_pid" 2>/dev/null || booted
}
if ! wait_for 30 booted_or_gone || ! booted; then
    state=$( [ -n "${init_pid:-}" ] && in_ct systemctl is-system-running 2>&1)
    reason=$(sed 's/\x1b\[[0-9;]*m//g' boot.log | grep -v '^$\|^Press ^]' | tail -3 | tr '\n' ' ')
    skip "the container did not boot (${nspawn[*]}: ${state:+state $state; }${reason:-no output})"
fi
ok "systemd booted as PID 1 in a container (pid $init_pid here)"

# silad_said PATTERN: silad's journal has a line matching PATTERN (grep -E)
silad_said()
{
    in_ct journalctl --no-pager -o cat -u silad.service | grep -Eq "$1"
}
# unit_is UNIT PROPERTY=VALUE...: systemctl show UNIT gives these values
unit_is()
{
    local unit=$1 p
    shift
    for p in "$@"; do
        in_ct systemctl show "$unit" -p "${p%%=*}" | grep -qxF "$p" || return 1
    done
}
# trained_steps: the step silad's status line (STATUS=) reports
trained_steps()
{
    in_ct systemctl show silad -p StatusText --value | sed -n 's|.*step \([0-9]*\)/.*|\1|p'
}
journal()
{
    in_ct journalctl --no-pager -o short-monotonic -u silad.service -u 'silaworker@*' >"$1" 2>&1
}

# ---- start: Type=notify returns once silad has said READY=1 (the
# timeouts here only bound how long a broken unit takes to fail the test)
in_ct timeout 30 systemctl start silad.service >start.out 2>&1
st=$?
journal journal.start
if [ $st -eq 0 ] && unit_is silad ActiveState=active SubState=running &&
    in_ct systemctl show silad -p StatusText --value | grep -q "^waiting for workers (2 modules)"; then
    ok "systemctl start silad returns with silad ready (READY=1), waiting for 2 workers"
else
    not_ok "systemctl start silad returns with silad ready (READY=1; exit $st)" start.out journal.start
fi

in_ct systemctl start silaworker@1.service silaworker@2.service >workers.out 2>&1
if wait_for 20 silad_said "^job tiny-mlp: local, 2 modules on 2 workers" &&
    silad_said "worker for module 1 ready .*generation 1" &&
    silad_said "worker for module 2 ready .*generation 1"; then
    ok "silaworker@1 and silaworker@2 join silad and the run starts"
else
    journal journal.join
    not_ok "silaworker@1 and silaworker@2 join silad and the run starts" workers.out journal.join
fi

# ---- a killed worker: its unit restarts it, it rejoins as generation 2
wait_for 20 silad_said "checkpoint after step"
in_ct systemctl kill --signal=KILL silaworker@1.service >kill.out 2>&1
if wait_for 30 silad_said "worker for module 1 ready .*generation 2" &&
    ! unit_is silaworker@1 NRestarts=0 && unit_is silaworker@1 ActiveState=active; then
    ok "silaworker@1 killed by SIGKILL: its unit restarts it, and it rejoins as generation 2"
else
    journal journal.kill
    not_ok "silaworker@1 killed by SIGKILL: its unit restarts it, and it rejoins" kill.out \
        journal.kill
fi
at_rejoin=$(trained_steps)
steps_past()
{
    [ "$(trained_steps)" -gt "$1" ]
}
if [ -n "$at_rejoin" ] && wait_for 20 steps_past $((at_rejoin + 16)) &&
    unit_is silaworker@2 NRestarts=0; then
    ok "training goes on past step $at_rejoin; silaworker@2 was not restarted"
else
    journal journal.after
    not_ok "training goes on after the replacement (step ${at_rejoin:-?})" journal.after
fi

# ---- systemctl stop: the run ends with the model saved, no unit failed
in_ct timeout 30 systemctl stop silad.service >stop.out 2>&1
st=$?
journal journal.stop
model=$CT/var/lib/private/sila/tiny/model.sila
if [ $st -eq 0 ] && unit_is silad ActiveState=inactive Result=success &&
    silad_said "^model saved to /var/lib/sila/tiny/model.sila" && sha_of "$model" >/dev/null; then
    ok "systemctl stop silad saves the model ($(sha_of "$model" | cut -c1-12)...) and leaves it inactive"
else
    not_ok "systemctl stop silad saves the model and leaves it inactive (exit $st)" stop.out \
        journal.stop
fi
workers_ended()
{
    unit_is silaworker@1 ActiveState=inactive Result=success &&
        unit_is silaworker@2 ActiveState=inactive Result=success
}
if wait_for 15 workers_ended; then
    ok "the workers end with the run: both units inactive, not failed, not restarting"
else
    journal journal.end
    in_ct systemctl status --no-pager 'silaworker@*' >status.end 2>&1
    not_ok "the workers end with the run" status.end journal.end
fi
done_testing
