#!/usr/bin/env -S deno run --unstable-net --allow-net --allow-sys=networkInterfaces --v8-flags=--max-semi-space-size=4
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
 * the resident size stays flat over millions of echoes
 * (docs/performance.md, Memory). A program that imports `serveEcho` can
 * give its own `deno run` the same flag.
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

import type { EchoServer } from "./echo/types.ts";
import {
  DEFAULT_HOST,
  DEFAULT_PORT,
  formatAddress,
  type HostPort,
} from "./net/address.ts";
import { checkUnstableNet } from "./net/errors.ts";
import type { MetricsEndpoint } from "./metrics/http.ts";
import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  type NumberRange,
  parseChoice,
  parseFlags,
  parseHostFlag,
  parseListenFlag,
  parseNumber,
  parseNumberFlag,
  refuseArguments,
  UsageError,
  VERSION,
} from "./cli/flags.ts";
import { createOutput } from "./cli/output.ts";
import {
  DEFAULT_MAX_SOURCES,
  DEFAULT_RATE,
  MAX_SOURCES_LIMIT,
  parseCidr,
  type PolicyOptions,
} from "./policy/policy.ts";
import { resolveHosts } from "./server/hosts.ts";
import { checkBatchSupport, IO_MODES, type IoMode } from "./kernel/choice.ts";
import { runServer } from "./server/run.ts";
import { checkFileLimit, readFileLimit } from "./cli/limits.ts";
import { keepInspectorClosed, onStopSignals } from "./cli/signals.ts";

export {
  serveEcho,
  type ServeEchoOptions,
  type StampOptions,
} from "./server/serve.ts";
export type {
  DatagramEvent,
  DropCause,
  DropCounts,
  DroppedEvent,
  EchoErrorEvent,
  EchoServer,
  EchoStats,
  IoOperation,
  ReflectDrop,
  ServerEvent,
  SocketStats,
} from "./echo/types.ts";
export type { DropReason, PolicyOptions, RateLimit } from "./policy/policy.ts";

const USAGE = `Usage: server.ts [options]

A UDP echo server (RFC 862): every datagram goes back to its sender, byte for byte.

Options:
  -H, --host ADDR         address to bind: a name, IPv4 or IPv6 (default: ${DEFAULT_HOST});
                          repeat for one socket per address, all on one port
  -p, --port N            port to bind, 0 to 65535; 0 picks a free one (default: ${DEFAULT_PORT})
  -q, --quiet             print no lines per datagram, only start-up, errors and totals
      --json              print one JSON event per line on stdout instead of text
      --rate N            echo at most N datagrams/s per source (an IPv4 address or an
                          IPv6 /64), 0 to 10000000, fractions allowed; 0 turns it off
                          (default: off when every address is loopback, else ${DEFAULT_RATE})
      --burst N           datagrams a source may send at once, 1 to 1000000000
                          (default: the rate)
      --max-sources N     sources the rate limit tracks at once, 1 to ${MAX_SOURCES_LIMIT}
                          (default: ${DEFAULT_MAX_SOURCES})
      --allow CIDR        echo only to these sources (repeatable; IPv4 or IPv6)
      --deny CIDR         never echo to these sources (repeatable; wins over --allow)
      --max-size N        drop datagrams longer than N bytes, 0 to 65535; never echo
                          them cut
      --stats-interval S  print a one-line summary every S seconds, 0.01 to 86400
      --io MODE           auto (default), socket or batch: recvmmsg/sendmmsg in a
                          Worker, Linux only, needs --allow-ffi and --allow-read of
                          kernel/; auto uses batch when those are granted and
                          --allow-net is not scoped to hosts, else socket, and says
                          which
      --stamp             answer as a STAMP Session-Reflector (RFC 8762, RFC 8972)
                          instead of echoing; shorter than 44 bytes: no reply.
                          Runs on either backend; only batch reads the TTL
      --stamp-stateful    with --stamp: a reflector sequence counter per session
                          (sender address, port and SSID), for directional loss
      --stamp-ptp         with --stamp: PTPv2 timestamps instead of NTP
      --metrics ADDR      serve Prometheus metrics at http://ADDR/metrics: PORT
                          (loopback), HOST:PORT or [V6ADDR]:PORT; port 0 picks one
  -h, --help              show this help and exit
  -V, --version           show the version and exit

Never echoes to source ports below 1024 or of known UDP services, to broadcast,
multicast or unspecified addresses, or to its own sockets (see README, Security).
Stops on SIGINT (Ctrl-C), SIGTERM or SIGHUP and prints totals; SIGUSR2 prints a
stats line. With --allow-ffi, SIGUSR1 is ignored, so it cannot open the V8
inspector (see docs/security.md).
Exit status: 0 stopped by a signal, 1 failure (cannot bind, a file descriptor
limit below 64), 2 usage error.`;

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
  io: { type: "string", default: "auto" },
  metrics: { type: "string" },
  stamp: { type: "boolean", default: false },
  "stamp-stateful": { type: "boolean", default: false },
  "stamp-ptp": { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
  version: { type: "boolean", short: "V", default: false },
} as const;

/** The values each numeric flag of the server accepts. */
const RANGES = {
  port: { min: 0, max: 65535 },
  rate: {
    min: 0,
    max: 10_000_000,
    fraction: true,
    unit: "datagrams per second",
  },
  burst: { min: 1, max: 1_000_000_000 },
  "max-sources": { min: 1, max: MAX_SOURCES_LIMIT },
  "max-size": { min: 0, max: 65535, unit: "bytes" },
  "stats-interval": { min: 0.01, max: 86_400, fraction: true, unit: "seconds" },
} as const satisfies Record<string, NumberRange>;

/**
 * Bytes of log lines waiting for standard output at most. The log is
 * written asynchronously, so a reader that is slow or never reads cannot
 * stop the event loop, and with it the echo's events and SIGTERM; past this
 * lines are dropped and counted (`log_lines_dropped`).
 */
const STDOUT_QUEUE_BYTES = 1024 * 1024;
/** How long --help and --version wait for their line to be written, in ms. */
const ANSWER_DRAIN_MS = 1000;

/** Starts the `--metrics` endpoint for `server`; throws as `serveMetrics` does. */
async function serveServerMetrics(
  server: EchoServer,
  at: HostPort,
  options: {
    io: string;
    logLinesDropped: () => number;
    onWarning: (text: string) => void;
  },
): Promise<MetricsEndpoint> {
  const [{ serverMetrics }, { serveMetrics }] = await Promise.all([
    import("./metrics/server.ts"),
    import("./metrics/http.ts"),
  ]);
  return serveMetrics(at, { metrics: serverMetrics(server, options) }, {
    onWarning: options.onWarning,
  });
}

/** The start-up line of the metrics endpoint, naming the port it bound. */
function announceMetrics(
  addr: Deno.NetAddr,
  out: ReturnType<typeof createOutput>,
  json: boolean,
): void {
  const url = `http://${formatAddress(addr)}/metrics`;
  out.line(
    json
      ? JSON.stringify({
        event: "metrics",
        address: addr.hostname,
        port: addr.port,
        url,
      })
      : `serving metrics on ${url}`,
  );
}

/**
 * Prints the answer to --help or --version: exit 0, or 1 when standard
 * output failed (a full disk), as in every other mode.
 */
async function answer(
  out: ReturnType<typeof createOutput>,
  text: string,
): Promise<number> {
  out.line(text);
  await out.flush(ANSWER_DRAIN_MS);
  return out.closed ? EXIT_FAILURE : EXIT_OK;
}

function parseIo(text: string): IoMode {
  return parseChoice(text, "--io", IO_MODES);
}

/** Checks each CIDR of `flag`; throws a UsageError naming the first bad one. */
function parseCidrs(
  texts: string[] | undefined,
  flag: string,
): string[] | undefined {
  for (const text of texts ?? []) {
    let cidr;
    try {
      cidr = parseCidr(text);
    } catch (error) {
      throw new UsageError(
        `Cannot use ${flag} "${text}": expected an IPv4 or IPv6 address or CIDR, such as 10.0.0.0/8`,
        { cause: error },
      );
    }
    // 10.0.0.1/8 is most likely a typo for one host or for the network.
    if (cidr.hostBits) {
      throw new UsageError(
        `Cannot use ${flag} "${text}": host bits are set; did you mean ${cidr.network}?`,
      );
    }
  }
  return texts;
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
  const rate = parseNumberFlag(flags, "rate", RANGES);
  const options: PolicyOptions = {
    burst: parseNumberFlag(flags, "burst", RANGES),
    maxSources: parseNumberFlag(flags, "max-sources", RANGES),
    maxSize: parseNumberFlag(flags, "max-size", RANGES),
    allow: parseCidrs(flags.allow, "--allow"),
    deny: parseCidrs(flags.deny, "--deny"),
  };
  if (rate !== undefined) options.rate = rate;
  return options;
}

async function main(args: string[]): Promise<number> {
  let hostnames: string[];
  let port: number;
  let flags;
  let policyOptions: PolicyOptions;
  let statsInterval: number | undefined;
  let io: IoMode;
  let metricsAt: HostPort | undefined;
  const out = createOutput({ queueBytes: STDOUT_QUEUE_BYTES });
  try {
    const parsed = parseFlags(args, FLAGS);
    flags = parsed.values;
    // Help and version answer even when other values are wrong.
    if (flags.help) return await answer(out, USAGE);
    if (flags.version) {
      return await answer(out, `udp-echo server ${VERSION}`);
    }
    refuseArguments(parsed.positionals);
    hostnames = [
      ...new Set(
        (flags.host ?? [DEFAULT_HOST]).map((host) =>
          parseHostFlag(host, "--host")
        ),
      ),
    ];
    port = parseNumber(flags.port, "--port", RANGES.port);
    policyOptions = parsePolicyFlags(flags);
    statsInterval = parseNumberFlag(flags, "stats-interval", RANGES);
    io = parseIo(flags.io);
    if (flags.metrics !== undefined) {
      metricsAt = parseListenFlag(flags.metrics, "--metrics");
    }
    for (const flag of ["stamp-stateful", "stamp-ptp"] as const) {
      if (flags[flag] && !flags.stamp) {
        throw new UsageError(`Cannot use --${flag} without --stamp`);
      }
    }
    // auto may end on sockets, which need --unstable-net.
    if (io !== "batch") {
      try {
        checkUnstableNet();
      } catch (error) {
        // The command line lacks --unstable-net: a usage error, as before.
        throw new UsageError((error as Error).message, { cause: error });
      }
    }
  } catch (error) {
    out.error(error);
    return error instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  }

  if (io === "batch") {
    try {
      checkBatchSupport();
    } catch (error) {
      out.error(error);
      return EXIT_USAGE;
    }
  }
  // Before anything that takes a descriptor: below the minimum the runtime
  // panics (signal handling, a Worker) where no error can be caught.
  try {
    checkFileLimit(readFileLimit(), "the server");
  } catch (error) {
    out.error(error);
    return EXIT_FAILURE;
  }
  keepInspectorClosed({ onWarning: out.warn });
  // Until a stop signal has a listener, it meets its default action (or
  // the SIG_IGN a shell gives a background job's SIGINT): listen before
  // resolving, binding and the warm-up, so a stop then still ends with totals.
  const stopping = new AbortController();
  const stopListening = onStopSignals(() => stopping.abort());

  const json = flags.json;
  const { failed, drained } = await runServer({
    hosts: await resolveHosts(hostnames),
    port,
    io,
    policy: policyOptions,
    stamp: flags.stamp
      ? {
        stateful: flags["stamp-stateful"],
        format: flags["stamp-ptp"] ? "ptp" : "ntp",
      }
      : undefined,
    json,
    quiet: flags.quiet,
    statsInterval,
    signal: stopping.signal,
    rateIsDefault: policyOptions.rate === undefined,
    rateFlags: (["burst", "max-sources"] as const)
      .filter((flag) => flags[flag] !== undefined)
      .map((flag) => `--${flag}`),
    startSide: metricsAt === undefined ? undefined : async (server, choice) => {
      const metrics = await serveServerMetrics(server, metricsAt!, {
        io: choice.io,
        logLinesDropped: () => out.dropped,
        onWarning: out.warn,
      });
      return {
        announce: () => announceMetrics(metrics.addr, out, json),
        close: () => metrics.close(),
      };
    },
  }, out).finally(stopListening);
  // A write stuck on a reader that never reads would keep the process
  // alive: end it, as the totals are out.
  if (!drained) Deno.exit(EXIT_OK);
  return failed ? EXIT_FAILURE : EXIT_OK;
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
