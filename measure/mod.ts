/**
 * Measuring an echo server: ping (probes on a schedule), load (probes in a
 * window or at a rate, over one or more flows) and the payload sweep, the
 * events they emit as they go and the results they return. Printing is the
 * caller's business.
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

export { type RunOptions, runProbes } from "./run.ts";
export {
  type SweepFailure,
  type SweepOptions,
  sweepPayload,
  type SweepResult,
} from "./sweep.ts";
export type {
  FlowResult,
  LostEvent,
  ProbeEvent,
  ProbeOptions,
  ReplyEvent,
  RunResult,
  SendErrorEvent,
  SweepEvent,
} from "./types.ts";
export type { ReplyCounts, Summary } from "./stats.ts";
export type { ScheduleError } from "./schedule.ts";
