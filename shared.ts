/**
 * Address defaults, payload limits and the small helpers that the echo
 * server and client share: validating ports and hosts, formatting addresses,
 * previewing payloads and turning errors into one-line messages.
 *
 * @example Check a payload against the IPv4 limit
 * ```ts
 * import { checkPayloadSize, MAX_IPV4_PAYLOAD } from "./shared.ts";
 * import { throws } from "node:assert/strict";
 *
 * checkPayloadSize(MAX_IPV4_PAYLOAD, "IPv4");
 * throws(() => checkPayloadSize(MAX_IPV4_PAYLOAD + 1, "IPv4"), RangeError);
 * ```
 *
 * @module
 */

import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { parseArgs, type ParseArgsConfig } from "node:util";
import denoConfig from "./deno.json" with { type: "json" };

/** The version of udp-echo, as published in `deno.json`. */
export const VERSION: string = denoConfig.version;

/** The host both scripts use when none is given, as in the tutorials. */
export const DEFAULT_HOST = "localhost";

/** The port both scripts use when none is given, as in the tutorials. */
export const DEFAULT_PORT = 10000;

/** The largest UDP payload over IPv4: 65,535 less the 20-byte IP and 8-byte UDP headers. */
export const MAX_IPV4_PAYLOAD = 65_507;

/** The largest UDP payload over IPv6: 65,535 less the 8-byte UDP header. */
export const MAX_IPV6_PAYLOAD = 65_527;

/**
 * The size of every receive buffer. Deno's default (65,507) silently cuts
 * IPv6 datagrams, so receive into a buffer larger than any UDP payload.
 */
export const RECEIVE_BUFFER_SIZE = 65_536;

/** Exit status of a run that did what was asked. */
export const EXIT_OK = 0;
/** Exit status of a run that failed: no reply, a wrong reply, a runtime error. */
export const EXIT_FAILURE = 1;
/** Exit status of a run refused before any work: a bad flag or value. */
export const EXIT_USAGE = 2;

/** An IP address family. */
export type AddressFamily = "IPv4" | "IPv6";

/** A host and port, as Deno's `NetAddr` carries them. */
export interface HostPort {
  /** A host name or an IP address literal without brackets. */
  hostname: string;
  /** A port number from 0 to 65535. */
  port: number;
}

/** A resolved address: an IP literal, its port and its family. */
export interface ResolvedAddress extends HostPort {
  /** The address family of `hostname`. */
  family: AddressFamily;
}

/** Returns the largest UDP payload, in bytes, for an address family. */
export function maxPayload(family: AddressFamily): number {
  return family === "IPv6" ? MAX_IPV6_PAYLOAD : MAX_IPV4_PAYLOAD;
}

/**
 * Throws a `RangeError` when a payload of `size` bytes cannot fit in one UDP
 * datagram of the given family.
 *
 * @example
 * ```ts
 * import { checkPayloadSize } from "./shared.ts";
 * import { throws } from "node:assert/strict";
 *
 * throws(() => checkPayloadSize(65_508, "IPv4"), {
 *   message: "Cannot send 65508 bytes: an IPv4 UDP payload holds at most 65507",
 * });
 * ```
 */
export function checkPayloadSize(size: number, family: AddressFamily): void {
  const limit = maxPayload(family);
  if (size > limit) {
    throw new RangeError(
      `Cannot send ${size} bytes: an ${family} UDP payload holds at most ${limit}`,
    );
  }
}

/**
 * Parses a port number, an integer from 0 to 65535 (0 asks for a free one).
 *
 * @example
 * ```ts
 * import { parsePort } from "./shared.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(parsePort("10000"), 10000);
 * ```
 */
export function parsePort(text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    throw new RangeError(
      `Cannot use port "${text}": expected an integer from 0 to 65535`,
    );
  }
  return Number(text);
}

/** Returns the family of an IP literal, or `undefined` for a host name. */
export function familyOf(hostname: string): AddressFamily | undefined {
  switch (isIP(hostname)) {
    case 4:
      return "IPv4";
    case 6:
      return "IPv6";
    default:
      return undefined;
  }
}

const HOST_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/**
 * Validates a host given by a user and returns it in the form Deno expects:
 * a name, an IPv4 literal, or an IPv6 literal with any brackets removed.
 *
 * @example
 * ```ts
 * import { parseHost } from "./shared.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(parseHost("[::1]"), "::1");
 * equal(parseHost("localhost"), "localhost");
 * ```
 */
export function parseHost(text: string): string {
  const bracketed = /^\[(.*)\]$/.exec(text);
  if (bracketed) {
    if (isIP(bracketed[1]!) !== 6) {
      throw new TypeError(
        `Cannot use host "${text}": brackets hold only an IPv6 address`,
      );
    }
    return bracketed[1]!;
  }
  if (isIP(text) !== 0) return text;
  // A dotted string of digits that is no IPv4 address is a typo, not a name.
  const name = text.endsWith(".") ? text.slice(0, -1) : text;
  if (
    name.length === 0 || name.length > 253 || /^[\d.]+$/.test(name) ||
    !name.split(".").every((label) => HOST_LABEL.test(label))
  ) {
    throw new TypeError(
      `Cannot use host "${text}": expected a host name, an IPv4 or an IPv6 address`,
    );
  }
  return text;
}

/**
 * Formats a host and port the way URLs do: `127.0.0.1:10000`, `[::1]:10000`.
 *
 * @example
 * ```ts
 * import { formatAddress } from "./shared.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(formatAddress({ hostname: "::1", port: 10000 }), "[::1]:10000");
 * ```
 */
export function formatAddress(address: HostPort): string {
  const host = address.hostname.includes(":")
    ? `[${address.hostname}]`
    : address.hostname;
  return `${host}:${address.port}`;
}

const RESOLVE_ERROR_REASONS: Record<string, string> = {
  ENOTFOUND: "no %FAMILY% address found",
  // What Deno's node:dns reports when net permission was not granted.
  EPERM: "network access not granted, run again with the --allow-net flag",
};

/** Options for {@linkcode resolveAddress}. */
export interface ResolveOptions {
  /** Accept only addresses of this family. */
  family?: AddressFamily;
}

/**
 * Resolves a host name to its first IP address in the system resolver's
 * order (`/etc/hosts` included), the address `Deno.listenDatagram` would
 * bind for the same name; IP literals are returned as they are.
 */
export async function resolveAddress(
  address: HostPort,
  options: ResolveOptions = {},
): Promise<ResolvedAddress> {
  const { family } = options;
  const literal = familyOf(address.hostname);
  if (literal !== undefined) {
    if (family !== undefined && literal !== family) {
      throw new TypeError(
        `Cannot use ${address.hostname}: it is an ${literal} address, not ${family}`,
      );
    }
    return { ...address, family: literal };
  }
  try {
    // Verbatim keeps the resolver's order, the one listenDatagram binds by,
    // so client and server agree on "localhost" even where ::1 comes first.
    const found = await lookup(address.hostname, {
      family: family === undefined ? 0 : family === "IPv4" ? 4 : 6,
      verbatim: true,
    });
    return {
      hostname: found.address,
      port: address.port,
      family: found.family === 6 ? "IPv6" : "IPv4",
    };
  } catch (error) {
    throw new Error(
      `Cannot resolve ${address.hostname}: ${
        RESOLVE_ERROR_REASONS[(error as { code?: string }).code ?? ""] ??
          errorMessage(error)
      }`.replace("%FAMILY%", family ?? "IP"),
      { cause: error },
    );
  }
}

/** Whether `hostname` is the unspecified address, `0.0.0.0` or `::`. */
export function isUnspecified(hostname: string): boolean {
  return hostname === "0.0.0.0" ||
    (familyOf(hostname) === "IPv6" && /^[0:]+$/.test(hostname));
}

/**
 * Throws a `TypeError` when Deno runs without UDP support, which needs the
 * `--unstable-net` flag (or `"unstable": ["net"]` in `deno.json`).
 */
export function checkUnstableNet(): void {
  if (typeof Deno.listenDatagram !== "function") {
    throw new TypeError(
      "Cannot open a UDP socket: Deno.listenDatagram needs the --unstable-net flag",
    );
  }
}

/**
 * Resolves an address to send datagrams to, as {@linkcode resolveAddress}
 * does, and throws a `RangeError` for the unspecified address, which names
 * no host.
 */
export async function resolveTarget(
  address: HostPort,
  options: ResolveOptions = {},
): Promise<ResolvedAddress> {
  const resolved = await resolveAddress(address, options);
  if (isUnspecified(resolved.hostname)) {
    throw new RangeError(
      `Cannot send to ${resolved.hostname}: it is the unspecified address; use ${
        resolved.family === "IPv6" ? "::1" : "127.0.0.1"
      } for this machine`,
    );
  }
  return resolved;
}

/** Options for {@linkcode previewPayload}. */
export interface PreviewOptions {
  /** Show at most this many bytes of the payload. Defaults to 100. */
  maxBytes?: number;
}

const ESCAPES: Record<number, string> = {
  0x09: "\\t",
  0x0a: "\\n",
  0x0d: "\\r",
  0x22: '\\"',
  0x5c: "\\\\",
};

function hexEscape(byte: number): string {
  return `\\x${byte.toString(16).padStart(2, "0")}`;
}

/** Length of the valid UTF-8 sequence starting at `i`, or 0 if there is none. */
function utf8SequenceLength(bytes: Uint8Array, i: number): number {
  const lead = bytes[i]!;
  const [length, min] = lead >= 0xf0 && lead <= 0xf4
    ? [4, 0x10000]
    : lead >= 0xe0 && lead <= 0xef
    ? [3, 0x800]
    : lead >= 0xc2 && lead <= 0xdf
    ? [2, 0x80]
    : [0, 0];
  if (length === 0 || i + length > bytes.length) return 0;
  let codePoint = lead & (0xff >> (length + 1));
  for (let k = 1; k < length; k++) {
    const next = bytes[i + k]!;
    if ((next & 0xc0) !== 0x80) return 0;
    codePoint = (codePoint << 6) | (next & 0x3f);
  }
  const valid = codePoint >= min && codePoint <= 0x10ffff &&
    !(codePoint >= 0xd800 && codePoint <= 0xdfff);
  return valid ? length : 0;
}

/**
 * Renders a payload for a log line: UTF-8 text shown as text in double
 * quotes, control and invalid bytes escaped, long payloads cut with a count
 * of the bytes left out.
 *
 * @example
 * ```ts
 * import { previewPayload } from "./shared.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(previewPayload(new TextEncoder().encode("hi\n")), '"hi\\n"');
 * equal(previewPayload(new Uint8Array([0xff, 0x41])), '"\\xffA"');
 * equal(
 *   previewPayload(new TextEncoder().encode("abcdef"), { maxBytes: 4 }),
 *   '"abcd"... (2 more bytes)',
 * );
 * ```
 */
export function previewPayload(
  data: Uint8Array,
  options: PreviewOptions = {},
): string {
  const maxBytes = options.maxBytes ?? 100;
  const end = Math.min(data.length, maxBytes);
  const decoder = new TextDecoder();
  let text = "";
  let i = 0;
  while (i < end) {
    const byte = data[i]!;
    if (byte < 0x80) {
      text += ESCAPES[byte] ??
        (byte < 0x20 || byte === 0x7f
          ? hexEscape(byte)
          : String.fromCharCode(byte));
      i++;
      continue;
    }
    const length = utf8SequenceLength(data, i);
    if (length === 0 || i + length > end) {
      text += hexEscape(byte);
      i++;
      continue;
    }
    text += decoder.decode(data.subarray(i, i + length));
    i += length;
  }
  const rest = data.length - i;
  return rest > 0
    ? `"${text}"... (${rest} more byte${rest === 1 ? "" : "s"})`
    : `"${text}"`;
}

const DENO_ERROR_REASONS: Record<string, string> = {
  AddrInUse: "address already in use",
  AddrNotAvailable: "address not available",
  PermissionDenied: "permission denied",
  ConnectionRefused: "connection refused",
  ConnectionReset: "connection reset",
  NetworkUnreachable: "network unreachable",
  BadResource: "socket closed",
  Interrupted: "interrupted",
};

/**
 * Returns a one-line, lower-case description of an error: the reason for a
 * Deno socket error ("address already in use"), else the message.
 */
export function errorMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const reason = DENO_ERROR_REASONS[error.name];
  if (reason !== undefined) return reason;
  const message = error.message.split("\n")[0]!
    .replace(/ \(os error \d+\)$/, "");
  // Keep acronyms such as "IPv4" intact; lower only a capitalised word.
  return /^[A-Z][a-z]/.test(message)
    ? message[0]!.toLowerCase() + message.slice(1)
    : message;
}

/** Whether colour may be written to standard error. */
function stderrHasColor(): boolean {
  return !Deno.noColor && Deno.stderr.isTerminal();
}

/** Prints `error: <message>` as one line on standard error. */
export function printError(error: unknown): void {
  const prefix = stderrHasColor() ? "\x1b[1;31merror\x1b[0m:" : "error:";
  console.error(`${prefix} ${errorMessage(error)}`);
}

/**
 * Parses command-line flags with `node:util`'s strict `parseArgs`, turning its
 * verbose errors into a short `TypeError` ("unknown flag --x").
 */
export function parseFlags<T extends ParseArgsConfig["options"]>(
  args: string[],
  options: T,
): {
  values: ReturnType<typeof parseArgs<{ options: T }>>["values"];
  positionals: string[];
} {
  try {
    const parsed = parseArgs({
      args,
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values: parsed.values, positionals: parsed.positionals };
  } catch (error) {
    const code = (error as { code?: string }).code;
    const message = (error as Error).message;
    // Name a flag by its long form where the message gives one.
    const flag = /--[\w-]+/.exec(message)?.[0] ??
      /'(-[^',]*)'/.exec(message)?.[1];
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      throw new TypeError(
        `Cannot parse flags: unknown flag ${flag} (see --help)`,
      );
    }
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      throw new TypeError(
        message.includes("argument missing")
          ? `Cannot parse flags: ${flag} needs a value`
          : message.includes("ambiguous")
          ? `Cannot parse flags: ${flag} needs a value (write ${flag}=VALUE for one that starts with "-")`
          : `Cannot parse flags: ${flag} takes no value`,
      );
    }
    throw new TypeError(`Cannot parse flags: ${message}`);
  }
}
