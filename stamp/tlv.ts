/**
 * STAMP TLVs (RFC 8972 §4): one flags byte (U unrecognised, M malformed, I
 * integrity failed, then 5 reserved bits), a type byte and a 16-bit length
 * of the value, in network byte order. Extra Padding (type 1, §4.1),
 * Location (type 2, §4.2, with its sub-TLVs) and Timestamp Information
 * (type 3, §4.3) and Class of Service (type 4, §4.7) are understood, and
 * our experimental Delayed Reply (type 248); anything else is returned with
 * U set.
 * Nothing here throws on bytes from the wire: a TLV whose length runs past
 * the packet, or is wrong for its type, is marked M and the reflection goes
 * on.
 *
 * @example Read the TLVs after the base packet
 * ```ts
 * import { readTlvs, TLV_EXTRA_PADDING } from "./tlv.ts";
 * import { deepEqual } from "node:assert/strict";
 *
 * const area = new Uint8Array([0x80, 1, 0, 2, 0, 0]);
 * deepEqual(readTlvs(area, 0), [
 *   { flags: 0x80, type: TLV_EXTRA_PADDING, offset: 4, length: 2, malformed: false },
 * ]);
 * ```
 *
 * @module
 */

import { formatIp, parseAddress, WORDS } from "../net/address.ts";

/** U: the reflector did not recognise the TLV (sent set by the sender). */
export const FLAG_U = 0x80;
/** M: the reflector found the TLV malformed. */
export const FLAG_M = 0x40;
/** I: the TLV failed the integrity check. */
export const FLAG_I = 0x20;

/** Extra Padding TLV (RFC 8972 §4.1). */
export const TLV_EXTRA_PADDING = 1;
/** Location TLV (RFC 8972 §4.2). */
export const TLV_LOCATION = 2;
/** Timestamp Information TLV (RFC 8972 §4.3). */
export const TLV_TIMESTAMP_INFO = 3;

/** Class of Service TLV (RFC 8972 §4.7). */
export const TLV_CLASS_OF_SERVICE = 4;
/**
 * Delayed Reply TLV, ours, from RFC 8972's Experimental Use range (240 to
 * 251): the sender asks for the reply after an idle delay (`delayed.ts`,
 * docs/stamp.md).
 */
export const TLV_DELAYED_REPLY = 248;
/** The value length of the Delayed Reply TLV: the delay, then the ceiling, in ms. */
export const DELAYED_REPLY_LENGTH = 8;

/** Location sub-TLV types (RFC 8972 §4.2.1). */
export const SUB = {
  sourceMac: 1,
  sourceEui48: 2,
  sourceEui64: 3,
  destinationIp: 4,
  destinationIpv4: 5,
  destinationIpv6: 6,
  sourceIp: 7,
  sourceIpv4: 8,
  sourceIpv6: 9,
} as const;

/** The value length of the address sub-TLVs (types 4 to 9). */
const ADDRESS_SUB_LENGTH = 16;
/** The value length of the Timestamp Information TLV. */
const TIMESTAMP_INFO_LENGTH = 4;

/** The value length of the Class of Service TLV. */
const CLASS_OF_SERVICE_LENGTH = 4;

/** Synchronisation sources of the Timestamp Information TLV (RFC 8972 §4.3). */
export const SYNC_SOURCE = {
  ntp: 1,
  ptp: 2,
  ssuBits: 3,
  gnss: 4,
  localFreeRunning: 5,
} as const;

/** Timestamping methods of the Timestamp Information TLV (RFC 8972 §4.3). */
export const TIMESTAMP_METHOD = {
  hardware: 1,
  softwareLocal: 2,
  controlPlane: 3,
} as const;

/** One TLV as found: its header and where its value lies. */
export interface Tlv {
  /** The flags byte. */
  flags: number;
  /** The type byte. */
  type: number;
  /** Offset of the value in the bytes read. */
  offset: number;
  /** The length field: bytes of value. */
  length: number;
  /** Whether the length runs past the end (then only this header is read). */
  malformed: boolean;
}

/**
 * The TLVs of `bytes` from `start` to the end. A header whose length runs
 * past the end ends the list, marked `malformed`; so do 1 to 3 bytes left
 * over (their flags and type are what there is, length 0).
 */
export function readTlvs(bytes: Uint8Array, start: number): Tlv[] {
  const found: Tlv[] = [];
  let at = start;
  while (at < bytes.length) {
    const flags = bytes[at]!;
    const type = at + 1 < bytes.length ? bytes[at + 1]! : 0;
    if (at + 4 > bytes.length) {
      found.push({ flags, type, offset: at + 4, length: 0, malformed: true });
      break;
    }
    const length = (bytes[at + 2]! << 8) | bytes[at + 3]!;
    const malformed = at + 4 + length > bytes.length;
    found.push({ flags, type, offset: at + 4, length, malformed });
    if (malformed) break;
    at += 4 + length;
  }
  return found;
}

/**
 * Writes a TLV header at `offset`: flags, type and length. Returns the
 * offset of its value.
 */
export function writeTlvHeader(
  target: Uint8Array,
  offset: number,
  header: { flags: number; type: number; length: number },
): number {
  target[offset] = header.flags;
  target[offset + 1] = header.type;
  target[offset + 2] = header.length >> 8;
  target[offset + 3] = header.length & 0xff;
  return offset + 4;
}

/** TLVs a Session-Sender can ask for with `--stamp-tlv`. */
export type RequestTlv = "location" | "timestamp-info" | "class-of-service";

/** The bytes of a TLV as a Session-Sender sends it. */
export function requestTlvSize(tlv: RequestTlv): number {
  return tlv === "location"
    ? 4 + 4 + 2 * (4 + ADDRESS_SUB_LENGTH)
    : tlv === "class-of-service"
    ? 4 + CLASS_OF_SERVICE_LENGTH
    : 4 + TIMESTAMP_INFO_LENGTH;
}

/**
 * Writes the TLVs asked for at `offset`, each with U set and its value
 * zero as RFC 8972 §4 wants from a Session-Sender, then an Extra Padding
 * TLV over the rest when 4 bytes or more are left (fewer are zeroed).
 * Location asks for the source and destination addresses (generic
 * sub-TLVs 7 and 4); Class of Service asks for DSCP1 `options.dscp1`
 * (default 0, CS0) on the reply. Throws RangeError when the TLVs do not fit.
 */
export function writeRequestTlvs(
  target: Uint8Array,
  offset: number,
  tlvs: readonly RequestTlv[],
  options: { dscp1?: number } = {},
): void {
  const needed = tlvs.reduce((sum, tlv) => sum + requestTlvSize(tlv), 0);
  if (offset + needed > target.length) {
    throw new RangeError(
      `Cannot fit the TLVs ${
        tlvs.join(", ")
      } into ${target.length} bytes: they need ${offset + needed}`,
    );
  }
  let at = offset;
  for (const tlv of tlvs) {
    const size = requestTlvSize(tlv);
    target.fill(0, at, at + size);
    if (tlv === "location") {
      let value = writeTlvHeader(target, at, {
        flags: FLAG_U,
        type: TLV_LOCATION,
        length: size - 4,
      });
      value += 4; // destination and source port, zero
      for (const type of [SUB.sourceIp, SUB.destinationIp]) {
        value = writeTlvHeader(target, value, {
          flags: FLAG_U,
          type,
          length: ADDRESS_SUB_LENGTH,
        }) + ADDRESS_SUB_LENGTH;
      }
    } else if (tlv === "class-of-service") {
      const value = writeTlvHeader(target, at, {
        flags: FLAG_U,
        type: TLV_CLASS_OF_SERVICE,
        length: CLASS_OF_SERVICE_LENGTH,
      });
      target[value] = ((options.dscp1 ?? 0) & 0x3f) << 2;
    } else {
      writeTlvHeader(target, at, {
        flags: FLAG_U,
        type: TLV_TIMESTAMP_INFO,
        length: TIMESTAMP_INFO_LENGTH,
      });
    }
    at += size;
  }
  const rest = target.length - at;
  target.fill(0, at);
  if (rest >= 4) {
    writeTlvHeader(target, at, {
      flags: FLAG_U,
      type: TLV_EXTRA_PADDING,
      length: rest - 4,
    });
  }
}

/** What the reflector saw of a packet, for the Location TLV. */
export interface SeenPath {
  /** The source address and port of the packet received. */
  source: { hostname: string; port: number };
  /** The destination address and port (the socket's; unspecified when bound to a wildcard). */
  destination: { hostname: string; port: number };
}

/** The reflector's clock, for the Timestamp Information TLV. */
export interface ClockInfo {
  /** One of {@linkcode SYNC_SOURCE}. */
  syncSource: number;
  /** How T2 was taken, one of {@linkcode TIMESTAMP_METHOD}. */
  receiveMethod: number;
  /** How T3 is taken. */
  transmitMethod: number;
}

/** How a reflector answers a Delayed Reply TLV. */
export interface DelayGrant {
  /** Given the delay asked for (ms), the one granted: 0 answers at once. */
  grant(askedMs: number): number;
  /** The longest delay granted, ms, returned to the sender. */
  maxMs: number;
}

/**
 * The TOS or traffic class byte (DSCP << 2 | ECN) a packet arrived with,
 * for the Class of Service TLV; -1 when the reflector cannot read it.
 */
export type SeenTos = number;

/**
 * The Class of Service TLV's value (RFC 8972 §4.7): DSCP1, the DSCP the
 * sender asks the reply to carry; DSCP2 and ECN, what the reflector
 * received; RP, 0 when the reply carries DSCP1, 1 when it does not.
 */
export interface ClassOfService {
  /** DSCP1 (6 bits). */
  dscp1: number;
  /** DSCP2 (6 bits). */
  dscp2: number;
  /** ECN (2 bits). */
  ecn: number;
  /** RP (2 bits). */
  rp: number;
}

/** Reads a Class of Service TLV's value; `undefined` when its length is wrong. */
export function readClassOfService(
  bytes: Uint8Array,
  tlv: Tlv,
): ClassOfService | undefined {
  if (tlv.malformed || tlv.length !== CLASS_OF_SERVICE_LENGTH) return undefined;
  const word = (bytes[tlv.offset]! << 8) | bytes[tlv.offset + 1]!;
  return {
    dscp1: word >> 10,
    dscp2: (word >> 4) & 0x3f,
    ecn: (word >> 2) & 3,
    rp: word & 3,
  };
}

/** How many TLVs a reflection marked, by flag. */
export interface TlvMarks {
  /** TLVs and sub-TLVs returned with U set. */
  unrecognized: number;
  /** TLVs and sub-TLVs returned with M set. */
  malformed: number;
}

/**
 * Turns the TLVs of a request, copied into `reply` from `start` on, into
 * the reflector's (RFC 8972 §4): U and M cleared on those understood and
 * well-formed, Extra Padding left as it came, Location filled with `seen`,
 * Timestamp Information with `clock`, Class of Service with `tos` (RP 0:
 * the caller marks the reply with DSCP1, see {@linkcode replyTos}; without
 * `tos`, a reflector that can neither read nor set the marking, it is
 * returned with U set), Delayed Reply by `delay` (unknown without it); U
 * set on an unknown type, M on a bad length. Never throws; returns what it
 * marked.
 */
export function reflectTlvs(
  reply: Uint8Array,
  start: number,
  context: {
    seen: SeenPath;
    clock: ClockInfo;
    tos?: SeenTos;
    delay?: DelayGrant;
  },
): TlvMarks {
  const marks: TlvMarks = { unrecognized: 0, malformed: 0 };
  // One reply per request: only the first Delayed Reply TLV is granted.
  let delayAsked = false;
  for (const tlv of readTlvs(reply, start)) {
    const at = tlv.offset - 4;
    const keep = reply[at]! & FLAG_I;
    if (tlv.malformed) {
      reply[at] = keep | FLAG_M;
      marks.malformed++;
      continue;
    }
    let flags = keep;
    switch (tlv.type) {
      case TLV_EXTRA_PADDING:
        break;
      case TLV_LOCATION:
        flags |= fillLocation(reply, tlv, context.seen, marks);
        break;
      case TLV_TIMESTAMP_INFO:
        if (tlv.length !== TIMESTAMP_INFO_LENGTH) {
          flags |= FLAG_M;
          break;
        }
        reply[tlv.offset] = context.clock.syncSource;
        reply[tlv.offset + 1] = context.clock.receiveMethod;
        reply[tlv.offset + 2] = context.clock.syncSource;
        reply[tlv.offset + 3] = context.clock.transmitMethod;
        break;
      case TLV_DELAYED_REPLY: {
        if (context.delay === undefined) {
          flags |= FLAG_U;
          break;
        }
        if (tlv.length !== DELAYED_REPLY_LENGTH) {
          flags |= FLAG_M;
          break;
        }
        const view = new DataView(reply.buffer, reply.byteOffset);
        const asked = view.getUint32(tlv.offset);
        view.setUint32(tlv.offset, delayAsked ? 0 : context.delay.grant(asked));
        view.setUint32(tlv.offset + 4, context.delay.maxMs);
        delayAsked = true;
        break;
      }
      case TLV_CLASS_OF_SERVICE:
        if (tlv.length !== CLASS_OF_SERVICE_LENGTH) flags |= FLAG_M;
        else if ((context.tos ?? -1) < 0) flags |= FLAG_U;
        else {
          // DSCP1 stays; DSCP2 and ECN as received; RP 0; reserved zero.
          const tos = context.tos!;
          reply[tlv.offset] = (reply[tlv.offset]! & 0xfc) | (tos >> 6);
          reply[tlv.offset + 1] = ((tos & 0x3c) << 2) | ((tos & 3) << 2);
          reply[tlv.offset + 2] = 0;
          reply[tlv.offset + 3] = 0;
        }
        break;
      default:
        flags |= FLAG_U;
    }
    if (flags & FLAG_U) marks.unrecognized++;
    if (flags & FLAG_M) marks.malformed++;
    reply[at] = flags;
  }
  return marks;
}

/**
 * Fills a Location TLV: the ports, then each address sub-TLV with the
 * address of its direction in the family's own type. Returns the flags for
 * the TLV itself (M when its value or a sub-TLV's length is wrong).
 */
function fillLocation(
  reply: Uint8Array,
  tlv: Tlv,
  seen: SeenPath,
  marks: TlvMarks,
): number {
  if (tlv.length < 4) return FLAG_M;
  const view = new DataView(reply.buffer, reply.byteOffset, reply.length);
  view.setUint16(tlv.offset, seen.destination.port);
  view.setUint16(tlv.offset + 2, seen.source.port);
  const end = tlv.offset + tlv.length;
  const subs = readTlvs(reply.subarray(0, end), tlv.offset + 4);
  let flags = 0;
  for (const sub of subs) {
    const at = sub.offset - 4;
    if (sub.malformed) {
      reply[at] = FLAG_M;
      marks.malformed++;
      flags = FLAG_M;
      continue;
    }
    const destination = sub.type >= SUB.destinationIp &&
      sub.type <= SUB.destinationIpv6;
    const source = sub.type >= SUB.sourceIp && sub.type <= SUB.sourceIpv6;
    if (!destination && !source) {
      // MAC addresses are not visible to a UDP socket.
      reply[at] = FLAG_U;
      marks.unrecognized++;
      continue;
    }
    if (sub.length !== ADDRESS_SUB_LENGTH) {
      reply[at] = FLAG_M;
      marks.malformed++;
      flags = FLAG_M;
      continue;
    }
    const family = writeAddress(
      reply,
      sub.offset,
      (destination ? seen.destination : seen.source).hostname,
    );
    reply[at] = 0;
    reply[at + 1] = destination
      ? (family === 6 ? SUB.destinationIpv6 : SUB.destinationIpv4)
      : (family === 6 ? SUB.sourceIpv6 : SUB.sourceIpv4);
  }
  return flags;
}

/**
 * Writes an address into 16 bytes: IPv4 (an IPv4-mapped IPv6 address too)
 * in the first 4 and 12 zero, IPv6 in all 16; zeros when the text is no
 * address. Returns the family written.
 */
function writeAddress(
  target: Uint8Array,
  offset: number,
  hostname: string,
): 4 | 6 {
  const family = parseAddress(hostname);
  const view = new DataView(target.buffer, target.byteOffset, target.length);
  target.fill(0, offset, offset + ADDRESS_SUB_LENGTH);
  if (family === 4) view.setUint32(offset, WORDS[0]!);
  if (family === 6) {
    for (let i = 0; i < 4; i++) view.setUint32(offset + 4 * i, WORDS[i]!);
  }
  return family === 6 ? 6 : 4;
}

/** The address of a filled address sub-TLV, as text; `undefined` for other types. */
export function readAddress(
  bytes: Uint8Array,
  sub: Tlv,
): { direction: "source" | "destination"; hostname: string } | undefined {
  if (sub.malformed || sub.length !== ADDRESS_SUB_LENGTH) return undefined;
  const v4 = sub.type === SUB.sourceIpv4 || sub.type === SUB.destinationIpv4;
  const v6 = sub.type === SUB.sourceIpv6 || sub.type === SUB.destinationIpv6;
  if (!v4 && !v6) return undefined;
  const direction = sub.type >= SUB.sourceIp ? "source" : "destination";
  const value = bytes.subarray(sub.offset, sub.offset + ADDRESS_SUB_LENGTH);
  return { direction, hostname: formatIp(value, 0, v4 ? 4 : 6) };
}

/**
 * The TOS or traffic class byte a reply should leave with when the request
 * (its TLVs from `start`, as reflected by {@linkcode reflectTlvs}) carries
 * a filled Class of Service TLV: DSCP1, and the ECN the request arrived
 * with, so the sender can tell what the way back did to it. -1 when there
 * is none: the socket's own marking.
 */
export function replyTos(reply: Uint8Array, start: number): number {
  for (const tlv of readTlvs(reply, start)) {
    if (tlv.type !== TLV_CLASS_OF_SERVICE) continue;
    const cos = readClassOfService(reply, tlv);
    if (cos === undefined || reply[tlv.offset - 4]! & (FLAG_U | FLAG_M)) {
      return -1;
    }
    return (cos.dscp1 << 2) | cos.ecn;
  }
  return -1;
}
