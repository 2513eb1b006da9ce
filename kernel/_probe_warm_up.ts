/**
 * The warm-up of the engine's Worker (`_probe_worker.ts`) before probe 0
 * is timed: the per-probe JavaScript run on throwaway state, then a rest.
 *
 * @module
 */

import { encodeProbeInto } from "../measure/probe.ts";
import { type Arrival, ProbeBook } from "../measure/_book.ts";
import { createProbeChannel, ProbeEventWriter } from "./_probe_events.ts";
import type { SenderEngine } from "./sender.ts";
import { MSG_PROBE } from "./_libc.ts";
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
