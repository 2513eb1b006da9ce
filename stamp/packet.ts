/**
 * STAMP test packets in unauthenticated mode (RFC 8762 §4.2.1 and §4.3.1,
 * with the SSID of RFC 8972 §3): their timestamps (NTP 64-bit or PTPv2
 * truncated), the error estimate (RFC 4656 §4.1.2, Z flag of RFC 8186) and
 * the base fields, all in network byte order.
 *
 * Session-Sender test packet, {@linkcode STAMP_BASE_SIZE} bytes then TLVs:
 *
 * | offset | size | field                                  |
 * | -----: | ---: | -------------------------------------- |
 * |      0 |    4 | sequence number                        |
 * |      4 |    8 | timestamp (T1)                         |
 * |     12 |    2 | error estimate                         |
 * |     14 |    2 | SSID                                   |
 * |     16 |   28 | MBZ                                    |
 *
 * Session-Reflector test packet, the same size:
 *
 * | offset | size | field                                  |
 * | -----: | ---: | -------------------------------------- |
 * |      0 |    4 | sequence number (the reflector's)      |
 * |      4 |    8 | timestamp (T3, transmit)               |
 * |     12 |    2 | error estimate                         |
 * |     14 |    2 | SSID                                   |
 * |     16 |    8 | receive timestamp (T2)                 |
 * |     24 |    4 | Session-Sender sequence number         |
 * |     28 |    8 | Session-Sender timestamp (T1)          |
 * |     36 |    2 | Session-Sender error estimate          |
 * |     38 |    2 | MBZ                                    |
 * |     40 |    1 | Session-Sender TTL (0: unknown)        |
 * |     41 |    3 | MBZ                                    |
 *
 * @example A timestamp and back
 * ```ts
 * import { readTimestamp, writeTimestamp } from "./packet.ts";
 * import { equal } from "node:assert/strict";
 *
 * const bytes = new Uint8Array(8);
 * writeTimestamp(bytes, 0, 1_700_000_000_250, "ntp");
 * equal(readTimestamp(bytes, 0, "ntp"), 1_700_000_000_250);
 * ```
 *
 * @module
 */

/** The size of the base test packet, both directions (RFC 8762 §4.2.1, §4.3.1). */
export const STAMP_BASE_SIZE = 44;

/** The IANA port of STAMP (RFC 8762 §4.1). */
export const STAMP_PORT = 862;

/** Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01). */
export const NTP_UNIX_OFFSET_S = 2_208_988_800;

/** Offsets of the fields, as in the tables of the module comment. */
export const OFFSET = {
  seq: 0,
  timestamp: 4,
  errorEstimate: 12,
  ssid: 14,
  receiveTimestamp: 16,
  senderSeq: 24,
  senderTimestamp: 28,
  senderErrorEstimate: 36,
  senderTtl: 40,
} as const;

/**
 * How a timestamp is written: `ntp`, 32-bit seconds since 1900 and a 32-bit
 * binary fraction (RFC 5905 §6); `ptp`, 32-bit seconds since 1970 and 32-bit
 * nanoseconds (PTPv2 truncated, RFC 8186). The PTP seconds are taken from
 * the system's UTC clock: no TAI offset is added.
 */
export type TimestampFormat = "ntp" | "ptp";

/** The fields of an error estimate (RFC 4656 §4.1.2). */
export interface ErrorEstimate {
  /** S: the clock is synchronised to UTC by an external source. */
  synchronized: boolean;
  /** Z: the timestamps it goes with are PTPv2 truncated rather than NTP (RFC 8186). */
  format: TimestampFormat;
  /** 6 bits. */
  scale: number;
  /** 8 bits, never 0 on the wire. */
  multiplier: number;
}

const TWO_32 = 2 ** 32;

/**
 * Writes the time `ms` (milliseconds since the Unix epoch) as an 8-byte
 * timestamp at `offset`. Throws RangeError for a time before the epoch of
 * the format or past its 32-bit seconds.
 */
export function writeTimestamp(
  target: Uint8Array,
  offset: number,
  ms: number,
  format: TimestampFormat,
): void {
  const view = new DataView(target.buffer, target.byteOffset, target.length);
  const unixSeconds = Math.floor(ms / 1000);
  const seconds = format === "ntp"
    ? unixSeconds + NTP_UNIX_OFFSET_S
    : unixSeconds;
  if (!(seconds >= 0 && seconds < TWO_32)) {
    throw new RangeError(`Cannot write timestamp ${ms}: out of range`);
  }
  const part = ms / 1000 - unixSeconds;
  const fraction = format === "ntp"
    ? Math.min(Math.round(part * TWO_32), TWO_32 - 1)
    : Math.min(Math.round(part * 1e9), 999_999_999);
  view.setUint32(offset, seconds);
  view.setUint32(offset + 4, fraction);
}

/** Reads an 8-byte timestamp at `offset`, in milliseconds since the Unix epoch. */
export function readTimestamp(
  source: Uint8Array,
  offset: number,
  format: TimestampFormat,
): number {
  const view = new DataView(source.buffer, source.byteOffset, source.length);
  const seconds = view.getUint32(offset);
  const fraction = view.getUint32(offset + 4);
  return format === "ntp"
    ? (seconds - NTP_UNIX_OFFSET_S) * 1000 + fraction / TWO_32 * 1000
    : seconds * 1000 + fraction / 1e6;
}

/**
 * The 16 bits of an error estimate: S, Z, 6 bits of scale, 8 of
 * multiplier. Throws RangeError for a scale or multiplier out of range
 * (the multiplier must not be 0).
 */
export function encodeErrorEstimate(estimate: ErrorEstimate): number {
  const { scale, multiplier } = estimate;
  if (!Number.isInteger(scale) || scale < 0 || scale > 63) {
    throw new RangeError(`Cannot encode error estimate: scale ${scale}`);
  }
  if (!Number.isInteger(multiplier) || multiplier < 1 || multiplier > 255) {
    throw new RangeError(
      `Cannot encode error estimate: multiplier ${multiplier}`,
    );
  }
  return (estimate.synchronized ? 0x8000 : 0) |
    (estimate.format === "ptp" ? 0x4000 : 0) | (scale << 8) | multiplier;
}

/** The fields of a 16-bit error estimate. */
export function decodeErrorEstimate(bits: number): ErrorEstimate {
  return {
    synchronized: (bits & 0x8000) !== 0,
    format: (bits & 0x4000) !== 0 ? "ptp" : "ntp",
    scale: (bits >> 8) & 0x3f,
    multiplier: bits & 0xff,
  };
}

/** The error an estimate stands for, in milliseconds: Multiplier × 2^(Scale − 32) s. */
export function errorMs(estimate: ErrorEstimate): number {
  return estimate.multiplier * 2 ** (estimate.scale - 32) * 1000;
}

/**
 * The smallest estimate of at least `ms` milliseconds: the least scale
 * whose multiplier fits 8 bits, the multiplier rounded up.
 *
 * @example
 * ```ts
 * import { errorEstimateFor, errorMs } from "./packet.ts";
 * import { ok } from "node:assert/strict";
 *
 * const estimate = errorEstimateFor(1, { synchronized: false, format: "ntp" });
 * ok(errorMs(estimate) >= 1 && errorMs(estimate) < 1.01);
 * ```
 */
export function errorEstimateFor(
  ms: number,
  options: { synchronized: boolean; format: TimestampFormat },
): ErrorEstimate {
  const units = ms / 1000 * TWO_32;
  let scale = 0;
  while (scale < 63 && Math.ceil(units / 2 ** scale) > 255) scale++;
  const multiplier = Math.min(255, Math.max(1, Math.ceil(units / 2 ** scale)));
  return { ...options, scale, multiplier };
}

/**
 * The error estimate of a Session-Sender with software timestamps and a
 * clock not known to be synchronised: about a millisecond, NTP format.
 *
 * @example
 * ```ts
 * import { errorMs, SOFTWARE_SENDER_ERROR } from "./packet.ts";
 * import { ok } from "node:assert/strict";
 *
 * ok(errorMs(SOFTWARE_SENDER_ERROR) >= 1);
 * ```
 */
export const SOFTWARE_SENDER_ERROR: ErrorEstimate = errorEstimateFor(1, {
  synchronized: false,
  format: "ntp",
});

/** The base fields of a Session-Sender test packet. */
export interface SenderPacket {
  /** 32-bit sequence number. */
  seq: number;
  /** T1, milliseconds since the Unix epoch. */
  timestampMs: number;
  /** The sender's error estimate; its `format` is the timestamp's. */
  errorEstimate: ErrorEstimate;
  /** 16-bit Session-Sender Identifier (RFC 8972 §3). */
  ssid: number;
}

/**
 * Writes the 44-byte base of a Session-Sender test packet at the start of
 * `target`, MBZ zeroed; the bytes after it are left as they are. Throws
 * RangeError when `target` is shorter than 44 bytes or a field is out of
 * range.
 */
export function writeSenderPacket(
  target: Uint8Array,
  packet: SenderPacket,
): void {
  if (target.length < STAMP_BASE_SIZE) {
    throw new RangeError(
      `Cannot write a STAMP packet into ${target.length} bytes: it needs ${STAMP_BASE_SIZE}`,
    );
  }
  checkUint("seq", packet.seq, 0xffff_ffff);
  checkUint("ssid", packet.ssid, 0xffff);
  const view = new DataView(target.buffer, target.byteOffset, target.length);
  view.setUint32(OFFSET.seq, packet.seq);
  writeTimestamp(
    target,
    OFFSET.timestamp,
    packet.timestampMs,
    packet.errorEstimate.format,
  );
  view.setUint16(
    OFFSET.errorEstimate,
    encodeErrorEstimate(packet.errorEstimate),
  );
  view.setUint16(OFFSET.ssid, packet.ssid);
  target.fill(0, OFFSET.receiveTimestamp, STAMP_BASE_SIZE);
}

/** Reads the base of a Session-Sender test packet; `undefined` under 44 bytes. */
export function readSenderPacket(source: Uint8Array): SenderPacket | undefined {
  if (source.length < STAMP_BASE_SIZE) return undefined;
  const view = new DataView(source.buffer, source.byteOffset, source.length);
  const errorEstimate = decodeErrorEstimate(
    view.getUint16(OFFSET.errorEstimate),
  );
  return {
    seq: view.getUint32(OFFSET.seq),
    timestampMs: readTimestamp(source, OFFSET.timestamp, errorEstimate.format),
    errorEstimate,
    ssid: view.getUint16(OFFSET.ssid),
  };
}

/** The base fields of a Session-Reflector test packet. */
export interface ReflectorPacket {
  /** The reflector's sequence number: the sender's when stateless. */
  seq: number;
  /** T3, the reflector's transmit time, ms since the Unix epoch. */
  timestampMs: number;
  /** The reflector's error estimate; its `format` is that of T2 and T3. */
  errorEstimate: ErrorEstimate;
  /** The SSID. */
  ssid: number;
  /** T2, the reflector's receive time, ms since the Unix epoch. */
  receiveTimestampMs: number;
  /** The Session-Sender's sequence number. */
  senderSeq: number;
  /** T1 as the sender wrote it, ms since the Unix epoch. */
  senderTimestampMs: number;
  /** The sender's error estimate. */
  senderErrorEstimate: ErrorEstimate;
  /** The TTL or hop limit the sender's packet arrived with; 0 when unknown. */
  senderTtl: number;
  /** Whether every MBZ byte of the base is zero. */
  mbzZero: boolean;
}

/** Reads the base of a Session-Reflector test packet; `undefined` under 44 bytes. */
export function readReflectorPacket(
  source: Uint8Array,
): ReflectorPacket | undefined {
  // The first 16 bytes are laid out as in the sender's packet.
  const base = readSenderPacket(source);
  if (base === undefined) return undefined;
  const view = new DataView(source.buffer, source.byteOffset, source.length);
  const senderErrorEstimate = decodeErrorEstimate(
    view.getUint16(OFFSET.senderErrorEstimate),
  );
  return {
    ...base,
    receiveTimestampMs: readTimestamp(
      source,
      OFFSET.receiveTimestamp,
      base.errorEstimate.format,
    ),
    senderSeq: view.getUint32(OFFSET.senderSeq),
    senderTimestampMs: readTimestamp(
      source,
      OFFSET.senderTimestamp,
      senderErrorEstimate.format,
    ),
    senderErrorEstimate,
    senderTtl: source[OFFSET.senderTtl]!,
    mbzZero: view.getUint16(38) === 0 && source[41] === 0 &&
      source[42] === 0 && source[43] === 0,
  };
}

function checkUint(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`Cannot write STAMP ${name} ${value}: out of range`);
  }
}
