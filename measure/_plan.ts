/**
 * The flags of a measurement, checked before any datagram leaves: the
 * numeric ranges, the combinations refused and the {@linkcode Plan} a run
 * is made from. Every problem is a UsageError (exit 2).
 *
 * @module
 */

import type { AddressFamily, HostPort } from "../net/address.ts";
import {
  type NumberRange,
  parseBindFlag,
  parseChoice,
  parseNumberFlag,
  UsageError,
} from "../cli/flags.ts";
import type { Output } from "../cli/output.ts";
import { DEFAULT_PROBE_SIZE, type FlowRunOptions } from "./modes.ts";
import type { Mode } from "./_common.ts";
import { IO_MODES, type IoMode } from "../kernel/choice.ts";
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
  /** `--io`: `auto` (default), `socket` or `batch`. */
  io?: string;
  /** `--stamp`: send STAMP test packets (RFC 8762). */
  stamp?: boolean;
  /** `--reflector-stateful`: the STAMP reflector keeps its own sequence numbers. */
  "reflector-stateful"?: boolean;
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

/**
 * Turns an error of the checks made before anything is sent (a family that
 * does not match, the unspecified address, a probe too large for the
 * family, a flow setup `runProbes` refuses) into the usage error it is;
 * others, such as a name that does not resolve, stay runtime failures.
 */
export function asUsage(error: unknown): unknown {
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
export interface Plan {
  family?: AddressFamily;
  bind?: HostPort;
  run: Omit<FlowRunOptions, "target">;
  maxLoss: number;
  output: "text" | "json" | "ndjson";
  io: IoMode;
}

/** Checks the flags of a measurement; throws a UsageError. */
export function plan(
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
  for (const flag of ["stamp-tlv", "ssid", "reflector-stateful"] as const) {
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
  const io = parseChoice(values.io ?? "auto", "--io", IO_MODES);
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
    io,
  };
}
