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
import {
  decodeProbe,
  encodeProbe,
  newSessionId,
  PROBE_HEADER_SIZE,
  type ProbeCheck,
  verifyProbe,
} from "./probe.ts";
import {
  type ReplyCounts,
  ReplyTracker,
  summarize,
  type Summary,
} from "./stats.ts";
import {
  checkCount,
  checkMs,
  DEFAULT_PROBE_TIMEOUT_MS,
  type EngineOptions,
  type SweepEvent,
} from "./_common.ts";
import { fromTarget, openSocket, Wakeup } from "./_flow.ts";
import type { ResolvedAddress } from "../net/address.ts";

export {
  checkProbeSize,
  DEFAULT_PROBE_SIZE,
  DEFAULT_PROBE_TIMEOUT_MS,
  type EngineOptions,
  type LostEvent,
  type ProbeEvent,
  type ReplyEvent,
  type SweepEvent,
} from "./_common.ts";
export {
  type FlowResult,
  type Rate,
  type RunOptions,
  runProbes,
  type RunResult,
} from "./run.ts";

/** How many times a sweep tries a size before it counts as failing. */
export const SWEEP_TRIES = 3;

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
