/**
 * What the echo server and client share, as the tutorials had it: the
 * address defaults (`localhost`, port 10000), the UDP payload limit and its
 * check, and the resolution of a server's address.
 *
 * @example Check a payload against the IPv4 limit
 * ```ts
 * import { checkPayloadSize, DEFAULT_PORT, maxPayload } from "./shared.ts";
 * import { equal, throws } from "node:assert/strict";
 *
 * equal(DEFAULT_PORT, 10000);
 * checkPayloadSize(maxPayload("IPv4"), "IPv4");
 * throws(() => checkPayloadSize(maxPayload("IPv4") + 1, "IPv4"), RangeError);
 * ```
 *
 * @module
 */

export {
  type AddressFamily,
  DEFAULT_HOST,
  DEFAULT_PORT,
  type HostPort,
  type ResolvedAddress,
} from "./net/address.ts";
export { resolveTarget } from "./net/resolve.ts";
export { checkPayloadSize, maxPayload } from "./net/payload.ts";
