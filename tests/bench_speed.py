#!/usr/bin/python3
"""sila's speed in one command: kernels against sgemm, training against
PyTorch, the distributed pipeline against a model of it, and memory.

    tests/bench_speed.py all --threads 2 --repeats 3
    tests/bench_speed.py kernels|throughput|pipeline|memory|objectives [options]

Binaries come from the build directory $SILA_BUILD (default: build/ in the
source tree): $SILA_BUILD/tests/bench_kernels and $SILA_BUILD/daemon/silad
(which finds silaworker next to itself). PyTorch runs
tests/reference/sila_torch.py with /usr/bin/python3. Every silad run passes
--rpc none, so that nothing listens on a port.

kernels     runs bench_kernels --threads T --reps R and prints its table:
            forward/backward GFLOP/s of every layer type, as a fraction of
            sgemm at T threads; GB/s of the memory-bound layers.
throughput  trains each job (--jobs) under each algorithm (--algos) with
            silad --inproc --threads T and with sila_torch.py --threads T,
            one epoch of a few thousand samples, --repeats times, alternating
            which goes first; prints median samples/s of both, the ratio
            against its target (CNN and ResNet >= 1.5x PyTorch, MLP >= 3x)
            and the peak RSS of each process. Jobs: cnn, mlp, resnet
            (fmnist-resnet-k8) or a job file.
pipeline    runs tests/bench_pipeline.py's measurement (inproc, --spawn=2
            local, pgl with global steps at once and learned late, and the
            two workers with one batch in flight, local and e2e) on the
            first of --jobs, measures each module's compute time of a local
            and of a global step with one worker per module, and the two
            passes of a late step's backward (tests/bench_late), and models
            (tests/pipeline_model.py) the pipeline's samples/s on K = 1..16
            machines over 1 and 10 Gbit/s links, in 32 and 16 bits;
            compares the model's K = 2, its workers' steps those of the
            one-batch runs, with the measured --spawn=2 runs.
memory      peak RSS of --inproc, of the largest --spawn worker (one module
            per worker and two workers) and of PyTorch, per job.
all         the four, in that order.
objectives  the cost of the local objectives (docs/methods.md) on the first
            of --jobs: samples/s of each against local ce (--inproc,
            alternating) and every worker's peak RSS (one module each), e.g.
            tests/bench_speed.py objectives --jobs deploy/jobs/fmnist-resnet-k8.ini
                --threads 1 --train 3200 --test 256
            (--only TEXT, repeatable: just the runs whose label contains it,
            and local ce)

Progress lines ("== ...") and each run's record (JSON) go to stdout as runs
end; the markdown tables follow each subcommand's runs. --json FILE also
appends every run's record to FILE.
"""
import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_pipeline  # noqa: E402
import pipeline_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(os.environ.get("SILA_BUILD", os.path.join(ROOT, "build")))
SILAD = os.path.join(BUILD, "daemon", "silad")
BENCH_KERNELS = os.path.join(BUILD, "tests", "bench_kernels")
BENCH_LATE = os.path.join(BUILD, "tests", "bench_late")
TORCH = os.path.join(ROOT, "tests", "reference", "sila_torch.py")
PYTHON = "/usr/bin/python3"

JOBS = {
    "cnn": os.path.join(ROOT, "deploy", "jobs", "fmnist-cnn-k4.ini"),
    "mlp": os.path.join(ROOT, "deploy", "jobs", "fmnist-mlp.ini"),
    "resnet": os.path.join(ROOT, "deploy", "jobs", "fmnist-resnet-k8.ini"),
}
# training samples of one short run (one epoch), per job, when --train is not given
DEFAULT_TRAIN = {"cnn": 6400, "mlp": 12800, "resnet": 6400}
# sila / PyTorch samples/s the project aims at
TARGETS = {"cnn": 1.5, "mlp": 3.0, "resnet": 1.5}
# input of a dataset, (channels, height, width): the first edge of a pipeline
INPUT_SHAPE = {"fmnist": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
LINKS = [("1 Gbit/s", 1e9), ("10 Gbit/s", 10e9)]


# ---- helpers -----------------------------------------------------------------

def job_path(name):
    return JOBS.get(name, name)


def job_key(name):
    """'cnn', 'mlp' or the file's base name, for defaults and targets."""
    if name in JOBS:
        return name
    base = os.path.basename(name)
    for k, p in JOBS.items():
        if os.path.basename(p) == base:
            return k
    return base


def job_settings(path):
    """batch and dataset of the job file's [job] section."""
    out, section = {"batch": 128, "dataset": "fmnist"}, None
    for line in open(path):
        line = line.strip()
        m = re.match(r"\[(\w+)\]", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"(\w+)\s*[=:]\s*([^;#\s]+)", line)
        if section == "job" and m and m.group(1) in out:
            out[m.group(1)] = m.group(2)
    return int(out["batch"]), out["dataset"]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def with_range(xs):
    """'median (min-max)', or the value alone for one run."""
    m = med(xs)
    return f"{m:.0f} ({min(xs):.0f}-{max(xs):.0f})" if len(xs) > 1 else f"{m:.0f}"


def fmt(x, digits=0):
    return "-" if x is None or x != x else f"{x:.{digits}f}"


class RunFailed(Exception):
    """A run that failed, hung or was stopped; the message has its output's end.
    hwm: for a run stopped as hung, {command line: peak RSS in MB} of every
    process of its group, read from /proc just before stopping it."""

    def __init__(self, msg, hwm=None):
        super().__init__(msg)
        self.hwm = hwm or {}


def group_hwm(pgid):
    """{pid command line: VmHWM in MB} of the live processes of group pgid."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            cmd = open(f"/proc/{pid}/cmdline").read().replace("\0", " ").strip()
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    out[f"{pid} {cmd}"] = int(line.split()[1]) / 1024.0
        except (OSError, ValueError, IndexError):
            continue
    return out


HUNG_MARK = b"no report from the workers"  # silad's words for a silent pipeline
TIMEOUT_S = 1800.0  # set from --timeout


def run_child(argv, timeout=None):
    """Runs argv in its own process group; returns (output, wall seconds, peak
    RSS in MB). Raises RunFailed when it fails, when silad says its workers
    fell silent (it would wait for them forever), or after TIMEOUT_S."""
    t0 = time.monotonic()
    timeout = timeout or TIMEOUT_S
    hung, hwm = None, {}
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        last_check = t0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            t = time.monotonic()
            if t - t0 > timeout:
                hung = f"still running after {timeout:.0f} s (--timeout)"
            elif t - last_check > 5:
                last_check = t
                size = os.fstat(out.fileno()).st_size  # pread: the child's offset stays
                if HUNG_MARK in os.pread(out.fileno(), 4096, max(0, size - 4096)):
                    hung = "reported no news from its workers for a minute"
            if hung:
                hwm = group_hwm(proc.pid)
                os.killpg(proc.pid, signal.SIGTERM)
                for _ in range(50):
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        break
                    time.sleep(0.1)
                else:
                    os.killpg(proc.pid, signal.SIGKILL)
                    _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if hung or proc.returncode != 0:
        why = hung or f"exit status {proc.returncode}"
        tail = "\n".join(text.splitlines()[-12:])
        raise RunFailed(f"{os.path.basename(argv[0])} {why}: {' '.join(argv)}\n{tail}", hwm)
    return text, time.monotonic() - t0, usage.ru_maxrss / 1024.0


def record(args, rec):
    rec = {**rec, "date": time.strftime("%Y-%m-%d %H:%M")}
    print(json.dumps(rec), flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(rec) + "\n")


def job_modules(path):
    """How many [module] sections the job file has."""
    return len(re.findall(r"^\s*\[module\]", open(path).read(), re.M))


def short_run_sets(args, key, algo=None):
    train = args.train or DEFAULT_TRAIN.get(key, 6400)
    sets = ["job.epochs=1", f"job.train_limit={train}", f"job.test_limit={args.test}"]
    if algo:
        sets.append(f"job.algorithm={algo}")
    return sets, train


def run_silad(job, mode_args, sets, evals=False):
    """silad on job; returns its record: samples/s, wall, peak RSS (silad and
    its children), worker records of metrics.jsonl, the last evaluation's
    accuracies; with evals=True also every evaluation (step, train_s,
    accuracy)."""
    with tempfile.TemporaryDirectory() as d:
        argv = [SILAD, "--job", job, "--out", d, "--rpc", "none", *mode_args]
        for s in sets:
            argv += ["--set", s]
        text, wall, rss = run_child(argv)
        lines = open(os.path.join(d, "metrics.jsonl")).read().splitlines()
    workers = [json.loads(l) for l in lines if '"type":"worker"' in l]
    recs = [json.loads(l) for l in lines if '"type":"eval"' in l]
    rates = re.findall(r"([\d.]+) samples/s", text)
    if not rates:
        raise RunFailed(f"no samples/s in silad's output:\n{text}")
    res = {"samples_per_s": float(rates[-1]), "wall_s": round(wall, 1),
           "peak_rss_mb": round(rss, 1), "workers": workers,
           "accuracy": recs[-1]["accuracy"] if recs else None}
    if evals:
        res["evals"] = [{k: r[k] for k in ("step", "train_s", "accuracy")} for r in recs]
    return res


def run_torch(job, threads, sets, evals=False):
    argv = [PYTHON, TORCH, "--job", job, "--threads", str(threads), "--json"]
    for s in sets:
        argv += ["--set", s]
    text, wall, rss = run_child(argv)
    res = json.loads(text.strip().splitlines()[-1])
    out = {"samples_per_s": res["samples_per_s"], "wall_s": round(wall, 1),
           "peak_rss_mb": round(rss, 1), "accuracy": res["accuracy"]}
    if evals:
        out["evals"] = res["evaluations"]
    return out


def banner(name, args):
    load = os.getloadavg()
    print(f"\n## {name}\n\nthreads {args.threads}, repeats {args.repeats}, "
          f"load average at start {load[0]:.2f} (on {os.cpu_count()} cores; "
          f"figures are only meaningful on an otherwise idle machine)\n", flush=True)


# ---- kernels -------------------------------------------------------------------

def cmd_kernels(args):
    banner("Kernels against sgemm", args)
    argv = [BENCH_KERNELS, "--threads", str(args.threads), "--reps", str(args.reps)]
    if args.kernel_batch:
        argv += ["--batch", str(args.kernel_batch)]
    print(f"`{' '.join(os.path.relpath(a, ROOT) if a == BENCH_KERNELS else a for a in argv)}`\n",
          flush=True)
    proc = subprocess.run(argv)
    if proc.returncode != 0:
        raise RunFailed(f"bench_kernels failed with status {proc.returncode}")


# ---- throughput ------------------------------------------------------------------

def cmd_throughput(args):
    banner("Training throughput: sila against PyTorch", args)
    results = {}
    first = "sila"
    for name in args.jobs.split(","):
        job, key = job_path(name), job_key(name)
        for algo in args.algos.split(","):
            sets, train = short_run_sets(args, key, algo)
            for rep in range(args.repeats):
                order = ["sila", "torch"] if first == "sila" else ["torch", "sila"]
                for impl in order:
                    print(f"== throughput {key} {algo} {impl} (repeat {rep + 1})", flush=True)
                    if impl == "sila":
                        res = run_silad(job, ["--inproc", "--threads", str(args.threads)], sets)
                        res.pop("workers")
                    else:
                        res = run_torch(job, args.threads, sets)
                    rec = {"bench": "throughput", "job": key, "algorithm": algo, "impl": impl,
                           "threads": args.threads, "train": train, **res}
                    record(args, rec)
                    results.setdefault((key, algo), {}).setdefault(impl, []).append(rec)
                first = "torch" if first == "sila" else "sila"  # alternate
    print(f"\nTraining samples/s, one epoch (train_limit per job, test_limit {args.test}), "
          f"both at {args.threads} threads, median of {args.repeats} (range in brackets); "
          "sila / PyTorch = sila median / PyTorch median (checked against the target); "
          "per pair: the median of the ratios of the runs made back to back; peak RSS of "
          "the process (median):\n")
    print("| job | algorithm | train samples | sila samples/s | PyTorch samples/s "
          "| sila / PyTorch | target | met | per pair | sila peak RSS MB | PyTorch peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for (key, algo), impls in results.items():
        s, t = impls["sila"], impls["torch"]
        rs, rt = med([r["samples_per_s"] for r in s]), med([r["samples_per_s"] for r in t])
        ratio = rs / rt
        target = TARGETS.get(key)
        met = "-" if target is None else ("yes" if ratio >= target else "**no**")
        print(f"| {key} | {algo} | {s[0]['train']} | {with_range([r['samples_per_s'] for r in s])} "
              f"| {with_range([r['samples_per_s'] for r in t])} | {ratio:.2f}x "
              f"| {'-' if target is None else f'>= {target}x'} | {met} "
              f"| {med([a['samples_per_s'] / b['samples_per_s'] for a, b in zip(s, t)]):.2f}x "
              f"| {med([r['peak_rss_mb'] for r in s]):.0f} "
              f"| {med([r['peak_rss_mb'] for r in t]):.0f} |")
    print(flush=True)


# ---- pipeline ----------------------------------------------------------------------

PGL_LAG = 1  # job.global_lag of bench_pipeline's spawn-pgl-lag runs here
MODEL_LAGS = (1, 2, 4)  # job.global_lag values the model's tables show


def module_runs(args, job, sets, nmod, threads, algos=("local", "e2e")):
    """Runs with one worker per module, under each of algos, --repeats each;
    their records (bench pipeline-modules)."""
    recs = []
    for algo in algos:
        for rep in range(args.repeats):
            print(f"== pipeline module times: {algo}, --spawn={nmod} --threads {threads} "
                  f"--window {args.module_window} (repeat {rep + 1})", flush=True)
            res = run_silad(job, [f"--spawn={nmod}", "--threads", str(threads),
                                  "--window", str(args.module_window)],
                            sets + [f"job.algorithm={algo}"])
            if len(res["workers"]) != nmod:
                raise RunFailed(f"expected {nmod} worker records, got {len(res['workers'])}")
            rec = {"bench": "pipeline-modules", "job": os.path.basename(job), "algorithm": algo,
                   "threads": threads, "window": args.module_window, **res}
            record(args, rec)
            recs.append(rec)
    return recs


def module_times(recs, nmod, batches):
    """Per module, from module_runs' records: median compute seconds of a
    local step and of a global one (e2e: a worker's busy time excludes its
    wait for gradients), and bytes per sample sent downstream (local)."""
    out = {}
    for algo in ("local", "e2e"):
        per_mod = [[] for _ in range(nmod)]
        bytes_out = [[] for _ in range(nmod)]
        for rec in recs:
            for w in rec["workers"] if rec["algorithm"] == algo else ():
                k = w["modules"][0] - 1
                per_mod[k].append(bench_pipeline.busy_s_per_step(w, batches))
                bytes_out[k].append(w["bytes_per_sample"])
        out[algo] = ([med(x) for x in per_mod], [med(x) for x in bytes_out])
    return out["local"][0], out["e2e"][0], out["local"][1]


def late_runs(args, job, threads):
    """tests/bench_late on job: each module's late backward in one pass and
    in the two of a module whose gradient leaves its worker; its records
    (bench late-passes)."""
    argv = [BENCH_LATE, "--job", job, "--threads", str(threads), "--reps", "9", "--json"]
    print(f"== {' '.join(os.path.relpath(a, ROOT) for a in argv[:3])} {' '.join(argv[3:])}",
          flush=True)
    text, _, _ = run_child(argv, timeout=TIMEOUT_S)
    print("\n".join(l for l in text.splitlines() if not l.startswith("{")), flush=True)
    recs = []
    for line in text.splitlines():
        if line.startswith("{"):
            rec = {**json.loads(line), "job": os.path.basename(job), "threads": threads}
            record(args, rec)
            recs.append(rec)
    return recs


def late_ratios(recs, nmod):
    """Per module, from late_runs' records: (when its gradient leaves, the
    two passes together), as fractions of the one-pass late backward; (1, 1)
    where there is no record (the first and the last module)."""
    out = [(1.0, 1.0)] * nmod
    for r in recs:
        out[r["module"] - 1] = (r["input_ms"] / r["one_ms"],
                                (r["input_ms"] + r["params_ms"]) / r["one_ms"])
    return out


def sixteen_bits(cut):
    """Bytes per sample of a cut with its activations in 16 bits
    (job.wire_dtype = bf16 or f16); the 4-byte label stays."""
    return (cut - 4) / 2 + 4 if cut else 0


def stages_of(local, glob, parts, nmod, ratios):
    """pipeline_model stages for workers holding modules [a, b) of parts; a
    global step's forward taken as a third of it (its backward the rest). A
    late backward: the one pass of every module but the first (a), whose
    input pass then parameter pass take ratios[a] of its one pass, its
    gradient leaving after the first (sila_stage_late_send)."""
    stages = []
    for a, b in parts:
        send, both = ratios[a]
        first = glob[a] * 2 / 3
        stages.append(pipeline_model.Stage(sum(local[a:b]), sum(glob[a:b]) / 3,
                                           sum(glob[a:b]) * 2 / 3, nmod - b, b - a - 1,
                                           (send * first, both * first),
                                           sum(glob[a + 1:b]) * 2 / 3))
    return stages


def two_worker_times(t_loc, t_glob, parts, runs):
    """The module times of local and of global steps, scaled so that each
    of the two workers of parts takes the step bench_pipeline's serial and
    serial-e2e runs measured for it (medians of worker_step_ms: its modules
    in one process, its messages included); None without those runs."""
    recs = {m: [r for r in runs if r["mode"] == m] for m in ("serial", "serial-e2e")}
    if not all(recs.values()):
        return None
    out = []
    for times, mode in ((t_loc, "serial"), (t_glob, "serial-e2e")):
        steps_ms = bench_pipeline.worker_steps_ms(recs[mode])
        scaled = list(times)
        for (a, b), ms in zip(parts, steps_ms):
            f = ms / 1e3 / sum(times[a:b])
            scaled[a:b] = [t * f for t in times[a:b]]
        out.append(scaled)
    return out


def modelled(stages, cuts, batch, steps, bps, window, lags):
    """samples/s of local, pgl (P = 10, G = 1) at once and learned late
    with each of lags."""
    loc = [False] * steps
    pgl = pipeline_model.pgl_schedule(steps)
    kw = {"bps": bps, "window": window}
    return [pipeline_model.samples_per_s(stages, cuts, batch, loc, **kw)] + [
        pipeline_model.samples_per_s(stages, cuts, batch, pgl, lag=d, **kw) for d in (0, *lags)]


PIPELINE_MODES = ("inproc", "spawn", "spawn-pgl", "spawn-pgl-lag", "serial", "serial-e2e")


def pipeline_runs(args, job, train, half):
    """bench_pipeline's runs of job (PIPELINE_MODES), run by a child
    interpreter that imports it and patches its silad, its thread counts
    (from --threads; its table's labels assume --threads 2: inproc 2
    threads, 2 workers x 1 thread; it passes --rpc none itself); its own
    run() has no timeout, so the child runs under ours. Their records
    (bench pipeline)."""
    driver = f"""
import sys
sys.dont_write_bytecode = True
sys.path.insert(0, {os.path.join(ROOT, "tests")!r})
import bench_pipeline as bp
bp.SILAD = {SILAD!r}
for mode, (margs, algo) in list(bp.CONFIGS.items()):
    if mode == "inproc":
        margs = ["--inproc", "--threads", "{args.threads}"]
    else:  # its own arguments (--spawn, the pgl schedule) with our threads
        margs = [a for i, a in enumerate(margs)
                 if a != "--threads" and (i == 0 or margs[i - 1] != "--threads")]
        margs += ["--threads", "{half}"]
    bp.CONFIGS[mode] = (margs, algo)
sys.argv = sys.argv[1:]
bp.main()
"""
    modes = ",".join(PIPELINE_MODES)
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as tmp:
        argv = ["bench_pipeline.py", "--job", job, "--repeats", str(args.repeats),
                "--train", str(train), "--json", tmp.name, "--modes", modes,
                "--lag", str(PGL_LAG)]
        print(f"== tests/bench_pipeline.py --job {os.path.relpath(job, ROOT)} "
              f"--repeats {args.repeats} --train {train} --modes {modes} "
              f"({len(PIPELINE_MODES)} x {args.repeats} runs; its output follows when it ends)",
              flush=True)
        text, _, _ = run_child([PYTHON, "-c", driver, *argv],
                               timeout=TIMEOUT_S * len(PIPELINE_MODES) * args.repeats)
        print(text, flush=True)
        recs = [{"bench": "pipeline", "job": os.path.basename(job), "train": train,
                 "threads": args.threads, **json.loads(l)} for l in open(tmp.name) if l.strip()]
    for r in recs:
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(r) + "\n")
    return recs


def cmd_pipeline(args):
    banner("Distributed pipeline: measured and modelled", args)
    job = job_path(args.jobs.split(",")[0])
    half = max(1, args.threads // 2)
    batch, dataset = job_settings(job)
    nmod = job_modules(job)
    if args.model_from:  # the runs of an earlier measurement, modelled again
        recs = [r for r in map(json.loads, open(args.model_from))
                if r.get("job") == os.path.basename(job)]
        runs = [r for r in recs if r["bench"] == "pipeline"]
        mods = [r for r in recs if r["bench"] == "pipeline-modules"]
        lates = [r for r in recs if r["bench"] == "late-passes"]
        if not runs or not mods:
            sys.exit(f"{args.model_from}: no pipeline and pipeline-modules records of "
                     f"{os.path.basename(job)}")
        train = runs[0]["train"]
        print(f"The runs of {args.model_from} ({len(runs)} pipeline runs, {len(mods)} module "
              f"timing runs, from {mods[0]['date']}), modelled again.\n")
    else:
        train = args.train or 12800
        runs = pipeline_runs(args, job, train, half)
        mods = module_runs(args, job, ["job.epochs=1", f"job.train_limit={train}",
                                       f"job.test_limit={batch}"], nmod, half)
        lates = late_runs(args, job, half)
    measured = {m: med([r["samples_per_s"] for r in runs if r["mode"] == m])
                for m in PIPELINE_MODES if any(r["mode"] == m for r in runs)}
    repeats = sum(r["mode"] == "spawn" for r in runs)
    batches = train // batch
    t_loc, t_glob, e_mod = module_times(mods, nmod, batches)
    ratios = late_ratios(lates, nmod)
    c, h, w = INPUT_SHAPE.get(dataset, (1, 28, 28))
    e_in = 4.0 * c * h * w + 4  # float32 input and an int32 label per sample
    edges = [e_in] + e_mod[:-1]  # edge k feeds module k (0: from the coordinator)

    print(f"\nPer-module compute time per step of {batch}, from --spawn={nmod} "
          f"--threads {mods[0]['threads']} --window {mods[0]['window']} (busy fraction x "
          f"active seconds / {batches} steps, median of {len(mods) // 2}; a global step's "
          "from an e2e run, whose workers' busy time leaves out their waits for gradients), "
          "and bytes per sample into each module (worker records' bytes_per_sample; module "
          "1's input: the float32 image and label from the coordinator):\n")
    print("| module | local step ms | share | global step ms | global / local "
          "| input bytes / sample |")
    print("|---:|---:|---:|---:|---:|---:|")
    total, total_g = sum(t_loc), sum(t_glob)
    for k in range(nmod):
        print(f"| {k + 1} | {1e3 * t_loc[k]:.1f} | {100 * t_loc[k] / total:.0f}% "
              f"| {1e3 * t_glob[k]:.1f} | {t_glob[k] / t_loc[k]:.2f} | {edges[k]:.0f} |")
    print(f"| all | {1e3 * total:.1f} | 100% | {1e3 * total_g:.1f} | {total_g / total:.2f} | |")
    if lates:
        print(f"\nA late global step's backward in two passes (tests/bench_late, "
              f"{lates[0]['threads']} thread(s), median of 9), as a module whose gradient "
              "leaves its worker takes it, against its one pass: when the gradient leaves, "
              "and both passes together:\n")
        print("| module | one pass ms | gradient leaves | both passes |")
        print("|---:|---:|---:|---:|")
        for r in lates:
            send, both = ratios[r["module"] - 1]
            print(f"| {r['module']} | {r['one_ms']:.1f} | {send:.2f} | {both:.2f} |")
    else:
        print("\n(No late-passes records: a late backward is modelled as one pass, its "
              "gradient leaving at its end, as before sila_module_late_input.)")

    steps = 1000
    print(f"\nModel (tests/pipeline_model.py): {steps} steps replayed as silad and the "
          "workers order them: each worker computes its steps in order at the measured "
          f"per-step times ({mods[0]['threads']} thread(s) per machine); a global step's "
          "forward is taken as a third of its time; pgl is P = 10, G = 1 without ramp, its global steps "
          f"either at once (each worker waits for its gradient) or learned late "
          f"(job.global_lag = d); links carry their nominal rate as payload, one "
          "message at a time each way, overlapped with compute, no latency; a global "
          "step's gradients travel back as many bytes as its activations went forward; "
          "16-bit: the activations and gradients in 2 bytes (job.wire_dtype = bf16 or "
          "f16), the labels still 4; the coordinator's feed never limits; batch "
          f"{batch}; silad's window as given; a worker whose first module is not the "
          "network's first computes that module's input pass of a late step as soon as "
          "it holds the step's output gradient (after the step in which it came, or on "
          "its arrival when idle) and sends it, and its parameter pass at the due step, "
          "at the ratios above (the even split: their mean).\n")

    def table(title, rows):
        """rows: (K, label, window, stages, cuts); for each link and dtype:
        local, and pgl at once and learned late against it."""
        print(title + "\n")
        print("| K | modules | --window | link | wire | local | pgl at once | / local | "
              + " | ".join(f"pgl late, d = {d} | / local" for d in MODEL_LAGS) + " |")
        print("|---:|---|---:|---|---|---:|" + "---:|---:|" * (1 + len(MODEL_LAGS)))
        for K, label, window, stages, cuts in rows:
            for link, bps in [("none", None)] + LINKS:
                for dtype, cut in (("f32", cuts), ("16-bit", [sixteen_bits(x) for x in cuts])):
                    if bps is None and dtype != "f32":
                        continue
                    loc, *pgl = modelled(stages, cut, batch, steps, bps, window, MODEL_LAGS)
                    print(f"| {K} | {label} | {window} | {link} | {dtype} | {loc:.0f} | "
                          + " | ".join(f"{x:.0f} | {x / loc:.2f}" for x in pgl) + " |")

    own = []
    for K in range(1, nmod + 1):
        parts = pipeline_model.split(nmod, K)
        cuts = [edges[b] if b < nmod else 0 for _, b in parts]
        own.append((K, "+".join(str(b - a) for a, b in parts), max(4, 2 * K),
                    stages_of(t_loc, t_glob, parts, nmod, ratios), cuts))
    table(f"(a) The job's own {nmod} modules on K machines, split as silad --spawn=K "
          "splits them (consecutive ranges); the links carry the activations at the cuts "
          "(the coordinator's feed of the input is not modelled as a link); silad's "
          "--window 2K (at least its default 4):", own)
    biggest = max(edges)
    even = []
    split_at = [r for k, r in enumerate(ratios) if 0 < k < nmod - 1] or [(1.0, 1.0)]
    send, both = (statistics.mean(x) for x in zip(*split_at))
    for K in range(2, 17):
        bwd = total_g / K * 2 / 3
        stages = [pipeline_model.Stage(total / K, total_g / K / 3, bwd, K - 1 - w, 0,
                                       (send * bwd, both * bwd) if w else None)
                  for w in range(K)]
        even.append((K, "even", 2 * K, stages, [biggest] * (K - 1) + [0]))
    table(f"(b) The network spread evenly over K machines: each computes 1/K of the "
          f"{1e3 * total:.1f} ms of a local step and of the {1e3 * total_g:.1f} ms of a "
          "global one (as if the network could be re-cut into K equal modules; the extra "
          "aux heads more modules would bring are not counted), and every cut carries the "
          f"largest activation at a module boundary, {biggest:.0f} bytes per sample; "
          "--window 2K:", even)
    print(f"\nOne machine (the sum of the module times): local {batch / total:.0f}, e2e "
          f"{batch / total_g:.0f}, pgl P = 10, G = 1 "
          f"{batch / (0.9 * total + 0.1 * total_g):.0f} samples/s.")

    print("\nThe model against the measurement: two workers on this machine talk over ipc "
          "(no link limit), as silad --spawn=2 runs them with its default window of 4:\n")
    parts = pipeline_model.split(nmod, 2)
    lag = next((r.get("global_lag", 2) for r in runs if r["mode"] == "spawn-pgl-lag"), PGL_LAG)
    scaled = two_worker_times(t_loc, t_glob, parts, runs)
    if scaled:
        print("Each worker's step as the two workers take it (the serial and serial-e2e runs "
              "above: --window 1, medians) against the sum of its modules' times, to which the "
              "model of this comparison scales its modules' times:\n")
        print("| worker | modules | local: sum of modules, serial run ms | global: sum of "
              "modules, serial run ms |")
        print("|---:|---|---|---|")
        for w, (a, b) in enumerate(parts):
            print(f"| {w + 1} | {a + 1}-{b} | {1e3 * sum(t_loc[a:b]):.1f}, "
                  f"{1e3 * sum(scaled[0][a:b]):.1f} | {1e3 * sum(t_glob[a:b]):.1f}, "
                  f"{1e3 * sum(scaled[1][a:b]):.1f} |")
        print()
    else:
        print("(No serial runs in these records: the model takes each worker's step as the sum "
              "of its modules' times.)\n")
    k2_loc, k2_glob = scaled or (t_loc, t_glob)
    model = modelled(stages_of(k2_loc, k2_glob, parts, nmod, ratios), [edges[parts[0][1]], 0],
                     batch, batches, None, 4, (lag,))
    print(f"| K = 2 (modules {'+'.join(str(b - a) for a, b in parts)}) | model samples/s "
          f"| measured (median of {repeats}) | measured / model |")
    print("|---|---:|---:|---:|")
    for label, mode, m in zip(("local", "pgl at once", f"pgl late (global_lag = {lag})"),
                              ("spawn", "spawn-pgl", "spawn-pgl-lag"), model):
        print(f"| {label} | {m:.0f} | {measured[mode]:.0f} | {measured[mode] / m:.2f} |")
    print(f"| for reference: --inproc --threads {runs[0]['threads']}, local | | "
          f"{measured['inproc']:.0f} | |")
    print(flush=True)


# ---- memory ----------------------------------------------------------------------

def cmd_memory(args):
    banner("Peak memory", args)
    half = max(1, args.threads // 2)
    _, _, base = run_child([PYTHON, "-c", "import torch, numpy"])
    rows, failures = [], []
    for name in args.jobs.split(","):
        job, key = job_path(name), job_key(name)
        sets, train = short_run_sets(args, key)
        nmod = job_modules(job)
        runs = [("inproc", ["--inproc", "--threads", str(args.threads)]),
                ("spawn-all", [f"--spawn={nmod}", "--threads", "1"]),
                ("spawn-2", ["--spawn=2", "--threads", str(half)]),
                ("torch", None)]
        got = {}
        for label, margs in runs:
            print(f"== memory {key} {label}", flush=True)
            try:
                if margs is None:
                    res = run_torch(job, args.threads, sets)
                else:
                    res = run_silad(job, margs, sets)
            except RunFailed as e:
                print(f"failed: {e}", flush=True)
                failures.append(f"{key} {label}")
                # a --spawn run stopped as hung after training: its workers'
                # peak RSS as the kernel counted it just before they were stopped
                hwm = [mb for cmd, mb in e.hwm.items() if "silaworker" in cmd]
                if margs is None or not hwm:
                    continue
                res = {"hung": True, "workers": [{"peak_rss_mb": mb} for mb in hwm]}
            workers = res.pop("workers", None)
            rec = {"bench": "memory", "job": key, "run": label, "train": train, **res}
            if workers:
                rec["largest_worker_rss_mb"] = max(w["peak_rss_mb"] for w in workers)
                rec["workers_rss_sum_mb"] = round(sum(w["peak_rss_mb"] for w in workers), 1)
            record(args, rec)
            got[label] = rec
        rows.append((key, train, nmod, got))
    print(f"\nPeak RSS in MB (one run each, the job's own algorithm, one epoch, "
          f"test_limit {args.test}). --inproc (--threads {args.threads}) and PyTorch "
          f"(--threads {args.threads}): the process. --spawn: the largest worker, and in "
          "brackets the sum over the workers (the whole pipeline's footprint, spread over "
          f"machines); one module per worker at --threads 1, or two workers at --threads "
          f"{half}. PyTorch's figure includes the interpreter and its libraries: "
          f"`import torch, numpy` alone peaks at {base:.0f} MB here.\n")
    print("| job | train samples | sila --inproc | largest worker, one module each "
          "| largest worker, --spawn=2 | PyTorch | PyTorch / inproc "
          "| largest worker (one module each) / inproc |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    get = lambda got, run, field="peak_rss_mb": got[run][field] if run in got else None
    ratio = lambda x, y: f"{x / y:.2f}" if x and y else "-"
    for key, train, nmod, got in rows:
        inproc, torch_rss = get(got, "inproc"), get(got, "torch")
        big = get(got, "spawn-all", "largest_worker_rss_mb")
        workers = lambda run: (f"{get(got, run, 'largest_worker_rss_mb'):.0f} "
                               f"({get(got, run, 'workers_rss_sum_mb'):.0f})"
                               + (" hung*" if got[run].get("hung") else "")
                               if run in got else "failed")
        print(f"| {key} | {train} | {fmt(inproc)} | {workers('spawn-all')} "
              f"| {workers('spawn-2')} | {fmt(torch_rss)} | {ratio(torch_rss, inproc)} "
              f"| {ratio(big, inproc)} |")
    if any(r.get("hung") for _, _, _, got in rows for r in got.values()):
        print("\n\\* the run hung after training and was stopped: the workers' peak RSS "
              "(VmHWM) was read from /proc just before.")
    print(flush=True)
    if failures:
        raise RunFailed("memory: these runs failed (see above): " + ", ".join(failures))


# ---- the local objectives ---------------------------------------------------------

# (label, overrides) of the objectives whose cost is measured, each under local
# and pgl steps, against local ce; e2e for scale
OBJECTIVES = [
    ("ce", []),
    ("sila (dml 1)", ["objective.kind=sila", "objective.dml_weight=1"]),
    ("collab", ["objective.kind=collab"]),
    ("redundancy 0.1", ["objective.redundancy=0.1"]),
    ("kernel_similarity 0.1", ["objective.kernel_similarity=0.1"]),
    ("ce, drop_path 0.1", ["job.drop_path=0.1"]),
    ("cosub, drop_path 0.1", ["job.drop_path=0.1", "objective.kind=cosub"]),
    ("head dgl", ["objective.aux=dgl"]),
    ("head auglocal", ["objective.aux=auglocal"]),
    ("head dgl with MAN 0.995", ["objective.aux=dgl", "objective.man_momentum=0.995"]),
    ("infopro (recon 5-0, task 0-2, head infopro)",
     ["objective.aux=infopro", "objective.aux_hidden=128", "objective.recon_first=5",
      "objective.task_first=0", "objective.task_last=2"]),
]
# (label, algorithm, overrides) of every run
OBJECTIVE_RUNS = [(f"{algo} {label}", algo, extra)
                  for algo in ("local", "pgl") for label, extra in OBJECTIVES] + [("e2e", "e2e", [])]


def cmd_objectives(args):
    """Training samples/s of each local objective (--inproc, --repeats runs,
    the configurations alternating within each repeat) and each worker's peak
    RSS with one module per worker (one run)."""
    banner("The local objectives' cost", args)
    name = args.jobs.split(",")[0]
    job, key = job_path(name), job_key(name)
    sets, train = short_run_sets(args, key)
    text = open(job).read()
    nmod = job_modules(job)
    # drop_path (and so cosub) needs residual blocks
    runs = [r for r in OBJECTIVE_RUNS
            if "[block]" in text or not any(x.startswith("job.drop_path") for x in r[2])]
    if args.only:  # the baseline stays, for the ratios
        runs = [r for r in runs if r[0] == "local ce" or any(o in r[0] for o in args.only)]
    rates, workers, failures = {}, {}, []
    for rep in range(args.repeats):
        order = runs if rep % 2 == 0 else runs[::-1]
        for label, algo, extra in order:
            print(f"== objectives {key} {label} (repeat {rep + 1})", flush=True)
            try:
                res = run_silad(job, ["--inproc", "--threads", str(args.threads)],
                                sets + [f"job.algorithm={algo}", *extra])
            except RunFailed as e:
                print(f"failed: {e}", flush=True)
                failures.append(f"{label} inproc")
                continue
            res.pop("workers")
            record(args, {"bench": "objectives", "job": key, "run": label, "mode": "inproc",
                          "train": train, **res})
            rates.setdefault(label, []).append(res["samples_per_s"])
    for label, algo, extra in runs:
        print(f"== objectives {key} {label} --spawn={nmod}", flush=True)
        try:
            res = run_silad(job, [f"--spawn={nmod}", "--threads", "1"],
                            sets + [f"job.algorithm={algo}", *extra])
        except RunFailed as e:
            print(f"failed: {e}", flush=True)
            failures.append(f"{label} spawn")
            continue
        record(args, {"bench": "objectives", "job": key, "run": label, "mode": "spawn",
                      "train": train, **res})
        workers[label] = sorted(res["workers"], key=lambda w: w["modules"][0])
    base = med(rates.get("local ce", []))
    print(f"\n{key}, one epoch of {train} training samples, test_limit {args.test}. "
          f"samples/s: silad --inproc --threads {args.threads}, median (range) of "
          f"{args.repeats}; memory: silad --spawn={nmod} (one module per worker, --threads 1), "
          "each worker's peak RSS in MB, module 1 first.\n")
    print("| objective | samples/s | / local ce | peak RSS per worker (MB) | largest |")
    print("|---|---:|---:|---|---:|")
    for label, _, _ in runs:
        r = rates.get(label, [])
        w = workers.get(label, [])
        rss = " ".join(f"{x['peak_rss_mb']:.0f}" for x in w) or "failed"
        big = fmt(max(x["peak_rss_mb"] for x in w)) if w else "-"
        ratio = f"{med(r) / base:.2f}" if r and base == base else "-"
        print(f"| {label} | {with_range(r) if r else 'failed'} | {ratio} | {rss} | {big} |")
    print(flush=True)
    if failures:
        raise RunFailed("objectives: these runs failed (see above): " + ", ".join(failures))


# ---- main ------------------------------------------------------------------------

def main():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=2,
                        help="threads of sila and of PyTorch (default 2); --spawn=2 runs "
                             "give each worker half")
    common.add_argument("--repeats", type=int, default=3,
                        help="runs of each configuration; medians are reported (default 3)")
    common.add_argument("--jobs", default="cnn,mlp",
                        help="throughput and memory: cnn, mlp, resnet or job files "
                             "(default cnn,mlp); "
                             "pipeline: the first of them")
    common.add_argument("--algos", default="e2e,local,pgl",
                        help="throughput: algorithms (default e2e,local,pgl)")
    common.add_argument("--train", type=int,
                        help="training samples of every run (default: cnn 6400, mlp 12800; "
                             "pipeline 12800)")
    common.add_argument("--test", type=int, default=1000,
                        help="test samples of the throughput and memory runs (default 1000)")
    common.add_argument("--reps", type=int, default=9,
                        help="kernels: repetitions of each kernel (default 9)")
    common.add_argument("--kernel-batch", type=int,
                        help="kernels: batch (default 128; smaller for a quick check only)")
    common.add_argument("--module-window", type=int, default=1,
                        help="pipeline: silad --window of the per-module timing run "
                             "(default 1: one batch in flight, so workers never compete "
                             "for cores)")
    common.add_argument("--timeout", type=float, default=1800,
                        help="seconds after which one run is stopped as hung (default 1800); "
                             "a silad that reports its workers silent is stopped at once")
    common.add_argument("--json", help="append every run's record to this file")
    common.add_argument("--model-from", metavar="FILE",
                        help="pipeline: no runs; model again from the records of an earlier "
                             "measurement of the job that --json wrote to FILE")
    common.add_argument("--only", action="append", default=[],
                        help="objectives: only the runs whose label contains this (repeatable)")
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    cmds = {"kernels": cmd_kernels, "throughput": cmd_throughput, "pipeline": cmd_pipeline,
            "memory": cmd_memory, "objectives": cmd_objectives}
    in_all = ["kernels", "throughput", "pipeline", "memory"]
    for name in [*cmds, "all"]:
        sub.add_parser(name, parents=[common])
    args = p.parse_args()
    if args.threads < 1 or args.repeats < 1:
        p.error("--threads and --repeats must be >= 1")
    for path in (SILAD, BENCH_KERNELS):
        if args.cmd in ("all", "kernels") or path == SILAD:
            if not os.access(path, os.X_OK):
                p.error(f"{path} not found: build first, or set SILA_BUILD to the build "
                        "directory")
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    print(f"# sila speed, {time.strftime('%Y-%m-%d %H:%M')}, commit {commit or '?'}, "
          f"{platform.node()}, {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
          f"build {BUILD}\n\n`{' '.join(['tests/bench_speed.py'] + sys.argv[1:])}`", flush=True)
    global TIMEOUT_S
    TIMEOUT_S = args.timeout
    t0, failed = time.monotonic(), []
    for name in (in_all if args.cmd == "all" else [args.cmd]):
        t = time.monotonic()
        try:
            cmds[name](args)
        except RunFailed as e:  # the other subcommands still run
            print(f"\n**{name} failed**: {e}\n", flush=True)
            failed.append(name)
        print(f"({name}: {time.monotonic() - t:.0f} s)", flush=True)
    if args.cmd == "all":
        print(f"(all: {time.monotonic() - t0:.0f} s)")
    if failed:
        sys.exit(f"bench_speed: failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
