/**
 * The HTTP endpoint Prometheus scrapes (`Deno.serve`): `/metrics` for a
 * registry, and `/probe?target=HOST:PORT&count=N` for probes run at scrape
 * time, as blackbox_exporter does it.
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
import { errorMessage, formatAddress, type HostPort } from "../net/address.ts";

/** A `/probe` request that cannot run: answered with HTTP 400 and `message`. */
export class ProbeRequestError extends Error {}

/** What {@linkcode serveMetrics} answers. */
export interface MetricsRoutes {
  /** Served at `/metrics`; without it `/metrics` is 404. */
  metrics?: Registry;
  /**
   * Runs at each `/probe` scrape with its query; resolves to the registry
   * to send. Throws {@linkcode ProbeRequestError} for a bad query (HTTP
   * 400 with its message). Without it `/probe` is 404.
   */
  probe?: (query: URLSearchParams, signal: AbortSignal) => Promise<Registry>;
  // The signal is the endpoint's own, aborted by close(): Deno's
  // request.signal also aborts once a response is sent (and warns).
}

/** A running metrics endpoint. */
export interface MetricsEndpoint {
  /** The address it listens on, with the port actually bound. */
  addr: Deno.NetAddr;
  /** Stops listening; resolves once the server has closed. */
  close(): Promise<void>;
}

/**
 * Listens for HTTP on `listen` and answers `/metrics` and `/probe` from
 * `routes`. Throws an `Error` ("Cannot serve metrics on HOST:PORT: reason",
 * the `Deno.errors` cause kept) when the address cannot be bound.
 */
export function serveMetrics(
  listen: HostPort,
  routes: MetricsRoutes,
): MetricsEndpoint {
  const controller = new AbortController();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: listen.hostname,
      port: listen.port,
      signal: controller.signal,
      onListen: () => {},
      onError: (error) => plain(500, `Cannot answer: ${errorMessage(error)}`),
    }, (request) => answer(request, routes, controller.signal));
  } catch (error) {
    throw new Error(
      `Cannot serve metrics on ${formatAddress(listen)}: ${
        errorMessage(error)
      }`,
      { cause: error },
    );
  }
  return {
    addr: server.addr,
    close: async () => {
      controller.abort();
      await server.finished;
    },
  };
}

function plain(status: number, text: string): Response {
  return new Response(`${text}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

async function exposition(registry: Registry): Promise<Response> {
  return new Response(await registry.metrics(), {
    headers: { "content-type": registry.contentType },
  });
}

async function answer(
  request: Request,
  routes: MetricsRoutes,
  closing: AbortSignal,
): Promise<Response> {
  const url = new URL(request.url);
  if (request.method !== "GET" && request.method !== "HEAD") {
    return plain(405, `Cannot ${request.method} ${url.pathname}: only GET`);
  }
  if (url.pathname === "/metrics" && routes.metrics !== undefined) {
    return await exposition(routes.metrics);
  }
  if (url.pathname === "/probe" && routes.probe !== undefined) {
    try {
      return await exposition(
        await routes.probe(url.searchParams, closing),
      );
    } catch (error) {
      if (error instanceof ProbeRequestError) return plain(400, error.message);
      throw error;
    }
  }
  if (url.pathname === "/") {
    const paths = [
      routes.metrics && "/metrics",
      routes.probe && "/probe?target=HOST:PORT&count=N",
    ].filter(Boolean);
    return plain(200, `udp-echo metrics: ${paths.join(", ")}`);
  }
  return plain(404, `Cannot find ${url.pathname}`);
}
