/**
 * Ping and load: probes on an open-loop schedule or in a closed-loop window,
 * over one or more flows, summarised into a {@linkcode RunResult}.
 *
 * @module
 */

import {
  type HostPort,
  isUnspecified,
  type ResolvedAddress,
} from "../net/address.ts";
import {
  decodeProbe,
  encodeProbeInto,
  newSessionId,
  verifyProbe,
} from "./probe.ts";
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
import { Flow, type ProbeFormat } from "./_flow.ts";

export type { ProbeFormat } from "./_flow.ts";
import { Wakeup, Yielder } from "./_times.ts";

export { Yielder } from "./_times.ts";

const DEFAULT_INTERVAL_MS = 1000;
/** The longest the warm-up waits for a socket's datagram to itself, in ms. */
const WARM_UP_WAIT_MS = 50;
/** Below this share of the asked send rate a run is short of its schedule. */
const RATE_SHORTFALL_SHARE = 0.95;
/**
 * How far behind its schedule a run must end before it counts as short, in
 * ms: one stall of a noisy machine at the end of a short run is no
 * shortfall of the rate.
 */
const RATE_SHORTFALL_MIN_LAG_MS = 100;

/** Options for {@linkcode runProbes}. */
export interface RunOptions extends EngineOptions {
  /** Probes per flow; unbounded by default (stop with `durationMs` or `signal`). */
  count?: number;
  /** A hard deadline for sending, in milliseconds from the first send. */
  durationMs?: number;
  /**
   * Stops sending; replies still due are awaited as after the last send,
   * but at most the timeout. `signal` then ends the wait at once.
   */
  stop?: AbortSignal;
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
  /**
   * A run without end in fixed memory (the monitor): keep the state of the
   * latest `ring` probes per flow only (a power of two). Loss is then
   * decided by the timeout as the run goes: a `lost` event as soon as a
   * probe's timeout passes without a reply, and a reply after that is
   * `late` only. The result has no RTT list, and its RTT and jitter
   * figures are empty: read the events instead.
   */
  ring?: number;
  /** The probe format of each flow (STAMP with `--stamp`); the plain probe by default. */
  format?: (flow: number, session: number) => ProbeFormat;
}

/** The counts of one flow. */
export interface FlowResult extends ReplyCounts {
  /** Index of the flow. */
  flow: number;
  /** The local address the flow sent from. */
  local: HostPort;
  /** Probes still within their timeout when `signal` cut the run short; absent means 0. */
  inFlight?: number;
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
  /**
   * Probes without a reply that were sent less than the timeout before
   * `signal` cut the run short: neither received nor `lost`. Absent means 0.
   */
  inFlight?: number;
  /**
   * The open-loop send rate asked for and achieved, in probes per second
   * over all flows, from the first send to the end of sending; `short` when
   * below 95% of the rate asked and over 100 ms behind the schedule. NaN and
   * false for a closed loop and for an interval of 0 (as fast as possible);
   * absent when not measured.
   */
  schedule?: { askedPps: number; achievedPps: number; short: boolean };
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
  /** Aborted by `stop` or `signal`: no more sends. */
  sending: AbortSignal;
  /** Decide loss by the timeout while sending (a ring run). */
  expire: boolean;
}

/**
 * Sends probe n at start + n x interval; a late send never shifts the rest,
 * and nothing leaves after the deadline, however far behind the loop is.
 */
async function openLoop(flow: Flow, pace: Pacing): Promise<number> {
  const { start, count, durationMs, intervalMs, sending } = pace;
  const sleeper = new Wakeup();
  const yielder = new Yielder();
  for (let n = 0; n < count && n * intervalMs < durationMs; n++) {
    const due = start + n * intervalMs;
    let delay = due - performance.now();
    // A ring run tells a loss when the timeout passes, not at the next send.
    while (pace.expire && delay > 0 && !sending.aborted) {
      const next = flow.expire(performance.now());
      await sleeper.wait(Math.min(delay, next - performance.now()), sending);
      delay = due - performance.now();
    }
    if (delay > 0) await sleeper.wait(delay, sending);
    else await yielder.maybeYield();
    const now = performance.now();
    if (sending.aborted || flow.error !== undefined) return now;
    if (now - start >= durationMs) return start + durationMs;
    await flow.send(pace.size, due);
  }
  return performance.now();
}

/** Keeps `window` probes in flight; a probe past its timeout frees its slot. */
async function closedLoop(
  flow: Flow,
  pace: Pacing,
  window: number,
): Promise<number> {
  const { start, count, durationMs, sending: signal } = pace;
  const yielder = new Yielder();
  while (
    !signal.aborted && flow.error === undefined && flow.sent < count &&
    performance.now() - start < durationMs
  ) {
    await yielder.maybeYield();
    if (signal.aborted || performance.now() - start >= durationMs) break;
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
  return performance.now();
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
    stop,
    onEvent,
    onSend,
    bind,
    ring,
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
  const sending = AbortSignal.any(
    [stop, signal].filter((s) => s !== undefined),
  );
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
          ring,
          onLost: (flow, seq) => onEvent?.({ type: "lost", flow, seq }),
          format: options.format?.(i, session),
        }),
      );
    }
    warmUp(session, size);
    await Promise.all(flows.map(warmUpSocket));
    const start = performance.now();
    const pace: Pacing = {
      size,
      start,
      count,
      durationMs,
      intervalMs,
      waitMs,
      sending,
      expire: ring !== undefined,
    };
    let sendEnd = start;
    await Promise.all(flows.map(async (flow) => {
      const ended = window === undefined
        ? await openLoop(flow, pace)
        : await closedLoop(flow, pace, window);
      sendEnd = Math.max(sendEnd, ended);
      // After a stop, what is still due comes within the timeout or never.
      await flow.drain(
        stop?.aborted ? Math.min(waitMs, timeoutMs) : waitMs,
        signal,
      );
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
      // Only a hard stop leaves probes in flight; otherwise the wait is over.
      inFlightAfter: signal?.aborted ? end - timeoutMs : Infinity,
      askedPps: window === undefined && intervalMs > 0
        ? flowCount * 1000 / intervalMs
        : NaN,
      sendEnd,
      onEvent,
    });
  } finally {
    // Also on a failed send: no receive may outlive the run.
    for (const flow of flows) flow.close();
    await Promise.all(flows.map((flow) => flow.receiving));
  }
}

/**
 * Runs the probe code once before the first probe is timed: a cold encode
 * and verify would otherwise land in probe 0's round-trip time.
 */
function warmUp(session: number, size: number): void {
  const bytes = new Uint8Array(size);
  const header = { session, seq: 0, sentAt: performance.timeOrigin };
  encodeProbeInto(bytes, header);
  decodeProbe(bytes);
  verifyProbe(bytes, header, size);
}

/**
 * Sends one empty datagram from a flow's socket to itself and waits for it
 * (at most WARM_UP_WAIT_MS), so the first send and receive of the socket are
 * not part of probe 0's round trip; it is not counted as ignored.
 */
async function warmUpSocket(flow: Flow): Promise<void> {
  const { hostname, port } = flow.local;
  const self = isUnspecified(hostname)
    ? (flow.options.target.family === "IPv6" ? "::1" : "127.0.0.1")
    : hostname;
  const before = flow.ignored;
  try {
    await flow.conn.send(new Uint8Array(0), {
      hostname: self,
      port,
      transport: "udp",
    });
  } catch {
    // Only a warm-up: the probes will meet and report any real failure.
    return;
  }
  const end = performance.now() + WARM_UP_WAIT_MS;
  while (flow.ignored === before && performance.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  if (flow.ignored > before) flow.ignored--;
}

/** The asked and achieved open-loop rate, in probes per second. */
function scheduleCheck(
  sent: number,
  context: { askedPps: number; start: number; sendEnd: number },
): NonNullable<RunResult["schedule"]> {
  const { askedPps, start, sendEnd } = context;
  const spanMs = sendEnd - start;
  if (!Number.isFinite(askedPps) || sent === 0 || spanMs <= 0) {
    return { askedPps, achievedPps: NaN, short: false };
  }
  // Probe n is due at n / rate: the span holds span x rate + 1 of them.
  const achievedPps = Math.min(sent / spanMs * 1000, askedPps);
  const due = spanMs / 1000 * askedPps;
  const lagMs = (due - sent) / askedPps * 1000;
  return {
    askedPps,
    achievedPps,
    short: achievedPps < RATE_SHORTFALL_SHARE * askedPps &&
      lagMs > RATE_SHORTFALL_MIN_LAG_MS,
  };
}

function summarizeRun(
  flows: Flow[],
  context: {
    target: ResolvedAddress;
    size: number;
    pacing: "interval" | "window";
    start: number;
    end: number;
    /** Unanswered probes sent after this time are in flight, not lost. */
    inFlightAfter: number;
    askedPps: number;
    sendEnd: number;
    onEvent?: (event: ProbeEvent) => void;
  },
): RunResult {
  const { target, size, pacing, start, end, inFlightAfter, onEvent } = context;
  const flowResults: FlowResult[] = flows.map((flow) => {
    let inFlight = 0;
    if (flow.options.ring !== undefined) {
      // Only the ring's probes are known: each expires once, as it went.
      flow.expire(Number.isFinite(inFlightAfter) ? end : Infinity);
      inFlight = flow.inflight;
    }
    for (
      let seq = 0;
      flow.options.ring === undefined && seq < flow.sent;
      seq++
    ) {
      if (flow.tracker.answered(seq) || flow.unsent(seq)) continue;
      if (flow.sentAt.get(seq) > inFlightAfter) inFlight++;
      else onEvent?.({ type: "lost", flow: flow.index, seq });
    }
    const counts = flow.counts();
    counts.lost -= inFlight;
    return { flow: flow.index, local: flow.local, ...counts, inFlight };
  });
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
  // With an interval of 0 every probe is due at once: no schedule to miss.
  const timed = pacing === "interval" && Number.isFinite(context.askedPps);
  const scheduled = timed
    ? flows.flatMap((flow) => [...flow.scheduled.slice(flow.sent)])
    : [];
  const actual = timed
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
    inFlight: flowResults.reduce((sum, flow) => sum + (flow.inFlight ?? 0), 0),
    schedule: scheduleCheck(counts.sent, context),
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
