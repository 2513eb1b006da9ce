/**
 * The bookkeeping of one flow, whatever carries its datagrams: the probes
 * (send times, sizes, per sequence number), attributing each datagram to
 * its probe, verifying it, and counting late, truncated, stray, duplicate,
 * reordered and ignored replies, with an optional ring for runs without
 * end. The socket flow (`_flow.ts`) and the kernel engine's Worker
 * (`kernel/_probe_worker.ts`) both feed it, so a reply counts the same either way.
 *
 * @module
 */

import type { HostPort, ResolvedAddress } from "../net/address.ts";
import {
  PROBE_MAGIC,
  type ProbeCheck,
  type ProbeHeader,
  verifyProbe,
} from "./probe.ts";
import { type ReplyCounts, ReplyTracker } from "./stats.ts";
import type { ProbeFormat } from "./_common.ts";
import type { ReplyEvent, SendErrorEvent } from "./types.ts";
import { Times, Wakeup } from "./_times.ts";

/**
 * The shortest end-of-run grace period, in ms: after the last probe has its
 * first reply, a copy of an echo (a duplicating path, a retransmitting
 * middlebox) can still be on its way, later than any RTT seen so far.
 */
export const GRACE_MIN_MS = 100;
/** The grace period is at least this many times the largest RTT seen. */
const GRACE_RTT_FACTOR = 2;
/**
 * How many of the latest probes an echo shorter than the sequence number
 * (under 12 bytes) is matched against by prefix; only an unambiguous match
 * counts.
 */
const SHORT_MATCH_WINDOW = 1024;
/** Bytes of magic, session id and sequence number: enough to attribute. */
const ID_BYTES = 12;
// Per-probe flags.
const EXPIRED = 1;
const UNSENT = 2;

function readUint32(data: Uint8Array, at: number): number {
  return (data[at]! << 24 | data[at + 1]! << 16 | data[at + 2]! << 8 |
    data[at + 3]!) >>> 0;
}

/** What a flow needs besides its index and session. */
export interface FlowOptions {
  target: ResolvedAddress;
  bind?: HostPort;
  /** A reply slower than this, in ms, is late. */
  timeoutMs: number;
  /** Every attributed reply, duplicates and damaged ones included. */
  onReply?: (event: ReplyEvent) => void;
  /** Every send that failed; the flow goes on. */
  onSendError?: (event: SendErrorEvent) => void;
  onSend?: (flow: number, seq: number) => void;
  /**
   * Keep the state of the latest `ring` probes only (a power of two), so a
   * run without end (the monitor) holds fixed memory: no RTT list, and a
   * reply to an older probe is ignored. With it, loss is decided by the
   * timeout: {@linkcode ProbeBook.expire} and a reply slower than the
   * timeout call `onLost` once per probe without an answer in time.
   */
  ring?: number;
  /** A probe got no reply within the timeout (only with `ring`). */
  onLost?: (flow: number, seq: number) => void;
  /** The probe format; the plain probe of `probe.ts` by default. */
  format?: ProbeFormat;
}

/**
 * A carrier's own round-trip measurement (the kernel engine's timestamps):
 * `rttMs(seq)` gives probe `seq`'s round trip in ms and sets `clockStep`
 * when the wall clock stepped meanwhile.
 */
export interface ReplyTiming {
  rttMs(seq: number): number;
  clockStep: boolean;
}

/**
 * How one datagram arrived. `now` is on the book's clock (the one its send
 * times use); `timing`, when given, replaces `now − sentAt` as the round
 * trip; `length` is the datagram's full size when `data` holds only its
 * start.
 */
export interface Arrival {
  fromTarget: boolean;
  now: number;
  length?: number;
  timing?: ReplyTiming;
}

/** The probe `ask()` waits for, and its first reply once there is one. */
export interface Awaited {
  seq: number;
  reply?: ReplyEvent;
}

/**
 * One flow's probes and what came back; the carrier calls
 * {@linkcode beginSend}, {@linkcode stamp}, {@linkcode sendFailed} and
 * {@linkcode handle}. Times are milliseconds on one clock of the carrier's
 * choosing; `epochAt` is each probe's send time as its header carries it.
 */
export class ProbeBook {
  readonly tracker: ReplyTracker;
  readonly sentAt: Times;
  readonly epochAt: Times;
  readonly scheduled: Times;
  readonly sizes: Times;
  readonly rttBySeq: Times;
  /** Round-trip times of first intact replies in arrival order, in ms. */
  readonly arrivals: number[] = [];
  readonly wakeup = new Wakeup();
  /** Sequence numbers used: probes handed to the socket, failed sends included. */
  sent = 0;
  /** Sends that failed (never left this host); see {@linkcode unsent}. */
  sendErrors = 0;
  /** The OS's reason for the first failed send. */
  sendError: string | undefined;
  inflight = 0;
  late = 0;
  truncated = 0;
  ignored = 0;
  /** Our session but a sequence number never sent: a damaged header. */
  strays = 0;
  /** Replies whose round trip a clock step spoilt (see `ReplyEvent.clockStep`). */
  clockSteps = 0;
  /**
   * Replies that carried several whole probes one after another (a server
   * that merges datagrams: a stream relay); each probe counts as answered.
   */
  merged = 0;
  firstReplyAt = NaN;
  lastReplyAt = NaN;
  /** The largest RTT of any attributed reply, duplicates included, in ms. */
  maxRttMs = 0;
  error: unknown;
  /** The probe a one-at-a-time caller (the sweep) waits for. */
  awaited: Awaited | undefined;
  /** The local address the flow sends from. */
  local: HostPort = { hostname: "", port: 0 };
  #flags = new Uint8Array(64);
  #oldest = 0;
  #id = { session: 0, seq: 0 };
  /** Handling the probes of a merged reply: their events say so. */
  #inMerged = false;
  /** Handling the probes of a damaged merged reply: none is intact. */
  #inDamaged = false;

  constructor(
    readonly index: number,
    readonly session: number,
    readonly options: FlowOptions,
  ) {
    const { ring } = options;
    this.tracker = new ReplyTracker(ring);
    this.sentAt = new Times(ring);
    this.epochAt = new Times(ring);
    this.scheduled = new Times(ring);
    this.sizes = new Times(ring);
    this.rttBySeq = new Times(ring);
    if (ring !== undefined) this.#flags = new Uint8Array(ring);
  }

  /**
   * The counts so far; stray headers count as corrupted replies, and a
   * failed send is neither sent nor lost.
   */
  counts(): ReplyCounts {
    const counts = this.tracker.counts(
      this.sent - this.sendErrors,
      this.sendErrors,
    );
    counts.corrupted += this.strays;
    return counts;
  }

  /** Whether the send of probe `seq` failed, so it never left. */
  unsent(seq: number): boolean {
    return ((this.#flags[this.#slot(seq)] ?? 0) & UNSENT) !== 0;
  }

  /** Whether every probe that left has a reply. */
  allAnswered(): boolean {
    return this.tracker.answeredCount >= this.sent - this.sendErrors;
  }

  /**
   * The grace period after the last first reply, in ms:
   * {@linkcode GRACE_MIN_MS} or twice the largest RTT seen (duplicates
   * included), whichever is longer.
   */
  graceMs(): number {
    return Math.max(GRACE_MIN_MS, GRACE_RTT_FACTOR * this.maxRttMs);
  }

  /**
   * Takes the next sequence number for a probe of `size` bytes sent at
   * `now` (`epochMs` in its header), due at `scheduledAt`; it is in flight.
   */
  beginSend(
    size: number,
    now: number,
    epochMs: number,
    scheduledAt?: number,
  ): number {
    const seq = this.sent++;
    this.#setFlag(seq, 0);
    this.tracker.forget(seq);
    this.rttBySeq.set(seq, NaN);
    this.sizes.set(seq, size);
    this.stamp(seq, now, epochMs);
    if (scheduledAt !== undefined) this.scheduled.set(seq, scheduledAt);
    this.inflight++;
    return seq;
  }

  /** Sets the send time of probe `seq`, when known only once it left. */
  stamp(seq: number, now: number, epochMs: number): void {
    this.sentAt.set(seq, now);
    this.epochAt.set(seq, epochMs);
  }

  /** Counts the failed send of probe `seq` and reports it. */
  sendFailed(seq: number, reason: string): void {
    this.inflight--;
    this.sendErrors++;
    this.#setFlag(seq, UNSENT);
    this.sendError ??= reason;
    this.options.onSendError?.({
      type: "send_error",
      flow: this.index,
      seq,
      reason,
    });
  }

  /** The header probe `seq` carries. */
  header(seq: number): ProbeHeader {
    return { session: this.session, seq, sentAt: this.epochAt.get(seq) };
  }

  /**
   * Frees the window slots of probes whose timeout has passed; returns when
   * the next one will, on the book's clock.
   */
  expire(now: number): number {
    const { timeoutMs } = this.options;
    while (this.#oldest < this.sent) {
      const seq = this.#oldest;
      if (!this.tracker.answered(seq) && !this.unsent(seq)) {
        const deadline = this.sentAt.get(seq) + timeoutMs;
        if (deadline > now) return deadline;
        this.#expire(seq);
      }
      this.#oldest++;
    }
    return now + timeoutMs;
  }

  /** Marks probe `seq` as past its timeout: its slot is free, and with a ring it is lost. */
  #expire(seq: number): void {
    this.#setFlag(seq, EXPIRED);
    this.inflight--;
    if (this.options.ring !== undefined) this.options.onLost?.(this.index, seq);
  }

  #expired(seq: number): boolean {
    return ((this.#flags[this.#slot(seq)] ?? 0) & EXPIRED) !== 0;
  }

  #slot(seq: number): number {
    const { ring } = this.options;
    return ring === undefined ? seq : seq & (ring - 1);
  }

  #setFlag(seq: number, flag: number): void {
    if (this.options.ring !== undefined) {
      const slot = this.#slot(seq);
      this.#flags[slot] = flag === 0 ? 0 : this.#flags[slot]! | flag;
      return;
    }
    if (seq >= this.#flags.length) {
      const grown = new Uint8Array(Math.max(seq * 2, 64));
      grown.set(this.#flags);
      this.#flags = grown;
    }
    this.#flags[seq] = flag === 0 ? 0 : this.#flags[seq]! | flag;
  }

  /** The probe a datagram answers; counts it as ignored or stray if none. */
  #attribute(data: Uint8Array, fromTarget: boolean): number | undefined {
    if (!fromTarget) {
      this.ignored++;
      return undefined;
    }
    const id = this.#decode(data);
    if (id !== undefined && id.session === this.session) {
      const { ring } = this.options;
      if (ring !== undefined && id.seq < this.sent - ring) {
        // Older than the ring holds: its slot now belongs to a newer probe.
        this.ignored++;
        return undefined;
      }
      if (id.seq < this.sent && !this.unsent(id.seq)) return id.seq;
      this.strays++;
      return undefined;
    }
    const seq = data.length < ID_BYTES ? this.#matchPrefix(data) : undefined;
    if (seq !== undefined) return seq;
    this.ignored++;
    return undefined;
  }

  /**
   * Session id and sequence number of a datagram that starts with the
   * magic and holds them (12 bytes or more, so an echo cut below the
   * header too); `undefined` otherwise. The result is reused by the next
   * call: a reply allocates nothing here.
   */
  /** The session and sequence number a datagram names, in the flow's format. */
  #decode(data: Uint8Array): { session: number; seq: number } | undefined {
    const { format } = this.options;
    return format !== undefined ? format.decode(data) : this.#readId(data);
  }

  #readId(data: Uint8Array): { session: number; seq: number } | undefined {
    if (data.length < ID_BYTES || readUint32(data, 0) !== PROBE_MAGIC) {
      return undefined;
    }
    this.#id.session = readUint32(data, 4);
    this.#id.seq = readUint32(data, 8);
    return this.#id;
  }

  /**
   * The probe an echo too short to carry its sequence number is a prefix
   * of: the one unanswered probe among the latest whose bytes it matches
   * (the awaited probe first); `undefined` when none or several match, as
   * a guess would count a reply against the wrong probe.
   */
  #matchPrefix(data: Uint8Array): number | undefined {
    const matches = (seq: number) =>
      !this.tracker.answered(seq) && !this.unsent(seq) &&
      this.#verify(data, seq) !== "corrupted";
    const awaited = this.awaited?.seq;
    if (awaited !== undefined && awaited < this.sent && matches(awaited)) {
      return awaited;
    }
    let found: number | undefined;
    const first = Math.max(0, this.sent - SHORT_MATCH_WINDOW);
    for (let seq = this.sent - 1; seq >= first; seq--) {
      if (!matches(seq)) continue;
      if (found !== undefined) return undefined;
      found = seq;
    }
    return found;
  }

  #verify(data: Uint8Array, seq: number): ProbeCheck {
    return (this.options.format?.verify ?? verifyProbe)(
      data,
      this.header(seq),
      this.sizes.get(seq),
    );
  }

  /**
   * Attributes, verifies and counts one datagram and reports it through
   * `onReply` when it answers a probe.
   */
  handle(data: Uint8Array, arrival: Arrival): void {
    const seq = this.#attribute(data, arrival.fromTarget);
    if (seq === undefined) return;
    const { now } = arrival;
    let check = this.#verify(data, seq);
    if (
      check === "corrupted" && data.length > this.sizes.get(seq) &&
      (arrival.length ?? data.length) === data.length && !this.#inDamaged &&
      this.#handleMerged(data, arrival)
    ) return;
    if (this.#inDamaged && check === "intact") check = "corrupted";
    const firstAnswer = !this.tracker.answered(seq);
    const rttMs = arrival.timing?.rttMs(seq) ?? now - this.sentAt.get(seq);
    const late = rttMs > this.options.timeoutMs;
    // With a ring, loss is decided by the timeout: a first reply slower
    // than it finds its probe lost (once), and counts as late only.
    if (
      firstAnswer && late && this.options.ring !== undefined &&
      !this.#expired(seq)
    ) this.#expire(seq);
    const verdict = this.tracker.record(seq, check === "intact");
    if (rttMs > this.maxRttMs) this.maxRttMs = rttMs;
    if (check === "truncated") this.truncated++;
    if (check === "intact" && !verdict.duplicate) {
      this.rttBySeq.set(seq, rttMs);
      if (this.options.ring === undefined) this.arrivals.push(rttMs);
      if (late) this.late++;
      if (Number.isNaN(this.firstReplyAt)) this.firstReplyAt = now;
      this.lastReplyAt = now;
      this.options.format?.onReply?.(data, seq, now);
    }
    const clockStep = arrival.timing?.clockStep === true;
    if (clockStep) this.clockSteps++;
    if (firstAnswer && !this.#expired(seq)) this.inflight--;
    // Every reply wakes a waiting sender: a slot may be free, the last
    // first reply starts the grace period, and a late copy may lengthen it.
    this.wakeup.wake();
    const awaited = this.awaited?.seq === seq &&
      this.awaited.reply === undefined;
    // Nobody to hand it to (a load run nobody watches): no event to make.
    if (!awaited && this.options.onReply === undefined) return;
    const event: ReplyEvent = {
      type: "reply",
      flow: this.index,
      seq,
      bytes: arrival.length ?? data.length,
      rttMs,
      check,
      duplicate: verdict.duplicate,
      reordered: verdict.reordered,
      late,
    };
    if (clockStep) event.clockStep = true;
    if (this.#inMerged) event.merged = true;
    if (awaited) this.awaited!.reply = event;
    this.options.onReply?.(event);
  }

  /**
   * Handles a datagram that carries several probes of this flow one after
   * another, as one reply to each, arriving together; returns false,
   * handling nothing, when it carries fewer than two. Whole and intact,
   * it is `merged` and each probe received; otherwise (a changed byte, a
   * probe cut, bytes after the last) each probe in it has a damaged reply,
   * as the path lost none of them.
   */
  #handleMerged(data: Uint8Array, arrival: Arrival): boolean {
    const ends: number[] = [];
    let intact = true;
    for (let at = 0; at < data.length;) {
      const part = data.subarray(at);
      const id = this.#decode(part);
      const seq = id?.seq ?? 0;
      const { ring } = this.options;
      if (
        id === undefined || id.session !== this.session ||
        seq >= this.sent || this.unsent(seq) ||
        (ring !== undefined && seq < this.sent - ring)
      ) break;
      const size = Math.min(this.sizes.get(seq), part.length);
      if (size < ID_BYTES) break;
      intact &&= size === this.sizes.get(seq) &&
        this.#verify(part.subarray(0, size), seq) === "intact";
      at += size;
      ends.push(at);
    }
    if (ends.length < 2) return false;
    if (ends.at(-1) !== data.length) intact = false;
    ends[ends.length - 1] = data.length;
    if (intact) this.merged++;
    const length = arrival.length;
    this.#inMerged = intact;
    this.#inDamaged = !intact;
    try {
      let start = 0;
      for (const end of ends) {
        arrival.length = end - start;
        this.handle(data.subarray(start, end), arrival);
        start = end;
      }
    } finally {
      this.#inMerged = false;
      this.#inDamaged = false;
      arrival.length = length;
    }
    return true;
  }
}
