/**
 * Pure statistics for round-trip measurements: summaries with percentiles,
 * jitter (mean IPDV and RFC 3550 interarrival jitter), send-schedule error,
 * reply accounting (received, lost, duplicates, reordered, corrupted) and a
 * small text histogram. No I/O, so every figure can be checked by hand.
 *
 * Definitions used here and everywhere else in udp-echo:
 * - percentiles use the nearest-rank method: the p-th percentile of n sorted
 *   values is the value at rank ⌈p/100 × n⌉;
 * - `stddev` is the sample standard deviation (n − 1), 0 for one value;
 * - IPDV is the difference between the round-trip times of two consecutive
 *   probes (by sequence number) that were both answered; its mean is over
 *   absolute values;
 * - RFC 3550 jitter runs the estimator J += (|D| − J) / 16 over the
 *   round-trip times in arrival order, D being the difference between
 *   successive ones.
 *
 * @example Summarise round-trip times
 * ```ts
 * import { summarize } from "./stats.ts";
 * import { equal } from "node:assert/strict";
 *
 * const summary = summarize([3, 1, 2, 4]);
 * equal(summary.median, 2.5);
 * equal(summary.p90, 4);
 * ```
 *
 * @module
 */

/** Location and spread of a set of values; every field is NaN when empty. */
export interface Summary {
  /** Number of values. */
  count: number;
  /** Smallest value. */
  min: number;
  /** Arithmetic mean. */
  mean: number;
  /** Middle value; the mean of the two middle values for an even count. */
  median: number;
  /** Largest value. */
  max: number;
  /** Sample standard deviation (n − 1); 0 for a single value. */
  stddev: number;
  /** 90th percentile (nearest rank). */
  p90: number;
  /** 99th percentile (nearest rank). */
  p99: number;
  /** 99.9th percentile (nearest rank). */
  p999: number;
}

/**
 * Returns the p-th percentile (0 < p ≤ 100) of values sorted ascending, by
 * nearest rank; NaN when there are none.
 *
 * @example
 * ```ts
 * import { percentile } from "./stats.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(percentile([10, 20, 30, 40, 50], 50), 30);
 * ```
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (!(p > 0 && p <= 100)) {
    throw new RangeError(`Cannot take percentile ${p}: expected 0 < p <= 100`);
  }
  if (sorted.length === 0) return NaN;
  // Rounding guards against 99.9 / 100 * 1000 = 998.9999999999999.
  const rank = Math.ceil(Math.round(p * sorted.length * 1e6) / 1e8);
  return sorted[Math.max(rank, 1) - 1]!;
}

/** Summarises values: min, mean, median, max, stddev and percentiles. */
export function summarize(values: ArrayLike<number>): Summary {
  const n = values.length;
  const sorted = Float64Array.from(values).sort();
  if (n === 0) {
    return {
      count: 0,
      min: NaN,
      mean: NaN,
      median: NaN,
      max: NaN,
      stddev: NaN,
      p90: NaN,
      p99: NaN,
      p999: NaN,
    };
  }
  let sum = 0;
  for (const value of sorted) sum += value;
  const mean = sum / n;
  let squares = 0;
  for (const value of sorted) squares += (value - mean) ** 2;
  const middle = n >> 1;
  return {
    count: n,
    min: sorted[0]!,
    mean,
    median: n % 2 === 1
      ? sorted[middle]!
      : (sorted[middle - 1]! + sorted[middle]!) / 2,
    max: sorted[n - 1]!,
    stddev: n > 1 ? Math.sqrt(squares / (n - 1)) : 0,
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
  };
}

/**
 * Mean absolute IPDV over round-trip times indexed by sequence number
 * (`undefined` or NaN for a probe without a reply); only pairs of
 * consecutive probes that were both answered count. NaN without such a pair.
 *
 * @example
 * ```ts
 * import { meanIpdv } from "./stats.ts";
 * import { equal } from "node:assert/strict";
 *
 * // Pairs (0,1) and (3,4): |12 - 10| = 2 and |9 - 14| = 5.
 * equal(meanIpdv([10, 12, undefined, 14, 9]), 3.5);
 * ```
 */
export function meanIpdv(
  rttBySeq: ArrayLike<number | undefined>,
): number {
  let sum = 0;
  let pairs = 0;
  for (let i = 1; i < rttBySeq.length; i++) {
    const previous = rttBySeq[i - 1];
    const current = rttBySeq[i];
    if (
      previous === undefined || current === undefined ||
      Number.isNaN(previous) || Number.isNaN(current)
    ) continue;
    sum += Math.abs(current - previous);
    pairs++;
  }
  return pairs === 0 ? NaN : sum / pairs;
}

/**
 * RFC 3550 (section 6.4.1) interarrival jitter over round-trip times in
 * arrival order; NaN for fewer than two.
 *
 * @example
 * ```ts
 * import { rfc3550Jitter } from "./stats.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(rfc3550Jitter([10, 26]), 1); // J = 0 + (16 - 0) / 16
 * ```
 */
export function rfc3550Jitter(rttInArrivalOrder: ArrayLike<number>): number {
  if (rttInArrivalOrder.length < 2) return NaN;
  let jitter = 0;
  for (let i = 1; i < rttInArrivalOrder.length; i++) {
    const d = Math.abs(rttInArrivalOrder[i]! - rttInArrivalOrder[i - 1]!);
    jitter += (d - jitter) / 16;
  }
  return jitter;
}

/**
 * Percentage of probes without an intact reply (lost or only corrupted);
 * probes still in flight when the run was cut short count for neither side.
 */
export function lossPercent(
  result: { sent: number; received: number; inFlight?: number },
): number {
  const settled = result.sent - (result.inFlight ?? 0);
  return settled === 0 ? NaN : (settled - result.received) / settled * 100;
}

/** Counts of what happened to the probes of a run. */
export interface ReplyCounts {
  /** Probes sent. */
  sent: number;
  /** Probes with at least one intact reply. */
  received: number;
  /** Probes with no reply at all. */
  lost: number;
  /** Intact replies beyond the first for a probe. */
  duplicates: number;
  /** Intact first replies that arrived after the reply to a later probe. */
  reordered: number;
  /** Replies whose bytes differ from what was sent (truncated ones too). */
  corrupted: number;
  /**
   * Probes whose send failed, so they never left this host (an OS error
   * such as EPERM from a firewall rule); not counted in `sent`.
   */
  sendErrors: number;
}

/** What {@linkcode ReplyTracker.record} made of one reply. */
export interface ReplyVerdict {
  /** Whether this is an intact reply beyond the first for its probe. */
  duplicate: boolean;
  /** Whether this first intact reply came after the reply to a later probe. */
  reordered: boolean;
}

/**
 * Keeps the reply accounting of one flow incrementally, as replies arrive,
 * so an engine can label each reply (DUP, reordered) and count at the end.
 *
 * @example
 * ```ts
 * import { ReplyTracker } from "./stats.ts";
 * import { deepEqual } from "node:assert/strict";
 *
 * const tracker = new ReplyTracker();
 * tracker.record(1, true);
 * tracker.record(0, true); // after the reply to probe 1: reordered
 * tracker.record(1, true); // a second intact reply: duplicate
 * deepEqual(tracker.counts(4), {
 *   sent: 4,
 *   received: 2,
 *   lost: 2,
 *   duplicates: 1,
 *   reordered: 1,
 *   corrupted: 0,
 *   sendErrors: 0,
 * });
 * ```
 */
export class ReplyTracker {
  #state = new Uint8Array(64);
  /** Index mask of a ring of per-probe state; 0 when it grows with the run. */
  readonly #mask: number;

  /**
   * `ring` (a power of two): keep the state of the latest `ring` probes
   * only, in fixed memory, for a run without end; {@linkcode forget} must
   * then clear a probe's slot before it is sent. Omitted, the state grows.
   */
  constructor(ring?: number) {
    if (ring !== undefined) {
      if (!Number.isInteger(ring) || ring < 1 || (ring & (ring - 1)) !== 0) {
        throw new RangeError(
          `Cannot keep a ring of ${ring} probes: expected a power of two`,
        );
      }
      this.#state = new Uint8Array(ring);
    }
    this.#mask = ring === undefined ? 0 : ring - 1;
  }

  #slot(seq: number): number {
    return this.#mask === 0 ? seq : seq & this.#mask;
  }

  /** Clears the state of probe `seq` (a ring slot reused by a new probe). */
  forget(seq: number): void {
    if (this.#mask !== 0) this.#state[this.#slot(seq)] = 0;
  }
  #received = 0;
  #answered = 0;
  #duplicates = 0;
  #reordered = 0;
  #corrupted = 0;
  #highest = -1;

  /** Records a reply to probe `seq`; `intact` is false for damaged bytes. */
  record(probe: number, intact: boolean): ReplyVerdict {
    if (!Number.isInteger(probe) || probe < 0) {
      throw new RangeError(`Cannot record reply: bad sequence number ${probe}`);
    }
    let seq = probe;
    if (this.#mask !== 0) seq = this.#slot(seq);
    else if (seq >= this.#state.length) {
      let length = this.#state.length;
      while (length <= seq) length *= 2;
      const grown = new Uint8Array(length);
      grown.set(this.#state);
      this.#state = grown;
    }
    const state = this.#state[seq]!;
    if ((state & ANSWERED) === 0) this.#answered++;
    if (!intact) {
      this.#corrupted++;
      this.#state[seq] = state | ANSWERED;
      return { duplicate: false, reordered: false };
    }
    this.#state[seq] = state | ANSWERED | INTACT;
    if ((state & INTACT) !== 0) {
      this.#duplicates++;
      return { duplicate: true, reordered: false };
    }
    this.#received++;
    const reordered = probe < this.#highest;
    if (reordered) this.#reordered++;
    else this.#highest = probe;
    return { duplicate: false, reordered };
  }

  /** Whether probe `seq` has had any reply, intact or not. */
  answered(seq: number): boolean {
    return ((this.#state[this.#slot(seq)] ?? 0) & ANSWERED) !== 0;
  }

  /** Whether probe `seq` has had an intact reply. */
  intact(seq: number): boolean {
    return ((this.#state[this.#slot(seq)] ?? 0) & INTACT) !== 0;
  }

  /** Number of probes that have had any reply. */
  get answeredCount(): number {
    return this.#answered;
  }

  /**
   * The counts, given how many probes left (`sent`) and how many more
   * failed to send (`sendErrors`, default 0): a probe that never left is
   * not lost, since nothing was there to lose.
   */
  counts(sent: number, sendErrors = 0): ReplyCounts {
    return {
      sent,
      received: this.#received,
      lost: sent - this.#answered,
      duplicates: this.#duplicates,
      reordered: this.#reordered,
      corrupted: this.#corrupted,
      sendErrors,
    };
  }
}

const ANSWERED = 1;
const INTACT = 2;

/** A reply as seen by {@linkcode countReplies}. */
export interface ReplyRecord {
  /** The sequence number of the probe it answers. */
  seq: number;
  /** Whether its bytes equal what was sent. */
  intact: boolean;
}

/**
 * Counts received, lost, duplicate, reordered and corrupted replies of a run
 * of `sent` probes from its replies in arrival order.
 */
export function countReplies(
  sent: number,
  replies: Iterable<ReplyRecord>,
): ReplyCounts {
  const tracker = new ReplyTracker();
  for (const reply of replies) tracker.record(reply.seq, reply.intact);
  return tracker.counts(sent);
}

/** Adds up the counts of several flows. */
export function addCounts(all: Iterable<ReplyCounts>): ReplyCounts {
  const total: ReplyCounts = {
    sent: 0,
    received: 0,
    lost: 0,
    duplicates: 0,
    reordered: 0,
    corrupted: 0,
    sendErrors: 0,
  };
  for (const counts of all) {
    for (const key of Object.keys(total) as (keyof ReplyCounts)[]) {
      total[key] += counts[key];
    }
  }
  return total;
}

/** Options for {@linkcode histogram}. */
export interface HistogramOptions {
  /** Number of equal-width bins. Defaults to 8. */
  bins?: number;
  /** Width of the longest bar in characters. Defaults to 40. */
  width?: number;
  /** Decimals of the bin edges. Defaults to 3. */
  digits?: number;
  /**
   * Upper edge of the last bin; larger values share one overflow row
   * (`> upper`), so a few outliers do not squash the rest into one bin.
   * Defaults to the maximum.
   */
  upper?: number;
}

/**
 * Draws a histogram as text lines: equal-width bins from the minimum to
 * `upper` (default the maximum), each `lower - upper | ### count`, and an
 * overflow row `> upper` when values lie above it. Empty without values.
 *
 * @example
 * ```ts
 * import { histogram } from "./stats.ts";
 * import { deepEqual } from "node:assert/strict";
 *
 * deepEqual(histogram([1, 1, 1, 2, 9], { bins: 2, width: 3, digits: 1, upper: 2 }), [
 *   "1.0 - 1.5 | ### 3",
 *   "1.5 - 2.0 | #   1",
 *   "    > 2.0 | #   1",
 * ]);
 * ```
 */
export function histogram(
  values: ArrayLike<number>,
  options: HistogramOptions = {},
): string[] {
  const { bins = 8, width = 40, digits = 3 } = options;
  if (values.length === 0) return [];
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    min = Math.min(min, values[i]!);
    max = Math.max(max, values[i]!);
  }
  const top = Math.max(min, Math.min(options.upper ?? max, max));
  const count = top > min ? bins : 1;
  const step = (top - min) / count;
  const tally = new Array<number>(count).fill(0);
  let over = 0;
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    if (value > top) {
      over++;
      continue;
    }
    const bin = step > 0 ? Math.floor((value - min) / step) : 0;
    const index = Math.min(bin, count - 1);
    tally[index] = tally[index]! + 1;
  }
  const labels = tally.map((_, i) => [
    (min + i * step).toFixed(digits),
    (i === count - 1 ? top : min + (i + 1) * step).toFixed(digits),
  ]);
  const lowerWidth = Math.max(...labels.map(([lower]) => lower!.length));
  const upperWidth = Math.max(...labels.map(([, upper]) => upper!.length));
  const rows = labels.map(([lower, upper], i) => ({
    label: `${lower!.padStart(lowerWidth)} - ${upper!.padStart(upperWidth)}`,
    n: tally[i]!,
  }));
  if (over > 0) {
    rows.push({
      label: `> ${top.toFixed(digits)}`.padStart(lowerWidth + 3 + upperWidth),
      n: over,
    });
  }
  const most = Math.max(...rows.map((row) => row.n));
  return rows.map(({ label, n }) => {
    const bar = "#".repeat(Math.round((n / most) * width) || (n > 0 ? 1 : 0));
    return `${label} | ${bar.padEnd(width)} ${n}`;
  });
}
