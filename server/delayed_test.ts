// The reflector's delayed replies (the experimental Delayed Reply TLV) on
// both backends: held within bounds, one reply per request and never
// larger, the delay bounded, the rate limit asked again when a held reply
// leaves, and held replies counted as shutdown drops when the server stops.
import { deepEqual, equal, ok } from "node:assert/strict";
import type { StampOptions } from "./serve.ts";
import {
  readReflectorPacket,
  STAMP_BASE_SIZE,
  writeSenderPacket,
} from "../stamp/packet.ts";
import {
  DELAYED_REPLY_TLV_SIZE,
  readDelayedReply,
  writeDelayedReplyTlv,
} from "../stamp/delayed.ts";
import type { PolicyOptions } from "../policy/policy.ts";
import type { EchoServer, EchoStats } from "../echo/types.ts";
import { startStampReflector } from "../testing/echo.ts";
import { waitUntil } from "../testing/wait.ts";
import { type PathReply, PathSocket } from "../kernel/path_socket.ts";

const BACKENDS = ["socket", "batch"] as const;

/** A request of `size` bytes asking for `delayMs`. */
function request(seq: number, delayMs: number, size = 64): Uint8Array {
  const bytes = new Uint8Array(size);
  writeSenderPacket(bytes, {
    seq,
    timestampMs: Date.now(),
    errorEstimate: {
      synchronized: false,
      format: "ntp",
      scale: 0,
      multiplier: 1,
    },
    ssid: 1,
  });
  writeDelayedReplyTlv(bytes, STAMP_BASE_SIZE, delayMs);
  return bytes;
}

/** A socket on 127.0.0.1 and a free port, to send the requests from. */
function clientSocket(): Deno.DatagramConn {
  return Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
}

interface Reply {
  seq: number;
  size: number;
  delayMs: number;
  maxMs: number;
  /** ms since the first request was sent. */
  afterMs: number;
  /** T3 - T2: how long the reflector says it held the reply. */
  heldMs: number;
}

async function withServer(
  io: "socket" | "batch",
  stamp: Partial<StampOptions>,
  policy: PolicyOptions,
  fn: (
    send: (bytes: Uint8Array) => Promise<void>,
    replies: () => Promise<Reply>,
    server: EchoServer,
  ) => Promise<void>,
): Promise<EchoStats> {
  const { server, stop } = startStampReflector(io, { stamp, policy });
  const client = clientSocket();
  const start = performance.now();
  try {
    await fn(
      async (bytes) => {
        await client.send(bytes, server.addr);
      },
      async () => {
        const [data] = await client.receive(new Uint8Array(65_536));
        const delayed = readDelayedReply(data)!;
        const packet = readReflectorPacket(data)!;
        return {
          seq: packet.senderSeq,
          heldMs: packet.timestampMs - packet.receiveTimestampMs,
          size: data.length,
          delayMs: delayed.delayMs,
          maxMs: delayed.maxMs,
          afterMs: performance.now() - start,
        };
      },
      server,
    );
  } finally {
    client.close();
    stop();
  }
  const stats = await server.finished;
  equal(stats.received, stats.echoed + stats.dropped + stats.errors);
  return stats;
}

for (const io of BACKENDS) {
  Deno.test(`${io}: a delayed reply comes once, after the delay, as long as the request`, async () => {
    const stats = await withServer(
      io,
      {},
      { rate: 0 },
      async (send, receive) => {
        // A first reply, so the engine's start-up work on a busy machine
        // does not count in the times below.
        await send(request(0, 0, 100));
        equal((await receive()).seq, 0);
        await send(request(1, 600, 100));
        await send(request(2, 0, 100));
        const first = await receive();
        deepEqual([first.seq, first.delayMs], [2, 0]);
        const held = await receive();
        deepEqual([held.seq, held.size, held.delayMs], [1, 100, 600]);
        ok(held.afterMs >= 600, `held ${held.afterMs} ms`);
        // T3 is taken when the held reply leaves.
        ok(
          held.heldMs >= 600 && first.heldMs < 600,
          `T3 - T2 ${held.heldMs} ms`,
        );
        await send(request(3, 0, 100));
        equal((await receive()).seq, 3);
      },
    );
    // One reply per request, by the server's own count.
    deepEqual([stats.received, stats.echoed, stats.echoedBytes], [4, 4, 400]);
  });

  Deno.test(`${io}: the table of held replies is bounded, the delay too`, async () => {
    const stamp = { maxHeld: 2, maxDelayMs: 5000 };
    await withServer(io, stamp, { rate: 0 }, async (send, receive) => {
      await send(request(1, 800));
      await send(request(2, 800));
      // The table is full: answered at once, granted 0.
      await send(request(3, 800));
      // Over the ceiling: answered at once, granted 0, the ceiling returned.
      await send(request(4, 5001));
      const early = [await receive(), await receive()];
      deepEqual(
        early.map((r) => [r.seq, r.delayMs, r.maxMs]).sort(),
        [[3, 0, 5000], [4, 0, 5000]],
      );
      const late = [await receive(), await receive()];
      deepEqual(late.map((r) => [r.seq, r.delayMs]).sort(), [[1, 800], [
        2,
        800,
      ]]);
      // Released: the table has room again.
      await send(request(5, 100));
      deepEqual([(await receive()).delayMs], [100]);
    });
  });

  Deno.test(`${io}: one source holds at most maxHeldPerSource replies, and gets its room back`, async () => {
    const stamp = { maxHeldPerSource: 2 };
    await withServer(io, stamp, { rate: 0 }, async (send, receive) => {
      await send(request(1, 600));
      await send(request(2, 600));
      // This source's share is full, though the table is not: at once.
      await send(request(3, 600));
      const early = await receive();
      deepEqual([early.seq, early.delayMs], [3, 0]);
      const late = [await receive(), await receive()];
      deepEqual(late.map((r) => [r.seq, r.delayMs]).sort(), [[1, 600], [
        2,
        600,
      ]]);
      // Released when sent: the source has room again.
      await send(request(4, 100));
      deepEqual([(await receive()).delayMs], [100]);
    });
  });

  Deno.test(`${io}: the rate limit applies again when a held reply leaves`, async () => {
    // Two datagrams at once, then hardly any.
    const policy = { rate: 0.001, burst: 2 };
    const stats = await withServer(
      io,
      {},
      policy,
      async (send, receive, server) => {
        await send(request(1, 500));
        await send(request(2, 0));
        equal((await receive()).seq, 2);
        // The held reply's turn finds the budget spent: dropped, not sent.
        await waitUntil(
          () => server.stats().droppedBy["rate-limited"] === 1,
          "the held reply is refused by the rate limit",
        );
      },
    );
    deepEqual([stats.echoed, stats.droppedBy["rate-limited"]], [1, 1]);
  });

  Deno.test(`${io}: held replies are shutdown drops when the server stops`, async () => {
    const { server, stop } = startStampReflector(io, { policy: { rate: 0 } });
    const client = clientSocket();
    try {
      await client.send(request(1, 60_000), server.addr);
      await waitUntil(
        () => server.stats().received === 1,
        "the server received the request",
      );
    } finally {
      client.close();
      stop();
    }
    const stats = await server.finished;
    deepEqual([stats.received, stats.echoed, stats.droppedBy.shutdown], [
      1,
      0,
      1,
    ]);
  });
}

Deno.test("batch on 0.0.0.0: a held reply leaves from the address the request was sent to", async () => {
  const { server, stop } = startStampReflector("batch", {
    hostname: "0.0.0.0",
    policy: { rate: 0 },
  });
  const client = clientSocket();
  try {
    for (const to of ["127.0.0.1", "127.0.0.2"]) {
      await client.send(request(1, 300), {
        transport: "udp",
        hostname: to,
        port: server.addr.port,
      });
      const [data, from] = await client.receive(new Uint8Array(65_536));
      deepEqual([(from as Deno.NetAddr).hostname, data.length], [to, 64]);
      equal(readDelayedReply(data)?.delayMs, 300);
    }
  } finally {
    client.close();
    stop();
  }
  await server.finished;
});

Deno.test("batch: a held reply leaves marked with the DSCP its Class of Service TLV asked for", async () => {
  const { server, stop } = startStampReflector("batch", {
    policy: { rate: 0 },
  });
  const socket = PathSocket.open(server.addr);
  try {
    // Class of Service asking for EF (46) on the way back, then the delay.
    const bytes = request(1, 300, 44 + 8 + DELAYED_REPLY_TLV_SIZE);
    bytes.set([0x80, 4, 0, 4, 46 << 2, 0, 0, 0], 44);
    writeDelayedReplyTlv(bytes, 52, 300);
    equal(socket.send(bytes), "sent");
    let reply: PathReply | undefined;
    await waitUntil(
      () => (reply = socket.receive()) !== undefined,
      "the held reply comes back",
    );
    equal(readDelayedReply(reply!.bytes)?.delayMs, 300);
    equal(reply!.tos >> 2, 46);
  } finally {
    socket.close();
    stop();
  }
  await server.finished;
});

Deno.test("a Delayed Reply TLV is its own size", () => {
  equal(DELAYED_REPLY_TLV_SIZE, 12);
});

Deno.test("batch: held replies due together all leave together, not a batch per turn of the loop", async () => {
  // More replies than one sendmmsg carries (64), due at one instant: each
  // turn of an idle loop waits out the receive timeout, so sending one
  // batch per turn would spread them over seconds.
  const sockets = 10;
  const perSocket = 50;
  const { server, stop } = startStampReflector("batch", {
    // Every request comes from 127.0.0.1: one source, given room for all.
    stamp: { maxHeldPerSource: 1024 },
    policy: { rate: 0 },
  });
  // Several sockets, so no client receive buffer overflows.
  const clients = Array.from({ length: sockets }, clientSocket);
  const arrivals: number[] = [];
  const readers = Promise.all(clients.map(async (client) => {
    for (let k = 0; k < perSocket; k++) {
      await client.receive(new Uint8Array(2048));
      arrivals.push(performance.now());
    }
  }));
  try {
    const dueAt = performance.now() + 3000;
    for (const client of clients) {
      for (let k = 0; k < perSocket; k++) {
        const delayMs = Math.max(1, Math.round(dueAt - performance.now()));
        await client.send(request(k, delayMs), server.addr);
      }
      // Paced, so the server's receive buffer never overflows.
      const sent = (clients.indexOf(client) + 1) * perSocket;
      await waitUntil(
        () => server.stats().received === sent,
        `the server received ${sent} requests`,
      );
    }
    await readers;
  } finally {
    for (const client of clients) client.close();
    stop();
    await readers.catch(() => {});
  }
  const stats = await server.finished;
  equal(stats.echoed, sockets * perSocket);
  const spreadMs = Math.max(...arrivals) - Math.min(...arrivals);
  ok(spreadMs < 1000, `the held replies came back over ${spreadMs} ms`);
});
