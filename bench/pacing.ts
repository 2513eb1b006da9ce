/**
 * Pacing quality as a receiver sees it: from the kernel's arrival times of
 * datagrams sent every `interval`, the share of gaps within ±5% of the
 * interval, the largest burst and the gap error's percentiles. The times
 * come from `pacing recv` (`pacing.c`, SO_TIMESTAMPNS), so they are the
 * moments the datagrams reached the receiving socket, not what the sender
 * believes.
 *
 * @module
 */

/** What {@linkcode pacingStats} works out. */
export interface PacingStats {
  /** Datagrams received. */
  received: number;
  /** Gaps between consecutive arrivals judged. */
  gaps: number;
  /** Share (0-1) of gaps within ±5% of the interval. */
  within: number;
  /**
   * The most datagrams that arrived back to back, each less than half an
   * interval after the one before (1: no burst at all).
   */
  largestBurst: number;
  /** Median of |gap - interval|, in microseconds. */
  p50ErrorUs: number;
  /** 99th percentile of |gap - interval|, in microseconds. */
  p99ErrorUs: number;
}

/** Returns the value at quantile `q` (0-1) of sorted numbers (nearest rank). */
function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1]!;
}

/**
 * Judges arrival times (nanoseconds, in arrival order) against the interval
 * they were sent at (milliseconds). Throws a `RangeError` when the interval
 * is not positive.
 */
export function pacingStats(
  arrivalsNs: number[],
  intervalMs: number,
): PacingStats {
  if (!(intervalMs > 0)) {
    throw new RangeError(
      `Cannot judge pacing: interval ${intervalMs} ms is not positive`,
    );
  }
  const intervalNs = intervalMs * 1e6;
  const errors: number[] = [];
  let within = 0;
  let burst = 1;
  let largestBurst = arrivalsNs.length ? 1 : 0;
  for (let i = 1; i < arrivalsNs.length; i++) {
    const gap = arrivalsNs[i]! - arrivalsNs[i - 1]!;
    const error = Math.abs(gap - intervalNs);
    errors.push(error / 1000);
    if (error <= 0.05 * intervalNs) within++;
    burst = gap < intervalNs / 2 ? burst + 1 : 1;
    largestBurst = Math.max(largestBurst, burst);
  }
  errors.sort((a, b) => a - b);
  return {
    received: arrivalsNs.length,
    gaps: errors.length,
    within: errors.length ? within / errors.length : NaN,
    largestBurst,
    p50ErrorUs: quantile(errors, 0.5),
    p99ErrorUs: quantile(errors, 0.99),
  };
}
