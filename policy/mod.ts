/**
 * The echo server's reply policy: which datagrams it answers, and the
 * per-source rate limit.
 *
 * @example
 * ```ts
 * import { EchoPolicy } from "./mod.ts";
 * import { equal } from "node:assert/strict";
 *
 * const policy = new EchoPolicy();
 * equal(policy.decide({ hostname: "127.0.0.1", port: 53 }, 10), "low-port");
 * ```
 *
 * @module
 */

export * from "./policy.ts";
