#!/usr/bin/env -S deno run --unstable-net --allow-net --allow-run --allow-read
/**
 * Memory check: the resident size of `server.ts --quiet` after 1 million
 * echoes and after 10 million, under the bench's closed-loop load.
 *
 * Usage:
 *   deno run --unstable-net --allow-net --allow-run --allow-read \
 *     bench/memory.ts [--first 1000000] [--last 10000000] [--window 32] [--size 64]
 *     [--loop NAME] [--v8-flags FLAGS]
 *
 * The server gets the V8 flags of `deno task server`; `--v8-flags FLAGS`
 * replaces them (`--v8-flags=` for V8's defaults). Linux only (reads VmRSS
 * from /proc). Exits 1 when the second figure is more than 10% above the
 * first.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { LoadResult } from "./loadgen.ts";
import { SERVER_V8_FLAGS } from "./server_flags.ts";

const HOST = "127.0.0.1";
const BENCH_DIR = new URL(".", import.meta.url).pathname;
const ROOT_DIR = new URL("..", import.meta.url).pathname;

/** Returns the resident set size of a process in KiB. */
async function rssKiB(pid: number): Promise<number> {
  // Deno grants /proc/PID only with --allow-all, so `cat` reads it.
  const { stdout } = await new Deno.Command("cat", {
    args: [`/proc/${pid}/status`],
  }).output();
  const match = new TextDecoder().decode(stdout).match(/VmRSS:\s+(\d+)/);
  if (!match) throw new Error(`Cannot read the resident size of ${pid}`);
  return Number(match[1]);
}

/** Runs the load generator for `seconds` and returns its result. */
async function load(
  port: number,
  window: number,
  size: number,
  seconds: number,
): Promise<LoadResult> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--unstable-net",
      "--allow-net",
      `${BENCH_DIR}loadgen.ts`,
      `--host=${HOST}`,
      `--port=${port}`,
      `--window=${window}`,
      `--size=${size}`,
      `--duration=${seconds}`,
      "--warmup=0",
    ],
    stderr: "inherit",
  }).output();
  if (!output.success) throw new Error("Cannot run load: generator failed");
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      first: { type: "string", default: "1000000" },
      last: { type: "string", default: "10000000" },
      window: { type: "string", default: "32" },
      size: { type: "string", default: "64" },
      loop: { type: "string" },
      "v8-flags": { type: "string" },
    },
  });
  const first = Number(values.first);
  const last = Number(values.last);
  const window = Number(values.window);
  const size = Number(values.size);
  // The server runs as `deno task server` runs it, unless --v8-flags says
  // otherwise ("" for V8's defaults).
  const given = values["v8-flags"];
  const v8Flags = given === undefined
    ? SERVER_V8_FLAGS
    : given
    ? [`--v8-flags=${given}`]
    : [];
  const server = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--unstable-net",
      "--allow-net",
      ...v8Flags,
      ...(values.loop
        ? [`${BENCH_DIR}loops.ts`, `--loop=${values.loop}`]
        : [`${ROOT_DIR}server.ts`, "--quiet"]),
      `--host=${HOST}`,
      "--port=0",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let draining: Promise<void> = Promise.resolve();
  try {
    const reader = server.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    const { value } = await reader.read();
    const port = Number(value?.match(/port (\d+)/)?.[1]);
    // Keep reading: a full pipe would stall the server. With --v8-flags (say
    // --trace-gc) what it prints goes on to stderr.
    const forward = values["v8-flags"] !== undefined;
    draining = (async () => {
      while (true) {
        const { value, done } = await reader.read();
        if (done) return;
        if (forward) console.error(value.trimEnd());
      }
    })();
    const startKiB = await rssKiB(server.pid);
    let echoes = 0;
    let lost = 0;
    let corrupt = 0;
    let firstKiB = 0;
    const started = performance.now();
    while (echoes < last) {
      const target = echoes < first ? first : last;
      // Chunks of at most 20 s, sized from the rate so far.
      const rate = echoes
        ? echoes / ((performance.now() - started) / 1000)
        : 30_000;
      const seconds = Math.min(20, Math.max(1, (target - echoes) / rate));
      const result = await load(port, window, size, seconds);
      echoes += result.echoes;
      lost += result.lost;
      corrupt += result.corrupt;
      console.error(`${echoes} echoes: RSS ${await rssKiB(server.pid)} KiB`);
      if (!firstKiB && echoes >= first) {
        firstKiB = await rssKiB(server.pid);
        console.log(
          `after ${echoes} echoes: RSS ${firstKiB} KiB (at start ${startKiB} KiB)`,
        );
      }
    }
    const lastKiB = await rssKiB(server.pid);
    const growth = (lastKiB - firstKiB) / firstKiB;
    console.log(
      `after ${echoes} echoes: RSS ${lastKiB} KiB, ${
        (growth * 100).toFixed(1)
      }% against ${firstKiB} KiB; ${lost} lost, ${corrupt} corrupt; ${
        ((performance.now() - started) / 1000).toFixed(0)
      } s`,
    );
    return growth <= 0.1 && !lost && !corrupt ? 0 : 1;
  } finally {
    server.kill("SIGTERM");
    await server.status;
    await draining.catch(() => {});
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
