/**
 * The HTTP endpoint Prometheus scrapes: `/metrics` for a registry, and
 * `/probe?target=HOST:PORT&count=N` for probes run at scrape time, as
 * blackbox_exporter does it; for a monitor, also its live page at `/`
 * and the page's data at `/api/links`. It runs on a small bounded HTTP/1.1 server
 * (`_http_server.ts`), so no client can take the process down: the
 * connections are capped to fit the file descriptor limit, a head must
 * come within seconds, and a failed `accept()` (EMFILE) is retried after a
 * back-off and told in one folded line.
 *
 * @example Serve a registry on a free loopback port
 * ```ts
 * import { Registry } from "prom-client";
 * import { serveMetrics } from "./http.ts";
 * import { equal } from "node:assert/strict";
 *
 * const endpoint = serveMetrics({ hostname: "127.0.0.1", port: 0 }, { metrics: new Registry() });
 * const response = await fetch(`http://127.0.0.1:${endpoint.addr.port}/metrics`);
 * equal(response.status, 200);
 * await response.body?.cancel();
 * await endpoint.close();
 * ```
 *
 * @module
 */

import type { Registry } from "prom-client";
import { formatAddress, type HostPort } from "../net/address.ts";
import { errorMessage } from "../net/errors.ts";
import {
  type HttpRequest,
  type HttpResponse,
  listenHttp,
  plainResponse,
} from "./_http_server.ts";
import { readFileLimit } from "../cli/limits.ts";
import { connectionCap, fileLimitWarning } from "./_fd_limit.ts";
import { livePage } from "./_page.ts";

/**
 * A `/probe` request that cannot run: answered with HTTP `status` (400 for
 * a bad or refused query, 503 when too many probes run) and `message`.
 */
export class ProbeRequestError extends Error {
  /** The HTTP status of the answer. */
  readonly status: 400 | 503;

  /** `message` is the one line of the answer. */
  constructor(message: string, options: { status?: 400 | 503 } = {}) {
    super(message);
    this.status = options.status ?? 400;
  }
}

/** What {@linkcode serveMetrics} answers. */
export interface MetricsRoutes {
  /** Served at `/metrics`; without it `/metrics` is 404. */
  metrics?: Registry;
  /**
   * Runs at each `/probe` scrape with its query; resolves to the registry
   * to send. Throws {@linkcode ProbeRequestError} for a query it refuses
   * (its status and message). Without it `/probe` is 404.
   */
  probe?: (query: URLSearchParams, signal: AbortSignal) => Promise<Registry>;
  /**
   * The monitor's links, served as JSON at `/api/links`; with it, `/` is
   * the live page (`_page.ts`) that reads them. Without it both are as
   * before: `/api/links` is 404 and `/` a line naming the paths.
   */
  links?: () => Promise<unknown>;
}

/** Options for {@linkcode serveMetrics}. */
export interface ServeMetricsOptions {
  /**
   * Gets each warning line: at start, a file descriptor limit that is
   * unknown or too low; later, failed accepts, at most one line a minute.
   */
  onWarning?: (text: string) => void;
  /** Connections at once; default: as many as the file descriptor limit fits, at most 256. */
  maxConnections?: number;
  /** The request head must come within this many ms. Default 5000. */
  headerTimeoutMs?: number;
}

/** A running metrics endpoint. */
export interface MetricsEndpoint {
  /** The address it listens on, with the port actually bound. */
  addr: Deno.NetAddr;
  /** The most connections it keeps open at once. */
  maxConnections: number;
  /** Stops listening; resolves once every connection has closed. */
  close(): Promise<void>;
}

/** At most one line a minute tells of failed accepts. */
const ACCEPT_WARNING_EVERY_MS = 60_000;

/**
 * Listens for HTTP on `listen` and answers `/metrics` and `/probe` from
 * `routes`. Throws an `Error` ("Cannot serve metrics on HOST:PORT: reason",
 * the `Deno.errors` cause kept) when the address cannot be bound.
 */
export function serveMetrics(
  listen: HostPort,
  routes: MetricsRoutes,
  options: ServeMetricsOptions = {},
): MetricsEndpoint {
  const { onWarning } = options;
  let maxConnections = options.maxConnections;
  let limitWarning: string | undefined;
  if (maxConnections === undefined) {
    const limit = readFileLimit();
    maxConnections = connectionCap(limit);
    limitWarning = fileLimitWarning(limit, "the metrics endpoint");
  }
  const closing = new AbortController();
  const { metrics, links } = routes;
  const render = {
    metrics: metrics && shared(() => exposition(metrics)),
    links: links && shared(() => linksDocument(links)),
  };
  let server;
  try {
    server = listenHttp(
      listen,
      (request) => answer(request, routes, render, closing.signal),
      {
        maxConnections,
        headerTimeoutMs: options.headerTimeoutMs,
        onAcceptError: foldAcceptErrors(listen, onWarning),
      },
    );
  } catch (error) {
    throw new Error(
      `Cannot serve metrics on ${formatAddress(listen)}: ${
        errorMessage(error)
      }`,
      { cause: error },
    );
  }
  if (limitWarning !== undefined) onWarning?.(limitWarning);
  return {
    addr: server.addr,
    maxConnections,
    close: () => {
      closing.abort();
      return server.close();
    },
  };
}

/** Tells of a failed accept at most once a minute, with how many were folded in. */
function foldAcceptErrors(
  listen: HostPort,
  onWarning: ((text: string) => void) | undefined,
): (error: unknown) => void {
  let toldAt = -Infinity;
  let untold = 0;
  return (error) => {
    const now = performance.now();
    if (now - toldAt < ACCEPT_WARNING_EVERY_MS) {
      untold++;
      return;
    }
    onWarning?.(
      `cannot accept a metrics connection on ${formatAddress(listen)}: ${
        errorMessage(error)
      }${
        untold > 0 ? ` (and ${untold} more since the last such line)` : ""
      }; retrying with a back-off, told at most once a minute`,
    );
    toldAt = now;
    untold = 0;
  };
}

const ENCODER = new TextEncoder();

async function exposition(registry: Registry): Promise<HttpResponse> {
  return {
    status: 200,
    body: ENCODER.encode(await registry.metrics()),
    headers: { "content-type": registry.contentType },
  };
}

/**
 * Runs `render` once for every request that comes while a rendering runs:
 * a large monitor's `/metrics` is megabytes, and reading its registry for
 * `/api/links` holds every series as objects, so requests that each
 * rendered their own would hold one copy per connection.
 */
function shared(
  render: () => Promise<HttpResponse>,
): () => Promise<HttpResponse> {
  let rendering: Promise<HttpResponse> | undefined;
  return () => {
    rendering ??= render().finally(() => {
      rendering = undefined;
    });
    return rendering;
  };
}

async function linksDocument(
  links: () => Promise<unknown>,
): Promise<HttpResponse> {
  return {
    status: 200,
    body: ENCODER.encode(JSON.stringify(await links())),
    headers: {
      "content-type": "application/json",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    },
  };
}

async function answer(
  request: HttpRequest,
  routes: MetricsRoutes,
  render: Record<
    "metrics" | "links",
    (() => Promise<HttpResponse>) | undefined
  >,
  closing: AbortSignal,
): Promise<HttpResponse> {
  const { url } = request;
  if (url.pathname === "/metrics" && render.metrics !== undefined) {
    return await render.metrics();
  }
  if (url.pathname === "/probe" && routes.probe !== undefined) {
    try {
      return await exposition(await routes.probe(url.searchParams, closing));
    } catch (error) {
      if (!(error instanceof ProbeRequestError)) throw error;
      return plainResponse(
        error.status,
        error.message,
        error.status === 503 ? { "retry-after": "1" } : {},
      );
    }
  }
  if (render.links !== undefined) {
    if (url.pathname === "/") return { status: 200, ...await livePage() };
    if (url.pathname === "/api/links") return await render.links();
  }
  if (url.pathname === "/") {
    const paths = [
      routes.metrics && "/metrics",
      routes.probe && "/probe?target=HOST:PORT&count=N",
    ].filter(Boolean);
    return plainResponse(200, `udp-echo metrics: ${paths.join(", ")}`);
  }
  return plainResponse(404, `Cannot find ${url.pathname}`);
}
