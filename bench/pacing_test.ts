import { equal, throws } from "node:assert/strict";
import { pacingStats } from "./pacing.ts";

const MS = 1_000_000;

Deno.test("pacingStats() finds every gap of a perfect 1 ms schedule within ±5%", () => {
  const stats = pacingStats([0, 1 * MS, 2 * MS, 3 * MS], 1);
  equal(stats.received, 4);
  equal(stats.gaps, 3);
  equal(stats.within, 1);
  equal(stats.largestBurst, 1);
  equal(stats.p50ErrorUs, 0);
});

Deno.test("pacingStats() counts a late send and the catch-up burst after it", () => {
  // Sends 1 and 2 late, then 3 at once: gaps 1, 2.5, 0.05, 0.45, 1 ms.
  const arrivals = [0, 1, 3.5, 3.55, 4, 5].map((ms) => ms * MS);
  const stats = pacingStats(arrivals, 1);
  equal(stats.gaps, 5);
  equal(stats.within, 2 / 5);
  // 3.5, 3.55 and 4 came less than half an interval apart: three back to back.
  equal(stats.largestBurst, 3);
  equal(stats.p50ErrorUs, 550);
  equal(stats.p99ErrorUs, 1500);
});

Deno.test("pacingStats() takes 5% of the interval as the edge of within", () => {
  const stats = pacingStats([0, 1.05 * MS, 2.11 * MS], 1);
  equal(stats.within, 0.5);
});

Deno.test("pacingStats() refuses an interval that is not positive", () => {
  throws(() => pacingStats([0, 1], 0), RangeError);
});
