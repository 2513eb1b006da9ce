import { equal, ok } from "node:assert/strict";
import { serveEcho } from "../server.ts";
import { runLoad } from "./loadgen.ts";

for (
  const [window, size] of [[1, 64], [8, 1400], [64, 64], [64, 1400]] as const
) {
  Deno.test(`serveEcho() echoes ${window} datagrams of ${size} bytes in flight with no loss or corruption`, async () => {
    const controller = new AbortController();
    const server = serveEcho({
      hostname: "127.0.0.1",
      port: 0,
      signal: controller.signal,
    });
    try {
      const result = await runLoad({
        hostname: "127.0.0.1",
        port: server.addr.port,
        window,
        size,
        duration: 0.3,
        warmup: 0,
        // Generous: a loaded machine must not turn a slow reply into "lost".
        lossTimeout: 5000,
      });
      ok(result.echoes > window, `only ${result.echoes} echoes`);
      equal(result.corrupt, 0);
      equal(result.lost, 0);
      equal(result.stalled, false);
      equal(result.sendErrors, 0);
    } finally {
      controller.abort();
    }
    const stats = await server.finished;
    equal(stats.errors, 0);
    equal(stats.echoed, stats.received);
  });
}

Deno.test("runLoad() counts a reply that differs from what was sent as corrupt", async () => {
  // A reflector that flips the last byte of every datagram.
  const reflector = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const reflecting = (async () => {
    const buffer = new Uint8Array(65_536);
    try {
      while (true) {
        const [data, from] = await reflector.receive(buffer);
        data[data.length - 1]! ^= 0xff;
        await reflector.send(data, from);
      }
    } catch {
      // closed
    }
  })();
  try {
    const result = await runLoad({
      hostname: "127.0.0.1",
      port: (reflector.addr as Deno.NetAddr).port,
      window: 4,
      size: 64,
      // A corrupt echo sends nothing more: the datagram is sent again only
      // after the loss timeout, under a new number, so a later echo of the
      // old one no longer counts. The timeout leaves a busy machine time for
      // one round trip; the run ends a timeout after its duration.
      duration: 1,
      warmup: 0,
      lossTimeout: 500,
    });
    equal(result.echoes, 0);
    ok(result.corrupt > 0);
  } finally {
    reflector.close();
    await reflecting;
  }
});
