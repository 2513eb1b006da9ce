#!/usr/bin/env python3
"""An independent STAMP Session-Reflector (RFC 8762 section 4.3, unauthenticated,
stateless), written from the RFC's packet diagrams for the interop tests; it
shares no code with udp-echo. RFC 8972 TLVs: Extra Padding (1) is returned
as is, Location (2) gets the ports and address sub-TLVs, Timestamp
Information (3) is filled, any other type comes back with the U flag.

Usage: stamp_reflector.py HOST  (binds port 0 and prints it, then serves
until killed)."""

import socket
import struct
import sys
import time

NTP_OFFSET = 2208988800


def ntp_now():
    now = time.time()
    seconds = int(now)
    return struct.pack("!II", seconds + NTP_OFFSET, int((now - seconds) * 2**32) & 0xFFFFFFFF)


def address_bytes(host):
    try:
        return 4, socket.inet_pton(socket.AF_INET, host) + bytes(12)
    except OSError:
        packed = socket.inet_pton(socket.AF_INET6, host.split("%")[0])
        if packed[:12] == bytes(10) + b"\xff\xff":
            return 4, packed[12:] + bytes(12)
        return 6, packed


def reflect_tlvs(tlvs, src, dst):
    out = bytearray(tlvs)
    i = 0
    while i + 4 <= len(out):
        tlv_type = out[i + 1]
        length = struct.unpack_from("!H", out, i + 2)[0]
        if i + 4 + length > len(out):
            out[i] = 0x40  # M: runs past the packet
            break
        value = i + 4
        out[i] = 0
        if tlv_type == 1:
            pass
        elif tlv_type == 2 and length >= 4:
            struct.pack_into("!HH", out, value, dst[1], src[1])
            j = value + 4
            while j + 4 <= value + length:
                sub_type = out[j + 1]
                sub_len = struct.unpack_from("!H", out, j + 2)[0]
                if sub_type in (4, 7) and sub_len == 16:
                    family, packed = address_bytes(dst[0] if sub_type == 4 else src[0])
                    out[j] = 0
                    out[j + 1] = sub_type + (1 if family == 4 else 2)
                    out[j + 4:j + 20] = packed
                else:
                    out[j] = 0x80
                j += 4 + sub_len
        elif tlv_type == 3 and length == 4:
            out[value:value + 4] = bytes([5, 2, 5, 2])
        else:
            out[i] = 0x80
        i += 4 + length
    return bytes(out)


def main():
    host = sys.argv[1]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    local = sock.getsockname()
    print(local[1], flush=True)
    while True:
        data, peer = sock.recvfrom(65535)
        t2 = ntp_now()
        if len(data) < 44:
            continue
        seq, = struct.unpack_from("!I", data, 0)
        sender_ts = data[4:12]
        sender_err = data[12:14]
        ssid = data[14:16]
        reply = (struct.pack("!I", seq) + bytes(8) + struct.pack("!H", 0x0001) + ssid + t2 +
                 struct.pack("!I", seq) + sender_ts + sender_err + bytes(2) + bytes([0]) + bytes(3))
        reply += reflect_tlvs(data[44:], peer[:2], local[:2])
        reply = reply[:4] + ntp_now() + reply[12:]
        sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
