/**
 * How the measurement client reports: ping-style lines per reply, a summary
 * in the spirit of ping and irtt, a live status line, and the JSON document
 * (`--json`) and event stream (`--ndjson`) described in the README. Pure
 * formatting: nothing here touches a socket.
 *
 * @example Format a reply the way ping does
 * ```ts
 * import { formatReply } from "./report.ts";
 * import { equal } from "node:assert/strict";
 *
 * const line = formatReply({
 *   type: "reply",
 *   flow: 0,
 *   seq: 3,
 *   bytes: 64,
 *   rttMs: 0.1424,
 *   check: "intact",
 *   duplicate: false,
 *   reordered: false,
 *   late: false,
 * }, "127.0.0.1:10000");
 * equal(line, "64 bytes from 127.0.0.1:10000: seq=3 time=0.142 ms");
 * ```
 *
 * @module
 */

import type {
  LostEvent,
  ProbeEvent,
  ReplyEvent,
  RunResult,
  SweepEvent,
  SweepResult,
} from "./engine.ts";
import { formatAddress } from "../net/address.ts";
import { histogram, type ReplyCounts, type Summary } from "./stats.ts";

/**
 * Names the JSON format and its version: a new field bumps the minor
 * version, a renamed or removed one the major. 1.1 added `send_errors`,
 * `send_error`, the `send_error` event, `in_flight` and the send-rate check.
 */
export const JSON_SCHEMA = "udp-echo.measure/1.2";

/** Which measurement produced a result. */
export type Mode = "ping" | "load" | "sweep";

/** Formats milliseconds with three decimals, or `-` when there is no value. */
export function formatMs(ms: number): string {
  return Number.isFinite(ms) ? ms.toFixed(3) : "-";
}

/** Formats a bit rate with an SI prefix: `51.2 kbit/s`. */
export function formatBits(bps: number): string {
  if (!Number.isFinite(bps)) return "- bit/s";
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let value = bps;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function formatRate(pps: number): string {
  return Number.isFinite(pps) ? `${pps.toFixed(1)} pps` : "- pps";
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/**
 * Percentage of probes without an intact reply (lost or only corrupted);
 * probes still in flight when the run was cut short count for neither side.
 */
export function lossPercent(
  result: { sent: number; received: number; inFlight?: number },
): number {
  const settled = result.sent - (result.inFlight ?? 0);
  return settled === 0 ? NaN : (settled - result.received) / settled * 100;
}

/**
 * Formats a percentage with one decimal, never rounding a non-zero share to
 * `0.0` or a share short of all to `100.0`: `<0.1` and `>99.9` instead, so
 * a loss that fails a run never reads as none. `-` when there is no value.
 *
 * @example
 * ```ts
 * import { formatPercent } from "./report.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(formatPercent(0.01), "<0.1");
 * equal(formatPercent(12.345), "12.3");
 * ```
 */
export function formatPercent(percent: number): string {
  if (!Number.isFinite(percent)) return "-";
  const text = percent.toFixed(1);
  if (percent > 0 && text === "0.0") return "<0.1";
  if (percent < 100 && text === "100.0") return ">99.9";
  return text;
}

/** A ping-style line for one reply, marked DUP!, late, reordered or damaged. */
export function formatReply(
  event: ReplyEvent,
  from: string,
  flows = 1,
): string {
  const marks = [
    event.duplicate && "(DUP!)",
    event.check !== "intact" && `(${event.check})`,
    event.reordered && "(reordered)",
    event.late && "(late)",
  ].filter(Boolean);
  const flow = flows > 1 ? `flow=${event.flow} ` : "";
  return [
    `${event.bytes} bytes from ${from}: ${flow}seq=${event.seq} time=${
      formatMs(event.rttMs)
    } ms`,
    ...marks,
  ].join(" ");
}

/** A line for a probe that had no reply by the end of the wait. */
export function formatLost(event: LostEvent, from: string, flows = 1): string {
  const flow = flows > 1 ? `flow=${event.flow} ` : "";
  return `no reply from ${from}: ${flow}seq=${event.seq}`;
}

/** A line for one try of a sweep. */
export function formatSweepStep(event: SweepEvent, tries: number): string {
  const head = `${event.size} bytes (try ${event.attempt}/${tries}):`;
  switch (event.outcome) {
    case "intact":
      return `${head} intact, time=${formatMs(event.rttMs)} ms`;
    case "truncated":
      return `${head} truncated to ${event.bytes} bytes`;
    case "corrupted":
      return `${head} corrupted (${event.bytes} bytes)`;
    case "lost":
      return `${head} no reply`;
    case "unsent":
      return `${head} not sent`;
    case "interrupted":
      return `${head} cut short by a signal`;
  }
}

function countsLine(result: RunResult | SweepResult): string {
  const loss = lossPercent(result);
  return [
    `${result.sent} sent`,
    `${result.received} received`,
    `${result.lost} lost`,
    plural(result.duplicates, "duplicate"),
    `${result.reordered} reordered`,
    `${result.corrupted} corrupted`,
    `${formatPercent(loss)}% without intact reply`,
  ].join(", ");
}

/** `3 send errors (operation not permitted)`, or nothing without any. */
function sendErrorsText(result: RunResult | SweepResult): string | false {
  if (result.sendErrors === 0) return false;
  const reason = result.sendError === undefined ? "" : ` (${result.sendError})`;
  return `${plural(result.sendErrors, "send error")}${reason}`;
}

function summaryTable(summary: Summary): string[] {
  const fields = [
    "min",
    "mean",
    "median",
    "max",
    "stddev",
    "p90",
    "p99",
    "p999",
  ] as const;
  const labels = fields.map((field) => field === "p999" ? "p99.9" : field);
  const values = fields.map((field) => formatMs(summary[field]));
  const width = Math.max(
    ...labels.map((label) => label.length),
    ...values.map((value) => value.length),
  );
  return [
    `          ${labels.map((label) => label.padStart(width)).join(" ")}`,
    `rtt (ms)  ${values.map((value) => value.padStart(width)).join(" ")}`,
  ];
}

/** Options for {@linkcode formatRunSummary}. */
export interface SummaryOptions {
  /** Add a histogram of round-trip times. Defaults to true. */
  histogram?: boolean;
}

/** The end-of-run summary of a ping or load run, as lines. */
export function formatRunSummary(
  result: RunResult,
  mode: Mode,
  options: SummaryOptions = {},
): string[] {
  const lines = [
    `--- ${formatAddress(result.target)} udp-echo ${mode} statistics ---`,
    countsLine(result),
  ];
  const extras = [
    sendErrorsText(result),
    result.late > 0 && `${result.late} late`,
    result.truncated > 0 && `${result.truncated} truncated`,
    result.ignored > 0 && `${result.ignored} foreign datagrams ignored`,
    (result.inFlight ?? 0) > 0 &&
    `${result.inFlight} in flight when cut short`,
  ].filter(Boolean);
  if (extras.length > 0) lines.push(extras.join(", "));
  lines.push(...summaryTable(result.rttMs));
  lines.push(
    `jitter (ms): mean ipdv ${formatMs(result.jitterMs.ipdv)}, rfc3550 ${
      formatMs(result.jitterMs.rfc3550)
    }`,
  );
  if (result.pacing === "interval") {
    const drift = result.scheduleMs.drift;
    lines.push(
      `schedule error (ms): mean ${formatMs(result.scheduleMs.mean)}, max ${
        formatMs(result.scheduleMs.max)
      }, span ${
        Number.isFinite(drift)
          ? `${drift >= 0 ? "+" : ""}${drift.toFixed(3)}%`
          : "-"
      }`,
    );
  }
  lines.push(
    `rate: sent ${formatRate(result.sendRate.pps)} (${
      formatBits(result.sendRate.bps)
    }), echoed ${formatRate(result.echoRate.pps)} (${
      formatBits(result.echoRate.bps)
    }), ${result.size}-byte payloads, ${plural(result.flows.length, "flow")}, ${
      (result.elapsedMs / 1000).toFixed(2)
    } s`,
  );
  const shortfall = formatShortfall(result);
  if (shortfall !== undefined) lines.push(shortfall);
  if ((options.histogram ?? true) && result.rtts.length > 1) {
    lines.push(
      "rtt histogram (ms):",
      ...histogram(result.rtts, {
        bins: 8,
        width: 30,
        upper: result.rttMs.p99,
      }).map((line) => `  ${line}`),
    );
  }
  return lines;
}

/**
 * The line that says a run sent slower than asked (see
 * `RunResult.schedule`), or `undefined` when it kept up.
 */
export function formatShortfall(result: RunResult): string | undefined {
  if (result.schedule?.short !== true) return undefined;
  const { askedPps, achievedPps } = result.schedule;
  return `send rate short of the schedule: asked ${
    formatRate(askedPps)
  }, achieved ${formatRate(achievedPps)} (${
    (achievedPps / askedPps * 100).toFixed(1)
  }%)`;
}

/** The end-of-sweep summary, as lines. */
export function formatSweepSummary(result: SweepResult): string[] {
  const lines = [
    `--- ${formatAddress(result.target)} udp-echo sweep ---`,
    result.maxPayload > 0
      ? `largest intact echo: ${result.maxPayload} bytes (limit ${result.limit})`
      : `no intact echo at any size up to ${result.limit} bytes`,
  ];
  const { failure } = result;
  if (failure !== undefined) {
    lines.push(
      failure.reason === "truncated"
        ? `${failure.size} bytes came back truncated to ${failure.echoed} bytes`
        : failure.reason === "lost"
        ? `${failure.size} bytes got no reply in any of its tries`
        : failure.reason === "unsent"
        ? `${failure.size} bytes could not be sent in any of its tries`
        : failure.reason === "interrupted"
        ? `stopped by a signal before ${failure.size} bytes was decided`
        : `${failure.size} bytes came back corrupted`,
    );
  }
  lines.push(countsLine(result));
  const extras = [
    sendErrorsText(result),
    result.truncated > 0 && `${result.truncated} truncated`,
    result.ignored > 0 && `${result.ignored} foreign datagrams ignored`,
  ].filter(Boolean);
  if (extras.length > 0) lines.push(extras.join(", "));
  lines.push(...summaryTable(result.rttMs));
  return lines;
}

/** The one-line live status of a running load test. */
export function formatStatus(status: {
  sent: number;
  received: number;
  elapsedMs: number;
  echoPps: number;
  lastRttMs: number;
}): string {
  return `${
    (status.elapsedMs / 1000).toFixed(1)
  } s: ${status.sent} sent, ${status.received} received, ${
    status.sent - status.received
  } in flight or lost, ${formatRate(status.echoPps)} echoed, rtt ${
    formatMs(status.lastRttMs)
  } ms`;
}

/** Options shared by the JSON renderers. */
export interface JsonOptions {
  /** Extra mode-specific fields, such as the interval or window. */
  settings?: Record<string, unknown>;
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
    send_error: result.sendError ?? null,
    loss_percent: lossPercent(result),
    rtt_ms: summaryJson(result.rttMs),
    jitter_ms: { ipdv: result.jitterMs.ipdv, rfc3550: result.jitterMs.rfc3550 },
    schedule_error_ms: result.pacing === "interval"
      ? {
        mean: result.scheduleMs.mean,
        max: result.scheduleMs.max,
        drift_percent: result.scheduleMs.drift,
      }
      : null,
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

/** One `--ndjson` line for an engine event, with an `event` field. */
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
 * Serialises a document, on one line unless `indent` is given. Fractions are
 * rounded to three decimals (a microsecond for the `_ms` fields); NaN and
 * infinities become `null`.
 *
 * @example
 * ```ts
 * import { toJson } from "./report.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(toJson({ mean: NaN, max: 0.1234567, sent: 5 }), '{"mean":null,"max":0.123,"sent":5}');
 * ```
 */
export function toJson(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    (_key, item) =>
      typeof item !== "number" || Number.isInteger(item)
        ? item
        : Number.isFinite(item)
        ? Math.round(item * 1000) / 1000
        : null,
    indent,
  );
}
