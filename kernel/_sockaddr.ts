/**
 * Reading `struct sockaddr_in` and `struct sockaddr_in6` bytes: the address
 * as Deno formats it (RFC 5952) and the port.
 *
 * @module
 */

import { formatIp } from "../net/address.ts";

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

/** Reads the port of a `sockaddr_in` or `sockaddr_in6` at `offset`. */
export function sockaddrPort(bytes: Uint8Array, offset: number): number {
  return (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
}

export { formatIp };
