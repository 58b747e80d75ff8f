#!/usr/bin/env python3
"""A coordinator from before sealed links, for the integration tests.

    oldcoord.py URL KEYFILE

Listens on URL as a keyed coordinator's rendezvous (a nanomsg REP socket,
through libnanomsg), answers the first request with a Welcome signed with
the key and bound to the request (docs/protocol.md, "Authentication") that
says nothing of sealing, as a silad that does not know --encrypt would,
and exits 0 (1 when nothing came within 60 s). The Welcome holds only the
wire version and a generation: a worker that takes it goes on to read the
job, and fails there. Prints "listening" once it listens.
"""
import ctypes
import ctypes.util
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from signmsg import WIRE_VERSION, control_frame, field, load_key, sign  # noqa: E402

AF_SP, NN_REP = 1, 3 * 16 + 1
NN_SOL_SOCKET, NN_RCVTIMEO = 0, 5


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    url, key = sys.argv[1], load_key(sys.argv[2])
    nn = ctypes.CDLL(ctypes.util.find_library("nanomsg") or "libnanomsg.so.5")
    s = nn.nn_socket(AF_SP, NN_REP)
    timeout = ctypes.c_int(60000)
    nn.nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, ctypes.byref(timeout), 4)
    if s < 0 or nn.nn_bind(s, url.encode()) < 0:
        sys.exit(f"oldcoord.py: cannot listen on {url}")
    print("listening", flush=True)
    buf = ctypes.create_string_buffer(1 << 16)
    n = nn.nn_recv(s, buf, len(buf), 0)
    if n < 64:
        sys.exit("oldcoord.py: no request")
    request = buf.raw[:n]
    welcome = field(1, WIRE_VERSION) + field(2, 1)  # version, generation
    reply = sign(key, "rendezvous", "bind", control_frame(field(2, welcome)),
                 answered=request[-64 + 8:-64 + 24])
    nn.nn_send(s, reply, len(reply), 0)
    time.sleep(1)  # nanomsg has no linger: let the reply leave
    nn.nn_close(s)


if __name__ == "__main__":
    main()
