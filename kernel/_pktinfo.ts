/**
 * Each datagram's destination, read from the `IP_PKTINFO` / `IPV6_PKTINFO`
 * control message the kernel attaches once `_bind.ts` has asked for it, and
 * the control message a reply carries so it leaves from that address: a
 * socket bound to `0.0.0.0` or `::` otherwise answers a request sent to
 * 127.0.0.2 from 127.0.0.1, and the client discards it as foreign.
 *
 * The rule relied on to refuse broadcasts (Linux, checked in a network
 * namespace with a veth pair: a datagram to 10.1.0.255 arrives with
 * `ipi_addr` 10.1.0.255 and `ipi_spec_dst` 10.1.0.1): `in_pktinfo.ipi_addr`
 * is the destination in the IP header and `ipi_spec_dst` is the local
 * address the kernel would answer from. `fib_compute_spec_dst()` returns
 * the header's destination only for a route that is local and neither
 * broadcast nor multicast, so the two are equal exactly when the datagram
 * was sent to one of this host's unicast addresses. IPv6 has no broadcast:
 * multicast (ff00::/8) is refused by its prefix. An IPv4 datagram on an
 * IPv6 socket brings both messages (`IPV6_PKTINFO` with the mapped header
 * destination, `IP_PKTINFO` as above), so the same rule holds there.
 *
 * With `receiveTimes` (`_bind.ts`, the STAMP Session-Reflector) the same
 * walk also reads the kernel's receive time (`SO_TIMESTAMPNS`, CLOCK_REALTIME)
 * and the TTL or hop limit the datagram arrived with (`IP_RECVTTL` gives
 * `IP_TTL`, `IPV6_RECVHOPLIMIT` gives `IPV6_HOPLIMIT`; an IPv4 datagram on
 * an IPv6 socket brings `IP_TTL`).
 *
 * Everything works on views of the engine's one buffer and allocates
 * nothing. Layouts are those of LP64 Linux: `struct cmsghdr` is 16 bytes
 * (`cmsg_len` a `size_t`), `struct in_pktinfo` 12, `struct in6_pktinfo` 20.
 *
 * @module
 */

import { SCM_TIMESTAMPNS, SOL_SOCKET } from "./_libc.ts";
import { CMSG_HEADER } from "./_structs.ts";

export const SOL_IP = 0;
export const IP_PKTINFO = 8;
export const SOL_IPV6 = 41;
export const IPV6_RECVPKTINFO = 49;
export const IPV6_PKTINFO = 50;
export const IP_RECVTTL = 12;
export const IP_TTL = 2;
export const IPV6_RECVHOPLIMIT = 51;
export const IPV6_HOPLIMIT = 52;
export const IP_TOS = 1;
export const IP_RECVTOS = 13;
export const IPV6_RECVTCLASS = 66;
export const IPV6_TCLASS = 67;

/** Where {@linkcode readPktinfo} puts what it read in its `info` array. */
export const INFO_IFINDEX = 0;
/** The TTL or hop limit; 0 when the kernel did not say. */
export const INFO_TTL = 1;
/** Kernel receive time, whole seconds since the epoch; 0 when not given. */
export const INFO_SECONDS = 2;
/** Kernel receive time, nanoseconds within the second. */
export const INFO_NANOSECONDS = 3;
/** The TOS or traffic class byte plus 1; 0 when the kernel did not say. */
export const INFO_TOS = 4;
/** The length of the `info` array. */
export const INFO_SIZE = 5;

/**
 * Bytes of control data each receive slot has room for: every message of
 * an IPv4 datagram on an IPv6 socket (pktinfo 40 + 32, timestamp 32, TTL
 * 24, TOS 24) and spare. A message that does not fit is cut off (`MSG_CTRUNC`) and
 * then simply not found.
 */
export const RECEIVE_CONTROL_SIZE = 192;

/**
 * Bytes of control data a reply carries: `CMSG_SPACE` of one pktinfo, then
 * room for a TOS or traffic class ({@linkcode addReplyTos}).
 */
export const SEND_CONTROL_SIZE = 64;

/** No pktinfo came with the datagram: reply as the socket would by itself. */
export const PKTINFO_NONE = 0;
/** Sent to a unicast address of this host: the send area now names it. */
export const PKTINFO_UNICAST = 1;
/** Sent to a broadcast or multicast address: never to be answered. */
export const PKTINFO_NOT_UNICAST = 2;

/** One of {@linkcode PKTINFO_NONE}, {@linkcode PKTINFO_UNICAST}, {@linkcode PKTINFO_NOT_UNICAST}. */
export type PktinfoKind = 0 | 1 | 2;

/** Copies what {@linkcode readPktinfo} read into a datagram's facts (`_hooks.ts`). */
export function copyInfo(
  info: Uint32Array,
  facts: {
    interfaceIndex: number;
    ttl: number;
    receivedAtS: number;
    receivedAtNs: number;
    tos: number;
  },
): void {
  facts.interfaceIndex = info[INFO_IFINDEX]!;
  facts.ttl = info[INFO_TTL]!;
  facts.receivedAtS = info[INFO_SECONDS]!;
  facts.receivedAtNs = info[INFO_NANOSECONDS]!;
  facts.tos = info[INFO_TOS]! - 1;
}

/**
 * Appends to a reply's control message (pktinfo, `length` bytes at byte
 * `send`) a TOS (`IP_TOS`, for IPv4 and an IPv4 datagram on an IPv6
 * socket) or traffic class (`IPV6_TCLASS`) of `tos`, the Class of Service
 * a STAMP reflector answers with; returns the new length.
 */
export function addReplyTos(
  u32: Uint32Array,
  send: number,
  length: number,
  tos: number,
  ipv4: boolean,
): number {
  const w = (send + length) >> 2;
  u32[w] = CMSG_HEADER + 4; // cmsg_len
  u32[w + 1] = 0;
  u32[w + 2] = ipv4 ? SOL_IP : SOL_IPV6;
  u32[w + 3] = ipv4 ? IP_TOS : IPV6_TCLASS;
  u32[w + 4] = tos;
  return length + 24;
}

/**
 * Writes the fixed part of a reply's control message at byte `offset`
 * (8-aligned) and returns its length for `msg_controllen`: `IP_PKTINFO`
 * with `ipi_ifindex` 0 (the routing table picks the interface, as for any
 * reply) on an IPv4 socket, `IPV6_PKTINFO` on an IPv6 one.
 */
export function initSendControl(
  u32: Uint32Array,
  offset: number,
  ipv6: boolean,
): number {
  const w = offset >> 2;
  u32.fill(0, w, w + (SEND_CONTROL_SIZE >> 2));
  u32[w] = CMSG_HEADER + (ipv6 ? 20 : 12); // cmsg_len
  u32[w + 2] = ipv6 ? SOL_IPV6 : SOL_IP;
  u32[w + 3] = ipv6 ? IPV6_PKTINFO : IP_PKTINFO;
  return ipv6 ? 40 : 32;
}

/**
 * Reads the control messages of one received datagram (`length` bytes at
 * byte `control`) and writes its destination into the reply's control
 * message at byte `send` (prepared by {@linkcode initSendControl}): the
 * local address for a unicast datagram, the header's destination for one
 * that is not. `info` gets the interface index it arrived on, its TTL and
 * its kernel receive time (see {@linkcode INFO_IFINDEX} and the others; 0
 * when unknown). Returns what the datagram was sent to.
 */
export function readPktinfo(
  u8: Uint8Array,
  u32: Uint32Array,
  control: number,
  length: number,
  send: number,
  ipv6: boolean,
  info: Uint32Array,
): PktinfoKind {
  const end = control + length;
  let v4 = -1;
  let v6 = -1;
  info[INFO_TTL] = 0;
  info[INFO_TOS] = 0;
  info[INFO_SECONDS] = 0;
  info[INFO_NANOSECONDS] = 0;
  for (let at = control; at + CMSG_HEADER <= end;) {
    const w = at >> 2;
    const size = u32[w]!;
    if (size < CMSG_HEADER || at + size > end) break;
    const level = u32[w + 2]!;
    const type = u32[w + 3]!;
    if (level === SOL_IP && type === IP_PKTINFO) v4 = at + CMSG_HEADER;
    else if (level === SOL_IPV6 && type === IPV6_PKTINFO) {
      v6 = at + CMSG_HEADER;
    } else if (level === SOL_SOCKET && type === SCM_TIMESTAMPNS) {
      // struct timespec: a 64-bit tv_sec (its low half suffices until 2106).
      info[INFO_SECONDS] = u32[w + 4]!;
      info[INFO_NANOSECONDS] = u32[w + 6]!;
    } else if (
      level === SOL_IP && type === IP_TTL ||
      level === SOL_IPV6 && type === IPV6_HOPLIMIT
    ) info[INFO_TTL] = u32[w + 4]!;
    else if (
      level === SOL_IP && type === IP_TOS ||
      level === SOL_IPV6 && type === IPV6_TCLASS
    ) info[INFO_TOS] = u8[at + CMSG_HEADER]! + 1;
    at += (size + 7) & ~7;
  }
  const s = send >> 2;
  if (!ipv6) {
    info[0] = 0;
    if (v4 < 0) return PKTINFO_NONE;
    const p = v4 >> 2;
    info[0] = u32[p]!;
    const local = u32[p + 1]!;
    const header = u32[p + 2]!;
    // 224/4 multicast, 240/4 reserved and 255.255.255.255.
    if (header !== local || u8[v4 + 8]! >= 224) {
      u32[s + 5] = header;
      return PKTINFO_NOT_UNICAST;
    }
    u32[s + 5] = local;
    return PKTINFO_UNICAST;
  }
  info[0] = 0;
  if (v6 < 0) return PKTINFO_NONE;
  const p = v6 >> 2;
  const ifindex = u32[p + 4]!;
  info[0] = ifindex;
  u32[s + 4] = u32[p]!;
  u32[s + 5] = u32[p + 1]!;
  u32[s + 6] = u32[p + 2]!;
  u32[s + 7] = u32[p + 3]!;
  const first = u8[v6]!;
  if (first === 0xff) return PKTINFO_NOT_UNICAST;
  if (u32[p]! === 0 && u32[p + 1]! === 0 && u32[p + 2]! === 0xffff0000) {
    // An IPv4 datagram: judge and answer it by its IP_PKTINFO.
    u32[s + 8] = 0;
    if (v4 < 0) {
      return u8[v6 + 12]! >= 224 ? PKTINFO_NOT_UNICAST : PKTINFO_UNICAST;
    }
    const q = v4 >> 2;
    if (u32[q + 2]! !== u32[q + 1]! || u8[v4 + 8]! >= 224) {
      return PKTINFO_NOT_UNICAST;
    }
    u32[s + 7] = u32[q + 1]!;
    return PKTINFO_UNICAST;
  }
  // A link-local address means nothing without its interface; any other
  // reply is routed by the table, as on IPv4.
  u32[s + 8] = first === 0xfe && (u8[v6 + 1]! & 0xc0) === 0x80 ? ifindex : 0;
  return PKTINFO_UNICAST;
}
