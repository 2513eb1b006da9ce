import { deepEqual, equal, ok } from "node:assert/strict";
import { ROOT, runScript, startServer } from "../testing/cli.ts";
import { startStampReflector } from "../testing/echo.ts";
import { serveBatch } from "../kernel/echo.ts";
import { STAMP_PORT } from "../stamp/packet.ts";
import { EchoPolicy } from "../policy/policy.ts";
import type { ServerEvent } from "../echo/types.ts";

interface SenderLine {
  seq: number;
  reflector_seq: number;
  ttl: number;
  reflector_ms: number;
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

/** The I/O backends every server test here runs on. */
const IO_MODES = ["socket", "batch"] as const;
/** What `server.ts --io batch` needs besides the network. */
const ENGINE = ["--allow-net", "--allow-ffi", "--allow-read=."];

/** The Location TLV's value as the Python sender prints it: ports, then source and destination sub-TLVs. */
function location(value: string) {
  return {
    destinationPort: parseInt(value.slice(0, 4), 16),
    sourceType: value.slice(10, 12),
    destinationType: value.slice(50, 52),
    destination: value.slice(56, 88),
  };
}

for (const io of IO_MODES) {
  for (const host of ["127.0.0.1", "::1"]) {
    Deno.test(`server --stamp --io ${io} answers an independent Session-Sender over ${host}`, async () => {
      const server = await startServer(
        [
          "-H",
          host,
          "-p",
          "0",
          "-q",
          "--stamp",
          "--stamp-stateful",
          "--io",
          io,
        ],
        "server.ts",
        io === "batch" ? ENGINE : undefined,
      );
      let output;
      try {
        const { code, lines } = await pythonSender(host, server.port, 3, 120);
        equal(code, 0, JSON.stringify(lines));
        equal(lines.length, 3);
        for (const line of lines) {
          // Same length, sender fields copied, MBZ zero, SSID kept.
          deepEqual(line.problems, []);
          equal(line.reflector_seq, line.seq); // nothing lost: counters agree
          // The engine reads the TTL (hop limit) the kernel saw; 64 is
          // Linux's default on loopback. Sockets cannot see it: 0.
          equal(line.ttl, io === "batch" ? 64 : 0);
          equal(line.z, 0); // NTP timestamps
          ok(line.reflector_ms >= 0, `T3 before T2: ${line.reflector_ms}`);
          const [found, padding] = line.tlvs;
          equal(found?.flags, 0);
          equal(found?.type, 2);
          const v6 = host.includes(":");
          const seen = location(found!.value);
          equal(seen.destinationPort, server.port);
          // Source IPv4 (8) or IPv6 (9), then destination (5 or 6).
          equal(seen.sourceType, v6 ? "09" : "08");
          equal(seen.destinationType, v6 ? "06" : "05");
          equal(
            seen.destination,
            v6 ? "0".repeat(31) + "1" : "7f000001" + "0".repeat(24),
          );
          equal(padding?.flags, 0);
          equal(padding?.type, 1);
        }
      } finally {
        output = await server.stop();
      }
      ok(output.stdout.includes(`io: ${io}`), output.stdout);
      ok(/echoed 3 datagrams/.test(output.stdout), output.stdout);
    });
  }

  for (
    const [bind, host] of [["0.0.0.0", "127.0.0.1"], ["::", "127.0.0.1"], [
      "::",
      "::1",
    ]]
  ) {
    Deno.test(`server --stamp --io ${io} on ${bind} names ${host}, the address sent to, in the Location TLV`, async () => {
      // With --allow-sys the socket backend binds each interface address;
      // the engine keeps one wildcard socket and reads each destination.
      const server = await startServer(
        ["-H", bind!, "-p", "0", "-q", "--stamp", "--io", io],
        "server.ts",
        [
          ...(io === "batch" ? ENGINE : ["--allow-net"]),
          "--allow-sys=networkInterfaces",
        ],
      );
      try {
        const { code, lines } = await pythonSender(host!, server.port, 2, 120);
        equal(code, 0, JSON.stringify(lines));
        for (const line of lines) {
          const seen = location(line.tlvs[0]!.value);
          const v6 = host!.includes(":");
          equal(seen.destinationType, v6 ? "06" : "05");
          equal(
            seen.destination,
            v6 ? "0".repeat(31) + "1" : "7f000001" + "0".repeat(24),
          );
        }
      } finally {
        await server.stop();
      }
    });
  }
}

/** Sends each request from one socket and returns the replies, in order. */
async function exchange(
  target: Deno.NetAddr,
  requests: Uint8Array[],
): Promise<Uint8Array[]> {
  const client = Deno.listenDatagram({
    transport: "udp",
    hostname: target.hostname,
    port: 0,
  });
  try {
    const replies: Uint8Array[] = [];
    for (const request of requests) {
      await client.send(request, target);
      const [reply] = await client.receive();
      replies.push(reply);
    }
    return replies;
  } finally {
    client.close();
  }
}

function bytesOf(text: string): Uint8Array {
  const clean = text.replaceAll(/\s+/g, "");
  return Uint8Array.from(
    { length: clean.length / 2 },
    (_, i) => parseInt(clean.slice(2 * i, 2 * i + 2), 16),
  );
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// A Session-Sender packet written out by hand from RFC 8762 §4.2.1 and
// RFC 8972 §3: seq 0x01020304, T1 NTP 0x11111111.22222222, error estimate
// S=1 Scale 1 Multiplier 2, SSID 0xbeef, 28 MBZ bytes.
const BASE_REQUEST = "01020304 1111111122222222 8102 beef" + "00".repeat(28);

for (const io of IO_MODES) {
  Deno.test(`serveEcho({stamp, io: "${io}"}) drops a datagram under 44 bytes as stamp-too-short`, async () => {
    const events: ServerEvent[] = [];
    const { server, stop } = startStampReflector(io, {
      onEvent: (event) => events.push(event),
    });
    try {
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
      }
    } finally {
      stop();
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

  Deno.test(`serveEcho({stamp, io: "${io}"}) marks unknown and malformed TLVs and never stalls`, async () => {
    const { server, stop } = startStampReflector(io);
    const requests = [
      // An unknown type (200): U kept; then a TLV claiming 65535 bytes: M.
      BASE_REQUEST + "80 c8 0002 0909" + "80 01 ffff 0000",
      // A Location sub-TLV of the wrong length: M on both.
      BASE_REQUEST + "80 02 000c 0000 0000" + "80 07 0004 00000000",
      // Timestamp Information of the wrong length, then a header cut short.
      BASE_REQUEST + "80 03 0002 0000" + "80",
      // Random bytes after the base: whatever comes back, the same length.
      BASE_REQUEST + "ff".repeat(37),
      // And the reflector still answers afterwards.
      BASE_REQUEST + "80 01 0004 deadbeef",
    ].map(bytesOf);
    let replies: Uint8Array[];
    try {
      replies = await exchange(server.addr, requests);
    } finally {
      stop();
    }
    await server.finished;
    replies.forEach((reply, k) => equal(reply.length, requests[k]!.length));
    const tail = replies.map((reply) => hex(reply.subarray(44)));
    equal(tail[0], hex(bytesOf("80 c8 0002 0909" + "40 01 ffff 0000")));
    const port = server.addr.port.toString(16).padStart(4, "0");
    equal(tail[1]!.slice(0, 8), "4002000c"); // M set, U cleared
    equal(tail[1]!.slice(8, 12), port); // the destination port still filled
    equal(tail[1]!.slice(16), "4007000400000000");
    equal(tail[2], "4003000200004" + "0");
    equal(tail[4], hex(bytesOf("00 01 0004 deadbeef")));
  });

  Deno.test(`serveEcho({stamp, io: "${io}"}) refuses a sender on port 862: two reflectors would answer each other forever`, async () => {
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
    const { server, stop } = startStampReflector(io, {
      onEvent: (event) => events.push(event),
      stamp: { stateful: true },
    });
    try {
      await peer.send(new Uint8Array(44), server.addr);
      while (events.length === 0) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    } finally {
      peer.close();
      stop();
    }
    const stats = await server.finished;
    deepEqual(stats.droppedBy, { "low-port": 1 });
    equal(stats.echoed, 0);
  });
}

Deno.test("server --stamp-ptp without --stamp is a usage error", async () => {
  const { code, stderr } = await runScript("server.ts", ["--stamp-ptp"]);
  equal(code, 2);
  ok(stderr.includes("cannot use --stamp-ptp without --stamp"), stderr);
});

Deno.test("serveBatch() refuses a reflect function: it cannot cross to a Worker", () => {
  let thrown: unknown;
  try {
    serveBatch({ hostnames: ["127.0.0.1"], port: 0, reflect: () => undefined });
  } catch (error) {
    thrown = error;
  }
  ok(thrown instanceof TypeError);
});
