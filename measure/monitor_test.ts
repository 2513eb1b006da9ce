import { deepEqual, equal, throws } from "node:assert/strict";
import {
  MAX_MONITOR_RING,
  monitorRing,
  ProbeTally,
  RING_SLOT_BYTES,
  runMonitor,
} from "./monitor.ts";
import type { ReplyEvent } from "./types.ts";

function reply(seq: number, fields: Partial<ReplyEvent> = {}): ReplyEvent {
  return {
    type: "reply",
    flow: 0,
    seq,
    bytes: 64,
    rttMs: 1,
    check: "intact",
    duplicate: false,
    reordered: false,
    late: false,
    ...fields,
  };
}

Deno.test("ProbeTally counts a reply after the timeout as late only, and up by the last 3 probes", () => {
  const rtts: number[] = [];
  const tally = new ProbeTally((rtt) => rtts.push(rtt));
  equal(tally.up, false);
  for (let seq = 0; seq < 4; seq++) tally.sent();
  tally.record(reply(0, { rttMs: 2 }));
  tally.record(reply(0, { duplicate: true }));
  tally.record({ type: "lost", flow: 0, seq: 1 });
  tally.record(reply(1, { rttMs: 1500, late: true }));
  tally.record(reply(1, { rttMs: 1600, late: true, duplicate: true }));
  tally.record(reply(2, { rttMs: 4 }));
  tally.record({ type: "send_error", flow: 0, seq: 3, reason: "refused" });
  deepEqual(tally.counts, {
    sent: 4,
    received: 2,
    lost: 1,
    late: 1,
    duplicates: 2,
    corrupted: 0,
    sendErrors: 1,
  });
  deepEqual(rtts, [2, 4]);
  equal(tally.up, true);
  // Three losses in a row: down.
  for (const seq of [4, 5, 6]) tally.record({ type: "lost", flow: 0, seq });
  equal(tally.up, false);
  tally.record(reply(7, { check: "corrupted" }));
  equal(tally.counts.corrupted, 1);
  equal(tally.up, false);
});

Deno.test("ProbeTally jitter: RFC 3550 in arrival order, IPDV over consecutive probes", () => {
  const tally = new ProbeTally();
  tally.record(reply(0, { rttMs: 10 }));
  equal(Number.isNaN(tally.rfc3550Ms), true);
  equal(Number.isNaN(tally.ipdvMs), true);
  tally.record(reply(1, { rttMs: 26 }));
  equal(tally.rfc3550Ms, 1); // J = 0 + (16 - 0) / 16
  equal(tally.ipdvMs, 16);
  tally.record(reply(3, { rttMs: 26 })); // no pair: probe 2 unanswered
  equal(tally.ipdvMs, 16);
});

Deno.test("runMonitor() tells a loss when the timeout passes and a slower echo as late, never both received and lost", async () => {
  // An echo server that holds every echo for 150 ms: slower than the 60 ms timeout.
  const server = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const serving = (async () => {
    try {
      for await (const [data, from] of server) {
        const copy = data.slice();
        const id = setTimeout(() => {
          timers.delete(id);
          server.send(copy, from).catch(() => {});
        }, 150);
        timers.add(id);
      }
    } catch {
      // Closed.
    }
  })();
  const tally = new ProbeTally();
  const events: string[] = [];
  const stop = new AbortController();
  try {
    await runMonitor({
      targets: [{
        hostname: "127.0.0.1",
        port: (server.addr as Deno.NetAddr).port,
        family: "IPv4",
      }],
      tallies: [[tally]],
      intervalMs: 1000,
      timeoutMs: 60,
      signal: stop.signal,
      onEvent: (_, event) => {
        events.push(
          event.type === "reply" ? `reply late=${event.late}` : event.type,
        );
        if (event.type === "reply") stop.abort();
      },
    });
  } finally {
    for (const id of timers) clearTimeout(id);
    server.close();
    await serving;
  }
  deepEqual(events, ["lost", "reply late=true"]);
  equal(tally.counts.sent, 1);
  equal(tally.counts.lost, 1);
  equal(tally.counts.late, 1);
  equal(tally.counts.received, 0);
  equal(tally.up, false);
});

Deno.test("monitorRing() holds every probe within twice its timeout, in a small ring at the usual rates", () => {
  // The default: a probe a second, lost after a second.
  equal(monitorRing(1000, 1000), 64);
  equal(64 * RING_SLOT_BYTES < 4096, true);
  equal(monitorRing(10, 1000), 256);
  // The fastest rate: ten thousand probes within a second's timeout.
  equal(monitorRing(0.1, 1000), 32_768);
  // Room for the probes within their timeout, when not for twice as many.
  equal(monitorRing(0.1, 6000), MAX_MONITOR_RING);
  throws(() => monitorRing(0.1, 7000), RangeError);
});
