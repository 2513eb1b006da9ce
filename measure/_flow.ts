/**
 * One socket's probes and replies, for every engine: ping and load send on
 * their own schedules and read the bookkeeping afterwards; the sweep asks one
 * probe at a time. Keeping a single reply path means a datagram is attributed,
 * verified and counted the same way whichever mode sent the probe.
 *
 * @module
 */

import { RECEIVE_BUFFER_SIZE } from "../net/payload.ts";
import {
  errorMessage,
  formatAddress,
  type HostPort,
  osErrorReason,
  type ResolvedAddress,
  sameEndpoint,
} from "../net/address.ts";
import {
  decodeProbe,
  encodeProbeInto,
  PROBE_HEADER_SIZE,
  PROBE_MAGIC,
  type ProbeCheck,
  type ProbeHeader,
  verifyProbe,
} from "./probe.ts";
import { type ReplyCounts, ReplyTracker } from "./stats.ts";
import type { ProbeFormat, ReplyEvent, SendErrorEvent } from "./_common.ts";

export type { ProbeFormat } from "./_common.ts";
import { Times, Wakeup } from "./_times.ts";

export { Wakeup } from "./_times.ts";

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

/**
 * Whether a datagram comes from the target, by the canonical comparison of
 * net/address.ts: a reply from `::1` answers a target written
 * `0:0:0:0:0:0:0:1`, and one from `127.0.0.1` a target `::ffff:127.0.0.1`.
 */
export function fromTarget(from: Deno.Addr, target: HostPort): boolean {
  return sameEndpoint(from as Deno.NetAddr, target);
}

/** Opens a flow's socket; throws `Cannot bind ADDR: reason` when it cannot. */
function openSocket(
  target: ResolvedAddress,
  bind: HostPort | undefined,
): Deno.DatagramConn {
  const local = {
    hostname: bind?.hostname ?? (target.family === "IPv6" ? "::" : "0.0.0.0"),
    port: bind?.port ?? 0,
  };
  try {
    return Deno.listenDatagram({ ...local, transport: "udp" });
  } catch (error) {
    throw new Error(
      `Cannot bind ${formatAddress(local)}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
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
   * timeout: {@linkcode Flow.expire} and a reply slower than the timeout
   * call `onLost` once per probe without an answer in time.
   */
  ring?: number;
  /** A probe got no reply within the timeout (only with `ring`). */
  onLost?: (flow: number, seq: number) => void;
  /** The probe format; the plain probe of `probe.ts` by default. */
  format?: ProbeFormat;
}

/** The probe `ask()` waits for, and its first reply once there is one. */
interface Awaited {
  seq: number;
  reply?: ReplyEvent;
}

/**
 * One socket, its probes (send times and sizes, per sequence number) and
 * what came back. Open on construction; `close()` then `await receiving`.
 */
export class Flow {
  readonly conn: Deno.DatagramConn;
  readonly tracker: ReplyTracker;
  readonly sentAt: Times;
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
  firstReplyAt = NaN;
  lastReplyAt = NaN;
  /** The largest RTT of any attributed reply, duplicates included, in ms. */
  maxRttMs = 0;
  error: unknown;
  readonly receiving: Promise<void>;
  #buffer = new Uint8Array(0);
  #flags = new Uint8Array(64);
  #oldest = 0;
  #awaited: Awaited | undefined;
  #closed = false;

  constructor(
    readonly index: number,
    readonly session: number,
    readonly options: FlowOptions,
  ) {
    const { ring } = options;
    this.tracker = new ReplyTracker(ring);
    this.sentAt = new Times(ring);
    this.scheduled = new Times(ring);
    this.sizes = new Times(ring);
    this.rttBySeq = new Times(ring);
    if (ring !== undefined) this.#flags = new Uint8Array(ring);
    this.conn = openSocket(options.target, options.bind);
    this.receiving = this.#receive();
  }

  get local(): HostPort {
    const { hostname, port } = this.conn.addr as Deno.NetAddr;
    return { hostname, port };
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

  /**
   * Sends the next probe of `size` bytes; resolves to true once it has
   * left, to false when the send failed. A failed send is counted (see
   * `sendErrors`), reported through `onSendError` and never thrown: a
   * firewall that refuses some probes is part of the path measured.
   */
  async send(size: number, scheduledAt?: number): Promise<boolean> {
    const seq = this.sent++;
    this.#setFlag(seq, 0);
    this.tracker.forget(seq);
    this.rttBySeq.set(seq, NaN);
    const now = performance.now();
    this.sentAt.set(seq, now);
    this.sizes.set(seq, size);
    if (scheduledAt !== undefined) this.scheduled.set(seq, scheduledAt);
    // Reuse the buffer while the size stays put: a load run sends without end.
    if (this.#buffer.length !== size) this.#buffer = new Uint8Array(size);
    (this.options.format?.encode ?? encodeProbeInto)(
      this.#buffer,
      this.#header(seq),
    );
    this.inflight++;
    try {
      await this.conn.send(this.#buffer, {
        hostname: this.options.target.hostname,
        port: this.options.target.port,
        transport: "udp",
      });
    } catch (error) {
      this.inflight--;
      this.sendErrors++;
      this.#setFlag(seq, UNSENT);
      const reason = osErrorReason(error);
      this.sendError ??= reason;
      this.options.onSendError?.({
        type: "send_error",
        flow: this.index,
        seq,
        reason,
      });
      // A refused send fails at once; without a pause a closed loop would
      // retry without ever letting timers and signal handlers run.
      await new Promise((resolve) => setTimeout(resolve, 0));
      return false;
    }
    this.options.onSend?.(this.index, seq);
    return true;
  }

  /**
   * Sends one probe of `size` bytes and waits up to the timeout for its
   * first reply, intact or not; `undefined` when none came, `"unsent"` at
   * once when the send failed.
   */
  async ask(
    size: number,
    signal?: AbortSignal,
  ): Promise<ReplyEvent | "unsent" | undefined> {
    const awaited: Awaited = { seq: this.sent };
    this.#awaited = awaited;
    try {
      if (!await this.send(size)) return "unsent";
      const deadline = this.sentAt.get(awaited.seq) + this.options.timeoutMs;
      while (
        awaited.reply === undefined && this.error === undefined &&
        !signal?.aborted
      ) {
        const remaining = deadline - performance.now();
        if (remaining <= 0) break;
        await this.wakeup.wait(remaining, signal);
      }
      return awaited.reply;
    } finally {
      this.#awaited = undefined;
    }
  }

  /**
   * Frees the window slots of probes whose timeout has passed; returns when
   * the next one will, in `performance.now()` milliseconds.
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

  /**
   * Waits until every probe that left has a reply, then a grace period for
   * late copies, all within `waitMs` milliseconds. The grace period is
   * {@linkcode GRACE_MIN_MS} or twice the largest RTT seen (duplicates
   * included), whichever is longer, counted from when the last probe got
   * its first reply; it never runs past `waitMs`.
   */
  async drain(waitMs: number, signal?: AbortSignal): Promise<void> {
    const end = performance.now() + waitMs;
    const stopped = () => signal?.aborted || this.error !== undefined;
    while (
      !stopped() && this.tracker.answeredCount < this.sent - this.sendErrors
    ) {
      const remaining = end - performance.now();
      if (remaining <= 0) return;
      await this.wakeup.wait(remaining, signal);
    }
    const graceStart = performance.now();
    while (!stopped()) {
      const grace = Math.max(GRACE_MIN_MS, GRACE_RTT_FACTOR * this.maxRttMs);
      const remaining = Math.min(end, graceStart + grace) - performance.now();
      if (remaining <= 0) return;
      // A reply wakes the wait, and may have raised the largest RTT.
      await this.wakeup.wait(remaining, signal);
    }
  }

  /** Closes the socket once; later calls do nothing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.conn.close();
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

  #header(seq: number): ProbeHeader {
    return {
      session: this.session,
      seq,
      sentAt: performance.timeOrigin + this.sentAt.get(seq),
    };
  }

  async #receive(): Promise<void> {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    while (true) {
      let data: Uint8Array;
      let from: Deno.Addr;
      try {
        [data, from] = await this.conn.receive(buffer);
      } catch (error) {
        if (!this.#closed) this.error = error;
        return;
      }
      this.#handle(data, from, performance.now());
    }
  }

  /** The probe a datagram answers; counts it as ignored or stray if none. */
  #attribute(data: Uint8Array, from: Deno.Addr): number | undefined {
    if (!fromTarget(from, this.options.target)) {
      this.ignored++;
      return undefined;
    }
    const id = this.options.format
      ? this.options.format.decode(data)
      : data.length < PROBE_HEADER_SIZE
      ? this.#shortId(data)
      : decodeProbe(data);
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
   * Magic, session id and sequence number of an echo cut below the header
   * but still holding them (12 bytes or more); `undefined` otherwise.
   */
  #shortId(data: Uint8Array): { session: number; seq: number } | undefined {
    if (data.length < ID_BYTES) return undefined;
    const view = new DataView(data.buffer, data.byteOffset, ID_BYTES);
    if (view.getUint32(0) !== PROBE_MAGIC) return undefined;
    return { session: view.getUint32(4), seq: view.getUint32(8) };
  }

  /**
   * The probe an echo too short to carry its sequence number is a prefix
   * of: the one unanswered probe among the latest whose bytes it matches
   * (the probe awaited by `ask()` first); `undefined` when none or several
   * match, as a guess would count a reply against the wrong probe.
   */
  #matchPrefix(data: Uint8Array): number | undefined {
    const matches = (seq: number) =>
      !this.tracker.answered(seq) && !this.unsent(seq) &&
      this.#verify(data, seq) !== "corrupted";
    const awaited = this.#awaited?.seq;
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
      this.#header(seq),
      this.sizes.get(seq),
    );
  }

  #handle(data: Uint8Array, from: Deno.Addr, now: number): void {
    const seq = this.#attribute(data, from);
    if (seq === undefined) return;
    const sentAt = this.sentAt.get(seq);
    const check = this.#verify(data, seq);
    const firstAnswer = !this.tracker.answered(seq);
    const rttMs = now - sentAt;
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
      this.options.format?.onReply?.(data, seq, now);
      this.rttBySeq.set(seq, rttMs);
      if (this.options.ring === undefined) this.arrivals.push(rttMs);
      if (late) this.late++;
      if (Number.isNaN(this.firstReplyAt)) this.firstReplyAt = now;
      this.lastReplyAt = now;
    }
    const event: ReplyEvent = {
      type: "reply",
      flow: this.index,
      seq,
      bytes: data.length,
      rttMs,
      check,
      duplicate: verdict.duplicate,
      reordered: verdict.reordered,
      late,
    };
    if (firstAnswer && !this.#expired(seq)) {
      this.inflight--;
      this.wakeup.wake();
    }
    // Every reply wakes drain(): the last first reply starts its grace
    // period, and a late copy may lengthen it.
    this.wakeup.wake();
    if (this.#awaited?.seq === seq && this.#awaited.reply === undefined) {
      this.#awaited.reply = event;
      this.wakeup.wake();
    }
    this.options.onReply?.(event);
  }
}
