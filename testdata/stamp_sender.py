#!/usr/bin/env python3
"""An independent STAMP Session-Sender (RFC 8762 section 4.2, unauthenticated),
written from the RFC's packet diagrams for the interop tests; it shares no
code with udp-echo. Sends COUNT test packets of SIZE bytes (the base packet,
a Location TLV when SIZE leaves room, then Extra Padding), checks each reply
against RFC 8762 section 4.3.1 and prints one JSON object per reply.

Usage: stamp_sender.py HOST PORT COUNT SIZE SSID"""

import json
import socket
import struct
import sys
import time

NTP_OFFSET = 2208988800


def ntp(t):
    seconds = int(t)
    return struct.pack("!II", seconds + NTP_OFFSET, int((t - seconds) * 2**32) & 0xFFFFFFFF)


def from_ntp(raw):
    seconds, fraction = struct.unpack("!II", raw)
    return seconds - NTP_OFFSET + fraction / 2**32


def tlvs_of(data):
    found, i = [], 0
    while i + 4 <= len(data):
        flags, tlv_type, length = data[i], data[i + 1], struct.unpack_from("!H", data, i + 2)[0]
        found.append({"flags": flags, "type": tlv_type, "length": length, "value": data[i + 4:i + 4 + length].hex()})
        i += 4 + length
    return found


def main():
    host, port, count, size, ssid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(2)
    location = struct.pack("!BBH", 0x80, 2, 44) + bytes(4) + \
        struct.pack("!BBH", 0x80, 7, 16) + bytes(16) + struct.pack("!BBH", 0x80, 4, 16) + bytes(16)
    failures = 0
    for seq in range(count):
        t1 = time.time()
        packet = struct.pack("!I", seq) + ntp(t1) + struct.pack("!HH", 0x0001, ssid) + bytes(28)
        if size - 44 >= len(location) + 4:
            packet += location
        if size - len(packet) >= 4:
            packet += struct.pack("!BBH", 0x80, 1, size - len(packet) - 4) + bytes(size - len(packet) - 4)
        packet += bytes(size - len(packet))
        sock.sendto(packet, (host, port))
        try:
            reply, _ = sock.recvfrom(65535)
        except socket.timeout:
            print(json.dumps({"seq": seq, "lost": True}), flush=True)
            failures += 1
            continue
        t4 = time.time()
        problems = []
        if len(reply) != len(packet):
            problems.append("length %d != %d" % (len(reply), len(packet)))
        if reply[24:28] != packet[0:4]:
            problems.append("sender sequence number not copied")
        if reply[28:36] != packet[4:12]:
            problems.append("sender timestamp not copied")
        if reply[36:38] != packet[12:14]:
            problems.append("sender error estimate not copied")
        if reply[14:16] != packet[14:16]:
            problems.append("SSID not copied")
        if reply[38:40] != bytes(2) or reply[41:44] != bytes(3):
            problems.append("MBZ not zero")
        err, = struct.unpack_from("!H", reply, 12)
        if err & 0xFF == 0:
            problems.append("error estimate multiplier is 0")
        t2, t3 = from_ntp(reply[16:24]), from_ntp(reply[4:12])
        failures += 1 if problems else 0
        print(json.dumps({
            "seq": seq,
            "reflector_seq": struct.unpack_from("!I", reply, 0)[0],
            "ttl": reply[40],
            "z": (err >> 14) & 1,
            "rtt_ms": (t4 - t1) * 1000,
            "reflector_ms": (t3 - t2) * 1000,
            "forward_ms": (t2 - t1) * 1000,
            "tlvs": tlvs_of(reply[44:]),
            "problems": problems,
        }), flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
