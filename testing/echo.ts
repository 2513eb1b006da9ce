/**
 * This project's echo server in the test's own process, on a free port, for
 * tests that need something on the other end that answers every datagram,
 * or that test its STAMP reflector.
 *
 * @module
 */

import {
  type EchoServer,
  serveEcho,
  type ServeEchoOptions,
  type StampOptions,
} from "../server.ts";
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

/** Options for {@linkcode startStampReflector}. */
export type StampReflectorOptions =
  & Omit<ServeEchoOptions, "io" | "signal" | "stamp">
  & {
    /** Overrides of the reflector's options: stateless, NTP, unless told. */
    stamp?: Partial<StampOptions>;
  };

/** A reflector of {@linkcode startStampReflector} and how to stop it. */
export interface RunningStampReflector {
  /** The server; its `finished` resolves once `stop()` has ended it. */
  server: EchoServer;
  /** Aborts the server, without waiting for its end. */
  stop(): void;
}

/**
 * Starts `serveEcho()` on `io` as a STAMP Session-Reflector: stateless and
 * with NTP timestamps unless `options.stamp` says otherwise, on 127.0.0.1
 * and a free port unless `options` say otherwise; the other options go to
 * `serveEcho()` as they are.
 */
export function startStampReflector(
  io: "socket" | "batch",
  options: StampReflectorOptions = {},
): RunningStampReflector {
  const controller = new AbortController();
  const server = serveEcho({
    hostname: "127.0.0.1",
    port: 0,
    ...options,
    io,
    signal: controller.signal,
    stamp: { stateful: false, format: "ntp", ...options.stamp },
  });
  return { server, stop: () => controller.abort() };
}
