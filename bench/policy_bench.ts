/**
 * Micro benchmarks of {@linkcode EchoPolicy.prototype.decide}, the one call
 * the echo server makes per datagram: `deno bench bench/policy_bench.ts`.
 *
 * @module
 */

import { EchoPolicy } from "../policy/policy.ts";

const SOURCES_V4 = Array.from(
  { length: 1_024 },
  (_, i) => ({ hostname: `10.0.${i >> 8}.${i & 255}`, port: 40_000 + i }),
);
const SOURCES_V6 = Array.from(
  { length: 1_024 },
  (_, i) => ({ hostname: `2001:db8:0:${i.toString(16)}::1`, port: 40_000 + i }),
);
const FLOOD = Array.from(
  { length: 100_000 },
  (_, i) => ({
    hostname: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    port: 40_000,
  }),
);

// decide() updates counters and buckets, so the calls cannot be optimised away.
let echoed = 0;
let now = 0;

function run(
  policy: EchoPolicy,
  sources: { hostname: string; port: number }[],
) {
  for (let i = 0; i < sources.length; i++) {
    now += 0.001;
    if (policy.decide(sources[i]!, 64, now) === "echo") echoed++;
  }
}

const LOOPBACK = new EchoPolicy();
const RATED = new EchoPolicy({ rate: 1_000 });
const FULL = new EchoPolicy({
  rate: 1_000,
  allow: ["10.0.0.0/8", "2001:db8::/32"],
  deny: ["10.255.0.0/16"],
  maxSize: 1_472,
  local: [{ hostname: "0.0.0.0", port: 10_000 }],
});
const FLOODED = new EchoPolicy({ rate: 1, maxSources: 65_536 });

Deno.bench("decide, no rate limit, 1,024 IPv4 sources", {
  group: "policy",
  baseline: true,
}, () => {
  run(LOOPBACK, SOURCES_V4);
});
Deno.bench("decide, 1,000/s, 1,024 IPv4 sources", { group: "policy" }, () => {
  run(RATED, SOURCES_V4);
});
Deno.bench(
  "decide, 1,000/s, 1,024 IPv6 /64 sources",
  { group: "policy" },
  () => {
    run(RATED, SOURCES_V6);
  },
);
Deno.bench(
  "decide, every rule, 1,024 IPv4 sources",
  { group: "policy" },
  () => {
    run(FULL, SOURCES_V4);
  },
);
Deno.bench("decide, 100,000 spoofed sources into a full table", {
  group: "flood",
}, () => {
  run(FLOODED, FLOOD);
});
