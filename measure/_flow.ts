/**
 * One socket's probes and replies through Deno's sockets: ping and load send
 * on their own schedules and read the bookkeeping afterwards; the sweep asks
 * one probe at a time. The bookkeeping is `_book.ts`, shared with the kernel
 * engine, so a datagram is attributed, verified and counted the same way
 * whichever mode or I/O sent the probe.
 *
 * @module
 */

import { RECEIVE_BUFFER_SIZE } from "../net/payload.ts";
import {
  formatAddress,
  type HostPort,
  type ResolvedAddress,
  sameEndpoint,
  selfAddress,
} from "../net/address.ts";
import { errorMessage, osErrorReason } from "../net/errors.ts";
import { encodeProbeInto } from "./probe.ts";
import type { ReplyEvent } from "./types.ts";
import {
  type Arrival,
  type Awaited,
  type FlowOptions,
  ProbeBook,
} from "./_book.ts";

export { Wakeup } from "./_times.ts";
export { type FlowOptions, GRACE_MIN_MS } from "./_book.ts";

/**
 * Whether a datagram comes from the target, by the canonical comparison of
 * net/address.ts: a reply from `::1` answers a target written
 * `0:0:0:0:0:0:0:1`, and one from `127.0.0.1` a target `::ffff:127.0.0.1`.
 */
export function fromTarget(from: Deno.Addr, target: HostPort): boolean {
  return sameEndpoint(from as Deno.NetAddr, target);
}

/** Opens a flow's socket; throws `Cannot bind ADDR: reason` when it cannot. */
function openSocket(
  target: ResolvedAddress,
  bind: HostPort | undefined,
): Deno.DatagramConn {
  const local = {
    hostname: bind?.hostname ?? (target.family === "IPv6" ? "::" : "0.0.0.0"),
    port: bind?.port ?? 0,
  };
  try {
    return Deno.listenDatagram({ ...local, transport: "udp" });
  } catch (error) {
    throw new Error(
      `Cannot bind ${formatAddress(local)}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
}

/**
 * One socket, its probes and what came back (see {@linkcode ProbeBook}).
 * Open on construction; `close()` then `await receiving`.
 */
export class Flow extends ProbeBook {
  readonly conn: Deno.DatagramConn;
  readonly receiving: Promise<void>;
  /** Where the socket reaches itself: its address, a wildcard made loopback. */
  readonly self: HostPort;
  /** Empty datagrams from {@linkcode Flow.self} taken: never counted. */
  primersBack = 0;
  #buffer = new Uint8Array(0);
  #closed = false;

  constructor(index: number, session: number, options: FlowOptions) {
    super(index, session, options);
    this.conn = openSocket(options.target, options.bind);
    const { hostname, port } = this.conn.addr as Deno.NetAddr;
    this.local = { hostname, port };
    this.self = {
      hostname: selfAddress(hostname, options.target.family),
      port,
    };
    this.receiving = this.#receive();
  }

  /**
   * Sends the next probe of `size` bytes; resolves to true once it has
   * left, to false when the send failed. A failed send is counted (see
   * `sendErrors`), reported through `onSendError` and never thrown: a
   * firewall that refuses some probes is part of the path measured.
   */
  async send(size: number, scheduledAt?: number): Promise<boolean> {
    const now = performance.now();
    const seq = this.beginSend(
      size,
      now,
      performance.timeOrigin + now,
      scheduledAt,
    );
    // Reuse the buffer while the size stays put: a load run sends without end.
    if (this.#buffer.length !== size) this.#buffer = new Uint8Array(size);
    (this.options.format?.encode ?? encodeProbeInto)(
      this.#buffer,
      this.header(seq),
    );
    try {
      await this.conn.send(this.#buffer, {
        hostname: this.options.target.hostname,
        port: this.options.target.port,
        transport: "udp",
      });
    } catch (error) {
      this.sendFailed(seq, osErrorReason(error));
      // A refused send fails at once; without a pause a closed loop would
      // retry without ever letting timers and signal handlers run.
      await new Promise((resolve) => setTimeout(resolve, 0));
      return false;
    }
    this.options.onSend?.(this.index, seq);
    return true;
  }

  /**
   * Sends one probe of `size` bytes and waits up to the timeout for its
   * first reply, intact or not; `undefined` when none came, `"unsent"` at
   * once when the send failed.
   */
  async ask(
    size: number,
    signal?: AbortSignal,
  ): Promise<ReplyEvent | "unsent" | undefined> {
    const awaited: Awaited = { seq: this.sent };
    this.awaited = awaited;
    try {
      if (!await this.send(size)) return "unsent";
      const deadline = this.sentAt.get(awaited.seq) + this.options.timeoutMs;
      while (
        awaited.reply === undefined && this.error === undefined &&
        !signal?.aborted
      ) {
        const remaining = deadline - performance.now();
        if (remaining <= 0) break;
        await this.wakeup.wait(remaining, signal);
      }
      return awaited.reply;
    } finally {
      this.awaited = undefined;
    }
  }

  /**
   * Waits until every probe that left has a reply, then a grace period for
   * late copies (see {@linkcode ProbeBook.graceMs}), counted from when the
   * last probe got its first reply, all within `waitMs` milliseconds.
   */
  async drain(waitMs: number, signal?: AbortSignal): Promise<void> {
    const end = performance.now() + waitMs;
    const stopped = () => signal?.aborted || this.error !== undefined;
    while (!stopped() && !this.allAnswered()) {
      const remaining = end - performance.now();
      if (remaining <= 0) return;
      await this.wakeup.wait(remaining, signal);
    }
    const graceStart = performance.now();
    while (!stopped()) {
      const remaining = Math.min(end, graceStart + this.graceMs()) -
        performance.now();
      if (remaining <= 0) return;
      // A reply wakes the wait, and may have raised the largest RTT.
      await this.wakeup.wait(remaining, signal);
    }
  }

  /** Closes the socket once; later calls do nothing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.conn.close();
  }

  async #receive(): Promise<void> {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    const target = this.options.target;
    const arrival: Arrival = { fromTarget: false, now: 0 };
    while (true) {
      let data: Uint8Array;
      let from: Deno.Addr;
      try {
        [data, from] = await this.conn.receive(buffer);
      } catch (error) {
        if (!this.#closed) this.error = error;
        return;
      }
      // The arrival time first: nothing of ours belongs in the round trip.
      arrival.now = performance.now();
      arrival.fromTarget = fromTarget(from, target);
      // The socket's datagram to itself (see `primersBack`) is no datagram
      // of the run's; a stray from elsewhere, empty or not, is ignored.
      if (
        !arrival.fromTarget && data.length === 0 &&
        sameEndpoint(from as Deno.NetAddr, this.self)
      ) {
        this.primersBack++;
        continue;
      }
      this.handle(data, arrival);
    }
  }
}
