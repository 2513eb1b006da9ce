/**
 * Endpoints as udp-echo takes them from a user: IP literals and host names
 * validated, formatted the way URLs do and compared by value, with the
 * address defaults of the tutorials (localhost:10000). Resolving names is
 * `resolve.ts`; describing what went wrong reaching them is `errors.ts`.
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

// Scratch space for parsing one address: no allocation per datagram.
const GROUPS = new Uint16Array(8);
/** Where {@linkcode parseAddress} leaves the address it parsed. */
export const WORDS: Uint32Array = new Uint32Array(4);

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  const lower = code | 0x20;
  if (lower >= 97 && lower <= 102) return lower - 87;
  return -1;
}

/** Parses a dotted quad in `text[start, end)`; returns -1 when it is none. */
function parseIPv4(text: string, start: number, end: number): number {
  let value = 0;
  let parts = 0;
  let i = start;
  while (parts < 4) {
    const first = i;
    let part = 0;
    while (i < end) {
      const digit = text.charCodeAt(i) - 48;
      if (digit < 0 || digit > 9) break;
      part = part * 10 + digit;
      i++;
    }
    const length = i - first;
    // Leading zeros read as octal in some parsers: refuse the ambiguity.
    if (length === 0 || length > 3 || part > 255) return -1;
    if (length > 1 && text.charCodeAt(first) === 48) return -1;
    value = value * 256 + part;
    parts++;
    if (parts < 4) {
      if (i >= end || text.charCodeAt(i) !== 46) return -1;
      i++;
    }
  }
  return i === end ? value : -1;
}

// The last text parsed and what it gave: the echo policy asks about the
// same source again and again, and the engine hands it the same string.
let lastText = "";
let lastFamily: 0 | 4 | 6 = 0;
const LAST_WORDS = new Uint32Array(4);

/**
 * Parses an IP literal into {@linkcode WORDS}: returns 4 with the address in
 * `WORDS[0]` (IPv4-mapped IPv6 included), 6 with the 128 bits in `WORDS`, or
 * 0 when the text is no IP address. A zone (`%eth0`) is ignored.
 */
export function parseAddress(text: string): 0 | 4 | 6 {
  if (text !== lastText) {
    lastFamily = parseUncached(text);
    lastText = text;
    for (let k = 0; k < 4; k++) LAST_WORDS[k] = WORDS[k]!;
    return lastFamily;
  }
  for (let k = 0; k < 4; k++) WORDS[k] = LAST_WORDS[k]!;
  return lastFamily;
}

function parseUncached(text: string): 0 | 4 | 6 {
  if (text.indexOf(":") < 0) {
    const v4 = parseIPv4(text, 0, text.length);
    if (v4 < 0) return 0;
    WORDS[0] = v4;
    return 4;
  }
  let end = text.indexOf("%");
  if (end < 0) end = text.length;
  let i = 0;
  let count = 0;
  let gap = -1;
  if (text.charCodeAt(0) === 58) {
    if (text.charCodeAt(1) !== 58) return 0;
    gap = 0;
    i = 2;
  }
  while (i < end) {
    const start = i;
    let value = 0;
    while (i < end) {
      const digit = hexValue(text.charCodeAt(i));
      if (digit < 0) break;
      value = value * 16 + digit;
      i++;
    }
    if (i < end && text.charCodeAt(i) === 46) {
      if (count > 6) return 0;
      const v4 = parseIPv4(text, start, end);
      if (v4 < 0) return 0;
      GROUPS[count++] = v4 >>> 16;
      GROUPS[count++] = v4 & 0xffff;
      i = end;
      break;
    }
    if (i === start || i - start > 4 || count === 8) return 0;
    GROUPS[count++] = value;
    if (i === end) break;
    if (text.charCodeAt(i) !== 58) return 0;
    i++;
    if (i < end && text.charCodeAt(i) === 58) {
      if (gap >= 0) return 0;
      gap = count;
      i++;
    } else if (i === end) {
      return 0;
    }
  }
  if (gap < 0) {
    if (count !== 8) return 0;
  } else {
    if (count > 7) return 0;
    const tail = count - gap;
    for (let k = 0; k < tail; k++) GROUPS[7 - k] = GROUPS[count - 1 - k]!;
    for (let k = gap; k < 8 - tail; k++) GROUPS[k] = 0;
  }
  for (let k = 0; k < 4; k++) {
    WORDS[k] = GROUPS[2 * k]! * 0x10000 + GROUPS[2 * k + 1]!;
  }
  // ::ffff:a.b.c.d is an IPv4 peer on a dual-stack socket.
  if (WORDS[0] === 0 && WORDS[1] === 0 && WORDS[2] === 0xffff) {
    WORDS[0] = WORDS[3]!;
    return 4;
  }
  return 6;
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

/**
 * Where a socket bound to `hostname` reaches itself: that address, or for
 * the unspecified address the loopback of `family`.
 *
 * @param hostname The socket's bound address.
 * @param family The socket's family.
 * @returns An address a datagram to the socket's port reaches it at.
 *
 * @example
 * ```ts
 * import { selfAddress } from "./address.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(selfAddress("0.0.0.0", "IPv4"), "127.0.0.1");
 * equal(selfAddress("::", "IPv6"), "::1");
 * equal(selfAddress("10.1.0.2", "IPv4"), "10.1.0.2");
 * ```
 */
export function selfAddress(hostname: string, family: AddressFamily): string {
  if (!isUnspecified(hostname)) return hostname;
  return family === "IPv6" ? "::1" : "127.0.0.1";
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
  // The common case, a reply from the very literal sent to, costs no parse.
  if (a === b) return true;
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

function dottedQuad(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${
    value & 255
  }`;
}

/**
 * Whether an IP literal addresses a group rather than one host: IPv4
 * multicast (224.0.0.0/4), the reserved 240.0.0.0/4 with the limited
 * broadcast 255.255.255.255, or IPv6 multicast (ff00::/8).
 *
 * @example
 * ```ts
 * import { isGroupAddress } from "./address.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(isGroupAddress("224.0.0.1"), true);
 * equal(isGroupAddress("ff02::1"), true);
 * equal(isGroupAddress("127.0.0.1"), false);
 * ```
 */
export function isGroupAddress(hostname: string): boolean {
  const family = parseAddress(hostname);
  return family === 4
    ? WORDS[0]! >>> 28 >= 0xe
    : family === 6 && WORDS[0]! >>> 24 === 0xff;
}

/**
 * The IPv4 address an IPv4-mapped IPv6 literal names (`::ffff:127.0.0.1`
 * gives `127.0.0.1`); any other host as it is.
 *
 * @example
 * ```ts
 * import { unmapped } from "./address.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(unmapped("::FFFF:7f00:1"), "127.0.0.1");
 * equal(unmapped("::1"), "::1");
 * ```
 */
export function unmapped(hostname: string): string {
  return hostname.includes(":") && parseAddress(hostname) === 4
    ? dottedQuad(WORDS[0]!)
    : hostname;
}

/**
 * Formats the 4 (`family` 4) or 16 (`family` 6) address bytes at `offset`
 * the way Deno does (RFC 5952): `127.0.0.1`, `::1`, `::ffff:127.0.0.1`.
 */
export function formatIp(
  bytes: Uint8Array,
  offset: number,
  family: 4 | 6,
): string {
  if (family === 4) {
    return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${
      bytes[offset + 3]
    }`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) {
    groups.push((bytes[offset + 2 * i]! << 8) | bytes[offset + 1 + 2 * i]!);
  }
  if (
    groups[0] === 0 && groups[1] === 0 && groups[2] === 0 &&
    groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff
  ) {
    const b = offset + 12;
    return `::ffff:${bytes[b]}.${bytes[b + 1]}.${bytes[b + 2]}.${bytes[b + 3]}`;
  }
  // RFC 5952: compress the longest run of two or more zero groups, the first
  // one on a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${
    hex.slice(bestStart + bestLength).join(":")
  }`;
}
