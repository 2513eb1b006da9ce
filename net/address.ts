/**
 * IP address literals and host names as udp-echo takes them from a user:
 * validating, formatting the way URLs do, telling families apart, and the
 * address defaults of the tutorials (localhost:10000).
 *
 * @example
 * ```ts
 * import { formatAddress, parseHost } from "./address.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(formatAddress({ hostname: parseHost("[::1]"), port: 10000 }), "[::1]:10000");
 * ```
 *
 * @module
 */

import { isIP } from "node:net";
import { parseAddress, WORDS } from "./_ip.ts";

/** The host both scripts use when none is given, as in the tutorials. */
export const DEFAULT_HOST = "localhost";

/** The port both scripts use when none is given, as in the tutorials. */
export const DEFAULT_PORT = 10000;

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

/**
 * Parses a port number, an integer from 0 to 65535 (0 asks for a free one).
 *
 * @example
 * ```ts
 * import { parsePort } from "./address.ts";
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
 * import { parseHost } from "./address.ts";
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
 * import { formatAddress } from "./address.ts";
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

/** Whether `hostname` is the unspecified address, `0.0.0.0` or `::`. */
export function isUnspecified(hostname: string): boolean {
  return hostname === "0.0.0.0" ||
    (familyOf(hostname) === "IPv6" && /^[0:]+$/.test(hostname));
}

/** The zone of a scoped IPv6 literal (`fe80::1%lo` gives `lo`), if any. */
function zoneOf(hostname: string): string | undefined {
  const percent = hostname.indexOf("%");
  return percent < 0 ? undefined : hostname.slice(percent + 1);
}

/**
 * Whether two hosts name the same address: IP literals compare by value, so
 * case, leading zeros, `::` compression, brackets and the IPv4-mapped form
 * (`::ffff:127.0.0.1`) do not matter; a zone counts only when both carry
 * one, since Deno reports a link-local source without its zone. Names
 * compare without case.
 *
 * @example
 * ```ts
 * import { sameHost } from "./address.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(sameHost("0:0:0:0:0:0:0:1", "::1"), true);
 * equal(sameHost("::FFFF:127.0.0.1", "127.0.0.1"), true);
 * equal(sameHost("[fe80::1%lo]", "fe80::1"), true);
 * equal(sameHost("127.0.0.1", "127.0.0.2"), false);
 * ```
 */
export function sameHost(a: string, b: string): boolean {
  const left = a.startsWith("[") && a.endsWith("]") ? a.slice(1, -1) : a;
  const right = b.startsWith("[") && b.endsWith("]") ? b.slice(1, -1) : b;
  const family = parseAddress(left);
  if (family === 0) return left.toLowerCase() === right.toLowerCase();
  const words = WORDS.slice();
  if (parseAddress(right) !== family) return false;
  for (let k = 0; k < (family === 4 ? 1 : 4); k++) {
    if (words[k] !== WORDS[k]) return false;
  }
  const [zoneA, zoneB] = [zoneOf(left), zoneOf(right)];
  return zoneA === undefined || zoneB === undefined || zoneA === zoneB;
}

/**
 * Whether two endpoints are the same: equal ports and
 * {@linkcode sameHost} hosts.
 *
 * @example
 * ```ts
 * import { sameEndpoint } from "./address.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(sameEndpoint({ hostname: "::1", port: 7 }, { hostname: "0::1", port: 7 }), true);
 * equal(sameEndpoint({ hostname: "::1", port: 7 }, { hostname: "::1", port: 8 }), false);
 * ```
 */
export function sameEndpoint(a: HostPort, b: HostPort): boolean {
  return a.port === b.port && sameHost(a.hostname, b.hostname);
}
