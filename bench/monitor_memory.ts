#!/usr/bin/env -S deno run --unstable-net --allow-net --allow-run --allow-read
/**
 * Memory check of the monitor: the resident size of `client.ts --metrics`
 * probing `server.ts -q` every 0.1 ms, read when its
 * `udp_echo_probes_sent_total` passes each checkpoint (100,000 and
 * 1,000,000 probes by default). The monitor keeps per-probe state in a
 * fixed ring, so the figures should stay within 10%.
 *
 * Usage:
 *   deno run --unstable-net --allow-net --allow-run --allow-read \
 *     bench/monitor_memory.ts [--checkpoints 100000,1000000] [--interval 0.1]
 *     [--stamp]
 *
 * With `--stamp` the probes are STAMP packets to a stateful reflector.
 *
 * The monitor gets the V8 flags of `deno task server` (a service's
 * settings). Linux only (reads VmRSS from /proc). Exits 1 when the last
 * figure is more than 10% above the first.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { SERVER_V8_FLAGS } from "./server_flags.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const POLL_MS = 200;

async function rssKiB(pid: number): Promise<number> {
  // Deno grants /proc/PID only with --allow-all, so `cat` reads it.
  const { stdout } = await new Deno.Command("cat", {
    args: [`/proc/${pid}/status`],
  }).output();
  const match = /VmRSS:\s+(\d+) kB/.exec(new TextDecoder().decode(stdout));
  // NaN would compare false and pass the check: a failed read must fail it.
  if (!match) throw new Error(`Cannot read the resident size of ${pid}`);
  return Number(match[1]);
}

function spawn(
  args: string[],
): { child: Deno.ChildProcess; line: Promise<string> } {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  const line = (async () => {
    let text = "";
    const reader = child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    // Keep draining.
    (async () => {
      while (!(await reader.read()).done) { /* drain */ }
    })().catch(() => {});
    return text;
  })();
  return { child, line };
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      checkpoints: { type: "string", default: "100000,1000000" },
      interval: { type: "string", default: "0.1" },
      stamp: { type: "boolean", default: false },
    },
  });
  const checkpoints = values.checkpoints.split(",").map(Number);
  const server = spawn([
    "run",
    "--unstable-net",
    "--allow-net",
    ...SERVER_V8_FLAGS,
    "server.ts",
    "-H",
    "127.0.0.1",
    "-p",
    "0",
    "-q",
    ...(values.stamp ? ["--stamp", "--stamp-stateful"] : []),
  ]);
  const port = Number(/port (\d+)/.exec(await server.line)?.[1]);
  // A port free a moment ago: with -q the monitor prints nothing to read it from.
  const metricsPort = (() => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    return listener.addr.port;
  })();
  const url = `http://127.0.0.1:${metricsPort}/metrics`;
  const monitor = spawn([
    "run",
    "--unstable-net",
    "--allow-net",
    ...SERVER_V8_FLAGS,
    "client.ts",
    "-H",
    "127.0.0.1",
    "-p",
    String(port),
    "-i",
    values.interval,
    ...(values.stamp ? ["--stamp"] : []),
    "-q",
    "--node",
    "test-node",
    "--metrics",
    `127.0.0.1:${metricsPort}`,
  ]);
  const started = performance.now();
  try {
    const rows: [number, number, number, number][] = [];
    for (const target of checkpoints) {
      let sent = 0;
      while (sent < target) {
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        const text = await fetch(url).then((r) => r.text()).catch(() => "");
        sent = Number(
          /^udp_echo_probes_sent_total\{[^}]*\} (\d+)/m.exec(text)?.[1] ?? 0,
        );
      }
      const rss = await rssKiB(monitor.child.pid);
      const seconds = (performance.now() - started) / 1000;
      rows.push([target, sent, rss, seconds]);
      console.log(
        `after ${sent} probes (${seconds.toFixed(0)} s, ${
          (sent / seconds).toFixed(0)
        } probes/s): RSS ${(rss / 1024).toFixed(1)} MiB`,
      );
    }
    const first = rows[0]![2];
    const last = rows.at(-1)![2];
    const change = (last / first - 1) * 100;
    console.log(
      `RSS change from the first to the last checkpoint: ${
        change >= 0 ? "+" : ""
      }${change.toFixed(1)}%`,
    );
    return change > 10 ? 1 : 0;
  } finally {
    monitor.child.kill("SIGTERM");
    await monitor.child.status;
    server.child.kill("SIGTERM");
    await server.child.status;
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
