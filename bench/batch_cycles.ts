/**
 * Starts and stops `serveBatch()` many times in one process (a socket per
 * family, so two Workers a cycle, each echoing one datagram before it is
 * stopped) and compares the process's open descriptors (`/proc/self/fd`)
 * and threads (`/proc/self/task`) before and after, to catch a socket, a
 * library handle or a Worker thread left behind per cycle.
 *
 * The "before" count is taken after three warm-up cycles, so threads the
 * runtime starts once on first use (V8's platform workers, Tokio's blocking
 * pool) count as the baseline, not as a leak. A stopped Worker's thread
 * and its event loop's descriptors go some time after `finished` settles,
 * and threads of Tokio's blocking pool linger up to 10 s idle, so the
 * "after" counts are read until they fall to the baseline or `--settle`
 * seconds pass.
 *
 * Usage (Deno reads /proc/self only with --allow-all):
 *   deno run --unstable-net --allow-all \
 *     bench/batch_cycles.ts [--cycles 200] [--settle 15]
 *
 * Prints one JSON line: cycles, echoes, and fds and threads before and after.
 * Exit 0 when both are back at their baseline ({@linkcode FD_SLACK}
 * descriptors allowed), else 1.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { serveBatch } from "../kernel/echo.ts";

/**
 * Descriptors the run may end with above its baseline: after some cycle
 * Deno opens a socket pair and keeps an event loop's eventfd and epoll
 * descriptors, and does not give them back. Measured after 1, 20, 200 and
 * 300 cycles: always these 2 (the socket pair's two ends, or the eventfd
 * and the epoll), so they are paid once, not per cycle; a leak of one
 * descriptor per cycle shows as 200.
 */
export const FD_SLACK = 2;

/** What one run of {@linkcode runCycles} found. */
export interface CyclesResult {
  /** Start/stop cycles after the warm-up. */
  cycles: number;
  /** Datagrams echoed intact over all cycles. */
  echoes: number;
  /** Open descriptors after the warm-up cycles (the lowest count over a second). */
  fdsBefore: number;
  /** Open descriptors after the last cycle, once settled. */
  fdsAfter: number;
  /** Threads after the warm-up cycles (the lowest count over a second). */
  threadsBefore: number;
  /** Threads after the last cycle, once settled. */
  threadsAfter: number;
  /** Seconds the counts took to settle. */
  settleSeconds: number;
}

/** Counts the entries of a /proc folder. */
function count(path: string): number {
  let n = 0;
  for (const _ of Deno.readDirSync(path)) n++;
  return n;
}

/** One cycle: start on both families, echo one datagram each, stop. */
async function cycle(): Promise<number> {
  const controller = new AbortController();
  const server = serveBatch({
    hostnames: ["127.0.0.1", "::1"],
    port: 0,
    signal: controller.signal,
  });
  let echoes = 0;
  try {
    await server.started;
    for (const addr of server.addrs) {
      const conn = Deno.listenDatagram({
        transport: "udp",
        hostname: addr.hostname,
        port: 0,
      });
      try {
        const payload = crypto.getRandomValues(new Uint8Array(100));
        await conn.send(payload, addr);
        const [reply] = await conn.receive();
        if (reply.every((byte, i) => byte === payload[i])) echoes++;
      } finally {
        conn.close();
      }
    }
  } finally {
    controller.abort();
    await server.finished;
  }
  return echoes;
}

/** Runs the warm-up and `cycles` cycles and counts descriptors and threads around them. */
export async function runCycles(
  cycles: number,
  settleSeconds: number,
): Promise<CyclesResult> {
  for (let i = 0; i < 3; i++) await cycle();
  // The warm-up's own Worker is still going away: the baseline is the
  // lowest count over a second.
  let fdsBefore = Infinity;
  let threadsBefore = Infinity;
  for (let i = 0; i < 10; i++) {
    fdsBefore = Math.min(fdsBefore, count("/proc/self/fd"));
    threadsBefore = Math.min(threadsBefore, count("/proc/self/task"));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  let echoes = 0;
  for (let i = 0; i < cycles; i++) echoes += await cycle();
  // A terminated Worker's thread, and with it its event loop's descriptors,
  // goes some time after `finished` settles: wait for both to come down.
  const settleStart = performance.now();
  let fdsAfter = count("/proc/self/fd");
  let threadsAfter = count("/proc/self/task");
  while (
    (fdsAfter > fdsBefore + FD_SLACK || threadsAfter > threadsBefore) &&
    performance.now() - settleStart < settleSeconds * 1000
  ) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    fdsAfter = count("/proc/self/fd");
    threadsAfter = count("/proc/self/task");
  }
  return {
    cycles,
    echoes,
    fdsBefore,
    fdsAfter,
    threadsBefore,
    threadsAfter,
    settleSeconds: (performance.now() - settleStart) / 1000,
  };
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      cycles: { type: "string", default: "200" },
      settle: { type: "string", default: "15" },
    },
  });
  const result = await runCycles(Number(values.cycles), Number(values.settle));
  console.log(JSON.stringify(result));
  return result.fdsAfter <= result.fdsBefore + FD_SLACK &&
      result.threadsAfter <= result.threadsBefore
    ? 0
    : 1;
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
