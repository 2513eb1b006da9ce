/**
 * What every measurement mode shares: its events, its options, its
 * defaults and the range checks on its arguments.
 *
 * @module
 */

import { checkPayloadSize } from "../net/payload.ts";
import type { HostPort, ResolvedAddress } from "../net/address.ts";
import {
  PROBE_HEADER_SIZE,
  type ProbeCheck,
  type ProbeHeader,
} from "./probe.ts";

/** The probe size used when none is given, in bytes, as ping uses. */
export const DEFAULT_PROBE_SIZE = 64;
/** How long a reply may take before it counts as late, in milliseconds. */
export const DEFAULT_PROBE_TIMEOUT_MS = 1000;

/** A reply from the target carrying this run's session id. */
export interface ReplyEvent {
  /** Event type. */
  type: "reply";
  /** Index of the flow (socket) that sent the probe, from 0. */
  flow: number;
  /** Sequence number of the probe within its flow, from 0. */
  seq: number;
  /** Bytes in the reply. */
  bytes: number;
  /** Round-trip time in milliseconds. */
  rttMs: number;
  /** How the reply compares with the probe. */
  check: ProbeCheck;
  /** An intact reply beyond the first for this probe. */
  duplicate: boolean;
  /** A first intact reply that came after the reply to a later probe. */
  reordered: boolean;
  /** A reply that took longer than the timeout. */
  late: boolean;
  /**
   * Kernel engine only: the wall clock stepped between the probe's send and
   * this reply, so `rttMs` is the CLOCK_MONOTONIC round trip (send stamp to
   * the reply's processing), not the kernel's timestamped one. Absent
   * otherwise.
   */
  clockStep?: true;
}

/** A probe that had no reply at all by the end of the wait. */
export interface LostEvent {
  /** Event type. */
  type: "lost";
  /** Index of the flow. */
  flow: number;
  /** Sequence number of the probe. */
  seq: number;
}

/**
 * A probe whose send failed: it never left this host, so it is counted in
 * `sendErrors`, not in `sent`, and the run goes on.
 */
export interface SendErrorEvent {
  /** Event type. */
  type: "send_error";
  /** Index of the flow. */
  flow: number;
  /** Sequence number the probe would have carried. */
  seq: number;
  /** The OS's reason, lower case: `operation not permitted`. */
  reason: string;
}

/** One try of one size during a sweep. */
export interface SweepEvent {
  /** Event type. */
  type: "sweep";
  /** Payload size tried, in bytes. */
  size: number;
  /** Which try of this size, from 1. */
  attempt: number;
  /** What came back within the timeout; `unsent` when the send failed. */
  outcome: ProbeCheck | "lost" | "unsent" | "interrupted";
  /** Bytes echoed; 0 when lost or unsent. */
  bytes: number;
  /** Round-trip time in milliseconds; NaN when lost. */
  rttMs: number;
}

/** Which measurement produced a result. */
export type Mode = "ping" | "load" | "sweep";

/** What the modes report as they go. */
export type ProbeEvent =
  | ReplyEvent
  | LostEvent
  | SweepEvent
  | SendErrorEvent;

/** Options shared by every mode. */
export interface EngineOptions {
  /** The echo server, already resolved. */
  target: ResolvedAddress;
  /** Local address to send from; defaults to the wildcard of the family. */
  bind?: HostPort;
  /** A reply slower than this, in ms, is late (and frees a window slot). Default 1000. */
  timeoutMs?: number;
  /** After the last send, how long to wait for replies, in ms. Default 2 x timeout. */
  waitMs?: number;
  /** Stops sending and waiting; the result covers what happened so far. */
  signal?: AbortSignal;
  /** Called for every reply, lost probe, failed send and sweep try. */
  onEvent?: (event: ProbeEvent) => void;
}

/**
 * Checks the payload size of a probe, in bytes, against the header and the
 * family limit; throws RangeError when it is not an integer, is below
 * `PROBE_HEADER_SIZE` or is above what one datagram of the family carries.
 */
export function checkProbeSize(size: number, target: ResolvedAddress): void {
  if (!Number.isInteger(size) || size < PROBE_HEADER_SIZE) {
    throw new RangeError(
      `Cannot send probes of ${size} bytes: a probe needs at least ${PROBE_HEADER_SIZE}`,
    );
  }
  checkPayloadSize(size, target.family);
}

/** Throws RangeError unless `value` is absent, Infinity or an integer >= `min`. */
export function checkCount(
  name: string,
  value: number | undefined,
  min = 1,
): void {
  if (
    value !== undefined &&
    !(Number.isInteger(value) && value >= min || value === Infinity)
  ) {
    throw new RangeError(
      `Cannot use ${name} ${value}: expected an integer of at least ${min}`,
    );
  }
}

/** Throws RangeError unless `value` is absent or a finite number >= `min`. */
export function checkMs(
  name: string,
  value: number | undefined,
  min = 0,
): void {
  if (value !== undefined && !(Number.isFinite(value) && value >= min)) {
    throw new RangeError(
      `Cannot use ${name} ${value}: expected a number of at least ${min}`,
    );
  }
}

/**
 * How a flow writes its probes and reads their replies: by default the
 * probe of `probe.ts`; STAMP test packets with `--stamp` (`stamp_probe.ts`).
 */
export interface ProbeFormat {
  /** Writes probe `header.seq` over all of `target`. */
  encode(target: Uint8Array, header: ProbeHeader): void;
  /** The session and sequence number a reply answers; `undefined` if none. */
  decode(data: Uint8Array): { session: number; seq: number } | undefined;
  /** How a reply compares with the probe sent. */
  verify(data: Uint8Array, header: ProbeHeader, size: number): ProbeCheck;
  /** Each intact first reply, received at `receivedAt` (`performance.now()` ms). */
  onReply?(data: Uint8Array, seq: number, receivedAt: number): void;
}
