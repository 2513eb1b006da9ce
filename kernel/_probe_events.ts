/**
 * The probe loop's events (`ProbeEvent`) as records of the channel
 * (`_channel.ts`): the Worker writes replies, lost probes and failed sends
 * and the main thread turns them back into events, with the probes each
 * flow sent without error as the channel's totals.
 *
 * During the probe loop an event finding the ring full is dropped and
 * counted, so the summary, which the Worker builds from its own books,
 * stays exact. Once the loop is over, the end-of-run events (lost probes)
 * wait for room instead, unless the run is aborted.
 *
 * @module
 */

import type { ProbeCheck } from "../measure/probe.ts";
import type { ProbeEvent } from "../measure/types.ts";
import {
  type Channel,
  ChannelReader,
  ChannelWriter,
  createChannel,
  type EventsMessage,
} from "./_channel.ts";

/** Records the ring holds by default (a power of two). */
export const EVENT_RING_RECORDS = 16384;
// Record codes: kind in bits 0-1, reply details above. The fields after
// the code: flow, seq, bytes (a send error's reason), rttMs.
const REPLY = 0;
const LOST = 1;
const SEND_ERROR = 2;
const KIND_MASK = 3;
const CHECKS: ProbeCheck[] = ["intact", "truncated", "corrupted"];
const DUPLICATE = 1 << 4;
const REORDERED = 1 << 5;
const LATE = 1 << 6;
const CLOCK_STEP = 1 << 7;
const MERGED = 1 << 8;

/**
 * Allocates the channel of a run of `flows` flows with a ring of `records`
 * events (a power of two; throws RangeError otherwise).
 */
export function createProbeChannel(
  flows: number,
  records = EVENT_RING_RECORDS,
): Channel {
  return createChannel({ records, totals: flows });
}

/** The Worker's end. */
export class ProbeEventWriter {
  /** Probes sent without error, per flow; the reader hands them on. */
  readonly sent: Float64Array;
  #channel: ChannelWriter;

  /** Writes into `channel` and posts notifications with `post`. */
  constructor(channel: Channel, post: (message: EventsMessage) => void) {
    this.#channel = new ChannelWriter(channel, post);
    this.sent = this.#channel.totals;
  }

  /** Events dropped because the ring was full. */
  get dropped(): number {
    return this.#channel.dropped;
  }

  /** Events written and not yet announced. */
  get unposted(): number {
    return this.#channel.unposted;
  }

  /** Writes `event`, or counts it as dropped when the reader is behind. */
  push(event: ProbeEvent): void {
    if (event.type !== "sweep" && this.#channel.reserve()) this.#write(event);
  }

  /**
   * Writes `event` once the reader has made room (for the end of a run,
   * after the probe loop); drops it if `aborted()` turns true meanwhile.
   */
  pushWaiting(event: ProbeEvent, aborted: () => boolean): void {
    if (event.type !== "sweep" && this.#channel.reserveWaiting(0, aborted)) {
      this.#write(event);
    }
  }

  /**
   * Keeps a probe format's detail of a reply for the next notification
   * (see `ChannelWriter.detail`).
   */
  detail(detail: unknown): void {
    this.#channel.detail(detail);
  }

  /**
   * Posts a notification when events wait and none is in flight (`force`:
   * whatever is in flight, for the end of the run); returns whether it did.
   */
  flush(force = false): boolean {
    return this.#channel.flush(force);
  }

  #write(event: Exclude<ProbeEvent, { type: "sweep" }>): void {
    const channel = this.#channel;
    const records = channel.records;
    const at = channel.at;
    records[at + 1] = event.flow;
    records[at + 2] = event.seq;
    switch (event.type) {
      case "reply":
        records[at] = REPLY | CHECKS.indexOf(event.check) << 2 |
          (event.duplicate ? DUPLICATE : 0) |
          (event.reordered ? REORDERED : 0) | (event.late ? LATE : 0) |
          (event.clockStep ? CLOCK_STEP : 0) | (event.merged ? MERGED : 0);
        records[at + 3] = event.bytes;
        records[at + 4] = event.rttMs;
        break;
      case "lost":
        records[at] = LOST;
        break;
      case "send_error":
        records[at] = SEND_ERROR;
        records[at + 3] = channel.intern(event.reason);
        break;
    }
    channel.commit();
  }
}

function decode(reader: ChannelReader): ProbeEvent {
  const records = reader.records;
  const at = reader.at;
  const code = records[at]!;
  const flow = records[at + 1]!;
  const seq = records[at + 2]!;
  const kind = code & KIND_MASK;
  if (kind === LOST) return { type: "lost", flow, seq };
  if (kind === SEND_ERROR) {
    return {
      type: "send_error",
      flow,
      seq,
      reason: reader.string(records[at + 3]!) ?? "unknown error",
    };
  }
  const event: ProbeEvent = {
    type: "reply",
    flow,
    seq,
    bytes: records[at + 3]!,
    rttMs: records[at + 4]!,
    check: CHECKS[(code >> 2) & 3]!,
    duplicate: (code & DUPLICATE) !== 0,
    reordered: (code & REORDERED) !== 0,
    late: (code & LATE) !== 0,
  };
  if (code & CLOCK_STEP) event.clockStep = true;
  if (code & MERGED) event.merged = true;
  return event;
}

/** The main thread's end: turns records back into events. */
export class ProbeEventReader {
  /** Probes sent without error, per flow, as the Worker last wrote them. */
  readonly sent: Float64Array;
  #channel: ChannelReader;

  /** Reads `channel`. */
  constructor(channel: Channel) {
    this.#channel = new ChannelReader(channel);
    this.sent = this.#channel.totals;
  }

  /** Events the Worker dropped because this end fell behind. */
  get dropped(): number {
    return this.#channel.dropped;
  }

  /**
   * Hands the message's details to `onDetail`, then every event up to its
   * `upTo` to `onEvent`, freeing their room, and lets the Worker post the
   * next notification.
   */
  read(
    message: EventsMessage,
    onEvent?: (event: ProbeEvent) => void,
    onDetail?: (detail: unknown) => void,
  ): void {
    this.#channel.read(message, decode, onEvent, onDetail);
  }
}
