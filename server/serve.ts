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

import { DEFAULT_HOST, DEFAULT_PORT, familyOf } from "../net/address.ts";
import {
  type BatchEvent,
  serveBatch as serveBatchSocket,
} from "../io/batch.ts";
import {
  addCounters,
  bindAll,
  guardEvents,
  serverPolicy,
  zeroCounters,
} from "../io/_shared.ts";
import { type DropReason, rateLimitOf } from "../policy/policy.ts";
import type { EchoBackendOptions, EchoServer, EchoStats } from "../io/types.ts";
import { RECEIVE_BUFFER_SIZE } from "../net/payload.ts";
import { serveSocket } from "../io/socket.ts";

/** The I/O backends of {@linkcode serveEcho}. */
export type IoBackend = "socket" | "batch";

/** The names `--io` accepts. */
export const IO_BACKENDS: readonly IoBackend[] = ["socket", "batch"];

/** Options for {@linkcode serveEcho}. */
export interface ServeEchoOptions
  extends Omit<EchoBackendOptions, "hostnames" | "port"> {
  /** The address to bind, when `hostnames` is not given. Defaults to `localhost`. */
  hostname?: string;
  /** Addresses to bind, one socket each, all on one port; wins over `hostname`. */
  hostnames?: readonly string[];
  /** The port to bind; 0 picks a free one. Defaults to 10000. */
  port?: number;
  /**
   * How datagrams move: `"socket"` (the default, `Deno.listenDatagram`) or
   * `"batch"` (Linux `recvmmsg`/`sendmmsg` in a Worker, see `io/batch.ts`;
   * needs `--allow-ffi` and read access to this package).
   */
  io?: IoBackend;
}

/**
 * Binds a UDP socket per address and echoes every datagram back to its
 * sender, byte for byte, until the signal aborts. Throws an `Error`
 * ("Cannot bind HOST:PORT: reason") when a socket cannot be bound.
 *
 * @example
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
  const { hostname = DEFAULT_HOST, io = "socket", ...rest } = options;
  const backend: EchoBackendOptions = {
    ...rest,
    hostnames: options.hostnames ?? [hostname],
    port: options.port ?? DEFAULT_PORT,
  };
  return io === "batch" ? serveBatch(backend) : serveSocket(backend);
}

// Bridge to the batch engine's per-socket API until io/batch.ts serves the
// model itself.
function serveBatch(options: EchoBackendOptions): EchoServer {
  const emit = guardEvents(options.onEvent);
  const toNetAddr = (hostname: string, port: number): Deno.NetAddr => ({
    transport: "udp",
    hostname,
    port,
  });
  const servers = bindAll(options, {
    bind: (hostname, port) => {
      const socket = { local: undefined as unknown as Deno.NetAddr };
      let server;
      try {
        server = serveBatchSocket({
          hostname,
          port,
          signal: options.signal,
          onEvent: (event: BatchEvent) => {
            if (event.event === "error") {
              emit({
                type: "error",
                operation: event.op,
                local: socket.local,
                ...(event.hostname === undefined
                  ? {}
                  : { peer: toNetAddr(event.hostname, event.port!) }),
                error: new Error(event.message),
              });
            } else if (event.dropped !== undefined) {
              emit({
                type: "dropped",
                from: toNetAddr(event.hostname, event.port),
                local: socket.local,
                data: event.preview,
                reason: event.dropped as DropReason,
              });
            } else {
              emit({
                type: "datagram",
                from: toNetAddr(event.hostname, event.port),
                local: socket.local,
                data: event.preview,
                sent: event.size,
              });
            }
          },
          datagramEvents: options.onEvent !== undefined &&
            options.datagramEvents !== false,
          previewBytes: RECEIVE_BUFFER_SIZE,
          decideModule: new URL("../io/_policy_hook.ts", import.meta.url).href,
          decideOptions: (addr: Deno.NetAddr) =>
            serverPolicy(options.policy, [
              addr,
              ...options.hostnames.filter((h) => familyOf(h) !== undefined).map(
                (h): Deno.NetAddr => ({
                  transport: "udp",
                  hostname: h,
                  port: addr.port,
                }),
              ),
            ]),
        });
      } catch (error) {
        // bindAll names the address itself.
        const cause = (error as Error).cause;
        throw Object.assign(
          new Error((error as Error).message.replace(/^Cannot bind \S+: /, "")),
          { name: (cause as Error | undefined)?.name ?? "Error" },
        );
      }
      socket.local = server.addr;
      return server;
    },
    portOf: (server) => server.addr.port,
    close: () => {},
  });
  const startedAt = performance.now();
  const stats = (): EchoStats => {
    const total = zeroCounters();
    for (const server of servers) {
      const c = server.counters();
      addCounters(total, {
        ...zeroCounters(),
        received: c.received,
        receivedBytes: c.receivedBytes,
        echoed: c.echoed,
        echoedBytes: c.echoedBytes,
        dropped: c.dropped,
        droppedBy: c.droppedBy,
        errors: c.errors,
        activeSources: c.activeSources,
      });
    }
    return { ...total, uptimeMs: performance.now() - startedAt };
  };
  return {
    addr: servers[0]!.addr,
    addrs: servers.map((s) => s.addr),
    finished: Promise.all(servers.map((s) => s.finished)).then(stats),
    rateLimit: rateLimitOf(
      serverPolicy(options.policy, servers.map((s) => s.addr)),
    ),
    stats,
  };
}
