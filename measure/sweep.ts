/**
 * The payload sweep: the largest payload an echo server returns intact,
 * found one probe at a time through a single flow.
 *
 * @module
 */

import type { ResolvedAddress } from "../net/address.ts";
import { checkPayloadSize, maxPayload } from "../net/payload.ts";
import { newSessionId, PROBE_HEADER_SIZE } from "./probe.ts";
import { type ReplyCounts, summarize, type Summary } from "./stats.ts";
import { checkCount, checkMs, DEFAULT_PROBE_TIMEOUT_MS } from "./_common.ts";
import type { ProbeOptions, SweepEvent } from "./types.ts";
import { Flow } from "./_flow.ts";

/** How many times a sweep tries a size before it counts as failing. */
export const SWEEP_TRIES = 3;

/**
 * How many sizes a sweep takes from truncated echoes' lengths (the length,
 * then one more) before it only bisects.
 */
const HINT_TRIES = 2;

/** Options for {@linkcode sweepPayload}. */
export interface SweepOptions extends ProbeOptions {
  /** The largest size to try, in bytes; defaults to the family limit. */
  max?: number;
  /** Tries per size before it counts as failing. Default 3. */
  tries?: number;
}

/** The size at which the sweep stopped finding intact echoes. */
export interface SweepFailure {
  /** The smallest size that failed, in bytes. */
  size: number;
  /**
   * Why: echoes came back shorter, never came back, came back damaged,
   * every try failed to send (`unsent`: an OS error such as EPERM), or a
   * signal stopped the sweep before the size was decided (`interrupted`).
   */
  reason: "truncated" | "lost" | "corrupted" | "unsent" | "interrupted";
  /** For a truncation, the length of the shortened echo in bytes. */
  echoed?: number;
}

/** The outcome of {@linkcode sweepPayload}. */
export interface SweepResult extends ReplyCounts {
  /** The echo server. */
  target: ResolvedAddress;
  /** The largest size tried, in bytes: the family limit unless `max` was given. */
  limit: number;
  /** Tries a signal cut short: sent, unanswered, not counted as lost. Absent means 0. */
  inFlight?: number;
  /** The largest payload echoed intact, in bytes; 0 when none was. */
  maxPayload: number;
  /** The smallest failing size and why; absent when the limit passed. */
  failure?: SweepFailure;
  /** Replies that were shorter prefixes of their probe (also `corrupted`). */
  truncated: number;
  /** Datagrams from elsewhere or without this run's session id. */
  ignored: number;
  /**
   * Replies that carried several whole probes one after another (see
   * `RunResult.merged`). Absent means 0.
   */
  merged?: number;
  /** The OS's reason for the first failed send (see `sendErrors`). */
  sendError?: string;
  /** Every try, in order. */
  steps: SweepEvent[];
  /** Round-trip times of intact echoes, in ms. */
  rttMs: Summary;
}

/**
 * Finds the largest payload an echo server returns intact: first a
 * header-sized probe, then the limit, then a binary search between the
 * largest intact and the smallest failing size (trying first the length a
 * truncated echo came back with, and one more, unless that guess fails too:
 * at most about log2(limit) + 4 sizes). It never goes below the
 * 20-byte probe header: when that fails the result is 0 with that
 * failure. Each size gets up to
 * `tries` tries, so a lost datagram does not end the search early; one
 * truncated echo is enough to call a size failing. Each try waits up to
 * `timeoutMs`; after the last, stragglers get `waitMs` (default: the
 * timeout). A try whose send fails (an OS error) is counted in
 * `sendErrors` and reported as `unsent`; the search goes on. Sizes are
 * payload bytes, times milliseconds.
 *
 * @param options The target, the largest size to try, the tries per size
 * and where the events go.
 * @returns The largest payload echoed intact, the smallest failing size and
 * why, and every try.
 * @throws {RangeError} When `max` is not a positive integer or exceeds the
 * family limit, when `tries` is not a positive integer, or when `timeoutMs`
 * is below 1 or `waitMs` negative.
 * @throws {Error} The socket's error when a receive fails.
 *
 * @example Find what an echo server returns intact, up to 2,000 bytes
 * ```ts
 * import { sweepPayload } from "./sweep.ts";
 * import { serveSocket } from "../echo/socket.ts";
 * import { equal } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveSocket({ hostnames: ["127.0.0.1"], port: 0, signal: controller.signal });
 * try {
 *   const result = await sweepPayload({ target: { ...server.addr, family: "IPv4" }, max: 2000 });
 *   equal(result.maxPayload, 2000);
 *   equal(result.failure, undefined);
 * } finally {
 *   controller.abort();
 *   await server.finished;
 * }
 * ```
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
  const flow = new Flow(0, newSessionId(), {
    target,
    bind: options.bind,
    timeoutMs,
    onSendError: onEvent,
  });
  const steps: SweepEvent[] = [];
  const stopped = () => signal?.aborted === true || flow.error !== undefined;

  async function attempt(size: number, n: number): Promise<SweepEvent> {
    const answer = await flow.ask(size, signal);
    const reply = answer === "unsent" ? undefined : answer;
    const event: SweepEvent = {
      type: "sweep",
      size,
      attempt: n,
      // A try a signal cut short never had its full timeout: not lost.
      outcome: answer === "unsent"
        ? "unsent"
        : reply?.check ?? (signal?.aborted ? "interrupted" : "lost"),
      bytes: reply?.bytes ?? 0,
      rttMs: reply?.rttMs ?? NaN,
    };
    steps.push(event);
    onEvent?.(event);
    return event;
  }

  /** Tries a size; undefined when intact, else why it failed. */
  async function probe(size: number): Promise<SweepFailure | undefined> {
    let corrupted = false;
    let left = false;
    for (let n = 1; n <= tries && !stopped(); n++) {
      const { outcome, bytes } = await attempt(size, n);
      if (outcome === "intact") return undefined;
      if (outcome === "truncated") {
        return { size, reason: "truncated", echoed: bytes };
      }
      if (outcome === "interrupted") return { size, reason: "interrupted" };
      if (outcome === "corrupted") corrupted = true;
      if (outcome !== "unsent") left = true;
    }
    return {
      size,
      reason: corrupted ? "corrupted" : left ? "lost" : "unsent",
    };
  }

  let good = 0;
  let bad: SweepFailure | undefined;
  const tried = new Set<number>();
  // A truncated echo's length is a good guess for the limit, but only as a
  // shortcut: a server that trims a few bytes off every echo would lead the
  // search down one length at a time, 65,000 tries. After a guessed size
  // fails, or after HINT_TRIES guesses, the search only bisects.
  let hints = HINT_TRIES;
  try {
    const first = Math.min(PROBE_HEADER_SIZE, limit);
    bad = await probe(first);
    if (bad === undefined) {
      good = first;
      if (limit > first) bad = await probe(limit);
      if (bad === undefined) good = limit;
    }
    // The header-sized probe failed: a shorter one could not carry the
    // sequence number and session id, so there is nothing to search below.
    while (good > 0 && bad !== undefined && bad.size - good > 1 && !stopped()) {
      let mid = Math.floor((good + bad.size) / 2);
      let hinted = false;
      // A server that cuts echoes to L bytes most likely passes L and not
      // L + 1: trying those first ends the search at once.
      const hint = bad.reason === "truncated" ? bad.echoed! : -1;
      if (hints > 0) {
        for (const guess of [hint, hint + 1]) {
          if (guess > good && guess < bad.size && !tried.has(guess)) {
            mid = guess;
            hinted = true;
            hints--;
            break;
          }
        }
      }
      tried.add(mid);
      const result = await probe(mid);
      if (result === undefined) good = mid;
      else {
        bad = result;
        if (hinted) hints = 0;
      }
    }
    await flow.drain(waitMs, signal);
  } finally {
    flow.close();
    await flow.receiving;
  }
  if (flow.error !== undefined) throw flow.error;
  const counts = flow.counts();
  const inFlight = steps.filter((step) => step.outcome === "interrupted")
    .length;
  counts.lost -= inFlight;
  return {
    target,
    limit,
    maxPayload: good,
    ...(bad === undefined ? {} : { failure: bad }),
    ...counts,
    inFlight,
    truncated: flow.truncated,
    ignored: flow.ignored,
    merged: flow.merged,
    sendError: flow.sendError,
    steps,
    rttMs: summarize(flow.arrivals),
  };
}
