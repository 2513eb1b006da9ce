/**
 * The C references of the benchmark, our own code built with `cc` into a
 * temporary folder at bench time (never committed): the recvmmsg/sendmmsg
 * echo server (`echo_mmsg.c`), the closed-loop generator that is also the
 * reference client (`udp_loadgen.c`), and the paced sender and the
 * timestamping receiver (`pacing.c`), the pinger without a warm-up whose
 * probe 0 `first_probe.ts` sets beside ours (`first_probe.c`); and a
 * second, leaner echo server and generator (`echo_lean.c`,
 * `loadgen_lean.c`) that `references.ts` measures beside the first to show
 * how a ratio depends on the reference.
 *
 * @module
 */

const HERE = new URL(".", import.meta.url).pathname;

/** The C programs, by name. */
export const C_PROGRAMS = [
  "echo_mmsg",
  "udp_loadgen",
  "pacing",
  "echo_lean",
  "loadgen_lean",
  "first_probe",
] as const;

/** Paths of the built programs. */
export type CTools = Record<(typeof C_PROGRAMS)[number], string>;

/** One run of `udp_loadgen`, as it prints it. */
export interface CLoadResult {
  /** Datagrams in flight. */
  window: number;
  /** Payload bytes. */
  size: number;
  /** Seconds measured. */
  seconds: number;
  /** Echoes received intact in the measured seconds. */
  echoes: number;
  /** Echoes per second. */
  echoes_per_s: number;
  /** Median round trip in microseconds (100 ns buckets). */
  p50_us: number;
  /** 99th percentile round trip in microseconds. */
  p99_us: number;
  /** Shortest round trip in microseconds. */
  min_us: number;
  /** Datagrams given up on after 200 ms. */
  lost: number;
  /** Replies that differ from what was sent. */
  corrupted: number;
  /** Replies of datagrams already given up on. */
  late: number;
}

/**
 * Builds the C programs into `dir` with `cc -O2`. Throws an `Error`
 * ("Cannot build NAME: ...") with the compiler's message when one fails, or
 * when there is no `cc`.
 */
export async function buildC(dir: string): Promise<CTools> {
  const tools = {} as CTools;
  for (const name of C_PROGRAMS) {
    const output = `${dir}/${name}`;
    let result: Deno.CommandOutput;
    try {
      result = await new Deno.Command("cc", {
        args: ["-O2", "-Wall", "-o", output, `${HERE}${name}.c`],
        stdout: "null",
        stderr: "piped",
      }).output();
    } catch (error) {
      throw new Error(`Cannot build ${name}: ${error}`);
    }
    if (!result.success) {
      throw new Error(
        `Cannot build ${name}: ${new TextDecoder().decode(result.stderr)}`,
      );
    }
    tools[name] = output;
  }
  return tools;
}

/**
 * The `udp_loadgen` command line for one run. `stamps` "kernel" times round
 * trips from CLOCK_REALTIME at the send to the kernel's arrival time
 * (SO_TIMESTAMPNS), as the client's kernel engine does; "user" (the
 * default) from CLOCK_MONOTONIC before the send to after the receive.
 */
export function loadgenArgs(
  host: string,
  port: number,
  options: {
    window: number;
    size: number;
    duration: number;
    warmup: number;
    stamps?: "user" | "kernel";
  },
): string[] {
  return [
    host,
    String(port),
    String(options.window),
    String(options.size),
    String(options.duration),
    String(options.warmup),
    options.stamps ?? "user",
  ];
}
