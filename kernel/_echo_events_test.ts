import { deepEqual, equal, ok } from "node:assert/strict";
import {
  C_DROPPED,
  C_ECHOED,
  C_RECEIVE_ERRORS,
  C_RECEIVED,
  C_SEND_ERRORS,
  COUNTER_SLOTS,
  readCounters,
  toServerEvent,
} from "./_echo_events.ts";

const local: Deno.NetAddr = {
  transport: "udp",
  hostname: "127.0.0.1",
  port: 7,
};

Deno.test("toServerEvent() turns a failed send into the socket backend's error event", () => {
  const event = toServerEvent({
    type: "error",
    operation: "send",
    errno: 111,
    message: "connection refused",
    hostname: "::1",
    port: 40_000,
  }, local);
  ok(event.type === "error");
  equal(event.operation, "send");
  deepEqual(event.local, local);
  deepEqual(event.peer, { transport: "udp", hostname: "::1", port: 40_000 });
  ok(event.error instanceof Deno.errors.ConnectionRefused);
  equal(event.error.message, "connection refused");
});

Deno.test("toServerEvent() gives a failed receive no peer", () => {
  const event = toServerEvent({
    type: "error",
    operation: "receive",
    errno: 13,
    message: "permission denied",
  }, local);
  ok(event.type === "error");
  equal("peer" in event, false);
  ok(event.error instanceof Deno.errors.PermissionDenied);
});

Deno.test("toServerEvent() turns datagrams into datagram and dropped events", () => {
  const data = new Uint8Array([1, 2, 3]);
  const from = { transport: "udp", hostname: "10.0.0.1", port: 5000 };
  deepEqual(
    toServerEvent({
      type: "datagram",
      hostname: "10.0.0.1",
      port: 5000,
      data,
      sent: 3,
      reason: undefined,
    }, local),
    { type: "datagram", from, local, data, sent: 3 },
  );
  deepEqual(
    toServerEvent({
      type: "dropped",
      hostname: "10.0.0.1",
      port: 5000,
      data,
      sent: 0,
      reason: "too-large",
    }, local),
    { type: "dropped", from, local, data, reason: "too-large" },
  );
});

Deno.test("readCounters() splits errors by operation and sums drops by reason", () => {
  const counts = new Float64Array(COUNTER_SLOTS);
  counts[C_RECEIVED] = 10;
  counts[C_ECHOED] = 6;
  // The slot may run ahead of the reasons, which travel with the events.
  counts[C_DROPPED] = 4;
  counts[C_RECEIVE_ERRORS] = 2;
  counts[C_SEND_ERRORS] = 1;
  const counters = readCounters(counts, { "too-large": 2, "low-port": 1 });
  equal(counters.received, 10);
  equal(counters.echoed, 6);
  equal(counters.dropped, 3);
  deepEqual(counters.droppedBy, { "too-large": 2, "low-port": 1 });
  equal(counters.errors, 3);
  deepEqual(counters.errorsBy, { receive: 2, send: 1 });
});
