#!/usr/bin/env -S deno run --unstable-net --allow-net --v8-flags=--max-semi-space-size=4
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
 * The shebang, `deno task server` and `deno task compile` add
 * `--v8-flags=--max-semi-space-size=4`: it caps V8's young generation, so
 * the resident size stays flat over millions of echoes instead of growing
 * by a quarter (README, Performance). A program that imports `serveEcho`
 * can give its own `deno run` the same flag.
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

import { checkUnstableNet } from "./io/socket.ts";
import {
  DEFAULT_HOST,
  DEFAULT_PORT,
  formatAddress,
  parseHost,
  parsePort,
} from "./net/address.ts";
import { errorMessage } from "./net/errors.ts";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, VERSION } from "./cli/exit.ts";
import { parseFlags } from "./cli/flags.ts";
import { previewPayload, RECEIVE_BUFFER_SIZE } from "./net/payload.ts";
import { printError } from "./cli/output.ts";
import { resolveAddress } from "./net/resolve.ts";
import {
  DEFAULT_MAX_SOURCES,
  DEFAULT_RATE,
  defaultRate,
  type DropReason,
  EchoPolicy,
  isLoopback,
  type PolicyOptions,
} from "./policy/policy.ts";
import { checkBatchSupport, serveBatch } from "./io/batch.ts";

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
  /** Datagrams the policy dropped, unanswered. */
  dropped: number;
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

/** A datagram the policy refused to echo. */
export interface DroppedEvent {
  /** The kind of event. */
  type: "dropped";
  /** The sender, who got no reply. */
  from: Deno.NetAddr;
  /** The payload; a view of the receive buffer, valid only during the call. */
  data: Uint8Array;
  /** Why it got no reply. */
  reason: DropReason;
}

/** A receive or send that failed; the server goes on. */
export interface EchoErrorEvent {
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
export type ServerEvent = DatagramEvent | DroppedEvent | EchoErrorEvent;

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
   * Decides per datagram whether to echo it (see `policy.ts`); the server
   * registers its own address with it. Defaults to the fixed rules, with the
   * default rate limit for the bound address (none on loopback).
   */
  policy?: EchoPolicy;
  /**
   * Report each datagram (echoed or dropped) to `onEvent`, the default;
   * `false` reports only errors, which spares the batch backend copying
   * every payload to the main thread.
   */
  datagramEvents?: boolean;
  /**
   * How datagrams move: `"socket"` (the default, `Deno.listenDatagram`) or
   * `"batch"` (Linux `recvmmsg`/`sendmmsg` in a Worker, see `batch.ts`;
   * needs `--allow-ffi` and read access to this directory).
   */
  io?: IoBackend;
  /**
   * With `io: "batch"`: the options the Worker builds its own policy from
   * (an `EchoPolicy` object cannot cross into a Worker), or a function of
   * the bound address that returns them (to list every socket of the server
   * in `local`). Defaults to the fixed rules with the default rate limit for
   * the bound address.
   */
  policyOptions?: PolicyOptions | ((addr: Deno.NetAddr) => PolicyOptions);
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
  /** Drops by reason, from a policy of its own (the batch backend's Worker). */
  droppedBy?(): DropCounts;
  /** Sources its own policy tracks now (the batch backend's Worker). */
  activeSources?(): number;
}

// After this many receive failures in a row, pause between tries so that a
// socket that fails at once cannot spin a core.
const RECEIVE_ERRORS_BEFORE_PAUSE = 3;
const RECEIVE_ERROR_PAUSE_MS = 50;

// Receives in flight at most. At 32 datagrams in flight, up to 4 receivers
// gave 0.82x to 1.17x the echoes/s of one over four benchmark runs (README,
// "Performance"), while 32 fixed receivers doubled the round trip at one in
// flight; one datagram in flight only ever uses one receiver.
const MAX_RECEIVERS = 4;

// A receive that settles this soon (milliseconds) found a datagram already
// queued: Deno completes it without a trip through the event loop (about
// 2 µs), while waiting for one to arrive takes tens of microseconds.
const QUEUED_MS = 0.015;

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
  const {
    hostname = DEFAULT_HOST,
    port = DEFAULT_PORT,
    signal,
    onEvent,
  } = options;
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
  const datagramEvents = onEvent !== undefined &&
    options.datagramEvents !== false;
  const policy = options.policy ??
    new EchoPolicy({
      rate: defaultRate([(conn.addr as Deno.NetAddr).hostname]),
    });
  // Registered before the first receive can complete: no datagram is ever
  // judged without knowing this socket.
  policy.addLocal(conn.addr as Deno.NetAddr);
  const startedAt = performance.now();
  const counters = {
    received: 0,
    receivedBytes: 0,
    echoed: 0,
    echoedBytes: 0,
    dropped: 0,
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

  // The hot path, chosen by measurement (bench/loops.ts, README
  // "Performance"). While idle one receive is in flight, which gives the
  // shortest round trip at one datagram in flight. A receive that found a
  // datagram already queued brings in one more receiver, up to MAX_RECEIVERS,
  // and an extra receiver leaves as soon as it has to wait. Each receiver owns
  // its buffer and awaits its own send before receiving into it again, so no
  // receive can overwrite bytes a pending send still reads.
  async function echoLoop(): Promise<void> {
    const spareBuffers: Uint8Array[] = [];
    let extras = 0;
    let failuresInRow = 0;
    // Resolves once every receiver has stopped; only the primary one runs
    // until the socket closes, so that is when the count reaches zero.
    let running = 0;
    const { promise: stopped, resolve: allStopped } = Promise
      .withResolvers<void>();

    async function receiver(buffer: Uint8Array, primary: boolean) {
      running++;
      try {
        await receive(buffer, primary);
      } finally {
        if (--running === 0) allStopped();
      }
    }

    async function receive(buffer: Uint8Array, primary: boolean) {
      while (!closed) {
        const issuedAt = performance.now();
        let data: Uint8Array;
        let from: Deno.NetAddr;
        try {
          const datagram = await conn.receive(buffer);
          data = datagram[0];
          from = datagram[1] as Deno.NetAddr;
          failuresInRow = 0;
        } catch (error) {
          if (closed) break;
          counters.errors++;
          emit({ type: "error", operation: "receive", error });
          if (!primary) break;
          if (++failuresInRow >= RECEIVE_ERRORS_BEFORE_PAUSE) {
            await new Promise((resolve) =>
              setTimeout(resolve, RECEIVE_ERROR_PAUSE_MS)
            );
          }
          continue;
        }
        const queued = performance.now() - issuedAt < QUEUED_MS;
        if (queued && extras < MAX_RECEIVERS - 1) {
          extras++;
          const spare = spareBuffers.pop() ??
            new Uint8Array(RECEIVE_BUFFER_SIZE);
          receiver(spare, false);
        }
        counters.received++;
        counters.receivedBytes += data.length;
        const verdict = policy.decide(from, data.length);
        if (verdict !== "echo") {
          counters.dropped++;
          if (datagramEvents) {
            emit({ type: "dropped", from, data, reason: verdict });
          }
        } else {
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
        if (!primary && !queued) break;
      }
      if (!primary) {
        extras--;
        spareBuffers.push(buffer);
      }
    }

    receiver(new Uint8Array(RECEIVE_BUFFER_SIZE), true);
    await stopped;
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
  const { policyOptions } = options;
  const server = serveBatch({
    hostnames: [hostname],
    port,
    signal,
    onEvent,
    datagramEvents: options.datagramEvents,
    // The function form needs the bound port (this server's other sockets
    // share it): the policy's decide module called with options made per
    // bound address.
    ...(typeof policyOptions === "function"
      ? {
        decideModule: new URL("./io/_policy_hook.ts", import.meta.url).href,
        decideOptions: policyOptions,
      }
      : { policy: policyOptions }),
  });
  const stats = (): EchoStats => {
    const { droppedBy: _d, errorsBy: _e, activeSources: _a, ...rest } = server
      .stats();
    return rest;
  };
  return {
    addr: server.addr,
    finished: server.finished.then(stats),
    stats,
    droppedBy: () => server.stats().droppedBy,
    activeSources: () => server.stats().activeSources,
  };
}

const USAGE = `Usage: server.ts [options]

A UDP echo server (RFC 862): every datagram goes back to its sender, byte for byte.

Options:
  -H, --host ADDR         address to bind: a name, IPv4 or IPv6 (default: ${DEFAULT_HOST});
                          repeat for one socket per address, all on one port
  -p, --port N            port to bind, 0 picks a free one (default: ${DEFAULT_PORT})
  -q, --quiet             print no lines per datagram, only start-up and totals
      --json              print one JSON event per line on stdout instead of text
      --rate N            echo at most N datagrams/s per source (an IPv4 address or an
                          IPv6 /64); 0 turns it off (default: off when every address is
                          loopback, else ${DEFAULT_RATE})
      --burst N           datagrams a source may send at once (default: the rate)
      --max-sources N     sources the rate limit tracks at once (default: ${DEFAULT_MAX_SOURCES})
      --allow CIDR        echo only to these sources (repeatable; IPv4 or IPv6)
      --deny CIDR         never echo to these sources (repeatable; wins over --allow)
      --max-size N        drop datagrams longer than N bytes, never echo them cut
      --stats-interval S  print a one-line summary every S seconds
      --io MODE           socket (default) or batch: recvmmsg/sendmmsg in a Worker,
                          Linux only, needs --allow-ffi (deno task server:fast)
  -h, --help              show this help and exit
  -V, --version           show the version and exit

Never echoes to source ports below 1024 or of known UDP services, to broadcast,
multicast or unspecified addresses, or to its own sockets (see README, Security).
Stops on SIGINT (Ctrl-C) or SIGTERM and prints totals.
Exit status: 0 stopped by a signal, 1 failure (cannot bind), 2 usage error.`;

const FLAGS = {
  host: { type: "string", short: "H", multiple: true },
  port: { type: "string", short: "p", default: String(DEFAULT_PORT) },
  quiet: { type: "boolean", short: "q", default: false },
  json: { type: "boolean", default: false },
  rate: { type: "string" },
  burst: { type: "string" },
  "max-sources": { type: "string" },
  allow: { type: "string", multiple: true },
  deny: { type: "string", multiple: true },
  "max-size": { type: "string" },
  "stats-interval": { type: "string" },
  io: { type: "string", default: "socket" },
  help: { type: "boolean", short: "h", default: false },
  version: { type: "boolean", short: "V", default: false },
} as const;

const NUMBER = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

function plural(n: number, noun: string): string {
  return `${NUMBER.format(n)} ${noun}${n === 1 ? "" : "s"}`;
}

function formatTotals(stats: EchoStats, dropped: DropCounts): string {
  return `received ${
    plural(stats.received, "datagram")
  } (${stats.receivedBytes} bytes), ` +
    `echoed ${
      plural(stats.echoed, "datagram")
    } (${stats.echoedBytes} bytes), ` +
    // Drops only when there were any: the tutorial's totals stay as they are.
    (Object.keys(dropped).length > 0 ? `${formatDropped(dropped)}, ` : "") +
    `${plural(stats.errors, "error")}, ` +
    `up ${(stats.uptimeMs / 1000).toFixed(1)} s`;
}

function logText(event: ServerEvent): void {
  if (event.type === "datagram") {
    const from = formatAddress(event.from);
    console.log(`received ${event.data.length} bytes from ${from}`);
    console.log(previewPayload(event.data));
    console.log(`sent ${event.sent} bytes back to ${from}`);
    console.log("waiting to receive message");
  } else if (event.type === "dropped") {
    console.log(
      `dropped ${event.data.length} bytes from ${
        formatAddress(event.from)
      }: ${event.reason}`,
    );
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
        preview: previewPayload(event.data),
      }
      : event.type === "dropped"
      ? {
        event: "dropped",
        from: formatAddress(event.from),
        bytes: event.data.length,
        reason: event.reason,
        preview: previewPayload(event.data),
      }
      : {
        event: "error",
        operation: event.operation,
        ...(event.peer ? { peer: formatAddress(event.peer) } : {}),
        message: errorMessage(event.error),
      },
  ));
}

/** Per-datagram text lines allowed each second before they fold. */
const LOG_DATAGRAMS_PER_SECOND = 20;

/**
 * Wraps a text log so that past `perSecond` datagram lines in a second the
 * rest fold into one `... N more datagrams` line: a flood must neither slow
 * the echo down to the speed of a terminal nor fill a disk. Errors always
 * pass. `flush()` writes the pending fold line.
 */
function foldDatagramLog(
  log: (event: ServerEvent) => void,
  perSecond: number,
): { log: (event: ServerEvent) => void; flush: () => void } {
  let windowStart = performance.now();
  let shown = 0;
  let folded = 0;
  const flush = () => {
    if (folded > 0) console.log(`... ${plural(folded, "more datagram")}`);
    folded = 0;
  };
  return {
    log(event) {
      if (event.type === "error") return log(event);
      const now = performance.now();
      if (now - windowStart >= 1000) {
        flush();
        windowStart = now;
        shown = 0;
      }
      if (shown < perSecond) {
        shown++;
        log(event);
      } else {
        folded++;
      }
    },
    flush,
  };
}

/** Drops by reason, only the reasons that occurred. */
export type DropCounts = Partial<Record<DropReason, number>>;

function dropCounts(policy: EchoPolicy): DropCounts {
  const counts: DropCounts = {};
  for (const [verdict, count] of Object.entries(policy.counts())) {
    if (verdict !== "echo" && count > 0) counts[verdict as DropReason] = count;
  }
  return counts;
}

/** Adds up the drops by reason of servers that keep their own policy. */
function sumDropped(servers: EchoServer[]): DropCounts {
  const total: DropCounts = {};
  for (const server of servers) {
    for (const [reason, count] of Object.entries(server.droppedBy?.() ?? {})) {
      const key = reason as DropReason;
      total[key] = (total[key] ?? 0) + count;
    }
  }
  return total;
}

function parseIo(text: string): IoBackend {
  if (!(IO_BACKENDS as readonly string[]).includes(text)) {
    throw new TypeError(
      `Cannot use --io "${text}": expected ${IO_BACKENDS.join(" or ")}`,
    );
  }
  return text as IoBackend;
}

function formatDropped(dropped: DropCounts): string {
  const entries = Object.entries(dropped);
  const total = entries.reduce((sum, [, count]) => sum + count, 0);
  return `dropped ${NUMBER.format(total)}${
    entries.length === 0
      ? ""
      : ` (${
        entries.map(([reason, n]) => `${reason} ${NUMBER.format(n)}`).join(", ")
      })`
  }`;
}

/** Adds up the counters of several sockets. */
function sumStats(servers: EchoServer[]): EchoStats {
  const total: EchoStats = {
    received: 0,
    receivedBytes: 0,
    echoed: 0,
    echoedBytes: 0,
    dropped: 0,
    errors: 0,
    uptimeMs: 0,
  };
  for (const server of servers) {
    const stats = server.stats();
    for (const key of Object.keys(total) as (keyof EchoStats)[]) {
      total[key] = key === "uptimeMs"
        ? Math.max(total[key], stats[key])
        : total[key] + stats[key];
    }
  }
  return total;
}

/**
 * Prints a one-line summary every `seconds`: received (and its rate over the
 * interval), echoed, dropped by reason, errors, active sources.
 * Returns a function that stops it.
 */
function startStatsTimer(
  seconds: number,
  servers: EchoServer[],
  options: {
    policy: EchoPolicy;
    json: boolean;
    beforeLine?: () => void;
    /** Drops by reason; defaults to the policy's counts. */
    dropped?: () => DropCounts;
    /** Active sources; defaults to the policy's. */
    activeSources?: () => number;
  },
): () => void {
  const { policy, json, beforeLine } = options;
  const droppedNow = options.dropped ?? (() => dropCounts(policy));
  const activeNow = options.activeSources ?? (() => policy.activeSources());
  let last = { at: performance.now(), received: 0 };
  const timer = setInterval(() => {
    const stats = sumStats(servers);
    const now = performance.now();
    const rate = (stats.received - last.received) * 1000 / (now - last.at);
    last = { at: now, received: stats.received };
    const dropped = droppedNow();
    const active = activeNow();
    beforeLine?.();
    if (json) {
      console.log(JSON.stringify({
        event: "stats",
        received: stats.received,
        echoed: stats.echoed,
        dropped,
        errors: stats.errors,
        rate: Math.round(rate * 10) / 10,
        active_sources: active,
      }));
    } else {
      console.log(
        `stats: received ${NUMBER.format(stats.received)} (${
          NUMBER.format(rate)
        }/s), echoed ${NUMBER.format(stats.echoed)}, ${
          formatDropped(dropped)
        }, ${plural(stats.errors, "error")}, ${
          plural(active, "active source")
        }`,
      );
    }
  }, seconds * 1000);
  return () => clearInterval(timer);
}

function parseCount(
  text: string | undefined,
  flag: string,
): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,15}$/.test(text)) {
    throw new TypeError(
      `Cannot use --${flag} "${text}": expected a whole number`,
    );
  }
  return Number(text);
}

function parseSeconds(
  text: string | undefined,
  flag: string,
): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d*\.?\d+$/.test(text) || !(value >= 0.01 && value <= 86_400)) {
    throw new RangeError(
      `Cannot use --${flag} "${text}": expected seconds from 0.01 to 86400`,
    );
  }
  return value;
}

/** The policy flags as {@linkcode PolicyOptions}; `rate` is left out unless given. */
function parsePolicyFlags(
  flags: {
    rate?: string;
    burst?: string;
    "max-sources"?: string;
    "max-size"?: string;
    allow?: string[];
    deny?: string[];
  },
): PolicyOptions {
  let rate: number | undefined;
  if (flags.rate !== undefined) {
    rate = Number(flags.rate);
    if (!/^\d*\.?\d+$/.test(flags.rate) || !Number.isFinite(rate)) {
      throw new TypeError(
        `Cannot use --rate "${flags.rate}": expected datagrams per second, 0 or more`,
      );
    }
  }
  const options: PolicyOptions = {
    burst: parseCount(flags.burst, "burst"),
    maxSources: parseCount(flags["max-sources"], "max-sources"),
    maxSize: parseCount(flags["max-size"], "max-size"),
    allow: flags.allow,
    deny: flags.deny,
  };
  if (rate !== undefined) options.rate = rate;
  // Let the constructor check the CIDRs and ranges before anything is bound.
  new EchoPolicy({ ...options, rate: rate ?? 0 });
  return options;
}

/**
 * The addresses and directed broadcasts of this host's interfaces, for the
 * own-address check on wildcard sockets; empty without `--allow-sys`.
 */
function hostInterfaces(): Pick<
  PolicyOptions,
  "interfaceAddresses" | "broadcastAddresses"
> {
  const permission = Deno.permissions.querySync({
    name: "sys",
    kind: "networkInterfaces",
  });
  if (permission.state !== "granted") return {};
  const interfaces = Deno.networkInterfaces();
  const broadcastAddresses: string[] = [];
  for (const { family, address, netmask } of interfaces) {
    if (family !== "IPv4") continue;
    const octets = address.split(".").map(Number);
    const mask = netmask.split(".").map(Number);
    broadcastAddresses.push(
      octets.map((octet, k) => (octet | (~mask[k]! & 255)) & 255).join("."),
    );
  }
  return {
    interfaceAddresses: interfaces.map(({ address }) => address),
    broadcastAddresses: broadcastAddresses.filter((a) =>
      a !== "255.255.255.255"
    ),
  };
}

/** A host to bind: as the user gave it, and the IP address it stands for. */
interface BindHost {
  name: string;
  address: string;
}

/**
 * Resolves the hosts to bind, dropping any that name an address already in
 * the list (`-H localhost -H 127.0.0.1` is one socket). A name that does not
 * resolve is kept as it is: binding it reports the error, and as no IP
 * literal it counts as not loopback for the default rate limit.
 */
async function resolveHosts(hostnames: string[]): Promise<BindHost[]> {
  const hosts: BindHost[] = [];
  for (const name of hostnames) {
    const address = await resolveAddress({ hostname: name, port: 0 })
      .then((resolved) => resolved.hostname, () => name);
    if (!hosts.some((host) => host.address === address)) {
      hosts.push({ name, address });
    }
  }
  return hosts;
}

/**
 * Binds one echo socket per host, all on one port: with port 0 the first
 * picks it and the others take the same. Aborts those already bound and
 * throws when one cannot be bound.
 */
function bindServers(
  hostnames: string[],
  options: Omit<ServeEchoOptions, "hostname">,
  controller: AbortController,
): EchoServer[] {
  const servers: EchoServer[] = [];
  let port = options.port;
  try {
    for (const hostname of hostnames) {
      const server = serveEcho({ ...options, hostname, port });
      servers.push(server);
      port = server.addr.port;
    }
  } catch (error) {
    controller.abort();
    throw error;
  }
  return servers;
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
  let hostnames: string[];
  let port: number;
  let flags;
  let policyOptions: PolicyOptions;
  let statsInterval: number | undefined;
  let io: IoBackend;
  try {
    const parsed = parseFlags(args, FLAGS);
    flags = parsed.values;
    // Help and version answer even when other values are wrong.
    if (flags.help) {
      console.log(USAGE);
      return EXIT_OK;
    }
    if (flags.version) {
      console.log(`udp-echo server ${VERSION}`);
      return EXIT_OK;
    }
    if (parsed.positionals.length > 0) {
      throw new TypeError(
        `Cannot parse arguments: unexpected "${
          parsed.positionals[0]
        }" (see --help)`,
      );
    }
    hostnames = [...new Set((flags.host ?? [DEFAULT_HOST]).map(parseHost))];
    port = parsePort(flags.port);
    policyOptions = parsePolicyFlags(flags);
    statsInterval = parseSeconds(flags["stats-interval"], "stats-interval");
    io = parseIo(flags.io);
    if (io === "socket") checkUnstableNet();
  } catch (error) {
    printError(error);
    return EXIT_USAGE;
  }

  if (io === "batch") {
    try {
      checkBatchSupport();
    } catch (error) {
      printError(error);
      return EXIT_USAGE;
    }
  }

  const hosts = await resolveHosts(hostnames);
  const rateIsDefault = policyOptions.rate === undefined;
  policyOptions.rate ??= defaultRate(hosts.map((host) => host.address));
  const fullPolicyOptions = { ...policyOptions, ...hostInterfaces() };
  const policy = new EchoPolicy(fullPolicyOptions);

  const json = flags.json;
  const folded = json
    ? undefined
    : foldDatagramLog(logText, LOG_DATAGRAMS_PER_SECOND);
  const log = folded?.log ?? logJson;
  const controller = new AbortController();
  let servers: EchoServer[];
  try {
    servers = bindServers(hosts.map((host) => host.address), {
      port,
      signal: controller.signal,
      policy,
      onEvent: log,
      datagramEvents: !flags.quiet,
      io,
      // Each batch Worker has its own policy: tell it every socket of this
      // server (all share one port), so none echoes to a sibling.
      policyOptions: (addr) => ({
        ...fullPolicyOptions,
        local: hosts.map((host) => ({
          hostname: host.address,
          port: addr.port,
        })),
      }),
    }, controller);
  } catch (error) {
    printError(error);
    return EXIT_FAILURE;
  }
  const removeSignalListeners = onShutdownSignal(() => controller.abort());
  announce(servers, policy, {
    hostnames: hosts.map((host) => host.name),
    json,
    quiet: flags.quiet,
    rateIsDefault,
  });
  // The batch backend's policies live in its Workers: ask the servers.
  const droppedNow = io === "batch"
    ? () => sumDropped(servers)
    : () => dropCounts(policy);
  const activeNow = () =>
    io === "batch"
      ? servers.reduce(
        (sum, server) => sum + (server.activeSources?.() ?? 0),
        0,
      )
      : policy.activeSources();
  const stopStats = statsInterval === undefined
    ? undefined
    : startStatsTimer(statsInterval, servers, {
      policy,
      json,
      beforeLine: folded?.flush,
      dropped: droppedNow,
      activeSources: activeNow,
    });
  // Write a pending fold line once a flood is over, not only at the next datagram.
  const flushTimer = folded && setInterval(folded.flush, 1000);
  if (flushTimer) Deno.unrefTimer(flushTimer);

  try {
    await Promise.all(servers.map((server) => server.finished));
  } catch (error) {
    // Only the batch backend can fail after binding (its Worker may not run).
    controller.abort();
    await Promise.allSettled(servers.map((server) => server.finished));
    removeSignalListeners();
    stopStats?.();
    clearInterval(flushTimer);
    printError(error);
    return EXIT_FAILURE;
  }
  removeSignalListeners();
  stopStats?.();
  clearInterval(flushTimer);
  folded?.flush();
  const stats = sumStats(servers);
  const dropped = droppedNow();
  if (json) {
    console.log(JSON.stringify({
      event: "shutdown",
      received: stats.received,
      received_bytes: stats.receivedBytes,
      echoed: stats.echoed,
      echoed_bytes: stats.echoedBytes,
      dropped,
      errors: stats.errors,
      uptime_s: Math.round(stats.uptimeMs) / 1000,
    }));
  } else {
    console.log(`shutting down: ${formatTotals(stats, dropped)}`);
  }
  return EXIT_OK;
}

/** Prints the start-up lines: one per socket, then the rate limit in force. */
function announce(
  servers: EchoServer[],
  policy: EchoPolicy,
  options: {
    hostnames: string[];
    json: boolean;
    quiet: boolean;
    rateIsDefault: boolean;
  },
): void {
  const { rate, burst } = policy;
  for (const [k, { addr }] of servers.entries()) {
    const host = options.hostnames[k]!;
    if (options.json) {
      console.log(JSON.stringify({
        event: "listening",
        host,
        address: addr.hostname,
        port: addr.port,
        ...(rate > 0 ? { rate, burst, max_sources: policy.maxSources } : {}),
      }));
    } else {
      console.log(`starting up on ${host} port ${addr.port}`);
    }
  }
  if (options.json) return;
  if (rate > 0) {
    console.log(
      `rate limit: ${NUMBER.format(rate)} datagrams/s per source, burst ${
        NUMBER.format(burst)
      }${
        options.rateIsDefault
          ? " (the default, as an address is not loopback; --rate 0 turns it off)"
          : ""
      }`,
    );
  } else if (!servers.every(({ addr }) => isLoopback(addr.hostname))) {
    console.error("warning: no rate limit on an address that is not loopback");
  }
  if (!options.quiet) console.log("waiting to receive message");
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
