/**
 * The monitor: probes one or more targets without end, over one or more
 * flows each, in fixed memory sized by the probe rate and the timeout
 * ({@linkcode monitorRing}), and keeps a running tally per flow (counts,
 * RFC 3550 and IPDV jitter, whether the target is up) for a metrics
 * endpoint to read. It is the ping mode (`runFlows`) in its ring mode, so a probe is sent, matched,
 * verified and counted exactly as in a ping; loss is decided by the
 * timeout, and a reply after it counts as late only.
 *
 * @example Probe a server for a while
 * ```ts
 * import { serveEcho } from "../server/serve.ts";
 * import { ProbeTally, runMonitor } from "./monitor.ts";
 * import { equal } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveEcho({ hostname: "127.0.0.1", port: 0, signal: controller.signal });
 * const target = { ...server.addr, family: "IPv4" as const };
 * const tally = new ProbeTally();
 * const stop = new AbortController();
 * setTimeout(() => stop.abort(), 200);
 * await runMonitor({ targets: [target], tallies: [[tally]], intervalMs: 20, signal: stop.signal });
 * equal(tally.counts.lost, 0);
 * controller.abort();
 * await server.finished;
 * ```
 *
 * @module
 */

import type { ResolvedAddress } from "../net/address.ts";
import type { ProbeEvent } from "./types.ts";
import { type FlowRunOptions, runFlows } from "./run.ts";

/**
 * The most probes a monitor's flow keeps state for: the timeout over the
 * interval may not exceed it, since a probe within its timeout must keep
 * its slot.
 */
export const MAX_MONITOR_RING = 65_536;
/** The fewest slots of a flow's ring, so that a slow reply still counts as late. */
const MIN_MONITOR_RING = 64;
/** Bytes of state per ring slot: five Float64Array times and two byte flags. */
export const RING_SLOT_BYTES = 5 * 8 + 2;

/**
 * The ring a monitor's flow needs at one probe every `intervalMs` with a
 * timeout of `timeoutMs`: a power of two that holds every probe within its
 * timeout, and twice that when it fits, so a reply up to about twice the
 * timeout counts as late rather than ignored.
 *
 * @param intervalMs Milliseconds between probes of one flow.
 * @param timeoutMs Milliseconds after which a probe without reply is lost.
 * @returns The slots per flow, from 64 to {@linkcode MAX_MONITOR_RING}.
 * @throws {RangeError} When more than {@linkcode MAX_MONITOR_RING} probes
 * would be within their timeout at once.
 */
export function monitorRing(intervalMs: number, timeoutMs: number): number {
  const inFlight = Math.ceil(timeoutMs / Math.max(intervalMs, 1e-3)) + 1;
  if (inFlight > MAX_MONITOR_RING) {
    throw new RangeError(
      `Cannot probe every ${intervalMs} ms with a timeout of ${timeoutMs} ms: a monitor keeps at most ${MAX_MONITOR_RING} probes per flow within their timeout, and this needs ${inFlight}`,
    );
  }
  let ring = MIN_MONITOR_RING;
  while (ring < 2 * inFlight && ring < MAX_MONITOR_RING) ring *= 2;
  return ring;
}

/** The probes `up` looks back on: up when any of them got an intact reply. */
export const UP_WINDOW = 3;
/** IPDV pairs the IPDV gauge averages over. */
const IPDV_WINDOW = 16;
/** Sequence numbers back an IPDV pair is looked for. */
const PAIR_RING = 64;
/** RFC 3550's gain of the interarrival jitter estimate. */
const RFC3550_GAIN = 1 / 16;

/** The counters of one target, as the monitor exposes them. */
export interface TargetCounts {
  /** Probes that left this host. */
  sent: number;
  /** Probes whose first intact reply came within the timeout. */
  received: number;
  /** Probes without any reply within the timeout. */
  lost: number;
  /** First intact replies that came after their probe was counted lost. */
  late: number;
  /** Intact replies beyond the first for a probe. */
  duplicates: number;
  /** Replies whose bytes differ from the probe (truncated ones too). */
  corrupted: number;
  /** Probes whose send failed (never left, not lost). */
  sendErrors: number;
}

/**
 * A running tally of one target's probe events: counts, jitter and `up`,
 * in fixed memory however long it runs.
 */
export class ProbeTally {
  /** The counts so far. */
  readonly counts: TargetCounts = {
    sent: 0,
    received: 0,
    lost: 0,
    late: 0,
    duplicates: 0,
    corrupted: 0,
    sendErrors: 0,
  };
  /** Mean absolute IPDV of the latest pairs of consecutive probes, in ms; NaN before a pair. */
  ipdvMs = NaN;
  /** RFC 3550 interarrival jitter over RTTs in arrival order, in ms; NaN before two replies. */
  rfc3550Ms = NaN;
  #recent: boolean[] = [];
  #lastArrivalMs = NaN;
  #pairSeq = new Float64Array(PAIR_RING).fill(-1);
  #pairRtt = new Float64Array(PAIR_RING);
  #ipdv = new Float64Array(IPDV_WINDOW);
  #ipdvCount = 0;

  /** `onRtt` gets the RTT of each received probe, in milliseconds (a histogram). */
  constructor(readonly onRtt?: (rttMs: number) => void) {}

  /** Whether any of the last {@linkcode UP_WINDOW} decided probes got an intact reply. */
  get up(): boolean {
    return this.#recent.includes(true);
  }

  /** Counts a probe that left. */
  sent(): void {
    this.counts.sent++;
  }

  /** Counts one event of the run. */
  record(event: ProbeEvent): void {
    switch (event.type) {
      case "send_error":
        this.counts.sendErrors++;
        return;
      case "lost":
        this.counts.lost++;
        this.#decide(false);
        return;
      case "reply":
        break;
      default:
        return;
    }
    if (event.duplicate) {
      this.counts.duplicates++;
    } else if (event.check !== "intact") {
      this.counts.corrupted++;
      if (!event.late) this.#decide(false);
    } else if (event.late) {
      this.counts.late++;
    } else {
      this.counts.received++;
      this.#decide(true);
      this.onRtt?.(event.rttMs);
      this.#jitter(event.seq, event.rttMs);
    }
  }

  #decide(intact: boolean): void {
    this.#recent.push(intact);
    if (this.#recent.length > UP_WINDOW) this.#recent.shift();
  }

  #jitter(seq: number, rttMs: number): void {
    if (!Number.isNaN(this.#lastArrivalMs)) {
      const d = Math.abs(rttMs - this.#lastArrivalMs);
      this.rfc3550Ms = (Number.isNaN(this.rfc3550Ms) ? 0 : this.rfc3550Ms) +
        (d - (Number.isNaN(this.rfc3550Ms) ? 0 : this.rfc3550Ms)) *
          RFC3550_GAIN;
    }
    this.#lastArrivalMs = rttMs;
    // A pair with the probe before and, when replies were reordered, after.
    for (const other of [seq - 1, seq + 1]) {
      const slot = other & (PAIR_RING - 1);
      if (other >= 0 && this.#pairSeq[slot] === other) {
        this.#ipdv[this.#ipdvCount++ % IPDV_WINDOW] = Math.abs(
          rttMs - this.#pairRtt[slot]!,
        );
      }
    }
    const slot = seq & (PAIR_RING - 1);
    this.#pairSeq[slot] = seq;
    this.#pairRtt[slot] = rttMs;
    const n = Math.min(this.#ipdvCount, IPDV_WINDOW);
    if (n > 0) {
      this.ipdvMs = this.#ipdv.subarray(0, n).reduce((a, b) => a + b) / n;
    }
  }
}

/** Options for {@linkcode runMonitor}. */
export interface MonitorOptions {
  /** The echo servers. */
  targets: readonly ResolvedAddress[];
  /** Per target, in the order of `targets`, one tally per flow. */
  tallies: readonly (readonly ProbeTally[])[];
  /** Send probe n of each flow at start + n x interval, in ms. Default 1000. */
  intervalMs?: number;
  /** A probe without a reply this long (ms) is lost. Default 1000. */
  timeoutMs?: number;
  /** Payload bytes per probe. Default 64. */
  size?: number;
  /** Flows per target, each from its own source port. Default 1. */
  flows?: number;
  /** Probes per target; unbounded by default (a `/probe` scrape gives one). */
  count?: number;
  /** Ends the run at once. */
  signal?: AbortSignal;
  /** Every event of target `index`, after its tally has counted it. */
  onEvent?: (index: number, event: ProbeEvent) => void;
}

/**
 * Probes every target on its own schedule until `signal` aborts (or
 * `count` probes each, then their timeout), counting into `tallies`.
 * Throws RangeError as `runProbes` does for a bad size or interval, or
 * {@linkcode monitorRing} for too many probes within their timeout, and
 * rejects with a socket's error when a receive fails; a failed send is
 * counted and the run goes on.
 */
export async function runMonitor(options: MonitorOptions): Promise<void> {
  await Promise.all(
    options.targets.map((target, index) =>
      probeTarget(target, options.tallies[index]!, {
        ...options,
        onEvent: (event) => options.onEvent?.(index, event),
      })
    ),
  );
}

/**
 * One target of {@linkcode runMonitor}: `tallies.length` flows (at least
 * one), each counting into its own tally; a monitor whose targets come and
 * go starts and stops each with its own signal. Throws as `runMonitor` does.
 */
export async function probeTarget(
  target: ResolvedAddress,
  tallies: readonly ProbeTally[],
  options: Omit<MonitorOptions, "targets" | "tallies" | "onEvent"> & {
    onEvent?: (event: ProbeEvent) => void;
    /** The probe format of each flow (STAMP); the plain probe by default. */
    format?: FlowRunOptions["format"];
  },
): Promise<void> {
  const { timeoutMs = 1000 } = options;
  const intervalMs = options.intervalMs ?? 1000;
  await runFlows({
    target,
    size: options.size,
    flows: tallies.length,
    intervalMs,
    timeoutMs,
    waitMs: timeoutMs,
    count: options.count,
    signal: options.signal,
    ring: monitorRing(intervalMs, timeoutMs),
    format: options.format,
    onSend: (flow) => tallies[flow]!.sent(),
    onEvent: (event) => {
      if (event.type !== "sweep") tallies[event.flow]!.record(event);
      options.onEvent?.(event);
    },
  });
}
