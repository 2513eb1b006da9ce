/**
 * The measurement modes of `client.ts` on the command line: their flags,
 * how the flags pick a mode, and running one with text, `--json` or
 * `--ndjson` output and the `--max-loss` exit status. `client.ts` adds
 * {@linkcode MEASURE_FLAGS} to its own flags and hands over to
 * {@linkcode runMeasurement} when {@linkcode measurementMode} finds one.
 *
 * @module
 */

import {
  checkProbeSize,
  DEFAULT_PROBE_SIZE,
  DEFAULT_PROBE_TIMEOUT_MS,
  type ProbeEvent,
  type RunOptions,
  runProbes,
  SWEEP_TRIES,
  sweepPayload,
} from "./engine.ts";
import {
  eventJson,
  formatLost,
  formatReply,
  formatRunSummary,
  formatStatus,
  formatSweepStep,
  formatSweepSummary,
  lossPercent,
  type Mode,
  runJson,
  sweepJson,
  toJson,
} from "./report.ts";
import {
  type AddressFamily,
  formatAddress,
  type HostPort,
  parseHost,
  parsePort,
} from "../net/address.ts";
import { checkUnstableNet } from "../io/socket.ts";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from "../cli/exit.ts";
import { printError } from "../cli/output.ts";
import { resolveTarget } from "../net/resolve.ts";

/** The flags of the measurement modes, in `node:util` parseArgs form. */
export const MEASURE_FLAGS = {
  count: { type: "string", short: "c" },
  interval: { type: "string", short: "i" },
  size: { type: "string", short: "s" },
  duration: { type: "string", short: "d" },
  wait: { type: "string" },
  window: { type: "string", short: "w" },
  rate: { type: "string" },
  flows: { type: "string" },
  sweep: { type: "boolean" },
  ipv4: { type: "boolean", short: "4" },
  ipv6: { type: "boolean", short: "6" },
  bind: { type: "string" },
  ndjson: { type: "boolean" },
  "max-loss": { type: "string" },
} as const;

/** The `--help` lines of the measurement flags. */
export const MEASURE_HELP =
  `Measurement modes (these flags start one; -4, -6 and --bind refine it):
  -c, --count N        ping: send N probes (default: until Ctrl-C or -d)
  -i, --interval MS    ping: send probe n at start + n x MS (default 1000)
  -s, --size BYTES     probe payload, 20 to the family limit (default 64)
  -d, --duration S     stop sending after S seconds
      --wait MS        after the last send, wait this long for replies
                       (default 2 x --timeout)
  -w, --window N       load: keep N probes in flight per flow (closed loop)
      --rate PPS       load: send PPS probes a second per flow (open loop)
      --flows N        load: run N flows from distinct source ports
      --sweep          find the largest payload echoed intact
  -4, -6               use only IPv4 or only IPv6
      --bind ADDR[:PORT]  send from this local address
      --ndjson         one JSON event per reply, the summary last
      --max-loss PCT   exit 1 when more than PCT% of probes lack an intact
                       reply (default 0)
  Load without -c or -d runs 10 s; -t MS marks slower replies late and,
  with -w, frees their slot.`;

/** The flag values {@linkcode runMeasurement} reads. */
export interface MeasureValues {
  /** `-H`: the host to measure. */
  host?: string;
  /** `-p`: its port. */
  port?: string;
  /** `-t`: the reply timeout in ms. */
  timeout?: string;
  /** `-q`: only the summary. */
  quiet?: boolean;
  /** `--json`: one JSON document. */
  json?: boolean;
  /** `-c`. */
  count?: string;
  /** `-i`. */
  interval?: string;
  /** `-s`. */
  size?: string;
  /** `-d`. */
  duration?: string;
  /** `--wait`. */
  wait?: string;
  /** `-w`. */
  window?: string;
  /** `--rate`. */
  rate?: string;
  /** `--flows`. */
  flows?: string;
  /** `--sweep`. */
  sweep?: boolean;
  /** `-4`. */
  ipv4?: boolean;
  /** `-6`. */
  ipv6?: boolean;
  /** `--bind`. */
  bind?: string;
  /** `--ndjson`. */
  ndjson?: boolean;
  /** `--max-loss`. */
  "max-loss"?: string;
}

const LOAD_FLAGS = ["window", "rate", "flows"] as const;
const PING_FLAGS = ["count", "interval", "size", "duration", "wait"] as const;
// -4, -6 and --bind refine a mode (and -4/-6 the single echo) but start none.
const OTHER_FLAGS = ["ndjson", "max-loss"] as const;
const LOAD_DEFAULT_MS = 10_000;
const STATUS_INTERVAL_MS = 250;

/**
 * The mode the flags ask for: `sweep` with `--sweep`, `load` with `-w`,
 * `--rate` or `--flows`, `ping` with any other measurement flag; `undefined`
 * when none is given (the single echo).
 */
export function measurementMode(values: MeasureValues): Mode | undefined {
  if (values.sweep) return "sweep";
  if (LOAD_FLAGS.some((flag) => values[flag] !== undefined)) return "load";
  if (
    [...PING_FLAGS, ...OTHER_FLAGS].some((flag) =>
      values[flag] !== undefined && values[flag] !== false
    )
  ) return "ping";
  return undefined;
}

function number(
  flag: string,
  text: string | undefined,
  options: { integer?: boolean; min?: number; max?: number } = {},
): number | undefined {
  if (text === undefined) return undefined;
  const { integer = false, min = 0, max = Infinity } = options;
  const value = Number(text);
  if (
    text.trim() === "" || !Number.isFinite(value) ||
    (integer && !Number.isInteger(value)) || value < min || value > max
  ) {
    throw new RangeError(
      `Cannot use ${flag} "${text}": expected ${
        integer ? "an integer" : "a number"
      } ${max === Infinity ? `of at least ${min}` : `from ${min} to ${max}`}`,
    );
  }
  return value;
}

function parseBind(text: string): HostPort {
  // ADDR, ADDR:PORT, [V6ADDR] or [V6ADDR]:PORT; a bare IPv6 address has no port.
  const match = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ??
    /^([^:]+):(\d+)$/.exec(text);
  if (match) {
    return {
      hostname: parseHost(
        match[1]!.includes(":") ? `[${match[1]}]` : match[1]!,
      ),
      port: match[2] === undefined ? 0 : parsePort(match[2]),
    };
  }
  return { hostname: parseHost(text), port: 0 };
}

function conflict(values: MeasureValues, flags: string[][]): void {
  for (const group of flags) {
    const given = group.filter((flag) =>
      values[flag as keyof MeasureValues] !== undefined &&
      values[flag as keyof MeasureValues] !== false
    );
    if (given.length > 1) {
      throw new TypeError(
        `Cannot combine ${given.map((flag) => `--${flag}`).join(" and ")}`,
      );
    }
  }
}

/** Everything a measurement needs, checked before any datagram leaves. */
interface Plan {
  mode: Mode;
  host: string;
  port: number;
  family?: AddressFamily;
  bind?: HostPort;
  run: Omit<RunOptions, "target">;
  maxLoss: number;
  output: "text" | "json" | "ndjson";
  quiet: boolean;
}

/** Checks the flags of a measurement; throws TypeError or RangeError. */
function plan(
  mode: Mode,
  values: MeasureValues,
  defaults: HostPort,
): Plan {
  conflict(values, [
    ["sweep", "window", "rate", "interval"],
    ["sweep", "count"],
    ["sweep", "duration"],
    ["sweep", "size"],
    ["sweep", "flows"],
    ["ipv4", "ipv6"],
    ["json", "ndjson"],
  ]);
  const timeoutMs = number("--timeout", values.timeout, { min: 1 }) ??
    DEFAULT_PROBE_TIMEOUT_MS;
  const rate = number("--rate", values.rate, { min: 0.001 });
  const count = number("--count", values.count, { integer: true, min: 1 });
  const duration = number("--duration", values.duration, { min: 0.001 });
  let window = number("--window", values.window, { integer: true, min: 1 });
  let intervalMs = rate !== undefined
    ? 1000 / rate
    : number("--interval", values.interval);
  // Load without a pacing flag keeps one probe in flight per flow.
  if (mode === "load" && window === undefined && intervalMs === undefined) {
    window = 1;
  }
  if (window === undefined) intervalMs ??= 1000;
  return {
    mode,
    host: values.host === undefined
      ? defaults.hostname
      : parseHost(values.host),
    port: values.port === undefined ? defaults.port : parsePort(values.port),
    family: values.ipv4 ? "IPv4" : values.ipv6 ? "IPv6" : undefined,
    bind: values.bind === undefined ? undefined : parseBind(values.bind),
    run: {
      count,
      durationMs: duration === undefined
        ? (mode === "load" && count === undefined ? LOAD_DEFAULT_MS : undefined)
        : duration * 1000,
      size: number("--size", values.size, { integer: true, min: 0 }) ??
        DEFAULT_PROBE_SIZE,
      intervalMs,
      window,
      flows: number("--flows", values.flows, {
        integer: true,
        min: 1,
        max: 1024,
      }),
      timeoutMs,
      waitMs: number("--wait", values.wait),
    },
    maxLoss: number("--max-loss", values["max-loss"], { max: 100 }) ?? 0,
    output: values.json ? "json" : values.ndjson ? "ndjson" : "text",
    quiet: values.quiet ?? false,
  };
}

function print(line: string): void {
  console.log(line);
}

/** A live status line on standard error, only on a terminal. */
function statusLine(enabled: boolean) {
  const encoder = new TextEncoder();
  let last = "";
  return {
    show(text: string): void {
      if (!enabled) return;
      last = text;
      Deno.stderr.writeSync(encoder.encode(`\r\x1b[K${last}`));
    },
    clear(): void {
      if (enabled && last !== "") {
        Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
      }
      last = "";
    },
  };
}

/**
 * Runs the measurement the flags ask for and prints it; returns the exit
 * status: 0 when the share of probes without an intact reply stays within
 * `--max-loss` (a sweep: when any size came back intact), 1 otherwise, 2 for
 * a usage error.
 */
export async function runMeasurement(
  mode: Mode,
  values: MeasureValues,
  defaults: HostPort,
): Promise<number> {
  let checked: Plan;
  try {
    checked = plan(mode, values, defaults);
  } catch (error) {
    printError(error);
    return EXIT_USAGE;
  }
  let target;
  try {
    target = await resolveTarget(
      { hostname: checked.host, port: checked.port },
      { family: checked.family },
    );
    if (mode !== "sweep") checkProbeSize(checked.run.size!, target);
    checkUnstableNet();
  } catch (error) {
    printError(error);
    return error instanceof Error && error.message.startsWith("Cannot resolve")
      ? EXIT_FAILURE
      : EXIT_USAGE;
  }
  const from = formatAddress(target);
  const { output, quiet, run } = checked;
  const flows = run.flows ?? 1;
  const status = statusLine(
    mode === "load" && output === "text" && !quiet && Deno.stderr.isTerminal(),
  );
  const live = { sent: 0, received: 0, lastRttMs: NaN, start: 0 };
  const onEvent = (event: ProbeEvent) => {
    if (output === "ndjson") print(toJson(eventJson(event)));
    else if (output === "text" && !quiet) {
      if (event.type === "reply" && mode === "ping") {
        print(formatReply(event, from, flows));
      } else if (event.type === "lost" && mode === "ping") {
        print(formatLost(event, from, flows));
      } else if (event.type === "sweep") {
        print(formatSweepStep(event, SWEEP_TRIES));
      }
    }
    if (
      event.type === "reply" && event.check === "intact" && !event.duplicate
    ) {
      live.received++;
      live.lastRttMs = event.rttMs;
    }
  };
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  let ticker: ReturnType<typeof setInterval> | undefined;
  try {
    if (mode === "sweep") {
      if (output === "text" && !quiet) {
        print(
          `SWEEP ${from}: largest intact payload from 1 to the ${target.family} limit, up to ${SWEEP_TRIES} tries per size`,
        );
      }
      const result = await sweepPayload({
        target,
        bind: checked.bind,
        timeoutMs: run.timeoutMs,
        waitMs: run.waitMs,
        signal: controller.signal,
        onEvent,
      });
      if (output === "text") {
        if (!quiet) print("");
        for (const line of formatSweepSummary(result)) print(line);
      } else {
        const document = sweepJson(result, {
          settings: { timeout_ms: run.timeoutMs, tries: SWEEP_TRIES },
        });
        print(
          output === "json"
            ? toJson(document, 2)
            : toJson({ event: "summary", ...document }),
        );
      }
      return result.maxPayload > 0 ? EXIT_OK : EXIT_FAILURE;
    }
    if (output === "text" && !quiet) {
      const pacing = run.window !== undefined
        ? `window ${run.window}`
        : `every ${Number(run.intervalMs!.toFixed(3))} ms`;
      print(
        `${mode.toUpperCase()} ${from}: ${run.size}-byte probes, ${pacing}${
          flows > 1 ? `, ${flows} flows` : ""
        }`,
      );
    }
    live.start = performance.now();
    if (mode === "load") {
      let before = { at: live.start, received: 0 };
      ticker = setInterval(() => {
        const now = { at: performance.now(), received: live.received };
        status.show(formatStatus({
          sent: live.sent,
          received: live.received,
          elapsedMs: now.at - live.start,
          echoPps: (now.received - before.received) / (now.at - before.at) *
            1000,
          lastRttMs: live.lastRttMs,
        }));
        before = now;
      }, STATUS_INTERVAL_MS);
    }
    const result = await runProbes({
      target,
      bind: checked.bind,
      ...run,
      signal: controller.signal,
      onEvent,
      onSend: () => live.sent++,
    });
    if (ticker !== undefined) clearInterval(ticker);
    ticker = undefined;
    status.clear();
    const settings = run.window !== undefined
      ? { window: run.window, timeout_ms: run.timeoutMs }
      : { interval_ms: run.intervalMs, timeout_ms: run.timeoutMs };
    if (output === "text") {
      if (!quiet) print("");
      for (const line of formatRunSummary(result, mode)) print(line);
    } else {
      const document = runJson(result, mode, { settings });
      print(
        output === "json"
          ? toJson(document, 2)
          : toJson({ event: "summary", ...document }),
      );
    }
    const loss = lossPercent(result);
    return Number.isFinite(loss) && loss <= checked.maxLoss
      ? EXIT_OK
      : EXIT_FAILURE;
  } catch (error) {
    status.clear();
    printError(error);
    return error instanceof RangeError ? EXIT_USAGE : EXIT_FAILURE;
  } finally {
    if (ticker !== undefined) clearInterval(ticker);
    Deno.removeSignalListener("SIGINT", onSignal);
  }
}
