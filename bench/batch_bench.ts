/**
 * Compares the batch engine with a C recvmmsg/sendmmsg echo server on
 * loopback, using a C closed-loop load generator (`udp_loadgen.c`, built
 * here with gcc into a temporary directory, never committed). Servers run one
 * at a time in interleaved rounds (A, B, C, A, B, C, ...) so machine drift
 * cancels, and the table shows medians and the ratio to the C server.
 *
 * Usage (hold the machine's bench lock):
 *   flock /tmp/bench.lock deno run -A bench/batch_bench.ts [--rounds N] [--seconds S] [--windows 1,32] [--size 64] [--servers c,worker,main] [--host 127.0.0.1]
 *
 * Servers: `c` (bench/echo_mmsg.c), `worker` (serveBatch), `worker-hook`
 * (serveBatch calling a decide hook per datagram), `main` (the engine on the
 * main thread with nonblocking FFI receives), `server-batch` and
 * `server-socket` (server.ts -q with each backend, and the V8 flags of
 * `deno task server`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { SERVER_V8_FLAGS } from "./server_flags.ts";

const HERE = new URL(".", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;

/** One load-generator run, as `udp_loadgen` prints it. */
interface LoadResult {
  echoes_per_s: number;
  p50_us: number;
  p99_us: number;
  lost: number;
  corrupted: number;
  late: number;
}

/** Commands of the servers this bench knows, by name. */
function serverCommand(name: string, bin: string, host: string): string[] {
  const deno = Deno.execPath();
  const ffi = [
    "run",
    "--unstable-net",
    "--allow-net",
    "--allow-ffi",
    `--allow-read=${ROOT}`,
  ];
  switch (name) {
    case "c":
      return [`${bin}/echo_mmsg`, host, "0"];
    case "worker":
      return [deno, ...ffi, `${HERE}batch_server.ts`, host];
    case "worker-hook":
      return [deno, ...ffi, `${HERE}batch_server.ts`, "--hook", host];
    case "main":
      return [deno, ...ffi, `${HERE}batch_server.ts`, "--main", host];
    case "server-batch":
      return [
        deno,
        ...ffi,
        ...SERVER_V8_FLAGS,
        `${ROOT}server.ts`,
        "--io",
        "batch",
        "-q",
        "-H",
        host,
        "-p",
        "0",
      ];
    case "server-socket":
      return [
        deno,
        "run",
        "--unstable-net",
        "--allow-net",
        ...SERVER_V8_FLAGS,
        `${ROOT}server.ts`,
        "-q",
        "-H",
        host,
        "-p",
        "0",
      ];
    default:
      throw new TypeError(`Cannot bench server "${name}": unknown`);
  }
}

async function build(dir: string): Promise<void> {
  for (const name of ["echo_mmsg", "udp_loadgen"]) {
    const { success, stderr } = await new Deno.Command("gcc", {
      args: ["-O2", "-Wall", "-o", `${dir}/${name}`, `${HERE}${name}.c`],
      stderr: "piped",
    }).output();
    if (!success) {
      throw new Error(
        `Cannot build ${name}: ${new TextDecoder().decode(stderr)}`,
      );
    }
  }
}

/** Starts a server and returns it with the port from its first line. */
async function start(
  command: string[],
): Promise<{ child: Deno.ChildProcess; port: number }> {
  const child = new Deno.Command(command[0]!, {
    args: command.slice(1),
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`Cannot start ${command.join(" ")}`);
    text += value;
    const match = /(?:listening|port) (\d+)/.exec(text);
    if (match) {
      // Keep draining stdout so the server never blocks on a full pipe.
      (async () => {
        while (!(await reader.read()).done);
      })();
      return { child, port: Number(match[1]) };
    }
  }
}

async function load(
  bin: string,
  host: string,
  port: number,
  window: number,
  size: number,
  seconds: number,
): Promise<LoadResult> {
  const { success, stdout } = await new Deno.Command(`${bin}/udp_loadgen`, {
    args: [host, String(port), String(window), String(size), String(seconds)],
    stdout: "piped",
  }).output();
  if (!success) throw new Error("Cannot run udp_loadgen");
  return JSON.parse(new TextDecoder().decode(stdout));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string", default: "5" },
      seconds: { type: "string", default: "3" },
      windows: { type: "string", default: "1,32" },
      size: { type: "string", default: "64" },
      servers: { type: "string", default: "c,worker,main" },
      host: { type: "string", default: "127.0.0.1" },
    },
  });
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  const size = Number(values.size);
  const windows = values.windows.split(",").map(Number);
  const servers = values.servers.split(",");
  const bin = await Deno.makeTempDir({ prefix: "udp-echo-bench-" });
  try {
    await build(bin);
    const results = new Map<string, LoadResult[]>();
    for (let round = 0; round < rounds; round++) {
      for (const name of servers) {
        const { child, port } = await start(
          serverCommand(name, bin, values.host),
        );
        try {
          for (const window of windows) {
            const result = await load(
              bin,
              values.host,
              port,
              window,
              size,
              seconds,
            );
            const key = `${name} w${window}`;
            results.set(key, [...(results.get(key) ?? []), result]);
            console.error(
              `round ${round + 1} ${key}: ${JSON.stringify(result)}`,
            );
          }
        } finally {
          try {
            child.kill("SIGTERM");
          } catch {
            // Already gone: reported below.
          }
          const status = await child.status;
          if (status.signal !== null && status.signal !== "SIGTERM") {
            console.error(
              `round ${round + 1} ${name}: died of ${status.signal}`,
            );
          } else if (!status.success && status.signal === null) {
            console.error(`round ${round + 1} ${name}: exited ${status.code}`);
          }
        }
      }
    }
    console.log(
      `| server | window | echoes/s | ratio to c | p50 us | p50 ratio | p99 us | lost | corrupted |`,
    );
    console.log(`|---|---|---|---|---|---|---|---|---|`);
    for (const window of windows) {
      const base = results.get(`c w${window}`);
      const baseRate = base ? median(base.map((r) => r.echoes_per_s)) : NaN;
      const baseP50 = base ? median(base.map((r) => r.p50_us)) : NaN;
      for (const name of servers) {
        const runs = results.get(`${name} w${window}`)!;
        const rate = median(runs.map((r) => r.echoes_per_s));
        const p50 = median(runs.map((r) => r.p50_us));
        const p99 = median(runs.map((r) => r.p99_us));
        const lost = runs.reduce((sum, r) => sum + r.lost, 0);
        const corrupted = runs.reduce((sum, r) => sum + r.corrupted, 0);
        console.log(
          `| ${name} | ${window} | ${Math.round(rate)} | ${
            (rate / baseRate).toFixed(3)
          } | ${p50.toFixed(1)} | ${(p50 / baseP50).toFixed(3)} | ${
            p99.toFixed(1)
          } | ${lost} | ${corrupted} |`,
        );
      }
    }
    return 0;
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
