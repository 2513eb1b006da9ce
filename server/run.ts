/**
 * The server as a program runs it: bind, say what was bound, log, report
 * (every `--stats-interval`, and on SIGUSR2), stop on SIGINT, SIGTERM or
 * SIGHUP, and print the totals, with every line going to the output passed
 * in.
 *
 * @module
 */

import type { EchoServer, EchoStats } from "../echo/types.ts";
import { sameHost } from "../net/address.ts";
import type { PolicyOptions } from "../policy/policy.ts";
import type { TimestampFormat } from "../stamp/packet.ts";
import type { BindHost } from "./hosts.ts";
import type { IoChoice, IoMode } from "../kernel/choice.ts";
import { startEcho } from "./io.ts";
import {
  announce,
  createEventLog,
  createStatsReporter,
  formatShutdownLine,
  type LogOutput,
  printTotals,
  startStatsReport,
} from "./log.ts";

/**
 * How long the shutdown waits for the log to reach standard output, in
 * milliseconds: shutdown takes under a second whatever the reader does.
 */
const STDOUT_DRAIN_MS = 500;

/** What {@linkcode runServer} writes through: the log's output and what a shutdown needs of it. */
export interface ServerOutput extends LogOutput {
  /** Lines to standard output that could not be written so far. */
  readonly dropped: number;
  /** Whether standard output was found failing. */
  readonly closed: boolean;
  /** Waits up to `timeoutMs` milliseconds for queued lines; false when some are left. */
  flush(timeoutMs: number): Promise<boolean>;
}

/** An endpoint started beside the server (the metrics); closed at shutdown. */
export interface SideEndpoint {
  /** Prints its start-up line, after the server's. */
  announce?(): void;
  /** Stops serving. */
  close(): Promise<void>;
}

/** Options for {@linkcode runServer}. */
export interface RunServerOptions {
  /** The sockets to bind: each host as given and the address it stands for. */
  hosts: readonly BindHost[];
  /** The port for every socket; 0 picks a free one. */
  port: number;
  /** The I/O backend, or `auto`. */
  io: IoMode;
  /** The reply policy. */
  policy: PolicyOptions;
  /** One JSON object per line instead of text. */
  json: boolean;
  /** No line per datagram. */
  quiet: boolean;
  /** Seconds between stats lines; none when absent. */
  statsInterval?: number;
  /** Whether `policy.rate` was left to its default. */
  rateIsDefault: boolean;
  /** Flags given that only act with a rate limit (`--burst`), to warn about. */
  rateFlags: readonly string[];
  /**
   * Speak STAMP (RFC 8762) instead of plain echo: every datagram the policy
   * allows is answered by a Session-Reflector, on either backend.
   */
  stamp?: { stateful: boolean; format: TimestampFormat };
  /**
   * Stops the server. It may abort before the server is up (a stop signal
   * during start-up): the server then stops as soon as it is bound.
   */
  signal: AbortSignal;
  /** Starts an endpoint beside the bound server; throws when it cannot. */
  startSide?: (server: EchoServer, choice: IoChoice) => Promise<SideEndpoint>;
}

/** How a {@linkcode runServer} run ended. */
export interface RunServerResult {
  /** Whether it could not bind or run, rather than being stopped by a signal. */
  failed: boolean;
  /** Whether every line reached standard output in time. */
  drained: boolean;
}

/**
 * Runs the echo server until SIGINT, SIGTERM or SIGHUP (SIGINT or SIGBREAK
 * on Windows) and prints its totals; SIGUSR2 prints a stats line. A failure to bind, to start the side endpoint or to
 * run the batch engine is one `error:` line and `failed: true`.
 */
export async function runServer(
  options: RunServerOptions,
  output: ServerOutput,
): Promise<RunServerResult> {
  const { json } = options;
  const log = createEventLog(output, { json });
  const controller = new AbortController();
  const signal = AbortSignal.any([options.signal, controller.signal]);
  let server: EchoServer;
  let choice: IoChoice;
  try {
    ({ server, choice } = await startEcho({
      hostnames: options.hosts.map((host) => host.address),
      port: options.port,
      io: options.io,
      stamp: options.stamp,
      signal,
      policy: options.policy,
      onEvent: log.log,
      datagramEvents: !options.quiet,
    }));
  } catch (error) {
    log.close();
    output.error(error);
    return { failed: true, drained: true };
  }
  let side: SideEndpoint | undefined;
  try {
    side = await options.startSide?.(server, choice);
  } catch (error) {
    controller.abort();
    await server.finished.catch(() => {});
    log.close();
    output.error(error);
    return { failed: true, drained: true };
  }
  const reportStats = createStatsReporter(server, output, {
    json,
    beforeLine: log.flush,
  });
  // Windows has no SIGUSR2.
  const removeStatsSignal = onSignals(
    Deno.build.os === "windows" ? [] : ["SIGUSR2"],
    reportStats,
  );
  announce(server, output, {
    // A name stands for each address it resolved to, a wildcard for each
    // socket it expanded into.
    hostnames: server.boundFor.map((asked) =>
      options.hosts.find((host) => sameHost(host.address, asked))?.name ??
        asked
    ),
    json,
    quiet: options.quiet,
    rateIsDefault: options.rateIsDefault,
    io: choice,
  });
  side?.announce?.();
  // Whether a rate limit applies is known only once the hosts are bound.
  const idle = options.rateFlags;
  if (server.rateLimit.rate === 0 && idle.length > 0) {
    output.warn(
      `${idle.join(" and ")} ${
        idle.length === 1 ? "does" : "do"
      } nothing without a rate limit (--rate, or the default on an address that is not loopback)`,
    );
  }
  const stopStats = options.statsInterval === undefined
    ? undefined
    : startStatsReport(server, output, {
      seconds: options.statsInterval,
      json,
      report: reportStats,
    });
  let stats: EchoStats;
  try {
    stats = await server.finished;
  } catch (error) {
    // Only the batch backend can fail after binding (its Worker may not run).
    controller.abort();
    output.error(error);
    return { failed: true, drained: true };
  } finally {
    removeStatsSignal();
    stopStats?.();
    await side?.close();
    log.close();
  }
  const droppedBefore = output.dropped;
  printTotals(stats, output, { json });
  const drained = await output.flush(STDOUT_DRAIN_MS);
  if (!drained || output.closed || output.dropped > droppedBefore) {
    // Standard output failed, or is stuck: the totals must not be lost, and
    // the lines the flush found it could not write are counted in them.
    output.status(`${formatShutdownLine(stats, output, { json })}\n`);
  }
  return { failed: false, drained };
}

/** Calls `listener` on each of `signals`; returns a function that stops it. */
function onSignals(
  signals: readonly Deno.Signal[],
  listener: () => void,
): () => void {
  for (const signal of signals) Deno.addSignalListener(signal, listener);
  return () => {
    for (const signal of signals) Deno.removeSignalListener(signal, listener);
  };
}
