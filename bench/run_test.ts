import { deepEqual, equal, match } from "node:assert/strict";
import {
  barChart,
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

Deno.test("formatTable() gives each server's ratio against this server", () => {
  const table = formatTable([
    row("udp-echo", 30_000, 40),
    row("python", 20_000, 20),
  ], "udp-echo");
  const lines = table.split("\n");
  equal(lines.length, 4);
  match(
    lines[3]!,
    /^\| python \| 32 \| 64 \| 20,000 \| 20 \| 60 \| 1\.50x \| 2\.00x \|/,
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
