import { deepEqual, equal, match } from "node:assert/strict";
import {
  aggregate,
  barChart,
  formatClientTable,
  formatTable,
  type Measurement,
  median,
  percentile,
} from "./run.ts";

function row(server: string, rate: number, p50: number): Measurement {
  return {
    server,
    window: 32,
    size: 64,
    rate,
    p50,
    bestP50: p50 / 2,
    p99: p50 * 3,
    lost: 0,
    corrupt: 0,
    serverCpu: 50,
    generatorCpu: 60,
  };
}

Deno.test("percentile() reads a [microseconds, count] histogram", () => {
  const histogram = new Map([[10, 50], [20, 49], [900, 1]]);
  equal(percentile(histogram, 0.5), 10);
  equal(percentile(histogram, 0.99), 20);
  equal(percentile(histogram, 1), 900);
});

Deno.test("median() takes the middle value, or the mean of the middle two", () => {
  equal(median([3, 1, 2]), 2);
  equal(median([4, 1, 3, 2]), 2.5);
});

Deno.test("formatTable() gives each row's ratios to the reference row", () => {
  const table = formatTable([
    row("C recvmmsg", 30_000, 40),
    row("python", 20_000, 20),
  ], "C recvmmsg");
  const lines = table.split("\n");
  equal(lines.length, 4);
  match(lines[0]!, /echoes\/s ÷ C recvmmsg \| p50 ÷ C recvmmsg/);
  match(
    lines[2]!,
    /^\| C recvmmsg \| 32 \| 64 \| 30,000 \| 40 \| 120 \| 1\.00x \| 1\.00x \|/,
  );
  match(
    lines[3]!,
    /^\| python \| 32 \| 64 \| 20,000 \| 20 \| 60 \| 0\.67x \| 0\.50x \|/,
  );
  // The best round's p50 and its ratio close the row.
  match(lines[3]!, /\| 10 \| 0\.50x \|$/);
});

Deno.test("aggregate() adds side-by-side generators and takes medians over runs", () => {
  const sample = (rate: number, p50: number) => ({
    rate,
    p50,
    p99: p50 * 2,
    lost: 1,
    corrupt: 0,
  });
  const m = aggregate("s", 32, 64, [
    {
      samples: [sample(10, 5), sample(20, 7)],
      serverCpu: 50,
      generatorCpu: 10,
    },
    { samples: [sample(100, 9)], serverCpu: 70, generatorCpu: 30 },
    { samples: [sample(40, 6)], serverCpu: 60, generatorCpu: 20 },
  ]);
  equal(m.rate, 40);
  equal(m.p50, 6.5);
  equal(m.bestP50, 6);
  equal(m.lost, 4);
  equal(m.serverCpu, 60);
});

Deno.test("formatClientTable() gives echoes/s against the generator and round trips against each row's own C reference", () => {
  const c = { lost: 0, corrupt: 0, window: 1 };
  const table = formatClientTable([
    { ...c, client: "C user", rate: 40_000, p50: 10, bestP50: 9, min: 8 },
    { ...c, client: "C kernel", rate: 30_000, p50: 5, bestP50: 5, min: 4 },
    {
      ...c,
      client: "ts socket",
      reference: "C user",
      rate: 20_000,
      p50: 12,
      bestP50: 18,
      min: 10,
      lost: 2,
    },
    {
      ...c,
      client: "ts batch",
      reference: "C kernel",
      rate: 20_000,
      p50: 6,
      bestP50: 6,
      min: 4,
    },
  ], "C user").split("\n");
  match(table[0]!, /\| echoes\/s ÷ C user \| round trips against \|/);
  match(
    table[2]!,
    /^\| C user \| 1 \| 40,000 \| 10 \| 9 \| 8 \| - \| - \| - \| - \| - \| 0\/0 \|$/,
  );
  match(
    table[4]!,
    /^\| ts socket \| 1 \| 20,000 \| 12 \| 18 \| 10 \| 0\.50x \| C user \| 1\.20x \| 2\.00x \| 1\.25x \| 2\/0 \|$/,
  );
  match(
    table[5]!,
    /^\| ts batch \| 1 \| 20,000 \| 6 \| 6 \| 4 \| 0\.50x \| C kernel \| 1\.20x \| 1\.20x \| 1\.00x \| 0\/0 \|$/,
  );
});

Deno.test("barChart() draws one bar per server and cell", () => {
  const svg = barChart(
    [row("udp-echo", 30_000, 40), row("python", 20_000, 20)],
    "t",
  );
  deepEqual(
    svg.match(/<rect x="\d+(\.\d+)?" y="[\d.]+" width="24"/g)?.length,
    2,
  );
  match(svg, /^<svg /);
});
