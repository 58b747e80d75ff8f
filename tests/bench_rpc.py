#!/usr/bin/python3
"""The cost of watching a run: training speed under RPC load, and RPC latency.

    [SILAD=build/daemon/silad] tests/bench_rpc.py [--repeats 3] [--rate 1000]
        [--train 6400]

Trains fmnist-cnn-k4 (local, 1 epoch of --train samples) with silad --spawn=2
--threads 1, --repeats times without load and as many with
tests/bench_rpc_load sending --rate Status requests per second for the whole
run, alternating. Prints each run, then the median samples/s of both, their
ratio, and the median p50/p99 latency of the loaded runs.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SILAD = os.environ.get("SILAD", os.path.join(ROOT, "build", "daemon", "silad"))
LOAD = os.path.join(os.path.dirname(os.path.dirname(SILAD)), "tests", "bench_rpc_load")
JOB = os.path.join(ROOT, "deploy", "jobs", "fmnist-cnn-k4.ini")
EP = "tcp://127.0.0.1:7598"


def run(loaded, rate, train):
    with tempfile.TemporaryDirectory() as d:
        argv = [SILAD, "--job", JOB, "--spawn=2", "--threads", "1", "--rpc", EP, "--out", d,
                "--set", "job.algorithm=local", "--set", "job.epochs=1",
                "--set", f"job.train_limit={train}", "--set", "job.test_limit=1000"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        load = subprocess.Popen([LOAD, EP, str(rate)], stdout=subprocess.PIPE) if loaded else None
        text = proc.stdout.read().decode(errors="replace")
        if proc.wait() != 0:
            sys.exit("silad failed:\n" + text)
        rec = {"loaded": loaded,
               "samples_per_s": float(re.findall(r"([\d.]+) samples/s", text)[-1])}
        if load:
            out = load.communicate()[0].decode()
            rec.update(json.loads(out))
    return rec


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--train", type=int, default=6400)
    a = p.parse_args()
    res = {False: [], True: []}
    order = [False, True]
    for _ in range(a.repeats):
        for loaded in order:
            rec = run(loaded, a.rate, a.train)
            print(json.dumps(rec), flush=True)
            res[loaded].append(rec)
        order.reverse()
    med = lambda recs, k: statistics.median(r[k] for r in recs)
    free, busy = med(res[False], "samples_per_s"), med(res[True], "samples_per_s")
    print(f"\nmedian of {a.repeats}: unloaded {free:.0f} samples/s, under {a.rate} Status/s "
          f"{busy:.0f} samples/s: {busy / free:.3f}x; RPC answered "
          f"{med(res[True], 'rate'):.0f}/s, latency p50 {med(res[True], 'p50_ms'):.3f} ms, "
          f"p99 {med(res[True], 'p99_ms'):.3f} ms")


if __name__ == "__main__":
    main()
