#!/usr/bin/env -S deno run --unstable-net --allow-net --allow-run --allow-read
/**
 * A/B check that `--metrics` costs the echo nothing: `server.ts -q` with
 * and without `--metrics 0`, in alternating rounds under the bench's
 * closed-loop load (`bench/loadgen.ts`), the metrics one scraped once a
 * second during its load (Prometheus's default is every 15 s). Prints each
 * round's echoes/s, then the median of each side and their ratio.
 *
 * Usage:
 *   deno run --unstable-net --allow-net --allow-run --allow-read \
 *     bench/metrics_ab.ts [--rounds 4] [--duration 3] [--window 32] [--size 64]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { load, start, stop } from "./run.ts";
import { SERVER_V8_FLAGS } from "./server_flags.ts";

const SERVER = new URL("../server.ts", import.meta.url).pathname;
/** How often the metrics side is scraped during its load, in ms. */
const SCRAPE_EVERY_MS = 1000;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function round(
  metrics: boolean,
  options: { window: number; size: number; duration: number },
): Promise<{ rate: number; scrapes: number }> {
  let url: string | undefined;
  const server = await start({
    name: metrics ? "with --metrics" : "without",
    command: [
      Deno.execPath(),
      "run",
      "--unstable-net",
      "--allow-net",
      ...SERVER_V8_FLAGS,
      SERVER,
      "-H",
      "127.0.0.1",
      "-p",
      "0",
      "-q",
      ...(metrics ? ["--metrics", "0"] : []),
    ],
  }, (text) => {
    url ??= /metrics on (\S+)/.exec(text)?.[1];
  });
  let scrapes = 0;
  let scraping = true;
  const scraper = (async () => {
    while (metrics && scraping) {
      if (url !== undefined) {
        const response = await fetch(url);
        if ((await response.text()).includes("udp_echo_received")) scrapes++;
      }
      await new Promise((resolve) => setTimeout(resolve, SCRAPE_EVERY_MS));
    }
  })();
  try {
    const { results } = await load(
      server,
      options.window,
      options.size,
      options.duration,
      1,
    );
    const echoes = results.reduce((sum, r) => sum + r.echoes, 0);
    const seconds = results[0]!.seconds;
    return { rate: echoes / seconds, scrapes };
  } finally {
    scraping = false;
    await scraper;
    await stop(server);
  }
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string", default: "4" },
      duration: { type: "string", default: "3" },
      window: { type: "string", default: "32" },
      size: { type: "string", default: "64" },
    },
  });
  const options = {
    window: Number(values.window),
    size: Number(values.size),
    duration: Number(values.duration),
  };
  const without: number[] = [];
  const withMetrics: number[] = [];
  for (let i = 0; i < Number(values.rounds); i++) {
    // Alternate which goes first, so drift in the machine's load hits both.
    for (const metrics of i % 2 === 0 ? [false, true] : [true, false]) {
      const { rate, scrapes } = await round(metrics, options);
      (metrics ? withMetrics : without).push(rate);
      console.log(
        `round ${i + 1} ${metrics ? "with --metrics" : "without      "}: ${
          rate.toFixed(0)
        } echoes/s${metrics ? ` (${scrapes} scrapes)` : ""}`,
      );
    }
  }
  const a = median(without);
  const b = median(withMetrics);
  console.log(
    `median without ${a.toFixed(0)} echoes/s, with --metrics ${
      b.toFixed(0)
    } echoes/s, ratio ${(b / a).toFixed(3)}`,
  );
  console.log(
    `per-round ratios (with/without, same round): ${
      withMetrics.map((w, i) => (w / without[i]!).toFixed(3)).join(" ")
    }`,
  );
  return 0;
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
