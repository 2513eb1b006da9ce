/**
 * The part of the batch backend's warm-up (`_echo_warm_up.ts`) that a
 * thread cannot do alone: a warm-up engine woken from a blocking
 * `recvmmsg` by a datagram that arrives while it waits, as the server's
 * first datagram wakes its engine. Every other warm-up datagram is already
 * queued when the engine asks for it, so the wait-and-wake path would
 * otherwise run first on the server's first datagram. The Worker asks its
 * main thread (which waits for it to start) to send, from a loopback
 * socket of the Worker's own, a little after the ask, and then blocks.
 *
 * @module
 */

import { bindSocket, resolveSockaddrs } from "./_bind.ts";
import type { EchoEngine } from "./_echo_engine.ts";
import { C_ECHOED } from "./_echo_events.ts";
import type { Libc } from "./_libc.ts";
import type { WakeRequest } from "./_channel.ts";

/** Times each warm-up engine is woken by a datagram while it waits. */
export const WAKE_ROUNDS = 4;
/**
 * How long the main thread waits before it sends, in ms: long enough for
 * the Worker to be blocked in its receive by then, far below the warm-up
 * socket's receive timeout.
 */
const WAKE_DELAY_MS = 2;
/** The datagram the main thread sends. */
const WAKE_SIZE = 64;

/**
 * Has `engine`, whose socket listens on `hostname`:`port` with a receive
 * timeout, wait in its receive {@linkcode WAKE_ROUNDS} times, each time
 * woken by a datagram `ask` has the main thread send; echoes each one.
 * Returns how many it echoed. Never throws.
 */
export function warmUpWakes(
  libc: Libc,
  engine: EchoEngine,
  to: { hostname: string; port: number },
  ask: (request: WakeRequest) => void,
): number {
  let sender;
  try {
    sender = bindSocket(libc, to.hostname, 0);
  } catch {
    return 0;
  }
  const counts = engine.counts;
  const echoedBefore = counts[C_ECHOED]!;
  try {
    for (let round = 0; round < WAKE_ROUNDS; round++) {
      ask({ type: "wake", fd: sender.fd, ...to });
      const n = engine.receive();
      if (n <= 0) break;
      engine.echo(n, performance.now());
    }
  } catch {
    // A warm-up that fails is not the server's.
  } finally {
    libc.symbols.close(sender.fd);
  }
  return counts[C_ECHOED]! - echoedBefore;
}

/**
 * Answers a {@linkcode WakeRequest} on the main thread: sends one datagram
 * a little later. The socket is the Worker's, open until its wait ends.
 */
export function answerWake(libc: Libc, request: WakeRequest): void {
  setTimeout(() => {
    sendZeros(libc, request.fd, WAKE_SIZE, request);
  }, WAKE_DELAY_MS);
}

/**
 * Sends `size` zero bytes from socket `fd` to `to`, for a warm-up that
 * talks only to itself; returns whether all of them left.
 */
export function sendZeros(
  libc: Libc,
  fd: number,
  size: number,
  to: { hostname: string; port: number },
): boolean {
  const target = resolveSockaddrs(libc, to.hostname, to.port)[0];
  if (target === undefined) return false;
  const payload = new Uint8Array(size);
  return libc.symbols.sendto(
    fd,
    Deno.UnsafePointer.of(payload),
    BigInt(payload.length),
    0,
    Deno.UnsafePointer.of(target),
    target.length,
  ) === size;
}
