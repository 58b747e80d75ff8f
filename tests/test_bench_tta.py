#!/usr/bin/python3
"""tests/bench_tta.py's reading of its records, on made-up records whose
answers are known (TAP, one line per case)."""
import contextlib
import io
import json
import os
import sys
import tempfile
from argparse import Namespace

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_tta as bt  # noqa: E402
from tap import case, finish  # noqa: E402


def evals(points):
    """Evaluations from (step, train_s, classifier accuracy)."""
    return [{"step": s, "train_s": t, "accuracy": [0.5, a]} for s, t, a in points]


curve = evals([(10, 5.0, 0.80), (20, 10.0, 0.88), (30, 15.0, 0.90), (40, 20.0, 0.89)])
case("first_at: the first evaluation at or above the target",
     bt.first_at(curve, 0.88, lambda e: e["train_s"]) == 10.0)
case("first_at: a target reached later, though the curve falls after it",
     bt.first_at(curve, 0.90, lambda e: e["step"]) == 30)
case("first_at: None for a target never reached", bt.first_at(curve, 0.91, len) is None)
case("median_or_none: the median when every seed reached it",
     bt.median_or_none([3.0, 1.0, 2.0]) == 2.0)
case("median_or_none: None when a seed did not", bt.median_or_none([3.0, None]) is None)
case("config_schedule: pgl places one global step in ten, last of each period",
     bt.config_schedule(bt.CONFIGS["pgl-late"], 20) == [t % 10 == 9 for t in range(20)])
case("config_schedule: e2e is all global, local none",
     all(bt.config_schedule(bt.CONFIGS["e2e"], 5))
     and not any(bt.config_schedule(bt.CONFIGS["local"], 5)))
case("config_lag: pgl-late's global_lag, 0 elsewhere",
     bt.config_lag(bt.CONFIGS["pgl-late"]) == 2 and bt.config_lag(bt.CONFIGS["pgl"]) == 0)
bt.add_configs(["dgl=objective.aux=dgl", "dgl-pgl=job.algorithm=pgl,objective.aux=dgl"])
case("add_configs: local unless the configuration sets the algorithm",
     bt.CONFIGS["dgl"] == ["job.algorithm=local", "objective.aux=dgl"]
     and bt.CONFIGS["dgl-pgl"] == ["job.algorithm=pgl", "objective.aux=dgl"])
case("objective_sets: the overrides of the local objective only",
     bt.objective_sets(bt.CONFIGS["best"]) == bt.CONFIGS["best"][1:])


def worker(k, busy, active=2.0):
    return {"type": "worker", "modules": [k, k], "active_s": active, "busy": busy,
            "bytes_per_sample": 0.0}


# 100 batches of 128 in 2 s of activity: module 1's local step takes 10 ms,
# module 2's 20 ms; their global steps 20 and 40 ms; nothing on the links
base = {"bench": "tta-modules", "batch": 128, "train": 12800, "threads": 1, "window": 1}
mods = [
    {**base, "objective": "job", "algorithm": "local", "workers": [worker(1, 0.5), worker(2, 1.0)]},
    {**base, "objective": "job", "algorithm": "e2e", "workers": [worker(1, 1.0), worker(2, 2.0)]},
    {**base, "objective": "best", "algorithm": "local", "workers": [worker(1, 1.5), worker(2, 1.0)]},
]

def tta(config, seed, points, mode="inproc"):
    return {"bench": "tta", "job": "j.ini", "threads": 2, "set": [], "evals_per_epoch": 4,
            "date": "d", "silad_sha256": "x", "seed": seed, "config": config, "mode": mode,
            "config_set": bt.CONFIGS[config], "evals": evals(points)}


runs = [tta("e2e", 1, [(10, 8.0, 0.85), (20, 16.0, 0.90)]),
        tta("e2e", 2, [(10, 9.0, 0.86), (20, 18.0, 0.91)]),
        tta("local", 1, [(10, 4.0, 0.88), (20, 8.0, 0.90)]),
        tta("local", 2, [(10, 5.0, 0.87), (20, 10.0, 0.89)]),
        tta("best", 1, [(10, 6.0, 0.90)])]
rates = bt.modelled_rates(runs + mods, 2, 10e9)
case("modelled: local runs at its slowest module's pace (50 steps/s)",
     abs(rates["local"].rate - 50.0) < 0.5, rates)
case("modelled: e2e at once waits for every forward and backward (1/60 ms)",
     abs(rates["e2e"].rate - 1 / 0.06) < 0.2, rates)
case("modelled: the best objective at its own module times (1/30 ms)",
     abs(rates["best"].rate - 1 / 0.03) < 0.3, rates)
case("modelled: local bound by its slower module, module 2",
     rates["local"].bound().startswith("module 2 (20 ms a step"), rates["local"].bound())
case("modelled: e2e bound by its stalls, though module 2 computes 40 ms a step",
     rates["e2e"].bound().startswith("global steps' stalls (60 ms")
     and "module 2 computes 40," in rates["e2e"].bound(), rates["e2e"].bound())
case("modelled: the best objective bound by module 1 (30 ms)",
     rates["best"].bound().startswith("module 1 (30 ms"), rates["best"].bound())
wide = [{**r, "workers": [{**w, "bytes_per_sample": 1000.0 if w["modules"][0] == 1 else 0.0}
                          for w in r["workers"]]} for r in mods]
slow = bt.modelled_rates(runs + wide, 2, 1e6)["local"]
case("modelled: over a slow link, bound by the link (1000 B x 128 at 1 Mbit/s: 1.02 s)",
     slow.bound().startswith("link (1024 ms") and abs(slow.rate - 1 / 1.024) < 0.01,
     slow.bound())
case("modelled: nothing without module timings", bt.modelled_rates([], 2, 10e9) == {})

with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as f:
    f.write("".join(json.dumps(r) + "\n" for r in runs + mods))
    f.flush()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bt.cmd_report(Namespace(records=f.name, targets="85,90", machines=0, gbit=10.0,
                                plot=None, ymin=None))
    text = out.getvalue()
lines = {tuple(c.strip() for c in l.strip("|").split("|")[:2]): l for l in text.splitlines()
         if l.startswith("| ")}
case("report: e2e's medians (8.5 s to 85%, 17 s to 90%), against itself 1.00",
     "| 8.5 | 17.0 | 1.00 | 1.00 |" in lines.get(("e2e", "inproc"), ""), text)
case("report: local reaches 90% at one seed only: no median, no ratio",
     "| 4.5 | — | 0.53 | — |" in lines.get(("local", "inproc"), ""), text)
case("report: modelled local, 10 steps at 50 steps/s, against e2e's 8.5 s",
     "| local | 50.0 | 0.2 | — | 0.02 | — |" in text, text)

finish()
