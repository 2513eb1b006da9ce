/**
 * The Session-Sender's side of our Delayed Reply TLV (type 248, from RFC
 * 8972's Experimental Use range; the layout is in docs/stamp.md): asking a
 * reflector to answer only after an idle delay, and reading what it
 * granted. The reflector's side is in `tlv.ts` and `reflector.ts`.
 *
 * @example Ask for a reply after 5 seconds
 * ```ts
 * import { readDelayedReply, writeDelayedReplyTlv } from "./delayed.ts";
 * import { equal } from "node:assert/strict";
 *
 * const packet = new Uint8Array(44 + 12);
 * writeDelayedReplyTlv(packet, 44, 5000);
 * equal(readDelayedReply(packet)?.delayMs, 5000);
 * ```
 *
 * @module
 */

import { STAMP_BASE_SIZE } from "./packet.ts";
import {
  DELAYED_REPLY_LENGTH,
  FLAG_M,
  FLAG_U,
  readTlvs,
  TLV_DELAYED_REPLY,
  writeTlvHeader,
} from "./tlv.ts";

/** The bytes of a Delayed Reply TLV, header included. */
export const DELAYED_REPLY_TLV_SIZE = 4 + DELAYED_REPLY_LENGTH;

/**
 * Writes a Delayed Reply TLV asking for `delayMs` at `offset`, with U set
 * and the ceiling zero as a Session-Sender sends it. Returns the offset
 * after it. Throws RangeError when it does not fit or the delay is not an
 * integer from 0 to 2^32 - 1.
 */
export function writeDelayedReplyTlv(
  target: Uint8Array,
  offset: number,
  delayMs: number,
): number {
  if (offset + DELAYED_REPLY_TLV_SIZE > target.length) {
    throw new RangeError(
      `Cannot fit the Delayed Reply TLV at byte ${offset} of ${target.length}`,
    );
  }
  if (!Number.isInteger(delayMs) || delayMs < 0 || delayMs >= 2 ** 32) {
    throw new RangeError(
      `Cannot ask for a delay of ${delayMs} ms: expected an integer from 0 to 2^32 - 1`,
    );
  }
  const value = writeTlvHeader(target, offset, {
    flags: FLAG_U,
    type: TLV_DELAYED_REPLY,
    length: DELAYED_REPLY_LENGTH,
  });
  const view = new DataView(target.buffer, target.byteOffset, target.length);
  view.setUint32(value, delayMs);
  view.setUint32(value + 4, 0);
  return value + DELAYED_REPLY_LENGTH;
}

/** What a reflector said of a Delayed Reply TLV. */
export interface DelayedReplySeen {
  /** The reflector does not know the TLV (U set): it answered at once. */
  unrecognized: boolean;
  /** The delay the reflector waited, ms; 0 when it answered at once. */
  delayMs: number;
  /** The longest delay it grants, ms. */
  maxMs: number;
}

/**
 * The first Delayed Reply TLV after the base packet of `packet`, as the
 * reflector returned it; `undefined` when there is none, or it is
 * malformed.
 */
export function readDelayedReply(
  packet: Uint8Array,
): DelayedReplySeen | undefined {
  for (const tlv of readTlvs(packet, STAMP_BASE_SIZE)) {
    if (tlv.malformed || tlv.type !== TLV_DELAYED_REPLY) continue;
    if (tlv.flags & FLAG_M || tlv.length !== DELAYED_REPLY_LENGTH) {
      return undefined;
    }
    const view = new DataView(packet.buffer, packet.byteOffset, packet.length);
    return {
      unrecognized: (tlv.flags & FLAG_U) !== 0,
      delayMs: view.getUint32(tlv.offset),
      maxMs: view.getUint32(tlv.offset + 4),
    };
  }
  return undefined;
}
