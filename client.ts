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
 * The measurement modes live in `measure/`: `engine.ts` (engines),
 * `report.ts` (output), `flags.ts` (their flags) and `cli.ts` (running one),
 * loaded only when a measurement flag is given.
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
  MEASURE_FLAGS,
  MEASURE_HELP,
  measurementMode,
  type MeasureMode,
} from "./measure/flags.ts";
import {
  type AddressFamily,
  DEFAULT_HOST,
  DEFAULT_PORT,
  formatAddress,
  type HostPort,
  type ResolvedAddress,
} from "./net/address.ts";
import {
  checkPayloadSize,
  previewPayload,
  RECEIVE_BUFFER_SIZE,
} from "./net/payload.ts";
import { checkUnstableNet } from "./io/socket.ts";
import { errorMessage } from "./net/errors.ts";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, VERSION } from "./cli/exit.ts";
import {
  type NumberRange,
  parseFlags,
  parseHostFlag,
  parseNumber,
  UsageError,
} from "./cli/flags.ts";
import { createOutput, type Output } from "./cli/output.ts";
import { resolveTarget } from "./net/resolve.ts";

/** The message the tutorials send when none is given. */
export const DEFAULT_MESSAGE =
  "This is our message. It will be sent all at once";

/** Milliseconds to wait for the first echo. */
export const DEFAULT_TIMEOUT_MS = 1000;

/** Sends after the first when no echo comes; each waits twice as long. */
export const DEFAULT_RETRIES = 2;

// Earlier payloads that got no echo: a late echo of one of them is no reply
// to the current message, so it is ignored rather than taken for corruption.
const REMEMBERED_UNANSWERED = 8;

/** Options for {@linkcode EchoClient.open}. */
export interface EchoClientOptions {
  /** Milliseconds to wait for the first echo; each retry waits twice as long. */
  timeout?: number;
  /** Sends after the first when no echo comes. */
  retries?: number;
  /** Resolve the target to an address of this family only. */
  family?: AddressFamily;
}

/** Options for {@linkcode EchoClient.echo}. */
export interface EchoOptions {
  /** Called before each send after the first, with its number and wait. */
  onRetry?: (retry: number, waitMs: number) => void;
}

/** The echo of one message. */
export interface EchoReply {
  /** The bytes that came back. */
  data: Uint8Array;
  /** Whether they are exactly the bytes sent. */
  matches: boolean;
  /** How many sends it took. */
  tries: number;
  /** Milliseconds from the last send to the echo; after a retry, the echo may answer an earlier send. */
  rttMs: number;
}

/** What an {@linkcode EchoTimeoutError} reports. */
export interface EchoTimeoutErrorOptions {
  /** How many sends went unanswered. */
  tries: number;
  /** Milliseconds waited in all. */
  waitedMs: number;
}

/** No echo came back after every try. */
export class EchoTimeoutError extends Error {
  /** How many sends went unanswered. */
  readonly tries: number;

  /** Creates the error for a target, the sends made and the time waited. */
  constructor(target: HostPort, options: EchoTimeoutErrorOptions) {
    const { tries, waitedMs } = options;
    super(
      `Cannot get an echo from ${
        formatAddress(target)
      }: no reply after ${tries} ${tries === 1 ? "try" : "tries"} (${
        Math.round(waitedMs)
      } ms)`,
    );
    this.name = "EchoTimeoutError";
    this.tries = tries;
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The values of `-p`, `-t` and `-r`, and of the options of {@linkcode EchoClient.open}. */
const RANGES = {
  port: { min: 1, max: 65535 },
  timeout: { min: 1, max: 3_600_000, unit: "milliseconds" },
  retries: { min: 0, max: 100 },
} as const satisfies Record<string, NumberRange>;

function inRange(value: number, range: NumberRange): boolean {
  return Number.isInteger(value) && value >= range.min && value <= range.max;
}

function checkTimingOptions(timeout: number, retries: number): void {
  if (!inRange(timeout, RANGES.timeout)) {
    throw new RangeError(
      `Cannot wait ${timeout} ms: expected a whole number of milliseconds from 1 to 3600000`,
    );
  }
  if (!inRange(retries, RANGES.retries)) {
    throw new RangeError(
      `Cannot retry ${retries} times: expected a whole number from 0 to 100`,
    );
  }
}

/**
 * A UDP socket that sends messages to one echo server and waits for their
 * echoes. Only a datagram from the very address and port it sends to counts
 * as a reply; anything else is ignored.
 */
export class EchoClient {
  /** The resolved address of the server. */
  readonly target: ResolvedAddress;
  #conn: Deno.DatagramConn;
  #timeout: number;
  #retries: number;
  #buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
  #pending?: Promise<[Uint8Array, Deno.Addr]>;
  #unanswered: Uint8Array[] = [];

  private constructor(
    conn: Deno.DatagramConn,
    target: ResolvedAddress,
    timeout: number,
    retries: number,
  ) {
    this.#conn = conn;
    this.target = target;
    this.#timeout = timeout;
    this.#retries = retries;
  }

  /**
   * Resolves the server's address and opens a socket on a free local port of
   * the same family. Throws a `RangeError` for a bad port, timeout or retry
   * count, and an `Error` when the host cannot be resolved.
   */
  static async open(
    target: HostPort,
    options: EchoClientOptions = {},
  ): Promise<EchoClient> {
    const { timeout = DEFAULT_TIMEOUT_MS, retries = DEFAULT_RETRIES } = options;
    checkTimingOptions(timeout, retries);
    checkUnstableNet();
    if (!inRange(target.port, RANGES.port)) {
      throw new RangeError(
        `Cannot send to port ${target.port}: expected a whole number from 1 to 65535`,
      );
    }
    const resolved = await resolveTarget(target, { family: options.family });
    const conn = Deno.listenDatagram({
      transport: "udp",
      hostname: resolved.family === "IPv6" ? "::" : "0.0.0.0",
      port: 0,
    });
    return new EchoClient(conn, resolved, timeout, retries);
  }

  /** The local address the socket is bound to. */
  get addr(): Deno.NetAddr {
    return this.#conn.addr as Deno.NetAddr;
  }

  /**
   * Sends `payload` and resolves with its echo. Throws a `RangeError` before
   * sending when the payload cannot fit in one datagram, and an
   * {@linkcode EchoTimeoutError} when no echo comes after every try.
   */
  async echo(
    payload: Uint8Array,
    options: EchoOptions = {},
  ): Promise<EchoReply> {
    checkPayloadSize(payload.length, this.target.family);
    const started = performance.now();
    let wait = this.#timeout;
    for (let tries = 1; tries <= this.#retries + 1; tries++, wait *= 2) {
      if (tries > 1) options.onRetry?.(tries - 1, wait);
      const sentAt = performance.now();
      await this.#conn.send(payload, { transport: "udp", ...this.target });
      const data = await this.#receiveReply(payload, sentAt + wait);
      if (data !== undefined) {
        // The echoes of the other sends may still come.
        if (tries > 1) this.#remember(payload);
        return {
          data,
          matches: equalBytes(data, payload),
          tries,
          rttMs: performance.now() - sentAt,
        };
      }
    }
    this.#remember(payload);
    throw new EchoTimeoutError(this.target, {
      tries: this.#retries + 1,
      waitedMs: performance.now() - started,
    });
  }

  /** Keeps a payload whose echo may still come, to ignore it then. */
  #remember(payload: Uint8Array): void {
    this.#unanswered.push(payload.slice());
    if (this.#unanswered.length > REMEMBERED_UNANSWERED) {
      this.#unanswered.shift();
    }
  }

  /** Waits until `deadline` for the echo of `payload`; copies it out. */
  async #receiveReply(
    payload: Uint8Array,
    deadline: number,
  ): Promise<Uint8Array | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<undefined>((resolve) => {
      timer = setTimeout(
        () => resolve(undefined),
        Math.max(0, deadline - performance.now()),
      );
    });
    try {
      while (true) {
        // The receive outlives a timeout: it is kept for the next wait, since
        // Deno cannot cancel it, and its buffer is not touched until it ends.
        this.#pending ??= this.#conn.receive(this.#buffer);
        let received: [Uint8Array, Deno.Addr] | undefined;
        try {
          received = await Promise.race([this.#pending, timedOut]);
        } catch (error) {
          // A failed receive must not be waited on again by the next echo.
          this.#pending = undefined;
          throw error;
        }
        if (received === undefined) return undefined;
        this.#pending = undefined;
        const [data, from] = received;
        const sender = from as Deno.NetAddr;
        if (
          sender.port !== this.target.port ||
          !sameHost(sender.hostname, this.target.hostname)
        ) continue;
        const late = !equalBytes(data, payload) &&
          this.#unanswered.some((earlier) => equalBytes(earlier, data));
        if (late) continue;
        return data.slice();
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the socket and waits for any receive still pending to end. */
  async close(): Promise<void> {
    this.#conn.close();
    await this.#pending?.catch(() => {});
    this.#pending = undefined;
  }

  /** Closes the socket, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Compares IP literals, treating an IPv4-mapped IPv6 form as its IPv4 one. */
function sameHost(a: string, b: string): boolean {
  const unmap = (host: string) => host.replace(/^::ffff:(?=\d+\.)/i, "");
  return unmap(a).toLowerCase() === unmap(b).toLowerCase();
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
  host: { type: "string", short: "H", default: DEFAULT_HOST },
  port: { type: "string", short: "p", default: String(DEFAULT_PORT) },
  timeout: { type: "string", short: "t", default: String(DEFAULT_TIMEOUT_MS) },
  retries: { type: "string", short: "r", default: String(DEFAULT_RETRIES) },
  quiet: { type: "boolean", short: "q", default: false },
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
  version: { type: "boolean", short: "V", default: false },
  ...MEASURE_FLAGS,
} as const;

/**
 * Yields each line of standard input, without its line ending, as bytes; a
 * line too long for any datagram is not kept, and yields only its length.
 */
async function* stdinLines(): AsyncGenerator<Uint8Array | number> {
  let pieces: Uint8Array[] = [];
  let length = 0;
  const add = (piece: Uint8Array) => {
    length += piece.length;
    // Past any datagram's size only the count matters.
    if (length <= RECEIVE_BUFFER_SIZE) pieces.push(piece.slice());
  };
  const finish = (): Uint8Array | number => {
    let line: Uint8Array | number = length;
    if (length <= RECEIVE_BUFFER_SIZE) {
      const bytes = new Uint8Array(length);
      let offset = 0;
      for (const piece of pieces) {
        bytes.set(piece, offset);
        offset += piece.length;
      }
      line = bytes.at(-1) === 0x0d ? bytes.subarray(0, -1) : bytes;
    }
    pieces = [];
    length = 0;
    return line;
  };
  for await (const chunk of Deno.stdin.readable) {
    let start = 0;
    for (let end; (end = chunk.indexOf(0x0a, start)) !== -1; start = end + 1) {
      add(chunk.subarray(start, end));
      yield finish();
    }
    add(chunk.subarray(start));
  }
  if (length > 0) yield finish();
}

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
        event: "reply",
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
  };
}

/**
 * Reads the command line; returns an exit status once --help or --version
 * is answered. Throws a UsageError on bad usage.
 */
function parseCommand(args: string[], out: Output): ClientCommand | number {
  const { values: flags, positionals: words } = parseFlags(args, FLAGS);
  // Help and version answer even when other values are wrong.
  if (flags.help) {
    out.line(USAGE);
    return EXIT_OK;
  }
  if (flags.version) {
    out.line(`udp-echo client ${VERSION}`);
    return EXIT_OK;
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
  if (mode === undefined && flags.bind !== undefined) {
    throw new UsageError(
      "Cannot use --bind without a measurement mode (-c, -w, --sweep ...)",
    );
  }
  const fromStdin = words.length === 1 && words[0] === "-";
  if (!fromStdin && words.includes("-")) {
    throw new UsageError(
      `Cannot use "-": it reads standard input, so it stands alone`,
    );
  }
  return {
    target: {
      hostname: parseHostFlag(flags.host, "--host"),
      port: parseNumber(flags.port, "--port", RANGES.port),
    },
    timeout: parseNumber(flags.timeout, "--timeout", RANGES.timeout),
    retries: parseNumber(flags.retries, "--retries", RANGES.retries),
    message: fromStdin
      ? undefined
      : encoder.encode(words.length > 0 ? words.join(" ") : DEFAULT_MESSAGE),
    quiet: flags.quiet,
    json: flags.json,
    family: flags.ipv4 ? "IPv4" : flags.ipv6 ? "IPv6" : undefined,
    measure: mode === undefined ? undefined : { mode, flags },
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
  if (command.measure !== undefined) {
    // Only a measurement loads the measurement modules.
    const { runMeasurement } = await import("./measure/cli.ts");
    return await runMeasurement(command.measure.mode, command.measure.flags, {
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
    // Out of range (a payload over the limit, the unspecified address) is
    // the command line's fault, refused before anything is sent.
    const refused = error instanceof RangeError
      ? new UsageError(error.message, { cause: error })
      : error;
    out.error(refused);
    return refused instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  }

  const report = command.json
    ? jsonReporter(client.target, out)
    : textReporter(client.target, { quiet: command.quiet, out });
  let failures = 0;
  try {
    const lines = message !== undefined ? [message] : stdinLines();
    for await (const line of lines) {
      const size = typeof line === "number" ? line : line.length;
      try {
        checkPayloadSize(size, client.target.family);
        const payload = line as Uint8Array;
        report.sending(payload);
        const reply = await client.echo(payload, {
          onRetry: (retry, waitMs) => report.retrying(retry, retries, waitMs),
        });
        report.received(payload, reply);
        if (!reply.matches) failures++;
      } catch (error) {
        report.failed(size, error);
        failures++;
      }
      // A closed stdout (`| head -1`) ends the run: nobody reads the echoes.
      if (out.closed) break;
    }
    if (!out.closed) report.closing();
  } catch (error) {
    // Reading standard input failed: what was read has been answered.
    out.error(error);
    failures++;
  } finally {
    await client.close();
  }
  return failures === 0 && !out.closed ? EXIT_OK : EXIT_FAILURE;
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
