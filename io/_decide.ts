/**
 * What a decide hook of the batch engine (`_engine.ts`) is given and
 * returns: the facts of one datagram, and a verdict.
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
 * What a decide module (`serveBatch`'s `decideModule`) exports: a factory
 * given the options and the socket's own address.
 */
export interface DecideModule {
  /** Builds the hook inside the Worker. */
  createDecideHook(options: unknown, local: Deno.NetAddr): DecideHook;
}
