#!/usr/bin/python3
"""Time to accuracy: the training seconds each way of training a job takes
to reach a test accuracy, measured on this machine and modelled on K
machines.

    tests/bench_tta.py run --job deploy/jobs/fmnist-cnn-k4.ini --set job.epochs=4 \\
        --threads 2 --seeds 1 --model --out tta-cnn.jsonl
    tests/bench_tta.py report tta-cnn.jsonl --targets 89,90,91 --plot tta-cnn.png

run     trains the job under each configuration (--configs, below) in each
        mode (--modes: inproc, silad --inproc --threads T; spawn=2, two
        workers of T/2 threads), and PyTorch's reading of e2e at --threads T
        (tests/reference/sila_torch.py; --no-torch leaves it out), evaluating
        --evals-per-epoch times an epoch (job.evals_per_epoch). With
        --model it also times every module (one worker per module, --threads
        T each, one computing at a time: tests/bench_speed.py's
        pipeline-modules runs with --window 1) under the
        job's objective, local and e2e, and under each configuration's own
        objective (local), for the model. Every run appends a record to
        --out.
report  reads the records. Measured: for each configuration and mode, the
        training seconds (train_s of metrics.jsonl: the time spent in
        evaluations left out) until the first evaluation at or above each
        target, the median over seeds, and against sila's e2e in process.
        Modelled (with module timings in the records): the same curves on K
        machines (--machines, default one per module) over a link of --gbit
        Gbit/s (tests/pipeline_model.py, as tests/bench_speed.py pipeline
        models it): an evaluation's step count is the same in every
        distribution (its weights are: the --inproc invariant), so the
        modelled time to it is its steps at the modelled steps/s, and what
        bounds that pace (the busiest worker, the busiest link, or global
        steps' stalls). --plot draws accuracy against seconds, measured and
        modelled, one colour per configuration (gnuplot; PNG for a .png
        name, else SVG).

Configurations: e2e; local; pgl (P = 10, G = 1, no ramp, global steps at
once: each drains the pipeline); pgl-late (the same, learned late with
job.global_lag = 2); best (local with MAN on AugLocal's heads, the
strongest local objective of docs/results.md); and any defined with
--config NAME=SECTION.KEY=VALUE,... (its algorithm local unless it sets
job.algorithm; repeatable). --set adds overrides to every run (e.g.
job.epochs=4).

Binaries as tests/bench_speed.py: $SILA_BUILD (default build/). Speed
figures mean something only on an otherwise idle machine.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import Namespace

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_speed  # noqa: E402
import gnuplot  # noqa: E402
import pipeline_model  # noqa: E402

PGL = ["job.algorithm=pgl", "job.period=10", "job.global_steps=1", "job.global_ramp=false",
       "job.global_epoch_end=0"]
CONFIGS = {
    "e2e": ["job.algorithm=e2e"],
    "local": ["job.algorithm=local"],
    "pgl": PGL + ["job.global_lag=0"],
    "pgl-late": PGL + ["job.global_lag=2"],
    "best": ["job.algorithm=local", "objective.aux=auglocal", "objective.man_momentum=0.995"],
}
MODES = ("inproc", "spawn=2")
TORCH = "torch-e2e"


def key_of(sets, key, default):
    """The last value sets give key (SECTION.KEY), or default."""
    vals = [s.split("=", 1)[1] for s in sets if s.split("=", 1)[0] == key]
    return vals[-1] if vals else default


def objective_sets(sets):
    """The overrides of sets that change the local objective."""
    return [s for s in sets if s.startswith("objective.") or s.startswith("module.")]


def config_lag(sets):
    return int(key_of(sets, "job.global_lag", "0"))


def config_schedule(sets, steps):
    """Which of the first `steps` steps are global, as the plan places them
    (pgl without ramp, at the period and global steps sets give, else
    P = 10, G = 1)."""
    algo = key_of(sets, "job.algorithm", "local")
    if algo == "e2e":
        return [True] * steps
    if algo == "pgl":
        return pipeline_model.pgl_schedule(steps, int(key_of(sets, "job.period", "10")),
                                           int(key_of(sets, "job.global_steps", "1")))
    return [False] * steps


def add_configs(defs):
    """--config NAME=SETS: into CONFIGS, local unless they say otherwise."""
    for d in defs:
        name, _, sets = d.partition("=")
        sets = [s for s in sets.split(",") if s]
        if not name or not sets or any("=" not in s for s in sets):
            sys.exit(f"bench_tta: --config {d!r}: expected NAME=SECTION.KEY=VALUE[,...]")
        CONFIGS[name] = (["job.algorithm=local"] if key_of(sets, "job.algorithm", None) is None
                         else []) + sets


def mode_args(mode, threads):
    if mode == "inproc":
        return ["--inproc", "--threads", str(threads)]
    return [f"--{mode}", "--threads", str(max(1, threads // 2))]


def silad_sha():
    return subprocess.run(["sha256sum", bench_speed.SILAD], capture_output=True,
                          text=True).stdout[:12]


def write(out, rec):
    rec = {**rec, "date": time.strftime("%Y-%m-%d %H:%M")}
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    return rec


def cmd_run(args):
    job = os.path.abspath(args.job)
    add_configs(args.config)
    configs = [c for c in args.configs.split(",") if c] + [d.partition("=")[0]
                                                           for d in args.config]
    for c in configs:
        if c not in CONFIGS:
            sys.exit(f"bench_tta: unknown configuration {c!r} (known: {', '.join(CONFIGS)})")
    common = [f"job.evals_per_epoch={args.evals_per_epoch}"] + args.set
    base = {"bench": "tta", "job": os.path.basename(job), "threads": args.threads,
            "set": args.set, "evals_per_epoch": args.evals_per_epoch}
    bench_speed.TIMEOUT_S = args.timeout
    for seed in args.seeds.split(","):
        sets = common + [f"job.seed={seed}"]
        runs = [(c, m) for c in configs for m in args.modes.split(",")]
        if args.torch:
            runs.append((TORCH, "inproc"))
        for config, mode in runs:
            print(f"== {config} {mode} seed {seed}", flush=True)
            try:
                if config == TORCH:
                    res = bench_speed.run_torch(job, args.threads, sets + CONFIGS["e2e"],
                                                evals=True)
                else:
                    res = bench_speed.run_silad(job, mode_args(mode, args.threads),
                                                sets + CONFIGS[config], evals=True)
            except bench_speed.RunFailed as e:
                print(f"   failed: {e}", flush=True)
                continue
            res.pop("workers", None)
            rec = write(args.out, {**base, "config": config, "mode": mode, "seed": int(seed),
                                   "config_set": CONFIGS["e2e" if config == TORCH else config],
                                   "silad_sha256": silad_sha(), **res})
            last = rec["evals"][-1]
            print(f"   {len(rec['evals'])} evaluations, classifier "
                  f"{100 * last['accuracy'][-1]:.2f}% after {last['train_s']:.0f} s of "
                  "training", flush=True)
    if args.model:
        nmod = bench_speed.job_modules(job)
        bench_args = Namespace(repeats=1, module_window=1, json=None)
        timing = common + ["job.epochs=1", f"job.train_limit={args.model_train}",
                           "job.test_limit=256"]
        batch, _ = bench_speed.job_settings(job)
        # a configuration with its own objective: its local steps timed under it,
        # its global steps (if any) taken as the job's
        timed = [("job", [], ("local", "e2e"))] + [
            (c, objective_sets(CONFIGS[c]), ("local",)) for c in configs
            if objective_sets(CONFIGS[c])]
        for objective, extra, algos in timed:
            # --window 1: one worker computes at a time, with the threads of
            # a whole machine like this one
            for rec in bench_speed.module_runs(bench_args, job, timing + extra, nmod,
                                               args.threads, algos):
                write(args.out, {**rec, "bench": "tta-modules", "objective": objective,
                                 "batch": batch, "train": args.model_train,
                                 "silad_sha256": silad_sha()})


def first_at(evals, target, key):
    """key (a function of an evaluation) of the first evaluation whose
    classifier reaches target (a fraction), None when none does."""
    for e in evals:
        if e["accuracy"][-1] >= target - 1e-9:
            return key(e)
    return None


def fmt_s(x):
    return "—" if x is None else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def median_or_none(xs):
    """The median of xs when every seed reached it, else None."""
    return None if not xs or None in xs else statistics.median(xs)


def modelled_rates(recs, K, bps):
    """{config: Modelled} on K machines for the configurations of the tta
    records, from the module timing records (one worker per module), or {}
    without them."""
    mods = [r for r in recs if r["bench"] == "tta-modules"]
    if not mods:
        return {}
    nmod = len(mods[0]["workers"])
    batch, train = mods[0]["batch"], mods[0]["train"]
    batches = train // batch
    parts = pipeline_model.split(nmod, K)
    rates = {}
    configs = {r["config"]: r["config_set"] for r in recs
               if r["bench"] == "tta" and r["config"] != TORCH}
    for config, sets in configs.items():
        # local steps timed under the configuration's objective, global ones the job's
        objective = config if objective_sets(sets) else "job"
        own = [r for r in mods if (r["objective"], r["algorithm"]) in
               ((objective, "local"), ("job", "e2e"))]
        if not any(r["algorithm"] == "local" for r in own):
            continue
        t_loc, t_glob, e_mod = bench_speed.module_times(own, nmod, batches)
        # no bench_late records here: a late backward as one pass
        stages = bench_speed.stages_of(t_loc, t_glob, parts, nmod,
                                       bench_speed.late_ratios([], nmod))
        cuts = [e_mod[b - 1] if b < nmod else 0 for _, b in parts]
        sched = config_schedule(sets, 1000)
        sps = pipeline_model.samples_per_s(stages, cuts, batch, sched, lag=config_lag(sets),
                                           bps=bps, window=max(4, 2 * K))
        # what bounds it: the busiest worker's compute per step over the
        # schedule, and the busiest link's transfer (one way) per step
        busy = [sum(st.fwd + st.bwd if g else st.local for g in sched) / len(sched)
                for st in stages]
        w = max(range(len(stages)), key=busy.__getitem__)
        link = max(cuts) * batch * 8 / bps if bps else 0.0
        rates[config] = Modelled(sps / batch, parts[w], busy[w], link)
    return rates


class Modelled:
    """A configuration on K machines: steps/s; the modules [a, b) of its
    busiest worker and that worker's seconds of compute per step; the
    busiest link's seconds per step. A step slower than both waits on the
    schedule (global steps draining the pipeline)."""

    def __init__(self, rate, modules, busiest_s, link_s):
        self.rate, self.modules, self.busiest_s, self.link_s = rate, modules, busiest_s, link_s

    def bound(self):
        a, b = self.modules
        mods = f"module {b}" if b == a + 1 else f"modules {a + 1}-{b}"
        step = 1 / self.rate
        what = ("link" if self.link_s >= self.busiest_s else mods)
        if step > 1.1 * max(self.busiest_s, self.link_s):
            what = "global steps' stalls"
        return (f"{what} ({1e3 * step:.0f} ms a step; {mods} computes "
                f"{1e3 * self.busiest_s:.0f}, the busiest link carries {1e3 * self.link_s:.1f})")


def cmd_report(args):
    recs = [json.loads(l) for l in open(args.records) if l.strip()]
    runs = [r for r in recs if r["bench"] == "tta"]
    if not runs:
        sys.exit(f"{args.records}: no tta records")
    targets = [float(t) / 100 for t in args.targets.split(",")]
    curves = {}  # (config, mode) -> {seed: evals}
    for r in runs:
        curves.setdefault((r["config"], r["mode"]), {})[r["seed"]] = r["evals"]
    first = runs[0]
    print(f"## Time to accuracy: {first['job']}\n\n{len(runs)} runs of {args.records} "
          f"(from {first['date']}), --threads {first['threads']}, "
          f"{first['evals_per_epoch']} evaluations an epoch, overrides "
          f"{' '.join(first['set']) or 'none'}; seconds of training (evaluations left out) "
          "until the classifier's test accuracy first reaches each target, median over "
          "seeds (— when a seed never reaches it); builds "
          f"{', '.join(sorted({r['silad_sha256'] for r in runs}))}.\n")

    def ttas(config, mode, key):
        seeds = curves[(config, mode)]
        return [median_or_none([first_at(seeds[s], t, key) for s in seeds]) for t in targets]

    ref = curves.get(("e2e", "inproc"))
    ref_t = ttas("e2e", "inproc", lambda e: e["train_s"]) if ref else [None] * len(targets)
    print("| configuration | mode | seeds | final accuracy (mean) | "
          + " | ".join(f"s to {100 * t:g}%" for t in targets) + " | "
          + " | ".join(f"/ e2e inproc at {100 * t:g}%" for t in targets) + " |")
    print("|---|---|---:|---:|" + "---:|" * (2 * len(targets)))
    for (config, mode), seeds in curves.items():
        acc = statistics.mean(seeds[s][-1]["accuracy"][-1] for s in seeds)
        ts = ttas(config, mode, lambda e: e["train_s"])
        ratio = [None if a is None or b is None else a / b for a, b in zip(ts, ref_t)]
        print(f"| {config} | {mode} | {len(seeds)} | {100 * acc:.2f}% | "
              + " | ".join(fmt_s(t) for t in ts) + " | "
              + " | ".join("—" if x is None else f"{x:.2f}" for x in ratio) + " |")

    K = args.machines or job_modules_of(recs)
    rates = modelled_rates(recs, K, args.gbit * 1e9)
    if rates:
        threads = next(r["threads"] for r in recs if r["bench"] == "tta-modules")
        print(f"\nModelled on K = {K} machines of {threads} thread(s) each, over {args.gbit:g} "
              "Gbit/s "
              "links (tests/pipeline_model.py with the per-module times of the tta-modules "
              "records; float32 activations; silad's window 2K): each evaluation's step count "
              "at the modelled steps/s. The last columns divide by sila's e2e measured in "
              "process on this one machine.\n")
        print("| configuration | modelled steps/s | "
              + " | ".join(f"s to {100 * t:g}%" for t in targets) + " | "
              + " | ".join(f"/ e2e one machine at {100 * t:g}%" for t in targets)
              + " | bound by |")
        print("|---|---:|" + "---:|" * (2 * len(targets)) + "---|")
        for config, m in rates.items():
            if (config, "inproc") not in curves:
                continue
            ts = ttas(config, "inproc", lambda e, rate=m.rate: e["step"] / rate)
            ratio = [None if a is None or b is None else a / b for a, b in zip(ts, ref_t)]
            print(f"| {config} | {m.rate:.1f} | " + " | ".join(fmt_s(t) for t in ts) + " | "
                  + " | ".join("—" if x is None else f"{x:.2f}" for x in ratio)
                  + f" | {m.bound()} |")
    if args.plot:
        plot(curves, rates, args, first["job"])


def job_modules_of(recs):
    mods = [r for r in recs if r["bench"] == "tta-modules"]
    return len(mods[0]["workers"]) if mods else 0


# distinct colours, one per configuration (gnuplot's own eight repeat)
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#a6761d")
# per mode a point and a line: in process filled circles, solid; two
# workers filled squares, dash-dotted; others (PyTorch) triangles, solid
MODE_STYLE = {"inproc": (7, ""), "spawn=2": (5, " dt 4")}


def plot(curves, rates, args, job):
    """Classifier accuracy against training seconds: per configuration and
    mode the mean over seeds at each evaluation (measured), and the
    in-process curve at the modelled speed (dashed, open circles). A
    configuration keeps one colour; points and lines say the mode."""
    configs = list(dict.fromkeys(config for config, _ in curves))
    with tempfile.TemporaryDirectory() as d:
        series = []
        for (config, mode), seeds in curves.items():
            n = min(len(v) for v in seeds.values())
            pts = [(statistics.mean(seeds[s][i]["train_s"] for s in seeds),
                    statistics.mean(100 * seeds[s][i]["accuracy"][-1] for s in seeds))
                   for i in range(n)]
            colour = COLOURS[configs.index(config) % len(COLOURS)]
            series.append((f"{config} {mode}", pts, colour, *MODE_STYLE.get(mode, (9, ""))))
            if mode == "inproc" and config in rates:
                steps = [statistics.mean(seeds[s][i]["step"] for s in seeds) for i in range(n)]
                series.append((f"{config} modelled", [(st / rates[config].rate, a) for st, (_, a)
                                                       in zip(steps, pts)], colour, 6, " dt 2"))
        parts = []
        for i, (title, pts, colour, point, dash) in enumerate(series):
            path = os.path.join(d, f"s{i}.dat")
            with open(path, "w") as f:
                f.writelines(f"{x:.3f} {y:.3f}\n" for x, y in pts)
            parts.append(f'"{path}" using 1:2 with linespoints lw 1.5 lc rgb "{colour}" '
                         f'pt {point} ps 0.6{dash} title "{title}"')
        gnuplot.draw(args.plot, "1100,700", f"""set title "{job}: classifier test accuracy against seconds of training"
set xlabel "seconds of training (evaluations left out)"
set ylabel "test accuracy %"
set logscale x
set key outside right
set grid
set yrange [{"*" if args.ymin is None else args.ymin}:*]
plot {", ".join(parts)}
""")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--job", required=True)
    r.add_argument("--configs", default=",".join(CONFIGS))
    r.add_argument("--config", action="append", default=[], metavar="NAME=SETS",
                   help="a configuration of its own: NAME=SECTION.KEY=VALUE[,...]")
    r.add_argument("--modes", default=",".join(MODES))
    r.add_argument("--seeds", default="1")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--evals-per-epoch", type=int, default=4)
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    r.add_argument("--no-torch", dest="torch", action="store_false")
    r.add_argument("--model", action="store_true",
                   help="also time every module for the model")
    r.add_argument("--model-train", type=int, default=6400,
                   help="training samples of each module timing run")
    r.add_argument("--timeout", type=float, default=4 * 3600.0, help="seconds per run")
    r.add_argument("--out", required=True)
    q = sub.add_parser("report")
    q.add_argument("records")
    q.add_argument("--targets", default="88,90,91", help="test accuracies in %%")
    q.add_argument("--machines", type=int, default=0, help="K of the model (0: one per module)")
    q.add_argument("--gbit", type=float, default=10.0, help="the model's link, Gbit/s")
    q.add_argument("--plot")
    q.add_argument("--ymin", type=float)
    args = p.parse_args()
    {"run": cmd_run, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
