#!/usr/bin/env -S deno run --unstable-net --allow-net
/**
 * A UDP echo server (RFC 862): every datagram it receives goes back to its
 * sender byte for byte, the zero-length one too.
 *
 * Run it as a program:
 *
 * ```sh
 * deno run --unstable-net --allow-net server.ts            # localhost:10000
 * deno run --unstable-net --allow-net server.ts -p 0 -q    # a free port, no per-datagram lines
 * deno run --unstable-net --allow-net server.ts --json     # one JSON event per line
 * ```
 *
 * Or use it as a module:
 *
 * @example Echo on a free port until aborted
 * ```ts
 * import { serveEcho } from "./server.ts";
 * import { equal, notEqual } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveEcho({ hostname: "127.0.0.1", port: 0, signal: controller.signal });
 * notEqual(server.addr.port, 0); // the port the system picked
 * controller.abort();
 * const stats = await server.finished;
 * equal(stats.echoed, 0);
 * ```
 *
 * @module
 */

import {
  DEFAULT_HOST,
  DEFAULT_PORT,
  errorMessage,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  formatAddress,
  parseFlags,
  parseHost,
  parsePort,
  previewPayload,
  printError,
  RECEIVE_BUFFER_SIZE,
  VERSION,
} from "./shared.ts";
import { type BatchEvent, checkBatchSupport, serveBatch } from "./batch.ts";

/** Counters of what a server has done since it started. */
export interface EchoStats {
  /** Datagrams received. */
  received: number;
  /** Payload bytes received. */
  receivedBytes: number;
  /** Datagrams echoed back. */
  echoed: number;
  /** Payload bytes echoed back. */
  echoedBytes: number;
  /** Failed receives and sends; the server carries on after each. */
  errors: number;
  /** Milliseconds since the server started. */
  uptimeMs: number;
}

/** A datagram that was received and echoed back. */
export interface DatagramEvent {
  /** The kind of event. */
  type: "datagram";
  /** The sender, and so the address the echo went to. */
  from: Deno.NetAddr;
  /** The payload; a view of the receive buffer, valid only during the call. */
  data: Uint8Array;
  /** Bytes sent back. */
  sent: number;
}

/** A receive or send that failed; the server goes on. */
export interface ErrorEvent {
  /** The kind of event. */
  type: "error";
  /** What failed. */
  operation: "receive" | "send";
  /** The peer of a failed send. */
  peer?: Deno.NetAddr;
  /** What went wrong. */
  error: unknown;
}

/** Something a server did, as passed to {@linkcode ServeEchoOptions.onEvent}. */
export type ServerEvent = DatagramEvent | ErrorEvent;

/** Options for {@linkcode serveEcho}. */
export interface ServeEchoOptions {
  /** The address to bind. Defaults to `localhost`. */
  hostname?: string;
  /** The port to bind; 0 picks a free one. Defaults to 10000. */
  port?: number;
  /** Aborting it closes the socket and ends the server. */
  signal?: AbortSignal;
  /**
   * Called for each datagram and each error. Kept out of the way of the echo:
   * an exception it throws is ignored.
   */
  onEvent?: (event: ServerEvent) => void;
  /**
   * Report each datagram to `onEvent` (the default); `false` reports only
   * errors, which spares the batch backend copying every payload.
   */
  datagramEvents?: boolean;
  /**
   * How datagrams move: `"socket"` (the default, `Deno.listenDatagram`) or
   * `"batch"` (Linux `recvmmsg`/`sendmmsg` in a Worker; needs `--allow-ffi`,
   * see `batch.ts`).
   */
  io?: IoBackend;
}

/** The I/O backends of {@linkcode serveEcho}. */
export type IoBackend = "socket" | "batch";

/** The names `--io` accepts. */
export const IO_BACKENDS: readonly IoBackend[] = ["socket", "batch"];

/** A running echo server. */
export interface EchoServer {
  /** The address the socket is bound to, with the port actually chosen. */
  addr: Deno.NetAddr;
  /** Resolves with the final counters once the server has stopped. */
  finished: Promise<EchoStats>;
  /** Returns the counters so far. */
  stats(): EchoStats;
}

// After this many receive failures in a row, pause between tries so that a
// socket that fails at once cannot spin a core.
const RECEIVE_ERRORS_BEFORE_PAUSE = 3;
const RECEIVE_ERROR_PAUSE_MS = 50;

/**
 * Binds a UDP socket and echoes every datagram back to its sender until the
 * signal aborts. Throws an `Error` ("Cannot bind HOST:PORT: reason") when the
 * socket cannot be bound.
 *
 * @example
 * ```ts
 * import { serveEcho } from "./server.ts";
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
  if (options.io === "batch") return serveEchoBatch(options);
  const { hostname = DEFAULT_HOST, port = DEFAULT_PORT, signal, onEvent } =
    options;
  const datagramEvents = onEvent !== undefined &&
    options.datagramEvents !== false;
  let conn: Deno.DatagramConn;
  try {
    conn = Deno.listenDatagram({ transport: "udp", hostname, port });
  } catch (error) {
    throw new Error(
      `Cannot bind ${formatAddress({ hostname, port })}: ${
        errorMessage(error)
      }`,
      { cause: error },
    );
  }
  const startedAt = performance.now();
  const counters = {
    received: 0,
    receivedBytes: 0,
    echoed: 0,
    echoedBytes: 0,
    errors: 0,
  };
  const stats = (): EchoStats => ({
    ...counters,
    uptimeMs: performance.now() - startedAt,
  });
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    conn.close();
  };
  const emit = (event: ServerEvent) => {
    try {
      onEvent?.(event);
    } catch {
      // A broken log (a closed stdout, say) must not stop the echo.
    }
  };

  async function echoLoop(): Promise<void> {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    let failuresInRow = 0;
    while (!closed) {
      let data: Uint8Array;
      let from: Deno.NetAddr;
      try {
        const [received, addr] = await conn.receive(buffer);
        data = received;
        from = addr as Deno.NetAddr;
        failuresInRow = 0;
      } catch (error) {
        if (closed) break;
        counters.errors++;
        emit({ type: "error", operation: "receive", error });
        if (++failuresInRow >= RECEIVE_ERRORS_BEFORE_PAUSE) {
          await new Promise((resolve) =>
            setTimeout(resolve, RECEIVE_ERROR_PAUSE_MS)
          );
        }
        continue;
      }
      counters.received++;
      counters.receivedBytes += data.length;
      try {
        const sent = await conn.send(data, from);
        counters.echoed++;
        counters.echoedBytes += sent;
        if (datagramEvents) emit({ type: "datagram", from, data, sent });
      } catch (error) {
        if (closed) break;
        counters.errors++;
        emit({ type: "error", operation: "send", peer: from, error });
      }
    }
  }

  if (signal?.aborted) close();
  signal?.addEventListener("abort", close, { once: true });
  const finished = echoLoop().finally(() => {
    signal?.removeEventListener("abort", close);
    close();
  }).then(stats);
  return { addr: conn.addr as Deno.NetAddr, finished, stats };
}

/** {@linkcode serveEcho} with `io: "batch"`: the same contract over batch.ts. */
function serveEchoBatch(options: ServeEchoOptions): EchoServer {
  const { hostname = DEFAULT_HOST, port = DEFAULT_PORT, signal, onEvent } =
    options;
  const emit = (event: BatchEvent) => {
    if (event.event === "datagram") {
      if (event.dropped !== undefined) return;
      onEvent?.({
        type: "datagram",
        from: { transport: "udp", hostname: event.hostname, port: event.port },
        data: event.preview,
        sent: event.size,
      });
    } else {
      onEvent?.({
        type: "error",
        operation: event.op,
        ...(event.hostname === undefined ? {} : {
          peer: {
            transport: "udp",
            hostname: event.hostname,
            port: event.port!,
          },
        }),
        error: new Error(event.message),
      });
    }
  };
  const server = serveBatch({
    hostname,
    port,
    signal,
    onEvent: emit,
    datagramEvents: onEvent !== undefined && options.datagramEvents !== false,
    previewBytes: RECEIVE_BUFFER_SIZE,
  });
  const startedAt = performance.now();
  const stats = (): EchoStats => {
    const counters = server.counters();
    return {
      received: counters.received,
      receivedBytes: counters.receivedBytes,
      echoed: counters.echoed,
      echoedBytes: counters.echoedBytes,
      errors: counters.errors,
      uptimeMs: performance.now() - startedAt,
    };
  };
  return { addr: server.addr, finished: server.finished.then(stats), stats };
}

const USAGE = `Usage: server.ts [options]

A UDP echo server (RFC 862): every datagram goes back to its sender, byte for byte.

Options:
  -H, --host ADDR   address to bind: a name, IPv4 or IPv6 (default: ${DEFAULT_HOST})
  -p, --port N      port to bind, 0 picks a free one (default: ${DEFAULT_PORT})
  -q, --quiet       print no lines per datagram, only start-up and totals
      --json        print one JSON event per line on stdout instead of text
      --io MODE     socket (default) or batch: recvmmsg/sendmmsg in a Worker,
                    Linux only, needs --allow-ffi (deno task server:fast)
  -h, --help        show this help and exit
  -V, --version     show the version and exit

Stops on SIGINT (Ctrl-C) or SIGTERM and prints totals.
Exit status: 0 stopped by a signal, 1 failure (cannot bind), 2 usage error.`;

const FLAGS = {
  host: { type: "string", short: "H", default: DEFAULT_HOST },
  port: { type: "string", short: "p", default: String(DEFAULT_PORT) },
  quiet: { type: "boolean", short: "q", default: false },
  json: { type: "boolean", default: false },
  io: { type: "string", default: "socket" },
  help: { type: "boolean", short: "h", default: false },
  version: { type: "boolean", short: "V", default: false },
} as const;

function formatTotals(stats: EchoStats): string {
  const datagrams = (n: number) => `${n} datagram${n === 1 ? "" : "s"}`;
  const errors = `${stats.errors} error${stats.errors === 1 ? "" : "s"}`;
  return `received ${
    datagrams(stats.received)
  } (${stats.receivedBytes} bytes), ` +
    `echoed ${datagrams(stats.echoed)} (${stats.echoedBytes} bytes), ` +
    `${errors}, up ${(stats.uptimeMs / 1000).toFixed(1)} s`;
}

function logText(event: ServerEvent): void {
  if (event.type === "datagram") {
    const from = formatAddress(event.from);
    console.log(`received ${event.data.length} bytes from ${from}`);
    console.log(previewPayload(event.data));
    console.log(`sent ${event.sent} bytes back to ${from}`);
    console.log("waiting to receive message");
  } else if (event.operation === "send") {
    printError(
      `cannot echo to ${formatAddress(event.peer!)}: ${
        errorMessage(event.error)
      }`,
    );
  } else {
    printError(`cannot receive: ${errorMessage(event.error)}`);
  }
}

function logJson(event: ServerEvent): void {
  console.log(JSON.stringify(
    event.type === "datagram"
      ? {
        event: "datagram",
        from: formatAddress(event.from),
        bytes: event.data.length,
        sent: event.sent,
      }
      : {
        event: "error",
        operation: event.operation,
        ...(event.peer ? { peer: formatAddress(event.peer) } : {}),
        message: errorMessage(event.error),
      },
  ));
}

function parseIo(text: string): IoBackend {
  if (!(IO_BACKENDS as readonly string[]).includes(text)) {
    throw new TypeError(
      `Cannot use --io "${text}": expected ${IO_BACKENDS.join(" or ")}`,
    );
  }
  return text as IoBackend;
}

function onShutdownSignal(abort: () => void): () => void {
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT", "SIGBREAK"]
    : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, abort);
  return () => {
    for (const signal of signals) Deno.removeSignalListener(signal, abort);
  };
}

async function main(args: string[]): Promise<number> {
  let hostname: string;
  let port: number;
  let io: IoBackend;
  let flags;
  try {
    const parsed = parseFlags(args, FLAGS);
    flags = parsed.values;
    if (parsed.positionals.length > 0) {
      throw new TypeError(
        `Cannot parse arguments: unexpected "${
          parsed.positionals[0]
        }" (see --help)`,
      );
    }
    hostname = parseHost(flags.host);
    port = parsePort(flags.port);
    io = parseIo(flags.io);
  } catch (error) {
    printError(error);
    return EXIT_USAGE;
  }
  if (flags.help) {
    console.log(USAGE);
    return EXIT_OK;
  }
  if (flags.version) {
    console.log(`udp-echo server ${VERSION}`);
    return EXIT_OK;
  }

  if (io === "batch") {
    try {
      checkBatchSupport();
    } catch (error) {
      printError(error);
      return EXIT_USAGE;
    }
  }

  const json = flags.json;
  const log = json ? logJson : logText;
  const controller = new AbortController();
  let server: EchoServer;
  try {
    server = serveEcho({
      hostname,
      port,
      signal: controller.signal,
      onEvent: log,
      datagramEvents: !flags.quiet,
      io,
    });
  } catch (error) {
    printError(error);
    return EXIT_FAILURE;
  }
  const removeSignalListeners = onShutdownSignal(() => controller.abort());
  if (json) {
    console.log(JSON.stringify({
      event: "listening",
      host: flags.host,
      address: server.addr.hostname,
      port: server.addr.port,
    }));
  } else {
    console.log(`starting up on ${flags.host} port ${server.addr.port}`);
    if (!flags.quiet) console.log("waiting to receive message");
  }
  let stats: EchoStats;
  try {
    stats = await server.finished;
  } catch (error) {
    // Only the batch backend can fail after binding (its Worker may not run).
    removeSignalListeners();
    printError(error);
    return EXIT_FAILURE;
  }
  removeSignalListeners();
  if (json) {
    console.log(JSON.stringify({
      event: "shutdown",
      received: stats.received,
      received_bytes: stats.receivedBytes,
      echoed: stats.echoed,
      echoed_bytes: stats.echoedBytes,
      errors: stats.errors,
      uptime_s: Math.round(stats.uptimeMs) / 1000,
    }));
  } else {
    console.log(`shutting down: ${formatTotals(stats)}`);
  }
  return EXIT_OK;
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
