/**
 * The STAMP Session-Sender's byte checks: a reply held against the request
 * as it was sent, whether the peer echoed it (every byte unchanged) or
 * reflected it (RFC 8762 §4.3.1 and RFC 8972 §4: the fields and TLV headers
 * a reflector copies).
 *
 * @module
 */

import type { ProbeCheck } from "./probe.ts";
import { OFFSET, STAMP_BASE_SIZE } from "../stamp/packet.ts";
import {
  readTlvs,
  SUB,
  TLV_EXTRA_PADDING,
  TLV_LOCATION,
} from "../stamp/tlv.ts";

/**
 * Whether `data` (44 bytes or more) is a Session-Sender packet rather than a
 * reflected one: everything after the SSID is the sender's MBZ, zero, where
 * a reflector writes its receive time T2 and the sender's fields.
 */
export function isPlainEcho(data: Uint8Array): boolean {
  for (let i = OFFSET.receiveTimestamp; i < STAMP_BASE_SIZE; i++) {
    if (data[i] !== 0) return false;
  }
  return true;
}

/**
 * A plain echo against the probe sent: every byte must come back as it
 * left. Longer is corrupted, a shorter prefix truncated.
 */
export function compareEcho(data: Uint8Array, sent: Uint8Array): ProbeCheck {
  if (data.length > sent.length) return "corrupted";
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== sent[i]) return "corrupted";
  }
  return data.length === sent.length ? "intact" : "truncated";
}

/**
 * A Session-Reflector's reply against the probe sent: the fields it copies
 * (RFC 8762 §4.3.1: the sender's sequence number, timestamp and error
 * estimate, and the SSID unless 0) must hold the sender's bytes, and each
 * TLV sent must come back with its type and length (RFC 8972 §4), Extra
 * Padding with its value unchanged and Location with its sub-TLVs' lengths
 * (their types name the family the reflector filled in). A reply of another
 * length is checked as far as both go; the summary counts it as a size
 * mismatch.
 */
export function checkReflected(data: Uint8Array, sent: Uint8Array): ProbeCheck {
  const same = (at: number, from: number, length: number) => {
    for (let i = 0; i < length; i++) {
      if (data[at + i] !== sent[from + i]) return false;
    }
    return true;
  };
  if (
    !same(OFFSET.senderSeq, OFFSET.seq, 4) ||
    !same(OFFSET.senderTimestamp, OFFSET.timestamp, 8) ||
    !same(OFFSET.senderErrorEstimate, OFFSET.errorEstimate, 2) ||
    !(same(OFFSET.ssid, OFFSET.ssid, 2) ||
      (data[OFFSET.ssid] === 0 && data[OFFSET.ssid + 1] === 0))
  ) return "corrupted";
  for (const tlv of readTlvs(sent, STAMP_BASE_SIZE)) {
    const header = tlv.offset - 4;
    if (tlv.offset + tlv.length > data.length) break;
    if (!same(header + 1, header + 1, 3)) return "corrupted";
    if (
      tlv.type === TLV_EXTRA_PADDING &&
      !same(tlv.offset, tlv.offset, tlv.length)
    ) return "corrupted";
    if (tlv.type === TLV_LOCATION) {
      const end = tlv.offset + tlv.length;
      for (const sub of readTlvs(sent.subarray(0, end), tlv.offset + 4)) {
        const at = sub.offset - 4;
        const type = data[at + 1]!;
        const sameGroup = sub.type === SUB.sourceIp
          ? type >= SUB.sourceIp && type <= SUB.sourceIpv6
          : sub.type === SUB.destinationIp
          ? type >= SUB.destinationIp && type <= SUB.destinationIpv6
          : type === sub.type;
        if (!sameGroup || !same(at + 2, at + 2, 2)) return "corrupted";
      }
    }
  }
  return "intact";
}
