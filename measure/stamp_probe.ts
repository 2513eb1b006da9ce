/**
 * The STAMP Session-Sender of `client.ts --stamp` (RFC 8762 §4.2): a
 * {@linkcode ProbeFormat} that sends STAMP test packets instead of the plain
 * probe, and collects from each reply the four timestamps, the reflector's
 * sequence number, the TTL it saw and what its TLVs say (RFC 8972).
 *
 * T1 is the send time and T4 the receive time of this host, T2 and T3 the
 * reflector's receive and transmit times. Forward delay is T2 − T1,
 * backward T4 − T3, reflector time T3 − T2. With clocks not synchronised
 * the one-way figures carry the offset between them; the NTP-style offset
 * estimate ((T2 − T1) + (T3 − T4)) / 2 is reported beside them.
 *
 * @module
 */

import type { ProbeFormat } from "./_common.ts";
import type { ProbeCheck, ProbeHeader } from "./probe.ts";
import type { HostPort } from "../net/address.ts";
import {
  type ErrorEstimate,
  errorEstimateFor,
  OFFSET,
  readReflectorPacket,
  STAMP_BASE_SIZE,
  type TimestampFormat,
  writeSenderPacket,
  writeTimestamp,
} from "../stamp/packet.ts";
import {
  FLAG_M,
  FLAG_U,
  readAddress,
  readTlvs,
  type RequestTlv,
  requestTlvSize,
  TLV_LOCATION,
  TLV_TIMESTAMP_INFO,
  writeRequestTlvs,
} from "../stamp/tlv.ts";

/** The TLVs `--stamp-tlv` accepts. */
export const REQUEST_TLVS: readonly RequestTlv[] = [
  "location",
  "timestamp-info",
];

/** What the Location TLV of a reply said (RFC 8972 §4.2). */
export interface SeenLocation {
  /** The source address and port the reflector saw; the address empty when not returned. */
  source: HostPort;
  /** The destination address and port the reflector saw. */
  destination: HostPort;
}

/** What one flow's replies said. */
export class StampFlowLog {
  /** Forward delays T2 − T1 by sequence number, ms (NaN without a reply). */
  readonly forward: number[] = [];
  /** Backward delays T4 − T3 by sequence number, ms. */
  readonly backward: number[] = [];
  /** Reflector times T3 − T2 by sequence number, ms. */
  readonly reflector: number[] = [];
  /** Offset estimates ((T2 − T1) + (T3 − T4)) / 2 by sequence number, ms. */
  readonly offset: number[] = [];
  /** Intact first replies. */
  replies = 0;
  /** The largest reflector sequence number seen. */
  maxReflectorSeq = -1;
  /** Whether some reply's reflector sequence number differed from the sender's. */
  reflectorCounts = false;
  /** TTLs seen by the reflector, 0 (unknown) left out. */
  readonly ttls: number[] = [];
  /** TLVs and sub-TLVs returned with the U flag. */
  unrecognized = 0;
  /** TLVs and sub-TLVs returned with the M flag. */
  malformed = 0;
  /** Replies of another length than the probe (a reflector that ignores TLVs may cut them). */
  sizeMismatch = 0;
  /** Replies whose base had MBZ bytes not zero. */
  mbzNonzero = 0;
  /** The reflector's timestamp format, from the Z flag of its error estimate. */
  reflectorFormat: TimestampFormat | undefined;
  /** The reflector's S flag: its clock synchronised to UTC. */
  reflectorSynchronized: boolean | undefined;
  /** The reflector's error estimate, ms. */
  reflectorErrorMs = NaN;
  /** The latest Location TLV returned. */
  location: SeenLocation | undefined;
  /** The latest Timestamp Information TLV: sync source and methods, as numbers. */
  timestampInfo: number[] | undefined;
}

/** Options for {@linkcode stampFormat}. */
export interface StampFormatOptions {
  /** The Session-Sender Identifier, 0 to 65535. */
  ssid: number;
  /** TLVs to ask for; Extra Padding fills the rest of each packet. */
  tlvs: readonly RequestTlv[];
  /** The flow's session id (what `decode` answers for this SSID). */
  session: number;
  /** Where the flow's replies are logged. */
  log: StampFlowLog;
}

/** The sender's error estimate: software timestamps, not known synchronised. */
const SENDER_ERROR: ErrorEstimate = errorEstimateFor(1, {
  synchronized: false,
  format: "ntp",
});

/** The smallest packet that carries `tlvs`. */
export function minimumStampSize(tlvs: readonly RequestTlv[]): number {
  return STAMP_BASE_SIZE +
    tlvs.reduce((sum, tlv) => sum + requestTlvSize(tlv), 0);
}

/**
 * A probe format of STAMP test packets for one flow. Throws RangeError from
 * `encode` when a probe is too small for the base packet and its TLVs.
 */
export function stampFormat(options: StampFormatOptions): ProbeFormat {
  const { ssid, tlvs, session, log } = options;
  let template = new Uint8Array(0);
  const expected = new Uint8Array(8);
  return {
    encode(target: Uint8Array, header: ProbeHeader): void {
      if (template.length !== target.length) {
        template = new Uint8Array(target.length);
        writeRequestTlvs(template, STAMP_BASE_SIZE, tlvs);
      }
      target.set(template);
      writeSenderPacket(target, {
        seq: header.seq,
        timestampMs: header.sentAt,
        errorEstimate: SENDER_ERROR,
        ssid,
      });
    },
    decode(data: Uint8Array) {
      if (data.length < STAMP_BASE_SIZE) return undefined;
      const view = new DataView(data.buffer, data.byteOffset, data.length);
      // A reflector of RFC 8762 alone keeps bytes 14-15 as MBZ: SSID 0.
      const seen = view.getUint16(OFFSET.ssid);
      if (seen !== ssid && seen !== 0) return undefined;
      return { session, seq: view.getUint32(OFFSET.senderSeq) };
    },
    verify(data: Uint8Array, header: ProbeHeader): ProbeCheck {
      if (data.length < STAMP_BASE_SIZE) return "truncated";
      writeTimestamp(expected, 0, header.sentAt, "ntp");
      const view = new DataView(data.buffer, data.byteOffset, data.length);
      if (view.getUint32(OFFSET.senderSeq) !== header.seq) return "corrupted";
      for (let i = 0; i < 8; i++) {
        if (data[OFFSET.senderTimestamp + i] !== expected[i]) {
          return "corrupted";
        }
      }
      return "intact";
    },
    onReply(data: Uint8Array, seq: number, receivedAt: number): void {
      recordReply(log, data, seq, performance.timeOrigin + receivedAt);
      if (data.length !== template.length) log.sizeMismatch++;
    },
  };
}

/** Logs what an intact first reply to probe `seq` says; T4 is `t4` (epoch ms). */
function recordReply(
  log: StampFlowLog,
  data: Uint8Array,
  seq: number,
  t4: number,
): void {
  const reply = readReflectorPacket(data);
  if (reply === undefined) return;
  const t1 = reply.senderTimestampMs;
  const t2 = reply.receiveTimestampMs;
  const t3 = reply.timestampMs;
  log.forward[seq] = t2 - t1;
  log.backward[seq] = t4 - t3;
  log.reflector[seq] = t3 - t2;
  log.offset[seq] = ((t2 - t1) + (t3 - t4)) / 2;
  log.replies++;
  log.maxReflectorSeq = Math.max(log.maxReflectorSeq, reply.seq);
  if (reply.seq !== reply.senderSeq) log.reflectorCounts = true;
  if (reply.senderTtl !== 0) log.ttls.push(reply.senderTtl);
  if (!reply.mbzZero) log.mbzNonzero++;
  log.reflectorFormat = reply.errorEstimate.format;
  log.reflectorSynchronized = reply.errorEstimate.synchronized;
  log.reflectorErrorMs = reply.errorEstimate.multiplier *
    2 ** (reply.errorEstimate.scale - 32) * 1000;
  for (const tlv of readTlvs(data, STAMP_BASE_SIZE)) {
    if (tlv.flags & FLAG_U) log.unrecognized++;
    if (tlv.flags & FLAG_M || tlv.malformed) {
      log.malformed++;
      continue;
    }
    if (tlv.flags & FLAG_U) continue;
    if (tlv.type === TLV_LOCATION && tlv.length >= 4) {
      readLocation(log, data, tlv.offset, tlv.length);
    } else if (tlv.type === TLV_TIMESTAMP_INFO && tlv.length === 4) {
      log.timestampInfo = [...data.subarray(tlv.offset, tlv.offset + 4)];
    }
  }
}

function readLocation(
  log: StampFlowLog,
  data: Uint8Array,
  offset: number,
  length: number,
): void {
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  const location: SeenLocation = {
    destination: { hostname: "", port: view.getUint16(offset) },
    source: { hostname: "", port: view.getUint16(offset + 2) },
  };
  const value = data.subarray(0, offset + length);
  for (const sub of readTlvs(value, offset + 4)) {
    if (sub.flags & FLAG_U) log.unrecognized++;
    if (sub.flags & FLAG_M || sub.malformed) log.malformed++;
    const address = readAddress(value, sub);
    if (address !== undefined) {
      location[address.direction].hostname = address.hostname;
    }
  }
  log.location = location;
}
