/**
 * A small, strict HTTP/1.1 server on a `Deno.listen` accept loop, for the
 * metrics endpoints: one GET or HEAD per connection, answered and closed.
 *
 * `Deno.serve` cannot be used here: it has no connection cap and no header
 * timeout, and a failed `accept()` (EMFILE) rejects inside the runtime,
 * which ends the process. `node:http` stops answering for good after
 * EMFILE. Our own loop sees each failed `accept()`, backs off and retries,
 * so the process, and the echo beside it, goes on. What it bounds:
 * - connections open at once (`maxConnections`): past it, the one that
 *   has waited longest for its head is closed to make room, so clients
 *   that trickle their heads cannot keep a scraper out; when every open
 *   one has its head, the new one is closed at once;
 * - the request head (`maxHeadBytes`), read within `headerTimeoutMs` of the
 *   accept, or the connection is closed;
 * - the response, written within `writeTimeoutMs`, or the connection is
 *   closed.
 * A request body, a method other than GET and HEAD, or a version other
 * than HTTP/1.0 and 1.1 are refused.
 *
 * @module
 */

import type { HostPort } from "../net/address.ts";
import { errorMessage } from "../net/errors.ts";

/** A request the server passed on: GET or HEAD, with its target as a URL. */
export interface HttpRequest {
  /** `GET` or `HEAD` (a HEAD is answered without the body). */
  method: "GET" | "HEAD";
  /** The request target on `http://localhost`. */
  url: URL;
}

/** What the handler answers. */
export interface HttpResponse {
  /** The status code. */
  status: number;
  /**
   * The body; a HEAD gets its length only. Bytes are written as they are,
   * never copied, so one rendering can answer many connections.
   */
  body: string | Uint8Array;
  /** Header fields besides `content-length` and `connection`. */
  headers?: Record<string, string>;
}

/** Options for {@linkcode listenHttp}. */
export interface HttpServerOptions {
  /**
   * Connections open at once; past it, the one waiting longest for its
   * head is closed, or the new one when every open one has its head.
   */
  maxConnections: number;
  /** The request head must arrive within this many ms of the accept. Default 5000. */
  headerTimeoutMs?: number;
  /** The response must be written within this many ms. Default 5000. */
  writeTimeoutMs?: number;
  /** The request head may be this many bytes at most. Default 8192. */
  maxHeadBytes?: number;
  /** Called on each failed `accept()` (EMFILE, ENFILE), before the back-off. */
  onAcceptError?: (error: unknown) => void;
}

/** A running {@linkcode listenHttp} server. */
export interface HttpServer {
  /** The address it listens on, with the port actually bound. */
  addr: Deno.NetAddr;
  /** Connections open now. */
  connections(): number;
  /** Stops listening, closes every connection; resolves once all ended. */
  close(): Promise<void>;
}

const DEFAULT_HEADER_TIMEOUT_MS = 5000;
const DEFAULT_WRITE_TIMEOUT_MS = 5000;
const DEFAULT_MAX_HEAD_BYTES = 8192;
/** The first and the longest wait after a failed `accept()`, in ms. */
const ACCEPT_BACKOFF_MS = { min: 10, max: 1000 } as const;

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const REQUEST_LINE = new RegExp(`^(${TOKEN}) (\\S+) HTTP/(\\d)\\.(\\d)$`);
const FIELD_LINE = new RegExp(`^(${TOKEN}):[ \\t]*(.*?)[ \\t]*$`);
const ENCODER = new TextEncoder();
// Latin-1 maps each byte to one character: nothing in a head fails to decode.
const DECODER = new TextDecoder("latin1");

/** A one-line text/plain response. */
export function plainResponse(
  status: number,
  text: string,
  headers: Record<string, string> = {},
): HttpResponse {
  return {
    status,
    body: `${text}\n`,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  };
}

/**
 * Listens on `listen` (TCP) and answers each request with `handler`.
 * Throws as `Deno.listen` does when the address cannot be bound; a handler
 * that throws is answered with HTTP 500.
 */
export function listenHttp(
  listen: HostPort,
  handler: (request: HttpRequest) => Promise<HttpResponse>,
  options: HttpServerOptions,
): HttpServer {
  const listener = Deno.listen({
    hostname: listen.hostname,
    port: listen.port,
    transport: "tcp",
  });
  const limits = {
    headerTimeoutMs: options.headerTimeoutMs ?? DEFAULT_HEADER_TIMEOUT_MS,
    writeTimeoutMs: options.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS,
    maxHeadBytes: options.maxHeadBytes ?? DEFAULT_MAX_HEAD_BYTES,
  };
  // Each open connection and its task, which ends once its descriptor is
  // released.
  const open = new Map<Deno.Conn, Promise<void>>();
  // Still reading their heads, oldest first.
  const waiting = new Set<Deno.Conn>();
  const closing = new AbortController();
  const accepting = (async () => {
    let backoffMs = 0;
    while (!closing.signal.aborted) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (closing.signal.aborted) break;
        // A peer that left before its accept: nothing wrong here.
        if (
          error instanceof Deno.errors.ConnectionAborted ||
          error instanceof Deno.errors.ConnectionReset
        ) continue;
        options.onAcceptError?.(error);
        // The connection stays queued, so an immediate retry would spin.
        backoffMs = Math.min(
          Math.max(backoffMs * 2, ACCEPT_BACKOFF_MS.min),
          ACCEPT_BACKOFF_MS.max,
        );
        await delay(backoffMs, closing.signal);
        continue;
      }
      backoffMs = 0;
      if (open.size >= options.maxConnections) {
        // One turn of the event loop first: accepts that come back to back
        // could otherwise evict a client before its head, already sent, is
        // read. A connection may end meanwhile and leave room.
        await delay(0, closing.signal);
      }
      if (open.size >= options.maxConnections) {
        const oldest = waiting.values().next().value;
        if (oldest === undefined) {
          closeQuietly(conn);
          continue;
        }
        waiting.delete(oldest);
        closeQuietly(oldest);
        // Its descriptor is released once its read has failed: waiting
        // for that keeps the connections' descriptors under the cap.
        await open.get(oldest);
        if (closing.signal.aborted) {
          closeQuietly(conn);
          break;
        }
      }
      waiting.add(conn);
      open.set(
        conn,
        serveConnection(conn, handler, limits, () => waiting.delete(conn))
          .finally(() => {
            open.delete(conn);
            waiting.delete(conn);
          }),
      );
    }
  })();
  return {
    addr: listener.addr as Deno.NetAddr,
    connections: () => open.size,
    async close() {
      if (!closing.signal.aborted) {
        closing.abort();
        closeQuietly(listener);
        for (const conn of open.keys()) closeQuietly(conn);
      }
      await accepting;
      await Promise.all(open.values());
    },
  };
}

function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // Closed already.
  }
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Reads, answers and closes one connection; never throws. */
async function serveConnection(
  conn: Deno.Conn,
  handler: (request: HttpRequest) => Promise<HttpResponse>,
  limits: {
    headerTimeoutMs: number;
    writeTimeoutMs: number;
    maxHeadBytes: number;
  },
  onHead: () => void,
): Promise<void> {
  // Closing the connection ends a read or write that waits on it.
  let timer = setTimeout(() => closeQuietly(conn), limits.headerTimeoutMs);
  try {
    const head = await readHead(conn, limits.maxHeadBytes);
    clearTimeout(timer);
    onHead();
    if (head === undefined) return;
    const request = head === "too-large"
      ? plainResponse(
        431,
        `Cannot read the request: its head is over ${limits.maxHeadBytes} bytes`,
      )
      : parseHead(head);
    let response: HttpResponse;
    let method: string | undefined;
    if ("status" in request) {
      response = request;
      // A HEAD refused gets no body either (RFC 9110, 9.3.2).
      if (head !== "too-large" && startsWithHead(head)) method = "HEAD";
    } else {
      method = request.method;
      try {
        response = await handler(request);
      } catch (error) {
        response = plainResponse(500, `Cannot answer: ${errorMessage(error)}`);
      }
    }
    timer = setTimeout(() => closeQuietly(conn), limits.writeTimeoutMs);
    for (const bytes of serialize(response, method === "HEAD")) {
      for (let done = 0; done < bytes.length;) {
        done += await conn.write(bytes.subarray(done));
      }
    }
  } catch {
    // Reset by the peer, or closed by a timeout or close(): nothing to tell.
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

/**
 * Reads up to the empty line that ends a request head; `undefined` when
 * the peer closes first, `too-large` when `max` bytes hold no end.
 */
async function readHead(
  conn: Deno.Conn,
  max: number,
): Promise<Uint8Array | "too-large" | undefined> {
  const buffer = new Uint8Array(max);
  let filled = 0;
  while (filled < max) {
    const read = await conn.read(buffer.subarray(filled));
    if (read === null) return undefined;
    const from = Math.max(0, filled - 2);
    filled += read;
    const end = headEnd(buffer, from, filled);
    if (end >= 0) return buffer.subarray(0, end);
  }
  return "too-large";
}

/** Where the head's last line ends (before `\n\r\n` or `\n\n`), or -1. */
function headEnd(bytes: Uint8Array, from: number, to: number): number {
  for (
    let k = bytes.indexOf(10, from);
    k >= 0 && k < to;
    k = bytes.indexOf(10, k + 1)
  ) {
    if (k + 1 < to && bytes[k + 1] === 10) return k;
    if (k + 2 < to && bytes[k + 1] === 13 && bytes[k + 2] === 10) return k;
  }
  return -1;
}

/** Whether a request head starts with the method HEAD. */
function startsWithHead(bytes: Uint8Array): boolean {
  return DECODER.decode(bytes.subarray(0, 5)) === "HEAD ";
}

/** The request in a head, or the error response that refuses it. */
function parseHead(bytes: Uint8Array): HttpRequest | HttpResponse {
  const [requestLine = "", ...fields] = DECODER.decode(bytes)
    .replace(/\r$/, "").split(/\r?\n/);
  const match = REQUEST_LINE.exec(requestLine);
  if (match === null) {
    return plainResponse(400, "Cannot read the request line");
  }
  const [, method, target, major, minor] = match;
  if (major !== "1" || (minor !== "0" && minor !== "1")) {
    return plainResponse(
      505,
      `Cannot answer HTTP/${major}.${minor}: only HTTP/1.0 and 1.1`,
    );
  }
  if (method !== "GET" && method !== "HEAD") {
    return plainResponse(405, `Cannot ${method}: only GET and HEAD`, {
      allow: "GET, HEAD",
    });
  }
  if (!target!.startsWith("/")) {
    return plainResponse(
      400,
      "Cannot read the request target: expected a path",
    );
  }
  for (const field of fields) {
    const parsed = FIELD_LINE.exec(field);
    if (parsed === null) {
      return plainResponse(400, "Cannot read a header field");
    }
    const name = parsed[1]!.toLowerCase();
    if (
      name === "transfer-encoding" ||
      (name === "content-length" && parsed[2] !== "0")
    ) {
      return plainResponse(400, `Cannot ${method} with a body`);
    }
  }
  let url: URL;
  try {
    // Appended to an origin rather than resolved against it: resolved, a
    // target such as "//metrics" would name a host and lose its path.
    url = new URL(`http://localhost${target!}`);
  } catch {
    return plainResponse(400, "Cannot read the request target");
  }
  return { method, url };
}

/** The head and the body (none for a HEAD), to write in turn. */
function serialize(response: HttpResponse, head: boolean): Uint8Array[] {
  const body = typeof response.body === "string"
    ? ENCODER.encode(response.body)
    : response.body;
  const lines = [
    `HTTP/1.1 ${response.status} ${REASONS[response.status] ?? "Unknown"}`,
    ...Object.entries(response.headers ?? {}).map(([name, value]) =>
      `${name}: ${value}`
    ),
    `content-length: ${body.length}`,
    "connection: close",
    "",
    "",
  ];
  const start = ENCODER.encode(lines.join("\r\n"));
  return head ? [start] : [start, body];
}
