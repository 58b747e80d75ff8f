#!/bin/bash
# deploy/slurm/sila.sbatch under a real Slurm. As root, the test starts a
# one-machine cluster of its own: munged with its own key and socket,
# slurmctld, and two slurmd "nodes" (n1, n2: one CPU each, both on
# loopback), all configured, logging and keeping their state in the
# test's directory (SLURM_CONF). It submits the script with sbatch over
# both nodes (2 tasks, so each worker trains 2 of the 4 modules of
# deploy/jobs/fmnist-cnn-k4.ini) and checks:
#  - a short run: silad and the two workers run as job steps (squeue -s),
#    the coordinator's on the first node and a worker on each node; the job
#    ends COMPLETED and the model it saved scores on the test samples what
#    the run reported (silactl eval);
#  - a long run: `scancel JOBID.STEPID` of a worker's step makes the script
#    start a new step for those modules, which replaces the lost worker
#    (generation 2, state from the newest checkpoint) while the other
#    worker's step goes on; `scontrol requeue` starts the job again, and
#    silad resumes from its newest checkpoint; `silactl stop` then ends the
#    job COMPLETED with the model saved;
#  - a coordinator that fails (a bad option) ends the job FAILED, its
#    workers, which wait for a coordinator to join, with it.
# Skipped, saying why, where the cluster cannot start (not root, Slurm or
# munge not installed, a daemon that fails in this machine).
. "$(dirname "$0")/lib.sh"

: "${SILAWORKER:?SILAWORKER must name the silaworker executable}"
SBATCH_SCRIPT=$SILA_SOURCE_DIR/deploy/slurm/sila.sbatch
JOB=$JOBS_DIR/fmnist-cnn-k4.ini
# 20 steps an epoch, evaluated on 500 samples
SHORT=(--set job.train_limit=2560 --set job.test_limit=500)

skip()
{
    echo "1..0 # SKIP $*"
    exit 0
}

[ "$(id -u)" -eq 0 ] || skip "starting slurmd and munged needs root"
for p in munged:munge slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client; do
    command -v "${p%:*}" >/dev/null ||
        skip "${p%:*} is not installed (Debian packages slurmctld, slurmd, slurm-client, munge)"
done

# ---- the cluster: ports for slurmctld and the two slurmd, then silad's
# (its RPC port, then PORT to PORT+64+4)
first=$(claim_ports 76) || exit 99
CTLD_PORT=$first RPC_PORT=$((first + 3)) SILA_PORT=$((first + 4))
export SILA_PORT
S=$TEST_TMP/slurm
mkdir -p "$S/state" "$S/spool-n1" "$S/spool-n2" submit
chmod 755 "$TEST_TMP" # munged wants every directory above its socket searchable
head -c 1024 /dev/urandom >"$S/munge.key" && chmod 600 "$S/munge.key"
export SLURM_CONF=$S/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=silatest
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
AuthType=auth/munge
AuthInfo=socket=$S/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool-%n
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd-%n.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
ReturnToService=2
# a step that ignores SIGTERM is killed 5 s later (30 by default)
KillWait=5
NodeName=n1 NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 Port=$((first + 1)) CPUs=1 State=UNKNOWN
NodeName=n2 NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 Port=$((first + 2)) CPUs=1 State=UNKNOWN
PartitionName=sila Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
EOF

daemons=()
jobs_submitted=()
# our_processes: the pids of the processes that run for this test's
# cluster (a job's process, or a slurmstepd of ours: their environment has
# our SLURM_CONF), but for the daemons and their children (slurmscriptd)
our_processes()
{
    local p
    for p in $(grep -lzxF "SLURM_CONF=$SLURM_CONF" /proc/[0-9]*/environ 2>/dev/null); do
        p=${p#/proc/}
        p=${p%/environ}
        [[ " ${daemons[*]} " != *" $p "* && " ${daemons[*]} " != *" $(ps -o ppid= -p "$p") "* ]] &&
            echo "$p"
    done
}
no_job_left()
{
    [ -z "$(our_processes)" ]
}
# stop_cluster: cancels the jobs, waits for their processes (slurmstepd
# outlives slurmd) and kills those left, then stops the daemons
stop_cluster()
{
    local job pid
    for job in "${jobs_submitted[@]}"; do
        scancel "$job" 2>/dev/null
    done
    wait_for 15 no_job_left
    for pid in $(our_processes); do
        kill -9 "$pid" 2>/dev/null
    done
    kill -TERM "${daemons[@]}" 2>/dev/null
    for pid in "${daemons[@]}"; do
        ended "$pid" 10 >/dev/null 2>&1
    done
    rm -rf "$TEST_TMP"
}
trap stop_cluster EXIT

# start NAME CMD...: a daemon in the foreground, its output in $S/NAME.out
start()
{
    local name=$1
    shift
    "$@" >"$S/$name.out" 2>&1 </dev/null &
    daemons+=($!)
}
# the last lines a daemon said, on one line
last_words()
{
    grep -hv 'pmix\|PMIx\|MPI' "$@" 2>/dev/null | tail -n 3 | tr '\n' ' '
}

start munged munged --foreground --socket="$S/munge.sock" --key-file="$S/munge.key" \
    --pid-file="$S/munged.pid" --log-file="$S/munged.log" --seed-file="$S/munged.seed"
wait_for 10 test -S "$S/munge.sock" ||
    skip "munged did not start: $(last_words "$S/munged.out")"
start slurmctld slurmctld -D -i
start slurmd-n1 slurmd -D -N n1
start slurmd-n2 slurmd -D -N n2
nodes_idle()
{
    [ "$(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u | tr '\n' ' ')" = "n1 idle n2 idle " ]
}
if ! wait_for 30 nodes_idle; then
    sinfo -N >"$S/sinfo.out" 2>&1
    skip "the cluster did not come up (sinfo: $(last_words "$S/sinfo.out"); slurmctld:" \
        "$(last_words "$S/slurmctld.out"); slurmd n1: $(last_words "$S/slurmd-n1.out"))"
fi
ok "munged, slurmctld and slurmd for nodes n1 and n2 run (sinfo: both idle)"

# ---- the submissions: silad, silaworker and silactl from the build
# directory, the cluster key, the environment sbatch hands to the steps
PATH=$(dirname "$SILAD"):$(dirname "$SILAWORKER"):$(dirname "$SILACTL"):$PATH
export PATH
export SILA_KEY_FILE=$TEST_TMP/cluster.key
"$SILACTL" keygen "$SILA_KEY_FILE" >keygen.out 2>&1 || not_ok "silactl keygen" keygen.out
make_test_subset test500 500
cd submit || exit 99

# submit SILAD_OPTS: submits the script over both nodes; sets job to its
# id, or fails the test
submit()
{
    if ! job=$(SILAD_OPTS=$1 sbatch --parsable --nodes=2 --ntasks=2 --cpus-per-task=1 \
        "$SBATCH_SCRIPT" "$JOB" 2>sbatch.err); then
        not_ok "sbatch sila.sbatch" sbatch.err
        done_testing
    fi
    jobs_submitted+=("$job")
    FROM=1
}
# steps JOB: the job's steps, "STEPID NAME NODE" a line, batch step left out
steps()
{
    squeue -h -s -j "$1" -o '%i %j %N' 2>/dev/null | grep -v '\.batch ' | sort
}
# said JOB PATTERN: the job's output has a line matching PATTERN (grep -E)
# from line $FROM on
FROM=1
said()
{
    tail -n "+$FROM" "sila-$1.out" 2>/dev/null | grep -Eq "$2"
}
# state_is JOB STATE: scontrol shows the job in STATE
state_is()
{
    scontrol -o show job "$1" 2>/dev/null | grep -q " JobState=$2 "
}
# all_running JOB: the coordinator's step and both workers' are running
all_running()
{
    [ "$(steps "$1" | cut -d' ' -f2 | sort | tr '\n' ' ')" = \
        "silad silaworker-1-2 silaworker-3-4 " ]
}
# check_model JOB [exact]: the job ended COMPLETED, exit 0, and silactl eval
# of the model it saved finds an accuracy: with exact, the one the run
# reported (a run stopped mid-epoch reports its last evaluation's)
check_model()
{
    local job=$1 model=runs/sila-$1/model.sila reported measured
    if wait_for 60 state_is "$job" COMPLETED &&
        scontrol -o show job "$job" | grep -q " ExitCode=0:0 "; then
        ok "job $job ends COMPLETED, exit code 0"
    else
        scontrol show job "$job" >"job-$job.state" 2>&1
        not_ok "job $job ends COMPLETED" "job-$job.state" "sila-$job.out"
    fi
    reported=$(sed -n 's|^model saved to .*: classifier, test accuracy \(.*\)$|\1|p' \
        "sila-$job.out" | tail -n 1)
    measured=$("$SILACTL" eval "$model" --data "fmnist:$TEST_TMP/test500" 2>"eval-$job.err" |
        sed -n 's|.* correct, accuracy \(.*\)$|\1|p')
    if [ -n "$reported" ] && [ "$reported" = "$measured" ]; then
        ok "job $job saved its model; silactl eval finds the reported accuracy ($measured)"
    elif [ -n "$reported" ] && [ -n "$measured" ] && [ "${2-}" != exact ]; then
        ok "job $job saved its model; silactl eval: $measured (last evaluation $reported)"
    else
        echo "reported '$reported', silactl eval '$measured'" >"eval-$job.out"
        not_ok "job $job saved its model with the reported accuracy" "eval-$job.out" \
            "eval-$job.err" "sila-$job.out"
    fi
}

# ---- a short run, ending by itself
submit "${SHORT[*]} --set job.epochs=1"
if wait_for 60 all_running "$job"; then
    steps "$job" >steps.short
    # the coordinator on the first node, a worker on each node
    if grep -q ' silad n1$' steps.short &&
        [ "$(grep silaworker steps.short | cut -d' ' -f3 | sort | tr '\n' ' ')" = "n1 n2 " ]; then
        ok "silad runs as a step on n1, the workers of modules 1-2 and 3-4 as steps on n1 and n2"
    else
        not_ok "silad runs as a step on n1, one worker as a step on each node" steps.short
    fi
else
    steps "$job" >steps.short
    not_ok "silad and both workers run as steps of job $job" steps.short "sila-$job.out"
    done_testing # the rest would wait for them in vain
fi
check_model "$job" exact

# ---- a long run: a worker's step cancelled, then the job requeued
submit "${SHORT[*]} --set job.epochs=1000 --set job.checkpoint_every=10 --worker-timeout 3"
wait_for 60 all_running "$job" && wait_for 60 said "$job" '^checkpoint after step'
steps "$job" >steps.before
victim=$(sed -n 's/ silaworker-1-2 .*//p' steps.before)
other=$(sed -n 's/ silaworker-3-4 .*//p' steps.before)
scancel "$victim"
replaced()
{
    local now
    now=$(steps "$job" | sed -n 's/ silaworker-1-2 .*//p')
    [ -n "$now" ] && [ "$now" != "$victim" ] &&
        said "$job" '^worker for modules 1-2 ready .*generation 2\)' &&
        said "$job" '^modules 1-2 restored from .*/checkpoints/step-[0-9]*\.ckpt'
}
if [ -n "$victim" ] && wait_for 60 replaced &&
    said "$job" "^sila.sbatch: the worker step of modules 1-2 ended .*starting it again"; then
    steps "$job" >steps.after
    ok "scancel $victim (modules 1-2): the script starts step $(sed -n 's/ silaworker-1-2 .*//p' \
        steps.after), whose worker replaces the lost one (generation 2) from the checkpoint"
else
    steps "$job" >steps.after
    not_ok "scancel ${victim:-(no worker step)}: a new step replaces the lost worker" steps.before \
        steps.after "sila-$job.out"
fi
# training goes on past the restored step, and modules 3-4 kept their step
restored=$(sed -n 's|^modules 1-2 restored from .* (step \([0-9]*\))$|\1|p' "sila-$job.out")
# beyond: a checkpoint was written after step $restored
beyond()
{
    [ "$(sed -n 's|^checkpoint after step \([0-9]*\):.*|\1|p' "sila-$job.out" | tail -n 1)" \
        -gt "${restored:-0}" ]
}
if [ -n "$restored" ] && wait_for 60 beyond && steps "$job" | grep -q "^$other silaworker-3-4 "; then
    ok "training goes on past step $restored; modules 3-4 stay in step $other"
else
    steps "$job" >steps.later
    not_ok "training goes on after the replacement, modules 3-4 untouched" steps.later \
        "sila-$job.out"
fi

# requeued (as after a node failure): the job starts again, silad resumes.
# Slurm holds a requeued job for two minutes; it is released at once here.
FROM=$(($(wc -l <"sila-$job.out") + 1))
scontrol requeue "$job"
wait_for 30 state_is "$job" PENDING && scontrol update JobId="$job" StartTime=now
resumed()
{
    said "$job" '^sila.sbatch: job [0-9]* \(start 1\)' &&
        said "$job" '^resuming from .*/checkpoints/step-[0-9]*\.ckpt' &&
        said "$job" '^worker for modules 3-4 ready .*generation 1\)' && all_running "$job"
}
if wait_for 60 resumed; then
    ok "scontrol requeue: the job starts again and silad resumes from $(sed -n \
        's|^resuming from .*/\(step-[0-9]*\.ckpt\):\(.*\)|\1:\2|p' "sila-$job.out")"
else
    not_ok "scontrol requeue: the job starts again and silad resumes" "sila-$job.out"
fi
at_resume=$(sed -n 's|^resuming from .*: \([0-9]*\) steps done$|\1|p' "sila-$job.out")
restored=$at_resume
if [ -n "$at_resume" ] && wait_for 60 beyond; then
    ok "the requeued run trains on past step $at_resume"
else
    not_ok "the requeued run trains on" "sila-$job.out"
fi
"$SILACTL" --connect "tcp://127.0.0.1:$RPC_PORT" stop >stop.out 2>&1 ||
    not_ok "silactl stop" stop.out
check_model "$job"

# ---- a coordinator that fails: the job ends FAILED, its workers (waiting
# to join) stopped with it
submit "--set job.epochs=zero"
if wait_for 40 state_is "$job" FAILED && said "$job" "^silad: override 'job.epochs=zero'" &&
    scontrol -o show job "$job" | grep -q " ExitCode=1:0 "; then
    ok "a coordinator that fails on its job ends the job FAILED (exit code 1) with its workers"
else
    scontrol show job "$job" >"job-$job.state" 2>&1
    not_ok "a coordinator that fails ends the job FAILED" "job-$job.state" "sila-$job.out"
fi
done_testing
