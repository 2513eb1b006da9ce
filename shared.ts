/**
 * What the echo server and client share, as the tutorials had it: the
 * address defaults (localhost:10000) and the UDP payload limit check, with
 * the address helpers of `net/` beside them.
 *
 * @example Check a payload against the IPv4 limit
 * ```ts
 * import { checkPayloadSize, DEFAULT_PORT, MAX_IPV4_PAYLOAD } from "./shared.ts";
 * import { equal, throws } from "node:assert/strict";
 *
 * equal(DEFAULT_PORT, 10000);
 * checkPayloadSize(MAX_IPV4_PAYLOAD, "IPv4");
 * throws(() => checkPayloadSize(MAX_IPV4_PAYLOAD + 1, "IPv4"), RangeError);
 * ```
 *
 * @module
 */

export {
  type AddressFamily,
  DEFAULT_HOST,
  DEFAULT_PORT,
  familyOf,
  formatAddress,
  type HostPort,
  isUnspecified,
  parseHost,
  parsePort,
  type ResolvedAddress,
  sameEndpoint,
  sameHost,
} from "./net/address.ts";
export {
  checkPayloadSize,
  MAX_IPV4_PAYLOAD,
  MAX_IPV6_PAYLOAD,
  maxPayload,
  type PreviewOptions,
  previewPayload,
  RECEIVE_BUFFER_SIZE,
} from "./net/payload.ts";
export { errorMessage } from "./net/address.ts";
export {
  resolveAddress,
  type ResolveOptions,
  resolveTarget,
} from "./net/address.ts";
