#!/usr/bin/python3
"""The cost of watching a run: training speed under RPC load, and RPC latency.

    [SILAD=build/daemon/silad] tests/bench_rpc.py [--repeats 3] [--rate 1000]
        [--clients 1] [--train 6400] [--rpc-rate N] [--endpoint URL] [--idle 10]

First, the CPU that serving the load takes: an idle silad (waiting for
workers that never join) asked --rate Status requests a second for --idle
seconds; prints the replies a second, the share of busy ones, and the CPU
of silad and of the load client (from /proc, so other load on the machine
does not inflate it). Then trains fmnist-cnn-k4 (local, 1 epoch of --train
samples) with silad --spawn=2 --threads 1, --repeats times (0: none)
without load and as many with the load for the whole run, alternating.
Prints each run, then the median samples/s of both, their ratio (loaded /
unloaded), the replies the load got a second and the share of busy ones,
their median p50/p99 latency, and the CPU seconds of silad and its workers
with and without load. The load is tests/bench_rpc_load, --clients of them (each its own
connection) sharing --rate; silad runs with its default --rpc-rate unless
--rpc-rate says otherwise (0: no limit).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SILAD = os.environ.get("SILAD", os.path.join(ROOT, "build", "daemon", "silad"))
LOAD = os.path.join(os.path.dirname(os.path.dirname(SILAD)), "tests", "bench_rpc_load")
JOB = os.path.join(ROOT, "deploy", "jobs", "fmnist-cnn-k4.ini")


def finish(proc, what):
    """proc's whole output and its CPU seconds with those of the children it
    waited for (silad: its workers): unlike samples/s, not inflated by other
    load on the machine."""
    text = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{what} failed:\n{text}")
    return text, round(usage.ru_utime + usage.ru_stime, 2)


def start_load(a):
    return [subprocess.Popen([LOAD, a.endpoint, str(max(1, a.rate // a.clients))],
                             stdout=subprocess.PIPE)
            for _ in range(a.clients)]


def finish_load(loads):
    """The load clients' records merged: counts and rates summed, the
    median of their p50s, the largest p99, and their CPU seconds."""
    recs = []
    for load in loads:
        out, cpu_s = finish(load, "bench_rpc_load")
        recs.append(dict(json.loads(out), load_cpu_s=cpu_s))
    rec = {k: round(sum(r[k] for r in recs), 2)
           for k in ("replies", "busy", "errors", "rate", "load_cpu_s")}
    rec["p50_ms"] = statistics.median(r["p50_ms"] for r in recs)
    rec["p99_ms"] = max(r["p99_ms"] for r in recs)
    return rec


def run(loaded, a):
    with tempfile.TemporaryDirectory() as d:
        argv = [SILAD, "--job", JOB, "--spawn=2", "--threads", "1", "--rpc", a.endpoint,
                "--out", d, "--set", "job.algorithm=local", "--set", "job.epochs=1",
                "--set", f"job.train_limit={a.train}", "--set", "job.test_limit=1000"]
        if a.rpc_rate is not None:
            argv += ["--rpc-rate", str(a.rpc_rate)]
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        loads = start_load(a) if loaded else []
        text, cpu_s = finish(proc, "silad")
        rec = {"loaded": loaded,
               "samples_per_s": float(re.findall(r"([\d.]+) samples/s", text)[-1]),
               "wall_s": round(time.monotonic() - t0, 1), "cpu_s": cpu_s}
        if loads:
            rec.update(finish_load(loads))
    return rec


def cpu_ticks(pid):
    """utime + stime of a live process, in clock ticks (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def idle_cost(a):
    """The CPU that serving the load takes from silad, and the load client
    its own, with nothing else to do: silad waits for workers that never
    join (--listen), answering the load for a.idle seconds."""
    with tempfile.TemporaryDirectory() as d:
        argv = [SILAD, "--job", JOB, "--listen", f"ipc://{d}/join", "--rpc", a.endpoint,
                "--out", d]
        if a.rpc_rate is not None:
            argv += ["--rpc-rate", str(a.rpc_rate)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        while b"serving the RPC" not in proc.stdout.readline():
            if proc.poll() is not None:
                sys.exit("silad failed:\n" + proc.stdout.read().decode(errors="replace"))
        loads = start_load(a)
        time.sleep(1)
        t0, c0, l0 = time.monotonic(), cpu_ticks(proc.pid), sum(cpu_ticks(l.pid) for l in loads)
        time.sleep(a.idle)
        t1, c1, l1 = time.monotonic(), cpu_ticks(proc.pid), sum(cpu_ticks(l.pid) for l in loads)
        proc.terminate()
        proc.communicate()
        rec = finish_load(loads)
    hz = os.sysconf("SC_CLK_TCK")
    print(f"idle silad asked {a.rate} Status/s by {a.clients} client(s) for {t1 - t0:.0f} s: "
          f"{rec['rate']:.0f} replies/s "
          f"({100 * rec['busy'] / rec['replies']:.0f}% busy); CPU: silad "
          f"{100 * (c1 - c0) / hz / (t1 - t0):.1f}% of a core, the load client "
          f"{100 * (l1 - l0) / hz / (t1 - t0):.1f}%", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--train", type=int, default=6400)
    p.add_argument("--rpc-rate", type=int, help="silad --rpc-rate (default: silad's)")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:7598", help="silad --rpc")
    p.add_argument("--idle", type=float, default=10,
                   help="seconds of the idle measurement first (0: none)")
    a = p.parse_args()
    if a.idle > 0:
        idle_cost(a)
    if a.repeats < 1:
        return
    res = {False: [], True: []}
    order = [False, True]
    for _ in range(a.repeats):
        for loaded in order:
            rec = run(loaded, a)
            print(json.dumps(rec), flush=True)
            res[loaded].append(rec)
        order.reverse()
    med = lambda recs, k: statistics.median(r[k] for r in recs)
    free, under = med(res[False], "samples_per_s"), med(res[True], "samples_per_s")
    loaded = res[True]
    busy_share = statistics.median(r["busy"] / r["replies"] for r in loaded)
    print(f"\nmedian of {a.repeats}: unloaded {free:.0f} samples/s, asked {a.rate} Status/s "
          f"{under:.0f} samples/s: {under / free:.3f}x; the load got {med(loaded, 'rate'):.0f} "
          f"replies/s ({100 * busy_share:.0f}% busy), latency p50 {med(loaded, 'p50_ms'):.3f} ms, "
          f"p99 {med(loaded, 'p99_ms'):.3f} ms")
    # what serving costs in CPU, whatever else runs on the machine: silad's
    # (and its workers') extra seconds under load, and the client's own
    extra = med(loaded, "cpu_s") - med(res[False], "cpu_s")
    print(f"CPU seconds, silad and workers: unloaded {med(res[False], 'cpu_s'):.2f}, loaded "
          f"{med(loaded, 'cpu_s'):.2f} ({extra:+.2f}); the load client {med(loaded, 'load_cpu_s'):.2f}"
          f"; a loaded run's serving and asking take {100 * (extra + med(loaded, 'load_cpu_s')) / med(loaded, 'wall_s'):.1f}% of a core")


if __name__ == "__main__":
    main()
