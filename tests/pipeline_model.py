"""A model of sila's pipeline: the samples/s of K workers in a chain, from
each worker's compute time per step and the bytes on each link.

Used by tests/bench_speed.py (pipeline) to predict what more machines,
faster links, 16-bit activations (job.wire_dtype) and global steps (at once
or learned late, job.global_lag) give, and checked there against runs on
this machine (docs/performance.md). Its own checks: tests/test_pipeline_model.py.

The model replays a run step by step, as the workers and silad order their
work (docs/protocol.md):
  * silad sends step t once step t - window is done at the last worker;
  * each worker handles its steps in order, one at a time; a local step
    costs it `local` seconds, after which its output leaves;
  * a global step costs `fwd` then `bwd` seconds. At once (lag 0): a worker
    sends its output after `fwd`, waits for the gradient from downstream,
    then spends `bwd` and sends its gradient upstream; the last worker
    spends both at once. Late (lag d >= 1): a worker sends its output after
    `fwd`; just before its step t + d * (modules after its last one), when
    its last module learns, it waits for the gradient if it has not arrived
    and spends `late_rest` (its modules after the first); just before its
    step t + d * (modules after its first one), when its first module
    learns, it spends `late_first`; the last worker's last module is the
    classifier's, which learns at once. A worker whose first module is not
    the network's first sends that module's input gradient as soon as it
    can (sila_stage_late_send): after the step in which the module got
    its output gradient, or on its arrival when the worker is idle, it
    spends the input pass of `late_first` and the gradient leaves; the
    rest of `late_first`, the parameter pass, stays at the due step;
  * a link carries one message at a time each way at `bps` bits per second
    of payload, the transfer overlapping the sender's compute; no latency.
"""


def split(M, K):
    """Modules [first, last) of each of K workers, as silad --spawn=K splits M."""
    return [(i * M // K, (i + 1) * M // K) for i in range(K)]


class Stage:
    """One worker: seconds per step of a local step, of a global step's
    forward and of its backward; `after`: modules after its last one;
    `inner`: modules in it after its first one. A late backward in two
    parts: `late_rest`, its modules after the first, taken when its last
    module learns (which waits for the gradient from downstream; the last
    worker's at once, its classifier learning then); then `late_first`,
    (seconds into it when its gradient leaves, seconds of it), its first
    module's, when that one learns. By default a worker of one module:
    inner 0, late_rest 0, late_first (bwd, bwd)."""

    def __init__(self, local, fwd, bwd, after, inner=0, late_first=None, late_rest=0.0):
        self.local, self.fwd, self.bwd, self.after = local, fwd, bwd, after
        self.inner, self.late_rest = inner, late_rest
        self.late_send, self.late_bwd = late_first or (bwd, bwd)


def run(stages, cut_bytes, batch, schedule, lag=0, bps=None, window=4):
    """Seconds until the last worker is done with every step of `schedule`
    (a list of booleans, True for a global step). cut_bytes[w]: bytes per
    sample from worker w to worker w + 1 (activations forward; a global
    step's gradient, of the same size, back); bps None: links take no time."""
    S = len(stages)
    xfer = [b * batch * 8 / bps if bps else 0.0 for b in cut_bytes]
    free = [0.0] * S          # when each worker is next idle
    down_free = [0.0] * S     # when the link after worker w is next free, forward
    up_free = [0.0] * S       # ... and backward
    grad_at = [dict() for _ in range(S)]  # worker w: step -> its gradient's arrival
    pending = [[] for _ in range(S)]      # worker w: late steps its last module has to learn
    first = [[] for _ in range(S)]        # ... and its first module, once the last has
    ready = [dict() for _ in range(S)]    # worker w of several modules: step -> when its
                                          # first module can send (after its last learned)
    sent = [set() for _ in range(S)]      # worker w: steps whose input gradient has gone
    done = []

    def send(w, t0, links):  # a message from worker w leaves at t0 over link w
        start = max(t0, links[w])
        links[w] = start + xfer[w]
        return links[w]

    def learn_late(w, step):  # worker w learns every late step due before `step`
        st = stages[w]
        while pending[w] and pending[w][0] + lag * st.after <= step:
            g = pending[w].pop(0)
            free[w] = max(free[w], grad_at[w].pop(g)) + st.late_rest
            first[w].append(g)
            if st.inner:
                ready[w][g] = free[w]
        while first[w] and first[w][0] + lag * (st.after + st.inner) <= step:
            g = first[w].pop(0)
            if g in sent[w]:  # the parameter pass
                sent[w].remove(g)
                free[w] += st.late_bwd - st.late_send
                continue
            ready[w].pop(g, None)
            start = free[w]
            free[w] = start + st.late_bwd
            if w > 0:
                grad_at[w - 1][g] = send(w - 1, start + st.late_send, up_free)

    def send_early(w, until):  # worker w > 0, idle until `until`: the input passes it can
        st = stages[w]
        if st.inner:
            held = ready[w]
        else:  # its one module holds a gradient once it has arrived
            held = {g: grad_at[w][g] for g in pending[w] if g in grad_at[w] and g not in sent[w]}
        for g in sorted(held):
            if held[g] <= until:
                free[w] = max(free[w], held[g]) + st.late_send
                ready[w].pop(g, None)
                sent[w].add(g)
                grad_at[w - 1][g] = send(w - 1, free[w], up_free)

    for t, is_global in enumerate(schedule):
        arrive = done[t - window] if t >= window else 0.0
        outs = []
        for w, st in enumerate(stages):
            if lag and w > 0:
                send_early(w, max(free[w], arrive))
            if lag:
                learn_late(w, t)
            start = max(free[w], arrive)
            last = w == S - 1
            if not is_global:
                free[w] = start + st.local
            elif last and (not lag or st.inner == 0):
                free[w] = start + st.fwd + st.bwd
                if w > 0:
                    grad_at[w - 1][t] = send(w - 1, free[w], up_free)
            else:
                free[w] = start + st.fwd
                if lag:
                    pending[w].append(t)
                    if last:  # its loss is its own: its last module learns at once
                        grad_at[w][t] = free[w]
                        learn_late(w, t)
            outs.append(free[w])
            if not last:
                arrive = send(w, free[w], down_free)
        if is_global and not lag:  # the backward sweep, each worker waiting for it
            for w in range(S - 2, -1, -1):
                free[w] = max(free[w], grad_at[w].pop(t)) + stages[w].bwd
                if w > 0:
                    grad_at[w - 1][t] = send(w - 1, free[w], up_free)
        done.append(free[S - 1])
    return done[-1]


def samples_per_s(stages, cut_bytes, batch, schedule, **kw):
    return len(schedule) * batch / run(stages, cut_bytes, batch, schedule, **kw)


def pgl_schedule(steps, period=10, global_steps=1):
    """pgl without ramp: the last global_steps of every period are global,
    as sila_plan_step_global places them."""
    return [t % period >= period - global_steps for t in range(steps)]
