#!/usr/bin/python3
"""The pipeline model of tests/pipeline_model.py against cases whose answer
is known in closed form (TAP, one line per case)."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline_model as pm  # noqa: E402
import tap  # noqa: E402

STEPS, B = 2000, 128


def case(name, got, want, rel=0.01):
    """got within rel of want."""
    tap.case(name, abs(got - want) <= rel * abs(want), f"got {got:.6g}, want {want:.6g}")


def chain(local, fwd, bwd):
    """Workers with the given per-step seconds, one module each."""
    n = len(local)
    return [pm.Stage(local[w], fwd[w], bwd[w], n - 1 - w) for w in range(n)]


three = chain([0.02, 0.05, 0.03], [0.01, 0.02, 0.01], [0.02, 0.04, 0.02])
no_cut = [0, 0, 0]
loc = [False] * STEPS
e2e = [True] * STEPS
big = 2 * STEPS  # a window that never binds

case("local: the slowest worker sets the pace",
     pm.samples_per_s(three, no_cut, B, loc, window=big), B / 0.05)
case("local, window 1: one batch at a time through every worker",
     pm.samples_per_s(three, no_cut, B, loc, window=1), B / 0.10)
case("e2e at once: every step waits for the whole forward and backward",
     pm.samples_per_s(three, no_cut, B, e2e, window=big), B / 0.12)
case("e2e learned late: the slowest worker's forward and backward set the pace",
     pm.samples_per_s(three, no_cut, B, e2e, lag=2, window=big), B / 0.06)
case("pgl 1 in 10 learned late: the slowest worker's average step",
     pm.samples_per_s(three, no_cut, B, pm.pgl_schedule(STEPS), lag=2, window=big),
     B / (0.9 * 0.05 + 0.1 * 0.06))
# a link that carries 100 kB per sample at 1 Gbit/s takes 102.4 ms per batch
case("local: a link slower than every worker sets the pace",
     pm.samples_per_s(three, [100e3, 0, 0], B, loc, bps=1e9, window=big), B / 0.1024)
case("e2e at once: the gradients' way back adds to the stall",
     pm.samples_per_s(chain([0.01, 0.01], [0.01, 0.01], [0.01, 0.01]), [10e3, 0], B, e2e,
                      bps=1e9, window=big), B / (0.04 + 2 * 0.01024))
pair = chain([0.01, 0.01], [0.01, 0.01], [0.01, 0.01])
case("e2e learned late, the lag longer than a gradient's round trip: compute sets the pace",
     pm.samples_per_s(pair, [10e3, 0], B, e2e, lag=4, bps=1e9, window=big), B / 0.02)
# the round trip (forward 10 ms, link 10.24, both passes 20, link back 10.24)
# exceeds one step of the first worker (20 ms), so it waits for each gradient
case("e2e learned late, a lag of one step, shorter than the round trip: it waits",
     pm.samples_per_s(pair, [10e3, 0], B, e2e, lag=1, bps=1e9, window=big),
     B / (0.01 + 0.01024 + 0.02 + 0.01024 + 0.01))
case("a window of 4 with 8 equal workers: half of the pipeline's pace",
     pm.samples_per_s(chain([0.01] * 8, [0.01] * 8, [0.01] * 8), [0] * 8, B, loc, window=4),
     B / 0.02)
# pgl learned one step per module late over four workers, the first the
# slowest: each learns a late step's gradient just before it needs it, so
# the first waits for every later one's backward. When the gradient leaves
# halfway into a (longer) backward, as sila_module_late_input sends it, it
# waits less and the pipeline runs faster.
def late_chain(late):
    return [pm.Stage(0.02 if w == 0 else 0.01, 0.01, 0.02, 3 - w, 0, None if w == 0 else late)
            for w in range(4)]


whole, early = (pm.samples_per_s(late_chain(late), [0] * 4, B, pm.pgl_schedule(STEPS), lag=1,
                                 window=big) for late in (None, (0.01, 0.025)))
tap.case("late gradient sent before the parameter pass: less waiting", early > 1.05 * whole,
         f"got {early:.6g}, want more than 1.05 x {whole:.6g}")
# a last worker of two modules (its classifier learns at once, its first
# module a step later at lag 1, and only then does the gradient leave) and
# a slower first worker whose one module learns two steps later at lag 1:
# at lag 2 that covers the round trip and the first worker's average step
# sets the pace; at lag 1 it waits
pair2 = [pm.Stage(0.02, 0.01, 0.02, 2), pm.Stage(0.01, 0.01, 0.02, 0, 1, (0.01, 0.01), 0.01)]
pgl = pm.pgl_schedule(STEPS)
paced = B / (0.9 * 0.02 + 0.1 * 0.03)  # samples/s at the first worker's average step
case("a last worker of two modules, lag 2: the first worker's average step",
     pm.samples_per_s(pair2, [0, 0], B, pgl, lag=2, window=big), paced)
at1 = pm.samples_per_s(pair2, [0, 0], B, pgl, lag=1, window=big)
tap.case("a last worker of two modules, lag 1: the first worker waits", at1 < 0.97 * paced,
         f"got {at1:.6g}, want less than 0.97 x {paced:.6g}")
# a middle worker of two modules between a slower first worker and a
# last one, over links of 10 ms a message, lag 2: the middle worker's
# first module has its output gradient once its second learned (one step
# late), and sends its input gradient right after that step
# (sila_stage_late_send) rather than at its own due step a step later;
# so the first worker, whose module learns two steps after that, never
# waits and sets the pace with its average step
mid = [pm.Stage(0.03, 0.01, 0.02, 3), pm.Stage(0.02, 0.01, 0.02, 1, 1, (0.01, 0.02), 0.02),
       pm.Stage(0.01, 0.01, 0.02, 0)]
case("a middle worker's input gradient sent as soon as it can: the first worker does not wait",
     pm.samples_per_s(mid, [10e3, 10e3, 0], B, pgl, lag=2, bps=1e9, window=big),
     B / (0.9 * 0.03 + 0.1 * 0.03))
plan = pm.pgl_schedule(20, period=10, global_steps=2)
case("pgl_schedule: the last two of each period of ten are global",
     plan.index(True) + 10 * plan.count(True), 8 + 40, rel=0)
case("split: 8 modules over 3 workers, as silad --spawn=3",
     len(pm.split(8, 3)) * 100 + sum(b - a for a, b in pm.split(8, 3)), 308, rel=0)

tap.finish()
