#!/usr/bin/env -S deno run --unstable-net --allow-net
/**
 * A UDP echo client: sends a message, waits for the echo, retries with a
 * doubling wait when none comes, and checks that the echo is byte for byte
 * what was sent.
 *
 * Run it as a program:
 *
 * ```sh
 * deno run --unstable-net --allow-net client.ts                 # the tutorials' message to localhost:10000
 * deno run --unstable-net --allow-net client.ts hello there     # the words form the message
 * printf 'a\nb\n' | deno run --unstable-net --allow-net client.ts -   # one datagram per line of stdin
 * deno run --unstable-net --allow-net client.ts -c 10 -i 200    # ping: 10 probes, one every 200 ms
 * deno run --unstable-net --allow-net client.ts -w 16 -d 5      # load: 16 probes in flight for 5 s
 * deno run --unstable-net --allow-net client.ts --sweep         # largest payload echoed intact
 * ```
 *
 * The measurement modes live in `measure/`: `modes.ts` (the modes),
 * `report.ts` (output) and `cli.ts` (their flag values and running one),
 * loaded only when a measurement flag is given. It is longer than 500 lines
 * because the plain echo's flag table, reporters and signal handling stay
 * beside its main, so that the script reads on its own.
 *
 * Or use it as a module:
 *
 * @example Echo one message off a server
 * ```ts
 * import { EchoClient } from "./client.ts";
 * import { serveEcho } from "./server.ts";
 * import { equal } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveEcho({ hostname: "127.0.0.1", port: 0, signal: controller.signal });
 * const client = await EchoClient.open(server.addr);
 * try {
 *   const reply = await client.echo(new TextEncoder().encode("hello"));
 *   equal(reply.matches, true);
 * } finally {
 *   await client.close();
 *   controller.abort();
 * }
 * await server.finished;
 * ```
 *
 * @module
 */

import {
  DEFAULT_MESSAGE,
  DEFAULT_RETRIES,
  DEFAULT_TIMEOUT_MS,
  EchoClient,
  type EchoReply,
  EchoTimeoutError,
  MAX_RETRIES,
  MAX_TIMEOUT_MS,
} from "./echo/client.ts";
import {
  type AddressFamily,
  DEFAULT_HOST,
  DEFAULT_PORT,
  formatAddress,
  type HostPort,
  type ResolvedAddress,
} from "./net/address.ts";
import { errorMessage } from "./net/errors.ts";
import { checkPayloadSize, previewPayload } from "./net/payload.ts";
import {
  checkFamilies,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  type NumberRange,
  parseFlags,
  parseHostFlag,
  parseNumber,
  refuseIdleFlags,
  UsageError,
  VERSION,
} from "./cli/flags.ts";
import { createOutput, type Output, stdinLines } from "./cli/output.ts";
import { checkFileLimit, readFileLimit } from "./cli/limits.ts";
import { keepInspectorClosed, onStopSignals } from "./cli/signals.ts";

export {
  EchoClient,
  type EchoClientOptions,
  type EchoOptions,
  type EchoReply,
  EchoTimeoutError,
} from "./echo/client.ts";

/** The values of `-p`, `-t` and `-r`. */
const RANGES = {
  port: { min: 1, max: 65535 },
  timeout: { min: 1, max: MAX_TIMEOUT_MS, unit: "milliseconds" },
  retries: { min: 0, max: MAX_RETRIES },
} as const satisfies Record<string, NumberRange>;

/**
 * The measurement modes, as `measure/report.ts` names them; a type import
 * from there would put the measurement modules in the plain client's graph.
 */
type MeasureMode = "ping" | "load" | "sweep" | "monitor" | "diagnose";

const MEASURE_FLAGS = {
  count: { type: "string", short: "c" },
  interval: { type: "string", short: "i" },
  size: { type: "string", short: "s" },
  duration: { type: "string", short: "d" },
  wait: { type: "string" },
  window: { type: "string", short: "w" },
  rate: { type: "string" },
  flows: { type: "string" },
  sweep: { type: "boolean" },
  ipv4: { type: "boolean", short: "4" },
  ipv6: { type: "boolean", short: "6" },
  bind: { type: "string" },
  ndjson: { type: "boolean" },
  "max-loss": { type: "string" },
  io: { type: "string" },
  metrics: { type: "string" },
  "probe-allow": { type: "string", multiple: true },
  "targets-file": { type: "string" },
  "targets-dns": { type: "string" },
  refresh: { type: "string" },
  node: { type: "string" },
  stamp: { type: "boolean" },
  "stamp-tlv": { type: "string" },
  ssid: { type: "string" },
  "reflector-stateful": { type: "boolean" },
  diagnose: { type: "string" },
  "nat-max": { type: "string" },
} as const;

/** The `--help` lines of the measurement flags. */
const MEASURE_HELP =
  `Measurement modes (these flags start one; -4, -6 and --bind refine it):
  -c, --count N        ping: send N probes, 1 to 1000000000
                       (default: until Ctrl-C or -d)
  -i, --interval MS    ping: send probe n at start + n x MS, 0 to 3600000
                       (default: 1000)
  -s, --size BYTES     probe payload, 20 to the family limit (default: 64)
  -d, --duration S     stop sending after S seconds, 0.001 to 86400
      --wait MS        after the last send, wait this long for replies,
                       0 to 3600000 (default: 2 x --timeout)
  -w, --window N       load: keep N probes in flight per flow, 1 to 1000000
                       (closed loop)
      --rate PPS       load: send PPS probes a second per flow, 0.001 to
                       10000000 (open loop)
      --flows N        load and monitor: run N flows from distinct source
                       ports (per target with --metrics), 1 to 1024
      --sweep          find the largest payload echoed intact
  -4, -6               use only IPv4 or only IPv6
      --bind ADDR[:PORT]  send from this local address
      --ndjson         one JSON event per reply, the summary last
      --max-loss PCT   exit 1 when more than PCT% of probes lack an intact
                       reply, 0 to 100 (default: 0)
      --io MODE        ping and load I/O: auto, socket or batch (a Worker
                       with kernel timestamps and microsecond pacing; Linux,
                       --allow-ffi --allow-read=.); auto picks batch when
                       allowed (default: auto)
      --metrics ADDR   monitor: probe every -H target (repeat -H) every -i MS
                       until stopped and serve Prometheus metrics at ADDR
                       (PORT, HOST:PORT or [V6ADDR]:PORT): /metrics, /probe
      --probe-allow NET  with --metrics: /probe sends only to NET, a CIDR or
                       [CIDR]:PORT (repeatable); broadcast, multicast and
                       service ports stay refused
      --targets-file F with --metrics: also probe each HOST[:PORT] line of F,
                       read again when it changes
      --targets-dns NAME  with --metrics: also probe every A and AAAA address
                       of NAME (SRV records for _service._proto.NAME)
      --refresh S      with --targets-file or --targets-dns: read them again
                       every S seconds, 0.1 to 86400 (default: 10)
      --node NAME      with --metrics: the node label of every series
                       (default: the host name, with --allow-sys=hostname)
      --stamp          ping, load or monitor as a STAMP Session-Sender (RFC
                       8762): delay and loss each way, the reflector's time;
                       -s at least 44 (default: 64, grown to fit --stamp-tlv)
      --stamp-tlv LIST with --stamp: location (a NAT hint), timestamp-info,
                       class-of-service (the DSCP and ECN each way)
      --ssid N         with --stamp: the session id, 0 to 65535 (default: random)
      --reflector-stateful  with --stamp: the reflector keeps its own sequence
                       numbers (server.ts --stamp-stateful), so loss splits
                       each way even when none was forward
      --diagnose CHECKS  path checks: all, or a comma list of pmtu, dscp, ecn,
                       nat (see docs/diagnose.md); each needs --allow-ffi
      --nat-max S      with --diagnose nat: the longest idle time tried, 1 to
                       3600 seconds (default: 300)
  Load without -c or -d runs 10 s; -t MS marks slower replies late and,
  with -w, frees their slot.`;

const LOAD_FLAGS = ["window", "rate", "flows"] as const;
const PING_FLAGS = ["count", "interval", "size", "duration", "wait"] as const;
// -4, -6 and --bind refine a mode (and -4/-6 the single echo) but start none.
const OTHER_FLAGS = [
  "ndjson",
  "max-loss",
  "stamp",
  "stamp-tlv",
  "ssid",
  "reflector-stateful",
] as const;

/** The flag values {@linkcode measurementMode} reads. */
type ModeValues = {
  [K in keyof typeof MEASURE_FLAGS]?: string | boolean | string[];
};

/**
 * The mode the flags ask for: `sweep` with `--sweep`, `load` with `-w`,
 * `--rate` or `--flows`, `ping` with any other measurement flag; `undefined`
 * when none is given (the single echo).
 */
function measurementMode(values: ModeValues): MeasureMode | undefined {
  if (values.diagnose !== undefined || values["nat-max"] !== undefined) {
    return "diagnose";
  }
  if (values.metrics !== undefined) return "monitor";
  if (values.sweep) return "sweep";
  if (LOAD_FLAGS.some((flag) => values[flag] !== undefined)) return "load";
  if (
    [...PING_FLAGS, ...OTHER_FLAGS].some((flag) =>
      values[flag] !== undefined && values[flag] !== false
    )
  ) return "ping";
  return undefined;
}

const USAGE = `Usage: client.ts [options] [message ...]

Sends a message to a UDP echo server and checks the echo. The words form the
message; with none, it sends "${DEFAULT_MESSAGE}".
With "-", each line of standard input is sent as its own datagram.

Options:
  -H, --host ADDR      server address: a name, IPv4 or IPv6 (default: ${DEFAULT_HOST})
  -p, --port N         server port, 1 to 65535 (default: ${DEFAULT_PORT})
  -t, --timeout MS     wait for the first echo, in milliseconds, 1 to 3600000
                       (default: ${DEFAULT_TIMEOUT_MS})
  -r, --retries N      sends after the first when no echo comes, each waiting
                       twice as long as the one before, 0 to 100 (default: ${DEFAULT_RETRIES})
  -q, --quiet          print only the echoed payloads
      --json           print one JSON object per message on stdout instead of text
  -h, --help           show this help and exit
  -V, --version        show the version and exit

${MEASURE_HELP}

Exit status: 0 every message echoed intact (a measurement: loss within
--max-loss; a sweep: some size echoed intact), 1 failure (no echo after the
retries, an echo that differs, a runtime error), 2 usage error (a bad flag or
value, a payload over the UDP limit: refused before anything is sent).`;

const FLAGS = {
  host: { type: "string", short: "H", multiple: true },
  port: { type: "string", short: "p", default: String(DEFAULT_PORT) },
  timeout: { type: "string", short: "t", default: String(DEFAULT_TIMEOUT_MS) },
  retries: { type: "string", short: "r" }, // no default: see refuseIdleFlags
  quiet: { type: "boolean", short: "q", default: false },
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
  version: { type: "boolean", short: "V", default: false },
  ...MEASURE_FLAGS,
} as const;

const encoder = new TextEncoder();

function mismatch(
  target: ResolvedAddress,
  payload: Uint8Array,
  reply: EchoReply,
): string {
  return `the echo from ${formatAddress(target)} differs from what was sent ` +
    `(${payload.length} bytes sent, ${reply.data.length} received)`;
}

interface Reporter {
  sending(payload: Uint8Array): void;
  retrying(retry: number, retries: number, waitMs: number): void;
  received(payload: Uint8Array, reply: EchoReply): void;
  failed(size: number, error: unknown): void;
  closing(): void;
}

function textReporter(
  target: ResolvedAddress,
  options: { quiet: boolean; out: Output },
): Reporter {
  const { quiet, out } = options;
  const say = quiet ? () => {} : out.line;
  return {
    sending(payload) {
      say(`sending ${previewPayload(payload)}`);
      say("waiting to receive");
    },
    retrying(retry, retries, waitMs) {
      say(
        `no reply yet; sending again (retry ${retry} of ${retries}, waiting ${waitMs} ms)`,
      );
    },
    received(payload, reply) {
      if (quiet) {
        out.raw(reply.data);
        out.raw(encoder.encode("\n"));
      } else {
        out.line(`received ${previewPayload(reply.data)}`);
      }
      if (!reply.matches) out.error(mismatch(target, payload, reply));
    },
    failed(_size, error) {
      out.error(error);
    },
    closing() {
      say("closing socket");
    },
  };
}

/**
 * One JSON line per message: `echo` (an echo came, intact or not),
 * `timeout` (none after every try) or `error`. The echo is not called
 * `reply`: that event is a measurement probe's, with its own fields.
 */
function jsonReporter(target: ResolvedAddress, out: Output): Reporter {
  const base = (size: number) => ({
    target: formatAddress(target),
    sent_bytes: size,
  });
  return {
    sending() {},
    retrying() {},
    received(payload, reply) {
      out.line(JSON.stringify({
        event: "echo",
        ...base(payload.length),
        received_bytes: reply.data.length,
        match: reply.matches,
        tries: reply.tries,
        rtt_ms: Math.round(reply.rttMs * 1000) / 1000,
      }));
      if (!reply.matches) out.error(mismatch(target, payload, reply));
    },
    failed(size, error) {
      out.line(JSON.stringify({
        event: error instanceof EchoTimeoutError ? "timeout" : "error",
        ...base(size),
        ...(error instanceof EchoTimeoutError ? { tries: error.tries } : {}),
        message: errorMessage(error),
      }));
      out.error(error);
    },
    closing() {},
  };
}

interface ClientCommand {
  target: HostPort;
  timeout: number;
  retries: number;
  /** The message to send, or none to send each line of stdin. */
  message?: Uint8Array;
  quiet: boolean;
  json: boolean;
  /** Resolve the host to this family only (`-4`, `-6`). */
  family?: AddressFamily;
  /** A measurement mode and the flags it reads, instead of one echo. */
  measure?: {
    mode: MeasureMode;
    flags: ReturnType<typeof parseFlags<typeof FLAGS>>["values"];
    hosts: string[];
  };
}

/**
 * Reads the command line; returns an exit status once --help or --version
 * is answered. Throws a UsageError on bad usage.
 */
function parseCommand(args: string[], out: Output): ClientCommand | number {
  const { values: flags, positionals: words } = parseFlags(args, FLAGS);
  // Help and version answer even when other values are wrong.
  // A full disk fails these as it fails any other mode: exit 1.
  if (flags.help) {
    out.line(USAGE);
    return out.closed ? EXIT_FAILURE : EXIT_OK;
  }
  if (flags.version) {
    out.line(`udp-echo client ${VERSION}`);
    return out.closed ? EXIT_FAILURE : EXIT_OK;
  }
  const mode = measurementMode(flags);
  if (mode !== undefined && words.length > 0) {
    throw new UsageError(
      `Cannot send a message in ${mode} mode: its probes are the payload`,
    );
  }
  if (flags.ipv4 && flags.ipv6) {
    throw new UsageError("Cannot combine -4 and -6: pick one family");
  }
  refuseIdleFlags(flags, mode);
  const hosts = (flags.host ?? [DEFAULT_HOST]).map((host) =>
    parseHostFlag(host, "--host")
  );
  if (hosts.length > 1 && mode !== "monitor") {
    throw new UsageError(
      "Cannot use --host more than once without --metrics: only a monitor probes several targets",
    );
  }
  for (const host of hosts) checkFamilies(host, flags);
  const hostname = hosts.at(-1)!;
  const fromStdin = words.length === 1 && words[0] === "-";
  if (!fromStdin && words.includes("-")) {
    throw new UsageError(
      `Cannot use "-": it reads standard input, so it stands alone`,
    );
  }
  return {
    target: {
      hostname,
      port: parseNumber(flags.port, "--port", RANGES.port),
    },
    timeout: parseNumber(flags.timeout, "--timeout", RANGES.timeout),
    retries: flags.retries === undefined
      ? DEFAULT_RETRIES
      : parseNumber(flags.retries, "--retries", RANGES.retries),
    message: fromStdin
      ? undefined
      : encoder.encode(words.length > 0 ? words.join(" ") : DEFAULT_MESSAGE),
    quiet: flags.quiet,
    json: flags.json,
    family: flags.ipv4 ? "IPv4" : flags.ipv6 ? "IPv6" : undefined,
    measure: mode === undefined ? undefined : { mode, flags, hosts },
  };
}

async function main(args: string[]): Promise<number> {
  const out = createOutput();
  let command: ClientCommand | number;
  try {
    command = parseCommand(args, out);
  } catch (error) {
    out.error(error);
    return error instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  }
  if (typeof command === "number") return command;
  const { measure, target, timeout, quiet, json } = command;
  if (measure !== undefined) {
    // A measurement or the monitor may run for long: as the server does,
    // it refuses a limit the runtime would panic under, and keeps the V8
    // inspector closed.
    try {
      checkFileLimit(
        readFileLimit(),
        measure.mode === "monitor" ? "the monitor" : "a measurement",
      );
    } catch (error) {
      out.error(error);
      return EXIT_FAILURE;
    }
    keepInspectorClosed({ onWarning: out.warn });
  }
  if (measure?.mode === "monitor") {
    const { runMonitorCommand } = await import("./metrics/monitor_cli.ts");
    const code = await runMonitorCommand(measure.flags, {
      targets: measure.hosts.map((hostname) => ({ ...target, hostname })),
      timeoutMs: timeout,
      ...{ quiet, json, output: out },
    });
    // A /probe's name lookup cannot be cancelled and would hold the exit
    // until the resolver gives up; every line is written already.
    Deno.exit(code);
  }
  if (measure?.mode === "diagnose") {
    const { runDiagnose } = await import("./diagnose/run.ts");
    return await runDiagnose(measure.flags, {
      target: command.target,
      timeoutMs: timeout,
      ...{ quiet, json, output: out },
    });
  }
  if (measure !== undefined) {
    // Only a measurement loads the measurement modules.
    const { runMeasurement } = await import("./measure/cli.ts");
    return await runMeasurement(measure.mode, measure.flags, {
      target: command.target,
      timeoutMs: command.timeout,
      quiet: command.quiet,
      json: command.json,
      output: out,
    });
  }
  const { message, retries } = command;

  let client: EchoClient;
  try {
    client = await EchoClient.open(command.target, {
      timeout: command.timeout,
      retries,
      family: command.family,
    });
    if (message !== undefined) {
      checkPayloadSize(message.length, client.target.family);
    }
  } catch (error) {
    // Out of range (a payload over the limit, the unspecified address) or of
    // the wrong family is the command line's fault, refused before any send.
    const refused = error instanceof RangeError || error instanceof TypeError
      ? new UsageError(error.message, { cause: error })
      : error;
    if (command.json && !(refused instanceof UsageError)) {
      out.line(JSON.stringify({
        event: "error",
        target: formatAddress(command.target),
        message: errorMessage(refused),
      }));
    }
    out.error(refused);
    return refused instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  }

  const report = command.json
    ? jsonReporter(client.target, out)
    : textReporter(client.target, { quiet: command.quiet, out });
  let failures = 0;
  let awaited: number | undefined;
  // As a measurement does, a signal ends the run by its results (exit 0 or
  // 1, not the shell's 130): an echo still awaited is a failure.
  const onSignal = () => {
    if (awaited !== undefined) {
      report.failed(awaited, new Error("Cannot wait for the echo: stopped"));
    }
    if (!out.closed) report.closing();
    Deno.exit(failures === 0 && awaited === undefined && !out.closed ? 0 : 1);
  };
  const removeSignalListeners = onStopSignals(onSignal);
  try {
    const lines = message !== undefined ? [message] : stdinLines();
    for await (const line of lines) {
      const size = typeof line === "number" ? line : line.length;
      try {
        checkPayloadSize(size, client.target.family);
        const payload = line as Uint8Array;
        report.sending(payload);
        awaited = size;
        const reply = await client.echo(payload, {
          onRetry: (retry, waitMs) => report.retrying(retry, retries, waitMs),
        });
        report.received(payload, reply);
        if (!reply.matches) failures++;
      } catch (error) {
        report.failed(size, error);
        failures++;
      }
      awaited = undefined;
      // A closed stdout (`| head -1`) ends the run: nobody reads the echoes.
      if (out.closed) break;
    }
    if (!out.closed) report.closing();
  } catch (error) {
    // Reading standard input failed: what was read has been answered.
    out.error(error);
    failures++;
  } finally {
    removeSignalListeners();
    await client.close();
  }
  return failures === 0 && !out.closed ? EXIT_OK : EXIT_FAILURE;
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
