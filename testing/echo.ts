/**
 * This project's echo server in the test's own process, on a free port, for
 * tests that need something on the other end that answers every datagram.
 *
 * @module
 */

import { serveEcho } from "../server.ts";
import type { ResolvedAddress } from "../net/address.ts";

/** An in-process echo server; `await using` stops it and waits for the end. */
export interface RunningEcho extends AsyncDisposable {
  /** The UDP port it listens on. */
  port: number;
  /** Where it listens, as `runProbes()` takes a target. */
  target: ResolvedAddress;
  /** Datagrams it has received so far: a test waits on this to know a sender is sending. */
  received(): number;
}

/** Starts `serveEcho()` on `hostname` (127.0.0.1 by default), port 0. */
export function startEcho(hostname = "127.0.0.1"): RunningEcho {
  const controller = new AbortController();
  const server = serveEcho({ hostname, port: 0, signal: controller.signal });
  return {
    port: server.addr.port,
    target: {
      hostname: server.addr.hostname,
      port: server.addr.port,
      family: hostname.includes(":") ? "IPv6" : "IPv4",
    },
    received: () => server.stats().received,
    async [Symbol.asyncDispose]() {
      controller.abort();
      await server.finished;
    },
  };
}
