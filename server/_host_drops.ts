/**
 * The kernel's drops at the server's sockets (`EchoStats.hostDrops`) in
 * the server's lines: a count, or "unknown" with the reason in JSON.
 * Imported as a namespace: `hostDrops.text(stats)`.
 *
 * @module
 */

import type { EchoStats } from "../echo/types.ts";

const NUMBER = new Intl.NumberFormat("en-US");

/** `host drops 3` or `host drops unknown`, for the stats line. */
export function text(stats: EchoStats): string {
  return `host drops ${
    stats.hostDrops === null ? "unknown" : NUMBER.format(stats.hostDrops)
  }`;
}

/**
 * `host drops 3, ` for the totals: only when there were any or the count
 * is unknown, so a quiet run's totals stay as they were.
 */
export function inTotals(stats: EchoStats): string {
  return stats.hostDrops === 0 ? "" : `${text(stats)}, `;
}

/** The JSON fields: `host_drops` (null when unknown) and `host_drops_unknown_reason`. */
export function json(
  stats: EchoStats,
): { host_drops: number | null; host_drops_unknown_reason: string | null } {
  return {
    host_drops: stats.hostDrops,
    host_drops_unknown_reason: stats.hostDrops === null
      ? stats.hostDropsUnknown ?? null
      : null,
  };
}
