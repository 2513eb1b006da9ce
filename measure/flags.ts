/**
 * The flags of the measurement modes and the ranges of their values: light
 * enough for `client.ts` to pick a mode without loading the measurement
 * modules, which it imports only when one is asked for.
 *
 * @module
 */

import type { NumberRange } from "../cli/flags.ts";

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

/** The values each numeric measurement flag accepts. */
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
  "max-loss": { min: 0, max: 100, fraction: true },
} as const satisfies Record<string, NumberRange>;

/** The `--help` lines of the measurement flags. */
export const MEASURE_HELP =
  `Measurement modes (these flags start one; -4, -6 and --bind refine it):
  -c, --count N        ping: send N probes, 1 to 1000000000
                       (default: until Ctrl-C or -d)
  -i, --interval MS    ping: send probe n at start + n x MS, 0 to 3600000
                       (default 1000)
  -s, --size BYTES     probe payload, 20 to the family limit (default 64)
  -d, --duration S     stop sending after S seconds, 0.001 to 86400
      --wait MS        after the last send, wait this long for replies,
                       0 to 3600000 (default 2 x --timeout)
  -w, --window N       load: keep N probes in flight per flow, 1 to 1000000
                       (closed loop)
      --rate PPS       load: send PPS probes a second per flow, 0.001 to
                       10000000 (open loop)
      --flows N        load: run N flows from distinct source ports, 1 to 1024
      --sweep          find the largest payload echoed intact
  -4, -6               use only IPv4 or only IPv6
      --bind ADDR[:PORT]  send from this local address
      --ndjson         one JSON event per reply, the summary last
      --max-loss PCT   exit 1 when more than PCT% of probes lack an intact
                       reply, 0 to 100 (default 0)
  Load without -c or -d runs 10 s; -t MS marks slower replies late and,
  with -w, frees their slot.`;

const LOAD_FLAGS = ["window", "rate", "flows"] as const;
const PING_FLAGS = ["count", "interval", "size", "duration", "wait"] as const;
// -4, -6 and --bind refine a mode (and -4/-6 the single echo) but start none.
const OTHER_FLAGS = ["ndjson", "max-loss"] as const;

/** The mode names: a ping, a load run or a payload sweep. */
export type MeasureMode = "ping" | "load" | "sweep";

/** The flag values {@linkcode measurementMode} reads. */
export type ModeValues = {
  [K in keyof typeof MEASURE_FLAGS]?: string | boolean;
};

/**
 * The mode the flags ask for: `sweep` with `--sweep`, `load` with `-w`,
 * `--rate` or `--flows`, `ping` with any other measurement flag; `undefined`
 * when none is given (the single echo).
 */
export function measurementMode(values: ModeValues): MeasureMode | undefined {
  if (values.sweep) return "sweep";
  if (LOAD_FLAGS.some((flag) => values[flag] !== undefined)) return "load";
  if (
    [...PING_FLAGS, ...OTHER_FLAGS].some((flag) =>
      values[flag] !== undefined && values[flag] !== false
    )
  ) return "ping";
  return undefined;
}
