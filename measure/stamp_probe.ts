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
 * On the kernel engine (`kernel/_probe_worker.ts`) the format runs in the Worker,
 * built by {@linkcode createEngineFormat} from this module's URL: T1 is the
 * CLOCK_REALTIME read right before `sendto`, T4 the kernel's receive
 * timestamp, and each reply's fields travel to the main thread as a
 * {@linkcode StampReply} in the engine's batched events, where
 * {@linkcode StampFlowLog.add} logs them as on sockets.
 *
 * @module
 */

import type { ProbeFormat } from "./_common.ts";
import type {
  EngineFormatContext,
  EngineProbeFormat,
} from "../kernel/probes.ts";
import type { ProbeCheck, ProbeHeader } from "./probe.ts";
import type { HostPort } from "../net/address.ts";
import {
  OFFSET,
  readReflectorPacket,
  SOFTWARE_SENDER_ERROR,
  STAMP_BASE_SIZE,
  type TimestampFormat,
  writeSenderPacket,
  writeTimestamp,
} from "../stamp/packet.ts";
import { warmUpFormat } from "./_stamp_warm_up.ts";
import { checkReflected, compareEcho, isPlainEcho } from "./_stamp_check.ts";
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
  "class-of-service",
];

/** What the Location TLV of a reply said (RFC 8972 §4.2). */
export interface SeenLocation {
  /** The source address and port the reflector saw; the address empty when not returned. */
  source: HostPort;
  /** The destination address and port the reflector saw. */
  destination: HostPort;
}

/** What one reply said, read where it arrived (structured-cloneable). */
export interface StampReply {
  /** T1, T2, T3, T4 in ms since the Unix epoch. */
  t1: number;
  t2: number;
  t3: number;
  t4: number;
  /** The reflector's sequence number. */
  seq: number;
  /** The Session-Sender's sequence number it answers. */
  senderSeq: number;
  /** Whether it differs from the sender's. */
  counts: boolean;
  /** The TTL the reflector saw; 0 unknown. */
  ttl: number;
  /** Whether the MBZ bytes were zero. */
  mbzZero: boolean;
  /** The reflector's timestamp format and S flag. */
  format: TimestampFormat;
  synchronized: boolean;
  /** The reflector's error estimate, ms. */
  errorMs: number;
  /** TLVs and sub-TLVs returned with U, and with M. */
  unrecognized: number;
  malformed: number;
  /** Another length than the probe. */
  sizeMismatch: boolean;
  /** The Location TLV, when returned. */
  location?: SeenLocation;
  /** The Timestamp Information TLV, when returned. */
  timestampInfo?: number[];
  /**
   * Our own Session-Sender packet came back unchanged: the target is a
   * plain echo server, and the other fields say nothing.
   */
  plainEcho?: boolean;
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
  /** The largest Session-Sender sequence number a reply with STAMP fields answered. */
  maxSenderSeq = -1;
  /**
   * Replies whose reflector sequence number was above the sender's: a
   * stateful reflector that counted a duplicated request, or whose count did not start at 0.
   */
  reflectorAhead = 0;
  /** Replies whose timestamps cannot be right (see {@linkcode timestampProblem}). */
  badTimestamps = 0;
  /** What was wrong with the first such reply's timestamps. */
  timestampProblem: string | undefined;
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
  /** Replies that were the request unchanged (a plain echo server). */
  plainEchoes = 0;

  /** Logs what the intact first reply to probe `seq` said. */
  add(seq: number, reply: StampReply): void {
    if (reply.plainEcho) {
      this.plainEchoes++;
      return;
    }
    const problem = timestampProblem(reply);
    if (problem === undefined) {
      this.forward[seq] = reply.t2 - reply.t1;
      this.backward[seq] = reply.t4 - reply.t3;
      this.reflector[seq] = reply.t3 - reply.t2;
      this.offset[seq] = ((reply.t2 - reply.t1) + (reply.t3 - reply.t4)) / 2;
    } else {
      this.badTimestamps++;
      this.timestampProblem ??= problem;
    }
    this.replies++;
    this.maxReflectorSeq = Math.max(this.maxReflectorSeq, reply.seq);
    this.maxSenderSeq = Math.max(this.maxSenderSeq, reply.senderSeq);
    if (reply.seq > reply.senderSeq) this.reflectorAhead++;
    if (reply.counts) this.reflectorCounts = true;
    if (reply.ttl !== 0) this.ttls.push(reply.ttl);
    if (!reply.mbzZero) this.mbzNonzero++;
    if (reply.sizeMismatch) this.sizeMismatch++;
    this.reflectorFormat = reply.format;
    this.reflectorSynchronized = reply.synchronized;
    this.reflectorErrorMs = reply.errorMs;
    this.unrecognized += reply.unrecognized;
    this.malformed += reply.malformed;
    if (reply.location) this.location = reply.location;
    if (reply.timestampInfo) this.timestampInfo = reply.timestampInfo;
  }
}

/** How far a reflector's clock may be from this host's before its timestamps are not believed, ms. */
export const MAX_CLOCK_GAP_MS = 86_400_000;

/**
 * How much longer than the round trip the reflector's time may be before
 * its timestamps are not believed, ms: what clock resolution and rates
 * could explain. The reflector receives after T1 and sends before T4.
 */
const REFLECTOR_TIME_SLACK_MS = 1;

/**
 * What cannot be right about a reply's timestamps, or `undefined`: T2 or T3
 * more than a day from this host's clock (a reflector writing timestamps
 * in another format than its Z flag says gives decades), T3 before T2
 * (a negative reflector time), or T3 − T2 longer than the round trip.
 */
export function timestampProblem(
  reply: Pick<StampReply, "t1" | "t2" | "t3" | "t4">,
): string | undefined {
  const { t1, t2, t3, t4 } = reply;
  if (
    !(Math.abs(t2 - t1) <= MAX_CLOCK_GAP_MS &&
      Math.abs(t3 - t4) <= MAX_CLOCK_GAP_MS)
  ) {
    return "the reflector's timestamps are more than a day from this host's clock (a timestamp format other than its Z flag says?)";
  }
  if (t3 < t2) {
    return "the reflector's transmit time (T3) is before its receive time (T2)";
  }
  if (t3 - t2 > t4 - t1 + REFLECTOR_TIME_SLACK_MS) {
    return "the reflector's time (T3 − T2) is longer than the round trip (T4 − T1)";
  }
  return undefined;
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
  return senderFormat(options, {
    onReply: (seq, reply) => options.log.add(seq, reply),
    epochMs: (receivedAt) => performance.timeOrigin + receivedAt,
  });
}

/**
 * The Session-Sender of one flow inside the engine's Worker, loaded by this
 * module's URL (`FlowRunOptions.engineFormat`); `options` are
 * {@linkcode StampFormatOptions} without the log, which stays on the main
 * thread.
 */
export function createEngineFormat(
  options: Omit<StampFormatOptions, "log">,
  context: EngineFormatContext,
): EngineProbeFormat {
  return {
    ...senderFormat(options, {
      onReply: context.report,
      epochMs: () => context.arrivalEpochMs(),
    }),
    writeSendTime(packet: Uint8Array, epochMs: number): void {
      writeTimestamp(packet, OFFSET.timestamp, epochMs, "ntp");
    },
  };
}

function senderFormat(
  options: Omit<StampFormatOptions, "log">,
  sink: {
    onReply(seq: number, reply: StampReply): void;
    epochMs(receivedAt: number): number;
  },
): ProbeFormat {
  const { ssid, tlvs, session } = options;
  let template = new Uint8Array(0);
  let sent = new Uint8Array(0);
  const encode = (target: Uint8Array, header: ProbeHeader): void => {
    if (template.length !== target.length) {
      template = new Uint8Array(target.length);
      writeRequestTlvs(template, STAMP_BASE_SIZE, tlvs);
    }
    target.set(template);
    writeSenderPacket(target, {
      seq: header.seq,
      timestampMs: header.sentAt,
      errorEstimate: SOFTWARE_SENDER_ERROR,
      ssid,
    });
  };
  const format: ProbeFormat = {
    warmUp(size: number): void {
      // This format's own first encode makes its template.
      encode(new Uint8Array(size), { session, seq: 0, sentAt: 0 });
      const sinkless = senderFormat(options, {
        onReply: () => {},
        epochMs: (receivedAt) => receivedAt,
      });
      warmUpFormat(sinkless, session, size);
    },
    encode,
    decode(data: Uint8Array) {
      if (data.length < STAMP_BASE_SIZE) return undefined;
      const view = new DataView(data.buffer, data.byteOffset, data.length);
      // A reflector of RFC 8762 alone keeps bytes 14-15 as MBZ: SSID 0.
      const seen = view.getUint16(OFFSET.ssid);
      if (seen !== ssid && seen !== 0) return undefined;
      // Our request unchanged carries its sequence number where a
      // reflector puts its own; the Session-Sender's would read 0.
      const at = isPlainEcho(data) ? OFFSET.seq : OFFSET.senderSeq;
      return { session, seq: view.getUint32(at) };
    },
    verify(data: Uint8Array, header: ProbeHeader, size: number): ProbeCheck {
      if (data.length < STAMP_BASE_SIZE) return "truncated";
      // The probe as it was sent, to hold the reply against byte by byte.
      if (sent.length !== size) sent = new Uint8Array(size);
      encode(sent, header);
      return isPlainEcho(data)
        ? compareEcho(data, sent)
        : checkReflected(data, sent);
    },
    onReply(data: Uint8Array, seq: number, receivedAt: number): void {
      if (isPlainEcho(data)) {
        sink.onReply(seq, PLAIN_ECHO);
        return;
      }
      const reply = readReply(data, sink.epochMs(receivedAt));
      if (reply === undefined) return;
      reply.sizeMismatch = data.length !== template.length;
      sink.onReply(seq, reply);
    },
  };
  return format;
}

/** The log entry of a reply that was the request unchanged. */
const PLAIN_ECHO: StampReply = {
  t1: NaN,
  t2: NaN,
  t3: NaN,
  t4: NaN,
  seq: 0,
  senderSeq: 0,
  counts: false,
  ttl: 0,
  mbzZero: true,
  format: "ntp",
  synchronized: false,
  errorMs: NaN,
  unrecognized: 0,
  malformed: 0,
  sizeMismatch: false,
  plainEcho: true,
};

/** What an intact reply says; T4 is `t4` (epoch ms). */
function readReply(data: Uint8Array, t4: number): StampReply | undefined {
  const packet = readReflectorPacket(data);
  if (packet === undefined) return undefined;
  const reply: StampReply = {
    t1: packet.senderTimestampMs,
    t2: packet.receiveTimestampMs,
    t3: packet.timestampMs,
    t4,
    seq: packet.seq,
    senderSeq: packet.senderSeq,
    counts: packet.seq !== packet.senderSeq,
    ttl: packet.senderTtl,
    mbzZero: packet.mbzZero,
    format: packet.errorEstimate.format,
    synchronized: packet.errorEstimate.synchronized,
    errorMs: packet.errorEstimate.multiplier *
      2 ** (packet.errorEstimate.scale - 32) * 1000,
    unrecognized: 0,
    malformed: 0,
    sizeMismatch: false,
  };
  for (const tlv of readTlvs(data, STAMP_BASE_SIZE)) {
    if (tlv.flags & FLAG_U) reply.unrecognized++;
    if (tlv.flags & FLAG_M || tlv.malformed) {
      reply.malformed++;
      continue;
    }
    if (tlv.flags & FLAG_U) continue;
    if (tlv.type === TLV_LOCATION && tlv.length >= 4) {
      readLocation(reply, data, tlv.offset, tlv.length);
    } else if (tlv.type === TLV_TIMESTAMP_INFO && tlv.length === 4) {
      reply.timestampInfo = [...data.subarray(tlv.offset, tlv.offset + 4)];
    }
  }
  return reply;
}

function readLocation(
  log: StampReply,
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
