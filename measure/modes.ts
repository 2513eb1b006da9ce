/**
 * The measurement modes behind `client.ts`: ping (probes on a fixed
 * schedule), load (a closed-loop window or an open-loop rate, over one or
 * more flows from distinct source ports) and a payload sweep. They work on
 * real UDP sockets against any echo server, because everything they need
 * rides inside the probe (see `probe.ts`), emit one event per reply, and
 * return plain result objects; printing is the caller's business.
 *
 * This module gathers them for the command line and the monitor; the
 * package's public face is `mod.ts`. Ping and load live in `run.ts`, the
 * sweep in `sweep.ts`, and both send and match through the private flow of
 * `_flow.ts`, so that a reply counts the same whichever mode asked.
 *
 * @example Ping this project's echo server five times
 * ```ts
 * import { runProbes } from "./modes.ts";
 * import { serveEcho } from "../server.ts";
 * import { equal } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveEcho({ hostname: "127.0.0.1", port: 0, signal: controller.signal });
 * try {
 *   const result = await runProbes({
 *     target: { ...server.addr, family: "IPv4" },
 *     count: 5,
 *     intervalMs: 10,
 *   });
 *   equal(result.received, 5);
 *   equal(result.rttMs.count, 5);
 * } finally {
 *   controller.abort();
 *   await server.finished;
 * }
 * ```
 *
 * @module
 */

export {
  checkProbeSize,
  DEFAULT_PROBE_SIZE,
  DEFAULT_PROBE_TIMEOUT_MS,
  type Mode,
} from "./_common.ts";
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
export {
  type EngineFormat,
  type FlowRunOptions,
  runFlows,
  type RunOptions,
  runProbes,
} from "./run.ts";
export {
  SWEEP_TRIES,
  type SweepFailure,
  type SweepOptions,
  sweepPayload,
  type SweepResult,
} from "./sweep.ts";
export { type ScheduleError, scheduleError } from "./schedule.ts";
