#!/usr/bin/python3
"""Chaos soak: a long distributed run under faults, against a fault-free one.

    [SILA_BUILD=build] tests/bench_chaos.py [--epochs 16] [--kill-every 120]
        [--rpc-rate 200] [--port 7400] [--train-limit N] [--out DIR]

Trains deploy/jobs/fmnist-cnn-k4.ini (pgl) twice: fault-free in process
(the reference), then with silad --listen on loopback and one silaworker per
module, all with a cluster key (--bare: none), the workers restarted one
second after any of them exits (as systemd's Restart= would). During the
second run:
  * every --kill-every seconds (+-25%) a worker chosen at random is killed
    with SIGKILL; silad replaces it in place from the newest checkpoint;
  * once, halfway, silad itself is killed with SIGKILL and started again
    with --resume; its workers find it gone, exit and are restarted;
  * tests/bench_rpc_load asks silad's RPC for Status --rpc-rate times a
    second, the whole time (started again whenever silad is);
  * every 5 s, every port the run's processes listen on gets garbage: raw
    bytes, and nanomsg (SP) handshakes of the port's protocol followed by
    random messages and by messages with sila's frame and control prefixes;
  * every 10 s, the resident memory of silad and of each worker is read.
Then it checks that the run completes, that its metrics.jsonl records every
training step once, as the fault-free run's does, that its model is within
1 point of the fault-free model, and prints each process's RSS slope
(MB per hour, fitted over the samples after its first minute), writing
everything to DIR/chaos.json.
"""
import argparse
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("SILA_BUILD", os.path.join(ROOT, "build"))
SILAD = os.path.join(BUILD, "daemon", "silad")
WORKER = os.path.join(BUILD, "worker", "silaworker")
SILACTL = os.path.join(BUILD, "daemon", "silactl")
LOAD = os.path.join(BUILD, "tests", "bench_rpc_load")
JSONCHECK = os.path.join(ROOT, "tests", "integration", "jsoncheck.py")
JOB = os.path.join(ROOT, "deploy", "jobs", "fmnist-cnn-k4.ini")
K = 4
SP_PAIR, SP_REQ, SP_REP = 16, 48, 49  # nanomsg protocol ids


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


class Proc:
    """A process of the run, restarted by the supervisor when it exits."""

    def __init__(self, name, argv, logpath):
        self.name, self.argv, self.logpath = name, argv, logpath
        self.p = None
        self.starts = 0
        self.started_at = 0.0

    def start(self):
        self.p = subprocess.Popen(self.argv, stdout=open(self.logpath, "a"),
                                  stderr=subprocess.STDOUT)
        self.starts += 1
        self.started_at = time.time()

    def alive(self):
        return self.p is not None and self.p.poll() is None


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def listening_ports(pids):
    """Ports the given pids listen on (tcp), from ss."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    ports = set()
    for line in out.splitlines():
        if any(f"pid={p}," in line for p in pids):
            ports.add(int(line.split()[3].rsplit(":", 1)[1]))
    return sorted(ports)


def garbage(port, rng, proto):
    """One volley at a port: raw bytes, then an SP handshake for proto and
    a few random and sila-prefixed messages. Errors are expected."""
    payloads = [rng.randbytes(rng.randint(1, 300)),
                b"SILF" + rng.randbytes(rng.randint(0, 200)),
                b"SILC" + rng.randbytes(rng.randint(0, 200))]
    for handshake in (False, True):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if not handshake:
                    s.sendall(rng.randbytes(rng.randint(1, 2000)))
                    continue
                s.sendall(b"\0SP\0" + struct.pack(">H", proto) + b"\0\0")
                for body in payloads:
                    if proto == SP_REQ:  # a request id, top bit set
                        body = struct.pack(">I", 0x80000000 | rng.getrandbits(31)) + body
                    s.sendall(struct.pack(">Q", len(body)) + body)
                s.settimeout(0.2)
                try:
                    s.recv(4096)
                except OSError:
                    pass
        except OSError:
            pass


def fit_slope(samples):
    """Least-squares slope (MB/hour) of [(t, mb)], or None."""
    if len(samples) < 6:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mm = sum(m for _, m in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return None
    return sum((t - mt) * (m - mm) for t, m in samples) / var * 3600.0


def check(args):
    r = subprocess.run(["python3", JSONCHECK] + args, capture_output=True, text=True)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--kill-every", type=float, default=120.0)
    ap.add_argument("--rpc-rate", type=int, default=200)
    ap.add_argument("--port", type=int, default=7400)
    ap.add_argument("--train-limit", type=int, default=0,
                    help="training samples (default: all; fewer for a trial of the script)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bare", action="store_true",
                    help="no cluster key (by default every process has one, as a cluster's do)")
    ap.add_argument("--out", default=None, help="keep the runs here (default: a temporary dir)")
    ap.add_argument("--reference", default=None,
                    help="a fault-free run of the same settings to compare with, "
                         "instead of training one")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    out = a.out or tempfile.mkdtemp(prefix="sila-chaos-")
    os.makedirs(out, exist_ok=True)
    sets = ["--set", f"job.epochs={a.epochs}", "--set", "job.checkpoint_every=50"]
    if a.train_limit:
        sets += ["--set", f"job.train_limit={a.train_limit}"]
    base = f"tcp://127.0.0.1:{a.port}"
    rpc = f"tcp://127.0.0.1:{a.port - 1}"

    ref = a.reference or os.path.join(out, "ref")
    if not a.reference:
        log(f"fault-free reference: silad --inproc --threads 2 into {ref}")
        r = subprocess.run([SILAD, "--job", JOB, "--inproc", "--threads", "2", "--rpc", "none",
                            "--out", ref] + sets, stdout=open(ref + ".log", "w"),
                           stderr=subprocess.STDOUT)
        if r.returncode:
            sys.exit(f"the reference run failed: see {ref}.log")

    run = os.path.join(out, "chaos")
    shutil.rmtree(run, ignore_errors=True)
    key = []
    if not a.bare:
        key = ["--key", os.path.join(out, "cluster.key")]
        if os.path.exists(key[1]):
            os.remove(key[1])
        subprocess.run([SILACTL, "keygen", key[1]], check=True, capture_output=True)
    silad_argv = [SILAD, "--job", JOB, "--listen", base, "--rpc", rpc, "--out", run] + key + sets
    silad = Proc("silad", silad_argv, run + ".silad.log")
    workers = [Proc(f"worker{k}", [WORKER, "--module", str(k), "--connect", base, "--threads",
                                   "1", "--timeout", "10"] + key, run + f".worker{k}.log")
               for k in range(1, K + 1)]
    state = {"worker_kills": 0, "coordinator_kills": 0, "volleys": 0, "rpc_starts": 0,
             "stop": False}
    rss = {}  # (name, pid) -> [(t, mb)]
    lock = threading.Lock()
    load = None

    def start_load():
        nonlocal load
        load = subprocess.Popen([LOAD, rpc, str(a.rpc_rate)], stdout=open(run + ".load.log", "a"),
                                stderr=subprocess.STDOUT)
        state["rpc_starts"] += 1

    def garbage_loop():
        while not state["stop"]:
            with lock:
                procs = {p.p.pid: p for p in [silad] + workers if p.alive()}
            for port in listening_ports(list(procs)):
                if state["stop"]:
                    break
                # the rendezvous and the RPC are REP sockets, the rest PAIR
                proto = SP_REQ if port in (a.port, a.port - 1) else SP_PAIR
                garbage(port, rng, proto)
                state["volleys"] += 1
            time.sleep(5)

    def rss_loop():
        while not state["stop"]:
            now = time.time()
            with lock:
                for p in [silad] + workers:
                    if p.alive():
                        mb = rss_mb(p.p.pid)
                        if mb is not None and now - p.started_at >= 60:
                            rss.setdefault((p.name, p.p.pid), []).append((now, mb))
            time.sleep(10)

    t0 = time.time()
    log(f"chaos run: silad --listen {base}, {K} workers, RPC load {a.rpc_rate}/s, into {run}")
    silad.start()
    for w in workers:
        w.start()
    time.sleep(1)
    start_load()
    threads = [threading.Thread(target=f, daemon=True) for f in (garbage_loop, rss_loop)]
    for t in threads:
        t.start()
    # the coordinator kill: once, when half the steps are done (the step
    # records of the metrics say where the run is; the reference's last
    # one, how many there are)
    total_steps = max(json.loads(line)["step"]
                      for line in open(os.path.join(ref, "metrics.jsonl"))
                      if '"type":"step"' in line)
    next_kill = time.time() + a.kill_every * rng.uniform(0.75, 1.25)
    coordinator_killed = False
    final = None
    while True:
        time.sleep(1)
        with lock:
            if not silad.alive():  # the kill below restarts it at once
                final = silad.p.returncode
                break
        done = 0
        try:
            with open(os.path.join(run, "metrics.jsonl")) as f:
                for line in f:
                    if '"type":"step"' in line:
                        done = json.loads(line)["step"]
        except (OSError, ValueError):
            pass
        with lock:
            if not coordinator_killed and done >= total_steps // 2:
                log(f"kill -9 silad (pid {silad.p.pid}) at step {done}")
                silad.p.kill()
                silad.p.wait()
                state["coordinator_kills"] += 1
                coordinator_killed = True
                time.sleep(2)
                silad.argv = silad_argv + ["--resume"]
                silad.start()
                log(f"silad --resume started (pid {silad.p.pid})")
                if load.poll() is None:
                    load.kill()
                load.wait()
                time.sleep(1)
                start_load()
            elif time.time() >= next_kill:
                alive = [w for w in workers if w.alive()]
                if alive:
                    w = rng.choice(alive)
                    log(f"kill -9 {w.name} (pid {w.p.pid}) at step {done}")
                    w.p.kill()
                    w.p.wait()
                    state["worker_kills"] += 1
                next_kill = time.time() + a.kill_every * rng.uniform(0.75, 1.25)
            for w in workers:  # Restart=always, RestartSec=1
                if not w.alive() and time.time() - w.started_at > 1:
                    w.start()
            if load.poll() is not None:
                start_load()
    state["stop"] = True
    elapsed = time.time() - t0
    for t in threads:
        t.join()
    if load.poll() is None:
        load.kill()
    for w in workers:  # they exit once silad has stopped them
        if w.alive():
            try:
                w.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.p.kill()
    log(f"chaos run ended: silad exit {final} after {elapsed / 60:.1f} min")

    steps_ok, steps_msg = check(["same-step-numbers", os.path.join(ref, "metrics.jsonl"),
                                 os.path.join(run, "metrics.jsonl")])
    acc_ok, acc_msg = check(["accuracy-near", os.path.join(ref, "metrics.jsonl"),
                             os.path.join(run, "metrics.jsonl"), "1"])
    slopes = []
    for (name, pid), samples in sorted(rss.items()):
        span = (samples[-1][0] - samples[0][0]) / 60 if samples else 0
        slopes.append({"process": name, "pid": pid, "minutes": round(span, 1),
                       "first_mb": round(samples[0][1], 1), "last_mb": round(samples[-1][1], 1),
                       "slope_mb_per_hour": fit_slope(samples)})
    text = open(run + ".silad.log").read()
    summary = {
        "epochs": a.epochs, "keyed": not a.bare, "minutes": round(elapsed / 60, 1), "silad_exit": final,
        "worker_kills": state["worker_kills"], "coordinator_kills": state["coordinator_kills"],
        "pipeline_restarts": len(re.findall(r"^pipeline restarted", text, re.M)),
        "garbage_volleys": state["volleys"], "rpc_load_starts": state["rpc_starts"],
        "same_step_numbers": steps_ok, "steps": steps_msg,
        "accuracy_within_1": acc_ok, "accuracy": acc_msg, "rss": slopes}
    with open(os.path.join(out, "chaos.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "rss"}, indent=1))
    print(f"{'process':10} {'pid':>8} {'minutes':>8} {'first MB':>9} {'last MB':>8} "
          f"{'MB/hour':>8}")
    for s in slopes:
        slope = s["slope_mb_per_hour"]
        print(f"{s['process']:10} {s['pid']:>8} {s['minutes']:>8} {s['first_mb']:>9} "
              f"{s['last_mb']:>8} {'-' if slope is None else f'{slope:+.2f}':>8}")
    ok = final == 0 and steps_ok and acc_ok
    print("chaos soak:", "passed" if ok else "FAILED", f"(runs in {out})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
