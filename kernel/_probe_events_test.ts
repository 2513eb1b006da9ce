import { deepEqual, equal, throws } from "node:assert/strict";
import type { EventsMessage } from "./_channel.ts";
import {
  createProbeChannel,
  ProbeEventReader,
  ProbeEventWriter,
} from "./_probe_events.ts";
import type { ProbeEvent } from "../measure/types.ts";

Deno.test("ProbeEventWriter and ProbeEventReader carry every kind of event through the ring", () => {
  const channel = createProbeChannel(2, 8);
  const messages: EventsMessage[] = [];
  const writer = new ProbeEventWriter(channel, (m) => messages.push(m));
  const reader = new ProbeEventReader(channel);
  const events: ProbeEvent[] = [
    {
      type: "reply",
      flow: 1,
      seq: 4,
      bytes: 63,
      rttMs: 0.0123,
      check: "truncated",
      duplicate: true,
      reordered: false,
      late: true,
      clockStep: true,
    },
    { type: "lost", flow: 0, seq: 9 },
    { type: "send_error", flow: 1, seq: 5, reason: "network is unreachable" },
    { type: "send_error", flow: 0, seq: 6, reason: "network is unreachable" },
  ];
  for (const event of events) writer.push(event);
  writer.sent[1] = 3;
  equal(writer.flush(), true);
  // One notification at a time: the next waits until this one is read.
  writer.push(events[1]!);
  equal(writer.flush(), false);
  const got: ProbeEvent[] = [];
  reader.read(messages[0]!, (event) => got.push(event));
  deepEqual(got, events);
  equal(reader.sent[1], 3);
  equal(writer.flush(), true);
  reader.read(messages[1]!, (event) => got.push(event));
  deepEqual(got.at(-1), events[1]);
  equal(reader.dropped, 0);
});

Deno.test("ProbeEventWriter drops and counts events once the ring is full", () => {
  const channel = createProbeChannel(1, 4);
  const messages: EventsMessage[] = [];
  const writer = new ProbeEventWriter(channel, (m) => messages.push(m));
  const reader = new ProbeEventReader(channel);
  for (let seq = 0; seq < 6; seq++) writer.push({ type: "lost", flow: 0, seq });
  equal(writer.dropped, 2);
  writer.flush();
  const seqs: number[] = [];
  reader.read(
    messages[0]!,
    (event) => seqs.push((event as { seq: number }).seq),
  );
  deepEqual(seqs, [0, 1, 2, 3]);
  // Room again once read.
  writer.push({ type: "lost", flow: 0, seq: 6 });
  equal(writer.dropped, 2);
  equal(reader.dropped, 2);
});

Deno.test("createProbeChannel() refuses a ring that is not a power of two", () => {
  throws(() => createProbeChannel(1, 100), RangeError);
});

Deno.test("ProbeEventWriter.pushWaiting() writes when there is room and drops once aborted", () => {
  const channel = createProbeChannel(1, 2);
  const messages: EventsMessage[] = [];
  const writer = new ProbeEventWriter(channel, (m) => messages.push(m));
  const reader = new ProbeEventReader(channel);
  const never = () => false;
  writer.pushWaiting({ type: "lost", flow: 0, seq: 0 }, never);
  writer.pushWaiting({ type: "lost", flow: 0, seq: 1 }, never);
  equal(writer.dropped, 0);
  // Full, and the run is aborted: no waiting for a reader.
  let asked = 0;
  writer.pushWaiting({ type: "lost", flow: 0, seq: 2 }, () => ++asked > 0);
  equal(asked, 1);
  equal(writer.dropped, 1);
  writer.flush(true);
  const seqs: number[] = [];
  reader.read(messages.at(-1)!, (event) => {
    if (event.type === "lost") seqs.push(event.seq);
  });
  deepEqual(seqs, [0, 1]);
});
