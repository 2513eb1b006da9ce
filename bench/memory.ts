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
import { load, start, stop } from "./run.ts";
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
  // With --v8-flags (say --trace-gc) what the server prints goes on to
  // stderr.
  const forward = given !== undefined;
  const server = await start({
    name: values.loop ?? "server.ts",
    command: [
      Deno.execPath(),
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
  }, forward ? (text) => console.error(text.trimEnd()) : undefined);
  const pid = server.child.pid;
  try {
    const startKiB = await rssKiB(pid);
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
      const { results } = await load(server, window, size, seconds, 0);
      for (const result of results) {
        echoes += result.echoes;
        lost += result.lost;
        corrupt += result.corrupt;
      }
      console.error(`${echoes} echoes: RSS ${await rssKiB(pid)} KiB`);
      if (!firstKiB && echoes >= first) {
        firstKiB = await rssKiB(pid);
        console.log(
          `after ${echoes} echoes: RSS ${firstKiB} KiB (at start ${startKiB} KiB)`,
        );
      }
    }
    const lastKiB = await rssKiB(pid);
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
    await stop(server);
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
