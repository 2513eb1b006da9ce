/**
 * The one model of the measuring side, whichever I/O carries the probes
 * (Deno's sockets or the kernel engine): the options every measurement
 * takes, the events it emits as it goes, and the result of a ping or load
 * run. `report_json.ts` renders each event as one JSON line.
 *
 * @module
 */

import type { HostPort, ResolvedAddress } from "../net/address.ts";
import type { ScheduleError } from "./schedule.ts";
import type { ReplyCounts, Summary } from "./stats.ts";

/** A reply from the target carrying this run's session id. */
export interface ReplyEvent {
  /** Event type. */
  type: "reply";
  /** Index of the flow (socket) that sent the probe, from 0. */
  flow: number;
  /** Sequence number of the probe within its flow, from 0. */
  seq: number;
  /** Bytes in the reply. */
  bytes: number;
  /** Round-trip time in milliseconds. */
  rttMs: number;
  /**
   * How the reply compares with the probe: `intact`, `truncated` (a shorter
   * prefix of it) or `corrupted` (other bytes).
   */
  check: "intact" | "truncated" | "corrupted";
  /** An intact reply beyond the first for this probe. */
  duplicate: boolean;
  /** A first intact reply that came after the reply to a later probe. */
  reordered: boolean;
  /** A reply that took longer than the timeout. */
  late: boolean;
  /**
   * Kernel engine only: the wall clock stepped between the probe's send and
   * this reply, so `rttMs` is the CLOCK_MONOTONIC round trip (send stamp to
   * the reply's processing), not the kernel's timestamped one. Absent
   * otherwise.
   */
  clockStep?: true;
  /**
   * The reply carried this probe together with others, one after another
   * (a server that merges datagrams, such as a stream relay); each counts
   * as received, its round trip ending when the merged reply arrived.
   * Absent otherwise.
   */
  merged?: true;
}

/** A probe that had no reply at all by the end of the wait. */
export interface LostEvent {
  /** Event type. */
  type: "lost";
  /** Index of the flow. */
  flow: number;
  /** Sequence number of the probe. */
  seq: number;
}

/**
 * A probe whose send failed: it never left this host, so it is counted in
 * `sendErrors`, not in `sent`, and the run goes on.
 */
export interface SendErrorEvent {
  /** Event type. */
  type: "send_error";
  /** Index of the flow. */
  flow: number;
  /** Sequence number the probe would have carried. */
  seq: number;
  /** The OS's reason, lower case: `operation not permitted`. */
  reason: string;
}

/** One try of one size during a sweep. */
export interface SweepEvent {
  /** Event type. */
  type: "sweep";
  /** Payload size tried, in bytes. */
  size: number;
  /** Which try of this size, from 1. */
  attempt: number;
  /** What came back within the timeout; `unsent` when the send failed. */
  outcome: ReplyEvent["check"] | "lost" | "unsent" | "interrupted";
  /** Bytes echoed; 0 when lost or unsent. */
  bytes: number;
  /** Round-trip time in milliseconds; NaN when lost. */
  rttMs: number;
}

/** What a measurement reports as it goes, one event each. */
export type ProbeEvent =
  | ReplyEvent
  | LostEvent
  | SweepEvent
  | SendErrorEvent;

/** Options every measurement takes: those of `runProbes` and `sweepPayload`. */
export interface ProbeOptions {
  /** The echo server, already resolved. */
  target: ResolvedAddress;
  /** Local address to send from; defaults to the wildcard of the family. */
  bind?: HostPort;
  /** A reply slower than this, in ms, is late (and frees a window slot). Default 1000. */
  timeoutMs?: number;
  /** After the last send, how long to wait for replies, in ms. Default 2 x timeout. */
  waitMs?: number;
  /** Stops sending and waiting; the result covers what happened so far. */
  signal?: AbortSignal;
  /** Called for every reply, lost probe, failed send and sweep try. */
  onEvent?: (event: ProbeEvent) => void;
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

/** The outcome of `runProbes`: a ping or load run. */
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
  /**
   * Round-trip times of first intact replies, in ms. The kernel engine
   * measures each from a CLOCK_REALTIME stamp right before `sendmmsg` to the
   * kernel's receive timestamp (`SO_TIMESTAMPNS`), to the nanosecond; the
   * socket path from `performance.now()` around Deno's send and receive.
   */
  rttMs: Summary;
  /** Jitter in ms: mean absolute IPDV and RFC 3550 interarrival jitter. */
  jitterMs: { ipdv: number; rfc3550: number };
  /** How far sends strayed from their schedule (NaN for a closed loop). */
  scheduleMs: ScheduleError;
  /**
   * Rate of sends, over the span from first to last send: `pps` packets and
   * `bps` bits of UDP payload per second.
   */
  sendRate: { pps: number; bps: number };
  /** Rate of first intact replies, over the span from first to last, as `sendRate`. */
  echoRate: { pps: number; bps: number };
  /** Milliseconds from the first send to the end of the wait. */
  elapsedMs: number;
  /** Per-flow counts. */
  flows: FlowResult[];
  /** Round-trip times of first intact replies in arrival order, for a histogram. */
  rtts: number[];
  /**
   * Kernel engine only: replies whose round trip spanned a step of the wall
   * clock (see `ReplyEvent.clockStep`); their RTT is the monotonic one.
   * Absent means 0.
   */
  clockSteps?: number;
  /**
   * Replies that carried several whole probes one after another (a server
   * that merges datagrams: a stream relay); each probe in one counts as
   * received. Absent means 0.
   */
  merged?: number;
  /**
   * Kernel engine only: events (replies, lost probes, failed sends) not
   * handed to `onEvent` because the main thread fell behind the Worker
   * (such as `--ndjson` into a slow pipe). The counts above are exact
   * whatever this says. Absent means 0.
   */
  eventsDropped?: number;
  /** What carried the datagrams: Deno's sockets or the kernel engine. */
  io?: "socket" | "batch";
  /**
   * Datagrams this host's kernel dropped at the run's own sockets, summed
   * over the flows: they reached this host and its receive buffer was full
   * (the kernel's per-socket counter, read at the start and once more at
   * the end of the run). A dropped reply leaves its probe `lost`, so up to
   * this many of `lost` reached this host. `null` when it cannot be known
   * (see `hostDropsUnknown`); absent when not measured.
   */
  hostDrops?: number | null;
  /** Why `hostDrops` is `null`: what reading it would need. */
  hostDropsUnknown?: string;
  /**
   * Kernel engine only: the receive buffer sized for the rate asked for, in
   * bytes as the kernel counts them (the datagrams with its bookkeeping):
   * `asked`, the size needed (0 when the default already held it);
   * `granted`, what `getsockopt(SO_RCVBUF)` reads back; `capped`, whether
   * `net.core.rmem_max` kept it below the size needed.
   */
  receiveBuffer?: { asked: number; granted: number; capped: boolean };
}
