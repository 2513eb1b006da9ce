/**
 * The measurement client's `--json` document and `--ndjson` events, as
 * docs/json.md describes them. Numbers keep their full precision (round
 * trips to the nanosecond); NaN and Infinity become null.
 *
 * @module
 */

import type { Mode, ProbeEvent, RunResult, SweepResult } from "./modes.ts";
import { formatAddress } from "../net/address.ts";
import { lossPercent, type ReplyCounts, type Summary } from "./stats.ts";
import { hostDropsJson } from "./_host_drops_report.ts";

/**
 * Names the JSON format and its version: a new field bumps the minor
 * version, a renamed or removed one the major. 1.1 added `send_errors`,
 * `send_error`, the `send_error` event, `in_flight` and the send-rate check;
 * 1.2 added `io`, `clock_steps`, `events_dropped`, the reply event's `clock_step`, and
 * `p50`, `p99` and `largest_burst` in `schedule_error_ms`; 1.3 added `merged`,
 * the reply event's `merged`, `on_time_percent` in `schedule_error_ms`,
 * `host_drops`, `host_drops_unknown_reason`, `lost_beyond_host_drops`,
 * `receive_buffer`, and in `stamp`: `undetermined`,
 * `directional_loss_unknown`, `one_way_unavailable` and `rewritten_unknown`.
 */
export const JSON_SCHEMA = "udp-echo.measure/1.3";

/** Options shared by the JSON renderers. */
export interface JsonOptions {
  /** Extra mode-specific fields, such as the interval or window. */
  settings?: Record<string, unknown>;
  /** The I/O in use and why, as the start-up `io:` line says. */
  io?: { backend: "socket" | "batch"; reason: string };
}

/** A summary as JSON fields: min, mean, median, max, stddev, p90, p99, p999. */
export function summaryJson(summary: Summary): Record<string, number> {
  const { min, mean, median, max, stddev, p90, p99, p999 } = summary;
  return { min, mean, median, max, stddev, p90, p99, p999 };
}

function countsJson(counts: ReplyCounts) {
  const { sent, received, lost, duplicates, reordered, corrupted } = counts;
  return {
    sent,
    received,
    lost,
    duplicates,
    reordered,
    corrupted,
    send_errors: counts.sendErrors,
  };
}

function targetJson(target: RunResult["target"]) {
  return {
    address: formatAddress(target),
    hostname: target.hostname,
    port: target.port,
    family: target.family,
  };
}

/**
 * The `--json` document of a ping or load run: the counts, `rtt_ms`,
 * `jitter_ms`, rates and per-flow counts, with `schema` naming the format.
 * Values that do not exist (no replies) are `null`.
 */
export function runJson(
  result: RunResult,
  mode: Mode,
  options: JsonOptions = {},
): Record<string, unknown> {
  return {
    schema: JSON_SCHEMA,
    mode,
    target: targetJson(result.target),
    size: result.size,
    ...options.settings,
    ...countsJson(result),
    truncated: result.truncated,
    late: result.late,
    ignored: result.ignored,
    in_flight: result.inFlight ?? 0,
    ...hostDropsJson(result),
    send_error: result.sendError ?? null,
    loss_percent: lossPercent(result),
    rtt_ms: summaryJson(result.rttMs),
    jitter_ms: { ipdv: result.jitterMs.ipdv, rfc3550: result.jitterMs.rfc3550 },
    schedule_error_ms: result.pacing === "interval"
      ? {
        mean: result.scheduleMs.mean,
        max: result.scheduleMs.max,
        drift_percent: result.scheduleMs.drift,
        p50: result.scheduleMs.p50 ?? null,
        p99: result.scheduleMs.p99 ?? null,
        largest_burst: result.scheduleMs.largestBurst ?? null,
        on_time_percent: result.scheduleMs.onTimePercent ?? null,
      }
      : null,
    clock_steps: result.clockSteps ?? 0,
    merged: result.merged ?? 0,
    events_dropped: result.eventsDropped ?? 0,
    io: options.io ?? null,
    send_rate: { pps: result.sendRate.pps, bps: result.sendRate.bps },
    echo_rate: { pps: result.echoRate.pps, bps: result.echoRate.bps },
    asked_pps: result.schedule?.askedPps ?? null,
    achieved_pps: result.schedule?.achievedPps ?? null,
    rate_shortfall: result.schedule?.short ?? false,
    elapsed_ms: result.elapsedMs,
    flows: result.flows.map((flow) => ({
      flow: flow.flow,
      local: formatAddress(flow.local),
      ...countsJson(flow),
      in_flight: flow.inFlight ?? 0,
    })),
  };
}

/** The `--json` document of a sweep: the counts, `max_payload` and each try. */
export function sweepJson(
  result: SweepResult,
  options: JsonOptions = {},
): Record<string, unknown> {
  return {
    schema: JSON_SCHEMA,
    mode: "sweep",
    target: targetJson(result.target),
    ...options.settings,
    ...countsJson(result),
    in_flight: result.inFlight ?? 0,
    truncated: result.truncated,
    ignored: result.ignored,
    merged: result.merged ?? 0,
    send_error: result.sendError ?? null,
    loss_percent: lossPercent(result),
    rtt_ms: summaryJson(result.rttMs),
    jitter_ms: { ipdv: null, rfc3550: null },
    max_payload: result.maxPayload,
    limit: result.limit,
    failure: result.failure ?? null,
    steps: result.steps.map(eventJson),
  };
}

/** One `--ndjson` line for a probe event, with an `event` field. */
export function eventJson(event: ProbeEvent): Record<string, unknown> {
  switch (event.type) {
    case "reply":
      return {
        event: "reply",
        flow: event.flow,
        seq: event.seq,
        bytes: event.bytes,
        rtt_ms: event.rttMs,
        check: event.check,
        duplicate: event.duplicate,
        reordered: event.reordered,
        late: event.late,
        ...(event.clockStep ? { clock_step: true } : {}),
        ...(event.merged ? { merged: true } : {}),
      };
    case "lost":
      return { event: "lost", flow: event.flow, seq: event.seq };
    case "send_error":
      return {
        event: "send_error",
        flow: event.flow,
        seq: event.seq,
        reason: event.reason,
      };
    case "sweep":
      return {
        event: "sweep",
        size: event.size,
        attempt: event.attempt,
        outcome: event.outcome,
        bytes: event.bytes,
        rtt_ms: event.rttMs,
      };
  }
}

/**
 * Serialises a document, on one line unless `indent` is given. Numbers keep
 * their full precision; NaN and infinities become `null`.
 *
 * @example
 * ```ts
 * import { toJson } from "./report_json.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(toJson({ mean: NaN, max: 0.1234567, sent: 5 }), '{"mean":null,"max":0.1234567,"sent":5}');
 * ```
 */
export function toJson(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    (_key, item) =>
      typeof item === "number" && !Number.isFinite(item) ? null : item,
    indent,
  );
}
