#!/usr/bin/python3
"""Accuracy and speed of sila against the PyTorch reference, side by side.

    tests/bench_accuracy.py run --job deploy/jobs/fmnist-cnn-k4.ini \
        --algos e2e,local,pgl --seeds 1,2 --threads 2 --out results.jsonl [--set S.K=V]...
    tests/bench_accuracy.py table results.jsonl

`run` trains every (algorithm, seed) with silad --inproc and with
tests/reference/sila_torch.py, alternating which goes first, and appends one
JSON line per training run to --out as soon as it ends (so an interrupted
benchmark keeps what it measured): implementation, job, algorithm, seed,
overrides, every head's final test accuracy, training samples/s, wall time and
the peak RSS of the process (`SILAD=path` runs another silad than build/'s).
`table` prints the results as a markdown table:
per job and algorithm, each seed's classifier accuracy for both, the mean
difference, and the samples/s ratio.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SILAD = os.environ.get("SILAD") or os.path.join(ROOT, "build", "daemon", "silad")
TORCH = os.path.join(ROOT, "tests", "reference", "sila_torch.py")


def run_child(argv):
    """Runs argv; returns (exit status, stdout, wall seconds, peak RSS in MB)."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return proc.returncode, text, time.monotonic() - t0, usage.ru_maxrss / 1024.0


def run_sila(job, sets, threads):
    with tempfile.TemporaryDirectory() as d:
        argv = [SILAD, "--job", job, "--inproc", "--rpc", "none", "--out", d, "--threads",
                str(threads)]
        for s in sets:
            argv += ["--set", s]
        status, text, wall, rss = run_child(argv)
        if status != 0:
            raise RuntimeError("silad failed:\n" + text)
        evals = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))
                 if '"type":"eval"' in l]
    rates = re.findall(r"([\d.]+) samples/s", text)
    return {"accuracy": evals[-1]["accuracy"], "samples_per_s": float(rates[-1]),
            "wall_s": wall, "peak_rss_mb": rss}


def run_torch(job, sets, threads):
    argv = [TORCH, "--job", job, "--threads", str(threads), "--json"]
    for s in sets:
        argv += ["--set", s]
    status, text, wall, rss = run_child(argv)
    if status != 0:
        raise RuntimeError("sila_torch.py failed:\n" + text)
    res = json.loads(text.strip().splitlines()[-1])
    return {"accuracy": res["accuracy"], "samples_per_s": res["samples_per_s"],
            "wall_s": wall, "peak_rss_mb": rss}


def cmd_run(args):
    runners = {"sila": run_sila, "torch": run_torch}
    order = ["sila", "torch"]
    for algo in args.algos.split(","):
        for seed in args.seeds.split(","):
            sets = list(args.set) + [f"job.algorithm={algo}", f"job.seed={seed}"]
            for impl in order:
                print(f"== {impl} {os.path.basename(args.job)} {algo} seed {seed}", flush=True)
                res = runners[impl](args.job, sets, args.threads)
                rec = {"impl": impl, "job": os.path.basename(args.job), "algorithm": algo,
                       "seed": int(seed), "threads": args.threads, "set": list(args.set),
                       "date": time.strftime("%Y-%m-%d %H:%M"), **res}
                print(json.dumps(rec), flush=True)
                with open(args.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            order.reverse()  # alternate which implementation goes first


def cmd_table(args):
    recs = [json.loads(l) for l in open(args.results) if l.strip()]
    groups = {}
    for r in recs:
        key = (r["job"], " ".join(r["set"]), r["algorithm"])
        groups.setdefault(key, {}).setdefault(r["seed"], {})[r["impl"]] = r
    print("| job | overrides | algorithm | seed | sila classifier % | PyTorch classifier % "
          "| sila heads % | sila / PyTorch samples/s |")
    print("|---|---|---|---|---:|---:|---|---:|")
    for (job, sets, algo), seeds in sorted(groups.items()):
        for seed, impls in sorted(seeds.items()):
            s, t = impls.get("sila"), impls.get("torch")
            acc = lambda r: f"{100 * r['accuracy'][-1]:.2f}" if r else "-"
            heads = " / ".join(f"{100 * a:.1f}" for a in s["accuracy"][:-1]) if s else "-"
            ratio = f"{s['samples_per_s'] / t['samples_per_s']:.2f}" if s and t else "-"
            print(f"| {job} | {sets} | {algo} | {seed} | {acc(s)} | {acc(t)} | {heads} | {ratio} |")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--job", required=True)
    r.add_argument("--algos", default="e2e,local,pgl")
    r.add_argument("--seeds", default="1,2")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--set", action="append", default=[])
    r.add_argument("--out", required=True)
    t = sub.add_parser("table")
    t.add_argument("results")
    args = p.parse_args()
    (cmd_run if args.cmd == "run" else cmd_table)(args)


if __name__ == "__main__":
    sys.exit(main())
