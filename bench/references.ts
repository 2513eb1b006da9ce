#!/usr/bin/env -S deno run --allow-run --allow-read --allow-write --allow-env
/**
 * How a ratio to "C" depends on which C: every Deno server and client
 * measured beside two C echo servers and two C generators, side by side in
 * alternating rounds, so one run shows the same Deno program as a ratio to
 * each reference.
 *
 * - C echo servers: `echo_mmsg.c` (64 KiB slots, blocking receive: the same
 *   design as the kernel engine) and `echo_lean.c` (2 KiB slots; a second
 *   row polls instead of blocking with `--busy`, and one with `--pktinfo`
 *   reads and sends IP_PKTINFO per datagram, as the engine does on a
 *   wildcard socket).
 * - C generators: `udp_loadgen.c` (a clock read and a byte pattern per
 *   datagram) and `loadgen_lean.c` (one clock read per batch, memcmp).
 * - Deno: `server.ts --io batch -q` and `client.ts --io batch -w N` of each
 *   checkout given with `--checkout NAME=DIR` (default: this one), so a
 *   commit before a change runs beside the one after it.
 *
 * Each round runs every server under each generator, then every client
 * against `echo_lean`, then the paced senders, the order rotated each
 * round. Ratios are medians of per-round ratios (each run divided by the
 * reference's run of the same round), which cancels much of the drift of a
 * shared machine. Besides echoes/s (and the p50 round trip at one in
 * flight), each run gives the CPU time the program under test spent per
 * echo, read from /proc (`schedstat` of every thread) over the middle of
 * the run: a busy machine slows a closed loop down far more than it makes
 * each echo cost.
 *
 * Usage:
 *   deno run --allow-run --allow-read --allow-write --allow-env \
 *     bench/references.ts [--rounds 5] [--duration 3] [--warmup 1]
 *     [--windows 1,32] [--size 64] [--only server,client,pacing]
 *     [--checkout NAME=DIR]... [--busy] [--pktinfo] [--nice] [--together] [--json]
 *
 * `--together` runs the servers at once instead of in turn, each under a
 * generator of its own: every server then sees the same moment of a
 * machine whose load drifts, at the price of sharing it with the others
 * (a closed loop's rate then says what its echoes cost relative to the
 * others', not what it reaches alone). Clients and pacing still run in turn.
 *
 * `--nice` runs every program under test at the highest priority of the
 * normal scheduler (`nice -n -20`, as root), so that other work on a shared
 * machine takes little from it. Not real-time scheduling: under `chrt -f`
 * a Deno server's main thread was seen to spin at full speed while idle,
 * starving everything else.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { buildC, type CLoadResult, type CTools } from "./native.ts";
import { runPacing } from "./clients.ts";
import { SERVER_V8_FLAGS } from "./server_flags.ts";
import { median, type RunningServer, start, stop } from "./run.ts";

const HOST = "127.0.0.1";
const ROOT_DIR = new URL("..", import.meta.url).pathname;

/** One run of one program. */
interface Sample {
  /** Echoes per second. */
  rate: number;
  /** Median round trip, µs. */
  p50: number;
  /** CPU time of the program under test per echo, µs. */
  cpu: number;
  /** Lost and corrupted replies. */
  bad: number;
}

async function output(command: string[]): Promise<string> {
  const { stdout } = await new Deno.Command(command[0]!, {
    args: command.slice(1),
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(stdout);
}

/** The load average, read through `cat` (Deno grants /proc only with --allow-all). */
async function loadAverage(): Promise<string> {
  return (await output(["cat", "/proc/loadavg"]).catch(() => "unknown"))
    .trim();
}

/** A prefix that runs the CPU sampler as the programs under test run. */
let samplerPrefix: string[] = [];

/** Nanoseconds on a CPU so far, summed over every thread of `pid`; NaN once it is gone. */
async function cpuNs(pid: number): Promise<number> {
  const text = await output([
    ...samplerPrefix,
    "sh",
    "-c",
    `cat /proc/${pid}/task/*/schedstat`,
  ]);
  const lines = text.trim().split("\n").filter((line) => line !== "");
  if (lines.length === 0) return NaN;
  return lines.reduce((sum, line) => sum + Number(line.split(" ")[0]), 0);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * CPU seconds per second of `pid` from `from` to `to` seconds after now
 * (a wall-clock window inside the measured part of a run).
 */
async function cpuShare(pid: number, from: number, to: number) {
  await sleep(from * 1000);
  const t0 = performance.now();
  const c0 = await cpuNs(pid);
  await sleep((to - from) * 1000);
  const c1 = await cpuNs(pid);
  // A program that ended first (a late timer on a busy machine) says nothing.
  if (!(c1 >= c0)) return NaN;
  return (c1 - c0) / 1e6 / (performance.now() - t0);
}

/** Runs a generator or client; `cpuOf` is the pid whose CPU counts (default: its own). */
async function runLoad(
  command: string[],
  window: { from: number; to: number },
  parse: (text: string) => { rate: number; p50: number; bad: number },
  cpuOf?: number,
): Promise<Sample> {
  const child = new Deno.Command(command[0]!, {
    args: command.slice(1),
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  const share = cpuShare(cpuOf ?? child.pid, window.from, window.to);
  const { stdout, code } = await child.output();
  // client.ts exits 1 when probes were lost; its JSON still says how many.
  if (code > 1) throw new Error(`Cannot run ${command[0]}: exit ${code}`);
  const figures = parse(new TextDecoder().decode(stdout));
  return { ...figures, cpu: (await share) / figures.rate * 1e6 };
}

function parseC(text: string) {
  const r = JSON.parse(text) as CLoadResult;
  return { rate: r.echoes_per_s, p50: r.p50_us, bad: r.lost + r.corrupted };
}

function parseClient(text: string) {
  const r = JSON.parse(text) as {
    lost: number;
    corrupted: number;
    rtt_ms: { median: number } | null;
    echo_rate: { pps: number };
  };
  return {
    rate: r.echo_rate.pps,
    p50: (r.rtt_ms?.median ?? NaN) * 1000,
    bad: r.lost + r.corrupted,
  };
}

function serverTs(dir: string): string[] {
  return [
    Deno.execPath(),
    "run",
    "--unstable-net",
    "--allow-net",
    ...SERVER_V8_FLAGS,
    "--allow-ffi",
    `--allow-read=${dir}`,
    `${dir}/server.ts`,
    "--io=batch",
    "--quiet",
    `--host=${HOST}`,
    "--port=0",
  ];
}

function clientTs(dir: string, port: number, options: {
  window: number;
  size: number;
  duration: number;
}): string[] {
  return [
    Deno.execPath(),
    "run",
    "--unstable-net",
    "--allow-net",
    "--allow-ffi",
    `--allow-read=${dir}`,
    `${dir}/client.ts`,
    "-H",
    HOST,
    "-p",
    String(port),
    "-w",
    String(options.window),
    "-d",
    String(options.duration),
    "-s",
    String(options.size),
    "--json",
    "--io",
    "batch",
  ];
}

/** The median of the numbers that are not NaN (a sample that failed to measure). */
function mid(values: number[]): number {
  const known = values.filter((x) => !Number.isNaN(x));
  return known.length ? median(known) : NaN;
}

/** Median of the per-round ratios of `a` to `b`. */
function pairedRatio(a: number[], b: number[]): number {
  return mid(a.map((x, i) => x / b[i]!));
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string", default: "5" },
      duration: { type: "string", default: "3" },
      warmup: { type: "string", default: "1" },
      windows: { type: "string", default: "1,32" },
      size: { type: "string", default: "64" },
      only: { type: "string", default: "server,client,pacing" },
      checkout: { type: "string", multiple: true },
      busy: { type: "boolean", default: false },
      pktinfo: { type: "boolean", default: false },
      nice: { type: "boolean", default: false },
      together: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  const rounds = Number(values.rounds);
  const duration = Number(values.duration);
  const warmup = Number(values.warmup);
  const windows = values.windows.split(",").map(Number);
  const size = Number(values.size);
  const only = new Set(values.only.split(","));
  // The programs under test, and the sampler that reads their CPU time,
  // ahead of the other work on a shared machine (root or CAP_SYS_NICE).
  const rt = values.nice ? ["nice", "-n", "-20"] : [];
  samplerPrefix = rt;
  const checkouts = (values.checkout ?? [`this=${ROOT_DIR}`]).map((pair) => {
    const [name, dir] = pair.split("=") as [string, string];
    return { name, dir: dir.replace(/\/$/, "") };
  });
  const dir = await Deno.makeTempDir({ prefix: "udp-echo-refs-" });
  try {
    const c = await buildC(dir);
    return await bench(c);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  async function bench(c: CTools): Promise<number> {
    const load = await loadAverage();
    const servers = [
      { name: "C echo_mmsg", command: [...rt, c.echo_mmsg, HOST, "0"] },
      { name: "C echo_lean", command: [...rt, c.echo_lean, HOST, "0"] },
      ...(values.busy
        ? [{
          name: "C echo_lean busy",
          command: [...rt, c.echo_lean, HOST, "0", "busy"],
        }]
        : []),
      ...(values.pktinfo
        ? [{
          name: "C echo_lean pktinfo",
          command: [...rt, c.echo_lean, HOST, "0", "pktinfo"],
        }]
        : []),
      ...checkouts.map(({ name, dir }) => ({
        name: `server.ts ${name}`,
        command: [...rt, ...serverTs(dir)],
      })),
    ];
    const generators = [
      { name: "udp_loadgen", program: c.udp_loadgen, mode: "user" },
      { name: "loadgen_lean", program: c.loadgen_lean, mode: "block" },
    ];
    const generatorCommand = (
      g: (typeof generators)[number],
      port: number,
      window: number,
    ) => [
      ...rt,
      g.program,
      HOST,
      String(port),
      String(window),
      String(size),
      String(duration),
      String(warmup),
      g.mode,
    ];
    // The middle of the measured part of a C generator's run, and of a
    // client.ts run (which has no warm-up and starts a runtime first).
    const measured = { from: warmup + 0.2, to: warmup + duration - 0.2 };
    const clientMeasured = { from: 1, to: duration - 0.2 };
    // `${section} W=${window} ${generator}|${row}` -> one sample per round
    const samples = new Map<string, Sample[]>();
    const add = (key: string, sample: Sample) =>
      samples.set(key, [...(samples.get(key) ?? []), sample]);
    const log = (text: string) => values.json || console.error(text);
    const show = (s: Sample) =>
      `${s.rate.toFixed(0)}/s p50 ${s.p50.toFixed(1)} µs cpu ${
        s.cpu.toFixed(2)
      } µs/echo`;
    const pacing = new Map<string, number[]>();
    for (let round = 0; round < rounds; round++) {
      if (only.has("server")) {
        const running: RunningServer[] = [];
        try {
          for (const spec of servers) running.push(await start(spec));
          for (const window of windows) {
            for (const g of generators) {
              const one = async (server: RunningServer) => {
                const s = await runLoad(
                  generatorCommand(g, server.port, window),
                  measured,
                  parseC,
                  server.child.pid,
                );
                add(`server W=${window} ${g.name}|${server.spec.name}`, s);
                log(
                  `round ${
                    round + 1
                  } W=${window} ${g.name} -> ${server.spec.name}: ${show(s)}`,
                );
              };
              if (values.together) {
                await Promise.all(running.map(one));
                continue;
              }
              for (let i = 0; i < running.length; i++) {
                await one(running[(i + round) % running.length]!);
              }
            }
          }
        } finally {
          for (const server of running) await stop(server);
        }
      }
      if (only.has("client")) {
        const echo = await start({
          name: "C echo_lean",
          command: [...rt, c.echo_lean, HOST, "0"],
        });
        try {
          const clients = [
            ...generators.map((g) => ({ name: g.name, g, dir: "" })),
            ...checkouts.map(({ name, dir }) => ({
              name: `client.ts ${name}`,
              g: undefined,
              dir,
            })),
          ];
          for (const window of windows.filter((w) => w > 1)) {
            for (let i = 0; i < clients.length; i++) {
              const client = clients[(i + round) % clients.length]!;
              const s = client.g
                ? await runLoad(
                  generatorCommand(client.g, echo.port, window),
                  measured,
                  parseC,
                )
                : await runLoad(
                  [
                    ...rt,
                    ...clientTs(client.dir, echo.port, {
                      window,
                      size,
                      duration,
                    }),
                  ],
                  clientMeasured,
                  parseClient,
                );
              add(`client W=${window}|${client.name}`, s);
              log(
                `round ${round + 1} client W=${window} ${client.name}: ${
                  show(s)
                }`,
              );
            }
          }
        } finally {
          await stop(echo);
        }
      }
      if (only.has("pacing")) {
        const senders = [
          { name: "C clock_nanosleep + spin", kind: "c" as const, dir: "" },
          ...checkouts.map(({ name, dir }) => ({
            name: `client.ts ${name}`,
            kind: "deno" as const,
            dir,
          })),
        ];
        for (let i = 0; i < senders.length; i++) {
          const s = senders[(i + round) % senders.length]!;
          const stats = await runPacing(
            {
              name: s.name,
              kind: s.kind,
              flags: ["--io", "batch"],
              root: s.dir || undefined,
              wrap: rt,
            },
            c,
            HOST,
            { count: 500, intervalMs: 1, size },
          );
          pacing.set(s.name, [...(pacing.get(s.name) ?? []), stats.within]);
          log(
            `round ${round + 1} pacing ${s.name}: ${
              (stats.within * 100).toFixed(1)
            }% within ±50 µs`,
          );
        }
      }
    }
    const after = await loadAverage();
    const lines: string[] = [`load average before: ${load}`];
    const groups = new Map<string, Map<string, Sample[]>>();
    for (const [key, list] of samples) {
      const [group, row] = key.split("|") as [string, string];
      if (!groups.has(group)) groups.set(group, new Map());
      groups.get(group)!.set(row, list);
    }
    const tables: Record<string, unknown> = {};
    const fixed = (x: number, digits: number) =>
      Number.isFinite(x) ? x.toFixed(digits) : "-";
    for (const [group, rows] of groups) {
      const references = [...rows.keys()].filter((r) => !/\.ts /.test(r));
      const latency = group.startsWith("server W=1 ");
      const figure = (s: Sample) => latency ? s.p50 : s.rate;
      lines.push(
        `\n${group}: ${
          latency ? "p50 µs" : "echoes/s"
        } and CPU µs per echo, medians; ratios are medians of per-round ratios`,
      );
      const table: Record<string, unknown> = {};
      for (const [row, list] of rows) {
        const values = list.map(figure);
        const cpus = list.map((s) => s.cpu);
        const ratios: Record<string, { figure: number; cpu: number }> = {};
        for (const r of references.filter((r) => r !== row)) {
          ratios[r] = {
            figure: pairedRatio(values, rows.get(r)!.map(figure)),
            cpu: pairedRatio(cpus, rows.get(r)!.map((s) => s.cpu)),
          };
        }
        const bad = list.reduce((n, s) => n + s.bad, 0);
        lines.push(
          `  ${row.padEnd(22)} ${
            fixed(mid(values), latency ? 1 : 0).padStart(8)
          } ${fixed(mid(cpus), 2).padStart(6)} µs  ${
            Object.entries(ratios).map(([r, x]) =>
              `${fixed(x.figure, 2)}x (cpu ${fixed(x.cpu, 2)}x) ${r}`
            ).join(", ")
          }${bad ? `  (${bad} lost or corrupt)` : ""}`,
        );
        table[row] = { rounds: list, ratios };
      }
      tables[group] = table;
    }
    if (pacing.size) {
      lines.push("\npacing -c 500 -i 1: share of gaps within ±50 µs, median");
      for (const [name, list] of pacing) {
        lines.push(
          `  ${name.padEnd(26)} ${(mid(list) * 100).toFixed(1)}%  rounds ${
            list.map((x) => (x * 100).toFixed(1)).join(" ")
          }`,
        );
      }
    }
    lines.push(`\nload average after: ${after}`);
    console.log(
      values.json
        ? JSON.stringify({
          load,
          loadAfter: after,
          rounds,
          duration,
          tables,
          pacing: Object.fromEntries(pacing),
        })
        : lines.join("\n"),
    );
    return 0;
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
