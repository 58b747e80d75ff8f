#!/usr/bin/env python3
"""Signs a message as a keyed sila link would, for the integration tests.

    signmsg.py KEYFILE CHANNEL SIDE <PAYLOAD >MESSAGE
    signmsg.py --hello FIRST LAST KEYFILE >MESSAGE

The first form appends to the payload read from stdin the 64-byte trailer
of docs/protocol.md ("Authentication"): magic "SLA1", the key id, a random
session, sequence 1, the clock in unix ms, and the MAC, HMAC-SHA-512
truncated to 32 bytes (libsodium's crypto_auth) of the label
"sila/1/CHANNEL/SIDE" and a zero byte, the payload, the trailer's first 32
bytes and 16 zero bytes (no request answered; sign() also signs a reply,
with the session and sequence of its request there). SIDE is the sender's:
"bind" (it listens) or "connect". The second form signs a worker's Hello
for modules FIRST..LAST as a control frame on the rendezvous, as a worker
sends it. Written from the documentation, independently of the C code.
"""
import hashlib
import hmac
import os
import re
import struct
import sys
import time


def load_key(path):
    line = open(path).read().strip()
    prefix = "sila-key-1 "
    if not line.startswith(prefix) or len(line) != len(prefix) + 64:
        sys.exit(f"{path}: not a sila key file")
    return bytes.fromhex(line[len(prefix):])


def sign(key, channel, side, payload, answered=bytes(16)):
    """payload and its trailer; answered: a request's session and sequence
    (its trailer's bytes 8..23), for a reply."""
    key_id = hashlib.blake2b(b"sila key id", digest_size=16, key=key).digest()[:4]
    session = os.urandom(8)
    head = b"SLA1" + key_id + session + struct.pack("<QQ", 1, int(time.time() * 1000))
    label = f"sila/1/{channel}/{side}".encode() + b"\0"
    mac = hmac.new(key, label + payload + head + answered, hashlib.sha512).digest()[:32]
    return payload + head + mac


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, value):
    if isinstance(value, bytes):
        return varint(num << 3 | 2) + varint(len(value)) + value
    return varint(num << 3) + varint(value)


with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "common", "wire",
                       "frame.h")) as _h:
    WIRE_VERSION = int(re.search(r"#define SILA_WIRE_VERSION (\d+)u", _h.read()).group(1))


def control_frame(msg):
    """A control frame of a serialized sila.Control."""
    return b"SILC" + struct.pack("<I", len(msg)) + msg + bytes(-len(msg) % 4)


def hello_frame(first, last):
    hello = (field(1, WIRE_VERSION) + field(2, first) + field(3, last) + field(5, b"signmsg.py") +
             field(6, os.getpid()) + field(7, 1 << 30))
    return control_frame(field(1, hello))  # sila.Control, its hello


def main():
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "--hello":
        payload = hello_frame(int(args[1]), int(args[2]))
        out = sign(load_key(args[3]), "rendezvous", "connect", payload)
    elif len(args) == 3 and args[2] in ("bind", "connect"):
        out = sign(load_key(args[0]), args[1], args[2], sys.stdin.buffer.read())
    else:
        sys.exit(__doc__)
    sys.stdout.buffer.write(out)


if __name__ == "__main__":
    main()
