#!/usr/bin/env python3
"""Asks a running Prometheus, over its HTTP query API, what it scraped
from silad's /metrics page; exits 0 when the check holds, else 1 with why.

usage: promcheck.py PROMETHEUS_URL CHECK [ARG...]

  rising SECONDS    within SECONDS, sila_steps_done_total has two scrapes
                    or more in the last minute (raw samples, query
                    sila_steps_done_total[1m]) and the last is above the
                    first; prints them
  up                the target's up series is 1 (query up{job="sila"})
  dashboard FILE PAGE
                    every expression of every panel of the Grafana
                    dashboard FILE names only metrics silad exports (those
                    of PAGE, a copy of its /metrics page), and Prometheus
                    answers it with at least one series; the dashboard's
                    variables are replaced first ($job: any job,
                    $__rate_interval: 30s)
"""
import json
import re
import sys
import time
import urllib.parse
import urllib.request


def query(base, expr):
    """The result of an instant query, or SystemExit naming the error."""
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        doc = json.load(r)
    if doc.get("status") != "success":
        sys.exit(f"{expr}: {doc.get('errorType')}: {doc.get('error')}")
    return doc["data"]["result"]


def samples(base):
    """The raw samples of sila_steps_done_total in the last minute, one
    series expected: [(time, value)]."""
    result = query(base, "sila_steps_done_total[1m]")
    if len(result) > 1:
        sys.exit(f"{len(result)} series of sila_steps_done_total: {result}")
    return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []


def check_rising(base, seconds):
    end = time.monotonic() + float(seconds)
    got = []
    while time.monotonic() < end:
        try:
            got = samples(base)
        except OSError:  # not listening yet
            got = []
        if len(got) >= 2 and got[-1][1] > got[0][1]:
            print("sila_steps_done_total scraped: " +
                  ", ".join(f"{v:.0f} at {t - got[0][0]:+.1f} s" for t, v in got))
            return
        time.sleep(0.5)
    sys.exit(f"no two scrapes of sila_steps_done_total rising within {seconds} s: {got}")


def check_up(base):
    result = query(base, 'up{job="sila"}')
    values = [r["value"][1] for r in result]
    if values != ["1"]:
        sys.exit(f"up{{job=\"sila\"}}: {result}")
    print('up{job="sila"} 1')


def panels(doc):
    """Every panel, those in collapsed rows included."""
    for p in doc.get("panels", []):
        yield p
        yield from p.get("panels", [])


def check_dashboard(base, path, page):
    doc = json.load(open(path))
    exported = set(re.findall(r"^(sila_[a-z_]+)[{ ]", open(page).read(), re.M))
    if not exported:
        sys.exit(f"{page}: no sila_ series")
    checked, failed = 0, []
    for p in panels(doc):
        for t in p.get("targets", []):
            expr = t.get("expr")
            if not expr:
                continue
            names = set(re.findall(r"\bsila_[a-z_]+", expr))
            if not names or names - exported:
                failed.append(f"panel {p.get('title')!r}: {expr}: names "
                              f"{sorted(names - exported) or 'no sila_ metric'}, not exported")
                continue
            q = expr.replace("$__rate_interval", "30s").replace("$job", ".+")
            if not query(base, q):
                failed.append(f"panel {p.get('title')!r}: {q}: no series")
            checked += 1
    if failed or not checked:
        sys.exit("\n".join(failed) or f"{path}: no panel has an expression")
    print(f"{checked} expressions of {path} answered, each naming exported metrics only")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    base, check, args = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3:]
    checks = {"rising": check_rising, "up": check_up, "dashboard": check_dashboard}
    if check not in checks:
        sys.exit(__doc__)
    checks[check](base, *args)


if __name__ == "__main__":
    main()
