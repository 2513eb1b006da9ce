/**
 * How the measurement client reports: ping-style lines per reply, a summary
 * in the spirit of ping and irtt, a live status line, and the JSON document
 * (`--json`) and event stream (`--ndjson`) described in docs/json.md. Pure
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
 * equal(line, "64 bytes from 127.0.0.1:10000: seq=3 time=0.1424 ms");
 * ```
 *
 * @module
 */

import type {
  LostEvent,
  ReplyEvent,
  RunResult,
  SweepEvent,
  SweepResult,
} from "./modes.ts";
import { formatAddress } from "../net/address.ts";
import { histogram, lossPercent, type Summary } from "./stats.ts";
import type { Mode } from "./_common.ts";
import { formatHostDrops } from "./_host_drops_report.ts";

/** Formats milliseconds with three decimals, or `-` when there is no value. */
export function formatMs(ms: number): string {
  return Number.isFinite(ms) ? ms.toFixed(3) : "-";
}

/**
 * Formats a round-trip time in milliseconds to 0.1 µs (four decimals), or
 * `-` when there is no value.
 */
export function formatRttMs(ms: number): string {
  return Number.isFinite(ms) ? ms.toFixed(4) : "-";
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
    event.clockStep && "(clock step)",
    event.merged && "(merged)",
  ].filter(Boolean);
  const flow = flows > 1 ? `flow=${event.flow} ` : "";
  return [
    `${event.bytes} bytes from ${from}: ${flow}seq=${event.seq} time=${
      formatRttMs(event.rttMs)
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
      return `${head} truncated to ${bytes(event.bytes)}`;
    case "corrupted":
      return `${head} corrupted (${bytes(event.bytes)})`;
    case "lost":
      return `${head} no reply`;
    case "unsent":
      return `${head} not sent`;
    case "interrupted":
      return `${head} cut short by a signal`;
  }
}

/**
 * The line that says replies carried several probes each, or nothing
 * without any.
 */
function mergedText(result: RunResult | SweepResult): string | false {
  const merged = result.merged ?? 0;
  if (merged === 0) return false;
  return `${merged} ${
    merged === 1 ? "reply" : "replies"
  } carried several whole probes each, all counted as received: the server merges datagrams (a stream relay)`;
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
  const values = fields.map((field) => formatRttMs(summary[field]));
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
  /**
   * What would pace closer than this run did (the kernel engine, when it
   * was available but not used), said when few sends were on time.
   */
  pacingAdvice?: string;
}

/**
 * Below this percent of sends on time (see `ScheduleError.onTimePercent`)
 * the summary passes on {@linkcode SummaryOptions.pacingAdvice}.
 */
export const LOW_ON_TIME_PERCENT = 90;

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
    (result.clockSteps ?? 0) > 0 &&
    `${result.clockSteps} across a clock step (monotonic RTT)`,
    (result.eventsDropped ?? 0) > 0 &&
    `${result.eventsDropped} events not shown (output fell behind)`,
  ].filter(Boolean);
  if (extras.length > 0) lines.push(extras.join(", "));
  const merged = mergedText(result);
  if (merged) lines.push(merged);
  lines.push(...formatHostDrops(result));
  lines.push(...summaryTable(result.rttMs));
  lines.push(
    `jitter (ms): mean ipdv ${formatMs(result.jitterMs.ipdv)}, rfc3550 ${
      formatMs(result.jitterMs.rfc3550)
    }`,
  );
  if (result.pacing === "interval") {
    const { drift, largestBurst } = result.scheduleMs;
    const error = result.scheduleMs;
    lines.push(
      `schedule error (ms): mean ${formatMs(error.mean)}, p50 ${
        formatMs(error.p50 ?? NaN)
      }, p99 ${formatMs(error.p99 ?? NaN)}, max ${formatMs(error.max)}, span ${
        Number.isFinite(drift)
          ? `${drift >= 0 ? "+" : ""}${drift.toFixed(3)}%`
          : "-"
      }, largest burst ${Number.isFinite(largestBurst) ? largestBurst : "-"}`,
    );
    const onTime = error.onTimePercent ?? NaN;
    if (Number.isFinite(onTime)) {
      lines.push(
        `on time: ${
          formatPercent(onTime)
        }% of sends within ±5% of the interval of their schedule`,
      );
      if (onTime < LOW_ON_TIME_PERCENT && options.pacingAdvice !== undefined) {
        lines.push(options.pacingAdvice);
      }
    }
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
        ? `${failure.size} bytes came back truncated to ${
          bytes(failure.echoed ?? 0)
        }`
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
  const merged = mergedText(result);
  if (merged) lines.push(merged);
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

export {
  eventJson,
  JSON_SCHEMA,
  type JsonOptions,
  runJson,
  sweepJson,
  toJson,
} from "./report_json.ts";

/** `n` bytes, in the singular for one. */
function bytes(n: number): string {
  return n === 1 ? "1 byte" : `${n} bytes`;
}
