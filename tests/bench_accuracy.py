#!/usr/bin/python3
"""Accuracy and speed of sila against the PyTorch reference, side by side.

    tests/bench_accuracy.py run --job deploy/jobs/fmnist-cnn-k4.ini \
        --algos e2e,local,pgl --seeds 1,2 --threads 2 --out results.jsonl [--set S.K=V]... \
        [--impls sila,torch]
    tests/bench_accuracy.py table results.jsonl
    tests/bench_accuracy.py ablation RESULTS.jsonl... --job fmnist-resnet-k8.ini [--plot F.svg]

`run` trains every (algorithm, seed) with silad --inproc and with
tests/reference/sila_torch.py (or only those --impls names), alternating
which goes first, and appends one
JSON line per training run to --out as soon as it ends (so an interrupted
benchmark keeps what it measured): implementation, job, algorithm, seed,
overrides, every head's final test accuracy (and, for sila with job.holdout,
its held-out accuracy and the saved model's exit and cost, job.deploy),
training samples/s, wall time and
the peak RSS of the process (`SILAD=path` runs another silad than build/'s).
`table` prints the results as a markdown table:
per job and algorithm, each seed's classifier accuracy for both, the mean
difference, and the samples/s ratio.
`ablation` reads sila's records of one job from every file given (the
objectives' runs and the baselines), one row per algorithm and objective
(the records' objective.* and job.drop_path overrides; records with other
overrides than those, job.epochs and job.checkpoint_every are left out):
each seed's classifier accuracy, the mean, the difference to the row's
baseline over the seeds both have (an objective: ce of the same algorithm
and drop-path; ce with drop-path: ce without; pgl ce and e2e: local ce),
every head's mean accuracy, samples/s and peak RSS; records of one job
trained for different epochs are refused; --only TEXT keeps the rows whose
objective contains TEXT, and the ce ones; --plot draws the classifier's
and each head's accuracy per row with gnuplot (SVG, or PNG for a .png name).
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gnuplot  # noqa: E402

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
        recs = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
    evals = [r for r in recs if r["type"] == "eval"]
    model = [r for r in recs if r["type"] == "model"]
    rates = re.findall(r"([\d.]+) samples/s", text)
    res = {"accuracy": evals[-1]["accuracy"], "samples_per_s": float(rates[-1]),
           "wall_s": wall, "peak_rss_mb": rss}
    if "holdout" in evals[-1]:
        res["holdout"] = evals[-1]["holdout"]
    if model:  # the saved model's exit (job.deploy) and cost
        res["model"] = {k: v for k, v in model[-1].items() if k not in ("type", "path")}
    return res


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
    order = args.impls.split(",")
    if not order or any(i not in runners for i in order):
        sys.exit(f"bench_accuracy: --impls takes sila, torch or both, got '{args.impls}'")
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


# overrides that are part of an ablation row's name, and those that are not
ROW_KEYS = ("objective.", "job.drop_path=")
IGNORED_KEYS = ("job.epochs=", "job.checkpoint_every=")


def ablation_rows(paths, job):
    """{(algorithm, objective text): {seed: record}} of sila's records of job;
    exits when they were not all trained for the same epochs."""
    rows, epochs = {}, set()
    for path in paths:
        for line in open(path):
            if not line.strip():
                continue
            r = json.loads(line)
            if r["impl"] != "sila" or r["job"] != job:
                continue
            sets = [x for x in r["set"] if not x.startswith(IGNORED_KEYS)]
            if any(not x.startswith(ROW_KEYS) for x in sets):
                continue
            name = " ".join(x.replace("objective.", "") for x in sets) or "ce"
            epochs.add(next((x for x in r["set"] if x.startswith("job.epochs=")), "the job's"))
            rows.setdefault((r["algorithm"], name), {})[r["seed"]] = r
    if len(epochs) > 1:
        sys.exit(f"records of {job} with different epochs ({', '.join(sorted(epochs))}): "
                 "an ablation compares runs of the same length")
    order = {"e2e": 0, "local": 1, "pgl": 2}
    return dict(sorted(rows.items(), key=lambda kv: (order.get(kv[0][0], 3), kv[0][1] != "ce",
                                                    kv[0][1])))


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def baseline(algo, name):
    """The row an ablation row is measured against: an objective, the same
    algorithm's ce with the same drop-path; ce with drop-path, that
    algorithm's ce without; pgl ce and e2e, local ce."""
    dp = " ".join(x for x in name.split() if x.startswith("job.drop_path="))
    if name not in ("ce", dp):
        return (algo, dp or "ce")
    if dp:
        return (algo, "ce")
    return None if algo == "local" else ("local", "ce")


def cmd_ablation(args):
    rows = ablation_rows(args.results, args.job)
    if args.only:  # the rows named, and those of ce they are measured against
        rows = {k: v for k, v in rows.items()
                if k[1] == "ce" or any(t in k[1] for t in args.only)}
    if not rows:
        sys.exit(f"no records of {args.job} in {', '.join(args.results)}")
    print("| algorithm | objective | classifier % per seed | mean | baseline | vs baseline "
          "| heads % (mean over seeds) | samples/s | peak RSS MB | silad |")
    print("|---|---|---|---:|---|---:|---|---:|---:|---|")
    for (algo, name), seeds in rows.items():
        accs = [100 * seeds[s]["accuracy"][-1] for s in sorted(seeds)]
        per_seed = ", ".join(f"{s}: {100 * seeds[s]['accuracy'][-1]:.2f}" for s in sorted(seeds))
        nheads = min(len(r["accuracy"]) for r in seeds.values()) - 1
        heads = " / ".join(f"{mean([100 * r['accuracy'][h] for r in seeds.values()]):.1f}"
                           for h in range(nheads))
        if algo == "e2e":  # e2e never trains the aux heads
            heads = "not trained"
        rate = sorted(r["samples_per_s"] for r in seeds.values())[len(seeds) // 2]
        rss = max(r["peak_rss_mb"] for r in seeds.values())
        # over the seeds both rows have, so that rows with fewer seeds compare alike
        bkey = baseline(algo, name)
        base = rows.get(bkey, {}) if bkey else {}
        both = [s for s in seeds if s in base]
        diff = (f"{mean([100 * (seeds[s]['accuracy'][-1] - base[s]['accuracy'][-1]) for s in both]):+.2f}"
                if both else "-")
        btext = f"{bkey[0]} {bkey[1]}" if bkey else "-"
        builds = ", ".join(sorted({r.get("silad_sha256") or "?" for r in seeds.values()}))
        print(f"| {algo} | {name} | {per_seed} | {mean(accs):.2f} | {btext} "
              f"| {diff} | {heads} | {rate:.0f} | {rss:.0f} | {builds} |")
    if args.plot:
        plot_ablation(rows, args.job, args.plot, args.ymin)


def plot_ablation(rows, job, out, ymin=None):
    """Accuracy of the classifier (points per seed) and of every head (mean
    over seeds, one line per head) against the rows, drawn by gnuplot into
    out (PNG when it ends in .png, else SVG); the axis from ymin % when
    given (lower points leave the plot)."""
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "rows.dat")
        nheads = 0
        with open(data, "w") as f:
            for i, ((algo, name), seeds) in enumerate(rows.items()):
                recs = [seeds[s] for s in sorted(seeds)]
                heads = len(recs[0]["accuracy"])
                nheads = max(nheads, heads)
                means = [mean([100 * r["accuracy"][h] for r in recs]) for h in range(heads)]
                # e2e never trains the aux heads: their accuracy is not drawn
                cols = " ".join("?" if algo == "e2e" else f"{m:.3f}" for m in means)
                for r in recs:
                    f.write(f'{i} "{algo} {name}" {100 * r["accuracy"][-1]:.3f} {cols}\n')
        heads = ", ".join(f'"{data}" using 1:{4 + h} with linespoints lw 1 pt 7 ps 0.4 '
                          f'title "head {h + 1}"' for h in range(nheads - 1))
        # room below the axis for the longest tic label, rotated by 35 degrees:
        # about 0.3 character heights per character, 14 pixels per height
        longest = max(len(f"{algo} {name}") for algo, name in rows)
        bmargin = max(14, math.ceil(0.3 * longest) + 2)
        size = f"1100,{680 + 14 * (bmargin - 14)}"
        gnuplot.draw(out, size, f"""set title "{job}: test accuracy by algorithm and local objective (sila, one point per seed)"
set ylabel "test accuracy %"
set xtics rotate by -35 left
set bmargin {bmargin}
set key outside right
set grid ytics
set datafile missing "?"
set xrange [-0.5:{len(rows) - 0.5}]
set yrange [{"*" if ymin is None else ymin}:*]
plot {heads}, "{data}" using 1:3:xtic(2) with points pt 5 ps 0.9 lc rgb "black" title "classifier"
""")


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
    r.add_argument("--impls", default="sila,torch")
    t = sub.add_parser("table")
    t.add_argument("results")
    a = sub.add_parser("ablation")
    a.add_argument("results", nargs="+")
    a.add_argument("--job", required=True, help="the job file's base name, as recorded")
    a.add_argument("--plot", help="also draw the rows into this file (.svg or .png)")
    a.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="only the rows whose objective contains TEXT (repeatable), and "
                        "the ce rows")
    a.add_argument("--ymin", type=float, help="--plot: the accuracy axis from this %%")
    args = p.parse_args()
    {"run": cmd_run, "table": cmd_table, "ablation": cmd_ablation}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
