/**
 * Reading `struct sockaddr_in` and `struct sockaddr_in6` bytes: the address
 * as Deno formats it (RFC 5952) and the port.
 *
 * @module
 */

export const AF_INET = 2;
export const AF_INET6 = 10;

/** Room for a `struct sockaddr_in6` (28 bytes), rounded up. */
export const SOCKADDR_SIZE = 32;

/** Reads the family (`AF_INET`, `AF_INET6`) of the sockaddr at `offset`. */
export function sockaddrFamily(bytes: Uint8Array, offset: number): number {
  return bytes[offset]! | (bytes[offset + 1]! << 8);
}

/**
 * Formats the IP address of a `sockaddr_in` or `sockaddr_in6` at `offset`
 * the way Deno does: `127.0.0.1`, `::1`, `::ffff:127.0.0.1`.
 */
export function formatSockaddrHost(bytes: Uint8Array, offset: number): string {
  return sockaddrFamily(bytes, offset) === AF_INET
    ? formatIp(bytes, offset + 4, 4)
    : formatIp(bytes, offset + 8, 6);
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

/** Reads the port of a `sockaddr_in` or `sockaddr_in6` at `offset`. */
export function sockaddrPort(bytes: Uint8Array, offset: number): number {
  return (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
}
