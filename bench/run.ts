#!/usr/bin/env -S deno run --unstable-net --allow-net --allow-run --allow-read --allow-write
/**
 * The echo benchmark, on loopback, every figure a ratio to a C reference
 * measured beside it (the C programs are ours, built with `cc` at bench
 * time, see native.ts):
 *
 * - servers: `server.ts --io socket`, `server.ts --io batch`, Node's dgram
 *   echo and the Python reference against the C recvmmsg/sendmmsg echo
 *   server, under the same closed-loop load (the C generator by default);
 * - clients: `client.ts` in load mode (per `--io` mode, once it has the flag)
 *   against the C client, both against the C echo server: echoes/s, p50 and
 *   shortest round trip;
 * - pacing: `client.ts -c 500 -i 1` and a C sender (clock_nanosleep to an
 *   absolute deadline, then a short spin) judged by a C receiver from the
 *   kernel's arrival times (SO_TIMESTAMPNS); the receiver echoes;
 * - the targets of issue 12, judged from these ratios (target and met).
 *
 * Each cell is measured `--rounds` times, the order rotated every round so
 * drift on the machine cancels; tables show medians over the rounds.
 *
 * Usage:
 *   deno task bench [--rounds 3] [--duration 3] [--warmup 1]
 *     [--windows 1,32] [--sizes 64] [--only server,client,pacing]
 *     [--generator c|deno] [--generators 1]
 *     [--pacing-count 500] [--pacing-interval 1]
 *     [--svg bench/results.svg]
 *     [--loop NAME[,NAME...]] [--v8-flags FLAGS] [--pin]
 *     [--no-ceiling] [--json]
 *
 * `--loop NAME[,NAME...]` adds candidate loops of bench/loops.ts.
 * `--v8-flags FLAGS` (repeatable; empty for V8's defaults) adds server.ts
 * under other V8 flags. Every Deno server gets the V8 flags of `deno task
 * server` unless told otherwise. `--batch` is accepted and does nothing: the
 * batch row is always there. `--generator deno` drives the servers with
 * bench/loadgen.ts instead of the C generator. Node and Python are skipped,
 * with a note, when missing; so are the `client.ts --io` rows while
 * `client.ts --help` does not list `--io` (one `client.ts` row runs instead).
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { LoadResult } from "./loadgen.ts";
import { SERVER_V8_FLAGS } from "./server_flags.ts";
import {
  buildC,
  type CLoadResult,
  type CTools,
  loadgenArgs,
} from "./native.ts";
import {
  C_CLIENT,
  clientHasIo,
  type ClientSample,
  type ClientSpec,
  clientSpecs,
  runClient,
  runPacing,
} from "./clients.ts";
import type { PacingStats } from "./pacing.ts";
import {
  barChart,
  formatClientTable,
  formatPacingTable,
  formatTable,
  type Measurement,
  median,
  MICROS,
  NUMBER,
  percentile,
  ratio,
} from "./tables.ts";
import {
  type ClientMeasurement,
  formatTargets,
  judgeTargets,
  type PacingMeasurement,
  type Target,
} from "./targets.ts";

export {
  barChart,
  formatClientTable,
  formatPacingTable,
  formatTable,
  type Measurement,
  median,
  percentile,
};

/** One server under test. */
export interface ServerSpec {
  /** Name in the table. */
  name: string;
  /** Program and arguments; the server prints `starting up on HOST port PORT` (or `listening PORT`). */
  command: string[];
}

/** A started server. */
export interface RunningServer {
  spec: ServerSpec;
  child: Deno.ChildProcess;
  port: number;
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
  const match = text.match(/(?:starting up on \S+ port|^listening) (\d+)/);
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

/** One generator process's figures for one run. */
export interface Sample {
  /** Echoes per second. */
  rate: number;
  /** Median round trip, microseconds. */
  p50: number;
  /** 99th percentile round trip, microseconds. */
  p99: number;
  /** Lost datagrams. */
  lost: number;
  /** Corrupt replies (a stalled run counts as one). */
  corrupt: number;
}

/** One run: every generator's sample and the CPU use. */
export interface Run {
  samples: Sample[];
  serverCpu: number;
  generatorCpu: number;
}

/** The sample of one bench/loadgen.ts result. */
export function loadgenSample(result: LoadResult): Sample {
  const histogram = new Map(result.histogram);
  return {
    rate: result.echoes / result.seconds,
    p50: percentile(histogram, 0.5),
    p99: percentile(histogram, 0.99),
    lost: result.lost,
    corrupt: result.corrupt + (result.stalled ? 1 : 0),
  };
}

/** Runs `processes` C generators (`udp_loadgen`) at once, sharing the window. */
async function loadC(
  c: CTools,
  server: RunningServer,
  options: { window: number; size: number; duration: number; warmup: number },
  processes = 1,
): Promise<Run> {
  const children = Array.from({ length: processes }, (_, i) => {
    const share = Math.floor(options.window / processes) +
      (i < options.window % processes ? 1 : 0);
    const [program, args] = pinned(pinGenerator, [
      c.udp_loadgen,
      ...loadgenArgs(HOST, server.port, { ...options, window: share }),
    ]);
    return new Deno.Command(program, {
      args,
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  });
  await new Promise((resolve) => setTimeout(resolve, options.warmup * 1000));
  const pids = [server.child.pid, ...children.map((c) => c.pid)];
  const t0 = performance.now();
  const [serverBefore, ...generatorsBefore] = await cpuTicks(pids);
  await new Promise((resolve) => setTimeout(resolve, options.duration * 900));
  const [serverAfter, ...generatorsAfter] = await cpuTicks(pids);
  const seconds = (performance.now() - t0) / 1000;
  const outputs = await Promise.all(children.map((c) => c.output()));
  const samples = outputs.map((output) => {
    if (!output.success) throw new Error("Cannot run load: generator failed");
    const r = JSON.parse(
      new TextDecoder().decode(output.stdout),
    ) as CLoadResult;
    return {
      rate: r.echoes_per_s,
      p50: r.p50_us,
      p99: r.p99_us,
      lost: r.lost,
      corrupt: r.corrupted,
    };
  });
  const generatorTicks = generatorsAfter.reduce((a, b) => a + b, 0) -
    generatorsBefore.reduce((a, b) => a + b, 0);
  return {
    samples,
    serverCpu: (serverAfter! - serverBefore!) / seconds,
    generatorCpu: generatorTicks / seconds / processes,
  };
}

/** Folds the runs of one server at one window and size into one measurement. */
export function aggregate(
  server: string,
  window: number,
  size: number,
  runs: Run[],
): Measurement {
  const mean = (values: number[]) =>
    values.reduce((a, b) => a + b, 0) / values.length;
  const all = runs.flatMap((run) => run.samples);
  return {
    server,
    window,
    size,
    // The median, because a closed loop on a shared machine swings between
    // modes (both sides busy, or both taking turns to sleep) from run to run.
    // Generators run side by side: their rates add.
    rate: median(
      runs.map((run) => run.samples.reduce((s, r) => s + r.rate, 0)),
    ),
    p50: median(all.map((s) => s.p50)),
    bestP50: Math.min(
      ...runs.map((run) => median(run.samples.map((s) => s.p50))),
    ),
    p99: median(all.map((s) => s.p99)),
    lost: all.reduce((sum, s) => sum + s.lost, 0),
    corrupt: all.reduce((sum, s) => sum + s.corrupt, 0),
    serverCpu: mean(runs.map((r) => r.serverCpu)),
    generatorCpu: mean(runs.map((r) => r.generatorCpu)),
  };
}

/** The C echo server's row name: the reference of the server table. */
export const C_SERVER = "C recvmmsg";

/** Median of each pacing figure over the rounds. */
function medianPacing(sender: string, runs: PacingStats[]): PacingMeasurement {
  const of = (key: keyof PacingStats) => median(runs.map((r) => r[key]));
  return {
    sender,
    received: of("received"),
    gaps: of("gaps"),
    within: of("within"),
    largestBurst: of("largestBurst"),
    p50ErrorUs: of("p50ErrorUs"),
    p99ErrorUs: of("p99ErrorUs"),
  };
}

/** The server specs: the C reference, server.ts in both I/O modes and any extras asked for. */
function serverSpecs(
  c: CTools,
  values: { loop?: string; receivers: string; "v8-flags"?: string[] },
): ServerSpec[] {
  const loops = values.loop ? values.loop.split(",") : [];
  const serverTs = (io: string): ServerSpec => ({
    name: `server.ts --io ${io}`,
    command: [
      Deno.execPath(),
      ...DENO_NET,
      ...SERVER_V8_FLAGS,
      "--allow-ffi",
      `--allow-read=${ROOT_DIR}`,
      `${ROOT_DIR}server.ts`,
      `--io=${io}`,
      "--quiet",
      `--host=${HOST}`,
      "--port=0",
    ],
  });
  return [
    { name: C_SERVER, command: [c.echo_mmsg, HOST, "0"] },
    serverTs("socket"),
    serverTs("batch"),
    // server.ts again under other V8 flags ("" for V8's defaults), to
    // measure what a flag costs.
    ...(values["v8-flags"] ?? []).map((flags) => ({
      name: flags ? `server.ts --v8-flags=${flags}` : "server.ts, V8 defaults",
      command: [
        Deno.execPath(),
        ...DENO_NET,
        ...(flags ? [`--v8-flags=${flags}`] : []),
        `${ROOT_DIR}server.ts`,
        "--io=socket",
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
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string", default: "3" },
      duration: { type: "string", default: "3" },
      warmup: { type: "string", default: "1" },
      windows: { type: "string", default: "1,32" },
      sizes: { type: "string", default: "64" },
      only: { type: "string", default: "server,client,pacing" },
      generator: { type: "string", default: "c" },
      "pacing-count": { type: "string", default: "500" },
      "pacing-interval": { type: "string", default: "1" },
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
  const sections = new Set(values.only.split(","));
  if (values.generator !== "c" && values.generator !== "deno") {
    console.error(
      `error: --generator must be c or deno, not ${values.generator}`,
    );
    return 2;
  }
  const cDir = await Deno.makeTempDir({ prefix: "udp-echo-bench-" });
  try {
    const c = await buildC(cDir);
    return await bench(c);
  } finally {
    await Deno.remove(cDir, { recursive: true });
  }

  async function bench(c: CTools): Promise<number> {
    const specs = serverSpecs(c, values);
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
    const hasIo = await clientHasIo();
    if (!hasIo && (sections.has("client") || sections.has("pacing"))) {
      skipped.push(
        "client.ts --io socket and --io batch (client.ts --help lists no --io; one client.ts row runs without it)",
      );
    }
    // Pinned (--pin), server and generator each keep a core; on a shared,
    // busy machine that can hurt more than it helps, so it is opt-in.
    let pinning = "not pinned";
    if (!values.pin) pinning = "not pinned";
    else if (navigator.hardwareConcurrency < 2) {
      pinning = "not pinned (1 CPU)";
    } else if (!(await available("taskset"))) {
      skipped.push("CPU pinning (taskset not found)");
    } else {
      pinServer = ["taskset", "-c", "1"];
      pinGenerator = ["taskset", "-c", "0"];
      pinning = "server pinned to CPU 1, generator to CPU 0";
    }
    for (const note of skipped) console.error(`skipped: ${note}`);

    const generatorName = values.generator === "c"
      ? "the C generator (udp_loadgen)"
      : "bench/loadgen.ts";
    const measureLoad = async (
      server: RunningServer,
      window: number,
      size: number,
      processes: number,
    ): Promise<Run> => {
      if (values.generator === "c") {
        return await loadC(
          c,
          server,
          { window, size, duration, warmup },
          processes,
        );
      }
      const run = await load(server, window, size, duration, warmup, processes);
      return { ...run, samples: run.results.map(loadgenSample) };
    };

    const rows: Measurement[] = [];
    let ceiling = "";
    if (sections.has("server")) {
      const servers: RunningServer[] = [];
      try {
        for (const spec of specs) servers.push(await start(spec));
        for (const size of sizes) {
          for (const window of windows) {
            const runs = new Map<string, Run[]>();
            for (let round = 0; round < rounds; round++) {
              // Rotate the order each round so drift does not favour one server.
              for (let i = 0; i < servers.length; i++) {
                const server = servers[(i + round) % servers.length]!;
                const run = await measureLoad(
                  server,
                  window,
                  size,
                  Math.min(generators, window),
                );
                runs.set(server.spec.name, [
                  ...(runs.get(server.spec.name) ?? []),
                  run,
                ]);
                console.error(
                  `round ${
                    round + 1
                  }/${rounds} W=${window} ${size} B ${server.spec.name}: ${
                    NUMBER.format(
                      run.samples.reduce((sum, r) => sum + r.rate, 0),
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
        if (!values["no-ceiling"]) {
          // If two generators sharing the window get more echoes out of the
          // fastest server than one does, one generator bounded the figures.
          const window = Math.max(...windows);
          const size = Math.min(...sizes);
          const fastest = rows.filter((r) =>
            r.window === window && r.size === size
          ).sort((a, b) => b.rate - a.rate)[0]!;
          const server = servers.find((s) => s.spec.name === fastest.server)!;
          const one = aggregate(server.spec.name, window, size, [
            await measureLoad(server, window, size, 1),
          ]);
          const two = aggregate(server.spec.name, window, size, [
            await measureLoad(server, window, size, 2),
          ]);
          ceiling =
            `Generator ceiling (${generatorName}, W=${window}, ${size} B, against ${server.spec.name}, the fastest): ` +
            `one generator ${NUMBER.format(one.rate)} echoes/s at ${
              one.generatorCpu.toFixed(0)
            }% CPU, two generators ${NUMBER.format(two.rate)} echoes/s (${
              ratio(two.rate, one.rate)
            }).`;
        }
      } finally {
        for (const server of servers) await stop(server);
      }
    }

    const cClients = clientSpecs(hasIo);
    const clients: ClientMeasurement[] = [];
    if (sections.has("client")) {
      const echo = await start({
        name: C_SERVER,
        command: [c.echo_mmsg, HOST, "0"],
      });
      try {
        const size = Math.min(...sizes);
        for (const window of windows) {
          const runs = new Map<string, ClientSample[]>();
          for (let round = 0; round < rounds; round++) {
            for (let i = 0; i < cClients.length; i++) {
              const spec = cClients[(i + round) % cClients.length]!;
              const sample = await runClient(spec, c, {
                host: HOST,
                port: echo.port,
              }, {
                window,
                size,
                duration,
                warmup,
              });
              runs.set(spec.name, [...(runs.get(spec.name) ?? []), sample]);
              console.error(
                `round ${
                  round + 1
                }/${rounds} client W=${window} ${spec.name}: ${
                  NUMBER.format(sample.rate)
                } echoes/s, p50 ${MICROS.format(sample.p50)} µs, min ${
                  MICROS.format(sample.min)
                } µs`,
              );
            }
          }
          for (const spec of cClients) {
            const list = runs.get(spec.name)!;
            clients.push({
              client: spec.name,
              reference: spec.reference,
              window,
              rate: median(list.map((s) => s.rate)),
              p50: median(list.map((s) => s.p50)),
              bestP50: Math.min(...list.map((s) => s.p50)),
              min: median(list.map((s) => s.min)),
              lost: list.reduce((sum, s) => sum + s.lost, 0),
              corrupt: list.reduce((sum, s) => sum + s.corrupt, 0),
            });
          }
        }
      } finally {
        await stop(echo);
      }
    }

    const pacing: PacingMeasurement[] = [];
    const pacingOptions = {
      count: Number(values["pacing-count"]),
      intervalMs: Number(values["pacing-interval"]),
      size: Math.min(...sizes),
    };
    const senders: ClientSpec[] = [
      { name: "C clock_nanosleep + spin", kind: "c", flags: [] },
      ...cClients.filter((spec) => spec.kind === "deno"),
    ];
    if (sections.has("pacing")) {
      const runs = new Map<string, PacingStats[]>();
      for (let round = 0; round < rounds; round++) {
        for (let i = 0; i < senders.length; i++) {
          const spec = senders[(i + round) % senders.length]!;
          const stats = await runPacing(spec, c, HOST, pacingOptions);
          runs.set(spec.name, [...(runs.get(spec.name) ?? []), stats]);
          console.error(
            `round ${round + 1}/${rounds} pacing ${spec.name}: ${
              (stats.within * 100).toFixed(1)
            }% within ±5%, largest burst ${stats.largestBurst}`,
          );
        }
      }
      for (const spec of senders) {
        pacing.push(medianPacing(spec.name, runs.get(spec.name)!));
      }
    }

    const targets: Target[] = judgeTargets(rows, clients, pacing, {
      server: C_SERVER,
      generator: C_CLIENT,
      sender: senders[0]!.name,
      size: 64,
    });
    const machine =
      `${rounds} rounds of ${duration} s (after ${warmup} s warm-up; client.ts has none) per cell, order rotated each round, servers driven by ${generators} process(es) of ${generatorName}, ${pinning}; pacing ${pacingOptions.count} datagrams every ${pacingOptions.intervalMs} ms to a C receiver that echoes; ${Deno.build.target}, ${navigator.hardwareConcurrency} CPUs.`;
    if (values.json) {
      console.log(JSON.stringify({
        rows,
        ceiling,
        skipped,
        clients,
        pacing,
        targets,
        machine,
      }));
    } else {
      const parts: string[] = [];
      if (rows.length) {
        parts.push(
          `Servers (ratios to ${C_SERVER}):\n\n${formatTable(rows, C_SERVER)}`,
        );
        if (ceiling) parts.push(ceiling);
      }
      if (clients.length) {
        parts.push(
          `Clients against ${C_SERVER} (echoes/s as ratios to the C generator, round trips to the C client that times them as each client.ts row does):\n\n${
            formatClientTable(clients, C_CLIENT)
          }`,
        );
      }
      if (pacing.length) {
        parts.push(
          `Pacing (-c ${pacingOptions.count} -i ${pacingOptions.intervalMs}, kernel arrival times at a C receiver):\n\n${
            formatPacingTable(pacing)
          }`,
        );
      }
      if (targets.length) {
        parts.push(`Targets (issue 12):\n\n${formatTargets(targets)}`);
      }
      parts.push(machine);
      if (skipped.length) parts.push(`Skipped: ${skipped.join("; ")}.`);
      console.log(parts.join("\n\n"));
    }
    if (values.svg && rows.length) {
      await Deno.writeTextFile(
        values.svg,
        barChart(rows, "UDP echo on loopback, closed loop"),
      );
      console.error(`wrote ${values.svg}`);
    }
    const bad = [
      ...rows.filter((r) => r.lost || r.corrupt).map((r) =>
        `${r.server} at W=${r.window} ${r.size} B: ${r.lost} lost, ${r.corrupt} corrupt`
      ),
      ...clients.filter((r) => r.corrupt).map((r) =>
        `${r.client} at W=${r.window}: ${r.corrupt} corrupt`
      ),
    ];
    for (const line of bad) console.error(`error: ${line}`);
    return bad.length ? 1 : 0;
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
