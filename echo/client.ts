/**
 * The plain echo client: a UDP socket that sends a message to one echo
 * server, waits for the echo with a doubling wait between tries, and checks
 * it byte for byte.
 *
 * @example Echo one message off a server
 * ```ts
 * import { EchoClient } from "./client.ts";
 * import { serveSocket } from "./socket.ts";
 * import { equal } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveSocket({ hostnames: ["127.0.0.1"], port: 0, signal: controller.signal });
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
  type AddressFamily,
  formatAddress,
  type HostPort,
  type ResolvedAddress,
  sameEndpoint,
} from "../net/address.ts";
import { resolveTarget } from "../net/resolve.ts";
import { checkUnstableNet, osErrorReason } from "../net/errors.ts";
import { checkPayloadSize, RECEIVE_BUFFER_SIZE } from "../net/payload.ts";

/** The message the tutorials send when none is given. */
export const DEFAULT_MESSAGE =
  "This is our message. It will be sent all at once";

/** Milliseconds to wait for the first echo. */
export const DEFAULT_TIMEOUT_MS = 1000;

/** Sends after the first when no echo comes; each waits twice as long. */
export const DEFAULT_RETRIES = 2;

// The latest earlier payloads, answered or not: a late echo of one of them
// (a retry's second echo, a path that delivers a datagram twice) is no reply
// to the current message, so it is ignored rather than taken for the echo.
// At most 8 x 64 KiB: the memory stays bounded.
const REMEMBERED_PAYLOADS = 8;

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

/**
 * No echo came back after every try: what {@linkcode EchoClient.echo}
 * throws when the server stays silent.
 *
 * @example Tell a silent server from other failures
 * ```ts
 * import { EchoTimeoutError } from "./client.ts";
 * import { equal } from "node:assert/strict";
 *
 * const error = new EchoTimeoutError({ hostname: "127.0.0.1", port: 7 }, { tries: 3, waitedMs: 700 });
 * equal(error.tries, 3);
 * equal(error.message, "Cannot get an echo from 127.0.0.1:7: no reply after 3 tries (700 ms)");
 * ```
 */
export class EchoTimeoutError extends Error {
  /** How many sends went unanswered. */
  readonly tries: number;

  /**
   * Creates the error for a target, the sends made and the time waited.
   *
   * @param target The server that did not answer.
   * @param options `tries`: the sends that went unanswered; `waitedMs`: the
   * milliseconds waited in all.
   */
  constructor(target: HostPort, options: { tries: number; waitedMs: number }) {
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

/** The longest first wait {@linkcode EchoClient.open} takes, in milliseconds. */
export const MAX_TIMEOUT_MS = 3_600_000;

/** The most retries {@linkcode EchoClient.open} takes. */
export const MAX_RETRIES = 100;

function inRange(value: number, min: number, max: number): boolean {
  return Number.isInteger(value) && value >= min && value <= max;
}

function checkTimingOptions(timeout: number, retries: number): void {
  if (!inRange(timeout, 1, MAX_TIMEOUT_MS)) {
    throw new RangeError(
      `Cannot wait ${timeout} ms: expected a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}`,
    );
  }
  if (!inRange(retries, 0, MAX_RETRIES)) {
    throw new RangeError(
      `Cannot retry ${retries} times: expected a whole number from 0 to ${MAX_RETRIES}`,
    );
  }
}

/**
 * A UDP socket that sends messages to one echo server and waits for their
 * echoes. Only a datagram from the address and port it sends to counts as a
 * reply, compared by value (`::1` answers a target written
 * `0:0:0:0:0:0:0:1`); anything else is ignored.
 *
 * @example Echo one message, the socket closed by `await using`
 * ```ts
 * import { EchoClient } from "./client.ts";
 * import { serveSocket } from "./socket.ts";
 * import { equal } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveSocket({ hostnames: ["127.0.0.1"], port: 0, signal: controller.signal });
 * {
 *   await using client = await EchoClient.open(server.addr, { timeout: 500 });
 *   const reply = await client.echo(new TextEncoder().encode("hello"));
 *   equal(reply.matches, true);
 * }
 * controller.abort();
 * await server.finished;
 * ```
 */
export class EchoClient {
  /** The resolved address of the server. */
  readonly target: ResolvedAddress;
  #conn: Deno.DatagramConn;
  #timeout: number;
  #retries: number;
  #buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
  #pending?: Promise<[Uint8Array, Deno.Addr]>;
  #earlier: Uint8Array[] = [];

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
   * the same family.
   *
   * @param target The echo server: a name or an IP literal, and a port.
   * @param options The first wait, the retries and the address family.
   * @returns A client whose socket is open; close it when done.
   * @throws {RangeError} For a port outside 1 to 65535, a timeout outside 1
   * to 3,600,000 ms or a retry count outside 0 to 100 (all whole numbers),
   * or a target that is the unspecified, a broadcast or a multicast
   * address.
   * @throws {TypeError} For an IP literal of another family than
   * `options.family`, or when Deno runs without `--unstable-net`.
   * @throws {Error} "Cannot resolve NAME: reason" when the name does not
   * resolve.
   *
   * @example
   * ```ts
   * import { EchoClient } from "./client.ts";
   * import { equal } from "node:assert/strict";
   *
   * const client = await EchoClient.open({ hostname: "localhost", port: 10000 }, { family: "IPv4" });
   * equal(client.target.hostname, "127.0.0.1");
   * await client.close();
   * ```
   */
  static async open(
    target: HostPort,
    options: EchoClientOptions = {},
  ): Promise<EchoClient> {
    const { timeout = DEFAULT_TIMEOUT_MS, retries = DEFAULT_RETRIES } = options;
    checkTimingOptions(timeout, retries);
    checkUnstableNet();
    if (!inRange(target.port, 1, 65535)) {
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
   * Sends `payload` and resolves with its echo, sending it again with a
   * doubling wait while none comes.
   *
   * @param payload The message, one datagram.
   * @param options Called before each retry.
   * @returns The echo, whether it matches, the sends it took and its round
   * trip.
   * @throws {RangeError} Before sending, when the payload cannot fit in one
   * datagram of the target's family.
   * @throws {EchoTimeoutError} When no echo comes after every try.
   * @throws {Error} "Cannot send to HOST:PORT: reason" when the send fails.
   *
   * @example
   * ```ts
   * import { EchoClient } from "./client.ts";
   * import { serveSocket } from "./socket.ts";
   * import { equal } from "node:assert/strict";
   *
   * const controller = new AbortController();
   * const server = serveSocket({ hostnames: ["127.0.0.1"], port: 0, signal: controller.signal });
   * const client = await EchoClient.open(server.addr);
   * try {
   *   const reply = await client.echo(new Uint8Array([1, 2, 3]));
   *   equal(reply.tries, 1);
   * } finally {
   *   await client.close();
   *   controller.abort();
   * }
   * await server.finished;
   * ```
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
      try {
        await this.#conn.send(payload, { transport: "udp", ...this.target });
      } catch (error) {
        // Name the target and the OS's reason, not Deno's error class.
        throw new Error(
          `Cannot send to ${formatAddress(this.target)}: ${
            osErrorReason(error)
          }`,
          { cause: error },
        );
      }
      const data = await this.#receiveReply(payload, sentAt + wait);
      if (data !== undefined) {
        // Another copy of this echo, or the echo of another try, may come.
        this.#remember(payload);
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
    this.#earlier.push(payload.slice());
    if (this.#earlier.length > REMEMBERED_PAYLOADS) this.#earlier.shift();
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
        if (!sameEndpoint(from as Deno.NetAddr, this.target)) continue;
        const late = !equalBytes(data, payload) &&
          this.#earlier.some((earlier) => equalBytes(earlier, data));
        if (late) continue;
        return data.slice();
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Closes the socket and waits for any receive still pending to end.
   *
   * @returns Once the socket is closed.
   */
  async close(): Promise<void> {
    this.#conn.close();
    await this.#pending?.catch(() => {});
    this.#pending = undefined;
  }

  /**
   * Closes the socket, for `await using`.
   *
   * @returns Once the socket is closed.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
