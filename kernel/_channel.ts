/**
 * How the kernel engine's Worker hands its probe events to the main thread
 * without letting either side grow without bound: a ring of fixed-size
 * records in a SharedArrayBuffer, written by the Worker, read by the main
 * thread, and at most one small notification message in flight during the
 * probe loop.
 *
 * The Worker never waits for the reader while it probes: when the ring is
 * full (a main thread that falls behind, such as `--ndjson` into a slow
 * pipe), the event is dropped and counted, never the datagram, so the
 * summary, which the Worker builds from its own books, stays exact. Once
 * the probe loop is over, the end-of-run events (lost probes) wait for room
 * instead, unless the run is aborted.
 *
 * @module
 */

import type { ProbeCheck } from "../measure/probe.ts";
import type { ProbeEvent } from "../measure/_common.ts";

/** Records the ring holds by default (a power of two). */
export const EVENT_RING_RECORDS = 16384;
/** Float64 fields per record: code, flow, seq, bytes (or reason), rttMs. */
const FIELDS = 5;
// Indices into the Int32 control words.
const WRITTEN = 0;
const READ = 1;
const PENDING = 2;
const DROPPED = 3;
const CONTROL_WORDS = 4;
// Record codes: kind in bits 0-1, reply details above.
const REPLY = 0;
const LOST = 1;
const SEND_ERROR = 2;
const KIND_MASK = 3;
const CHECKS: ProbeCheck[] = ["intact", "truncated", "corrupted"];
const DUPLICATE = 1 << 4;
const REORDERED = 1 << 5;
const LATE = 1 << 6;
const CLOCK_STEP = 1 << 7;
/** How long the end of a run waits for the reader per try, in ms. */
const END_WAIT_SLICE_MS = 50;

/** The shared memory of one run's events. */
export interface EventChannel {
  /** A power of two of records of Float64 fields. */
  records: SharedArrayBuffer;
  /** Int32 words: written, read, notification pending, dropped. */
  control: SharedArrayBuffer;
  /** Float64 per flow: probes sent without error so far. */
  sent: SharedArrayBuffer;
}

/** The notification the Worker posts: records up to `upTo` are readable. */
export interface EventsMessage {
  type: "events";
  /** Records written so far (a wrapping 32-bit count). */
  upTo: number;
  /** Send-error reasons first used since the last message, in order. */
  reasons: string[];
  /**
   * What a probe format read from replies since the last message (see
   * `EventWriter.detail`), handed on before the events.
   */
  details?: unknown[];
}

/**
 * Allocates the shared memory for `flows` flows and a ring of `records`
 * events (a power of two; throws RangeError otherwise).
 */
export function createEventChannel(
  flows: number,
  records = EVENT_RING_RECORDS,
): EventChannel {
  if (!Number.isInteger(Math.log2(records))) {
    throw new RangeError(
      `Cannot hold ${records} events: expected a power of two`,
    );
  }
  return {
    records: new SharedArrayBuffer(
      records * FIELDS * Float64Array.BYTES_PER_ELEMENT,
    ),
    control: new SharedArrayBuffer(
      CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT,
    ),
    sent: new SharedArrayBuffer(flows * Float64Array.BYTES_PER_ELEMENT),
  };
}

/**
 * The Worker's end. `push` writes one event or drops it when the ring is
 * full; `flush` posts a notification when one is due and none is in
 * flight. Nothing here allocates per event except a send error's first use
 * of a reason.
 */
export class EventWriter {
  /** Probes sent without error, per flow; the reader hands them on. */
  readonly sent: Float64Array;
  #records: Float64Array;
  #mask: number;
  #control: Int32Array;
  #post: (message: EventsMessage) => void;
  #written = 0;
  #posted = 0;
  #reasons = new Map<string, number>();
  #newReasons: string[] = [];
  #details: unknown[] = [];

  constructor(channel: EventChannel, post: (message: EventsMessage) => void) {
    this.sent = new Float64Array(channel.sent);
    this.#records = new Float64Array(channel.records);
    this.#mask = this.#records.length / FIELDS - 1;
    this.#control = new Int32Array(channel.control);
    this.#post = post;
  }

  /** Events dropped because the ring was full. */
  get dropped(): number {
    return Atomics.load(this.#control, DROPPED);
  }

  /** Events written and not yet announced. */
  get unposted(): number {
    return (this.#written - this.#posted) | 0;
  }

  /** Writes `event`, or counts it as dropped when the reader is behind. */
  push(event: ProbeEvent): void {
    if (!this.#hasRoom()) {
      Atomics.add(this.#control, DROPPED, 1);
      return;
    }
    this.#write(event);
  }

  /**
   * Keeps a probe format's `detail` of a reply for the next notification;
   * past as many as the ring holds, while the reader is behind, it is
   * dropped and counted like an event.
   */
  detail(detail: unknown): void {
    if (this.#details.length > this.#mask) {
      Atomics.add(this.#control, DROPPED, 1);
      return;
    }
    this.#details.push(detail);
  }

  /**
   * Posts a notification when events wait and none is in flight (`force`:
   * whatever is in flight, for the end of the run); returns whether it did.
   */
  flush(force = false): boolean {
    if (
      this.unposted === 0 && this.#newReasons.length === 0 &&
      this.#details.length === 0
    ) return false;
    if (!force && Atomics.load(this.#control, PENDING) !== 0) return false;
    Atomics.store(this.#control, PENDING, 1);
    this.#posted = this.#written;
    const reasons = this.#newReasons;
    if (reasons.length > 0) this.#newReasons = [];
    const details = this.#details;
    if (details.length > 0) this.#details = [];
    this.#post({
      type: "events",
      upTo: this.#written,
      reasons,
      ...(details.length > 0 ? { details } : {}),
    });
    return true;
  }

  /**
   * Writes `event` once the reader has made room (for the end of a run,
   * after the probe loop); drops it if `aborted()` turns true meanwhile.
   */
  pushWaiting(event: ProbeEvent, aborted: () => boolean): void {
    while (!this.#hasRoom()) {
      if (aborted()) {
        Atomics.add(this.#control, DROPPED, 1);
        return;
      }
      this.flush();
      Atomics.wait(
        this.#control,
        READ,
        Atomics.load(this.#control, READ),
        END_WAIT_SLICE_MS,
      );
    }
    this.#write(event);
  }

  #hasRoom(): boolean {
    const read = Atomics.load(this.#control, READ);
    return ((this.#written - read) | 0) <= this.#mask;
  }

  #write(event: ProbeEvent): void {
    if (event.type === "sweep") return;
    const at = (this.#written & this.#mask) * FIELDS;
    const records = this.#records;
    records[at + 1] = event.flow;
    records[at + 2] = event.seq;
    switch (event.type) {
      case "reply":
        records[at] = REPLY | CHECKS.indexOf(event.check) << 2 |
          (event.duplicate ? DUPLICATE : 0) |
          (event.reordered ? REORDERED : 0) | (event.late ? LATE : 0) |
          (event.clockStep ? CLOCK_STEP : 0);
        records[at + 3] = event.bytes;
        records[at + 4] = event.rttMs;
        break;
      case "lost":
        records[at] = LOST;
        break;
      case "send_error":
        records[at] = SEND_ERROR;
        records[at + 3] = this.#reasonIndex(event.reason);
        break;
    }
    this.#written = (this.#written + 1) | 0;
    Atomics.store(this.#control, WRITTEN, this.#written);
  }

  #reasonIndex(reason: string): number {
    let index = this.#reasons.get(reason);
    if (index === undefined) {
      index = this.#reasons.size;
      this.#reasons.set(reason, index);
      this.#newReasons.push(reason);
    }
    return index;
  }
}

/** The main thread's end: turns records back into events. */
export class EventReader {
  /** Probes sent without error, per flow, as the Worker last wrote them. */
  readonly sent: Float64Array;
  #records: Float64Array;
  #mask: number;
  #control: Int32Array;
  #read = 0;
  #reasons: string[] = [];

  constructor(channel: EventChannel) {
    this.sent = new Float64Array(channel.sent);
    this.#records = new Float64Array(channel.records);
    this.#mask = this.#records.length / FIELDS - 1;
    this.#control = new Int32Array(channel.control);
  }

  /** Events the Worker dropped because this end fell behind. */
  get dropped(): number {
    return Atomics.load(this.#control, DROPPED);
  }

  /**
   * Hands every record up to the message's `upTo` to `onEvent`, frees
   * their room, and lets the Worker post the next notification.
   */
  read(message: EventsMessage, onEvent?: (event: ProbeEvent) => void): void {
    this.#reasons.push(...message.reasons);
    const records = this.#records;
    while (((message.upTo - this.#read) | 0) > 0) {
      const at = (this.#read & this.#mask) * FIELDS;
      const code = records[at]!;
      const flow = records[at + 1]!;
      const seq = records[at + 2]!;
      const kind = code & KIND_MASK;
      let event: ProbeEvent;
      if (kind === LOST) event = { type: "lost", flow, seq };
      else if (kind === SEND_ERROR) {
        event = {
          type: "send_error",
          flow,
          seq,
          reason: this.#reasons[records[at + 3]!] ?? "unknown error",
        };
      } else {
        event = {
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
      }
      this.#read = (this.#read + 1) | 0;
      // Room is freed before the event is handed on: a slow handler must
      // not keep the ring full longer than it has to.
      Atomics.store(this.#control, READ, this.#read);
      onEvent?.(event);
    }
    Atomics.notify(this.#control, READ);
    Atomics.store(this.#control, PENDING, 0);
  }
}
