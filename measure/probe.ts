/**
 * The measurement probe: a small header (magic, per-run session id, sequence
 * number, send time) followed by a fill derived from the sequence number, so
 * that any plain echo server can return it and the client can tell an intact
 * echo from a truncated, corrupted or foreign one without keeping copies of
 * what it sent.
 *
 * Layout (big-endian), {@linkcode PROBE_HEADER_SIZE} bytes of header:
 *
 * | offset | size | field                                        |
 * | -----: | ---: | -------------------------------------------- |
 * |      0 |    4 | magic `UEP1`                                 |
 * |      4 |    4 | session id (random per run)                  |
 * |      8 |    4 | sequence number                              |
 * |     12 |    8 | send time, ms since the Unix epoch (float64) |
 * |     20 |  ... | fill derived from the sequence number        |
 *
 * @example Encode a probe and check its echo
 * ```ts
 * import { decodeProbe, encodeProbe, verifyProbe } from "./probe.ts";
 * import { deepEqual, equal } from "node:assert/strict";
 *
 * const probe = { session: 7, seq: 3, sentAt: 1_700_000_000_000 };
 * const bytes = encodeProbe(probe, 64);
 * deepEqual(decodeProbe(bytes), probe);
 * equal(verifyProbe(bytes, probe, 64), "intact");
 * equal(verifyProbe(bytes.subarray(0, 32), probe, 64), "truncated");
 * ```
 *
 * @module
 */

import type { ReplyEvent } from "./types.ts";

/** The bytes every probe starts with: `UEP1` (udp-echo probe, version 1). */
export const PROBE_MAGIC = 0x55455031;

/** The size of the probe header; the smallest probe that can be attributed. */
export const PROBE_HEADER_SIZE = 20;

/** The fields of a probe header. */
export interface ProbeHeader {
  /** The session id of the run that sent the probe, a 32-bit unsigned integer. */
  session: number;
  /** The sequence number of the probe, a 32-bit unsigned integer. */
  seq: number;
  /** When the probe was sent, in milliseconds since the Unix epoch. */
  sentAt: number;
}

/** How an echo compares with the probe that was sent. */
export type ProbeCheck = ReplyEvent["check"];

/** Returns a random 32-bit session id for a new run. */
export function newSessionId(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

/** The first state of the fill generator for a sequence number. */
function fillSeed(seq: number): number {
  return (Math.imul(seq, 0x9e3779b1) ^ 0x5bd1e995) | 0;
}

/** Advances the fill generator (a 32-bit linear congruential generator). */
function fillNext(state: number): number {
  return (Math.imul(state, 1664525) + 1013904223) | 0;
}

/**
 * Writes the fill for `seq` after the header of `target`: the successive
 * generator states, four big-endian bytes each, so a word is one step.
 */
function writeFill(target: Uint8Array, seq: number): void {
  const end = target.length;
  let state = fillSeed(seq);
  let i = PROBE_HEADER_SIZE;
  for (; i + 4 <= end; i += 4) {
    writeU32(target, i, state);
    state = fillNext(state);
  }
  for (let shift = 24; i < end; i++, shift -= 8) {
    target[i] = (state >>> shift) & 0xff;
  }
}

/** Whether the fill after the header of `echo` is the fill for `seq`. */
function fillMatches(echo: Uint8Array, seq: number): boolean {
  const end = echo.length;
  let state = fillSeed(seq);
  let i = PROBE_HEADER_SIZE;
  for (; i + 4 <= end; i += 4) {
    if (readU32(echo, i) !== state >>> 0) return false;
    state = fillNext(state);
  }
  for (let shift = 24; i < end; i++, shift -= 8) {
    if (echo[i] !== ((state >>> shift) & 0xff)) return false;
  }
  return true;
}

function checkField(field: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new RangeError(
      `Cannot encode probe: ${field} ${value} is not a 32-bit unsigned integer`,
    );
  }
}

function checkHeader(header: ProbeHeader): void {
  checkField("session", header.session);
  checkField("seq", header.seq);
}

// Byte access without a DataView per call: the hot paths allocate nothing.
const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function writeU32(target: Uint8Array, at: number, value: number): void {
  target[at] = value >>> 24;
  target[at + 1] = value >>> 16;
  target[at + 2] = value >>> 8;
  target[at + 3] = value;
}

function readU32(source: Uint8Array, at: number): number {
  return (source[at]! << 24 | source[at + 1]! << 16 | source[at + 2]! << 8 |
    source[at + 3]!) >>> 0;
}

function writeF64(target: Uint8Array, at: number, value: number): void {
  F64[0] = value;
  for (let k = 0; k < 8; k++) {
    target[at + k] = F64_BYTES[LITTLE_ENDIAN ? 7 - k : k]!;
  }
}

function readF64(source: Uint8Array, at: number): number {
  for (let k = 0; k < 8; k++) {
    F64_BYTES[LITTLE_ENDIAN ? 7 - k : k] = source[at + k]!;
  }
  return F64[0]!;
}

/**
 * Encodes a probe of `size` bytes. Sizes below {@linkcode PROBE_HEADER_SIZE}
 * give a prefix of the header, which only a sender waiting for exactly that
 * echo can recognise.
 *
 * @example
 * ```ts
 * import { encodeProbe } from "./probe.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(encodeProbe({ session: 1, seq: 0, sentAt: 0 }, 64).length, 64);
 * ```
 */
export function encodeProbe(header: ProbeHeader, size: number): Uint8Array {
  if (!Number.isInteger(size) || size < 0) {
    throw new RangeError(
      `Cannot encode probe: size ${size} is not a non-negative integer`,
    );
  }
  const bytes = new Uint8Array(size);
  encodeProbeInto(bytes, header);
  return bytes;
}

/**
 * Encodes a probe into `target`, filling all of it, so a sender can reuse one
 * buffer per size instead of allocating per probe.
 */
export function encodeProbeInto(target: Uint8Array, header: ProbeHeader): void {
  checkHeader(header);
  if (target.length < PROBE_HEADER_SIZE) {
    target.set(
      encodeProbe(header, PROBE_HEADER_SIZE).subarray(0, target.length),
    );
    return;
  }
  writeU32(target, 0, PROBE_MAGIC);
  writeU32(target, 4, header.session);
  writeU32(target, 8, header.seq);
  writeF64(target, 12, header.sentAt);
  writeFill(target, header.seq);
}

/**
 * Reads the header of a datagram; `undefined` when it is too short or does
 * not start with {@linkcode PROBE_MAGIC}, so it cannot be a probe.
 *
 * @example
 * ```ts
 * import { decodeProbe } from "./probe.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(decodeProbe(new TextEncoder().encode("hello")), undefined);
 * ```
 */
export function decodeProbe(data: Uint8Array): ProbeHeader | undefined {
  if (data.length < PROBE_HEADER_SIZE) return undefined;
  const view = new DataView(data.buffer, data.byteOffset, PROBE_HEADER_SIZE);
  if (view.getUint32(0) !== PROBE_MAGIC) return undefined;
  return {
    session: view.getUint32(4),
    seq: view.getUint32(8),
    sentAt: view.getFloat64(12),
  };
}

/**
 * Compares an echo with the probe of `size` bytes that was sent: `intact`
 * when byte for byte equal, `truncated` when it is a shorter prefix,
 * otherwise `corrupted`.
 */
export function verifyProbe(
  echo: Uint8Array,
  sent: ProbeHeader,
  size: number,
): ProbeCheck {
  if (echo.length > size) return "corrupted";
  if (echo.length < PROBE_HEADER_SIZE) {
    const head = encodeProbe(sent, Math.min(size, PROBE_HEADER_SIZE));
    if (!echo.every((byte, i) => byte === head[i])) return "corrupted";
  } else if (
    readU32(echo, 0) !== PROBE_MAGIC || readU32(echo, 4) !== sent.session ||
    readU32(echo, 8) !== sent.seq ||
    !Object.is(readF64(echo, 12), sent.sentAt) || !fillMatches(echo, sent.seq)
  ) {
    return "corrupted";
  }
  return echo.length === size ? "intact" : "truncated";
}
