#!/usr/bin/env python3
"""What crosses the loopback interface, for the integration tests.

    capture.py record OUT PORT...
    capture.py compare CLEAR SEALED

`record` writes to OUT the payload of every TCP segment on lo to or from
one of the PORTs (a packet socket, as tcpdump opens one: root only), in
the order they pass, until it is sent SIGTERM; it prints "recording" once
it listens, and exits 2 saying why when it cannot. `compare` takes two
such captures of the same job's run, one with its messages only
authenticated (CLEAR) and one sealed (--encrypt), and checks that the
first holds data frames (magic "SILF" and a header length below 256) and
control frames ("SILC" and a length below 4 MiB), that the second is as
long but holds neither (which random bytes would hold by chance about once
in 2^40 bytes, where 4 bytes of magic alone would be once in 2^32), and
that none of 32 bytes
taken from inside each data frame of the first (activations, gradients,
labels) appears in the second. Written from docs/protocol.md's layout,
independently of the C code.
"""
import re
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # lo shows every packet twice: keep the incoming copy
SO_RCVBUFFORCE = 33  # Linux; not in the socket module
DATA = re.compile(rb"SILF[\x00-\xff]\x00\x00\x00", re.DOTALL)
CONTROL = re.compile(rb"SILC[\x00-\xff]{2}[\x00-\x3f]\x00", re.DOTALL)


def record(out_path, ports):
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind(("lo", 0))
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    except (OSError, AttributeError) as e:
        print(f"cannot capture packets on lo: {e}")
        sys.exit(2)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    s.settimeout(0.2)
    print("recording", flush=True)
    with open(out_path, "wb") as out:
        while not stop:
            try:
                pkt, addr = s.recvfrom(1 << 17)
            except socket.timeout:
                continue
            except InterruptedError:
                continue
            if addr[2] == PACKET_OUTGOING or len(pkt) < 14 + 20:
                continue
            ip = pkt[14:]
            if ip[0] >> 4 != 4 or ip[9] != 6:  # IPv4, TCP
                continue
            ihl = (ip[0] & 15) * 4
            total = struct.unpack(">H", ip[2:4])[0]
            tcp = ip[ihl:total]
            if len(tcp) < 20:
                continue
            sport, dport = struct.unpack(">HH", tcp[:4])
            if sport in ports or dport in ports:
                out.write(tcp[(tcp[12] >> 4) * 4:])


def windows(clear):
    """32 bytes from inside each data frame of clear that is long enough,
    of at least 8 distinct values (zeros of a ReLU say little)."""
    starts = [m.start() for m in DATA.finditer(clear)] + [len(clear)]
    found = []
    for at, end in zip(starts, starts[1:]):
        w = clear[at + 2048:at + 2080]
        if at + 2080 <= end and len(set(w)) >= 8:
            found.append(w)
    return found


def compare(clear_path, sealed_path):
    clear, sealed = open(clear_path, "rb").read(), open(sealed_path, "rb").read()
    ws = windows(clear)
    shown = sum(1 for w in ws if w in sealed)
    count = lambda pattern, b: sum(1 for _ in pattern.finditer(b))
    frames = [count(p, b) for b in (clear, sealed) for p in (DATA, CONTROL)]
    print(f"clear: {len(clear)} bytes, {frames[0]} data and {frames[1]} control frames, "
          f"{len(ws)} windows of data frames; sealed: {len(sealed)} bytes, {frames[2]} data "
          f"and {frames[3]} control frames, {shown} of the windows")
    ok = (frames[0] > 0 and frames[1] > 0 and len(ws) >= 10 and len(sealed) >= len(clear) // 2
          and frames[2] == 0 and frames[3] == 0 and shown == 0)
    sys.exit(0 if ok else 1)


def main():
    a = sys.argv[1:]
    if len(a) >= 3 and a[0] == "record":
        record(a[1], {int(p) for p in a[2:]})
    elif len(a) == 3 and a[0] == "compare":
        compare(a[1], a[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
