#!/usr/bin/python3
"""tests/bench_pipeline.py's pairing of its records (--pairs-from), on
made-up records whose answers are known (TAP, one line per case)."""
import contextlib
import io
import json
import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_pipeline as bp  # noqa: E402
from tap import case, finish  # noqa: E402


def rec(mode, rate, job="a.ini", lag=None, train=60000):
    r = {"job": job, "train": train, "mode": mode, "overrides": [], "samples_per_s": rate}
    if lag is not None:
        r["global_lag"] = lag
    return r


def pairs_from(*files):
    """bench_pipeline.pairs_from on files (lists of records): (its
    return, what it printed)."""
    paths = []
    with contextlib.ExitStack() as stack:
        for recs in files:
            f = stack.enter_context(tempfile.NamedTemporaryFile("w", suffix=".jsonl"))
            f.write("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in recs))
            f.flush()
            paths.append(f.name)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            ret = bp.pairs_from(paths)
    return ret, out.getvalue()


case("pair_ratios: the i-th pgl run over the i-th local run",
     bp.pair_ratios([rec("spawn", 100), rec("spawn", 200)],
                    [rec("spawn-pgl-lag", 90), rec("spawn-pgl-lag", 210)]) == [0.9, 1.05])
same = bp.summarise_pairs([1.0] * 5)
case("summarise_pairs: equal pairs, an interval of one point",
     same == "5 pairs, median 1.000x, 95% bootstrap interval 1.000-1.000", same)
spread = [0.90, 0.95, 0.97, 0.99, 1.00, 1.02, 1.30]
text = bp.summarise_pairs(spread)
lo, hi = (float(x) for x in text.rsplit(" ", 1)[1].split("-"))
case("summarise_pairs: the median inside its interval, the interval inside the pairs",
     "median 0.990x" in text and 0.90 <= lo <= 0.99 <= hi <= 1.30 and lo < hi, text)
case("summarise_pairs: the same pairs, the same interval", bp.summarise_pairs(spread) == text)

# a set run as the script runs it: the order reverses every repeat
abba = [rec("spawn", 100), rec("spawn-pgl-lag", 96, lag=2), rec("serial", 50),
        rec("serial", 51), rec("spawn-pgl-lag", 99, lag=2), rec("spawn", 100),
        rec("spawn", 200), rec("spawn-pgl-lag", 190, lag=2)]
ret, out = pairs_from(abba)
case("pairs_from: a set's pairs in the order they ran, the serial runs aside",
     ret is None and "a.ini (60000 samples), spawn-pgl-lag, global_lag=2 over spawn: 3 pairs, "
     "median 0.960x" in out and "the pairs 0.95-0.99" in out, (ret, out))
other = [rec("spawn", 10, job="b.ini"), rec("spawn-pgl-lag", 12, job="b.ini", lag=1)]
ret, out = pairs_from(abba, other + abba)
case("pairs_from: sets of two files pooled per job, each job apart",
     ret is None and "a.ini (60000 samples), spawn-pgl-lag, global_lag=2 over spawn: 6 pairs"
     in out and "b.ini (60000 samples), spawn-pgl-lag, global_lag=1 over spawn: 1 pair, "
     "median 1.200x" in out, (ret, out))
ret, out = pairs_from(abba + [rec("spawn", 100, train=12800), rec("spawn-pgl", 80, train=12800)])
case("pairs_from: runs of another --train apart, pgl at once besides",
     ret is None and "a.ini (12800 samples), spawn-pgl over spawn: 1 pair, median 0.800x" in out,
     (ret, out))
ret, _ = pairs_from(abba + [rec("spawn", 100)])
case("pairs_from: refuses more local runs than pgl runs, with both counts",
     ret and "3 spawn-pgl-lag runs against 4 spawn runs" in ret, ret)
ret, _ = pairs_from(abba, [rec("spawn", 100), rec("spawn-pgl-lag", 95, lag=1)])
case("pairs_from: refuses pgl runs of two lags in one job",
     ret and "at global_lag [1, 2]" in ret, ret)
ret, _ = pairs_from(abba + ['{"job": "a.ini"}'])
case("pairs_from: names the line that is no record of the script",
     ret and ret.endswith(": line 9 is not a record of this script"), ret)
ret, _ = pairs_from([rec("spawn", 0)] + abba)
case("pairs_from: names the record of no samples/s",
     ret and ret.endswith(": line 1 is not a record of this script"), ret)
ret, _ = pairs_from(abba + [json.dumps({**rec("spawn", 100), "overrides": [["a"]]})])
case("pairs_from: names the record whose overrides are not strings",
     ret and ret.endswith(": line 9 is not a record of this script"), ret)
ret, _ = pairs_from(abba[:1] + ["not json"])
case("pairs_from: names the file that is not JSON lines", ret and ".jsonl: " in ret, ret)
ret, out = pairs_from([rec("spawn", 100), rec("serial", 50)])
case("pairs_from: says so when there are no pairs",
     ret == "no pairs of spawn and spawn-pgl or spawn-pgl-lag runs" and out == "", (ret, out))

finish()
