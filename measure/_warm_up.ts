/**
 * The socket path's warm-up before probe 0 is timed: a short run of the
 * same loop, on a throwaway flow, against an echo on this host's loopback
 * (never the target), so the first calls of that code (parsed, compiled
 * and run cold otherwise, in this process's first run only) are not in
 * probe 0's round trip; then a rest for the optimising compiler. The
 * kernel engine's Worker runs its own (`kernel/_probe_worker.ts`).
 *
 * @module
 */

import { Flow } from "./_flow.ts";

/** Probes of the warm-up run. */
export const WARM_UP_PROBES = 16;
/** The warm-up run's interval, in ms: its waits are the run's waits. */
export const WARM_UP_INTERVAL_MS = 1;
/** The longest the warm-up run waits for its echoes, in ms. */
const WARM_UP_WAIT_MS = 30;

/**
 * Runs `loop` on a throwaway flow (a session of its own, reporting
 * nowhere) whose target is an echo on 127.0.0.1 in this process; without
 * loopback, or without the permission to use it, the run only skips it.
 */
export async function warmUpRun(
  loop: (flow: Flow) => Promise<unknown>,
): Promise<void> {
  // Never a permission prompt for an address the user did not name.
  const loopback = { name: "net", host: "127.0.0.1" } as const;
  if (Deno.permissions.querySync(loopback).state !== "granted") return;
  let echo: Deno.DatagramConn;
  try {
    echo = Deno.listenDatagram({
      hostname: "127.0.0.1",
      port: 0,
      transport: "udp",
    });
  } catch {
    return;
  }
  const echoing = (async () => {
    try {
      for await (const [data, from] of echo) await echo.send(data, from);
    } catch {
      // Closed, or no loopback: only a warm-up.
    }
  })();
  const { port } = echo.addr as Deno.NetAddr;
  let flow: Flow | undefined;
  try {
    flow = new Flow(0, 0, {
      target: { hostname: "127.0.0.1", port, family: "IPv4" },
      timeoutMs: WARM_UP_WAIT_MS,
      onReply: () => {},
      onSendError: () => {},
      onSend: () => {},
    });
    await loop(flow);
    await flow.drain(WARM_UP_WAIT_MS);
  } catch {
    // Only a warm-up: the probes will meet and report any real failure.
  } finally {
    flow?.close();
    await flow?.receiving;
    echo.close();
    await echoing;
  }
}

/**
 * How long the run rests after its warm-up, in ms, so the optimising
 * compiler's background jobs finish before probe 0 rather than compete
 * with it for a CPU (as the engine's Worker does).
 */
const SETTLE_MS = 20;

/** Waits {@linkcode SETTLE_MS}. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
}
