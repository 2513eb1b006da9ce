import { deepEqual, equal, ok } from "node:assert/strict";
import { ROOT, runScript, startServer } from "../testing/cli.ts";
import { serveEcho } from "./serve.ts";
import { StampReflector } from "../stamp/reflector.ts";
import { STAMP_PORT } from "../stamp/packet.ts";
import { EchoPolicy } from "../policy/policy.ts";
import type { ServerEvent } from "../io/types.ts";

interface SenderLine {
  seq: number;
  reflector_seq: number;
  ttl: number;
  z: number;
  tlvs: { flags: number; type: number; length: number; value: string }[];
  problems: string[];
}

/** Runs the independent Python Session-Sender against `host`:`port`. */
async function pythonSender(
  host: string,
  port: number,
  count: number,
  size: number,
): Promise<{ code: number; lines: SenderLine[] }> {
  const { code, stdout } = await new Deno.Command("python3", {
    args: [
      new URL("testdata/stamp_sender.py", ROOT).pathname,
      host,
      String(port),
      String(count),
      String(size),
      "7",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const lines = new TextDecoder().decode(stdout).trim().split("\n")
    .map((line) => JSON.parse(line) as SenderLine);
  return { code, lines };
}

for (const host of ["127.0.0.1", "::1"]) {
  Deno.test(`server --stamp answers an independent Session-Sender over ${host}`, async () => {
    const server = await startServer([
      "-H",
      host,
      "-p",
      "0",
      "-q",
      "--stamp",
      "--stamp-stateful",
    ]);
    let output;
    try {
      const { code, lines } = await pythonSender(host, server.port, 3, 120);
      equal(code, 0, JSON.stringify(lines));
      equal(lines.length, 3);
      for (const line of lines) {
        deepEqual(line.problems, []);
        equal(line.reflector_seq, line.seq); // nothing lost: counters agree
        equal(line.ttl, 0); // the socket backend cannot see it
        equal(line.z, 0); // NTP timestamps
        const [location, padding] = line.tlvs;
        equal(location?.flags, 0);
        equal(location?.type, 2);
        const v6 = host.includes(":");
        // Destination port, then the source port the reflector saw.
        equal(parseInt(location!.value.slice(0, 4), 16), server.port);
        // Source IPv4 (8) or IPv6 (9), then destination (5 or 6).
        equal(location!.value.slice(10, 12), v6 ? "09" : "08");
        equal(location!.value.slice(50, 52), v6 ? "06" : "05");
        equal(padding?.flags, 0);
        equal(padding?.type, 1);
      }
    } finally {
      output = await server.stop();
    }
    ok(output.stdout.includes("io: socket"), output.stdout);
    ok(/echoed 3 datagrams/.test(output.stdout), output.stdout);
  });
}

Deno.test("server --stamp drops a datagram under 44 bytes as stamp-too-short", async () => {
  const events: ServerEvent[] = [];
  const controller = new AbortController();
  const reflector = new StampReflector();
  const server = serveEcho({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
    onEvent: (event) => events.push(event),
    reflect: (data, info) =>
      reflector.reflect(data, data, {
          from: info.from,
          local: info.local,
          receivedAtMs: performance.timeOrigin + info.receivedAt,
        }) === "stamp-too-short"
        ? "stamp-too-short"
        : undefined,
  });
  const client = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  try {
    await client.send(new Uint8Array(43), server.addr);
    await client.send(new Uint8Array(44), server.addr);
    const [reply] = await client.receive();
    equal(reply.length, 44);
  } finally {
    client.close();
    controller.abort();
  }
  const stats = await server.finished;
  equal(stats.received, 2);
  equal(stats.echoed, 1);
  deepEqual(stats.droppedBy, { "stamp-too-short": 1 });
  equal(stats.dropped, 1);
  ok(
    events.some((event) =>
      event.type === "dropped" && event.reason === "stamp-too-short"
    ),
  );
});

Deno.test("server --stamp refuses a sender on port 862: two reflectors would answer each other forever", async () => {
  // The rule itself, whoever runs the test.
  equal(
    new EchoPolicy().decide({ hostname: "192.0.2.1", port: STAMP_PORT }, 44),
    "low-port",
  );
  let peer: Deno.DatagramConn;
  try {
    peer = Deno.listenDatagram({
      transport: "udp",
      hostname: "127.0.0.1",
      port: STAMP_PORT,
    });
  } catch (error) {
    console.log(
      `skipped the socket half: binding port 862 needs root (${error})`,
    );
    return;
  }
  const events: ServerEvent[] = [];
  const controller = new AbortController();
  const reflector = new StampReflector();
  const server = serveEcho({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
    onEvent: (event) => events.push(event),
    reflect: (data, info) => {
      reflector.reflect(data, data, {
        from: info.from,
        local: info.local,
        receivedAtMs: performance.timeOrigin + info.receivedAt,
      });
      return undefined;
    },
  });
  try {
    await peer.send(new Uint8Array(44), server.addr);
    while (events.length === 0) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  } finally {
    peer.close();
    controller.abort();
  }
  const stats = await server.finished;
  deepEqual(stats.droppedBy, { "low-port": 1 });
  equal(reflector.counts().reflected, 0);
});

Deno.test("server --stamp-ptp without --stamp is a usage error", async () => {
  const { code, stderr } = await runScript("server.ts", ["--stamp-ptp"]);
  equal(code, 2);
  ok(stderr.includes("cannot use --stamp-ptp without --stamp"), stderr);
});

Deno.test("serveEcho() refuses reflect with the batch backend", () => {
  let thrown: unknown;
  try {
    serveEcho({ io: "batch", port: 0, reflect: () => undefined });
  } catch (error) {
    thrown = error;
  }
  ok(thrown instanceof TypeError);
});
