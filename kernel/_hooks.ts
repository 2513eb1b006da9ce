/**
 * What a decide hook of the echo engine (`_echo_engine.ts`) is given and
 * returns: the facts of one datagram, and a verdict; and the reflect hook,
 * which may rewrite a datagram the decide hook let through into its reply
 * (the STAMP Session-Reflector, `server/_stamp_hook.ts`).
 *
 * @module
 */

import type { AddressFamily } from "../net/address.ts";

/** Facts about one received datagram, as a {@linkcode DecideHook} sees them. */
export interface DatagramFacts {
  /** Payload length in bytes. */
  size: number;
  /** Source IP address, formatted as Deno formats it. */
  hostname: string;
  /** Source port. */
  port: number;
  /** The family of the socket that received it. */
  family: AddressFamily;
  /** The address the socket is bound to: `0.0.0.0` or `::` for a wildcard. */
  localHostname: string;
  /** The port the socket is bound to. */
  localPort: number;
  /**
   * The address the datagram was sent to (its IP header's destination), one
   * of this host's unicast addresses, and so the address the echo leaves
   * from; `localHostname` when the kernel did not say. Formatted only when
   * read.
   */
  readonly destination: string;
  /** The index of the interface the datagram arrived on; 0 when unknown. */
  interfaceIndex: number;
  /** `performance.now()` when the batch holding the datagram arrived. */
  now: number;
  /**
   * The datagram's receive slot, a view made once per slot: the datagram
   * is its first `size` bytes, and the reply is what those bytes hold once
   * the hooks are done (a reflect hook rewrites them in place).
   */
  payload: Uint8Array;
  /**
   * The kernel's receive time (`SO_TIMESTAMPNS`, CLOCK_REALTIME): whole
   * seconds since the Unix epoch, 0 when not asked for (only with a reflect
   * module) or not given.
   */
  receivedAtS: number;
  /** The nanoseconds of the kernel's receive time within `receivedAtS`. */
  receivedAtNs: number;
  /**
   * The TTL (IPv4) or hop limit (IPv6) the datagram arrived with; 0 when
   * not asked for (only with a reflect module) or not given.
   */
  ttl: number;
  /**
   * The TOS (IPv4) or traffic class (IPv6) byte the datagram arrived with;
   * -1 when not asked for (only with a reflect module) or not given.
   */
  tos: number;
}

/**
 * Decides one datagram: `undefined` echoes it, a string drops it and is the
 * reason counted. The engine passes the same object for every datagram, so a
 * hook must read it and not keep it. A hook may also count the sources it
 * tracks (`activeSources`), which the loop samples a few times a second.
 */
export type DecideHook =
  & ((facts: Readonly<DatagramFacts>) => string | undefined)
  & {
    activeSources?: (now: number) => number;
  };

/**
 * The one facts object an engine fills in for each datagram, empty; its
 * `destination` is what `destination()` returns when read.
 */
export function newDatagramFacts(
  local: { family: AddressFamily; localHostname: string; localPort: number },
  destination: () => string,
): DatagramFacts {
  return {
    size: 0,
    hostname: "",
    port: 0,
    family: local.family,
    localHostname: local.localHostname,
    localPort: local.localPort,
    get destination() {
      return destination();
    },
    interfaceIndex: 0,
    now: 0,
    payload: new Uint8Array(0),
    receivedAtS: 0,
    receivedAtNs: 0,
    ttl: 0,
    tos: -1,
  };
}

/** A hook's verdict; `failure` when it throws, so one datagram never stops the loop. */
export function ask(
  hook: DecideHook | ReflectHook | undefined,
  facts: DatagramFacts,
  failure: string,
): string | undefined {
  try {
    return hook?.(facts);
  } catch {
    return failure;
  }
}

/**
 * A reply about to be sent, as {@linkcode ReflectHook}'s `transmit` sees
 * it; the engine passes the same object for every reply.
 */
export interface OutgoingReply {
  /** The receive slot holding the reply (see {@linkcode DatagramFacts.payload}). */
  payload: Uint8Array;
  /** The reply's length in bytes: the request's. */
  size: number;
  /** CLOCK_REALTIME read right before the `sendmmsg` carrying it: whole seconds since the epoch. */
  sentAtS: number;
  /** Its nanoseconds within `sentAtS`. */
  sentAtNs: number;
}

/**
 * A reflect hook's verdict that holds the reply and sends it later: after
 * the hook's `holdMs`, with the decide hook asked again then (a STAMP
 * Delayed Reply). The engine keeps a copy, calls `release` once it is sent
 * or dropped, and counts one still held at the stop as `shutdown`.
 */
export const HELD = "held";

/**
 * Turns a datagram the decide hook let through into its reply, in place
 * and of the same length (a reflector never amplifies): `undefined` sends
 * it, a string drops it and is the reason counted, {@linkcode HELD} holds
 * it for `holdMs`. `transmit`, when given,
 * is called for each reply right before the `sendmmsg` that carries it,
 * with the clock read then: one read per system call, so every reply of a
 * batch gets the time the batch left, as late as the engine can take it.
 */
export type ReflectHook =
  & ((facts: Readonly<DatagramFacts>) => string | undefined)
  & {
    transmit?: (reply: Readonly<OutgoingReply>) => void;
    /** With {@linkcode HELD}: how long to hold the reply, ms. */
    holdMs?: number;
    /**
     * Called once for each held reply, of `size` bytes, sent or dropped,
     * with the address it goes to.
     */
    release?: (size: number, source: string) => void;
    /**
     * Set by the hook on each datagram it answers: the TOS or traffic
     * class its reply leaves with, or -1 for the socket's own.
     */
    replyTos?: number;
  };

/**
 * What a reflect module (`serveBatch`'s `reflectModule`) exports: a factory
 * given its options and the socket's own address. Each Worker builds its
 * own hook, so a hook's state (a stateful reflector's sessions) is per
 * socket.
 */
export interface ReflectModule {
  /** Builds the hook inside the Worker. */
  createReflectHook(options: unknown, local: Deno.NetAddr): ReflectHook;
}

/**
 * What a decide module (`serveBatch`'s `decideModule`) exports: a factory
 * given the options and the socket's own address.
 */
export interface DecideModule {
  /** Builds the hook inside the Worker. */
  createDecideHook(options: unknown, local: Deno.NetAddr): DecideHook;
}
