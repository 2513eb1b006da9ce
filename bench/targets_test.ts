import { deepEqual, equal, match } from "node:assert/strict";
import { formatTargets, judgeTargets } from "./targets.ts";

const REFS = { server: "C", generator: "Cc", sender: "Cs", size: 64 };

function server(
  name: string,
  window: number,
  rate: number,
  p50: number,
  bestP50 = p50,
) {
  return { server: name, window, size: 64, rate, p50, bestP50 };
}

function client(
  name: string,
  window: number,
  rate: number,
  p50: number,
  min: number,
  reference?: string,
  bestP50 = p50,
) {
  return {
    client: name,
    reference,
    window,
    rate,
    p50,
    bestP50,
    min,
    lost: 0,
    corrupt: 0,
  };
}

Deno.test("judgeTargets() judges server.ts rows against the C server at their window", () => {
  const targets = judgeTargets(
    [
      server("C", 1, 50_000, 10, 8),
      server("C", 32, 200_000, 100),
      // At one in flight the best rounds are compared: 8.8 ÷ 8, not 20 ÷ 10.
      server("server.ts --io batch", 1, 48_000, 20, 8.8),
      server("server.ts --io batch", 32, 179_000, 110),
      server("python", 32, 10, 1),
    ],
    [],
    [],
    REFS,
  );
  deepEqual(
    targets.map((t) => [t.target, t.row, Number(t.value.toFixed(3)), t.met]),
    [
      ["server 1 in flight p50, best round", "server.ts --io batch", 1.1, true],
      ["server 32 in flight echoes/s", "server.ts --io batch", 0.895, false],
    ],
  );
});

Deno.test("judgeTargets() judges clients against the C client and pacing against 95%", () => {
  const targets = judgeTargets([], [
    client("Cc", 1, 40_000, 10, 8),
    client("Cc", 32, 200_000, 100, 50),
    // Round trips against the row it names; echoes/s against the generator (Cc).
    client("Ck", 1, 40_000, 20, 16, undefined, 10),
    client("Ck", 32, 100_000, 200, 100),
    client("client.ts --io batch", 1, 30_000, 40, 20, "Ck", 12),
    client("client.ts --io batch", 32, 160_000, 120, 60, "Ck"),
  ], [
    {
      sender: "Cs",
      received: 500,
      gaps: 499,
      within: 0.5,
      largestBurst: 1,
      p50ErrorUs: 1,
      p99ErrorUs: 2,
    },
    {
      sender: "client.ts --io batch",
      received: 500,
      gaps: 499,
      within: 0.96,
      largestBurst: 1,
      p50ErrorUs: 1,
      p99ErrorUs: 2,
    },
  ], REFS);
  deepEqual(
    targets.map((t) => [t.target, Number(t.value.toFixed(3)), t.met]),
    [
      ["client -w 1 p50, best round", 1.2, true],
      ["client -w 1 min", 1.25, false],
      ["client -w 32 echoes/s", 0.8, true],
      ["pacing: gaps within ±5%", 0.96, true],
    ],
  );
  const table = formatTargets(targets).split("\n");
  equal(table.length, 6);
  match(
    table[3]!,
    /^\| client -w 1 min \| client\.ts --io batch \| 1\.25x \| <= 1\.20x C \| no \|$/,
  );
  match(table[5]!, /\| 96\.0% \| >= 95% \| yes \|$/);
});
