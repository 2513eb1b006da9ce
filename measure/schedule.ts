/**
 * Pacing quality of an open-loop run, like irtt's timer error: how far each
 * send strayed from its schedule, as a distribution, and the largest burst
 * of probes that left back to back.
 *
 * @module
 */

import { percentile } from "./stats.ts";

/**
 * Two consecutive sends are back to back when the gap between them is below
 * this share of the gap the schedule asked for.
 */
export const BURST_GAP_SHARE = 0.25;

/**
 * A send is on time when it left within this share of the interval of its
 * scheduled time, either way.
 */
export const ON_TIME_SHARE = 0.05;

/** How far sends strayed from their schedule, in milliseconds. */
export interface ScheduleError {
  /** Mean of (actual − scheduled) send time. */
  mean: number;
  /** Largest (actual − scheduled) send time. */
  max: number;
  /**
   * Percent by which the span from first to last send differs from the
   * scheduled span; 0 when fewer than two sends were scheduled apart.
   */
  drift: number;
  /** Median (actual − scheduled) send time (nearest rank). */
  p50?: number;
  /** 99th percentile of (actual − scheduled) send time (nearest rank). */
  p99?: number;
  /**
   * The most probes that left back to back: the longest run of consecutive
   * sends of one flow in which each followed the one before by less than
   * {@linkcode BURST_GAP_SHARE} of the gap the schedule asked between them
   * (1 when every send kept its distance, NaN without sends). A timer that
   * wakes late and sends what fell due at once makes bursts; a paced
   * sender keeps this at 1.
   */
  largestBurst?: number;
  /**
   * Percent of sends that left on time: within ±{@linkcode ON_TIME_SHARE}
   * of the interval of their scheduled time, the interval being the gap the
   * schedule asked between a send and its flow's neighbour (NaN when no
   * flow had two sends).
   */
  onTimePercent?: number;
}

/**
 * Compares actual send times with scheduled ones (same units, same order;
 * several flows one after another, each schedule rising); NaN fields when
 * there are none.
 *
 * @example
 * ```ts
 * import { scheduleError } from "./schedule.ts";
 * import { deepEqual } from "node:assert/strict";
 *
 * // Sent 2 and 52 ms late: the 100 ms span took 150 ms, 50% too long.
 * deepEqual(scheduleError([0, 100], [2, 152]), {
 *   mean: 27,
 *   max: 52,
 *   drift: 50,
 *   p50: 2,
 *   p99: 52,
 *   largestBurst: 1,
 *   onTimePercent: 50,
 * });
 * ```
 */
export function scheduleError(
  scheduled: ArrayLike<number>,
  actual: ArrayLike<number>,
): ScheduleError {
  if (scheduled.length !== actual.length) {
    throw new TypeError(
      `Cannot compare schedules: ${scheduled.length} scheduled and ${actual.length} actual times`,
    );
  }
  const n = scheduled.length;
  if (n === 0) {
    return {
      mean: NaN,
      max: NaN,
      drift: NaN,
      p50: NaN,
      p99: NaN,
      largestBurst: NaN,
      onTimePercent: NaN,
    };
  }
  const errors = new Float64Array(n);
  let sum = 0;
  let max = -Infinity;
  let burst = 1;
  let largestBurst = 1;
  let judged = 0;
  let onTime = 0;
  for (let i = 0; i < n; i++) {
    const error = actual[i]! - scheduled[i]!;
    errors[i] = error;
    sum += error;
    if (error > max) max = error;
    // A schedule that does not rise starts another flow; a flow's first
    // send takes its interval from the next.
    const before = i > 0 ? scheduled[i]! - scheduled[i - 1]! : 0;
    const interval = before > 0
      ? before
      : i + 1 < n
      ? scheduled[i + 1]! - scheduled[i]!
      : 0;
    if (interval > 0) {
      judged++;
      if (Math.abs(error) <= ON_TIME_SHARE * interval) onTime++;
    }
    if (i === 0) continue;
    if (before > 0 && actual[i]! - actual[i - 1]! < BURST_GAP_SHARE * before) {
      burst++;
      if (burst > largestBurst) largestBurst = burst;
    } else burst = 1;
  }
  errors.sort();
  const span = scheduled[n - 1]! - scheduled[0]!;
  const drift = span > 0 ? ((actual[n - 1]! - actual[0]!) / span - 1) * 100 : 0;
  return {
    mean: sum / n,
    max,
    drift,
    p50: percentile(errors, 50),
    p99: percentile(errors, 99),
    largestBurst,
    onTimePercent: judged > 0 ? onTime / judged * 100 : NaN,
  };
}
