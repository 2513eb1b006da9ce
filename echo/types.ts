/**
 * The one model both I/O backends share: the options an echo backend takes,
 * the events it emits and the counters it keeps. `socket.ts`
 * (`Deno.listenDatagram`) and `kernel/echo.ts` (Linux `recvmmsg`/`sendmmsg`)
 * both return an {@linkcode EchoServer} and emit {@linkcode ServerEvent}s, so
 * nothing above them branches on the backend.
 *
 * @module
 */

import type { DropReason, PolicyOptions, RateLimit } from "../policy/policy.ts";

/**
 * Why a datagram got no reply: a policy reason, `"shutdown"` for one
 * received whose echo the server's shutdown cut off, or a reason of the
 * {@linkcode EchoBackendOptions.reflect} hook.
 */
export type DropCause = DropReason | "shutdown" | ReflectDrop;

/** Why the `reflect` hook sent nothing: a STAMP request under 44 bytes. */
export type ReflectDrop = "stamp-too-short";

/**
 * A reply the `reflect` hook asks the backend to send later (a STAMP
 * Delayed Reply): the backend keeps a copy of the bytes, asks the policy
 * again when the time comes (a refusal then drops it by the policy's
 * reason), and counts one held at shutdown as `shutdown`.
 */
export interface HeldReply {
  /** How long to hold it, in milliseconds. */
  delayMs: number;
  /** Rewrites the copy in place right before it leaves (its transmit time). */
  beforeSend(reply: Uint8Array): void;
  /** Called once, when it is sent or dropped: the hook's table has room again. */
  release(): void;
}

/** What the `reflect` hook knows of a datagram besides its bytes. */
export interface ReflectInfo {
  /** The sender. */
  from: Deno.NetAddr;
  /** The socket that received it. */
  local: Deno.NetAddr;
  /**
   * When the receive settled, in `performance.now()` milliseconds: on the
   * socket backend that is when the event loop saw it, not the kernel.
   */
  receivedAt: number;
}

/** Drops by cause, only the causes that occurred. */
export type DropCounts = Partial<Record<DropCause, number>>;

/** The socket operations that can fail while the server runs. */
export type IoOperation = "receive" | "send";

/** Counters of what a server has done since it started, summed over its sockets. */
export interface EchoStats {
  /** Datagrams received. */
  received: number;
  /** Payload bytes received. */
  receivedBytes: number;
  /** Datagrams echoed back. */
  echoed: number;
  /** Payload bytes echoed back. */
  echoedBytes: number;
  /**
   * Datagrams received and left unanswered: the sum of `droppedBy`. Once
   * `finished` resolves, `received` is exactly `echoed + dropped + errors`.
   */
  dropped: number;
  /**
   * Drops by cause, only the causes that occurred: the policy's reasons
   * (see `policy/policy.ts`) and `shutdown`, echoes cut off by stopping.
   */
  droppedBy: DropCounts;
  /** Failed receives and sends: the sum of `errorsBy`. The server carries on after each. */
  errors: number;
  /** Failures by operation. */
  errorsBy: Record<IoOperation, number>;
  /**
   * Events never passed to `onEvent` because a bounded queue between the
   * I/O and `onEvent` was full (the batch backend's; the socket backend
   * calls `onEvent` at once and so keeps this at 0). The datagrams were
   * still served and counted.
   */
  eventsDropped: number;
  /** Sources the rate limiter holds a recent datagram of (0 without a rate limit). */
  activeSources: number;
  /**
   * Datagrams the kernel dropped at the server's sockets before the server
   * could read them, summed over the sockets since they were bound: a full
   * receive buffer (rarely a bad checksum), a drop at this host and not on
   * the path; they are not in `received`. `null` when it cannot be known,
   * and `hostDropsUnknown` says why.
   */
  hostDrops: number | null;
  /** Why `hostDrops` is `null`: what reading it needs. */
  hostDropsUnknown?: string;
  /** Milliseconds since the server started. */
  uptimeMs: number;
}

/**
 * The traffic and error counters of one socket of a server. Drops are left
 * out: sockets may share one rate-limit table, and a drop is counted there,
 * not per socket (see {@linkcode EchoStats.droppedBy}).
 */
export interface SocketStats {
  /** The socket's address, as in {@linkcode EchoServer.addrs}. */
  local: Deno.NetAddr;
  /** Datagrams received on this socket. */
  received: number;
  /** Payload bytes received on this socket. */
  receivedBytes: number;
  /** Datagrams echoed from this socket. */
  echoed: number;
  /** Payload bytes echoed from this socket. */
  echoedBytes: number;
  /** Failed receives and sends on this socket, by operation. */
  errorsBy: Record<IoOperation, number>;
  /** The kernel's drops at this socket (see {@linkcode EchoStats.hostDrops}); `null` when unknown. */
  hostDrops: number | null;
}

/** A datagram that was received and echoed back. */
export interface DatagramEvent {
  /** The kind of event. */
  type: "datagram";
  /** The sender, and so the address the echo went to. */
  from: Deno.NetAddr;
  /** The socket that received it and sent the echo. */
  local: Deno.NetAddr;
  /** The payload; a view valid only during the call. */
  data: Uint8Array;
  /** Bytes sent back. */
  sent: number;
}

/**
 * A datagram left unanswered: refused by the policy or the reflector, or
 * cut off by stopping (`shutdown`), so the events add up to the totals.
 */
export interface DroppedEvent {
  /** The kind of event. */
  type: "dropped";
  /** The sender, who got no reply. */
  from: Deno.NetAddr;
  /** The socket that received it. */
  local: Deno.NetAddr;
  /** The payload; a view valid only during the call. */
  data: Uint8Array;
  /** Why it got no reply. */
  reason: DropCause;
}

/** A receive or send that failed; the server goes on. */
export interface EchoErrorEvent {
  /** The kind of event. */
  type: "error";
  /** What failed. */
  operation: IoOperation;
  /** The socket it failed on. */
  local: Deno.NetAddr;
  /** The peer of a failed send. */
  peer?: Deno.NetAddr;
  /** What went wrong, as thrown: a `Deno.errors` class where one fits. */
  error: Error;
}

/** Something a server did, as passed to {@linkcode EchoBackendOptions.onEvent}. */
export type ServerEvent = DatagramEvent | DroppedEvent | EchoErrorEvent;

/** How many rate-limit tables a server with several sockets keeps. */
export type RateLimitScope = "server" | "socket";

/** Options every I/O backend takes. */
export interface EchoBackendOptions {
  /**
   * Addresses to bind, one socket each, all on one port: IP literals or
   * names (a name binds the first address it resolves to). A wildcard
   * (`0.0.0.0`, `::`) is one socket on the batch backend, which sees each
   * datagram's destination; the socket backend, which cannot, binds one
   * socket per interface address instead when it may list them
   * (`--allow-sys=networkInterfaces`), and else keeps the wildcard and
   * says what it cannot check in `warnings`.
   */
  hostnames: readonly string[];
  /** The port to bind; 0 lets the first socket pick one and the others take it. */
  port: number;
  /** Aborting it closes the sockets and ends the server. */
  signal?: AbortSignal;
  /**
   * Called for each datagram and each error. Kept out of the way of the
   * echo: an exception it throws is ignored.
   */
  onEvent?: (event: ServerEvent) => void;
  /**
   * Report each datagram (echoed or dropped) to `onEvent`, the default;
   * `false` reports only errors.
   */
  datagramEvents?: boolean;
  /**
   * The reply policy. Every bound socket is added to `local`, and a missing
   * `rate` becomes `defaultRate()` of the bound addresses (none on loopback).
   */
  policy?: PolicyOptions;
  /**
   * `"server"`: one rate-limit table for all sockets, so a source gets one
   * budget however many sockets it writes to; `"socket"`: one table per
   * socket. Defaults to `"server"`; the batch backend supports only
   * `"socket"` with more than one socket.
   */
  rateLimitScope?: RateLimitScope;
  /**
   * Rewrites each datagram the policy lets through, in place and to the
   * same length, before it is sent back (the STAMP Session-Reflector of
   * `stamp/`); returning a {@linkcode ReflectDrop} sends nothing and counts
   * the drop, and a {@linkcode HeldReply} sends it later. Called as late
   * as possible before the send. Socket backend only: `serveBatch` throws
   * a TypeError for it.
   */
  reflect?: (
    data: Uint8Array,
    info: ReflectInfo,
  ) => ReflectDrop | HeldReply | undefined;
  /**
   * Builds a new `reflect` of the same kind, with state of its own, for
   * the socket backend's start-up work (`started`): the server's own is
   * never used for it. Without it the start-up work echoes only.
   */
  warmUpReflect?: () => EchoBackendOptions["reflect"];
}

/** A running echo server. */
export interface EchoServer {
  /** The first socket's address, with the port actually chosen. */
  addr: Deno.NetAddr;
  /**
   * Every socket's address, in the order of `hostnames` (a wildcard the
   * socket backend expanded stands for several, in the interfaces' order).
   */
  addrs: Deno.NetAddr[];
  /** Per socket, in the order of `addrs`, the host of `hostnames` it was bound for. */
  boundFor: string[];
  /**
   * What the server cannot check with the permissions it has, for the
   * start-up lines (at most one line per concern); empty when nothing.
   */
  warnings: string[];
  /**
   * Resolves with the final counters once every socket is closed; rejects
   * when a backend could not run (the batch backend's Worker failed).
   */
  finished: Promise<EchoStats>;
  /**
   * Resolves once the server's start-up work is done (the echo code run
   * on loopback sockets of its own, never counted), so that the first
   * datagram is answered as fast as the rest; the batch backend's also
   * once its Workers run. Absent when there is none to wait for.
   */
  started?: Promise<void>;
  /** The per-source rate limit in force, defaults worked out for the bound addresses. */
  rateLimit: RateLimit;
  /** Returns the counters so far. */
  stats(): EchoStats;
  /**
   * Returns each socket's counters so far, in the order of `addrs`: read
   * from the counters the echo loops keep anyway, so asking costs the echo
   * nothing (a metrics scrape calls it).
   */
  statsBySocket(): SocketStats[];
}
