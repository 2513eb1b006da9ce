import { equal } from "node:assert/strict";
import { Flow } from "./_flow.ts";

/** How long the datagrams may take to be taken, in ms. */
const RECEIVE_WAIT_MS = 5000;

/** Resolves once `done()` holds; rejects after {@linkcode RECEIVE_WAIT_MS}. */
async function until(done: () => boolean, what: string): Promise<void> {
  const end = performance.now() + RECEIVE_WAIT_MS;
  while (!done()) {
    if (performance.now() > end) throw new Error(`Never saw ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

for (const bind of ["0.0.0.0", "127.0.0.1"]) {
  Deno.test(`Flow bound to ${bind} counts its empty datagram to itself as a primer and never a stray's, empty or not`, async () => {
    const target = Deno.listenDatagram({
      hostname: "127.0.0.1",
      port: 0,
      transport: "udp",
    });
    const stray = Deno.listenDatagram({
      hostname: "127.0.0.1",
      port: 0,
      transport: "udp",
    });
    const flow = new Flow(0, 1, {
      target: {
        hostname: "127.0.0.1",
        port: (target.addr as Deno.NetAddr).port,
        family: "IPv4",
      },
      bind: { hostname: bind, port: 0 },
      timeoutMs: 1000,
    });
    try {
      equal(flow.self.hostname, "127.0.0.1");
      const to = { ...flow.self, transport: "udp" as const };
      await stray.send(new Uint8Array(0), to);
      await stray.send(new Uint8Array(5), to);
      await until(() => flow.ignored === 2, "both strays ignored");
      equal(flow.primersBack, 0);
      await flow.conn.send(new Uint8Array(0), to);
      await until(() => flow.primersBack === 1, "the primer come back");
      equal(flow.ignored, 2);
      equal(flow.strays, 0);
    } finally {
      flow.close();
      await flow.receiving;
      stray.close();
      target.close();
    }
  });
}
