/**
 * What the server prints: the start-up lines, one text or JSON line per
 * event (text folded under a flood), a periodic stats line and the totals at
 * shutdown. Every line goes to the {@linkcode LogOutput} passed in.
 *
 * @example Fold a flood of text lines
 * ```ts
 * import { createEventLog } from "./log.ts";
 * import { equal } from "node:assert/strict";
 *
 * const lines: string[] = [];
 * const output = {
 *   line: (text: string) => lines.push(text),
 *   error() {},
 *   warn() {},
 *   status() {},
 * };
 * const log = createEventLog(output, { json: false, perSecond: 1 });
 * const from = { transport: "udp" as const, hostname: "127.0.0.1", port: 40000 };
 * const data = new TextEncoder().encode("hi");
 * for (let i = 0; i < 3; i++) {
 *   log.log({ type: "datagram", from, local: from, data, sent: 2 });
 * }
 * log.close();
 * equal(lines.at(-1), "... 2 more datagrams");
 * ```
 *
 * @module
 */

import { formatAddress, isUnspecified, sameHost } from "../net/address.ts";
import { errorMessage } from "../net/errors.ts";
import { previewPayload } from "../net/payload.ts";
import { isLoopback } from "../policy/policy.ts";
import type {
  DropCounts,
  EchoServer,
  EchoStats,
  ServerEvent,
} from "../echo/types.ts";
import * as hostDrops from "./_host_drops.ts";

/** Where the server's lines go. */
export interface LogOutput {
  /** Writes one line to standard output. */
  line(text: string): void;
  /** Writes one `error: …` line to standard error. */
  error(error: unknown): void;
  /** Writes one `warning: …` line to standard error. */
  warn(text: string): void;
  /** Writes `text` as it is to standard error. */
  status(text: string): void;
  /**
   * Lines to standard output that could not be written so far (a failed
   * or slow stdout), when the output counts them.
   */
  readonly dropped?: number;
}

/** Per-datagram text lines allowed each second before they fold. */
export const LOG_DATAGRAMS_PER_SECOND = 20;

/** Error lines allowed each second before they fold: a sender must not set the log's volume. */
export const LOG_ERRORS_PER_SECOND = 20;

const NUMBER = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

function plural(n: number, noun: string): string {
  return `${NUMBER.format(n)} ${noun}${n === 1 ? "" : "s"}`;
}

function formatDropped(dropped: DropCounts): string {
  const entries = Object.entries(dropped);
  const total = entries.reduce((sum, [, count]) => sum + count, 0);
  return `dropped ${NUMBER.format(total)}${
    entries.length === 0
      ? ""
      : ` (${
        entries.map(([reason, n]) => `${reason} ${NUMBER.format(n)}`).join(", ")
      })`
  }`;
}

/** What the log lost: lines it could not write, events it never got. */
export interface LogLosses {
  /** Lines to standard output not written (`LogOutput.dropped`). */
  linesDropped: number;
  /** Events a full queue dropped before the log (`EchoStats.eventsDropped`). */
  eventsDropped: number;
}

/** `, 3 log lines dropped, 2 log events dropped`, only the parts above 0. */
function formatLosses(losses: LogLosses): string {
  return (losses.linesDropped > 0
    ? `, ${plural(losses.linesDropped, "log line")} dropped`
    : "") +
    (losses.eventsDropped > 0
      ? `, ${plural(losses.eventsDropped, "log event")} dropped`
      : "");
}

function lossesOf(stats: EchoStats, output: LogOutput): LogLosses {
  return {
    linesDropped: output.dropped ?? 0,
    eventsDropped: stats.eventsDropped,
  };
}

/**
 * The shutdown totals as one text line, after `shutting down: `; what the
 * log lost is added at the end when anything was.
 */
export function formatTotals(
  stats: EchoStats,
  losses: LogLosses = { linesDropped: 0, eventsDropped: 0 },
): string {
  return `received ${
    plural(stats.received, "datagram")
  } (${stats.receivedBytes} bytes), ` +
    `echoed ${
      plural(stats.echoed, "datagram")
    } (${stats.echoedBytes} bytes), ` +
    // Drops only when there were any: the tutorial's totals stay as they are.
    (stats.dropped > 0 ? `${formatDropped(stats.droppedBy)}, ` : "") +
    `${plural(stats.errors, "error")}, ${hostDrops.inTotals(stats)}` +
    `up ${(stats.uptimeMs / 1000).toFixed(1)} s` + formatLosses(losses);
}

function logText(output: LogOutput, event: ServerEvent): void {
  if (event.type === "datagram") {
    const from = formatAddress(event.from);
    output.line(`received ${event.data.length} bytes from ${from}`);
    output.line(previewPayload(event.data));
    output.line(`sent ${event.sent} bytes back to ${from}`);
    output.line("waiting to receive message");
  } else if (event.type === "dropped") {
    output.line(
      `dropped ${event.data.length} bytes from ${
        formatAddress(event.from)
      }: ${event.reason}`,
    );
  } else if (event.operation === "send") {
    output.error(
      `cannot echo to ${formatAddress(event.peer!)}: ${
        errorMessage(event.error)
      }`,
    );
  } else {
    output.error(`cannot receive: ${errorMessage(event.error)}`);
  }
}

function eventJson(event: ServerEvent): Record<string, unknown> {
  return event.type === "datagram"
    ? {
      event: "datagram",
      from: formatAddress(event.from),
      bytes: event.data.length,
      sent: event.sent,
      preview: previewPayload(event.data),
    }
    : event.type === "dropped"
    ? {
      event: "dropped",
      from: formatAddress(event.from),
      bytes: event.data.length,
      reason: event.reason,
      preview: previewPayload(event.data),
    }
    : {
      event: "error",
      operation: event.operation,
      ...(event.peer ? { peer: formatAddress(event.peer) } : {}),
      message: errorMessage(event.error),
    };
}

/** Options for {@linkcode createEventLog}. */
export interface EventLogOptions {
  /** One JSON object per event instead of text lines. */
  json: boolean;
  /** Text datagram lines allowed each second before the rest fold. Default 20. */
  perSecond?: number;
  /** Text error lines allowed each second before the rest fold. Default 20. */
  errorsPerSecond?: number;
}

/** A running event log. */
export interface EventLog {
  /** Logs one event. */
  log(event: ServerEvent): void;
  /** Writes the pending `... N more datagrams` and `... N more errors` lines, if any. */
  flush(): void;
  /** Flushes and stops the timer that flushes after a flood. */
  close(): void;
}

/** Counts lines in one-second windows and folds those past the limit. */
function createFold(limit: number, write: (folded: number) => void) {
  let windowStart = performance.now();
  let shown = 0;
  let folded = 0;
  const flush = () => {
    if (folded > 0) write(folded);
    folded = 0;
  };
  return {
    /** Whether the next line may be written; counts it as folded if not. */
    admit(now: number): boolean {
      if (now - windowStart >= 1000) {
        flush();
        windowStart = now;
        shown = 0;
      }
      if (shown < limit) {
        shown++;
        return true;
      }
      folded++;
      return false;
    },
    flush,
  };
}

/**
 * Logs server events as text or JSON. Past `perSecond` text datagram lines
 * in a second the rest fold into one `... N more datagrams` line on stdout,
 * and past `errorsPerSecond` error lines the rest fold into one
 * `... N more errors` line on stderr: neither a flood nor a sender whose
 * echoes fail may slow the echo down to the speed of a terminal or fill a
 * disk. JSON is not folded (the output's bounded queue caps it). Never
 * throws, its timer included.
 */
export function createEventLog(
  output: LogOutput,
  options: EventLogOptions,
): EventLog {
  if (options.json) {
    return {
      log: (event) => output.line(JSON.stringify(eventJson(event))),
      flush() {},
      close() {},
    };
  }
  const datagrams = createFold(
    options.perSecond ?? LOG_DATAGRAMS_PER_SECOND,
    (n) => output.line(`... ${plural(n, "more datagram")}`),
  );
  const errors = createFold(
    options.errorsPerSecond ?? LOG_ERRORS_PER_SECOND,
    (n) => output.status(`... ${plural(n, "more error")}\n`),
  );
  const flush = () => {
    try {
      datagrams.flush();
      errors.flush();
    } catch {
      // A broken output must not end the server from a timer.
    }
  };
  // Write a pending fold line once a flood is over, not only at the next event.
  const timer = setInterval(flush, 1000);
  Deno.unrefTimer(timer);
  return {
    log(event) {
      const fold = event.type === "error" ? errors : datagrams;
      if (fold.admit(performance.now())) logText(output, event);
    },
    flush,
    close() {
      clearInterval(timer);
      flush();
    },
  };
}

/** Options for {@linkcode createStatsReporter}. */
export interface StatsLineOptions {
  /** JSON lines instead of text. */
  json: boolean;
  /** Called before each line (to flush a pending fold line). */
  beforeLine?: () => void;
}

/** Options for {@linkcode startStatsReport}. */
export interface StatsReportOptions extends StatsLineOptions {
  /** Seconds between lines. */
  seconds: number;
}

/**
 * Returns a function that prints one summary line: received (and its rate
 * since the previous line, or since this was made), echoed, dropped by
 * cause, errors, active sources, and what the log lost (JSON:
 * `log_lines_dropped`, `log_events_dropped`; text: only when above 0). A
 * text line starts with `stats: `, a JSON one is a `stats` event. The
 * function never throws.
 */
export function createStatsReporter(
  server: EchoServer,
  output: LogOutput,
  options: StatsLineOptions,
): () => void {
  const { json, beforeLine } = options;
  let last = { at: performance.now(), received: server.stats().received };
  const report = () => {
    const stats = server.stats();
    const now = performance.now();
    const rate = (stats.received - last.received) * 1000 / (now - last.at);
    last = { at: now, received: stats.received };
    beforeLine?.();
    const losses = lossesOf(stats, output);
    if (json) {
      output.line(JSON.stringify({
        event: "stats",
        received: stats.received,
        echoed: stats.echoed,
        dropped: stats.droppedBy,
        errors: stats.errors,
        rate: Math.round(rate * 10) / 10,
        active_sources: stats.activeSources,
        ...hostDrops.json(stats),
        log_lines_dropped: losses.linesDropped,
        log_events_dropped: losses.eventsDropped,
      }));
    } else {
      output.line(
        `stats: received ${NUMBER.format(stats.received)} (${
          NUMBER.format(rate)
        }/s), echoed ${NUMBER.format(stats.echoed)}, ${
          formatDropped(stats.droppedBy)
        }, ${plural(stats.errors, "error")}, ${
          plural(stats.activeSources, "active source")
        }, ${hostDrops.text(stats)}${formatLosses(losses)}`,
      );
    }
  };
  return () => {
    try {
      report();
    } catch {
      // A broken output must not end the server from a timer or a signal.
    }
  };
}

/**
 * Prints the line of {@linkcode createStatsReporter} every `seconds`
 * (`report`, when given, prints it: a line printed another way, such as on
 * SIGUSR2, then starts the next rate's interval). Never throws from its
 * timer. Returns a function that stops it.
 */
export function startStatsReport(
  server: EchoServer,
  output: LogOutput,
  options: StatsReportOptions & { report?: () => void },
): () => void {
  const report = options.report ??
    createStatsReporter(server, output, options);
  const timer = setInterval(report, options.seconds * 1000);
  return () => clearInterval(timer);
}

/** Options for {@linkcode announce}. */
export interface AnnounceOptions {
  /** The host each socket was asked for, as the user gave it (a name stands once per address). */
  hostnames: readonly string[];
  /** JSON lines instead of text. */
  json: boolean;
  /** No per-datagram lines follow, so no "waiting" line either. */
  quiet: boolean;
  /** Whether the rate limit in force is the default one. */
  rateIsDefault: boolean;
  /**
   * The I/O backend in use and why: an `io:` line after the sockets' lines
   * (the first line stays the first socket's, which scripts read the port
   * from), or a JSON `io` event after the `listening` events.
   */
  io?: { io: string; reason: string };
}

/**
 * Prints the start-up lines: one per socket actually bound, the I/O
 * backend, what the server cannot check (`server.warnings`: a `warning:`
 * line, or a JSON `warning` event), then the rate limit in force.
 */
export function announce(
  server: EchoServer,
  output: LogOutput,
  options: AnnounceOptions,
): void {
  const { rate, burst, maxSources } = server.rateLimit;
  for (const [k, addr] of server.addrs.entries()) {
    const host = options.hostnames[k]!;
    if (options.json) {
      output.line(JSON.stringify({
        event: "listening",
        host,
        address: addr.hostname,
        port: addr.port,
        ...(rate > 0 ? { rate, burst, max_sources: maxSources } : {}),
      }));
    } else {
      // Name the address a name stood for: which sockets exist is the point.
      const where = sameHost(host, addr.hostname)
        ? addr.hostname
        : `${host} (${addr.hostname})`;
      output.line(`starting up on ${where} port ${addr.port}`);
    }
  }
  const { io } = options;
  if (io !== undefined) {
    output.line(
      options.json
        ? JSON.stringify({ event: "io", io: io.io, reason: io.reason })
        : `io: ${io.io} (${io.reason})`,
    );
  }
  for (const message of server.warnings) {
    if (options.json) {
      output.line(JSON.stringify({ event: "warning", message }));
    } else {
      output.warn(message);
    }
  }
  if (options.json) return;
  if (rate > 0) {
    output.line(
      `rate limit: ${NUMBER.format(rate)} datagrams/s per source, burst ${
        NUMBER.format(burst)
      }${
        options.rateIsDefault
          ? " (the default, as an address is not loopback; --rate 0 turns it off)"
          : ""
      }`,
    );
  } else if (
    // A wildcard is not loopback, even where it expanded to loopback only.
    !server.addrs.every(({ hostname }, k) =>
      isLoopback(hostname) && !isUnspecified(options.hostnames[k] ?? "")
    )
  ) {
    output.warn("no rate limit on an address that is not loopback");
  }
  if (!options.quiet) output.line("waiting to receive message");
}

/**
 * The shutdown totals as printed: one text line, or one JSON `shutdown`
 * event with `log_lines_dropped` and `log_events_dropped`.
 */
export function formatShutdown(
  stats: EchoStats,
  losses: LogLosses,
  options: { json: boolean },
): string {
  return options.json
    ? JSON.stringify({
      event: "shutdown",
      received: stats.received,
      received_bytes: stats.receivedBytes,
      echoed: stats.echoed,
      echoed_bytes: stats.echoedBytes,
      dropped: stats.droppedBy,
      errors: stats.errors,
      uptime_s: Math.round(stats.uptimeMs) / 1000,
      ...hostDrops.json(stats),
      log_lines_dropped: losses.linesDropped,
      log_events_dropped: losses.eventsDropped,
    })
    : `shutting down: ${formatTotals(stats, losses)}`;
}

/** The totals line with the log's losses as they stand now, lines a broken stdout lost included. */
export function formatShutdownLine(
  stats: EchoStats,
  output: LogOutput,
  options: { json: boolean },
): string {
  return formatShutdown(stats, lossesOf(stats, output), options);
}

/**
 * Prints the shutdown totals (see {@linkcode formatShutdown}) and returns
 * the line. Never throws.
 */
export function printTotals(
  stats: EchoStats,
  output: LogOutput,
  options: { json: boolean },
): string {
  const line = formatShutdownLine(stats, output, options);
  try {
    output.line(line);
  } catch {
    // The caller still has the line, to put on stderr.
  }
  return line;
}
