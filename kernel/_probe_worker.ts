/**
 * The Worker of the kernel engine (see `probes.ts`): the whole probe
 * loop of a ping or load run next to its system calls (`sender.ts`).
 * It paces an open loop on an absolute CLOCK_MONOTONIC schedule (probe n
 * is due at start + n x interval; `ppoll` until shortly before, then a spin
 * to the deadline; a late send never shifts the rest), keeps a closed
 * loop's window full, matches replies through the same {@linkcode ProbeBook}
 * as the socket path, and sends the main thread its events in batches and
 * the {@linkcode RunResult} of the same `summarizeRun` at the end.
 *
 * Round trips run from a CLOCK_REALTIME stamp right before the `sendmmsg`
 * that sends the probe to the kernel's CLOCK_REALTIME receive timestamp
 * (the realtime read when the reply is handled, when the kernel gave none).
 * Probes due together (a closed loop refilling its window, an open loop
 * behind its schedule or at an interval of 0) leave in one call and share
 * its stamp, the start of that call. When the realtime and monotonic
 * clocks disagree on how long passed between the send and the reply's
 * processing by more than {@linkcode CLOCK_STEP_TOLERANCE_MS}, the wall
 * clock stepped: the reply is marked `clockStep` and its RTT is the
 * monotonic one (send stamp to processing, a little longer than the wire).
 *
 * A probe format other than the plain probe (`--stamp`) comes from
 * `_probe_format.ts`; its probes leave one by one, each stamped right
 * before its own `sendto`.
 *
 * @module
 */

import { errorMessage } from "../net/errors.ts";
import { openSender, type SenderEngine } from "./sender.ts";
import { encodeProbeInto } from "../measure/probe.ts";
import type { ProbeEvent } from "../measure/types.ts";
import {
  type FormatFactory,
  formatsOf,
  loadFormat,
  sendFormatted,
} from "./_probe_format.ts";
import { type Arrival, ProbeBook, type ReplyTiming } from "../measure/_book.ts";
import { Times } from "../measure/_times.ts";
import { primeSockets, warmUp } from "./_probe_warm_up.ts";
import { summarizeRun } from "../measure/_summary.ts";
import type { WorkerMessage } from "./_channel.ts";
import { ProbeEventWriter } from "./_probe_events.ts";
import { ABORT, type EngineConfig, GO, STOP } from "./probes.ts";
import type { RunResult } from "../measure/types.ts";

/**
 * How far realtime and monotonic elapsed times may differ before a reply
 * counts as spanning a clock step, in ms: NTP slews at most 0.5 ms per
 * second, and a probe's timeout is seconds at most.
 */
export const CLOCK_STEP_TOLERANCE_MS = 1;
/** Wake at least this often to read the stop flag, in ms. */
const MAX_WAIT_MS = 20;
/** Sleep in `ppoll` until this long before a send is due, then spin, in ms. */
const SPIN_MS = 0.2;
/** How often, at most, the main thread hears of new events, in ms. */
const FLUSH_INTERVAL_MS = 50;
/** Events that, piled up, are announced at once. */
const FLUSH_EVENTS = 1024;
/**
 * Events are announced only when the next send is at least this far off,
 * in ms, so posting never delays a probe.
 */
const FLUSH_MARGIN_MS = 0.3;
/**
 * Events not announced this long, in ms, are announced before the wait
 * whenever there is room: a loop that never rests after a reply (an
 * interval below the spin) still drains the ring.
 */
const FLUSH_OVERDUE_MS = 2 * FLUSH_INTERVAL_MS;
/** Open-loop rounds sent at most before replies and flags are looked at. */
const MAX_ROUNDS_PER_TURN = 64;
/**
 * Probes one `sendmmsg` carries at most. Every probe of a batch carries the
 * call's start as its send time, so a long batch adds the kernel's work on
 * the probes before it to the last ones' round trips, and holds the
 * server's replies back; short batches keep most of the saving in calls.
 */
const SEND_BATCH = 8;
/** After a failed send, a closed loop pauses this long, in ms. */
const SEND_ERROR_PAUSE_MS = 1;
/** The header's send time: written by the sender right before `sendmmsg`. */
const STAMP_OFFSET = 12;

declare const self: {
  onmessage: ((event: MessageEvent<EngineConfig>) => void) | null;
  postMessage(message: WorkerMessage<RunResult>): void;
};

/** The round trip of a reply being handled, from the engine's clocks. */
class KernelTiming implements ReplyTiming {
  clockStep = false;
  flow = 0;
  arrivalReal = NaN;
  nowReal = NaN;
  nowMono = NaN;

  constructor(readonly books: ProbeBook[], readonly sentReal: Times[]) {}

  rttMs(seq: number): number {
    const sentReal = this.sentReal[this.flow]!.get(seq);
    const monoRtt = this.nowMono - this.books[this.flow]!.sentAt.get(seq);
    this.clockStep =
      Math.abs(this.nowReal - sentReal - monoRtt) > CLOCK_STEP_TOLERANCE_MS;
    if (this.clockStep) return monoRtt;
    // T4 of `arrivalEpochMs`: the round trip and the one-way parts share it.
    const arrived = Number.isNaN(this.arrivalReal)
      ? this.nowReal
      : this.arrivalReal;
    return arrived - sentReal;
  }
}

function run(config: EngineConfig, format?: FormatFactory): void {
  const { size, timeoutMs, count, durationMs, intervalMs, window } = config;
  const control = new Int32Array(config.control);
  const { engine, release } = openSender({
    fds: config.fds,
    target: config.targetSockaddr,
    size,
  });
  try {
    runLoop(config, engine, control, size, {
      timeoutMs,
      count,
      durationMs,
      intervalMs,
      window,
      format,
    });
  } finally {
    release();
  }
}

function runLoop(
  config: EngineConfig,
  engine: SenderEngine,
  control: Int32Array,
  size: number,
  pace:
    & Pick<
      EngineConfig,
      "timeoutMs" | "count" | "durationMs" | "intervalMs" | "window"
    >
    & { format?: FormatFactory },
): void {
  const { timeoutMs, count, durationMs, intervalMs, window } = pace;
  const writer = new ProbeEventWriter(
    config.channel,
    (message) => self.postMessage(message),
  );
  const push = (event: ProbeEvent) => writer.push(event);
  // Nobody reads replies and losses: not even their events are made.
  const replyEvents = config.events && config.replyEvents;
  const sentOk = writer.sent;
  let lastFlush = engine.monoNow();
  const flushDue = (now: number) =>
    writer.unposted >= FLUSH_EVENTS || now - lastFlush >= FLUSH_INTERVAL_MS;
  const formats = formatsOf(pace.format, config.fds.length, {
    report: (flow, seq, detail) => writer.detail([flow, seq, detail]),
    arrivalEpochMs: () =>
      engine.realEpochMs(
        Number.isNaN(timing.arrivalReal) ? timing.nowReal : timing.arrivalReal,
      ),
  });
  const books = config.fds.map((_, i) => {
    const book = new ProbeBook(i, config.session, {
      target: config.target,
      timeoutMs,
      onReply: replyEvents ? push : undefined,
      onSendError: config.events ? push : undefined,
      ring: config.ring,
      onLost: replyEvents
        ? (flow, seq) => push({ type: "lost", flow, seq })
        : undefined,
      format: formats?.[i],
    });
    book.local = config.locals[i]!;
    return book;
  });
  const sentReal = books.map(() => new Times(config.ring));
  const timing = new KernelTiming(books, sentReal);
  const arrival: Arrival = { fromTarget: false, now: 0, timing };
  warmUp(config, engine, control, books.length, STAMP_OFFSET, formats?.[0]);
  let failure: string | undefined;

  const sendBatch = Math.min(SEND_BATCH, engine.sendBatchSize);
  // Sends `k` probes of flow `s` (at most `sendBatch`) in as few
  // system calls as the kernel allows; an open loop's are due `firstDue`
  // and every interval after. Returns how many sends failed.
  const sendProbes = (s: number, k: number, firstDue?: number): number => {
    const book = books[s]!;
    const format = formats?.[s];
    const begin = (j: number) =>
      book.beginSend(
        size,
        NaN,
        NaN,
        firstDue === undefined ? undefined : firstDue + j * intervalMs,
      );
    const first = book.sent;
    if (format === undefined) {
      for (let j = 0; j < k; j++) {
        encodeProbeInto(engine.sendSlot(s, j), book.header(begin(j)));
      }
    }
    let failed = 0;
    for (let j = 0; j < k;) {
      let result: number;
      let epochMs: number;
      if (format !== undefined) {
        const sent = sendFormatted(engine, format, {
          s,
          header: book.header(begin(j)),
        });
        result = sent.result >= 0 ? 1 : sent.result;
        epochMs = sent.epoch;
      } else {
        // One probe alone takes sendto: less for the kernel to copy in.
        result = k === 1
          ? Math.min(engine.send(s, STAMP_OFFSET), 1)
          : engine.sendBatch(s, j, k - j, STAMP_OFFSET);
        epochMs = engine.realEpochMs(engine.sentReal);
      }
      // A batch stopped short by a refusal: the probe it stopped at was
      // tried once and fails; one that may be sent again is, next round.
      const refused = result > 0 && format === undefined && k > 1
        ? engine.stoppedBy
        : 0;
      const done = result > 0 ? result + (refused === 0 ? 0 : 1) : 1;
      for (let i = j; i < j + done; i++) {
        const seq = first + i;
        book.stamp(seq, engine.sentMono, epochMs);
        sentReal[s]!.set(seq, engine.sentReal);
        if (i < j + result) sentOk[s]!++;
        else {
          book.sendFailed(
            seq,
            result < 0
              ? engine.describeErrno(-result)
              : refused !== 0
              ? engine.describeErrno(refused)
              : "nothing sent",
          );
          failed++;
        }
      }
      j += done;
    }
    return failed;
  };
  const selves = config.selfSockaddrs;
  const primersBack = selves.map(() => 0);
  // Takes every datagram waiting on socket s: how many, or -1 on a failure.
  const receiveFrom = (s: number): number => {
    let total = 0;
    for (;;) {
      const n = engine.receive(s);
      if (n < 0) {
        failure ??= `Cannot receive: ${engine.describeErrno(-n)}`;
        return -1;
      }
      if (n === 0) break;
      total += n;
      timing.flow = s;
      timing.nowMono = arrival.now = engine.monoNow();
      timing.nowReal = engine.realNow();
      for (let i = 0; i < n; i++) {
        arrival.fromTarget = engine.fromTarget(s, i);
        arrival.length = engine.length(s, i);
        // A primer (primeSockets) is not the run's; any stray stays ignored.
        if (arrival.length === 0 && engine.fromAddress(s, i, selves[s]!)) {
          primersBack[s]!++;
          continue;
        }
        timing.arrivalReal = engine.arrivalReal(s, i);
        books[s]!.handle(engine.data(s, i), arrival);
      }
      // A short batch emptied the socket: no need to ask again.
      if (n < engine.receiveBatchSize) break;
    }
    return total;
  };
  // Takes every datagram waiting; returns how many.
  const receiveAll = (): number => {
    let total = 0;
    for (let s = 0; s < books.length; s++) {
      const n = receiveFrom(s);
      if (n < 0) return total;
      total += n;
    }
    return total;
  };

  self.postMessage({ type: "started" });
  // The main thread announces the run before probe 0 is timed, rather than
  // compete with it for a CPU while it is in flight.
  for (
    let flags = Atomics.load(control, 0);
    (flags & (GO | STOP | ABORT)) === 0;
    flags = Atomics.load(control, 0)
  ) Atomics.wait(control, 0, flags, MAX_WAIT_MS);
  if ((Atomics.load(control, 0) & (STOP | ABORT)) === 0) {
    primeSockets(engine, {
      fds: config.fds,
      selves,
      primersBack: (s) => primersBack[s]!,
      receive: (s) => Math.max(receiveFrom(s), 0),
      receiveAll,
    });
  }
  const start = engine.monoNow();
  // As if announced an interval ago: probe 0's reply is announced at once,
  // but nothing is overdue, which would wake the main thread while probe 0
  // is in flight, to compete with the reflector's wake-up for a CPU.
  lastFlush = start - FLUSH_INTERVAL_MS;
  let n = 0;
  let sending = true;
  let sendEnd = start;
  let drainEnd = Infinity;
  let pauseUntil = 0;
  const graceStart = books.map(() => NaN);
  let end = start;
  for (;;) {
    const flags = Atomics.load(control, 0);
    let now = engine.monoNow();
    if (flags & ABORT || failure !== undefined) {
      end = now;
      break;
    }
    if (sending && (flags & STOP || now - start >= durationMs)) {
      sending = false;
      sendEnd = Math.min(now, start + durationMs);
      drainEnd = now +
        (flags & STOP ? Math.min(config.waitMs, timeoutMs) : config.waitMs);
    }
    let until = now + MAX_WAIT_MS;
    let spin = false;
    if (sending && window === undefined) {
      // Probe n of every flow is due at start + n x interval; a loop far
      // behind (or an interval of 0) still looks at replies and flags.
      const last = n + MAX_ROUNDS_PER_TURN;
      while (n < count && n * intervalMs < durationMs && n < last) {
        const due = start + n * intervalMs;
        if (due > now) break;
        // Rounds due together (behind, or an interval of 0) share a call.
        let k = 1;
        const bound = Math.min(count, last);
        while (
          k < sendBatch && n + k < bound &&
          (n + k) * intervalMs < durationMs &&
          start + (n + k) * intervalMs <= now
        ) k++;
        for (let s = 0; s < books.length; s++) sendProbes(s, k, due);
        n += k;
        now = engine.monoNow();
      }
      if (n >= count || n * intervalMs >= durationMs) {
        sending = false;
        sendEnd = now;
        drainEnd = now + config.waitMs;
      } else {
        const due = start + n * intervalMs;
        if (due < until) {
          until = due;
          spin = true;
        }
      }
      if (config.ring !== undefined) {
        for (const book of books) until = Math.min(until, book.expire(now));
      }
    } else if (sending) {
      let full = true;
      for (let s = 0; s < books.length; s++) {
        const book = books[s]!;
        until = Math.min(until, book.expire(now));
        while (
          now >= pauseUntil && book.inflight < window! && book.sent < count
        ) {
          const k = Math.min(
            window! - book.inflight,
            count - book.sent,
            sendBatch,
          );
          if (sendProbes(s, k) > 0) pauseUntil = now + SEND_ERROR_PAUSE_MS;
        }
        if (book.sent < count) full = false;
      }
      now = engine.monoNow();
      if (full) {
        sending = false;
        sendEnd = now;
        drainEnd = now + config.waitMs;
      } else if (pauseUntil > now) until = Math.min(until, pauseUntil);
    }
    if (!sending) {
      // Each flow waits for its replies, then a grace period for late copies.
      let done = true;
      for (let s = 0; s < books.length; s++) {
        const book = books[s]!;
        if (Number.isNaN(graceStart[s]!) && book.allAnswered()) {
          graceStart[s] = now;
        }
        // Before all its replies are in, a flow has no grace start (NaN).
        const graceEnd = Math.min(drainEnd, graceStart[s]! + book.graceMs());
        const flowEnd = Number.isNaN(graceEnd) ? drainEnd : graceEnd;
        if (now < flowEnd) {
          done = false;
          until = Math.min(until, flowEnd);
        }
      }
      if (done) {
        end = now;
        break;
      }
    }
    // Posting wakes the main thread, which then competes for a CPU: events
    // are announced once replies are in (below), never right before a send
    // is due unless the loop is behind anyway.
    const sendAt = spin ? until : Infinity;
    const behind = sendAt <= now;
    const margin = Math.min(FLUSH_MARGIN_MS, intervalMs / 2);
    const roomAt = (at: number) => behind || sendAt - at >= margin;
    if (
      roomAt(now) && now - lastFlush >= FLUSH_OVERDUE_MS && writer.flush()
    ) lastFlush = now;
    // Wake for the next announcement (one still unread puts it off) when
    // that leaves room before the next send; it is a plain wait, no spin.
    if (writer.unposted > 0) {
      const flushAt = Math.max(lastFlush + FLUSH_INTERVAL_MS, now + 1);
      if (flushAt < until && roomAt(flushAt + SPIN_MS)) {
        until = flushAt;
        spin = false;
      }
    }
    if (behind) {
      // Behind the schedule: take the replies waiting, without blocking.
      if (engine.wait(now) > 0) receiveAll();
    } else if (spin && until - now <= SPIN_MS) {
      // Replies keep their kernel timestamps, so spinning costs them none;
      // the waiting ones are taken first, or an interval shorter than the
      // spin would never read them.
      receiveAll();
      engine.spinUntil(until);
    } else if (window !== undefined && sending && receiveAll() > 0) {
      // A closed loop under load finds replies waiting more often than not:
      // take them and refill the window without a ppoll first.
    } else {
      const ready = engine.wait(spin ? until - SPIN_MS : until);
      if (ready > 0) receiveAll();
      else if (ready < 0 && ready !== -4) {
        failure ??= `Cannot wait: ${engine.describeErrno(-ready)}`;
      }
    }
    now = engine.monoNow();
    if (roomAt(now) && flushDue(now) && writer.flush()) lastFlush = now;
  }
  if (failure !== undefined) {
    writer.flush(true);
    self.postMessage({ type: "failed", message: failure });
    return;
  }
  const aborted = (Atomics.load(control, 0) & ABORT) !== 0;
  const result = summarizeRun(books, {
    target: config.target,
    size,
    pacing: window === undefined ? "interval" : "window",
    start,
    end,
    inFlightAfter: aborted ? end - timeoutMs : Infinity,
    askedPps: window === undefined && intervalMs > 0
      ? books.length * 1000 / intervalMs
      : NaN,
    sendEnd,
    onEvent: replyEvents
      ? (event) =>
        writer.pushWaiting(
          event,
          () => (Atomics.load(control, 0) & ABORT) !== 0,
        )
      : undefined,
  });
  writer.flush(true);
  self.postMessage({
    type: "done",
    result: { ...result, io: "batch", eventsDropped: writer.dropped },
  });
}

self.onmessage = async (event: MessageEvent<EngineConfig>) => {
  self.onmessage = null;
  try {
    run(event.data, await loadFormat(event.data));
  } catch (error) {
    self.postMessage({ type: "failed", message: errorMessage(error) });
  }
};
