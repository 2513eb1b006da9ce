import { deepEqual, equal } from "node:assert/strict";
import { RECEIVE_BUFFER_SIZE } from "../net/payload.ts";
import { serveEcho } from "../server.ts";
import { at, type FaultRule, serveFaultRelay } from "./fault_relay.ts";
import { waitUntil } from "./wait.ts";

/**
 * Sends `payloads` through a relay to an echo server, one after the other
 * (the relay takes them in that order); returns the echoes once `expected`
 * have come.
 */
async function throughRelay(
  rules: FaultRule[],
  payloads: Uint8Array[],
  expected: number,
): Promise<{ echoes: number[][]; stats: Record<string, number> }> {
  const controller = new AbortController();
  const echo = serveEcho({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
  });
  const relay = serveFaultRelay({
    upstream: echo.addr,
    rules,
    holdMs: 50,
    signal: controller.signal,
  });
  const client = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  const echoes: number[][] = [];
  const receiving = (async () => {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    while (true) {
      try {
        const [data] = await client.receive(buffer);
        echoes.push([...data]);
      } catch {
        return;
      }
    }
  })();
  try {
    for (const payload of payloads) await client.send(payload, relay.addr);
    await waitUntil(() => echoes.length >= expected, `${expected} echoes`);
  } finally {
    client.close();
    controller.abort();
    await Promise.all([relay.finished, echo.finished, receiving]);
  }
  return { echoes, stats: { ...relay.stats } };
}

const PAYLOADS = [0, 1, 2, 3, 4].map((n) => new Uint8Array([n, 10, 20, 30]));

Deno.test("serveFaultRelay() passes datagrams unchanged without rules", async () => {
  const { echoes, stats } = await throughRelay([], PAYLOADS, 5);
  deepEqual(echoes, PAYLOADS.map((p) => [...p]));
  equal(stats.requests, 5);
  equal(stats.replies, 5);
});

Deno.test("serveFaultRelay() drops, duplicates, corrupts and truncates chosen datagrams", async () => {
  const { echoes, stats } = await throughRelay(
    [
      { select: at(1), action: { type: "drop" } },
      { select: at(2), action: { type: "duplicate", copies: 2 } },
      { select: at(3), action: { type: "corrupt", offset: 0 } },
      {
        direction: "reply",
        select: at(4),
        action: { type: "truncate", size: 2 },
      },
      { direction: "reply", select: at(5), action: { type: "corrupt" } },
    ],
    PAYLOADS,
    6,
  );
  // Replies are numbered as they come back: 0, 2, 2, 2, 3 (its first byte
  // flipped on the way in, then cut to 2 bytes), 4 (last byte flipped).
  deepEqual(echoes, [
    [0, 10, 20, 30],
    [2, 10, 20, 30],
    [2, 10, 20, 30],
    [2, 10, 20, 30],
    [3 ^ 0xff, 10],
    [4, 10, 20, 30 ^ 0xff],
  ]);
  deepEqual(
    [stats.dropped, stats.duplicated, stats.corrupted, stats.truncated],
    [1, 2, 2, 1],
  );
});

Deno.test("serveFaultRelay() sends a reordered datagram after its successor", async () => {
  const { echoes, stats } = await throughRelay(
    [
      { select: at(1), action: { type: "reorder" } },
    ],
    PAYLOADS,
    5,
  );
  deepEqual(echoes.map((echo) => echo[0]), [0, 2, 1, 3, 4]);
  equal(stats.reordered, 1);
});

Deno.test("serveFaultRelay() releases a held datagram with no successor", async () => {
  const { echoes } = await throughRelay(
    [
      { select: at(4), action: { type: "reorder" } },
    ],
    PAYLOADS,
    5,
  );
  deepEqual(echoes.map((echo) => echo[0]), [0, 1, 2, 3, 4]);
});

Deno.test("serveFaultRelay() delays a datagram past later ones", async () => {
  const { echoes, stats } = await throughRelay(
    [
      { select: at(0), action: { type: "delay", ms: 80 } },
    ],
    PAYLOADS,
    5,
  );
  deepEqual(echoes.map((echo) => echo[0]), [1, 2, 3, 4, 0]);
  equal(stats.delayed, 1);
});
