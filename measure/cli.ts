/**
 * The measurement modes of `client.ts` on the command line: checking their
 * flags against the ranges of `flags.ts`, and running one with text,
 * `--json` or `--ndjson` output and the `--max-loss` exit status.
 * `client.ts` adds `MEASURE_FLAGS` (from `flags.ts`) to its own flags and
 * imports this module only when `measurementMode` finds a mode.
 *
 * @module
 */

import {
  checkProbeSize,
  DEFAULT_PROBE_SIZE,
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
  JSON_SCHEMA,
  lossPercent,
  type Mode,
  runJson,
  sweepJson,
  toJson,
} from "./report.ts";
import {
  type AddressFamily,
  checkUnstableNet,
  errorMessage,
  familyOf,
  formatAddress,
  type HostPort,
  resolveAddress,
  type ResolvedAddress,
  resolveTarget,
} from "../net/address.ts";
import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  type NumberRange,
  parseBindFlag,
  parseNumberFlag,
  UsageError,
} from "../cli/flags.ts";
import { createStatusLine, type Output } from "../cli/output.ts";
import type { StampRun } from "./stamp_report.ts";

/** The values each numeric measurement flag accepts; `client.ts` declares the flags. */
export const MEASURE_RANGES = {
  count: { min: 1, max: 1_000_000_000 },
  interval: { min: 0, max: 3_600_000, fraction: true, unit: "milliseconds" },
  // The family's limit and the probe header are checked once the target is
  // known; this is the largest UDP payload of any family.
  size: { min: 20, max: 65_527, unit: "bytes" },
  duration: { min: 0.001, max: 86_400, fraction: true, unit: "seconds" },
  wait: { min: 0, max: 3_600_000, fraction: true, unit: "milliseconds" },
  window: { min: 1, max: 1_000_000 },
  rate: {
    min: 0.001,
    max: 10_000_000,
    fraction: true,
    unit: "probes per second",
  },
  flows: { min: 1, max: 1024 },
  ssid: { min: 0, max: 65535 },
  "max-loss": { min: 0, max: 100, fraction: true },
} as const satisfies Record<string, NumberRange>;

/** The flag values {@linkcode runMeasurement} reads, as parseArgs gives them. */
export interface MeasureValues {
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
  /** `--stamp`: send STAMP test packets (RFC 8762). */
  stamp?: boolean;
  /** `--stamp-tlv`: TLVs to ask for, comma-separated. */
  "stamp-tlv"?: string;
  /** `--ssid`. */
  ssid?: string;
}

/** What {@linkcode runMeasurement} takes from the client's own flags. */
export interface MeasureOptions {
  /** `-H` and `-p`: the server to measure. */
  target: HostPort;
  /** `-t`: the reply timeout in ms. */
  timeoutMs: number;
  /** `-q`: only the summary. */
  quiet: boolean;
  /** `--json`: one JSON document. */
  json: boolean;
  /** Where every line goes. */
  output: Output;
}

const LOAD_DEFAULT_MS = 10_000;
const STATUS_INTERVAL_MS = 250;
/** The signals that stop a measurement: the first gently, the second at once. */
const STOP_SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM"];

/**
 * Turns an error of the checks made before anything is sent (a family that
 * does not match, the unspecified address, a probe too large for the
 * family, a flow setup the engine refuses) into the usage error it is;
 * others, such as a name that does not resolve, stay runtime failures.
 */
function asUsage(error: unknown): unknown {
  return error instanceof RangeError || error instanceof TypeError
    ? new UsageError(error.message, { cause: error })
    : error;
}

function conflict(
  values: MeasureValues & { json: boolean },
  groups: (keyof MeasureValues | "json")[][],
): void {
  for (const group of groups) {
    const given = group.filter((flag) =>
      values[flag] !== undefined && values[flag] !== false
    );
    if (given.length > 1) {
      throw new UsageError(
        `Cannot combine ${given.map((flag) => `--${flag}`).join(" and ")}`,
      );
    }
  }
}

/** Everything a measurement needs, checked before any datagram leaves. */
interface Plan {
  family?: AddressFamily;
  bind?: HostPort;
  run: Omit<RunOptions, "target">;
  maxLoss: number;
  output: "text" | "json" | "ndjson";
}

/** Checks the flags of a measurement; throws a UsageError. */
function plan(
  mode: Mode,
  values: MeasureValues,
  options: MeasureOptions,
): Plan {
  conflict({ ...values, json: options.json }, [
    ["sweep", "window", "rate", "interval"],
    ["sweep", "count"],
    ["sweep", "duration"],
    ["sweep", "size"],
    ["sweep", "flows"],
    ["sweep", "stamp"],
    ["json", "ndjson"],
  ]);
  for (const flag of ["stamp-tlv", "ssid"] as const) {
    if (values[flag] !== undefined && !values.stamp) {
      throw new UsageError(`Cannot use --${flag} without --stamp`);
    }
  }
  const rate = parseNumberFlag(values, "rate", MEASURE_RANGES);
  const count = parseNumberFlag(values, "count", MEASURE_RANGES);
  const duration = parseNumberFlag(values, "duration", MEASURE_RANGES);
  let window = parseNumberFlag(values, "window", MEASURE_RANGES);
  let intervalMs = rate !== undefined
    ? 1000 / rate
    : parseNumberFlag(values, "interval", MEASURE_RANGES);
  // Load without a pacing flag keeps one probe in flight per flow.
  if (mode === "load" && window === undefined && intervalMs === undefined) {
    window = 1;
  }
  if (window === undefined) intervalMs ??= 1000;
  const bind = values.bind === undefined
    ? undefined
    : parseBindFlag(values.bind, "--bind");
  const flows = parseNumberFlag(values, "flows", MEASURE_RANGES);
  if ((flows ?? 1) > 1 && (bind?.port ?? 0) !== 0) {
    throw new UsageError(
      `Cannot use --bind "${values.bind}" with --flows ${flows}: each flow needs its own port, so bind port 0`,
    );
  }
  return {
    family: values.ipv4 ? "IPv4" : values.ipv6 ? "IPv6" : undefined,
    bind,
    run: {
      count,
      durationMs: duration === undefined
        ? (mode === "load" && count === undefined ? LOAD_DEFAULT_MS : undefined)
        : duration * 1000,
      size: parseNumberFlag(values, "size", MEASURE_RANGES) ??
        DEFAULT_PROBE_SIZE,
      intervalMs,
      window,
      flows,
      timeoutMs: options.timeoutMs,
      waitMs: parseNumberFlag(values, "wait", MEASURE_RANGES),
    },
    maxLoss: parseNumberFlag(values, "max-loss", MEASURE_RANGES) ?? 0,
    output: options.json ? "json" : values.ndjson ? "ndjson" : "text",
  };
}

/**
 * The `--json` document (or `--ndjson` line) of a run that failed before it
 * had a result, such as a name that does not resolve: the mode, the target
 * as given and the `error` line's message.
 */
export function failureJson(
  mode: Mode,
  target: HostPort,
  error: unknown,
): Record<string, unknown> {
  return {
    schema: JSON_SCHEMA,
    mode,
    target: {
      address: formatAddress(target),
      hostname: target.hostname,
      port: target.port,
      family: familyOf(target.hostname) ?? null,
    },
    error: errorMessage(error),
  };
}

/**
 * Refuses a local address of another family than the target (a UsageError)
 * and resolves a name given to `--bind` in the target's family.
 */
async function checkBind(
  bind: HostPort | undefined,
  target: ResolvedAddress,
): Promise<HostPort | undefined> {
  if (bind === undefined) return undefined;
  const family = familyOf(bind.hostname);
  if (family !== undefined && family !== target.family) {
    throw new UsageError(
      `Cannot send from ${bind.hostname} to ${target.hostname}: one is ${family}, the other ${target.family}`,
    );
  }
  if (family !== undefined) return bind;
  const { hostname, port } = await resolveAddress(bind, {
    family: target.family,
  });
  return { hostname, port };
}

/**
 * Runs the measurement the flags ask for and prints it; returns the exit
 * status: 0 when the share of probes without an intact reply stays within
 * `--max-loss` and an open loop kept up with its rate (a sweep: when any
 * size came back intact), 1 otherwise, 2 for a usage error.
 *
 * The first SIGINT or SIGTERM stops sending and waits for the replies still
 * due (at most the timeout); a second ends the run at once, reporting the
 * probes still within their timeout as in flight. Either way the summary
 * (or JSON document) is printed and the status follows the results.
 */
export async function runMeasurement(
  mode: Mode,
  values: MeasureValues,
  options: MeasureOptions,
): Promise<number> {
  const { output: out, quiet } = options;
  const format = options.json ? "json" : values.ndjson ? "ndjson" : "text";
  // Usage errors print nothing on stdout; other failures print a document.
  const fail = (error: unknown): number => {
    const refused = asUsage(error);
    out.error(refused);
    if (refused instanceof UsageError) return EXIT_USAGE;
    const document = failureJson(mode, options.target, refused);
    if (format === "json") out.line(toJson(document, 2));
    if (format === "ndjson") out.line(toJson({ event: "error", ...document }));
    return EXIT_FAILURE;
  };
  let checked: Plan;
  let target;
  let stamp: StampRun | undefined;
  try {
    checked = plan(mode, values, options);
    if (values.stamp) {
      const { stampRunOf } = await import("./stamp_report.ts");
      stamp = stampRunOf(values, checked.run.size!);
    }
    target = await resolveTarget(options.target, { family: checked.family })
      .catch((error) => {
        throw asUsage(error);
      });
    checked.bind = await checkBind(checked.bind, target);
    try {
      if (mode !== "sweep") checkProbeSize(checked.run.size!, target);
      checkUnstableNet();
    } catch (error) {
      throw asUsage(error);
    }
  } catch (error) {
    return fail(error);
  }
  const from = formatAddress(target);
  const { output, run } = checked;
  const flows = run.flows ?? 1;
  const status = createStatusLine(
    out,
    mode === "load" && output === "text" && !quiet && out.stderrIsTerminal,
  );
  const print = (line: string) => {
    out.line(line);
    // Nobody reads the rest: stop probing.
    if (out.closed) controller.abort();
  };
  const live = { sent: 0, received: 0, lastRttMs: NaN, start: 0 };
  let sendFailed = false;
  const onEvent = (event: ProbeEvent) => {
    // Once: the summary counts them all (send_errors), the run goes on.
    if (event.type === "send_error" && !sendFailed) {
      sendFailed = true;
      out.error(new Error(`Cannot send to ${from}: ${event.reason}`));
    }
    if (output === "ndjson") print(toJson(eventJson(event)));
    else if (output === "text" && !quiet) {
      if (event.type === "reply" && mode === "ping") {
        const delays = event.check === "intact" && !event.duplicate
          ? stamp?.describe(event.flow, event.seq) ?? ""
          : "";
        print(formatReply(event, from, flows) + delays);
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
  // `stop` ends the sending, `controller` the whole run.
  const stop = new AbortController();
  const controller = new AbortController();
  const onSignal = () => {
    // A sweep has one probe out at a time: nothing to wait for.
    if (stop.signal.aborted || mode === "sweep") controller.abort();
    stop.abort();
    status.clear();
  };
  for (const signal of STOP_SIGNALS) Deno.addSignalListener(signal, onSignal);
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
      return result.maxPayload > 0 && !out.closed ? EXIT_OK : EXIT_FAILURE;
    }
    if (output === "text" && !quiet) {
      const pacing = run.window !== undefined
        ? `window ${run.window}`
        : run.intervalMs === 0
        ? "as fast as possible"
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
        if (stop.signal.aborted) return;
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
      stop: stop.signal,
      signal: controller.signal,
      onEvent,
      onSend: () => live.sent++,
      format: stamp?.format,
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
      if (stamp) {
        const { formatStampSummary } = await import("./stamp_report.ts");
        for (
          const line of formatStampSummary(
            stamp.summary(result, options.target),
          )
        ) print(line);
      }
    } else {
      const document = runJson(result, mode, { settings });
      if (stamp) {
        const { stampJson } = await import("./stamp_report.ts");
        Object.assign(
          document,
          stampJson(stamp.summary(result, options.target), stamp.options),
        );
      }
      print(
        output === "json"
          ? toJson(document, 2)
          : toJson({ event: "summary", ...document }),
      );
    }
    const loss = lossPercent(result);
    return Number.isFinite(loss) && loss <= checked.maxLoss &&
        result.schedule?.short !== true && !out.closed
      ? EXIT_OK
      : EXIT_FAILURE;
  } catch (error) {
    status.clear();
    return fail(error);
  } finally {
    if (ticker !== undefined) clearInterval(ticker);
    for (const signal of STOP_SIGNALS) {
      Deno.removeSignalListener(signal, onSignal);
    }
  }
}
