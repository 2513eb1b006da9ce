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
  type ResolvedAddress,
  sameEndpoint,
} from "../net/address.ts";
import {
  decodeProbe,
  encodeProbeInto,
  PROBE_HEADER_SIZE,
  type ProbeHeader,
  verifyProbe,
} from "./probe.ts";
import { type ReplyCounts, ReplyTracker } from "./stats.ts";
import type { ReplyEvent } from "./_common.ts";

const INITIAL_TIMES = 256;

/** Resolves after `ms`, or at once on `wake()` or when the signal aborts. */
export class Wakeup {
  #wake: (() => void) | undefined;

  wake(): void {
    this.#wake?.();
  }

  wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(id);
        signal?.removeEventListener("abort", done);
        this.#wake = undefined;
        resolve();
      };
      const id = setTimeout(done, Math.max(0, ms));
      this.#wake = done;
      signal?.addEventListener("abort", done, { once: true });
    });
  }
}

/**
 * A Float64Array that grows as it is written, NaN where nothing was: an
 * unbounded run must not keep a boxed number per probe.
 */
export class Times {
  #data = new Float64Array(INITIAL_TIMES).fill(NaN);

  get(i: number): number {
    return this.#data[i] ?? NaN;
  }

  set(i: number, value: number): void {
    if (i >= this.#data.length) {
      let length = this.#data.length;
      while (length <= i) length *= 2;
      const grown = new Float64Array(length).fill(NaN);
      grown.set(this.#data);
      this.#data = grown;
    }
    this.#data[i] = value;
  }

  slice(n: number): Float64Array {
    return this.#data.slice(0, n);
  }
}

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
  onSend?: (flow: number, seq: number) => void;
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
  readonly tracker = new ReplyTracker();
  readonly sentAt = new Times();
  readonly scheduled = new Times();
  readonly sizes = new Times();
  readonly rttBySeq = new Times();
  /** Round-trip times of first intact replies in arrival order, in ms. */
  readonly arrivals: number[] = [];
  readonly wakeup = new Wakeup();
  sent = 0;
  inflight = 0;
  late = 0;
  truncated = 0;
  ignored = 0;
  /** Our session but a sequence number never sent: a damaged header. */
  strays = 0;
  firstReplyAt = NaN;
  lastReplyAt = NaN;
  error: unknown;
  readonly receiving: Promise<void>;
  #buffer = new Uint8Array(0);
  #expired = new Uint8Array(0);
  #oldest = 0;
  #awaited: Awaited | undefined;
  #closed = false;

  constructor(
    readonly index: number,
    readonly session: number,
    readonly options: FlowOptions,
  ) {
    this.conn = openSocket(options.target, options.bind);
    this.receiving = this.#receive();
  }

  get local(): HostPort {
    const { hostname, port } = this.conn.addr as Deno.NetAddr;
    return { hostname, port };
  }

  /** The counts so far; stray headers count as corrupted replies. */
  counts(): ReplyCounts {
    const counts = this.tracker.counts(this.sent);
    counts.corrupted += this.strays;
    return counts;
  }

  /** Sends the next probe of `size` bytes; resolves once it has left. */
  async send(size: number, scheduledAt?: number): Promise<void> {
    const seq = this.sent++;
    const now = performance.now();
    this.sentAt.set(seq, now);
    this.sizes.set(seq, size);
    if (scheduledAt !== undefined) this.scheduled.set(seq, scheduledAt);
    // Reuse the buffer while the size stays put: a load run sends without end.
    if (this.#buffer.length !== size) this.#buffer = new Uint8Array(size);
    encodeProbeInto(this.#buffer, this.#header(seq));
    this.inflight++;
    await this.conn.send(this.#buffer, {
      hostname: this.options.target.hostname,
      port: this.options.target.port,
      transport: "udp",
    });
    this.options.onSend?.(this.index, seq);
  }

  /**
   * Sends one probe of `size` bytes and waits up to the timeout for its
   * first reply, intact or not; `undefined` when none came. While it waits,
   * an echo shorter than a header is matched to this probe as a prefix of
   * it, since nothing else can attribute it.
   */
  async ask(
    size: number,
    signal?: AbortSignal,
  ): Promise<ReplyEvent | undefined> {
    const awaited: Awaited = { seq: this.sent };
    this.#awaited = awaited;
    try {
      await this.send(size);
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
    if (this.#expired.length < this.sent) {
      const grown = new Uint8Array(Math.max(this.sent * 2, 64));
      grown.set(this.#expired);
      this.#expired = grown;
    }
    const { timeoutMs } = this.options;
    while (this.#oldest < this.sent) {
      const seq = this.#oldest;
      if (!this.tracker.answered(seq)) {
        const deadline = this.sentAt.get(seq) + timeoutMs;
        if (deadline > now) return deadline;
        this.#expired[seq] = 1;
        this.inflight--;
      }
      this.#oldest++;
    }
    return now + timeoutMs;
  }

  /** Waits until every probe has a reply, at most `waitMs` milliseconds. */
  async drain(waitMs: number, signal?: AbortSignal): Promise<void> {
    const end = performance.now() + waitMs;
    while (
      !signal?.aborted && this.error === undefined &&
      this.tracker.answeredCount < this.sent
    ) {
      const remaining = end - performance.now();
      if (remaining <= 0) break;
      await this.wakeup.wait(remaining, signal);
    }
  }

  /** Closes the socket once; later calls do nothing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.conn.close();
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
    const header = decodeProbe(data);
    if (header !== undefined && header.session === this.session) {
      if (header.seq < this.sent) return header.seq;
      this.strays++;
      return undefined;
    }
    const awaited = this.#awaited;
    if (
      awaited !== undefined && data.length < PROBE_HEADER_SIZE &&
      verifyProbe(
          data,
          this.#header(awaited.seq),
          this.sizes.get(awaited.seq),
        ) !== "corrupted"
    ) return awaited.seq;
    this.ignored++;
    return undefined;
  }

  #handle(data: Uint8Array, from: Deno.Addr, now: number): void {
    const seq = this.#attribute(data, from);
    if (seq === undefined) return;
    const sentAt = this.sentAt.get(seq);
    const check = verifyProbe(data, this.#header(seq), this.sizes.get(seq));
    const firstAnswer = !this.tracker.answered(seq);
    const verdict = this.tracker.record(seq, check === "intact");
    const rttMs = now - sentAt;
    const late = rttMs > this.options.timeoutMs;
    if (check === "truncated") this.truncated++;
    if (check === "intact" && !verdict.duplicate) {
      this.rttBySeq.set(seq, rttMs);
      this.arrivals.push(rttMs);
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
    if (firstAnswer && this.#expired[seq] !== 1) {
      this.inflight--;
      this.wakeup.wake();
    }
    if (firstAnswer && this.tracker.answeredCount === this.sent) {
      this.wakeup.wake();
    }
    if (this.#awaited?.seq === seq && this.#awaited.reply === undefined) {
      this.#awaited.reply = event;
      this.wakeup.wake();
    }
    this.options.onReply?.(event);
  }
}
