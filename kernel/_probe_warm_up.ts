/**
 * The warm-up of the engine's Worker (`_probe_worker.ts`) before probe 0
 * is timed: the per-probe JavaScript run on throwaway state, then a rest;
 * and, once the run is announced, right before probe 0's T1, the kernel's
 * send and receive path run by each probe socket sending itself an empty
 * datagram (after the rest it is cold, and probe 0's send would otherwise
 * pay for it inside its own round trip).
 *
 * @module
 */

import { encodeProbeInto } from "../measure/probe.ts";
import { type Arrival, ProbeBook } from "../measure/_book.ts";
import { createProbeChannel, ProbeEventWriter } from "./_probe_events.ts";
import type { SenderEngine } from "./sender.ts";
import {
  EINTR,
  lastErrno,
  type Libc,
  MSG_PROBE,
  openLibc,
  releaseLibc,
} from "./_libc.ts";
import { sendFormatted } from "./_probe_format.ts";
import type { EngineConfig, EngineProbeFormat } from "./probes.ts";

/** Rounds of the probe bookkeeping {@linkcode warmUp} runs. */
const WARM_UP_ROUNDS = 4000;
/** Runs of the real sockets' send path (sending nothing) it makes. */
const SEND_WARM_UP_ROUNDS = 500;
/**
 * How long the Worker rests after its warm-up, in ms, so the optimising
 * compiler's background jobs finish before the first send is due rather
 * than compete with it for the CPU.
 */
const SETTLE_MS = 20;

/**
 * Runs the per-probe JavaScript (book, encode, verify, event ring) on
 * throwaway state before the clock starts, so its compilation and the young
 * heap's first collections happen here instead of stalling the first sends.
 */
export function warmUp(
  config: EngineConfig,
  engine: SenderEngine,
  control: Int32Array,
  sockets: number,
  stampOffset: number,
  format?: EngineProbeFormat,
): void {
  const { size, session, target, timeoutMs } = config;
  const writer = new ProbeEventWriter(createProbeChannel(1, 4096), () => {});
  const book = new ProbeBook(0, session, {
    target,
    timeoutMs,
    onReply: (event) => writer.push(event),
  });
  const slot = new Uint8Array(size);
  const arrival: Arrival = { fromTarget: true, now: 0, length: size };
  // The format's own warm-up first: run after the loop, its calls of the
  // code `writeSendTime` shares would undo (deoptimise) what the loop got
  // compiled, at probe 0's send, between T1 and the system call.
  format?.warmUp?.(size);
  // The send itself, on the real sockets and slots with the run's own
  // stamp writer, flagged MSG_PROBE so nothing leaves: probe 0's send is
  // then not the first run of this code between T1 and the system call.
  for (let i = 0; i < SEND_WARM_UP_ROUNDS; i++) {
    const s = i % sockets;
    if (format === undefined) engine.send(s, stampOffset, MSG_PROBE);
    else {
      const header = book.header(book.beginSend(size, NaN, NaN, i + 0.5));
      sendFormatted(engine, format, { s, header }, MSG_PROBE);
    }
  }
  for (let i = 0; i < WARM_UP_ROUNDS; i++) {
    const seq = book.beginSend(size, i, i, i);
    encodeProbeInto(slot, book.header(seq));
    arrival.now = engine.monoNow();
    engine.realNow();
    book.handle(slot, arrival);
    format?.writeSendTime(slot, engine.realEpochMs(engine.realNow()));
  }
  // Returns at once when a stop is already asked for.
  Atomics.wait(control, 0, 0, SETTLE_MS);
}

/** Empty datagrams each probe socket sends itself right before probe 0. */
const PRIME_ROUNDS = 4;
/** Sockets past which each sends itself one only, so priming stays short. */
const PRIME_ALL_ROUNDS_UP_TO = 8;
/**
 * How long priming may wait for the datagrams in all, in ms: on loopback
 * each is queued before its send returns, so waiting means one was lost.
 */
const PRIME_WAIT_MS = 100;
/**
 * How long the Worker rests after priming, in ms: sent at once, probe 0's
 * reply was sometimes many times slower from the reflector (its wake-up,
 * measured in `bench/RESULTS.md`); after a rest it is not, and the path is
 * still warm.
 */
const PRIME_SETTLE_MS = 5;

/** What {@linkcode primeSockets} needs of the Worker's run. */
export interface PrimeOptions {
  /** The probe sockets' descriptors. */
  fds: number[];
  /** Each socket's own address as a `sockaddr`; empty when it has none. */
  selves: Uint8Array[];
  /**
   * How many empty datagrams from its own address socket `s`'s receive has
   * taken: primers, which the run leaves out of every count (a stray from
   * elsewhere stays ignored, and is never taken for a primer).
   */
  primersBack: (s: number) => number;
  /**
   * Takes every datagram waiting on socket `s`, as the run does; returns
   * how many. One socket only: priming many must not cost a receive of
   * every socket per datagram.
   */
  receive: (s: number) => number;
  /** Takes every datagram waiting, as the run does; returns how many. */
  receiveAll: () => number;
}

/**
 * Has each probe socket send itself {@linkcode PRIME_ROUNDS} empty
 * datagrams (one each past {@linkcode PRIME_ALL_ROUNDS_UP_TO} sockets), each
 * taken back through the run's own receive before the next, which leaves
 * it out of every count (a stray is never taken for it). Nothing goes to the
 * target. Stops at the first that does not come back within the wait, or
 * cannot be sent (a firewall, no loopback): probe 0 is then timed as before.
 * Rests {@linkcode PRIME_SETTLE_MS} after the last. Returns how many came
 * back.
 */
export function primeSockets(
  engine: SenderEngine,
  options: PrimeOptions,
): number {
  const { selves } = options;
  const libc = openLibc();
  const rounds = selves.length <= PRIME_ALL_ROUNDS_UP_TO ? PRIME_ROUNDS : 1;
  const end = engine.monoNow() + PRIME_WAIT_MS;
  let primed = 0;
  try {
    primed = primeEach(libc, engine, options, rounds, end);
  } finally {
    releaseLibc();
  }
  // Ends early when a datagram comes: none is due before probe 0 is sent.
  if (primed > 0) engine.wait(engine.monoNow() + PRIME_SETTLE_MS);
  return primed;
}

/** The rounds of {@linkcode primeSockets}; returns how many came back. */
function primeEach(
  libc: Libc,
  engine: SenderEngine,
  options: PrimeOptions,
  rounds: number,
  end: number,
): number {
  const { fds, selves } = options;
  let primed = 0;
  sockets: for (let s = 0; s < selves.length; s++) {
    const self = selves[s]!;
    if (self.length === 0) break;
    for (let round = 0; round < rounds; round++) {
      const before = options.primersBack(s);
      if (!sendEmpty(libc, fds[s]!, self)) break sockets;
      while (options.primersBack(s) === before && engine.monoNow() < end) {
        // The wait is on every socket: one with datagrams waiting would
        // end it at once.
        if (options.receive(s) === 0 && options.receiveAll() === 0) {
          engine.wait(end);
        }
      }
      if (options.primersBack(s) === before) break sockets;
      primed++;
    }
  }
  return primed;
}

/** A byte to point at: the probes' sends pass a pointer, never null. */
const NO_PAYLOAD = new Uint8Array(1);

/** Sends an empty datagram from socket `fd` to `to`; whether it left. */
function sendEmpty(libc: Libc, fd: number, to: Uint8Array): boolean {
  for (;;) {
    const sent = libc.symbols.sendto(
      fd,
      Deno.UnsafePointer.of(NO_PAYLOAD),
      0n,
      0,
      Deno.UnsafePointer.of(to),
      to.length,
    );
    if (sent === 0) return true;
    if (sent > 0 || lastErrno(libc) !== EINTR) return false;
  }
}
