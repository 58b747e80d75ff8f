#!/usr/bin/python3
"""Speed of the distributed mode against the in-process trainer, side by side.

    [SILAD=build/daemon/silad] tests/bench_pipeline.py [--job JOB] [--repeats 3]
        [--train 12800] [--json out.jsonl] [--modes inproc,spawn,spawn-pgl]
        [--lag 2] [--set S.K=V]...
    tests/bench_pipeline.py --pairs-from FILE...

Runs, alternating and --repeats times each, on one epoch of --train samples:
  inproc   silad --inproc --threads 2, algorithm local
  spawn    silad --spawn=2 --threads 1 (modules split in two halves), local
  spawn-pgl  the same with pgl, one global step in ten (P=10, G=1, no ramp)
  spawn-pgl-lag  spawn-pgl with its global steps learned late
             (job.global_lag=--lag: the pipeline does not wait for them)
  spawn-key  spawn with a cluster key: every message authenticated (only
             when named in --modes)
  spawn-seal spawn-key with --encrypt: every message between silad and the
             workers sealed (only when named in --modes),
  serial     spawn with --window 1: one step in flight, so each worker's
             busy time per step is its own compute and messages, nothing
             overlapping it (only when named in --modes)
  serial-e2e serial with algorithm e2e: every step global (only when named
             in --modes),
every run with the --set overrides besides (job.wire_dtype=bf16, say),
and prints for each the median training samples/s, the ratio to inproc,
the busiest worker's busy fraction, the bytes sent per sample, the peak RSS
of the largest worker against the in-process run's, and for pgl the share
of the workers' time spent in global steps; for pgl over local, besides
the ratio of the medians, each repeat's ratio of its pgl run to its
local run and their median with its 95% bootstrap interval (the order
of the modes reverses every repeat, so with the default modes or
`spawn,spawn-pgl-lag` the two run one after the other): a machine whose
speed drifts over the runs moves each run's samples/s, much less these
ratios. --pairs-from runs nothing and prints the same summary of the
pairs in the --json records of earlier sets, pooled per job. With
serial and serial-e2e it prints each worker's step time, local and
global, and what they allow pgl with one global step in ten when
nothing ever waits: the slowest worker's average step on machines of
their own; on this one, all the CPU a step over its cores when that is
longer (the workers' steps and the rest: silad, I/O threads, the start
and the evaluation).
Each run's figures are printed as it ends (and appended to --json as one
line).
"""
import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SILAD = os.environ.get("SILAD", os.path.join(ROOT, "build", "daemon", "silad"))

PERIOD = 10  # pgl's job.period: one global step in PERIOD
PGL = ["--set", f"job.period={PERIOD}", "--set", "job.global_steps=1", "--set", "job.global_ramp=false"]
CONFIGS = {
    "inproc": (["--inproc", "--threads", "2"], "local"),
    "spawn": (["--spawn=2", "--threads", "1"], "local"),
    "spawn-pgl": (["--spawn=2", "--threads", "1", *PGL], "pgl"),
    "spawn-pgl-lag": (["--spawn=2", "--threads", "1", *PGL], "pgl"),
    "spawn-key": (["--spawn=2", "--threads", "1"], "local"),
    "spawn-seal": (["--spawn=2", "--threads", "1", "--encrypt"], "local"),
    "serial": (["--spawn=2", "--threads", "1", "--window", "1"], "local"),
    "serial-e2e": (["--spawn=2", "--threads", "1", "--window", "1"], "e2e"),
}
DEFAULT_MODES = "inproc,spawn,spawn-pgl"


def busy_s_per_step(worker, steps):
    """A worker record's busy seconds per step: with one batch in flight
    (--window 1) its own compute and messages, since its waits for a
    batch or a gradient are not busy; pipelined, also any time it waited
    for a core."""
    return worker["busy"] * worker["active_s"] / steps


def write_key(d):
    """A cluster key file in d, as silactl keygen writes it."""
    path = os.path.join(d, "cluster.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, ("sila-key-1 " + os.urandom(32).hex() + "\n").encode())
    os.close(fd)
    return ["--key", path]


def run(job, mode, train, lag, sets):
    args, algo = CONFIGS[mode]
    if mode == "spawn-pgl-lag":
        args = args + ["--set", f"job.global_lag={lag}"]
    args = args + [x for s in sets for x in ("--set", s)]
    with tempfile.TemporaryDirectory() as d:
        if mode in ("spawn-key", "spawn-seal"):
            args = args + write_key(d)
        argv = [SILAD, "--job", job, "--out", d, "--rpc", "none", *args,
                "--set", f"job.algorithm={algo}",
                "--set", "job.epochs=1", "--set", f"job.train_limit={train}",
                "--set", "job.test_limit=1000"]
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        text = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{mode} failed:\n{text}")
        workers = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))
                   if '"type":"worker"' in l]
    rate = float(re.findall(r"([\d.]+) samples/s", text)[-1])
    rec = {"job": os.path.basename(job), "train": train, "mode": mode, "algorithm": algo,
           "overrides": sets, "samples_per_s": rate,
           "wall_s": round(time.monotonic() - t0, 1),
           # RUSAGE_CHILDREN of silad's wait: silad itself and its largest child
           "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),
           # CPU time of silad and the workers it waited for: unlike samples/s,
           # not inflated by other load on the machine
           "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}
    if mode == "spawn-pgl-lag":
        rec["global_lag"] = lag
    if workers:
        steps = int(re.findall(r"step (\d+)/\d+", text)[-1])
        workers.sort(key=lambda w: w["modules"][0])
        rec["worker_step_ms"] = [round(1000 * busy_s_per_step(w, steps), 2) for w in workers]
        # the rest of the run's CPU a step: silad, the workers' I/O
        # threads, and the start and evaluation besides
        rec["other_cpu_ms"] = round(1000 * rec["cpu_s"] / steps - sum(rec["worker_step_ms"]), 2)
        rec["busiest"] = max(w["busy"] for w in workers)
        rec["bytes_per_sample"] = sum(w["bytes_per_sample"] for w in workers)
        rec["largest_worker_rss_mb"] = max(w["peak_rss_mb"] for w in workers)
        rec["global_share"] = max(w["global"] for w in workers)
    return rec


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job", default=os.path.join(ROOT, "deploy", "jobs", "fmnist-cnn-k4.ini"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train", type=int, default=12800)
    p.add_argument("--json")
    p.add_argument("--modes", default=DEFAULT_MODES,
                   help=f"comma-separated, of {', '.join(CONFIGS)} (default {DEFAULT_MODES})")
    p.add_argument("--lag", type=int, default=2,
                   help="job.global_lag of spawn-pgl-lag (default 2)")
    p.add_argument("--set", action="append", default=[], metavar="S.K=V",
                   help="a job override for every run (repeatable)")
    p.add_argument("--pairs-from", nargs="+", metavar="FILE",
                   help="run nothing: summarise the pairs of the records in FILEs (--json "
                        "output of earlier runs)")
    a = p.parse_args()
    if a.pairs_from:
        sys.exit(pairs_from(a.pairs_from))
    if a.lag < 1:
        p.error("--lag: at least 1")
    modes = a.modes.split(",")
    if not modes or any(m not in CONFIGS for m in modes):
        p.error(f"--modes: of {', '.join(CONFIGS)}")
    results = {m: [] for m in modes}
    order = list(modes)
    for i in range(a.repeats):
        for mode in order:
            rec = run(a.job, mode, a.train, a.lag, a.set)
            print(json.dumps(rec), flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            results[mode].append(rec)
        order.reverse()
    med = lambda mode, key: statistics.median(r[key] for r in results[mode])
    base = med(modes[0], "samples_per_s")
    sets = "".join(f", {s}" for s in a.set)
    print(f"\n{os.path.basename(a.job)}{sets}, 1 epoch of {a.train} samples, median of {a.repeats}:")
    print(f"| run | samples/s | / {modes[0]} | busiest worker | bytes/sample | peak RSS MB "
          "| global-step share | CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode in modes:
        rs = results[mode]
        rate = med(mode, "samples_per_s")
        if mode == "inproc":
            print(f"| {mode} --threads 2 | {rate:.0f} | {rate / base:.2f} | - | - "
                  f"| {med(mode, 'peak_rss_mb'):.0f} (process) | - | {med(mode, 'cpu_s'):.1f} |")
            continue
        print(f"| {mode} (2 workers x 1 thread) | {rate:.0f} | {rate / base:.2f} "
              f"| {100 * med(mode, 'busiest'):.0f}% | {med(mode, 'bytes_per_sample'):.0f} "
              f"| {med(mode, 'largest_worker_rss_mb'):.0f} (largest worker) "
              f"| {100 * med(mode, 'global_share'):.0f}% | {med(mode, 'cpu_s'):.1f} |")
    for mode, what in (("spawn-pgl", "global steps at once"),
                       ("spawn-pgl-lag", f"global steps learned late, global_lag={a.lag}")):
        if mode in modes and "spawn" in modes:
            pgl = med(mode, "samples_per_s") / med("spawn", "samples_per_s")
            pairs = pair_ratios(results["spawn"], results[mode])
            print(f"PGL (P={PERIOD}, G=1, {what}) over local, distributed: {pgl:.2f}x the samples/s; "
                  f"per repeat, over its local run: {', '.join(f'{x:.2f}' for x in pairs)} "
                  f"({summarise_pairs(pairs)})")

    if "serial" in modes and "serial-e2e" in modes:
        print_bound(results["serial"], results["serial-e2e"])


def pair_ratios(local, pgl):
    """Each pgl run's samples/s over its local run's: the i-th of each
    list, records of one set in the order they ran."""
    return [r["samples_per_s"] / s["samples_per_s"] for r, s in zip(pgl, local)]


def summarise_pairs(pairs, resamples=10000):
    """The median of pairs (ratios) with its 95% bootstrap interval: the
    2.5th and 97.5th percentiles of the medians of resamples draws of as
    many pairs, with replacement (a fixed seed: the same pairs, the same
    interval)."""
    rng = random.Random(1)
    meds = sorted(statistics.median(rng.choices(pairs, k=len(pairs)))
                  for _ in range(resamples))
    lo, hi = meds[int(0.025 * resamples)], meds[int(0.975 * resamples) - 1]
    return (f"{len(pairs)} pair{'s' if len(pairs) != 1 else ''}, median "
            f"{statistics.median(pairs):.3f}x, 95% bootstrap interval {lo:.3f}-{hi:.3f}")


def is_record(r):
    """Whether r, one parsed --json line, has what pairs_from reads, of
    the types run() writes."""
    return (isinstance(r, dict) and isinstance(r.get("job"), str)
            and isinstance(r.get("mode"), str)
            and isinstance(r.get("samples_per_s"), (int, float)) and r["samples_per_s"] > 0
            and isinstance(r.get("train", 0), int)
            and isinstance(r.get("overrides", []), list)
            and all(isinstance(o, str) for o in r.get("overrides", [])))


def pairs_from(paths):
    """Prints, per job and pgl mode, the pairs of the records in paths
    (files of --json lines, each a set or sets in the order they ran):
    within a job, its --set overrides and its --train, the i-th pgl run
    of the mode over the i-th local (spawn) run, as the sets paired
    them. Returns a message when the runs of a group cannot be paired so
    (not as many of each, or pgl runs at two lags), else None."""
    groups = {}
    for path in paths:
        try:
            with open(path) as f:
                recs = [json.loads(l) for l in f if l.strip()]
        except (OSError, ValueError) as e:
            return f"{path}: {e}"
        for i, r in enumerate(recs):
            if not is_record(r):
                return f"{path}: line {i + 1} is not a record of this script"
            key = (r["job"], r.get("train"), tuple(r.get("overrides", [])))
            groups.setdefault(key, {}).setdefault(r["mode"], []).append(r)
    printed = False
    for (job, train, sets), by_mode in groups.items():
        where = f"{job} ({train} samples{''.join(f', {s}' for s in sets)})"
        local = by_mode.get("spawn", [])
        for mode in ("spawn-pgl", "spawn-pgl-lag"):
            pgl = by_mode.get(mode, [])
            if not pgl:
                continue
            lags = sorted({r.get("global_lag") for r in pgl})
            if len(lags) > 1:
                return f"{where}: {mode} runs at global_lag {lags}: give the sets of one lag"
            if len(pgl) != len(local):
                return (f"{where}: {len(pgl)} {mode} runs against {len(local)} spawn runs: "
                        f"give sets that ran both modes")
            pairs = pair_ratios(local, pgl)
            lag = f", global_lag={lags[0]}" if mode == "spawn-pgl-lag" else ""
            print(f"{where}, {mode}{lag} over spawn: {summarise_pairs(pairs)}; "
                  f"the pairs {min(pairs):.2f}-{max(pairs):.2f}")
            printed = True
    return None if printed else "no pairs of spawn and spawn-pgl or spawn-pgl-lag runs"


def worker_steps_ms(recs):
    """Per worker (sorted by first module), the median over recs, records
    of one mode, of its worker_step_ms."""
    return [statistics.median(r["worker_step_ms"][w] for r in recs)
            for w in range(len(recs[0]["worker_step_ms"]))]


def print_bound(local, e2e):
    """Each worker's step time, local and global (medians over the serial
    and serial-e2e runs), and what they allow pgl with one global step in
    PERIOD when nothing waits."""
    lo, gl = worker_steps_ms(local), worker_steps_ms(e2e)
    pgl = [l + (g - l) / PERIOD for l, g in zip(lo, gl)]
    other_lo = statistics.median(r["other_cpu_ms"] for r in local)
    other_pgl = other_lo + (statistics.median(r["other_cpu_ms"] for r in e2e) - other_lo) / PERIOD
    cores = os.cpu_count() or 1
    own = max(lo) / max(pgl)
    shared = (max(max(lo), (sum(lo) + other_lo) / cores) /
              max(max(pgl), (sum(pgl) + other_pgl) / cores))
    print(f"\nEach worker's step with nothing in flight (--window 1, medians of {len(local)}):")
    print("| worker | local step ms | global step ms | global / local |")
    print("|---:|---:|---:|---:|")
    for w in range(len(lo)):
        print(f"| {w + 1} | {lo[w]:.1f} | {gl[w]:.1f} | {gl[w] / lo[w]:.2f} |")
    print(f"The rest of the runs' CPU a step (silad, the workers' I/O threads, the start and "
          f"the evaluation): {other_lo:.1f} ms local, {other_pgl:.1f} ms with one global step "
          f"in {PERIOD}.")
    print(f"pgl (P={PERIOD}, G=1) when no step ever waits: {own:.3f}x local with each worker "
          f"on a machine of its own (the slowest worker's average step); {shared:.3f}x with "
          f"the workers sharing this machine's {cores} cores (the slowest worker's step, or "
          f"all the CPU a step over the cores when that is longer)")


if __name__ == "__main__":
    main()
