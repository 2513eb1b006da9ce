#!/usr/bin/env -S deno run --unstable-net --allow-net --allow-run --allow-read
/**
 * Scale of one monitor: `client.ts --metrics` probing N targets, each once
 * per `--interval` ms, against one `server.ts --rate 0` bound to 0.0.0.0,
 * the targets spread across 127.0.0.0/8 (all of it is local on Linux). For
 * each N it waits until every target has answered, then measures over
 * `--seconds`: the monitor's CPU (user + system, from /proc/PID/stat), its
 * resident size (VmRSS), the series and bytes of one scrape and how long
 * the scrape took, and the probes lost. With `--stamp` the probes are STAMP
 * packets to a stateful reflector.
 *
 * Usage:
 *   deno run --unstable-net --allow-net --allow-run --allow-read \
 *     bench/monitor_scale.ts [--targets 10,100,1000] [--interval 1000] \
 *     [--seconds 20] [--stamp]
 *
 * The monitor gets the V8 flags of `deno task server`. Linux only.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { SERVER_V8_FLAGS } from "./server_flags.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const TICKS_PER_SECOND = 100;

async function readProc(pid: number, file: string): Promise<string> {
  // Deno grants /proc/PID only with --allow-all, so `cat` reads it.
  const { stdout, success } = await new Deno.Command("cat", {
    args: [`/proc/${pid}/${file}`],
  }).output();
  if (!success) throw new Error(`Cannot read /proc/${pid}/${file}`);
  return new TextDecoder().decode(stdout);
}

/** User plus system CPU of `pid` so far, in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readProc(pid, "stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the whole line.
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

async function rssMiB(pid: number): Promise<number> {
  const match = /VmRSS:\s+(\d+) kB/.exec(await readProc(pid, "status"));
  if (!match) throw new Error(`Cannot read the resident size of ${pid}`);
  return Number(match[1]) / 1024;
}

function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/** The `k`th address of 127.0.0.0/8 from 127.0.1.1, spread over the /8. */
function target(k: number): string {
  const n = 257 + k * 61;
  return `127.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255 || 1}`;
}

function sum(text: string, name: string): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`)) total += Number(line.split(" ").at(-1));
  }
  return total;
}

interface Row {
  targets: number;
  cpu: number;
  rss: number;
  series: number;
  bytes: number;
  scrapeMs: number;
  sent: number;
  lost: number;
}

async function measure(
  count: number,
  port: number,
  options: { interval: string; seconds: number; stamp: boolean },
): Promise<Row> {
  const metricsPort = freePort();
  const url = `http://127.0.0.1:${metricsPort}/metrics`;
  const monitor = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--unstable-net",
      "--allow-net",
      "--allow-sys=networkInterfaces,hostname",
      "--allow-ffi",
      "--allow-read=.",
      ...SERVER_V8_FLAGS,
      "client.ts",
      ...Array.from({ length: count }, (_, k) => ["-H", target(k)]).flat(),
      "-p",
      String(port),
      "-i",
      options.interval,
      ...(options.stamp ? ["--stamp"] : []),
      "-q",
      "--metrics",
      `127.0.0.1:${metricsPort}`,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  try {
    const scrape = async () => {
      const start = performance.now();
      const text = await fetch(url).then((r) => r.text()).catch(() => "");
      return { text, ms: performance.now() - start };
    };
    // Warm: every target has answered at least twice.
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const { text } = await scrape();
      const answered = text.split("\n").filter((line) =>
        /^udp_echo_probes_received_total\{.*\} ([2-9]|\d\d+)/.test(line)
      ).length;
      if (answered === count) {
        break;
      }
    }
    const before = await scrape();
    const cpu0 = await cpuSeconds(monitor.pid);
    const t0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, options.seconds * 1000));
    const cpu1 = await cpuSeconds(monitor.pid);
    const elapsed = (performance.now() - t0) / 1000;
    const rss = await rssMiB(monitor.pid);
    const after = await scrape();
    const series = after.text.split("\n").filter((line) =>
      line !== "" && !line.startsWith("#")
    ).length;
    return {
      targets: count,
      cpu: (cpu1 - cpu0) / elapsed * 100,
      rss,
      series,
      bytes: new TextEncoder().encode(after.text).length,
      scrapeMs: after.ms,
      sent: sum(after.text, "udp_echo_probes_sent_total") -
        sum(before.text, "udp_echo_probes_sent_total"),
      lost: sum(after.text, "udp_echo_probes_lost_total") -
        sum(before.text, "udp_echo_probes_lost_total"),
    };
  } finally {
    monitor.kill("SIGTERM");
    await monitor.status;
  }
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      targets: { type: "string", default: "10,100,1000" },
      interval: { type: "string", default: "1000" },
      seconds: { type: "string", default: "20" },
      stamp: { type: "boolean", default: false },
    },
  });
  const port = freePort();
  const server = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--unstable-net",
      "--allow-net",
      // As `deno task server`: the kernel engine replies from the address
      // each probe was sent to.
      "--allow-sys=networkInterfaces",
      "--allow-ffi",
      "--allow-read=.",
      ...SERVER_V8_FLAGS,
      "server.ts",
      "-H",
      "0.0.0.0",
      "-p",
      String(port),
      "--rate",
      "0",
      "-q",
      ...(values.stamp ? ["--stamp", "--stamp-stateful"] : []),
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  try {
    console.log(
      `| targets | probes/s | CPU % of a core | RSS MiB | series | scrape KiB | scrape ms | lost |`,
    );
    console.log("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const count of values.targets.split(",").map(Number)) {
      const row = await measure(count, port, {
        interval: values.interval,
        seconds: Number(values.seconds),
        stamp: values.stamp,
      });
      console.log(
        `| ${row.targets} | ${
          (row.sent / Number(values.seconds)).toFixed(0)
        } | ${row.cpu.toFixed(1)} | ${row.rss.toFixed(0)} | ${row.series} | ${
          (row.bytes / 1024).toFixed(0)
        } | ${row.scrapeMs.toFixed(0)} | ${row.lost} |`,
      );
    }
    return 0;
  } finally {
    server.kill("SIGTERM");
    await server.status;
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
