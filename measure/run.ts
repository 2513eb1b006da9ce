/**
 * Ping and load: probes on an open-loop schedule or in a closed-loop window,
 * over one or more flows, summarised into a {@linkcode RunResult}.
 *
 * @module
 */

import type { HostPort, ResolvedAddress } from "../net/address.ts";
import { newSessionId } from "./probe.ts";
import {
  addCounts,
  meanIpdv,
  type ReplyCounts,
  rfc3550Jitter,
  type ScheduleError,
  scheduleError,
  summarize,
  type Summary,
} from "./stats.ts";
import {
  checkCount,
  checkMs,
  checkProbeSize,
  DEFAULT_PROBE_SIZE,
  DEFAULT_PROBE_TIMEOUT_MS,
  type EngineOptions,
  type ProbeEvent,
} from "./_common.ts";
import { Flow, Wakeup } from "./_flow.ts";

const DEFAULT_INTERVAL_MS = 1000;

/** Options for {@linkcode runProbes}. */
export interface RunOptions extends EngineOptions {
  /** Probes per flow; unbounded by default (stop with `durationMs` or `signal`). */
  count?: number;
  /** Stop sending after this many milliseconds. */
  durationMs?: number;
  /** Payload per probe in bytes, from the header size to the family limit. Default 64. */
  size?: number;
  /** Open loop: send probe n at start + n x interval, in ms. Default 1000 without `window`. */
  intervalMs?: number;
  /** Closed loop: keep this many probes in flight per flow. */
  window?: number;
  /** Number of flows, each from its own source port. Default 1. */
  flows?: number;
  /** Called after each probe leaves, for a live status. */
  onSend?: (flow: number, seq: number) => void;
}

/** The counts of one flow. */
export interface FlowResult extends ReplyCounts {
  /** Index of the flow. */
  flow: number;
  /** The local address the flow sent from. */
  local: HostPort;
}

/** A rate in packets and bits of UDP payload per second. */
export interface Rate {
  /** Packets per second. */
  pps: number;
  /** Bits of UDP payload per second. */
  bps: number;
}

/** The outcome of {@linkcode runProbes}. */
export interface RunResult extends ReplyCounts {
  /** The echo server. */
  target: ResolvedAddress;
  /** Payload bytes per probe. */
  size: number;
  /** `interval` for an open-loop schedule, `window` for a closed loop. */
  pacing: "interval" | "window";
  /** Replies slower than the timeout (still counted as received). */
  late: number;
  /** Replies that were shorter prefixes of their probe (also `corrupted`). */
  truncated: number;
  /** Datagrams from elsewhere or without this run's session id. */
  ignored: number;
  /** The OS's reason for the first failed send (see `sendErrors`). */
  sendError?: string;
  /** Round-trip times of first intact replies, in ms. */
  rttMs: Summary;
  /** Jitter in ms: mean absolute IPDV and RFC 3550 interarrival jitter. */
  jitterMs: { ipdv: number; rfc3550: number };
  /** How far sends strayed from their schedule (NaN for a closed loop). */
  scheduleMs: ScheduleError;
  /** Rate of sends, over the span from first to last send. */
  sendRate: Rate;
  /** Rate of first intact replies, over the span from first to last. */
  echoRate: Rate;
  /** Milliseconds from the first send to the end of the wait. */
  elapsedMs: number;
  /** Per-flow counts. */
  flows: FlowResult[];
  /** Round-trip times of first intact replies in arrival order, for a histogram. */
  rtts: number[];
}

function rate(count: number, spanMs: number, size: number): Rate {
  const pps = count > 1 && spanMs > 0 ? (count - 1) / (spanMs / 1000) : NaN;
  return { pps, bps: pps * size * 8 };
}

/** When, how long and what one flow sends; times in ms. */
interface Pacing {
  size: number;
  start: number;
  count: number;
  durationMs: number;
  intervalMs: number;
  waitMs: number;
  signal: AbortSignal | undefined;
}

/** Sends probe n at start + n x interval; a late send never shifts the rest. */
async function openLoop(flow: Flow, pace: Pacing): Promise<void> {
  const { start, count, durationMs, intervalMs, signal } = pace;
  const sleeper = new Wakeup();
  for (let n = 0; n < count && n * intervalMs < durationMs; n++) {
    const due = start + n * intervalMs;
    const delay = due - performance.now();
    if (delay > 0) await sleeper.wait(delay, signal);
    if (signal?.aborted || flow.error !== undefined) return;
    await flow.send(pace.size, due);
  }
}

/** Keeps `window` probes in flight; a probe past its timeout frees its slot. */
async function closedLoop(
  flow: Flow,
  pace: Pacing,
  window: number,
): Promise<void> {
  const { start, count, durationMs, signal } = pace;
  while (
    !signal?.aborted && flow.error === undefined && flow.sent < count &&
    performance.now() - start < durationMs
  ) {
    const deadline = flow.expire(performance.now());
    if (flow.inflight < window) {
      await flow.send(pace.size);
      continue;
    }
    const remaining = durationMs - (performance.now() - start);
    await flow.wakeup.wait(
      Math.min(deadline - performance.now(), remaining),
      signal,
    );
  }
}

/**
 * Sends probes to an echo server and measures their round trips: on an
 * open-loop schedule (`intervalMs`; probe n leaves at start + n x interval,
 * late sends catch up rather than shift the schedule) or in a closed loop
 * (`window` probes in flight), over `flows` sockets at once. Resolves to a
 * {@linkcode RunResult} (times in milliseconds, sizes in bytes) once the
 * wait after the last send is over or `signal` aborts.
 *
 * Throws RangeError when `size` is below the probe header or above the
 * family limit, when `count`, `window` or `flows` is not a positive integer,
 * when `durationMs`, `intervalMs` or `waitMs` is negative or `timeoutMs`
 * below 1, or when several flows would bind one nonzero port. Rejects with
 * the socket's error when a receive fails; a failed send is counted in
 * `sendErrors` and the run goes on.
 */
export async function runProbes(options: RunOptions): Promise<RunResult> {
  const {
    target,
    size = DEFAULT_PROBE_SIZE,
    timeoutMs = DEFAULT_PROBE_TIMEOUT_MS,
    flows: flowCount = 1,
    count = Infinity,
    durationMs = Infinity,
    window,
    signal,
    onEvent,
    onSend,
    bind,
  } = options;
  const waitMs = options.waitMs ?? 2 * timeoutMs;
  const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
  checkProbeSize(size, target);
  checkCount("count", count);
  checkCount("window", window);
  checkCount("flows", flowCount);
  checkMs("duration", durationMs === Infinity ? undefined : durationMs);
  checkMs("interval", intervalMs);
  checkMs("timeout", timeoutMs, 1);
  checkMs("wait", waitMs);
  if (flowCount > 1 && (bind?.port ?? 0) !== 0) {
    throw new RangeError(
      `Cannot bind ${flowCount} flows to port ${bind!.port}: flows need port 0`,
    );
  }
  const session = newSessionId();
  const flows: Flow[] = [];
  try {
    for (let i = 0; i < flowCount; i++) {
      flows.push(
        new Flow(i, session, {
          target,
          bind,
          timeoutMs,
          onReply: onEvent,
          onSendError: onEvent,
          onSend,
        }),
      );
    }
    const start = performance.now();
    const pace: Pacing = {
      size,
      start,
      count,
      durationMs,
      intervalMs,
      waitMs,
      signal,
    };
    await Promise.all(flows.map(async (flow) => {
      if (window === undefined) await openLoop(flow, pace);
      else await closedLoop(flow, pace, window);
      await flow.drain(waitMs, signal);
    }));
    const end = performance.now();
    for (const flow of flows) flow.close();
    await Promise.all(flows.map((flow) => flow.receiving));
    const failed = flows.find((flow) => flow.error !== undefined);
    if (failed) throw failed.error;
    return summarizeRun(flows, {
      target,
      size,
      pacing: window === undefined ? "interval" : "window",
      start,
      end,
      onEvent,
    });
  } finally {
    // Also on a failed send: no receive may outlive the run.
    for (const flow of flows) flow.close();
    await Promise.all(flows.map((flow) => flow.receiving));
  }
}

function summarizeRun(
  flows: Flow[],
  context: {
    target: ResolvedAddress;
    size: number;
    pacing: "interval" | "window";
    start: number;
    end: number;
    onEvent?: (event: ProbeEvent) => void;
  },
): RunResult {
  const { target, size, pacing, start, end, onEvent } = context;
  const flowResults: FlowResult[] = flows.map((flow) => ({
    flow: flow.index,
    local: flow.local,
    ...flow.counts(),
  }));
  for (const flow of flows) {
    for (let seq = 0; seq < flow.sent; seq++) {
      if (!flow.tracker.answered(seq) && !flow.unsent(seq)) {
        onEvent?.({ type: "lost", flow: flow.index, seq });
      }
    }
  }
  const rtts = flows.flatMap((flow) => flow.arrivals);
  // A NaN between flows keeps IPDV pairs inside one flow.
  const bySeq = flows.flatMap((
    flow,
  ) => [...flow.rttBySeq.slice(flow.sent), NaN]);
  let jitterSum = 0;
  let jitterWeight = 0;
  for (const flow of flows) {
    if (flow.arrivals.length < 2) continue;
    jitterSum += rfc3550Jitter(flow.arrivals) * (flow.arrivals.length - 1);
    jitterWeight += flow.arrivals.length - 1;
  }
  const scheduled = pacing === "interval"
    ? flows.flatMap((flow) => [...flow.scheduled.slice(flow.sent)])
    : [];
  const actual = pacing === "interval"
    ? flows.flatMap((flow) => [...flow.sentAt.slice(flow.sent)])
    : [];
  const firstSend = Math.min(...flows.map((flow) => flow.sentAt.get(0)));
  const lastSend = Math.max(
    ...flows.map((flow) => flow.sentAt.get(flow.sent - 1)),
  );
  const firstReply = Math.min(...flows.map((flow) => flow.firstReplyAt));
  const lastReply = Math.max(...flows.map((flow) => flow.lastReplyAt));
  const counts = addCounts(flowResults);
  return {
    target,
    size,
    pacing,
    ...counts,
    late: flows.reduce((sum, flow) => sum + flow.late, 0),
    truncated: flows.reduce((sum, flow) => sum + flow.truncated, 0),
    ignored: flows.reduce((sum, flow) => sum + flow.ignored, 0),
    sendError: flows.find((flow) => flow.sendError)?.sendError,
    rttMs: summarize(rtts),
    jitterMs: {
      ipdv: meanIpdv(bySeq),
      rfc3550: jitterWeight > 0 ? jitterSum / jitterWeight : NaN,
    },
    scheduleMs: scheduleError(scheduled, actual),
    sendRate: rate(counts.sent, lastSend - firstSend, size),
    echoRate: rate(counts.received, lastReply - firstReply, size),
    elapsedMs: end - start,
    flows: flowResults,
    rtts,
  };
}
