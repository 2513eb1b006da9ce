/**
 * `serveEcho()`: an RFC 862 echo server over either I/O backend, one
 * {@linkcode EchoServer} however many sockets it binds.
 *
 * @example Echo on a free port until aborted
 * ```ts
 * import { serveEcho } from "./serve.ts";
 * import { equal, notEqual } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveEcho({ hostname: "127.0.0.1", port: 0, signal: controller.signal });
 * notEqual(server.addr.port, 0); // the port the system picked
 * controller.abort();
 * equal((await server.finished).echoed, 0);
 * ```
 *
 * @module
 */

import { DEFAULT_HOST, DEFAULT_PORT, sameHost } from "../net/address.ts";
import { type BatchServeOptions, serveBatch } from "../kernel/echo.ts";
import { serveSocket } from "../echo/socket.ts";
import type {
  EchoBackendOptions,
  EchoServer,
  ServerEvent,
} from "../echo/types.ts";
import type { PolicyOptions } from "../policy/policy.ts";
import { STAMP_TOO_SHORT, StampReflector } from "../stamp/reflector.ts";

const STAMP_HOOK_URL = new URL("./_stamp_hook.ts", import.meta.url).href;

/**
 * How {@linkcode serveEcho} answers as a STAMP Session-Reflector (RFC 8762)
 * instead of echoing. Structured-cloned into each batch Worker.
 */
export interface StampOptions {
  /** A sequence counter per session (RFC 8762 §4.3.1). */
  stateful: boolean;
  /** The reflector's timestamps: NTP (the default of RFC 8762) or PTPv2 truncated. */
  format: "ntp" | "ptp";
  /** The longest delay a Delayed Reply TLV is granted, ms; default 300000. */
  maxDelayMs?: number;
  /** Replies held at once for Delayed Reply TLVs (per socket on the batch backend); default 1024. */
  maxHeld?: number;
  /** Bytes of replies held at once (likewise); default 1 MiB. */
  maxHeldBytes?: number;
  /** Replies held at once for one source, an IPv4 address or IPv6 /64 (likewise); default 16. */
  maxHeldPerSource?: number;
}

/** Options for {@linkcode serveEcho}. */
export interface ServeEchoOptions {
  /** The address to bind, when `hostnames` is not given. Defaults to `localhost`. */
  hostname?: string;
  /**
   * Addresses to bind, one socket each, all on one port; wins over
   * `hostname`. An address given twice, in any spelling, binds once. A
   * wildcard (`0.0.0.0`, `::`) is one socket on the batch backend, which
   * sees each datagram's destination; the socket backend, which cannot,
   * binds one socket per interface address instead when it may list them
   * (`--allow-sys=networkInterfaces`), and else keeps the wildcard and says
   * what it cannot check in `warnings`.
   */
  hostnames?: readonly string[];
  /** The port to bind; 0 picks a free one. Defaults to 10000. */
  port?: number;
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
   * `rate` becomes the default for the bound addresses: no limit when every
   * one is loopback, else the one `server.ts --help` names (the returned
   * server's `rateLimit` says which).
   */
  policy?: PolicyOptions;
  /**
   * `"server"`: one rate-limit table for all sockets, so a source gets one
   * budget however many sockets it writes to; `"socket"`: one table per
   * socket. Defaults to `"server"`; the batch backend supports only
   * `"socket"` with more than one socket.
   */
  rateLimitScope?: "server" | "socket";
  /**
   * How datagrams move: `"socket"` (the default, `Deno.listenDatagram`) or
   * `"batch"` (Linux `recvmmsg`/`sendmmsg` in a Worker; needs
   * `--allow-ffi` and read access to this package).
   */
  io?: "socket" | "batch";
  /**
   * Answer as a STAMP Session-Reflector (RFC 8762) instead of echoing:
   * every datagram the policy allows is turned into its reply, and one
   * under 44 bytes is dropped (`stamp-too-short`). On the batch backend T2
   * is the kernel's receive time and the TTL is filled; on sockets T2 is
   * when the event loop saw the datagram and the TTL is 0 (unknown).
   */
  stamp?: StampOptions;
}

/**
 * Binds a UDP socket per address and echoes every datagram back to its
 * sender, byte for byte, until the signal aborts. Datagrams the policy
 * refuses get no reply and are counted by reason.
 *
 * @param options Where to bind, the backend, the policy and the events.
 * @returns The running server: its addresses, its counters, and `finished`,
 * which resolves with the final counters once `options.signal` aborts and
 * every socket is closed.
 * @throws {Error} "Cannot bind HOST:PORT: reason" when a socket cannot be
 * bound.
 * @throws {RangeError} For a policy option out of range, such as a negative
 * `rate` or a CIDR prefix too long for its family.
 * @throws {TypeError} For a policy CIDR that is not an IP address, or
 * `rateLimitScope: "server"` with several sockets on the batch backend.
 *
 * @example Echo one datagram
 * ```ts
 * import { serveEcho } from "./serve.ts";
 * import { deepEqual } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveEcho({ hostname: "127.0.0.1", port: 0, signal: controller.signal });
 * const client = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * try {
 *   await client.send(new TextEncoder().encode("ping"), server.addr);
 *   const [reply] = await client.receive();
 *   deepEqual(new TextDecoder().decode(reply), "ping");
 * } finally {
 *   client.close();
 *   controller.abort();
 * }
 * await server.finished;
 * ```
 */
export function serveEcho(options: ServeEchoOptions = {}): EchoServer {
  const { hostname = DEFAULT_HOST, io = "socket", stamp, ...rest } = options;
  const backend: BatchServeOptions = {
    ...rest,
    hostnames: distinctHosts(options.hostnames ?? [hostname]),
    port: options.port ?? DEFAULT_PORT,
  };
  if (stamp !== undefined && io === "batch") {
    backend.reflectModule = STAMP_HOOK_URL;
    backend.reflectOptions = stamp;
  } else if (stamp !== undefined) {
    backend.reflect = socketReflector(stamp);
    backend.warmUpReflect = () => socketReflector(stamp);
  }
  return io === "batch" ? serveBatch(backend) : serveSocket(backend);
}

/** The Session-Reflector on the socket backend: one for all its sockets. */
function socketReflector(
  options: StampOptions,
): EchoBackendOptions["reflect"] {
  const reflector = new StampReflector(options);
  return (data, info) => {
    const context = {
      from: info.from,
      local: info.local,
      receivedAtMs: performance.timeOrigin + info.receivedAt,
      canHold: true,
      holdMs: 0,
    };
    if (reflector.reflect(data, data, context) === STAMP_TOO_SHORT) {
      return STAMP_TOO_SHORT;
    }
    if (context.holdMs === 0) return undefined;
    const size = data.length;
    return {
      delayMs: context.holdMs,
      beforeSend: (reply: Uint8Array) => reflector.restamp(reply),
      release: () => reflector.release(size, info.from.hostname),
    };
  };
}

/**
 * The hosts without URL brackets, each address once however it is spelt
 * (`::1`, `[::1]` and `0:0:0:0:0:0:0:1` bind one socket).
 */
function distinctHosts(hostnames: readonly string[]): string[] {
  const distinct: string[] = [];
  for (const host of hostnames) {
    const bare = /^\[(.*)\]$/.exec(host)?.[1] ?? host;
    if (!distinct.some((seen) => sameHost(seen, bare))) distinct.push(bare);
  }
  return distinct;
}
