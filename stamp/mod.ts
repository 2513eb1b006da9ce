/**
 * STAMP, the Simple Two-Way Active Measurement Protocol (RFC 8762, with the
 * extensions of RFC 8972): the test packet codec, the TLVs and the
 * Session-Reflector the server runs with `--stamp`.
 *
 * @example
 * ```ts
 * import { STAMP_BASE_SIZE, StampReflector } from "./mod.ts";
 * import { equal } from "node:assert/strict";
 *
 * const reflector = new StampReflector({ stateful: true });
 * const request = new Uint8Array(STAMP_BASE_SIZE);
 * const context = {
 *   from: { hostname: "192.0.2.1", port: 40000 },
 *   local: { hostname: "192.0.2.2", port: 862 },
 *   receivedAtMs: Date.now(),
 * };
 * equal(reflector.reflect(request, request, context), STAMP_BASE_SIZE);
 * equal(reflector.counts().sessions, 1);
 * ```
 *
 * @module
 */

export * from "./packet.ts";
export * from "./tlv.ts";
export * from "./reflector.ts";
