/**
 * The client half of the benchmark: `client.ts` in its measurement modes
 * against the C client (`udp_loadgen`), both against the C echo server, and
 * paced senders judged by a C receiver that records kernel arrival times.
 *
 * `client.ts --io` is asked for only when `client.ts --help` lists it; an
 * older client runs as one row without it, and the bench says so.
 *
 * @module
 */

import type { CLoadResult, CTools } from "./native.ts";
import { loadgenArgs } from "./native.ts";
import { type PacingStats, pacingStats } from "./pacing.ts";

const ROOT_DIR = new URL("..", import.meta.url).pathname;

/** A client under test. */
export interface ClientSpec {
  /** Name in the tables. */
  name: string;
  /** `udp_loadgen` (the C client) or `client.ts` with these extra flags. */
  kind: "c" | "deno";
  /** Extra `client.ts` flags, e.g. `["--io", "batch"]`; for the C client, `["kernel"]` for kernel stamps. */
  flags: string[];
  /** The checkout whose `client.ts` runs (default: this one). */
  root?: string;
  /** A command the paced sender runs under, such as `["nice", "-n", "-20"]`. */
  wrap?: string[];
  /**
   * The C client row this one is judged against: the one that times round
   * trips the same way (the kernel engine from the send to the kernel's
   * arrival time, sockets from user space to user space). None for C rows.
   */
  reference?: string;
}

/** The C client timing round trips in user space, like the socket client. */
export const C_CLIENT = "C udp_loadgen";
/** The C client timing round trips to the kernel's arrival time, like the kernel engine. */
export const C_CLIENT_KERNEL = "C udp_loadgen, kernel stamps";

/** One client run's figures. */
export interface ClientSample {
  /** Echoes per second. */
  rate: number;
  /** Median round trip, microseconds. */
  p50: number;
  /** Shortest round trip, microseconds. */
  min: number;
  /** Probes lost. */
  lost: number;
  /** Replies corrupted. */
  corrupt: number;
}

/** `deno run` with what `client.ts` needs for either engine. */
function denoClient(
  args: string[],
  flags: string[],
  root: string = ROOT_DIR,
): string[] {
  const dir = root.endsWith("/") ? root : `${root}/`;
  return [
    Deno.execPath(),
    "run",
    "--unstable-net",
    "--allow-net",
    "--allow-ffi",
    `--allow-read=${dir}`,
    `${dir}client.ts`,
    ...args,
    ...flags,
  ];
}

/** Returns whether this checkout's `client.ts --help` lists `--io`. */
export async function clientHasIo(): Promise<boolean> {
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-net", `${ROOT_DIR}client.ts`, "--help"],
    stdout: "piped",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).output();
  return /--io\b/.test(new TextDecoder().decode(stdout));
}

/**
 * The clients to run: the C client both ways of timing, then `client.ts`
 * per I/O mode (or once without `--io`), each with the C row it is judged
 * against.
 */
export function clientSpecs(hasIo: boolean): ClientSpec[] {
  return [
    { name: C_CLIENT, kind: "c", flags: [] },
    { name: C_CLIENT_KERNEL, kind: "c", flags: ["kernel"] },
    ...(hasIo
      ? [
        {
          name: "client.ts --io socket",
          kind: "deno" as const,
          flags: ["--io", "socket"],
          reference: C_CLIENT,
        },
        {
          name: "client.ts --io batch",
          kind: "deno" as const,
          flags: ["--io", "batch"],
          reference: C_CLIENT_KERNEL,
        },
      ]
      : [{
        name: "client.ts",
        kind: "deno" as const,
        flags: [],
        reference: C_CLIENT,
      }]),
  ];
}

/** Runs a command to its end; its stdout, which must not be empty when `output` is true. */
async function run(command: string[], output = true): Promise<string> {
  const { stdout, stderr, code } = await new Deno.Command(command[0]!, {
    args: command.slice(1),
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(stdout);
  // client.ts exits 1 when probes were lost; its JSON still says how many.
  if (code > 1 || (output && !text.trim()) || (!output && code !== 0)) {
    throw new Error(
      `Cannot run ${command.slice(-8).join(" ")}: exit ${code}: ${
        new TextDecoder().decode(stderr).trim()
      }`,
    );
  }
  return text;
}

/** What `client.ts --json` prints that the bench reads. */
interface ClientJson {
  lost: number;
  corrupted: number;
  rtt_ms: { min: number; median: number } | null;
  echo_rate: { pps: number };
}

/** Runs one closed-loop client run of `duration` seconds against `port`. */
export async function runClient(
  spec: ClientSpec,
  c: CTools,
  target: { host: string; port: number },
  options: { window: number; size: number; duration: number; warmup: number },
): Promise<ClientSample> {
  if (spec.kind === "c") {
    const result = JSON.parse(
      await run([
        c.udp_loadgen,
        ...loadgenArgs(target.host, target.port, {
          ...options,
          stamps: spec.flags[0] === "kernel" ? "kernel" : "user",
        }),
      ]),
    ) as CLoadResult;
    return {
      rate: result.echoes_per_s,
      p50: result.p50_us,
      min: result.min_us,
      lost: result.lost,
      corrupt: result.corrupted,
    };
  }
  // client.ts has no warm-up: its start-up and JIT are in its figures.
  const json = JSON.parse(
    await run(denoClient(
      [
        "-H",
        target.host,
        "-p",
        String(target.port),
        "-w",
        String(options.window),
        "-d",
        String(options.duration),
        "-s",
        String(options.size),
        "--json",
      ],
      spec.flags,
      spec.root,
    )),
  ) as ClientJson;
  return {
    rate: json.echo_rate.pps,
    p50: (json.rtt_ms?.median ?? NaN) * 1000,
    min: (json.rtt_ms?.min ?? NaN) * 1000,
    lost: json.lost,
    corrupt: json.corrupted,
  };
}

/** Reads a child's stdout up to its first line, and the rest as a promise. */
async function firstLine(
  child: Deno.ChildProcess,
): Promise<{ line: string; rest: Promise<string> }> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("Cannot start the pacing receiver: it exited");
    text += value;
  }
  const rest = (async () => {
    let more = text.slice(text.indexOf("\n") + 1);
    while (true) {
      const { value, done } = await reader.read();
      if (done) return more;
      more += value;
    }
  })();
  return { line: text.slice(0, text.indexOf("\n")), rest };
}

/**
 * Sends `count` datagrams every `intervalMs` from `spec` (the C paced sender
 * for kind "c") to a fresh `pacing recv`, which echoes them, and judges the
 * kernel's arrival times.
 */
export async function runPacing(
  spec: ClientSpec,
  c: CTools,
  host: string,
  options: { count: number; intervalMs: number; size: number },
): Promise<PacingStats> {
  const receiver = new Deno.Command(c.pacing, {
    args: ["recv", host, "0", String(options.count), "1000"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const { line, rest } = await firstLine(receiver);
    const port = Number(line.match(/^listening (\d+)/)?.[1]);
    const sender = spec.kind === "c"
      ? [
        c.pacing,
        "send",
        host,
        String(port),
        String(options.count),
        String(Math.round(options.intervalMs * 1000)),
        "50",
      ]
      : denoClient(
        [
          "-H",
          host,
          "-p",
          String(port),
          "-c",
          String(options.count),
          "-i",
          String(options.intervalMs),
          "-s",
          String(options.size),
          "--json",
        ],
        spec.flags,
        spec.root,
      );
    // The C sender prints nothing; client.ts prints its summary.
    await run([...spec.wrap ?? [], ...sender], spec.kind !== "c");
    // The receiver stops at `count` datagrams, or 1 s after the last one.
    const timer = setTimeout(() => receiver.kill("SIGTERM"), 5000);
    const text = await rest;
    clearTimeout(timer);
    const result = JSON.parse(text) as { arrivals_ns: number[] };
    return pacingStats(result.arrivals_ns, options.intervalMs);
  } finally {
    try {
      receiver.kill("SIGTERM");
    } catch { /* already exited */ }
    await receiver.status;
  }
}
