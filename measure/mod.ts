/**
 * Measuring an echo server: probes, the ping, load and sweep engines, their
 * statistics and their reports.
 *
 * @example Ping this project's echo server three times
 * ```ts
 * import { runProbes } from "./mod.ts";
 * import { serveEcho } from "../server.ts";
 * import { equal } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveEcho({ hostname: "127.0.0.1", port: 0, signal: controller.signal });
 * try {
 *   const result = await runProbes({
 *     target: { ...server.addr, family: "IPv4" },
 *     count: 3,
 *     intervalMs: 10,
 *   });
 *   equal(result.received, 3);
 * } finally {
 *   controller.abort();
 *   await server.finished;
 * }
 * ```
 *
 * @module
 */

export * from "./modes.ts";
export * from "./probe.ts";
export * from "./report.ts";
export * from "./stats.ts";
