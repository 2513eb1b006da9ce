/**
 * Addresses and CIDRs parsed once into words, and the checks the policy
 * makes against the address {@linkcode parseAddress} last left in
 * {@linkcode WORDS}: membership, equality, loopback and unspecified.
 *
 * @module
 */

import { parseAddress, WORDS } from "../net/address.ts";

/** A parsed address: family and four words (IPv4 in `words[0]`). */
export interface Address {
  family: 4 | 6;
  words: Uint32Array;
}

/** A parsed CIDR: family, network and mask words. */
export interface Cidr extends Address {
  mask: Uint32Array;
}

export function toAddress(text: string, what: string): Address {
  const family = parseAddress(text);
  if (family === 0) {
    throw new TypeError(`Cannot use ${what} "${text}": not an IP address`);
  }
  return { family, words: WORDS.slice() };
}

export function prefixMask(bits: number, words: number): Uint32Array {
  const mask = new Uint32Array(4);
  for (let k = 0; k < words; k++) {
    const take = Math.max(0, Math.min(32, bits - 32 * k));
    mask[k] = take === 0 ? 0 : (0xffffffff << (32 - take)) >>> 0;
  }
  return mask;
}

/**
 * Parses a CIDR such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a
 * single host. An IPv4-mapped IPv6 CIDR is read as the IPv4 one it covers.
 *
 * @example
 * ```ts
 * import { parseCidr } from "./policy.ts";
 * import { equal, throws } from "node:assert/strict";
 *
 * equal(parseCidr("10.1.2.3/8").prefix, 8);
 * equal(parseCidr("10.1.2.3/8").network, "10.0.0.0/8");
 * equal(parseCidr("10.1.2.3/8").hostBits, true);
 * equal(parseCidr("2001:db8::1/32").network, "2001:db8::/32");
 * equal(parseCidr("::1").prefix, 128);
 * throws(() => parseCidr("10.0.0.0/33"), RangeError);
 * ```
 */
export function parseCidr(text: string): {
  family: "IPv4" | "IPv6";
  prefix: number;
  /** The network, host bits cleared: `10.0.0.0/8` for `10.1.2.3/8`. */
  network: string;
  /** Whether the address had bits set past the prefix. */
  hostBits: boolean;
} {
  const cidr = toCidr(text);
  return {
    family: cidr.family === 4 ? "IPv4" : "IPv6",
    prefix: cidr.prefix,
    network: `${formatWords(cidr)}/${cidr.prefix}`,
    hostBits: cidr.hostBits,
  };
}

/** An address as text: dotted IPv4, or IPv6 with the longest zero run as `::`. */
function formatWords({ family, words }: Address): string {
  if (family === 4) {
    return [24, 16, 8, 0].map((shift) => (words[0]! >>> shift) & 0xff)
      .join(".");
  }
  const groups = [...words].flatMap((word) => [word >>> 16, word & 0xffff]);
  let best = { at: -1, length: 1 };
  for (let at = 0; at < 8;) {
    let end = at;
    while (end < 8 && groups[end] === 0) end++;
    if (end - at > best.length) best = { at, length: end - at };
    at = end === at ? at + 1 : end;
  }
  const hex = groups.map((group) => group.toString(16));
  if (best.at < 0) return hex.join(":");
  return `${hex.slice(0, best.at).join(":")}::${
    hex.slice(best.at + best.length).join(":")
  }`;
}

export function toCidr(
  text: string,
): Cidr & { prefix: number; hostBits: boolean } {
  const slash = text.indexOf("/");
  const host = slash < 0 ? text : text.slice(0, slash);
  const bracketed = /^\[(.*)\]$/.exec(host)?.[1] ?? host;
  const address = toAddress(bracketed, "CIDR");
  const mapped = address.family === 4 && bracketed.includes(":");
  const max = address.family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const bits = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(bits)) {
      throw new TypeError(`Cannot use CIDR "${text}": bad prefix length`);
    }
    prefix = Number(bits) - (mapped ? 96 : 0);
    if (prefix < 0 || prefix > max) {
      throw new RangeError(
        `Cannot use CIDR "${text}": the prefix length must be 0 to ${
          mapped ? 128 : max
        }${mapped ? " and at least 96 for an IPv4-mapped address" : ""}`,
      );
    }
  }
  const mask = prefixMask(prefix, address.family === 4 ? 1 : 4);
  let hostBits = false;
  for (let k = 0; k < (address.family === 4 ? 1 : 4); k++) {
    if ((address.words[k]! & ~mask[k]!) !== 0) hostBits = true;
  }
  for (let k = 0; k < 4; k++) address.words[k]! &= mask[k]!;
  return { ...address, mask, prefix, hostBits };
}

/** Whether the address parsed in WORDS (of `family`) lies in `cidr`. */
export function inCidr(family: 4 | 6, cidr: Cidr): boolean {
  if (cidr.family !== family) return false;
  const { words, mask } = cidr;
  if (((WORDS[0]! & mask[0]!) >>> 0) !== words[0]) return false;
  if (family === 4) return true;
  return ((WORDS[1]! & mask[1]!) >>> 0) === words[1] &&
    ((WORDS[2]! & mask[2]!) >>> 0) === words[2] &&
    ((WORDS[3]! & mask[3]!) >>> 0) === words[3];
}

export function sameAddress(family: 4 | 6, address: Address): boolean {
  return address.family === family && address.words[0] === WORDS[0] &&
    (family === 4 ||
      (address.words[1] === WORDS[1] && address.words[2] === WORDS[2] &&
        address.words[3] === WORDS[3]));
}

export function isLoopbackParsed(family: 4 | 6): boolean {
  return family === 4
    ? WORDS[0]! >>> 24 === 127
    : WORDS[0] === 0 && WORDS[1] === 0 && WORDS[2] === 0 && WORDS[3] === 1;
}

export function isUnspecifiedParsed(family: 4 | 6): boolean {
  return WORDS[0] === 0 &&
    (family === 4 || (WORDS[1] === 0 && WORDS[2] === 0 && WORDS[3] === 0));
}
