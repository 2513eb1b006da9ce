import { deepEqual, equal, ok } from "node:assert/strict";
import type { EventsMessage } from "./_channel.ts";
import {
  C_DROPPED,
  C_ECHOED,
  C_RECEIVE_ERRORS,
  C_RECEIVED,
  C_SEND_ERRORS,
  COUNTER_SLOTS,
  createEchoChannel,
  EchoEventReader,
  EchoEventWriter,
  readCounters,
} from "./_echo_events.ts";
import type { ServerEvent } from "../echo/types.ts";

const local: Deno.NetAddr = {
  transport: "udp",
  hostname: "127.0.0.1",
  port: 7,
};

/** An engine buffer: a sockaddr at byte 0, a payload at byte 64. */
function engineMemory(
  family: "IPv4" | "IPv6",
  port: number,
  payload: number[],
): Uint8Array {
  const memory = new Uint8Array(4096);
  const view = new DataView(memory.buffer);
  view.setUint16(0, family === "IPv4" ? 2 : 10, true);
  view.setUint16(2, port);
  if (family === "IPv4") memory.set([10, 0, 0, 1], 4);
  else memory[8 + 15] = 1; // ::1
  memory.set(payload, 64);
  return memory;
}

/** Writes with `write`, then reads every event back through one notification. */
function roundTrip(
  write: (writer: EchoEventWriter) => void,
): { events: ServerEvent[]; reader: EchoEventReader } {
  const channel = createEchoChannel(true);
  const messages: EventsMessage[] = [];
  const writer = new EchoEventWriter(channel, (m) => messages.push(m));
  const reader = new EchoEventReader(channel, local);
  write(writer);
  writer.flush({}, 0, true);
  const events: ServerEvent[] = [];
  for (const message of messages) reader.read(message, (e) => events.push(e));
  return { events, reader };
}

Deno.test("a failed send reaches the main thread as the socket backend's error event", () => {
  const memory = engineMemory("IPv6", 40_000, []);
  const { events } = roundTrip((writer) =>
    writer.error("send", 111, "connection refused", memory, 0)
  );
  equal(events.length, 1);
  const event = events[0]!;
  ok(event.type === "error");
  equal(event.operation, "send");
  deepEqual(event.local, local);
  deepEqual(event.peer, { transport: "udp", hostname: "::1", port: 40_000 });
  ok(event.error instanceof Deno.errors.ConnectionRefused);
  equal(event.error.message, "connection refused");
});

Deno.test("a failed receive reaches the main thread with no peer", () => {
  const { events } = roundTrip((writer) =>
    writer.error("receive", 13, "permission denied", new Uint8Array(8), -1)
  );
  const event = events[0]!;
  ok(event.type === "error");
  equal(event.operation, "receive");
  equal("peer" in event, false);
  ok(event.error instanceof Deno.errors.PermissionDenied);
});

Deno.test("datagrams reach the main thread as datagram and dropped events, payload copied", () => {
  const memory = engineMemory("IPv4", 5000, [1, 2, 3]);
  const { events } = roundTrip((writer) => {
    writer.datagram(memory, 0, 64, 3, undefined);
    writer.datagram(memory, 0, 64, 3, "too-large");
    writer.datagram(memory, 0, 64, 0, undefined);
  });
  const from = { transport: "udp", hostname: "10.0.0.1", port: 5000 };
  const data = new Uint8Array([1, 2, 3]);
  deepEqual(events, [
    { type: "datagram", from, local, data, sent: 3 },
    { type: "dropped", from, local, data, reason: "too-large" },
    { type: "datagram", from, local, data: new Uint8Array(0), sent: 0 },
  ]);
  // The engine's buffer is reused for the next batch: the event keeps a copy.
  memory[64] = 9;
  equal((events[0] as { data: Uint8Array }).data[0], 1);
  ok(
    !((events[0] as { data: Uint8Array }).data.buffer instanceof
      SharedArrayBuffer),
  );
});

Deno.test("the drops by reason travel with the notification, the counters in shared memory", () => {
  const channel = createEchoChannel(false);
  const messages: EventsMessage[] = [];
  const writer = new EchoEventWriter(channel, (m) => messages.push(m));
  const reader = new EchoEventReader(channel, local);
  writer.totals[C_RECEIVED] = 4;
  writer.totals[C_DROPPED] = 3;
  ok(writer.hasNews(3));
  equal(writer.flush({ "too-large": 2, "low-port": 1 }, 3), true);
  equal(writer.hasNews(3), false);
  reader.read(messages[0]!, () => {});
  const counters = reader.counters();
  equal(counters.received, 4);
  equal(counters.dropped, 3);
  deepEqual(counters.droppedBy, { "too-large": 2, "low-port": 1 });
  equal(counters.eventsDropped, 0);
});

Deno.test("readCounters() splits errors by operation and sums drops by reason", () => {
  const counts = new Float64Array(COUNTER_SLOTS);
  counts[C_RECEIVED] = 10;
  counts[C_ECHOED] = 6;
  // The slot may run ahead of the reasons, which travel with the events.
  counts[C_DROPPED] = 4;
  counts[C_RECEIVE_ERRORS] = 2;
  counts[C_SEND_ERRORS] = 1;
  const counters = readCounters(
    counts,
    { "too-large": 2, "low-port": 1 },
    5,
  );
  equal(counters.received, 10);
  equal(counters.echoed, 6);
  equal(counters.dropped, 3);
  deepEqual(counters.droppedBy, { "too-large": 2, "low-port": 1 });
  equal(counters.errors, 3);
  deepEqual(counters.errorsBy, { receive: 2, send: 1 });
  equal(counters.eventsDropped, 5);
});
