import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { type BatchServer, serveBatch } from "./echo.ts";
import { checkBatchSupport } from "./choice.ts";
import type { ServerEvent } from "../echo/types.ts";
import { MAX_IPV4_PAYLOAD, MAX_IPV6_PAYLOAD } from "../net/payload.ts";

const DECIDE_FIXTURE = new URL("../testdata/decide_drop13.ts", import.meta.url)
  .href;

/** Starts a batch server on a free port and stops it when the test ends. */
async function withServer(
  hostname: string,
  test: (server: BatchServer, events: ServerEvent[]) => Promise<void>,
  options: { decide?: boolean; datagramEvents?: boolean } = {},
): Promise<void> {
  const controller = new AbortController();
  const events: ServerEvent[] = [];
  const server = serveBatch({
    hostnames: [hostname],
    port: 0,
    signal: controller.signal,
    onEvent: (event) => events.push(event),
    datagramEvents: options.datagramEvents,
    decideModule: options.decide ? DECIDE_FIXTURE : undefined,
    decideOptions: options.decide ? { size: 13 } : undefined,
  });
  try {
    await test(server, events);
  } finally {
    controller.abort();
    await server.finished;
  }
}

/** Sends each payload and returns each reply with the address it came from. */
async function roundTrips(
  target: Deno.NetAddr,
  payloads: Uint8Array[],
): Promise<[Uint8Array, Deno.NetAddr][]> {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: target.hostname,
    port: 0,
  });
  try {
    const replies: [Uint8Array, Deno.NetAddr][] = [];
    for (const payload of payloads) {
      await conn.send(payload, target);
      const [data, from] = await conn.receive(new Uint8Array(65_536));
      replies.push([data, from as Deno.NetAddr]);
    }
    return replies;
  } finally {
    conn.close();
  }
}

/**
 * Waits until `check` holds (the Worker counts an echo just after sending
 * it, so a reply can arrive first), failing after five seconds.
 */
async function eventually(check: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !check(); waited += 10) {
    ok(waited < 5_000, `still not ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function patterned(size: number, seed = 7): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

Deno.test("checkBatchSupport() accepts this Linux process with --allow-ffi", () => {
  checkBatchSupport();
});

Deno.test("serveBatch() echoes over IPv4 byte for byte from its own port", async () => {
  await withServer("127.0.0.1", async (server) => {
    const payloads = [
      new TextEncoder().encode(
        "This is our message. It will be sent all at once",
      ),
      new Uint8Array(0),
      patterned(1),
      patterned(1472),
      patterned(8192),
      patterned(MAX_IPV4_PAYLOAD),
    ];
    const replies = await roundTrips(server.addr, payloads);
    replies.forEach(([data, from], i) => {
      deepEqual(data, payloads[i]);
      equal(from.port, server.addr.port);
      equal(from.hostname, "127.0.0.1");
    });
    await eventually(
      () => server.stats().echoed === payloads.length,
      "all counted",
    );
    const counters = server.stats();
    equal(counters.received, payloads.length);
    equal(counters.echoed, payloads.length);
    equal(
      counters.echoedBytes,
      payloads.reduce((sum, p) => sum + p.length, 0),
    );
    equal(counters.errors, 0);
  });
});

Deno.test("serveBatch() echoes over IPv6, the 65,527-byte limit included", async () => {
  await withServer("::1", async (server) => {
    equal(server.addr.hostname, "::1");
    const payloads = [
      new Uint8Array(0),
      patterned(3),
      patterned(MAX_IPV6_PAYLOAD),
    ];
    const replies = await roundTrips(server.addr, payloads);
    replies.forEach(([data, from], i) => {
      deepEqual(data, payloads[i]);
      equal(from.port, server.addr.port);
    });
  });
});

Deno.test("serveBatch() resolves a host name and reports the port it bound", async () => {
  await withServer("localhost", async (server) => {
    ok(server.addr.port > 0);
    const replies = await roundTrips(server.addr, [patterned(10)]);
    deepEqual(replies[0]?.[0], patterned(10));
  });
});

Deno.test("serveBatch() keeps 64 datagrams in flight intact and in number", async () => {
  await withServer("127.0.0.1", async (server) => {
    const conn = Deno.listenDatagram({
      transport: "udp",
      hostname: "127.0.0.1",
      port: 0,
    });
    try {
      const total = 2_000;
      const window = 64;
      const seen = new Set<number>();
      const sendOne = (seq: number) => {
        const payload = patterned(8 + (seq % 200), seq);
        new DataView(payload.buffer).setUint32(0, seq);
        return conn.send(payload, server.addr);
      };
      let next = 0;
      for (; next < window; next++) await sendOne(next);
      const buffer = new Uint8Array(65_536);
      while (seen.size < total) {
        const [data] = await conn.receive(buffer);
        const seq = new DataView(data.buffer, data.byteOffset).getUint32(0);
        const expected = patterned(8 + (seq % 200), seq);
        new DataView(expected.buffer).setUint32(0, seq);
        deepEqual(data, expected);
        ok(!seen.has(seq), `duplicate ${seq}`);
        seen.add(seq);
        if (next < total) await sendOne(next++);
      }
      await eventually(
        () => server.stats().echoed === total,
        "all counted",
      );
      equal(server.stats().errors, 0);
    } finally {
      conn.close();
    }
  });
});

Deno.test("serveBatch() drops what the decide hook refuses and counts the reason", async () => {
  await withServer("127.0.0.1", async (server, events) => {
    const conn = Deno.listenDatagram({
      transport: "udp",
      hostname: "127.0.0.1",
      port: 0,
    });
    try {
      await conn.send(patterned(13), server.addr);
      await conn.send(patterned(14), server.addr);
      const [data] = await conn.receive(new Uint8Array(65_536));
      // The 13-byte datagram went first; only the 14-byte one comes back.
      deepEqual(data, patterned(14));
    } finally {
      conn.close();
    }
    await eventually(() => events.length === 2, "two events");
    const counters = server.stats();
    equal(counters.dropped, 1);
    equal(counters.echoed, 1);
    deepEqual(
      events.map((e) => [e.type, e.type === "dropped" ? e.reason : undefined]),
      [["dropped", "unlucky"], ["datagram", undefined]],
    );
    const [dropped, echoed] = events;
    ok(dropped?.type === "dropped" && echoed?.type === "datagram");
    deepEqual(dropped.data, patterned(13));
    deepEqual(echoed.data, patterned(14));
    equal(echoed.sent, 14);
    deepEqual(echoed.local, server.addr);
    equal(echoed.from.hostname, "127.0.0.1");
    // Drop counts per reason reach the main thread with the events.
    deepEqual(server.stats().droppedBy, { unlucky: 1 });
  }, { decide: true, datagramEvents: true });
});

Deno.test("serveBatch() echoes from each of two sockets on one port", async () => {
  const controller = new AbortController();
  const events: ServerEvent[] = [];
  const server = serveBatch({
    hostnames: ["127.0.0.1", "::1"],
    port: 0,
    signal: controller.signal,
    onEvent: (event) => events.push(event),
  });
  try {
    equal(server.addrs.length, 2);
    deepEqual(server.addr, server.addrs[0]);
    const [v4, v6] = server.addrs;
    equal(v4!.hostname, "127.0.0.1");
    equal(v6!.hostname, "::1");
    equal(v6!.port, v4!.port);
    for (const target of server.addrs) {
      const replies = await roundTrips(target, [patterned(5), patterned(7)]);
      replies.forEach(([data, from], i) => {
        deepEqual(data, patterned(i === 0 ? 5 : 7));
        deepEqual(from, target);
      });
    }
    await eventually(() => server.stats().echoed === 4, "all counted");
    const stats = server.stats();
    equal(stats.received, 4);
    equal(stats.receivedBytes, 24);
    equal(stats.echoedBytes, 24);
    deepEqual(stats.errorsBy, { receive: 0, send: 0 });
    await eventually(() => events.length === 4, "four events");
    // Each socket has its own Worker: their events may interleave.
    deepEqual(
      events.map((e) => e.type === "datagram" && e.local.hostname).sort(),
      ["127.0.0.1", "127.0.0.1", "::1", "::1"],
    );
  } finally {
    controller.abort();
  }
  equal((await server.finished).echoed, 4);
});

Deno.test("serveBatch() refuses one rate limit across several sockets", () => {
  throws(
    () =>
      serveBatch({
        hostnames: ["127.0.0.1", "::1"],
        port: 0,
        rateLimitScope: "server",
      }),
    new TypeError(
      "Cannot share one rate limit across batch sockets: each Worker keeps its own table",
    ),
  );
});

Deno.test("serveBatch() applies the policy in each Worker", async () => {
  const controller = new AbortController();
  const server = serveBatch({
    hostnames: ["127.0.0.1", "::1"],
    port: 0,
    signal: controller.signal,
    policy: { maxSize: 4 },
  });
  try {
    for (const target of server.addrs) {
      const conn = Deno.listenDatagram({
        transport: "udp",
        hostname: target.hostname,
        port: 0,
      });
      try {
        await conn.send(patterned(5), target);
        await conn.send(patterned(4), target);
        const [data] = await conn.receive(new Uint8Array(64));
        deepEqual(data, patterned(4));
      } finally {
        conn.close();
      }
    }
    await eventually(() => server.stats().dropped === 2, "both dropped");
    deepEqual(server.stats().droppedBy, { "too-large": 2 });
  } finally {
    controller.abort();
    await server.finished;
  }
});

// A failed send's error event (Deno.errors class, local and peer) is not
// provoked here: on loopback the kernel accepts every echo to a source it
// just received from. _echo_events_test.ts covers the event the main
// thread makes of the errno the Worker writes.

Deno.test("serveBatch() reports each datagram whole, with the socket it came to", async () => {
  await withServer("127.0.0.1", async (server, events) => {
    const payload = patterned(3000);
    const [reply, from] = (await roundTrips(server.addr, [payload]))[0]!;
    deepEqual(reply, payload);
    await eventually(() => events.length === 1, "one event");
    const event = events[0]!;
    ok(event.type === "datagram");
    deepEqual(event.data, payload);
    equal(event.sent, payload.length);
    deepEqual(event.local, server.addr);
    deepEqual(event.local, from);
  });
});

Deno.test("serveBatch() refuses a batch size out of range before binding", () => {
  throws(
    () => serveBatch({ hostnames: ["127.0.0.1"], port: 0, batchSize: 0 }),
    RangeError,
  );
});

Deno.test("serveBatch() refuses an address in use like listenDatagram does", () => {
  const taken = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    throws(() => serveBatch({ hostnames: ["127.0.0.1"], port }), (error) => {
      ok(error instanceof Error);
      equal(
        error.message,
        `Cannot bind 127.0.0.1:${port}: address already in use`,
      );
      ok(error.cause instanceof Deno.errors.AddrInUse);
      return true;
    });
  } finally {
    taken.close();
  }
});

Deno.test("serveBatch() stops an idle server blocked in recvmmsg", async () => {
  const controller = new AbortController();
  const server = serveBatch({
    hostnames: ["127.0.0.1"],
    port: 0,
    signal: controller.signal,
  });
  // Once it has echoed a datagram, the Worker is back in its receive loop,
  // blocked in the kernel, with nothing more to come.
  await roundTrips(server.addr, [patterned(3)]);
  controller.abort();
  await server.finished;
  // The port is free again once finished settles: the socket is closed.
  const again = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  again.close();
});

Deno.test("serveBatch() rejects finished and frees the port when its Worker fails", async () => {
  const server = serveBatch({
    hostnames: ["127.0.0.1"],
    port: 0,
    decideModule:
      new URL("../testdata/no_such_module.ts", import.meta.url).href,
  });
  await rejects(server.finished, /^Error: Cannot run the batch loop: /);
  const again = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  again.close();
});
