/**
 * What every measurement shares besides its model (`types.ts`): its
 * defaults, the range checks on its arguments and the probe format hook.
 *
 * @module
 */

import { checkPayloadSize } from "../net/payload.ts";
import type { ResolvedAddress } from "../net/address.ts";
import {
  PROBE_HEADER_SIZE,
  type ProbeCheck,
  type ProbeHeader,
} from "./probe.ts";

/** The probe size used when none is given, in bytes, as ping uses. */
export const DEFAULT_PROBE_SIZE = 64;
/** How long a reply may take before it counts as late, in milliseconds. */
export const DEFAULT_PROBE_TIMEOUT_MS = 1000;

/** Which measurement produced a result. */
export type Mode = "ping" | "load" | "sweep";

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
  /**
   * Runs the per-probe code above on throwaway state, reporting nothing,
   * so its compilation happens before probe 0 is timed.
   */
  warmUp?(size: number): void;
}
