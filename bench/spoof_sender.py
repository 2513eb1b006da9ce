#!/usr/bin/env python3
"""Sends UDP datagrams with forged, random sources, for bench/soak.ts.

Usage: spoof_sender.py DST4 DST6 PORT RATE SECONDS

Each datagram comes from a new random source: an IPv4 address in
198.18.0.0/15 (the benchmarking range) or an IPv6 address in a random /64
of fd98::/16, alternately, with a random source port from 1 to 65535, so
the server's rate table keeps meeting sources it has never seen, and the
low and service ports among them are dropped by rule. It runs inside the
private network namespace soak.ts made, where those ranges lead to a
namespace that discards what the server echoes to them.

RATE datagrams a second in ticks of 10 ms, for at most SECONDS or until
SIGTERM or SIGINT. Prints `sent N` once a second and at the end. Needs
raw sockets (root, CAP_NET_RAW): exits 3 without them.
"""

import random
import signal
import socket
import struct
import sys
import time

TICK_S = 0.01
PAYLOAD = b"soak spoofed source"


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp(sport, dport):
    return struct.pack("!HHHH", sport, dport, 8 + len(PAYLOAD), 0) + PAYLOAD


def packet4(dst, port):
    src = bytes([198, 18 + random.getrandbits(1)]) + random.randbytes(2)
    body = udp(random.randint(1, 65535), port)
    # A zero UDP checksum is allowed over IPv4: none computed.
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, 17, 0, src, dst
    )
    return header + body


def packet6(dst, port):
    src = bytes([0xFD, 0x98]) + random.randbytes(14)
    body = udp(random.randint(1, 65535), port)
    pseudo = src + dst + struct.pack("!IxxxB", len(body), 17)
    sum6 = checksum(pseudo + body) or 0xFFFF
    body = body[:6] + struct.pack("!H", sum6) + body[8:]
    header = struct.pack("!IHBB", 6 << 28, len(body), 17, 64) + src + dst
    return header + body


def main(argv):
    dst4, dst6, port, rate, seconds = argv[1:6]
    port, rate, seconds = int(port), float(rate), float(seconds)
    try:
        raw4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        raw6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError:
        print("raw sockets need root (CAP_NET_RAW)", file=sys.stderr)
        return 3
    to4 = socket.inet_pton(socket.AF_INET, dst4)
    to6 = socket.inet_pton(socket.AF_INET6, dst6)
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    start = time.monotonic()
    end = start + seconds
    sent = errors = 0
    next_report = start + 1
    while not stopping and time.monotonic() < end:
        # After a stall, catch up by at most a tenth of a second's worth.
        due = min(int((time.monotonic() - start) * rate), sent + errors + int(rate / 10) + 1)
        while sent + errors < due and not stopping:
            try:
                if (sent + errors) % 2 == 0:
                    raw4.sendto(packet4(to4, port), (dst4, 0))
                else:
                    raw6.sendto(packet6(to6, port), (dst6, 0, 0, 0))
                sent += 1
            except OSError:
                errors += 1
        if time.monotonic() >= next_report:
            print(f"sent {sent} errors {errors}", flush=True)
            next_report += 1
        time.sleep(TICK_S)
    print(f"sent {sent} errors {errors}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
