/**
 * `replyEvents: false`: `onEvent` hears of failed sends only, on both
 * carriers, and the result still counts every reply and every loss.
 *
 * @module
 */

import { deepEqual, equal } from "node:assert/strict";
import { startEcho } from "../testing/echo.ts";
import { runFlows } from "./run.ts";
import type { ProbeEvent } from "./types.ts";

for (const io of ["socket", "batch"] as const) {
  Deno.test(`runFlows({ replyEvents: false }) on ${io} makes no reply events and counts every reply`, async () => {
    await using echo = startEcho();
    const events: ProbeEvent[] = [];
    const result = await runFlows({
      target: echo.target,
      count: 300,
      window: 8,
      io,
      replyEvents: false,
      onEvent: (event) => events.push(event),
    });
    deepEqual(events, []);
    equal(result.sent, 300);
    equal(result.received, 300);
    equal(result.lost, 0);
  });

  Deno.test(`runFlows({ replyEvents: false }) on ${io} makes no lost events and counts every loss`, async () => {
    // A socket that never reads: every probe goes unanswered.
    const silent = Deno.listenDatagram({
      transport: "udp",
      hostname: "127.0.0.1",
      port: 0,
    });
    const { port } = silent.addr as Deno.NetAddr;
    const events: ProbeEvent[] = [];
    const result = await runFlows({
      target: { hostname: "127.0.0.1", port, family: "IPv4" },
      count: 3,
      window: 3,
      timeoutMs: 50,
      waitMs: 100,
      io,
      replyEvents: false,
      onEvent: (event) => events.push(event),
    }).finally(() => silent.close());
    deepEqual(events, []);
    equal(result.sent, 3);
    equal(result.lost, 3);
  });
}
