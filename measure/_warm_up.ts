/**
 * The socket path's warm-up of its bookkeeping (`_book.ts`): a throwaway
 * book sends, stamps and matches probes before probe 0 is timed, so the
 * first calls of that code (parsed, compiled and run cold otherwise) are
 * not in probe 0's round trip. The kernel engine's Worker runs its own
 * (`kernel/_probe_worker.ts`).
 *
 * @module
 */

import type { ResolvedAddress } from "../net/address.ts";
import { encodeProbeInto } from "./probe.ts";
import { type Arrival, ProbeBook } from "./_book.ts";

/** Probes the throwaway book sends and matches. */
const WARM_UP_ROUNDS = 2000;

/**
 * Sends `size`-byte probes through a book that reports nowhere and hands
 * each back to it as its reply, on this thread's clock.
 */
export function warmUpBook(
  session: number,
  size: number,
  options: { target: ResolvedAddress; timeoutMs: number },
): void {
  const book = new ProbeBook(0, session, {
    target: options.target,
    timeoutMs: options.timeoutMs,
    onReply: () => {},
  });
  const slot = new Uint8Array(size);
  const arrival: Arrival = { fromTarget: true, now: 0, length: size };
  for (let i = 0; i < WARM_UP_ROUNDS; i++) {
    const now = performance.now();
    const seq = book.beginSend(size, now, performance.timeOrigin + now, now);
    encodeProbeInto(slot, book.header(seq));
    arrival.now = performance.now();
    book.handle(slot, arrival);
  }
}

/**
 * How long the run rests after its warm-up, in ms, so the optimising
 * compiler's background jobs finish before probe 0 rather than compete
 * with it for a CPU (as the engine's Worker does).
 */
const SETTLE_MS = 20;

/** Waits {@linkcode SETTLE_MS}. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
}
