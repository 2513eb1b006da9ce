/**
 * Micro benchmarks for the per-probe work of the measurement client: encoding
 * a probe, decoding and verifying its echo, and the statistics at the end of
 * a run. Run with `deno bench bench/probe_bench.ts` (under
 * `flock /tmp/bench.lock` on a shared machine).
 *
 * @module
 */

import {
  decodeProbe,
  encodeProbe,
  encodeProbeInto,
  verifyProbe,
} from "../measure/probe.ts";
import {
  meanIpdv,
  ReplyTracker,
  rfc3550Jitter,
  summarize,
} from "../measure/stats.ts";

const PROBE = { session: 0x1234_5678, seq: 1000, sentAt: 1_763_780_000_000 };

for (const size of [64, 1472, 65_507]) {
  const buffer = new Uint8Array(size);
  const echo = encodeProbe(PROBE, size);
  Deno.bench({
    name: `encodeProbeInto ${size} B`,
    group: `probe ${size} B`,
    baseline: true,
    fn() {
      encodeProbeInto(buffer, PROBE);
    },
  });
  Deno.bench({
    name: `decodeProbe + verifyProbe ${size} B`,
    group: `probe ${size} B`,
    fn() {
      const header = decodeProbe(echo)!;
      if (verifyProbe(echo, header, size) !== "intact") throw new Error("bad");
    },
  });
}

// Round-trip times shaped like a loopback run: mostly ~0.1 ms, a long tail.
const RTTS = Array.from(
  { length: 100_000 },
  (_, i) => 0.08 + ((i * 7919) % 1000) / 10_000 + (i % 997 === 0 ? 2 : 0),
);

Deno.bench({
  name: "summarize 100k RTTs",
  group: "stats 100k",
  baseline: true,
  fn() {
    summarize(RTTS);
  },
});

Deno.bench({
  name: "meanIpdv + rfc3550Jitter 100k RTTs",
  group: "stats 100k",
  fn() {
    meanIpdv(RTTS);
    rfc3550Jitter(RTTS);
  },
});

Deno.bench({
  name: "ReplyTracker.record 100k replies",
  group: "stats 100k",
  fn() {
    const tracker = new ReplyTracker();
    for (let seq = 0; seq < 100_000; seq++) tracker.record(seq, true);
  },
});
