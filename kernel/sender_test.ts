import { equal, ok, throws } from "node:assert/strict";
import { openSender, openSenderSockets } from "./sender.ts";
import { serveSocket } from "../echo/socket.ts";

Deno.test("Sender sends, and a reply carries the kernel's receive time", async () => {
  const controller = new AbortController();
  const server = serveSocket({
    hostnames: ["127.0.0.1"],
    port: 0,
    signal: controller.signal,
  });
  const sockets = openSenderSockets({
    target: { ...server.addr, family: "IPv4" },
    count: 1,
  });
  const { engine, release } = openSender({
    fds: sockets.fds,
    target: sockets.target,
    size: 32,
  });
  try {
    engine.sendSlot(0).fill(7);
    equal(engine.send(0, 12), 32);
    const stamp = new DataView(
      engine.sendSlot(0).buffer,
      engine.sendSlot(0).byteOffset + 12,
      8,
    )
      .getFloat64(0);
    ok(Math.abs(stamp - Date.now()) < 1000);
    let n = 0;
    const end = engine.monoNow() + 2000;
    while (n === 0 && engine.monoNow() < end) {
      // The echo is handled by this thread's event loop: let it run.
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (engine.wait(engine.monoNow()) > 0) n = engine.receive(0);
    }
    equal(n, 1);
    equal(engine.length(0, 0), 32);
    equal(engine.fromTarget(0, 0), true);
    equal(engine.data(0, 0)[20], 7);
    const rtt = engine.arrivalReal(0, 0) - engine.sentReal;
    ok(rtt > 0 && rtt < 2000, `rtt ${rtt}`);
    equal(engine.receive(0), 0);
  } finally {
    release();
    sockets.close();
    controller.abort();
    await server.finished;
  }
});

Deno.test("Sender.sendBatch sends several slots in one call, all with the call's stamp", async () => {
  const controller = new AbortController();
  const server = serveSocket({
    hostnames: ["127.0.0.1"],
    port: 0,
    signal: controller.signal,
  });
  const sockets = openSenderSockets({
    target: { ...server.addr, family: "IPv4" },
    count: 1,
  });
  const { engine, release } = openSender({
    fds: sockets.fds,
    target: sockets.target,
    size: 24,
    batchSize: 8,
  });
  try {
    ok(engine.sendBatchSize === 8);
    for (let i = 0; i < 5; i++) engine.sendSlot(0, i).fill(i + 1);
    equal(engine.sendBatch(0, 1, 4, 12), 4);
    const stampOf = (i: number) =>
      new DataView(engine.sendSlot(0, i).buffer).getFloat64(
        engine.sendSlot(0, i).byteOffset + 12,
      );
    const stamp = engine.realEpochMs(engine.sentReal);
    for (let i = 1; i < 5; i++) equal(stampOf(i), stamp);
    const got: number[] = [];
    const end = engine.monoNow() + 2000;
    while (got.length < 4 && engine.monoNow() < end) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (engine.wait(engine.monoNow()) <= 0) continue;
      const n = engine.receive(0);
      for (let i = 0; i < n; i++) {
        equal(engine.length(0, i), 24);
        got.push(engine.data(0, i)[0]!);
      }
    }
    // Slots 1 to 4 left, in order; slot 0 did not.
    equal(got.join(), "2,3,4,5");
  } finally {
    release();
    sockets.close();
    controller.abort();
    await server.finished;
  }
});

Deno.test("openSenderSockets() names an IPv6 address it cannot bind in brackets, as the socket backend does", () => {
  // 2001:db8::/32 is for documentation: no interface holds it.
  throws(
    () =>
      openSenderSockets({
        target: { hostname: "::1", port: 9, family: "IPv6" },
        bind: { hostname: "2001:db8::1", port: 0 },
        count: 1,
      }),
    /^Error: Cannot bind \[2001:db8::1\]:0: /,
  );
});
