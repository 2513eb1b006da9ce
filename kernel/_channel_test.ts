import { deepEqual, equal, throws } from "node:assert/strict";
import {
  type Channel,
  ChannelReader,
  ChannelWriter,
  createChannel,
  type EventsMessage,
} from "./_channel.ts";

/** A record as the tests write it: a code, and bytes of one value. */
interface Sent {
  code: number;
  bytes: number[];
}

function setUp(channel: Channel, maxInFlight = 1) {
  const messages: EventsMessage[] = [];
  const writer = new ChannelWriter(channel, (m) => messages.push(m), {
    maxInFlight,
  });
  const reader = new ChannelReader(channel);
  const write = (record: Sent) => {
    if (!writer.reserve(record.bytes.length)) return false;
    writer.records[writer.at] = record.code;
    writer.bytes.set(record.bytes, writer.byteAt);
    writer.commit();
    return true;
  };
  const read = (message: EventsMessage) => {
    const got: Sent[] = [];
    reader.read(message, (r) => ({
      code: r.records[r.at]!,
      bytes: [...r.bytes.subarray(r.byteAt, r.byteAt + r.byteLength)],
    }), (record) => got.push(record));
    return got;
  };
  return { messages, writer, reader, write, read };
}

Deno.test("the channel carries records with bytes, wrapping the byte ring whole", () => {
  const { messages, writer, write, read } = setUp(
    createChannel({ records: 8, bytes: 64 }),
  );
  const records: Sent[] = [];
  for (let code = 0; code < 40; code++) {
    const record = {
      code,
      bytes: Array.from(
        { length: code % 3 === 0 ? 0 : 20 + code % 7 },
        () => code,
      ),
    };
    records.push(record);
    equal(write(record), true, `record ${code}`);
    // Read as it goes: two records of bytes fill the ring.
    writer.flush();
    deepEqual(read(messages.at(-1)!), [record]);
  }
  equal(writer.dropped, 0);
});

Deno.test("the channel drops and counts what finds no room, records or bytes", () => {
  const { messages, writer, reader, write, read } = setUp(
    createChannel({ records: 4, bytes: 64 }),
  );
  equal(write({ code: 1, bytes: new Array(40).fill(1) }), true);
  // 40 bytes take 40 of 64: 30 more do not fit.
  equal(write({ code: 2, bytes: new Array(30).fill(2) }), false);
  // Nor does a record that could never fit.
  equal(write({ code: 3, bytes: new Array(65).fill(3) }), false);
  for (let code = 4; code < 8; code++) write({ code, bytes: [] });
  equal(writer.dropped, 3);
  equal(reader.dropped, 3);
  writer.flush();
  deepEqual(read(messages[0]!).map((r) => r.code), [1, 4, 5, 6]);
  // Room again once read.
  equal(write({ code: 8, bytes: new Array(30).fill(8) }), true);
});

Deno.test("the channel sends strings once and details with the next notification", () => {
  const { messages, writer, reader } = setUp(createChannel({ records: 4 }));
  equal(writer.intern("a"), 0);
  equal(writer.intern("b"), 1);
  equal(writer.intern("a"), 0);
  writer.detail({ n: 1 });
  equal(writer.flush(), true);
  deepEqual(messages[0], {
    type: "events",
    upTo: 0,
    strings: ["a", "b"],
    details: [{ n: 1 }],
  });
  const details: unknown[] = [];
  reader.read(messages[0]!, () => 0, undefined, (d) => details.push(d));
  deepEqual(details, [{ n: 1 }]);
  equal(reader.string(1), "b");
  equal(reader.string(2), undefined);
});

Deno.test("the channel keeps at most maxInFlight notifications unread", () => {
  const { messages, writer, write, read } = setUp(
    createChannel({ records: 16 }),
    2,
  );
  for (let code = 0; code < 3; code++) {
    write({ code, bytes: [] });
    writer.flush();
  }
  equal(messages.length, 2);
  equal(writer.canPost, false);
  deepEqual(read(messages[0]!).map((r) => r.code), [0]);
  equal(writer.canPost, true);
  equal(writer.flush(), true);
  deepEqual(read(messages[1]!).map((r) => r.code), [1]);
  deepEqual(read(messages[2]!).map((r) => r.code), [2]);
});

Deno.test("the channel's totals are shared", () => {
  const channel = createChannel({ records: 1, totals: 2 });
  const writer = new ChannelWriter(channel, () => {});
  writer.totals[1] = 42;
  equal(new ChannelReader(channel).totals[1], 42);
});

Deno.test("createChannel() refuses sizes that are not powers of two", () => {
  throws(() => createChannel({ records: 100 }), RangeError);
  throws(() => createChannel({ records: 4, bytes: 100 }), RangeError);
  throws(() => createChannel({ records: 4, bytes: 4 }), RangeError);
});
