/**
 * The one flag layer of both scripts: `node:util`'s strict `parseArgs`, one
 * strict number parser with a range per flag, and {@linkcode UsageError},
 * the error that means exit status 2. Every message has one form:
 * `Cannot use --port "0": expected a whole number from 1 to 65535`.
 *
 * @module
 */

import denoConfig from "../deno.json" with { type: "json" };
import { parseArgs, type ParseArgsConfig } from "node:util";
import {
  familyOf,
  type HostPort,
  parseHost,
  parsePort,
  unmapped,
} from "../net/address.ts";

/** The version of udp-echo, as published in `deno.json`. */
export const VERSION: string = denoConfig.version;

/** Exit status of a run that did what was asked. */
export const EXIT_OK = 0;
/** Exit status of a run that failed: no reply, a wrong reply, a runtime error. */
export const EXIT_FAILURE = 1;
/** Exit status of a run refused before any work: a bad flag or value. */
export const EXIT_USAGE = 2;

/**
 * A command line the scripts refuse before doing any work: a bad flag, value
 * or argument. It maps to exit status 2 by its class, never by its text.
 */
export class UsageError extends Error {
  /** Creates the error; `message` follows "Cannot X: reason". */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}

/** The values a numeric flag accepts. */
export interface NumberRange {
  /** The smallest value accepted. */
  min: number;
  /** The largest value accepted. */
  max: number;
  /** Whether a fraction (`0.5`) is accepted; whole numbers only when unset. */
  fraction?: boolean;
  /** The unit, for the message: "milliseconds", "seconds", "bytes" ... */
  unit?: string;
}

const WHOLE = /^\d+$/;
const DECIMAL = /^\d+(?:\.\d+)?$/;

/** Describes a range the way every message does: "a whole number from 1 to 65535". */
export function describeRange(range: NumberRange): string {
  const kind = range.fraction ? "a number" : "a whole number";
  const unit = range.unit === undefined ? "" : ` of ${range.unit}`;
  return `${kind}${unit} from ${range.min} to ${range.max}`;
}

/**
 * Parses the value of `flag` (its long name, `--port`) as a decimal number
 * within `range`: digits only, with a fraction only where the range allows
 * one; no sign, hex, exponent or whitespace.
 *
 * Throws a {@linkcode UsageError} when `text` is not such a number.
 *
 * @example
 * ```ts
 * import { parseNumber } from "./flags.ts";
 * import { equal, throws } from "node:assert/strict";
 *
 * equal(parseNumber("7", "--port", { min: 1, max: 65535 }), 7);
 * throws(() => parseNumber("0x10", "--count", { min: 1, max: 9 }), {
 *   message: 'Cannot use --count "0x10": expected a whole number from 1 to 9',
 * });
 * ```
 */
export function parseNumber(
  text: string,
  flag: string,
  range: NumberRange,
): number {
  const value = Number(text);
  if (
    !(range.fraction ? DECIMAL : WHOLE).test(text) || value < range.min ||
    value > range.max
  ) {
    throw new UsageError(
      `Cannot use ${flag} "${text}": expected ${describeRange(range)}`,
    );
  }
  return value;
}

/**
 * The number a flag was given, by {@linkcode parseNumber} against its range
 * in `ranges`, or `undefined` when the flag is absent. Throws a
 * {@linkcode UsageError} as `parseNumber` does.
 *
 * @example
 * ```ts
 * import { parseNumberFlag } from "./flags.ts";
 * import { equal } from "node:assert/strict";
 *
 * const ranges = { burst: { min: 1, max: 100 } };
 * equal(parseNumberFlag({ burst: "5" }, "burst", ranges), 5);
 * equal(parseNumberFlag({}, "burst", ranges), undefined);
 * ```
 */
export function parseNumberFlag<K extends string>(
  values: Partial<Record<K, unknown>>,
  flag: K,
  ranges: Readonly<Record<K, NumberRange>>,
): number | undefined {
  const text = values[flag];
  return typeof text === "string"
    ? parseNumber(text, `--${flag}`, ranges[flag])
    : undefined;
}

/** Lists choices the way every message does: "auto, socket or batch". */
function listOf(choices: readonly string[]): string {
  return choices.length < 2
    ? choices.join("")
    : `${choices.slice(0, -1).join(", ")} or ${choices.at(-1)}`;
}

/**
 * Parses the value of `flag` as one of `choices`; throws a
 * {@linkcode UsageError} for any other text.
 */
export function parseChoice<T extends string>(
  text: string,
  flag: string,
  choices: readonly T[],
): T {
  if (!(choices as readonly string[]).includes(text)) {
    throw new UsageError(
      `Cannot use ${flag} "${text}": expected ${listOf(choices)}`,
    );
  }
  return text as T;
}

/**
 * Parses the host given to `flag`, as `parseHost` does: a name, an IPv4 or
 * an IPv6 literal, brackets removed. Throws a {@linkcode UsageError} for
 * anything else.
 */
export function parseHostFlag(text: string, flag: string): string {
  try {
    return parseHost(text);
  } catch (error) {
    throw new UsageError(
      `Cannot use ${flag} "${text}": expected a host name, an IPv4 or an IPv6 address`,
      { cause: error },
    );
  }
}

/**
 * Parses a local address to bind: `ADDR`, `ADDR:PORT`, `[V6ADDR]` or
 * `[V6ADDR]:PORT`, the port 0 when none is given. Throws a
 * {@linkcode UsageError} for anything else.
 */
export function parseBindFlag(text: string, flag: string): HostPort {
  try {
    // A bare IPv6 address has no port: only brackets set one apart.
    const match = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ??
      /^([^:]+):(\d+)$/.exec(text);
    if (match === null) return { hostname: unmapped(parseHost(text)), port: 0 };
    return {
      hostname: unmapped(parseHost(
        match[1]!.includes(":") ? `[${match[1]}]` : match[1]!,
      )),
      port: match[2] === undefined ? 0 : parsePort(match[2]),
    };
  } catch (error) {
    throw new UsageError(
      `Cannot use ${flag} "${text}": expected ADDR, ADDR:PORT, [V6ADDR] or [V6ADDR]:PORT`,
      { cause: error },
    );
  }
}

/** The address a `--metrics PORT` without a host listens on: loopback only. */
export const METRICS_DEFAULT_HOST = "127.0.0.1";

/**
 * Parses the address of an HTTP endpoint to listen on: `PORT` (on
 * {@linkcode METRICS_DEFAULT_HOST}), `HOST:PORT` or `[V6ADDR]:PORT`, the
 * port 0 to 65535 (0 picks a free one). Throws a {@linkcode UsageError}
 * for anything else.
 */
export function parseListenFlag(text: string, flag: string): HostPort {
  try {
    if (/^\d+$/.test(text)) {
      return { hostname: METRICS_DEFAULT_HOST, port: parsePort(text) };
    }
    const match = /^(\[[^\]]+\]|[^:\[\]]+):(\d+)$/.exec(text);
    if (match === null) throw new RangeError("no port");
    return { hostname: parseHost(match[1]!), port: parsePort(match[2]!) };
  } catch (error) {
    throw new UsageError(
      `Cannot use ${flag} "${text}": expected PORT, HOST:PORT or [V6ADDR]:PORT with a port from 0 to 65535`,
      { cause: error },
    );
  }
}

/** The flags of a script, in `node:util` parseArgs form. */
export type FlagSpecs = NonNullable<ParseArgsConfig["options"]>;

type ParsedValues<T extends FlagSpecs> = ReturnType<
  typeof parseArgs<{ options: T }>
>["values"];

/**
 * Rewrites a negative number given as a flag's value (`-c -1`,
 * `--rate -5`) to `--count=-1`, so that parseArgs reads it as the value,
 * which the number parser then refuses with its range, instead of as a flag.
 */
function joinNegativeValues(args: string[], options: FlagSpecs): string[] {
  const longOf = new Map<string, string>();
  for (const [name, spec] of Object.entries(options)) {
    if (spec.short !== undefined) longOf.set(spec.short, name);
  }
  const takesValue = (name: string | undefined) =>
    name !== undefined && options[name]?.type === "string";
  const result: string[] = [];
  for (let k = 0; k < args.length; k++) {
    const arg = args[k]!;
    const next = args[k + 1];
    if (arg === "--") {
      result.push(...args.slice(k));
      break;
    }
    // A token that is itself a flag of the script (`-6`) stays a flag.
    const negative = next !== undefined && /^-\d/.test(next) &&
      !longOf.has(next.slice(1));
    if (negative && /^--[^=]+$/.test(arg) && takesValue(arg.slice(2))) {
      result.push(`${arg}=${next}`);
      k++;
    } else if (
      negative && /^-[^-]+$/.test(arg) && takesValue(longOf.get(arg.at(-1)!)) &&
      ![...arg.slice(1, -1)].some((short) => takesValue(longOf.get(short)))
    ) {
      // A cluster such as -qc: the last short flag takes the value.
      if (arg.length > 2) result.push(arg.slice(0, -1));
      result.push(`--${longOf.get(arg.at(-1)!)}=${next}`);
      k++;
    } else {
      result.push(arg);
    }
  }
  return result;
}

/** The long form of the flag a parseArgs message names (`'-p, --port'`). */
function flagNamed(message: string): string {
  return /--[\w-]+/.exec(message)?.[0] ?? /'(-[^',]*)'/.exec(message)?.[1] ??
    "a flag";
}

/**
 * Parses command-line flags with `node:util`'s strict `parseArgs`; a
 * negative number after a flag that takes a value is read as its value.
 *
 * Throws a {@linkcode UsageError} for an unknown flag, a missing value or a
 * value given to a flag that takes none. Values are left as text: check them
 * with {@linkcode parseNumber} and its kin.
 */
export function parseFlags<T extends FlagSpecs>(
  args: string[],
  options: T,
): { values: ParsedValues<T>; positionals: string[] } {
  try {
    const parsed = parseArgs({
      args: joinNegativeValues(args, options),
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values: parsed.values, positionals: parsed.positionals };
  } catch (error) {
    // --help and --version answer whatever else the command line holds.
    for (const name of ["help", "version"]) {
      const short = options[name]?.short;
      if (
        options[name]?.type === "boolean" &&
        args.some((arg) => arg === `--${name}` || arg === `-${short}`)
      ) {
        return { values: { [name]: true } as ParsedValues<T>, positionals: [] };
      }
    }
    const code = (error as { code?: string }).code;
    const message = (error as Error).message;
    const flag = flagNamed(message);
    switch (code) {
      case "ERR_PARSE_ARGS_UNKNOWN_OPTION": {
        // `-q=1`: parseArgs reads "=" and "1" as short flags of a cluster.
        const short = /^-(\w)=/.exec(
          args.find((arg) => /^-\w=/.test(arg)) ?? "",
        );
        if (short !== null && flag === "-=") {
          throw new UsageError(`Cannot use -${short[1]}: it takes no value`, {
            cause: error,
          });
        }
        throw new UsageError(
          `Cannot use ${flag}: unknown flag (see --help)`,
          { cause: error },
        );
      }
      case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
        throw new UsageError(
          message.includes("argument missing")
            ? `Cannot use ${flag}: it needs a value`
            : message.includes("ambiguous")
            ? `Cannot use ${flag}: it needs a value (write ${flag}=VALUE for one that starts with "-")`
            : `Cannot use ${flag}: it takes no value`,
          { cause: error },
        );
      default:
        throw new UsageError(`Cannot parse flags: ${message}`, {
          cause: error,
        });
    }
  }
}

/**
 * Throws a {@linkcode UsageError} when an argument is given to a script that
 * takes none.
 */
export function refuseArguments(positionals: string[]): void {
  if (positionals.length > 0) {
    throw new UsageError(
      `Cannot use "${positionals[0]}": unexpected argument (see --help)`,
    );
  }
}

/** The client flags {@linkcode refuseIdleFlags} and {@linkcode checkFamilies} read. */
export interface ClientFlagValues {
  /** `-r`. */
  retries?: string;
  /** `--targets-file`, `--targets-dns`, `--refresh` and `--node`: the monitor's. */
  "targets-file"?: string;
  /** See `targets-file`. */
  "targets-dns"?: string;
  /** See `targets-file`. */
  refresh?: string;
  /** See `targets-file`. */
  node?: string;
  /** `-q`. */
  quiet?: boolean;
  /** `--json`. */
  json?: boolean;
  /** `--ndjson`. */
  ndjson?: boolean;
  /** `--max-loss`. */
  "max-loss"?: string;
  /** `-4`. */
  ipv4?: boolean;
  /** `-6`. */
  ipv6?: boolean;
  /** `--bind`. */
  bind?: string;
  /** `--io`. */
  io?: string;
  /** `--probe-allow`. */
  "probe-allow"?: string[];
}

/**
 * Refuses flags that would be accepted and do nothing: `-r` in a
 * measurement (probes are never resent), `-q` with JSON output (which has no
 * lines to leave out), `--max-loss` in a sweep (whose status is whether any
 * size came back), `--bind` without a measurement, `--io` outside ping
 * and load, and `--probe-allow` and the monitor's target and node flags
 * without `--metrics`. Throws a UsageError.
 */
export function refuseIdleFlags(
  flags: ClientFlagValues,
  mode: string | undefined,
): void {
  if (mode !== undefined && flags.retries !== undefined) {
    throw new UsageError(
      `Cannot use --retries in ${mode} mode: probes are never resent (see --wait and --timeout)`,
    );
  }
  const json = flags.json ? "--json" : flags.ndjson ? "--ndjson" : undefined;
  if (flags.quiet && json !== undefined) {
    throw new UsageError(
      `Cannot combine --quiet and ${json}: JSON output has no lines to leave out`,
    );
  }
  if (mode === undefined && flags.bind !== undefined) {
    throw new UsageError(
      "Cannot use --bind without a measurement mode (-c, -w, --sweep ...)",
    );
  }
  if (flags.io !== undefined && (mode === undefined || mode === "monitor")) {
    throw new UsageError(
      `Cannot use --io ${
        mode === undefined ? "without a measurement mode" : "with --metrics"
      }: only ping and load choose their I/O`,
    );
  }
  if (flags["probe-allow"] !== undefined && mode !== "monitor") {
    throw new UsageError(
      "Cannot use --probe-allow without --metrics: only the monitor serves /probe",
    );
  }
  for (const flag of ["targets-file", "targets-dns", "refresh", "node"]) {
    if (flags[flag as "node"] !== undefined && mode !== "monitor") {
      throw new UsageError(
        `Cannot use --${flag} without --metrics: only the monitor follows a fleet`,
      );
    }
  }
  if (mode === "sweep" && flags["max-loss"] !== undefined) {
    throw new UsageError(
      "Cannot use --max-loss with --sweep: a sweep succeeds when any size comes back intact",
    );
  }
}

/**
 * Refuses, in every mode, an address literal of another family than `-4`
 * or `-6` asks for, and a `--bind` literal of another family than the host
 * literal. Names are checked once resolved. Throws a UsageError.
 */
export function checkFamilies(
  hostname: string,
  flags: ClientFlagValues,
): void {
  const wanted = flags.ipv4 ? "IPv4" : flags.ipv6 ? "IPv6" : undefined;
  const bind = flags.bind === undefined
    ? undefined
    : parseBindFlag(flags.bind, "--bind").hostname;
  // An IPv4-mapped literal names an IPv4 endpoint (net/address.ts unmaps it).
  const host = familyOf(unmapped(hostname));
  for (const [flag, address] of [["--host", hostname], ["--bind", bind]]) {
    const family = address === undefined
      ? undefined
      : familyOf(unmapped(address));
    if (wanted !== undefined && family !== undefined && family !== wanted) {
      throw new UsageError(
        `Cannot use ${address}: it is an ${family} address, not ${wanted} (${flag} and ${
          wanted === "IPv4" ? "-4" : "-6"
        })`,
      );
    }
  }
  const from = bind === undefined ? undefined : familyOf(bind);
  if (from !== undefined && host !== undefined && from !== host) {
    throw new UsageError(
      `Cannot send from ${bind} to ${hostname}: one is ${from}, the other ${host}`,
    );
  }
}
