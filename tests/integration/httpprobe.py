#!/usr/bin/env python3
"""Sends good and bad HTTP to silad's /metrics page (silad --metrics) and
says what came back, one line per case: "CASE ok: ..." or "CASE FAIL: ...".

usage: httpprobe.py HOST PORT CASE...

Cases (metrics_http.h has the limits they meet):
  get        GET /metrics: 200, Prometheus' content type, the run's counters
  head       HEAD /metrics: 200 and no body
  post       POST /metrics with a body: 405 with Allow: GET, HEAD
  path       GET /other: 404
  garbage    4 KiB of random bytes: 400, or the connection closed unanswered
  oversized  a 64 KiB header line, and a 64 KiB path: 431 and 414 (or closed)
  hold       16 connections sending half a request line and no more (as many
             as silad takes): silad closes each after its idle timeout (5 s),
             and a GET queued behind them is then answered 200
  drip       a client sending its request a byte every 0.15 s (each byte keeps
             the connection from its idle timeout): answered 200
  flood      240 GETs from 24 threads, as fast as answered: each is 200 or
             503 with Retry-After (over --rpc-rate), at least one of each
             when EXPECT_BUSY=1 is in the environment
"""
import os
import random
import socket
import sys
import threading
import time

HOST, PORT = "127.0.0.1", 0


def connect(timeout=10.0):
    s = socket.create_connection((HOST, PORT), timeout=timeout)
    s.settimeout(timeout)
    return s


def read_all(s):
    """Everything the server sends until it closes (or the timeout)."""
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def exchange(raw, timeout=10.0):
    """(status, headers, body) of the answer to raw bytes; status None when
    the connection closed without an answer."""
    s = connect(timeout)
    try:
        s.sendall(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = read_all(s)
    s.close()
    return parse(data)


def parse(data):
    if not data.startswith(b"HTTP/1."):
        return None, {}, data
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


def request(method, path, extra=b""):
    return (f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n".encode() + extra + b"\r\n")


def case_get():
    st, h, body = exchange(request("GET", "/metrics"))
    ctype = h.get("content-type", "")
    if st != 200 or not ctype.startswith("text/plain; version=0.0.4"):
        return False, f"status {st}, content type {ctype!r}"
    if b"\nsila_steps_done_total{" not in body or b"# TYPE sila_module_loss gauge" not in body:
        return False, f"no sila_steps_done_total or sila_module_loss in {body[:200]!r}"
    return True, f"200, {ctype}, {len(body)} bytes"


def case_head():
    st, h, body = exchange(request("HEAD", "/metrics"))
    if st != 200 or body:
        return False, f"status {st}, {len(body)} bytes of body"
    return True, f"200, no body (Content-Length {h.get('content-length')})"


def case_post():
    st, h, _ = exchange(request("POST", "/metrics",
                                b"Content-Length: 1000000\r\n") + b"x" * 4096)
    if st != 405 or h.get("allow") != "GET, HEAD":
        return False, f"status {st}, Allow {h.get('allow')!r}"
    return True, "405, Allow: GET, HEAD"


def case_path():
    st, _, _ = exchange(request("GET", "/metrics/../secret"))
    st2, _, _ = exchange(request("GET", "/"))
    if st != 404 or st2 != 404:
        return False, f"status {st} and {st2}"
    return True, "404 for /metrics/../secret and /"


def case_garbage():
    rng = random.Random(23)
    got = []
    for _ in range(20):
        raw = bytes(rng.randrange(256) for _ in range(4096)) + b"\r\n\r\n"
        st, _, _ = exchange(raw)
        got.append(st)
    if any(st not in (400, None) for st in got):
        return False, f"statuses {got}"
    return True, f"20 of 4 KiB: {got.count(400)} answered 400, {got.count(None)} closed"


def case_oversized():
    st, _, _ = exchange(request("GET", "/metrics", b"X-Big: " + b"a" * 65536 + b"\r\n"))
    st2, _, _ = exchange(request("GET", "/metrics" + "a" * 65536))
    if st not in (431, 413, None) or st2 not in (414, 431, None):
        return False, f"header: {st}, path: {st2}"
    return True, f"a 64 KiB header: {st}, a 64 KiB path: {st2}"


def case_hold():
    holders = []
    for _ in range(16):
        s = connect(30)
        s.sendall(b"GET /metr")
        holders.append(s)
    start = time.monotonic()
    closed = []

    def watch(s):
        read_all(s)
        closed.append(time.monotonic() - start)

    threads = [threading.Thread(target=watch, args=(s,)) for s in holders]
    for t in threads:
        t.start()
    time.sleep(1)
    st, _, _ = exchange(request("GET", "/metrics"), timeout=30)
    answered = time.monotonic() - start
    for t in threads:
        t.join(30)
    for s in holders:
        s.close()
    if len(closed) != 16 or max(closed) > 10:
        return False, f"{len(closed)} of 16 closed, after {sorted(closed)} s"
    if st != 200:
        return False, f"the GET behind them: status {st} after {answered:.1f} s"
    return True, (f"16 closed by silad after {min(closed):.1f}-{max(closed):.1f} s; "
                  f"a GET behind them answered 200 after {answered:.1f} s")


def case_drip():
    s = connect(30)
    raw = request("GET", "/metrics")
    start = time.monotonic()
    for i in range(len(raw)):
        s.sendall(raw[i:i + 1])
        time.sleep(0.15)
    st, _, _ = parse(read_all(s))
    s.close()
    took = time.monotonic() - start
    if st != 200:
        return False, f"{len(raw)} bytes 0.15 s apart, then status {st}"
    return True, f"{len(raw)} bytes 0.15 s apart: answered 200 after {took:.1f} s"


def case_flood():
    counts = {}
    bad = []
    lock = threading.Lock()

    def client(n):
        for _ in range(n):
            try:
                st, h, _ = exchange(request("GET", "/metrics"), timeout=20)
            except OSError as e:
                st, h = type(e).__name__, {}
            with lock:
                counts[st] = counts.get(st, 0) + 1
                if st == 503 and not h.get("retry-after", "").isdigit():
                    bad.append("503 without Retry-After")
                elif st not in (200, 503):
                    bad.append(str(st))

    threads = [threading.Thread(target=client, args=(10,)) for _ in range(24)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    detail = f"{sum(counts.values())} GETs in {took:.1f} s: {counts}"
    if bad:
        return False, f"{detail}; unexpected: {bad[:5]}"
    if os.environ.get("EXPECT_BUSY") == "1" and not (counts.get(200) and counts.get(503)):
        return False, f"{detail}; expected both 200 and 503"
    return True, detail


CASES = {name[5:]: f for name, f in globals().items() if name.startswith("case_")}


def main():
    global HOST, PORT
    if len(sys.argv) < 4 or any(c not in CASES for c in sys.argv[3:]):
        sys.exit(__doc__)
    HOST, PORT = sys.argv[1], int(sys.argv[2])
    failed = 0
    for name in sys.argv[3:]:
        try:
            good, detail = CASES[name]()
        except Exception as e:  # a refused connect, a timeout: the case fails
            good, detail = False, f"{type(e).__name__}: {e}"
        print(f"{name} {'ok' if good else 'FAIL'}: {detail}", flush=True)
        failed += not good
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
