/**
 * Addresses, resolution, payload limits and error descriptions: everything
 * udp-echo knows about the network that is not I/O.
 *
 * @example
 * ```ts
 * import { formatAddress, maxPayload } from "./mod.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(formatAddress({ hostname: "::1", port: 7 }), "[::1]:7");
 * equal(maxPayload("IPv6"), 65_527);
 * ```
 *
 * @module
 */

export * from "./address.ts";
export * from "./payload.ts";
