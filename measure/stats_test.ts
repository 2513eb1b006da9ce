import { deepEqual, equal, throws } from "node:assert/strict";
import {
  addCounts,
  countReplies,
  histogram,
  meanIpdv,
  percentile,
  ReplyTracker,
  rfc3550Jitter,
  summarize,
} from "./stats.ts";
import { scheduleError } from "./schedule.ts";

function near(actual: number, expected: number, message?: string): void {
  equal(
    Math.abs(actual - expected) < 1e-9,
    true,
    message ?? `${actual} is not ${expected}`,
  );
}

Deno.test("summarize() matches a hand-worked vector", () => {
  // Mean 5; squared deviations 9+1+1+1+0+0+4+16 = 32; sample variance 32/7.
  const summary = summarize([9, 4, 2, 5, 4, 7, 4, 5]);
  equal(summary.count, 8);
  equal(summary.min, 2);
  equal(summary.max, 9);
  equal(summary.mean, 5);
  equal(summary.median, 4.5);
  near(summary.stddev, Math.sqrt(32 / 7));
  // Ranks: ceil(0.9 * 8) = 8, ceil(0.99 * 8) = 8.
  equal(summary.p90, 9);
  equal(summary.p99, 9);
  equal(summary.p999, 9);
});

Deno.test("summarize() of an odd count takes the middle value", () => {
  const summary = summarize([5, 1, 3]);
  equal(summary.median, 3);
  equal(summary.stddev, 2); // deviations 2, 0, 2: sqrt(8 / 2)
});

Deno.test("summarize() gives stddev 0 for one value and NaN for none", () => {
  deepEqual(summarize([0.25]), {
    count: 1,
    min: 0.25,
    mean: 0.25,
    median: 0.25,
    max: 0.25,
    stddev: 0,
    p90: 0.25,
    p99: 0.25,
    p999: 0.25,
  });
  const empty = summarize([]);
  equal(empty.count, 0);
  equal(Number.isNaN(empty.mean) && Number.isNaN(empty.p999), true);
});

Deno.test("percentile() uses nearest rank", () => {
  const thousand = Array.from({ length: 1000 }, (_, i) => i + 1);
  equal(percentile(thousand, 90), 900);
  equal(percentile(thousand, 99), 990);
  equal(percentile(thousand, 99.9), 999); // 0.999 * 1000 is 998.9999...
  equal(percentile(thousand, 100), 1000);
  const ten = Array.from({ length: 10 }, (_, i) => i + 1);
  equal(percentile(ten, 90), 9);
  equal(percentile(ten, 99), 10);
  equal(percentile(ten, 50), 5);
  equal(percentile([7], 0.1), 7);
  equal(Number.isNaN(percentile([], 50)), true);
  throws(() => percentile(ten, 0), RangeError);
  throws(() => percentile(ten, 101), RangeError);
});

Deno.test("meanIpdv() uses only consecutive answered pairs", () => {
  // Pairs (0,1): 2, (3,4): 5, (4,5): 0.5; the gap at 2 breaks two pairs.
  equal(meanIpdv([10, 12, undefined, 14, 9, 9.5]), 2.5);
  equal(meanIpdv([10, NaN, 12]), NaN);
  equal(Number.isNaN(meanIpdv([1])), true);
});

Deno.test("rfc3550Jitter() runs the 1/16 estimator in arrival order", () => {
  // D = 16: J = 1; D = 16: J = 1 + 15/16; D = 0: J = 1.9375 * 15/16.
  equal(rfc3550Jitter([10, 26, 10, 10]), 1.81640625);
  equal(rfc3550Jitter([5, 5, 5]), 0);
  equal(Number.isNaN(rfc3550Jitter([5])), true);
});

Deno.test("scheduleError() reports mean, max and span drift", () => {
  const result = scheduleError([100, 110, 120, 130, 140], [
    100.5,
    110,
    121.5,
    130.25,
    140.5,
  ]);
  equal(result.mean, 0.55); // (0.5 + 0 + 1.5 + 0.25 + 0.5) / 5
  equal(result.max, 1.5);
  near(result.drift, 0); // actual span 40 equals the scheduled span
  near(scheduleError([0, 100], [0, 101]).drift, 1);
  equal(scheduleError([5], [6]).drift, 0);
  throws(() => scheduleError([1], []), TypeError);
});

Deno.test("scheduleError() counts sends within ±5% of the interval as on time", () => {
  // Interval 10: on time means within 0.5 of the schedule, either way.
  const result = scheduleError([100, 110, 120, 130, 140], [
    100.5, // on time, at the edge
    110.6, // late
    119.5, // early, at the edge
    130.25, // on time
    145, // late
  ]);
  equal(result.onTimePercent, 60);
  // Two flows, one after another: each judged by its own interval; a flow
  // of one send has none and is not judged.
  equal(
    scheduleError([0, 100, 200, 0, 1, 2, 0], [0, 104, 206, 0, 1.06, 2, 0])
      .onTimePercent,
    4 / 6 * 100,
  );
  equal(Number.isNaN(scheduleError([5], [5]).onTimePercent), true);
});

Deno.test("countReplies() counts each definition exactly", () => {
  const counts = countReplies(6, [
    { seq: 0, intact: true },
    { seq: 2, intact: true },
    { seq: 1, intact: true }, // after the reply to 2: reordered
    { seq: 2, intact: true }, // second intact reply: duplicate, not reordered
    { seq: 3, intact: false }, // corrupted: answered but not received
    { seq: 5, intact: true },
    { seq: 3, intact: false }, // corrupted again
  ]);
  deepEqual(counts, {
    sent: 6,
    received: 4, // 0, 1, 2, 5
    lost: 1, // 4; 3 had replies, though none intact
    duplicates: 1,
    reordered: 1,
    corrupted: 2,
    sendErrors: 0,
  });
});

Deno.test("ReplyTracker labels replies as they arrive", () => {
  const tracker = new ReplyTracker();
  deepEqual(tracker.record(200, false), { duplicate: false, reordered: false });
  equal(tracker.answered(200), true);
  equal(tracker.intact(200), false);
  deepEqual(tracker.record(200, true), { duplicate: false, reordered: false });
  deepEqual(tracker.record(3, true), { duplicate: false, reordered: true });
  deepEqual(tracker.record(200, true), { duplicate: true, reordered: false });
  equal(tracker.answeredCount, 2);
  equal(tracker.answered(4), false);
  throws(() => tracker.record(-1, true), RangeError);
});

Deno.test("addCounts() sums flows field by field", () => {
  const one = countReplies(3, [{ seq: 0, intact: true }]);
  const two = countReplies(2, [{ seq: 1, intact: true }, {
    seq: 0,
    intact: true,
  }]);
  deepEqual(addCounts([one, two]), {
    sent: 5,
    received: 3,
    lost: 2,
    duplicates: 0,
    reordered: 1,
    corrupted: 0,
    sendErrors: 0,
  });
});

Deno.test("histogram() bins from min to max with scaled bars", () => {
  deepEqual(histogram([0, 1, 1, 2, 3, 4, 4, 4], { bins: 4, width: 6 }), [
    // Bins are [lower, upper), the last one closed: 1 falls in the second.
    // Bars scale to the fullest bin (4): round(1/4 * 6) = 2, round(2/4 * 6) = 3.
    "0.000 - 1.000 | ##     1",
    "1.000 - 2.000 | ###    2",
    "2.000 - 3.000 | ##     1",
    "3.000 - 4.000 | ###### 4",
  ]);
  deepEqual(histogram([2, 2], { width: 2, digits: 0 }), ["2 - 2 | ## 2"]);
  deepEqual(histogram([]), []);
});
