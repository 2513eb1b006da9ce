#!/usr/bin/env -S deno run --unstable-net --allow-net
/**
 * Candidate echo-loop structures, kept for the benchmark so that the choice
 * made in echo/socket.ts can be re-measured against them. Each loop echoes on
 * an open `Deno.DatagramConn` until the socket is closed; `--loop adaptive`
 * runs the loop that ships, `serveSocket()` of echo/socket.ts, with its policy
 * and no rate limit, not a copy of it.
 *
 * Usage:
 *   deno run --unstable-net --allow-net bench/loops.ts \
 *     --loop naive|concurrent|pipelined|adaptive [--receivers 32] \
 *     [--host 127.0.0.1] [--port 0]
 *
 * Prints `starting up on HOST port PORT` like server.ts, then echoes until
 * SIGTERM or SIGINT.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { serveSocket } from "../echo/socket.ts";

/** The receive buffer size every loop uses (see RECEIVE_BUFFER_SIZE in shared.ts). */
const BUFFER_SIZE = 65_536;

/** Counts what a loop did; errors never stop a loop. */
export interface LoopStats {
  /** Datagrams echoed. */
  echoed: number;
  /** Sends that failed. */
  errors: number;
}

/** An echo loop: resolves once the socket is closed. */
export type EchoLoop = (
  conn: Deno.DatagramConn,
  stats: LoopStats,
  receivers: number,
) => Promise<void>;

function isClosed(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted;
}

/** Receive, await the send, repeat: one buffer, one operation at a time. */
export async function naiveLoop(
  conn: Deno.DatagramConn,
  stats: LoopStats,
): Promise<void> {
  const buffer = new Uint8Array(BUFFER_SIZE);
  while (true) {
    let datagram: [Uint8Array, Deno.Addr];
    try {
      datagram = await conn.receive(buffer);
    } catch (error) {
      if (isClosed(error)) return;
      throw error;
    }
    try {
      await conn.send(datagram[0], datagram[1]);
      stats.echoed++;
    } catch (error) {
      if (isClosed(error)) return;
      stats.errors++;
    }
  }
}

/** `receivers` naive loops on one socket, each with its own buffer. */
export async function concurrentLoop(
  conn: Deno.DatagramConn,
  stats: LoopStats,
  receivers: number,
): Promise<void> {
  await Promise.all(
    Array.from({ length: receivers }, () => naiveLoop(conn, stats)),
  );
}

/**
 * One receive at a time, sends not awaited: each datagram's bytes stay in
 * their own buffer until its send settles, and only then does the buffer
 * go back to the pool for a later receive.
 */
export async function pipelinedLoop(
  conn: Deno.DatagramConn,
  stats: LoopStats,
  receivers: number,
): Promise<void> {
  const free: Uint8Array[] = [];
  for (let i = 0; i < receivers; i++) free.push(new Uint8Array(BUFFER_SIZE));
  let waiting: (() => void) | undefined;
  function release(buffer: Uint8Array): void {
    free.push(buffer);
    if (waiting) {
      const wake = waiting;
      waiting = undefined;
      wake();
    }
  }
  while (true) {
    let buffer = free.pop();
    while (buffer === undefined) {
      await new Promise<void>((resolve) => waiting = resolve);
      buffer = free.pop();
    }
    let datagram: [Uint8Array, Deno.Addr];
    try {
      datagram = await conn.receive(buffer);
    } catch (error) {
      if (isClosed(error)) return;
      throw error;
    }
    const owned = buffer;
    conn.send(datagram[0], datagram[1]).then(
      () => {
        stats.echoed++;
        release(owned);
      },
      () => {
        stats.errors++;
        release(owned);
      },
    );
  }
}

/** The loops by name. */
export const LOOPS: Record<string, EchoLoop> = {
  naive: naiveLoop,
  concurrent: concurrentLoop,
  pipelined: pipelinedLoop,
};

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      loop: { type: "string", default: "naive" },
      receivers: { type: "string", default: "32" },
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "0" },
    },
  });
  if (values.loop === SHIPPED_LOOP) return await serveShipped(values);
  const loop = LOOPS[values.loop];
  if (!loop) {
    console.error(`error: unknown loop ${values.loop}`);
    return 2;
  }
  const conn = Deno.listenDatagram({
    hostname: values.host,
    port: Number(values.port),
    transport: "udp",
  });
  const stats: LoopStats = { echoed: 0, errors: 0 };
  const stop = () => conn.close();
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  console.log(
    `starting up on ${values.host} port ${(conn.addr as Deno.NetAddr).port}`,
  );
  await loop(conn, stats, Number(values.receivers));
  Deno.removeSignalListener("SIGTERM", stop);
  Deno.removeSignalListener("SIGINT", stop);
  console.error(`echoed ${stats.echoed} errors ${stats.errors}`);
  return 0;
}

/** The name under which `--loop` runs the shipped loop. */
const SHIPPED_LOOP = "adaptive";

/** Runs the shipped socket loop (echo/socket.ts) until SIGTERM or SIGINT. */
async function serveShipped(
  values: { host: string; port: string },
): Promise<number> {
  const controller = new AbortController();
  const stop = () => controller.abort();
  const server = serveSocket({
    hostnames: [values.host],
    port: Number(values.port),
    signal: controller.signal,
    policy: { rate: 0 },
  });
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  console.log(`starting up on ${values.host} port ${server.addr.port}`);
  const stats = await server.finished;
  Deno.removeSignalListener("SIGTERM", stop);
  Deno.removeSignalListener("SIGINT", stop);
  console.error(`echoed ${stats.echoed} errors ${stats.errors}`);
  return 0;
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
