#!/usr/bin/env -S deno run --unstable-net --allow-net --allow-run --allow-read --allow-write
/**
 * The echo benchmark: this server against Node's dgram echo and the Python
 * reference, on loopback, under the same closed-loop load.
 *
 * For every window and payload size it measures each server in turn,
 * `--rounds` times, rotating the order every round so machine drift
 * cancels, then prints echoes/s, p50 and p99 round trip and the ratio of
 * this server to each. It measures the load generator's own ceiling too,
 * and can draw the echoes/s as an SVG bar chart.
 *
 * Usage:
 *   deno task bench [--rounds 3] [--duration 3] [--warmup 1]
 *     [--windows 1,32] [--sizes 64,1400] [--generators 1]
 *     [--svg bench/results.svg]
 *     [--loop NAME[,NAME...]] [--batch] [--v8-flags FLAGS] [--pin]
 *     [--no-ceiling] [--json]
 *
 * `--loop NAME[,NAME...]` adds candidate loops of bench/loops.ts beside
 * server.ts (ratios stay relative to server.ts). `--batch` adds
 * `server.ts --io batch` (needs --allow-ffi, Linux). `--v8-flags FLAGS`
 * (repeatable; empty for V8's defaults) adds server.ts under other V8 flags.
 * Every Deno server gets the V8 flags of `deno task server` unless told
 * otherwise. Node and Python are skipped, with a note, when missing.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { LoadResult } from "./loadgen.ts";
import { SERVER_V8_FLAGS } from "./server_flags.ts";

/** One server under test. */
export interface ServerSpec {
  /** Name in the table. */
  name: string;
  /** Program and arguments; the server prints `starting up on HOST port PORT`. */
  command: string[];
}

/** A started server. */
export interface RunningServer {
  spec: ServerSpec;
  child: Deno.ChildProcess;
  port: number;
}

/** The aggregate of every round of one server at one window and size. */
export interface Measurement {
  /** Server name. */
  server: string;
  /** Datagrams in flight. */
  window: number;
  /** Payload bytes. */
  size: number;
  /** Median over the rounds of echoes per second. */
  rate: number;
  /** Median round trip in microseconds. */
  p50: number;
  /** 99th percentile round trip in microseconds. */
  p99: number;
  /** Lost datagrams over all rounds. */
  lost: number;
  /** Corrupt replies over all rounds. */
  corrupt: number;
  /** Server CPU use in percent of one core (Linux only, else NaN). */
  serverCpu: number;
  /** Load generator CPU use in percent of one core (Linux only, else NaN). */
  generatorCpu: number;
}

const HOST = "127.0.0.1";
const BENCH_DIR = new URL(".", import.meta.url).pathname;
const ROOT_DIR = new URL("..", import.meta.url).pathname;
const DENO_NET = ["run", "--unstable-net", "--allow-net"];

/** Returns whether a program runs with `--version` and prints `version`. */
async function available(
  program: string,
  version: RegExp = /./,
): Promise<boolean> {
  try {
    const { success, stdout } = await new Deno.Command(program, {
      args: ["--version"],
      stderr: "null",
    }).output();
    return success && version.test(new TextDecoder().decode(stdout));
  } catch {
    return false;
  }
}

/**
 * Returns the CPU time of processes in clock ticks (Linux), NaN elsewhere.
 * Deno grants /proc/PID only with --allow-all, so `cat` reads it.
 */
async function cpuTicks(pids: number[]): Promise<number[]> {
  if (Deno.build.os !== "linux") return pids.map(() => NaN);
  try {
    const { stdout } = await new Deno.Command("cat", {
      args: pids.map((pid) => `/proc/${pid}/stat`),
      stderr: "null",
    }).output();
    const lines = new TextDecoder().decode(stdout).trim().split("\n");
    return pids.map((_, i) => {
      const stat = lines[i] ?? "";
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return Number(fields[11]) + Number(fields[12]);
    });
  } catch {
    return pids.map(() => NaN);
  }
}

/** CPU pinning: `taskset -c N` prefixes, empty when not pinning. */
let pinServer: string[] = [];
let pinGenerator: string[] = [];

/** Splits a command into program and arguments, pinned if asked. */
function pinned(pin: string[], command: string[]): [string, string[]] {
  const [program, ...args] = [...pin, ...command];
  return [program!, args];
}

/**
 * Starts a server and waits for its startup line. The rest of its stdout goes
 * to `onOutput`, or is discarded.
 */
export async function start(
  spec: ServerSpec,
  onOutput: (text: string) => void = () => {},
): Promise<RunningServer> {
  const [program, args] = pinned(pinServer, spec.command);
  const child = new Deno.Command(program, {
    args,
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`Cannot start ${spec.name}: it exited`);
    text += value;
  }
  const match = text.match(/starting up on \S+ port (\d+)/);
  if (!match) throw new Error(`Cannot start ${spec.name}: got ${text.trim()}`);
  const rest = text.slice(text.indexOf("\n") + 1);
  if (rest) onOutput(rest);
  // Keep draining so a chatty server never blocks on a full pipe.
  (async () => {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      onOutput(value);
    }
  })().catch(() => {});
  return { spec, child, port: Number(match[1]) };
}

/** Stops a server and waits for it to exit. */
export async function stop(server: RunningServer): Promise<void> {
  try {
    server.child.kill("SIGTERM");
  } catch { /* already gone */ }
  await server.child.status;
}

/** Runs `processes` load generators at once, sharing the window between them. */
export async function load(
  server: RunningServer,
  window: number,
  size: number,
  duration: number,
  warmup: number,
  processes = 1,
): Promise<{ results: LoadResult[]; serverCpu: number; generatorCpu: number }> {
  const children = Array.from({ length: processes }, (_, i) => {
    const share = Math.floor(window / processes) +
      (i < window % processes ? 1 : 0);
    const [program, args] = pinned(pinGenerator, [
      Deno.execPath(),
      ...DENO_NET,
      `${BENCH_DIR}loadgen.ts`,
      `--host=${HOST}`,
      `--port=${server.port}`,
      `--window=${share}`,
      `--size=${size}`,
      `--duration=${duration}`,
      `--warmup=${warmup}`,
    ]);
    return new Deno.Command(program, {
      args,
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  });
  // CPU is sampled over the measured interval only, not the warm-up.
  await new Promise((resolve) => setTimeout(resolve, warmup * 1000));
  const pids = [server.child.pid, ...children.map((c) => c.pid)];
  const t0 = performance.now();
  const [serverBefore, ...generatorsBefore] = await cpuTicks(pids);
  await new Promise((resolve) => setTimeout(resolve, duration * 900));
  const [serverAfter, ...generatorsAfter] = await cpuTicks(pids);
  const seconds = (performance.now() - t0) / 1000;
  const outputs = await Promise.all(children.map((c) => c.output()));
  const results = outputs.map((output) => {
    if (!output.success) throw new Error("Cannot run load: generator failed");
    return JSON.parse(new TextDecoder().decode(output.stdout)) as LoadResult;
  });
  const generatorTicks = generatorsAfter.reduce((a, b) => a + b, 0) -
    generatorsBefore.reduce((a, b) => a + b, 0);
  // Clock ticks are 1/100 s on Linux, so ticks per second is percent.
  return {
    results,
    serverCpu: (serverAfter! - serverBefore!) / seconds,
    generatorCpu: generatorTicks / seconds / processes,
  };
}

/** Returns the percentile `q` (0-1) of `[microseconds, count]` pairs. */
export function percentile(
  histogram: Map<number, number>,
  q: number,
): number {
  let total = 0;
  for (const count of histogram.values()) total += count;
  const target = q * total;
  let seen = 0;
  for (const key of [...histogram.keys()].sort((a, b) => a - b)) {
    seen += histogram.get(key)!;
    if (seen >= target) return key;
  }
  return NaN;
}

/** Returns the median of numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2
    ? sorted[middle]!
    : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Folds many load results into one measurement. */
function aggregate(
  server: string,
  window: number,
  size: number,
  runs: { results: LoadResult[]; serverCpu: number; generatorCpu: number }[],
): Measurement {
  const histogram = new Map<number, number>();
  const rates: number[] = [];
  let lost = 0;
  let corrupt = 0;
  for (const run of runs) {
    // Generators run side by side: their rates add.
    rates.push(
      run.results.reduce((sum, r) => sum + r.echoes / r.seconds, 0),
    );
    for (const result of run.results) {
      lost += result.lost;
      corrupt += result.corrupt + (result.stalled ? 1 : 0);
      for (const [micros, count] of result.histogram) {
        histogram.set(micros, (histogram.get(micros) ?? 0) + count);
      }
    }
  }
  const mean = (values: number[]) =>
    values.reduce((a, b) => a + b, 0) / values.length;
  return {
    server,
    window,
    size,
    // The median, because a closed loop on a shared machine swings between
    // modes (both sides busy, or both taking turns to sleep) from run to run.
    rate: median(rates),
    p50: percentile(histogram, 0.5),
    p99: percentile(histogram, 0.99),
    lost,
    corrupt,
    serverCpu: mean(runs.map((r) => r.serverCpu)),
    generatorCpu: mean(runs.map((r) => r.generatorCpu)),
  };
}

const NUMBER = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

function ratio(a: number, b: number): string {
  return `${(a / b).toFixed(2)}x`;
}

/** Formats measurements as a Markdown table, ratios relative to `ours`. */
export function formatTable(rows: Measurement[], ours: string): string {
  const lines = [
    `| server | window | bytes | echoes/s | p50 µs | p99 µs | ${ours} echoes/s ÷ this | ${ours} p50 ÷ this | server CPU | server CPU µs/echo | generator CPU | lost/corrupt |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const row of rows) {
    const mine = rows.find((r) =>
      r.server === ours && r.window === row.window && r.size === row.size
    );
    const cpu = (v: number) => Number.isNaN(v) ? "n/a" : `${v.toFixed(0)}%`;
    lines.push(
      `| ${row.server} | ${row.window} | ${row.size} | ${
        NUMBER.format(row.rate)
      } | ${row.p50} | ${row.p99} | ${
        mine ? ratio(mine.rate, row.rate) : "-"
      } | ${mine ? ratio(mine.p50, row.p50) : "-"} | ${cpu(row.serverCpu)} | ${
        Number.isNaN(row.serverCpu)
          ? "n/a"
          : (row.serverCpu * 10_000 / row.rate).toFixed(1)
      } | ${cpu(row.generatorCpu)} | ${row.lost}/${row.corrupt} |`,
    );
  }
  return lines.join("\n");
}

const COLOURS = ["#2f6f9f", "#9fbf3f", "#df8f2f", "#8f5faf", "#5f5f5f"];

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(
    />/g,
    "&gt;",
  );
}

/** Draws echoes/s per server, grouped by window and size, as an SVG bar chart. */
export function barChart(rows: Measurement[], title: string): string {
  const servers = [...new Set(rows.map((r) => r.server))];
  const groups = [...new Set(rows.map((r) => `${r.window}|${r.size}`))];
  const max = Math.max(...rows.map((r) => r.rate));
  const bar = 28;
  const gap = 24;
  const groupWidth = servers.length * bar + gap;
  const left = 70;
  const top = 40;
  const height = 240;
  const width = left + groups.length * groupWidth + 20;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${
      top + height + 80
    }" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="20" font-size="14">${escapeXml(title)}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const value = max * i / 4;
    const y = top + height - height * i / 4;
    parts.push(
      `<line x1="${left}" x2="${
        width - 10
      }" y1="${y}" y2="${y}" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${y + 4}" text-anchor="end">${
        NUMBER.format(value)
      }</text>`,
    );
  }
  groups.forEach((group, g) => {
    const [window, size] = group.split("|");
    const x0 = left + gap / 2 + g * groupWidth;
    servers.forEach((server, s) => {
      const row = rows.find((r) =>
        r.server === server && `${r.window}|${r.size}` === group
      );
      if (!row) return;
      const h = height * row.rate / max;
      parts.push(
        `<rect x="${x0 + s * bar}" y="${top + height - h}" width="${
          bar - 4
        }" height="${h}" fill="${COLOURS[s % COLOURS.length]}"><title>${
          escapeXml(server)
        }: ${NUMBER.format(row.rate)} echoes/s</title></rect>`,
      );
    });
    parts.push(
      `<text x="${x0 + (servers.length * bar) / 2}" y="${
        top + height + 16
      }" text-anchor="middle">W=${window}, ${size} B</text>`,
    );
  });
  servers.forEach((server, s) => {
    const x = left + s * 150;
    const y = top + height + 44;
    parts.push(
      `<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${
        COLOURS[s % COLOURS.length]
      }"/>`,
      `<text x="${x + 16}" y="${y}">${escapeXml(server)}</text>`,
    );
  });
  parts.push(
    `<text x="${left}" y="${
      top + height + 70
    }" fill="#555">echoes per second, higher is better</text>`,
    "</svg>",
  );
  return parts.join("\n") + "\n";
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string", default: "3" },
      duration: { type: "string", default: "3" },
      warmup: { type: "string", default: "1" },
      windows: { type: "string", default: "1,32" },
      sizes: { type: "string", default: "64,1400" },
      svg: { type: "string" },
      loop: { type: "string" },
      receivers: { type: "string", default: "32" },
      generators: { type: "string", default: "1" },
      batch: { type: "boolean", default: false },
      "v8-flags": { type: "string", multiple: true },
      "no-ceiling": { type: "boolean", default: false },
      pin: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  const rounds = Number(values.rounds);
  const duration = Number(values.duration);
  const warmup = Number(values.warmup);
  const windows = values.windows.split(",").map(Number);
  const sizes = values.sizes.split(",").map(Number);
  const generators = Number(values.generators);

  // Candidate loops of bench/loops.ts run beside server.ts, compared with it.
  const loops = values.loop ? values.loop.split(",") : [];
  const ours = "udp-echo";
  const specs: ServerSpec[] = [
    {
      name: ours,
      command: [
        Deno.execPath(),
        ...DENO_NET,
        ...SERVER_V8_FLAGS,
        `${ROOT_DIR}server.ts`,
        "--quiet",
        `--host=${HOST}`,
        "--port=0",
      ],
    },
    // The FFI batch backend (recvmmsg/sendmmsg in a Worker), on request.
    ...(values.batch
      ? [{
        name: "udp-echo --io batch",
        command: [
          Deno.execPath(),
          ...DENO_NET,
          ...SERVER_V8_FLAGS,
          "--allow-ffi",
          `--allow-read=${ROOT_DIR}`,
          `${ROOT_DIR}server.ts`,
          "--io=batch",
          "--quiet",
          `--host=${HOST}`,
          "--port=0",
        ],
      }]
      : []),
    // server.ts again under other V8 flags ("" for V8's defaults), to
    // measure what a flag costs.
    ...(values["v8-flags"] ?? []).map((flags) => ({
      name: flags ? `udp-echo --v8-flags=${flags}` : "udp-echo, V8 defaults",
      command: [
        Deno.execPath(),
        ...DENO_NET,
        ...(flags ? [`--v8-flags=${flags}`] : []),
        `${ROOT_DIR}server.ts`,
        "--quiet",
        `--host=${HOST}`,
        "--port=0",
      ],
    })),
    ...loops.map((loop) => ({
      name: `loop ${loop}`,
      command: [
        Deno.execPath(),
        ...DENO_NET,
        ...SERVER_V8_FLAGS,
        `${BENCH_DIR}loops.ts`,
        `--loop=${loop}`,
        `--receivers=${values.receivers}`,
        `--host=${HOST}`,
        "--port=0",
      ],
    })),
  ];
  const skipped: string[] = [];
  // Deno answers for a missing `node` itself ("deno 2.9.6 ..."); a Node
  // row run by Deno would be mislabelled, so require Node's "vN.N.N".
  if (await available("node", /^v\d+\./)) {
    specs.push({
      name: "node dgram",
      command: ["node", `${BENCH_DIR}echo_server_node.mjs`, HOST, "0"],
    });
  } else skipped.push("node dgram (node not found)");
  if (await available("python3")) {
    specs.push({
      name: "python",
      command: ["python3", `${BENCH_DIR}echo_server.py`, HOST, "0"],
    });
  } else skipped.push("python (python3 not found)");
  // Pinned (--pin), server and generator each keep a core; on a shared,
  // busy machine that can hurt more than it helps, so it is opt-in.
  let pinning = "not pinned";
  if (!values.pin) pinning = "not pinned";
  else if (navigator.hardwareConcurrency < 2) pinning = "not pinned (1 CPU)";
  else if (!(await available("taskset"))) {
    skipped.push("CPU pinning (taskset not found)");
  } else {
    pinServer = ["taskset", "-c", "1"];
    pinGenerator = ["taskset", "-c", "0"];
    pinning = "server pinned to CPU 1, generator to CPU 0";
  }
  for (const note of skipped) console.error(`skipped: ${note}`);

  const servers: RunningServer[] = [];
  try {
    for (const spec of specs) servers.push(await start(spec));
    const rows: Measurement[] = [];
    for (const size of sizes) {
      for (const window of windows) {
        const runs = new Map<string, Awaited<ReturnType<typeof load>>[]>();
        for (let round = 0; round < rounds; round++) {
          // Rotate the order each round so drift does not favour one server.
          for (let i = 0; i < servers.length; i++) {
            const server = servers[(i + round) % servers.length]!;
            const run = await load(
              server,
              window,
              size,
              duration,
              warmup,
              Math.min(generators, window),
            );
            const list = runs.get(server.spec.name) ?? [];
            list.push(run);
            runs.set(server.spec.name, list);
            console.error(
              `round ${
                round + 1
              }/${rounds} W=${window} ${size} B ${server.spec.name}: ${
                NUMBER.format(
                  run.results.reduce((sum, r) => sum + r.echoes / r.seconds, 0),
                )
              } echoes/s`,
            );
          }
        }
        for (const server of servers) {
          rows.push(
            aggregate(
              server.spec.name,
              window,
              size,
              runs.get(server.spec.name)!,
            ),
          );
        }
      }
    }

    let ceiling = "";
    if (!values["no-ceiling"]) {
      // The generator is a Deno program too: if two of them sharing the
      // window get more echoes out of the fastest server than one does, a
      // single generator was what bounded the figures.
      const window = Math.max(...windows);
      const size = Math.min(...sizes);
      const fastest = rows.filter((r) => r.window === window && r.size === size)
        .sort((a, b) => b.rate - a.rate)[0]!;
      const server = servers.find((s) => s.spec.name === fastest.server)!;
      const one = aggregate(server.spec.name, window, size, [
        await load(server, window, size, duration, warmup, 1),
      ]);
      const two = aggregate(server.spec.name, window, size, [
        await load(server, window, size, duration, warmup, 2),
      ]);
      ceiling =
        `Generator ceiling (W=${window}, ${size} B, against ${server.spec.name}, the fastest): ` +
        `one generator ${NUMBER.format(one.rate)} echoes/s at ${
          one.generatorCpu.toFixed(0)
        }% CPU, two generators ${NUMBER.format(two.rate)} echoes/s (${
          ratio(two.rate, one.rate)
        }).`;
    }

    if (values.json) {
      console.log(JSON.stringify({ rows, ceiling, skipped }));
    } else {
      console.log(formatTable(rows, ours));
      if (ceiling) console.log(`\n${ceiling}`);
      console.log(
        `\n${rounds} rounds of ${duration} s (after ${warmup} s warm-up) per cell, order rotated each round, ${generators} generator process(es), ${pinning}; ${Deno.build.target}, ${navigator.hardwareConcurrency} CPUs.`,
      );
      if (skipped.length) console.log(`Skipped: ${skipped.join(", ")}.`);
    }
    if (values.svg) {
      await Deno.writeTextFile(
        values.svg,
        barChart(rows, "UDP echo on loopback, closed loop"),
      );
      console.error(`wrote ${values.svg}`);
    }
    const bad = rows.filter((r) => r.lost || r.corrupt);
    for (const row of bad) {
      console.error(
        `error: ${row.server} at W=${row.window} ${row.size} B: ${row.lost} lost, ${row.corrupt} corrupt`,
      );
    }
    return bad.length ? 1 : 0;
  } finally {
    for (const server of servers) await stop(server);
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
