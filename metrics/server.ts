/**
 * The echo server's Prometheus metrics: a `prom-client` registry whose
 * counters are read from {@linkcode EchoServer.stats} and
 * {@linkcode EchoServer.statsBySocket} when Prometheus scrapes, never
 * counted per datagram, so serving metrics costs the echo loop nothing.
 *
 * @example Scrape a server once
 * ```ts
 * import { serveEcho } from "../server/serve.ts";
 * import { serverMetrics } from "./server.ts";
 * import { match } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveEcho({ hostname: "127.0.0.1", port: 0, signal: controller.signal });
 * const registry = serverMetrics(server, { io: "socket" });
 * match(await registry.metrics(), /^udp_echo_received_datagrams_total\{address="127\.0\.0\.1:\d+"\} 0$/m);
 * controller.abort();
 * await server.finished;
 * ```
 *
 * @module
 */

import { Counter, Gauge, Registry } from "prom-client";
import { formatAddress } from "../net/address.ts";
import { DROP_REASONS } from "../policy/policy.ts";
import type { EchoServer, IoOperation, SocketStats } from "../echo/types.ts";
import { VERSION } from "../cli/flags.ts";

/** Options for {@linkcode serverMetrics}. */
export interface ServerMetricsOptions {
  /** The I/O backend, for `udp_echo_info{io}`. */
  io: string;
  /** Log lines the output dropped so far (a full or stuck stdout); 0 when not given. */
  logLinesDropped?: () => number;
}

const OPERATIONS: readonly IoOperation[] = ["receive", "send"];

/**
 * A registry of the server's metrics, each read from the server's own
 * counters at scrape time: traffic and errors per bound socket (label
 * `address`), drops by `reason` for the whole server (sockets may share one
 * rate-limit table, so a drop belongs to no single socket), the kernel's
 * receive-buffer drops per socket, active sources,
 * dropped log lines and events, and `udp_echo_info{version,io}`.
 */
export function serverMetrics(
  server: EchoServer,
  options: ServerMetricsOptions,
): Registry {
  const registry = new Registry();
  const registers = [registry];
  // One read per scrape: every collect() of that scrape sees the same numbers.
  let bySocket: SocketStats[] = [];
  let stats = server.stats();
  const perSocket = (
    name: string,
    help: string,
    read: (socket: SocketStats) => number,
  ) =>
    new Counter({
      name,
      help,
      labelNames: ["address"],
      registers,
      collect() {
        this.reset();
        for (const socket of bySocket) {
          this.inc({ address: formatAddress(socket.local) }, read(socket));
        }
      },
    });
  new Gauge({
    name: "udp_echo_info",
    help: "Always 1: the version and I/O backend of this server.",
    labelNames: ["version", "io"],
    registers,
    collect() {
      // The first metric collected: take this scrape's reading here.
      stats = server.stats();
      bySocket = server.statsBySocket();
      this.set({ version: VERSION, io: options.io }, 1);
    },
  });
  perSocket(
    "udp_echo_received_datagrams_total",
    "Datagrams received, by bound socket.",
    (socket) => socket.received,
  );
  perSocket(
    "udp_echo_received_bytes_total",
    "UDP payload bytes received, by bound socket.",
    (socket) => socket.receivedBytes,
  );
  perSocket(
    "udp_echo_echoed_datagrams_total",
    "Datagrams echoed back, by bound socket.",
    (socket) => socket.echoed,
  );
  perSocket(
    "udp_echo_echoed_bytes_total",
    "UDP payload bytes echoed back, by bound socket.",
    (socket) => socket.echoedBytes,
  );
  new Counter({
    name: "udp_echo_receive_buffer_drops_total",
    help:
      "Datagrams the kernel dropped at a bound socket before the server read them (a full receive buffer): drops at this host, not on the path. No sample for a socket whose count cannot be read.",
    labelNames: ["address"],
    registers,
    collect() {
      this.reset();
      for (const socket of bySocket) {
        if (socket.hostDrops === null) continue;
        this.inc({ address: formatAddress(socket.local) }, socket.hostDrops);
      }
    },
  });
  new Counter({
    name: "udp_echo_dropped_datagrams_total",
    help:
      "Datagrams received and not echoed, by reason (policy reasons, and shutdown).",
    labelNames: ["reason"],
    registers,
    collect() {
      this.reset();
      const reasons = new Set<string>([
        ...DROP_REASONS,
        "shutdown",
        ...Object.keys(stats.droppedBy),
      ]);
      for (const reason of reasons) {
        const count = (stats.droppedBy as Record<string, number>)[reason] ?? 0;
        this.inc({ reason }, count);
      }
    },
  });
  new Counter({
    name: "udp_echo_errors_total",
    help: "Failed receives and sends, by bound socket and operation.",
    labelNames: ["address", "operation"],
    registers,
    collect() {
      this.reset();
      for (const socket of bySocket) {
        for (const operation of OPERATIONS) {
          this.inc(
            { address: formatAddress(socket.local), operation },
            socket.errorsBy[operation],
          );
        }
      }
    },
  });
  new Gauge({
    name: "udp_echo_active_sources",
    help: "Sources the rate limit holds a recent datagram of.",
    registers,
    collect() {
      this.set(stats.activeSources);
    },
  });
  new Counter({
    name: "udp_echo_log_lines_dropped_total",
    help: "Log lines dropped because standard output was not keeping up.",
    registers,
    collect() {
      this.reset();
      this.inc(options.logLinesDropped?.() ?? 0);
    },
  });
  new Counter({
    name: "udp_echo_log_events_dropped_total",
    help:
      "Events the batch backend's bounded queues dropped before the log (the datagrams were served).",
    registers,
    collect() {
      this.reset();
      this.inc(stats.eventsDropped);
    },
  });
  return registry;
}
