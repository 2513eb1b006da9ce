/**
 * The measurement engines behind `client.ts`: ping (probes on a fixed
 * schedule), load (a closed-loop window or an open-loop rate, over one or
 * more flows from distinct source ports) and a payload sweep. They work on
 * real UDP sockets against any echo server, because everything they need
 * rides inside the probe (see `probe.ts`), emit one event per reply, and
 * return plain result objects; printing is the caller's business.
 *
 * @example Ping this project's echo server five times
 * ```ts
 * import { runProbes } from "./engine.ts";
 * import { serveEcho } from "../server.ts";
 * import { equal } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveEcho({ hostname: "127.0.0.1", port: 0, signal: controller.signal });
 * try {
 *   const result = await runProbes({
 *     target: { ...server.addr, family: "IPv4" },
 *     count: 5,
 *     intervalMs: 10,
 *   });
 *   equal(result.received, 5);
 *   equal(result.rttMs.count, 5);
 * } finally {
 *   controller.abort();
 *   await server.finished;
 * }
 * ```
 *
 * @module
 */

import {
  checkPayloadSize,
  maxPayload,
  RECEIVE_BUFFER_SIZE,
} from "../net/payload.ts";
import type { HostPort, ResolvedAddress } from "../net/address.ts";
import {
  decodeProbe,
  encodeProbe,
  encodeProbeInto,
  newSessionId,
  PROBE_HEADER_SIZE,
  type ProbeCheck,
  verifyProbe,
} from "./probe.ts";
import {
  addCounts,
  meanIpdv,
  type ReplyCounts,
  ReplyTracker,
  rfc3550Jitter,
  type ScheduleError,
  scheduleError,
  summarize,
  type Summary,
} from "./stats.ts";

/** The probe size used when none is given, as ping uses. */
export const DEFAULT_PROBE_SIZE = 64;
/** How long a reply may take before it counts as late, in ms. */
export const DEFAULT_PROBE_TIMEOUT_MS = 1000;
/** How many times a sweep tries a size before it counts as failing. */
export const SWEEP_TRIES = 3;

/** A reply from the target carrying this run's session id. */
export interface ReplyEvent {
  /** Event type. */
  type: "reply";
  /** Index of the flow (socket) that sent the probe, from 0. */
  flow: number;
  /** Sequence number of the probe within its flow, from 0. */
  seq: number;
  /** Bytes in the reply. */
  bytes: number;
  /** Round-trip time in milliseconds. */
  rttMs: number;
  /** How the reply compares with the probe. */
  check: ProbeCheck;
  /** An intact reply beyond the first for this probe. */
  duplicate: boolean;
  /** A first intact reply that came after the reply to a later probe. */
  reordered: boolean;
  /** A reply that took longer than the timeout. */
  late: boolean;
}

/** A probe that had no reply at all by the end of the wait. */
export interface LostEvent {
  /** Event type. */
  type: "lost";
  /** Index of the flow. */
  flow: number;
  /** Sequence number of the probe. */
  seq: number;
}

/** One try of one size during a sweep. */
export interface SweepEvent {
  /** Event type. */
  type: "sweep";
  /** Payload size tried. */
  size: number;
  /** Which try of this size, from 1. */
  attempt: number;
  /** What came back within the timeout. */
  outcome: ProbeCheck | "lost";
  /** Bytes echoed; 0 when lost. */
  bytes: number;
  /** Round-trip time in milliseconds; NaN when lost. */
  rttMs: number;
}

/** What the engines report as they go. */
export type ProbeEvent = ReplyEvent | LostEvent | SweepEvent;

/** Options shared by every engine. */
export interface EngineOptions {
  /** The echo server, already resolved. */
  target: ResolvedAddress;
  /** Local address to send from; defaults to the wildcard of the family. */
  bind?: HostPort;
  /** A reply slower than this is late (and frees a window slot). Default 1000. */
  timeoutMs?: number;
  /** After the last send, how long to wait for replies. Default 2 x timeout. */
  waitMs?: number;
  /** Stops sending and waiting; the result covers what happened so far. */
  signal?: AbortSignal;
  /** Called for every reply, every lost probe, every sweep try. */
  onEvent?: (event: ProbeEvent) => void;
}

/** Options for {@linkcode runProbes}. */
export interface RunOptions extends EngineOptions {
  /** Probes per flow; unbounded by default (stop with `durationMs` or `signal`). */
  count?: number;
  /** Stop sending after this many milliseconds. */
  durationMs?: number;
  /** Payload bytes per probe, from the header size to the family limit. Default 64. */
  size?: number;
  /** Open loop: send probe n at start + n x interval. Default 1000 without `window`. */
  intervalMs?: number;
  /** Closed loop: keep this many probes in flight per flow. */
  window?: number;
  /** Number of flows, each from its own source port. Default 1. */
  flows?: number;
  /** Called after each probe leaves, for a live status. */
  onSend?: (flow: number, seq: number) => void;
}

/** The counts of one flow. */
export interface FlowResult extends ReplyCounts {
  /** Index of the flow. */
  flow: number;
  /** The local address the flow sent from. */
  local: HostPort;
}

/** A rate in packets and bits of UDP payload per second. */
export interface Rate {
  /** Packets per second. */
  pps: number;
  /** Bits of UDP payload per second. */
  bps: number;
}

/** The outcome of {@linkcode runProbes}. */
export interface RunResult extends ReplyCounts {
  /** The echo server. */
  target: ResolvedAddress;
  /** Payload bytes per probe. */
  size: number;
  /** `interval` for an open-loop schedule, `window` for a closed loop. */
  pacing: "interval" | "window";
  /** Replies slower than the timeout (still counted as received). */
  late: number;
  /** Replies that were shorter prefixes of their probe (also `corrupted`). */
  truncated: number;
  /** Datagrams from elsewhere or without this run's session id. */
  ignored: number;
  /** Round-trip times of first intact replies, in ms. */
  rttMs: Summary;
  /** Jitter in ms: mean absolute IPDV and RFC 3550 interarrival jitter. */
  jitterMs: { ipdv: number; rfc3550: number };
  /** How far sends strayed from their schedule (NaN for a closed loop). */
  scheduleMs: ScheduleError;
  /** Rate of sends, over the span from first to last send. */
  sendRate: Rate;
  /** Rate of first intact replies, over the span from first to last. */
  echoRate: Rate;
  /** Milliseconds from the first send to the end of the wait. */
  elapsedMs: number;
  /** Per-flow counts. */
  flows: FlowResult[];
  /** Round-trip times of first intact replies in arrival order, for a histogram. */
  rtts: number[];
}

/** Resolves after `ms`, or at once on `wake()` or when the signal aborts. */
class Wakeup {
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

/** A Float64Array that grows as it is written, for per-probe times. */
class Times {
  #data = new Float64Array(256).fill(NaN);

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

function openSocket(
  target: ResolvedAddress,
  bind: HostPort | undefined,
): Deno.DatagramConn {
  return Deno.listenDatagram({
    hostname: bind?.hostname ?? (target.family === "IPv6" ? "::" : "0.0.0.0"),
    port: bind?.port ?? 0,
    transport: "udp",
  });
}

function fromTarget(from: Deno.Addr, target: ResolvedAddress): boolean {
  const address = from as Deno.NetAddr;
  return address.hostname === target.hostname && address.port === target.port;
}

/** One socket's probes, replies and bookkeeping. */
class Flow {
  readonly conn: Deno.DatagramConn;
  readonly tracker = new ReplyTracker();
  readonly sentAt = new Times();
  readonly scheduled = new Times();
  readonly rttBySeq = new Times();
  readonly arrivals: number[] = [];
  readonly wakeup = new Wakeup();
  readonly #buffer: Uint8Array;
  sent = 0;
  inflight = 0;
  late = 0;
  truncated = 0;
  ignored = 0;
  strays = 0;
  firstReplyAt = NaN;
  lastReplyAt = NaN;
  error: unknown;
  #expired = new Uint8Array(0);
  #oldest = 0;
  #closed = false;
  readonly receiving: Promise<void>;

  constructor(
    readonly index: number,
    readonly session: number,
    readonly options: Required<Pick<RunOptions, "target" | "size">> & {
      timeoutMs: number;
      onEvent?: (event: ProbeEvent) => void;
      onSend?: (flow: number, seq: number) => void;
      bind?: HostPort;
    },
  ) {
    this.conn = openSocket(options.target, options.bind);
    this.#buffer = new Uint8Array(options.size);
    this.receiving = this.#receive();
  }

  get local(): HostPort {
    const { hostname, port } = this.conn.addr as Deno.NetAddr;
    return { hostname, port };
  }

  async send(scheduledAt?: number): Promise<void> {
    const seq = this.sent++;
    const now = performance.now();
    this.sentAt.set(seq, now);
    if (scheduledAt !== undefined) this.scheduled.set(seq, scheduledAt);
    encodeProbeInto(this.#buffer, {
      session: this.session,
      seq,
      sentAt: performance.timeOrigin + now,
    });
    this.inflight++;
    await this.conn.send(this.#buffer, {
      hostname: this.options.target.hostname,
      port: this.options.target.port,
      transport: "udp",
    });
    this.options.onSend?.(this.index, seq);
  }

  /** Frees the window slots of probes whose timeout has passed. */
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

  /** Closes the socket once; later calls do nothing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.conn.close();
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

  #handle(data: Uint8Array, from: Deno.Addr, now: number): void {
    const { target, size, timeoutMs, onEvent } = this.options;
    const header = fromTarget(from, target) ? decodeProbe(data) : undefined;
    if (header === undefined || header.session !== this.session) {
      this.ignored++;
      return;
    }
    const { seq } = header;
    if (seq >= this.sent) {
      // Our session, but a sequence number never sent: a damaged header.
      this.strays++;
      return;
    }
    const sentAt = this.sentAt.get(seq);
    const check = verifyProbe(data, {
      session: this.session,
      seq,
      sentAt: performance.timeOrigin + sentAt,
    }, size);
    const firstAnswer = !this.tracker.answered(seq);
    const verdict = this.tracker.record(seq, check === "intact");
    const rttMs = now - sentAt;
    const late = rttMs > timeoutMs;
    if (check === "truncated") this.truncated++;
    if (check === "intact" && !verdict.duplicate) {
      this.rttBySeq.set(seq, rttMs);
      this.arrivals.push(rttMs);
      if (late) this.late++;
      if (Number.isNaN(this.firstReplyAt)) this.firstReplyAt = now;
      this.lastReplyAt = now;
    }
    if (firstAnswer && this.#expired[seq] !== 1) {
      this.inflight--;
      this.wakeup.wake();
    }
    if (firstAnswer && this.tracker.answeredCount === this.sent) {
      this.wakeup.wake();
    }
    onEvent?.({
      type: "reply",
      flow: this.index,
      seq,
      bytes: data.length,
      rttMs,
      check,
      duplicate: verdict.duplicate,
      reordered: verdict.reordered,
      late,
    });
  }
}

function checkCount(name: string, value: number | undefined, min = 1): void {
  if (
    value !== undefined &&
    !(Number.isInteger(value) && value >= min || value === Infinity)
  ) {
    throw new RangeError(
      `Cannot use ${name} ${value}: expected an integer of at least ${min}`,
    );
  }
}

function checkMs(name: string, value: number | undefined, min = 0): void {
  if (value !== undefined && !(Number.isFinite(value) && value >= min)) {
    throw new RangeError(
      `Cannot use ${name} ${value}: expected a number of at least ${min}`,
    );
  }
}

/** Checks the payload size of a probe against the header and the family limit. */
export function checkProbeSize(size: number, target: ResolvedAddress): void {
  if (!Number.isInteger(size) || size < PROBE_HEADER_SIZE) {
    throw new RangeError(
      `Cannot send probes of ${size} bytes: a probe needs at least ${PROBE_HEADER_SIZE}`,
    );
  }
  checkPayloadSize(size, target.family);
}

function rate(count: number, spanMs: number, size: number): Rate {
  const pps = count > 1 && spanMs > 0 ? (count - 1) / (spanMs / 1000) : NaN;
  return { pps, bps: pps * size * 8 };
}

/** When and how long one flow sends. */
interface Pacing {
  start: number;
  count: number;
  durationMs: number;
  intervalMs: number;
  waitMs: number;
  signal: AbortSignal | undefined;
}

/** Sends probe n at start + n x interval; a late send never shifts the rest. */
async function openLoop(flow: Flow, pace: Pacing): Promise<void> {
  const { start, count, durationMs, intervalMs, signal } = pace;
  const sleeper = new Wakeup();
  for (let n = 0; n < count && n * intervalMs < durationMs; n++) {
    const due = start + n * intervalMs;
    const delay = due - performance.now();
    if (delay > 0) await sleeper.wait(delay, signal);
    if (signal?.aborted || flow.error !== undefined) return;
    await flow.send(due);
  }
}

/** Keeps `window` probes in flight; a probe past its timeout frees its slot. */
async function closedLoop(
  flow: Flow,
  pace: Pacing,
  window: number,
): Promise<void> {
  const { start, count, durationMs, signal } = pace;
  while (
    !signal?.aborted && flow.error === undefined && flow.sent < count &&
    performance.now() - start < durationMs
  ) {
    const deadline = flow.expire(performance.now());
    if (flow.inflight < window) {
      await flow.send();
      continue;
    }
    const remaining = durationMs - (performance.now() - start);
    await flow.wakeup.wait(
      Math.min(deadline - performance.now(), remaining),
      signal,
    );
  }
}

/** Waits for the outstanding replies, at most `waitMs` after the last send. */
async function drain(flow: Flow, pace: Pacing): Promise<void> {
  const { waitMs, signal } = pace;
  const end = performance.now() + waitMs;
  while (
    !signal?.aborted && flow.error === undefined &&
    flow.tracker.answeredCount < flow.sent
  ) {
    const remaining = end - performance.now();
    if (remaining <= 0) break;
    await flow.wakeup.wait(remaining, signal);
  }
}

/**
 * Sends probes to an echo server and measures their round trips: on an
 * open-loop schedule (`intervalMs`; probe n leaves at start + n x interval,
 * late sends catch up rather than shift the schedule) or in a closed loop
 * (`window` probes in flight), over `flows` sockets at once.
 */
export async function runProbes(options: RunOptions): Promise<RunResult> {
  const {
    target,
    size = DEFAULT_PROBE_SIZE,
    timeoutMs = DEFAULT_PROBE_TIMEOUT_MS,
    flows: flowCount = 1,
    count = Infinity,
    durationMs = Infinity,
    window,
    signal,
    onEvent,
    onSend,
    bind,
  } = options;
  const waitMs = options.waitMs ?? 2 * timeoutMs;
  const intervalMs = options.intervalMs ?? 1000;
  checkProbeSize(size, target);
  checkCount("count", count);
  checkCount("window", window);
  checkCount("flows", flowCount);
  checkMs("duration", durationMs === Infinity ? undefined : durationMs);
  checkMs("interval", intervalMs);
  checkMs("timeout", timeoutMs, 1);
  checkMs("wait", waitMs);
  if (flowCount > 1 && (bind?.port ?? 0) !== 0) {
    throw new RangeError(
      `Cannot bind ${flowCount} flows to port ${bind!.port}: flows need port 0`,
    );
  }
  const session = newSessionId();
  const flows: Flow[] = [];
  try {
    for (let i = 0; i < flowCount; i++) {
      flows.push(
        new Flow(i, session, {
          target,
          size,
          timeoutMs,
          onEvent,
          onSend,
          bind,
        }),
      );
    }
    const start = performance.now();
    const pace: Pacing = {
      start,
      count,
      durationMs,
      intervalMs,
      waitMs,
      signal,
    };
    await Promise.all(flows.map(async (flow) => {
      if (window === undefined) await openLoop(flow, pace);
      else await closedLoop(flow, pace, window);
      await drain(flow, pace);
    }));
    const end = performance.now();
    for (const flow of flows) flow.close();
    await Promise.all(flows.map((flow) => flow.receiving));
    const failed = flows.find((flow) => flow.error !== undefined);
    if (failed) throw failed.error;
    return summarizeRun(flows, {
      target,
      size,
      pacing: window === undefined ? "interval" : "window",
      start,
      end,
      onEvent,
    });
  } finally {
    // Also on a failed send: no receive may outlive the run.
    for (const flow of flows) flow.close();
    await Promise.all(flows.map((flow) => flow.receiving));
  }
}

function summarizeRun(
  flows: Flow[],
  context: {
    target: ResolvedAddress;
    size: number;
    pacing: "interval" | "window";
    start: number;
    end: number;
    onEvent?: (event: ProbeEvent) => void;
  },
): RunResult {
  const { target, size, pacing, start, end, onEvent } = context;
  const flowResults: FlowResult[] = flows.map((flow) => {
    const counts = flow.tracker.counts(flow.sent);
    counts.corrupted += flow.strays;
    return { flow: flow.index, local: flow.local, ...counts };
  });
  for (const flow of flows) {
    for (let seq = 0; seq < flow.sent; seq++) {
      if (!flow.tracker.answered(seq)) {
        onEvent?.({ type: "lost", flow: flow.index, seq });
      }
    }
  }
  const rtts = flows.flatMap((flow) => flow.arrivals);
  // A NaN between flows keeps IPDV pairs inside one flow.
  const bySeq = flows.flatMap((
    flow,
  ) => [...flow.rttBySeq.slice(flow.sent), NaN]);
  let jitterSum = 0;
  let jitterWeight = 0;
  for (const flow of flows) {
    if (flow.arrivals.length < 2) continue;
    jitterSum += rfc3550Jitter(flow.arrivals) * (flow.arrivals.length - 1);
    jitterWeight += flow.arrivals.length - 1;
  }
  const scheduled = pacing === "interval"
    ? flows.flatMap((flow) => [...flow.scheduled.slice(flow.sent)])
    : [];
  const actual = pacing === "interval"
    ? flows.flatMap((flow) => [...flow.sentAt.slice(flow.sent)])
    : [];
  const firstSend = Math.min(...flows.map((flow) => flow.sentAt.get(0)));
  const lastSend = Math.max(
    ...flows.map((flow) => flow.sentAt.get(flow.sent - 1)),
  );
  const firstReply = Math.min(...flows.map((flow) => flow.firstReplyAt));
  const lastReply = Math.max(...flows.map((flow) => flow.lastReplyAt));
  const counts = addCounts(flowResults);
  return {
    target,
    size,
    pacing,
    ...counts,
    late: flows.reduce((sum, flow) => sum + flow.late, 0),
    truncated: flows.reduce((sum, flow) => sum + flow.truncated, 0),
    ignored: flows.reduce((sum, flow) => sum + flow.ignored, 0),
    rttMs: summarize(rtts),
    jitterMs: {
      ipdv: meanIpdv(bySeq),
      rfc3550: jitterWeight > 0 ? jitterSum / jitterWeight : NaN,
    },
    scheduleMs: scheduleError(scheduled, actual),
    sendRate: rate(counts.sent, lastSend - firstSend, size),
    echoRate: rate(counts.received, lastReply - firstReply, size),
    elapsedMs: end - start,
    flows: flowResults,
    rtts,
  };
}

/** Options for {@linkcode sweepPayload}. */
export interface SweepOptions extends EngineOptions {
  /** The largest size to try; defaults to the family limit. */
  max?: number;
  /** Tries per size before it counts as failing. Default 3. */
  tries?: number;
}

/** The size at which the sweep stopped finding intact echoes. */
export interface SweepFailure {
  /** The smallest size that failed. */
  size: number;
  /** Why: echoes came back shorter, never came back, or came back damaged. */
  reason: "truncated" | "lost" | "corrupted";
  /** For a truncation, the length of the shortened echo. */
  echoed?: number;
}

/** The outcome of {@linkcode sweepPayload}. */
export interface SweepResult extends ReplyCounts {
  /** The echo server. */
  target: ResolvedAddress;
  /** The largest size tried: the family limit unless `max` was given. */
  limit: number;
  /** The largest payload echoed intact; 0 when none was. */
  maxPayload: number;
  /** The smallest failing size and why; absent when the limit passed. */
  failure?: SweepFailure;
  /** Replies that were shorter prefixes of their probe (also `corrupted`). */
  truncated: number;
  /** Datagrams from elsewhere or without this run's session id. */
  ignored: number;
  /** Every try, in order. */
  steps: SweepEvent[];
  /** Round-trip times of intact echoes, in ms. */
  rttMs: Summary;
}

/**
 * Finds the largest payload an echo server returns intact: first a
 * header-sized probe, then the limit, then a binary search between the
 * largest intact and the smallest failing size (trying first the length a
 * truncated echo came back with, and one more). Each size gets up to
 * `tries` tries, so a lost datagram does not end the search early; one
 * truncated echo is enough to call a size failing.
 */
export async function sweepPayload(
  options: SweepOptions,
): Promise<SweepResult> {
  const {
    target,
    timeoutMs = DEFAULT_PROBE_TIMEOUT_MS,
    tries = SWEEP_TRIES,
    signal,
    onEvent,
  } = options;
  const limit = options.max ?? maxPayload(target.family);
  const waitMs = options.waitMs ?? timeoutMs;
  checkPayloadSize(limit, target.family);
  checkCount("max", limit);
  checkCount("tries", tries);
  checkMs("timeout", timeoutMs, 1);
  checkMs("wait", waitMs);
  const conn = openSocket(target, options.bind);
  const session = newSessionId();
  const tracker = new ReplyTracker();
  const wakeup = new Wakeup();
  const sizes: number[] = [];
  const sentAt: number[] = [];
  const rtts: number[] = [];
  const steps: SweepEvent[] = [];
  let truncated = 0;
  let ignored = 0;
  let strays = 0;
  let current: { seq: number; bytes: Uint8Array } | undefined;
  type Answer = { check: ProbeCheck; bytes: number; rttMs: number };
  let answer: Answer | undefined;
  let closed = false;
  let failure: unknown;

  function handle(data: Uint8Array, from: Deno.Addr, now: number): void {
    if (!fromTarget(from, target)) {
      ignored++;
      return;
    }
    const header = decodeProbe(data);
    let seq: number;
    if (header !== undefined && header.session === session) {
      seq = header.seq;
      if (seq >= sizes.length) {
        strays++;
        return;
      }
    } else if (
      // Echoes shorter than a header can only be matched to the probe in
      // flight, as a prefix of it.
      current !== undefined && data.length < PROBE_HEADER_SIZE &&
      data.length <= current.bytes.length &&
      data.every((byte, i) => byte === current!.bytes[i])
    ) {
      seq = current.seq;
    } else {
      ignored++;
      return;
    }
    const check = verifyProbe(data, {
      session,
      seq,
      sentAt: performance.timeOrigin + sentAt[seq]!,
    }, sizes[seq]!);
    if (check === "truncated") truncated++;
    const verdict = tracker.record(seq, check === "intact");
    const rttMs = now - sentAt[seq]!;
    if (check === "intact" && !verdict.duplicate) rtts.push(rttMs);
    if (seq === current?.seq && answer === undefined) {
      answer = { check, bytes: data.length, rttMs };
    }
    wakeup.wake();
  }

  const receiving = (async () => {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    while (true) {
      try {
        const [data, from] = await conn.receive(buffer);
        handle(data, from, performance.now());
      } catch (error) {
        if (!closed) failure = error;
        return;
      }
    }
  })();

  async function attempt(size: number, n: number): Promise<SweepEvent> {
    const seq = sizes.length;
    const now = performance.now();
    sizes.push(size);
    sentAt.push(now);
    const bytes = encodeProbe({
      session,
      seq,
      sentAt: performance.timeOrigin + now,
    }, size);
    current = { seq, bytes };
    answer = undefined;
    await conn.send(bytes, { ...target, transport: "udp" });
    const deadline = now + timeoutMs;
    while (answer === undefined && failure === undefined && !signal?.aborted) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      await wakeup.wait(remaining, signal);
    }
    // Set by the receive loop meanwhile, which narrowing cannot see.
    const got = answer as Answer | undefined;
    current = undefined;
    const event: SweepEvent = {
      type: "sweep",
      size,
      attempt: n,
      outcome: got?.check ?? "lost",
      bytes: got?.bytes ?? 0,
      rttMs: got?.rttMs ?? NaN,
    };
    steps.push(event);
    onEvent?.(event);
    return event;
  }

  /** Tries a size; undefined when intact, else why it failed. */
  async function probe(size: number): Promise<SweepFailure | undefined> {
    let last: SweepEvent | undefined;
    let corrupted = false;
    for (let n = 1; n <= tries; n++) {
      if (signal?.aborted || failure !== undefined) break;
      last = await attempt(size, n);
      if (last.outcome === "intact") return undefined;
      if (last.outcome === "truncated") {
        return { size, reason: "truncated", echoed: last.bytes };
      }
      if (last.outcome === "corrupted") corrupted = true;
    }
    return { size, reason: corrupted ? "corrupted" : "lost" };
  }

  let good = 0;
  let bad: SweepFailure | undefined;
  const tried = new Set<number>();
  try {
    const first = Math.min(PROBE_HEADER_SIZE, limit);
    bad = await probe(first);
    if (bad === undefined) {
      good = first;
      if (limit > first) bad = await probe(limit);
      if (bad === undefined) good = limit;
    }
    // Nothing came back at all: no point searching below the first size.
    const dead = bad !== undefined && good === 0 && bad.reason !== "truncated";
    while (
      !dead && bad !== undefined && bad.size - good > 1 && !signal?.aborted &&
      failure === undefined
    ) {
      let mid = Math.floor((good + bad.size) / 2);
      // A server that cuts echoes to L bytes most likely passes L and not
      // L + 1: try those first, which ends most sweeps in two more sizes.
      const hint = bad.reason === "truncated" ? bad.echoed! : -1;
      if (hint > good && hint < bad.size && !tried.has(hint)) mid = hint;
      else if (hint + 1 > good && hint + 1 < bad.size && !tried.has(hint + 1)) {
        mid = hint + 1;
      }
      tried.add(mid);
      const result = await probe(mid);
      if (result === undefined) good = mid;
      else bad = result;
    }
    const end = performance.now() + waitMs;
    while (
      tracker.answeredCount < sizes.length && failure === undefined &&
      !signal?.aborted
    ) {
      const remaining = end - performance.now();
      if (remaining <= 0) break;
      await wakeup.wait(remaining, signal);
    }
  } finally {
    closed = true;
    conn.close();
    await receiving;
  }
  if (failure !== undefined) throw failure;
  const counts = tracker.counts(sizes.length);
  counts.corrupted += strays;
  return {
    target,
    limit,
    maxPayload: good,
    ...(bad === undefined ? {} : { failure: bad }),
    ...counts,
    truncated,
    ignored,
    steps,
    rttMs: summarize(rtts),
  };
}
