/**
 * The batch backend's start-up work, done in its Worker before it says it
 * has started (and so before the server prints its `listening` line): an
 * {@linkcode EchoEngine} of its own on a loopback socket of its own, with
 * decide and reflect hooks of its own, echoes a datagram back to itself a
 * number of times; three such engines in turn, each with new hooks, so
 * that the compiled code is not specialised to one engine's or one hook's
 * closures, which the server's own would then undo on its first datagram. The first datagram a client sends then meets the echo
 * and reflect code already compiled (the first run of each step, and of
 * each hook, costs the reflector many times its usual time) instead of
 * paying for it inside the round trip it is being measured by.
 *
 * Nothing of it reaches the server's counters, events or hook state: the
 * engine counts into a throwaway array, reports no events, and the socket
 * talks only to itself. A failure (no loopback of the family, a policy
 * that refuses loopback) ends the warm-up early and is not the server's.
 *
 * @module
 */

import type { AddressFamily } from "../net/address.ts";
import { bindSocket } from "./_bind.ts";
import { EchoEngine } from "./_echo_engine.ts";
import { C_ECHOED, COUNTER_SLOTS } from "./_echo_events.ts";
import type { DecideHook, ReflectHook } from "./_hooks.ts";
import type { Libc } from "./_libc.ts";
import { sendZeros, warmUpWakes } from "./_wake_warm_up.ts";
import type { WakeRequest } from "./_channel.ts";

/** Echoes the warm-up runs, each one datagram through the whole engine. */
export const WARM_UP_ROUNDS = 64;
/** The warm-up datagram: as long as a STAMP request without TLVs, and more. */
const WARM_UP_SIZE = 64;
/**
 * How long a receive may wait for the datagram the socket sent itself, in
 * ms: on loopback it is already queued, so waiting means it was dropped.
 */
const WARM_UP_TIMEOUT_MS = 200;

/** Engines, each with hooks of its own, that warm up one after the other. */
export const WARM_UP_ENGINES = 3;

/** The hooks of one warm-up engine, new ones for each. */
export interface WarmUpHooks {
  /** A decide hook of the warm-up's own, never the server's. */
  decide?: DecideHook;
  /** A reflect hook of the warm-up's own, never the server's. */
  reflect?: ReflectHook;
}

/** Options for {@linkcode warmUpEngine}. */
export interface EngineWarmUpOptions {
  /** The family of the server's socket: the warm-up binds its loopback. */
  family: AddressFamily;
  /** Datagrams per system call, as the server's engine. */
  batchSize: number;
  /** Whether the socket asks for receive times (a reflect hook reads them). */
  receiveTimes: boolean;
  /** Builds new hooks for each warm-up engine, as the server builds its own. */
  hooks: () => Promise<WarmUpHooks>;
  /** Has the main thread send a datagram to a waiting warm-up engine. */
  ask?: (request: WakeRequest) => void;
}

/**
 * Runs {@linkcode WARM_UP_ENGINES} warm-up engines in turn; resolves with
 * how many datagrams they echoed in all. Rejects only when `hooks` does.
 */
export async function warmUpEngine(
  libc: Libc,
  options: EngineWarmUpOptions,
): Promise<number> {
  let echoed = 0;
  for (let k = 0; k < WARM_UP_ENGINES; k++) {
    echoed += warmUpEcho(libc, { ...options, ...await options.hooks() });
  }
  return echoed;
}

/** Options for {@linkcode warmUpEcho}. */
export interface EchoWarmUpOptions {
  /** The family of the server's socket: the warm-up binds its loopback. */
  family: AddressFamily;
  /** Datagrams per system call, as the server's engine. */
  batchSize: number;
  /** Whether the socket asks for receive times (a reflect hook reads them). */
  receiveTimes: boolean;
  /** A decide hook of the warm-up's own, never the server's. */
  decide?: DecideHook;
  /** A reflect hook of the warm-up's own, never the server's. */
  reflect?: ReflectHook;
  /** Has the main thread send a datagram to a waiting warm-up engine. */
  ask?: (request: WakeRequest) => void;
}

/**
 * Runs {@linkcode WARM_UP_ROUNDS} echoes through an engine of its own on a
 * loopback socket that talks to itself; returns how many datagrams it
 * echoed (fewer when its hooks dropped one or a step failed). Never throws.
 */
export function warmUpEcho(libc: Libc, options: EchoWarmUpOptions): number {
  const loopback = options.family === "IPv6" ? "::1" : "127.0.0.1";
  let socket;
  try {
    socket = bindSocket(libc, loopback, 0, WARM_UP_TIMEOUT_MS, {
      receiveTimes: options.receiveTimes,
    });
  } catch {
    return 0;
  }
  try {
    const counts = new Float64Array(COUNTER_SLOTS);
    const engine = new EchoEngine(libc, {
      fd: socket.fd,
      family: socket.family,
      localHostname: socket.addr.hostname,
      localPort: socket.addr.port,
      batchSize: options.batchSize,
      counts,
      decide: options.decide,
      reflect: options.reflect,
    });
    // Woken from a wait, as the server's engine by its first datagram;
    // first, while nothing is queued (each echo below queues the next).
    if (options.ask !== undefined) {
      warmUpWakes(libc, engine, socket.addr, options.ask);
    }
    const self = { hostname: loopback, port: socket.addr.port };
    if (!sendZeros(libc, socket.fd, WARM_UP_SIZE, self)) return 0;
    // Each echo goes back to its source, this socket: the next turn's datagram.
    for (let round = 0; round < WARM_UP_ROUNDS; round++) {
      const n = engine.receive();
      if (n <= 0) break;
      const echoedBefore = counts[C_ECHOED]!;
      engine.echo(n, performance.now());
      if (counts[C_ECHOED] === echoedBefore) break;
    }
    // A reply a hook held for later is let go with the socket.
    engine.dropAllHeld();
    return counts[C_ECHOED]!;
  } catch {
    return 0;
  } finally {
    libc.symbols.close(socket.fd);
  }
}
