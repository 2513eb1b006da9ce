/**
 * The end of a ping or load run, whatever carried it: a
 * {@linkcode RunResult} from the flows' bookkeeping, so both I/O modes
 * report the same fields the same way.
 *
 * @module
 */

import type { ResolvedAddress } from "../net/address.ts";
import { addCounts, meanIpdv, rfc3550Jitter, summarize } from "./stats.ts";
import { scheduleError } from "./schedule.ts";
import type { FlowResult, ProbeEvent, RunResult } from "./types.ts";
import type { ProbeBook } from "./_book.ts";

/** Below this share of the asked send rate a run is short of its schedule. */
const RATE_SHORTFALL_SHARE = 0.95;
/**
 * How far behind its schedule a run must end before it counts as short, in
 * ms: one stall of a noisy machine at the end of a short run is no
 * shortfall of the rate.
 */
const RATE_SHORTFALL_MIN_LAG_MS = 100;

function rate(
  count: number,
  spanMs: number,
  size: number,
): RunResult["sendRate"] {
  const pps = count > 1 && spanMs > 0 ? (count - 1) / (spanMs / 1000) : NaN;
  return { pps, bps: pps * size * 8 };
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

export function summarizeRun(
  flows: ProbeBook[],
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
    } else {
      for (let seq = 0; seq < flow.sent; seq++) {
        if (flow.tracker.answered(seq) || flow.unsent(seq)) continue;
        if (flow.sentAt.get(seq) > inFlightAfter) inFlight++;
        else onEvent?.({ type: "lost", flow: flow.index, seq });
      }
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
  // A flow that sent nothing, or got no reply, has no time to add.
  const firstSend = extreme(Math.min, flows, (flow) => flow.sentAt.get(0));
  const lastSend = extreme(
    Math.max,
    flows,
    (flow) => flow.sentAt.get(flow.sent - 1),
  );
  const firstReply = extreme(Math.min, flows, (flow) => flow.firstReplyAt);
  const lastReply = extreme(Math.max, flows, (flow) => flow.lastReplyAt);
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
    clockSteps: flows.reduce((sum, flow) => sum + flow.clockSteps, 0),
    merged: flows.reduce((sum, flow) => sum + flow.merged, 0),
  };
}

/** The smallest or largest of `time` over the flows that have one; NaN if none does. */
function extreme(
  pick: (...values: number[]) => number,
  flows: ProbeBook[],
  time: (flow: ProbeBook) => number,
): number {
  const known = flows.map(time).filter((value) => !Number.isNaN(value));
  return known.length === 0 ? NaN : pick(...known);
}
