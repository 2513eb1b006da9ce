/**
 * server.ts --stamp and client.ts --stamp against an independent STAMP peer
 * in C (testdata/stamp_peer.c, written from the RFC 8762 and RFC 8972 packet
 * diagrams), both directions, IPv4 and IPv6; and the reflector against
 * malformed packets over the wire. Skipped with a message when there is no C
 * compiler.
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import {
  ROOT,
  type RunningPeer,
  runScript,
  startPeer,
  startServer,
  successStatus,
} from "../testing/cli.ts";

const HOSTS = ["127.0.0.1", "::1"];

/** The compiled peer, or undefined (and why) when it cannot be built. */
const PEER = await buildPeer();

async function buildPeer(): Promise<string | undefined> {
  try {
    const dir = new TextDecoder().decode(
      (await new Deno.Command("mktemp", { args: ["-d"] }).output()).stdout,
    ).trim();
    globalThis.addEventListener("unload", () => {
      new Deno.Command("rm", { args: ["-r", dir] }).outputSync();
    });
    const binary = `${dir}/stamp_peer`;
    const { code, stderr } = await new Deno.Command("cc", {
      args: [
        "-O2",
        "-Wall",
        "-o",
        binary,
        new URL("testdata/stamp_peer.c", ROOT).pathname,
      ],
      stderr: "piped",
    }).output();
    if (code !== 0) throw new Error(new TextDecoder().decode(stderr));
    return binary;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    console.log("skipped: the C STAMP peer tests need cc, which is not found");
    return undefined;
  }
}

interface PeerReply {
  seq: number;
  lost?: boolean;
  length: number;
  reflector_seq: number;
  ssid: number;
  s: number;
  z: number;
  scale: number;
  multiplier: number;
  sender_seq: number;
  sender_timestamp_echoed: boolean;
  sender_error_echoed: boolean;
  ttl: number;
  mbz_zero: boolean;
  t1: number;
  t2: number;
  t3: number;
  t4: number;
  tlvs: { flags: number; type: number; length: number; value: string }[];
}

/** Runs the C Session-Sender; one parsed line per reply. */
async function peerSender(
  host: string,
  port: number,
  count: number,
  size: number,
): Promise<{ code: number; replies: PeerReply[] }> {
  const { code, stdout } = await new Deno.Command(PEER!, {
    args: ["sender", host, String(port), String(count), String(size), "7"],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const replies = new TextDecoder().decode(stdout).trim().split("\n")
    .map((line) => JSON.parse(line) as PeerReply);
  return { code, replies };
}

/** Starts the C Session-Reflector. */
function peerReflector(host: string, modes: string[]): Promise<RunningPeer> {
  return startPeer(PEER!, ["reflector", host, ...modes]);
}

/** The TTL (hop limit) this host sends on loopback with (Deno reads /proc only with --allow-all). */
async function defaultTtl(host: string): Promise<number> {
  const { stdout } = await new Deno.Command("cat", {
    args: [
      host.includes(":")
        ? "/proc/sys/net/ipv6/conf/lo/hop_limit"
        : "/proc/sys/net/ipv4/ip_default_ttl",
    ],
  }).output();
  return Number(new TextDecoder().decode(stdout));
}

for (const host of HOSTS) {
  for (const flags of [[], ["--stamp-stateful", "--stamp-ptp"]]) {
    Deno.test({
      name: `server.ts --stamp ${
        flags.join(" ")
      } answers the C Session-Sender over ${host}`,
      ignore: PEER === undefined,
      async fn() {
        const server = await startServer([
          "-H",
          host,
          "-p",
          "0",
          "-q",
          "--stamp",
          ...flags,
        ]);
        try {
          const count = 4;
          const { code, replies } = await peerSender(
            host,
            server.port,
            count,
            140,
          );
          equal(code, 0, JSON.stringify(replies));
          equal(replies.length, count);
          const ptp = flags.includes("--stamp-ptp");
          for (const reply of replies) {
            equal(reply.length, 140); // symmetric size
            equal(reply.sender_seq, reply.seq);
            // Stateless copies the sender's number; stateful counts from 0.
            equal(reply.reflector_seq, reply.seq);
            equal(reply.ssid, 7);
            ok(reply.sender_timestamp_echoed);
            ok(reply.sender_error_echoed);
            ok(reply.mbz_zero);
            equal(reply.ttl, 0); // the socket backend cannot see it: unknown
            equal(reply.z, ptp ? 1 : 0);
            ok(reply.multiplier > 0);
            // Read in the format the Z flag names, T2 and T3 fall between T1
            // and T4 (one clock, 50 ms of slack for two processes' views).
            ok(reply.t2 <= reply.t3, JSON.stringify(reply));
            ok(reply.t2 >= reply.t1 - 0.05 && reply.t3 <= reply.t4 + 0.05);
            const [location, info, padding] = reply.tlvs;
            deepEqual(
              reply.tlvs.map(({ flags, type }) => [flags, type]),
              [[0, 2], [0, 3], [0, 1]],
            );
            const v6 = host.includes(":");
            const value = location!.value;
            equal(parseInt(value.slice(0, 4), 16), server.port);
            equal(value.slice(8, 16), v6 ? "00090010" : "00080010");
            equal(value.slice(48, 56), v6 ? "00060010" : "00050010");
            const loopback = v6 ? "0".repeat(31) + "1" : "7f000001";
            ok(value.slice(16, 48).startsWith(loopback));
            equal(info!.value, "05020502"); // local free-running, software
            equal(padding!.length, 140 - 44 - 48 - 8 - 4);
          }
        } finally {
          await server.stop();
        }
      },
    });
  }

  for (const modes of [[], ["plain"], ["ptp", "stateful"]]) {
    Deno.test({
      name: `client.ts --stamp measures the C Session-Reflector (${
        modes.join(", ") || "TLVs unknown to it"
      }) over ${host}`,
      ignore: PEER === undefined,
      async fn() {
        const reflector = await peerReflector(host, modes);
        try {
          const count = 5;
          const { code, stdout, stderr } = await runScript("client.ts", [
            "-H",
            host,
            "-p",
            String(reflector.port),
            "--stamp",
            "--stamp-tlv",
            "location,timestamp-info",
            "-c",
            String(count),
            "-i",
            "10",
            "-s",
            "120",
            "--json",
          ]);
          // A stall of a busy machine may leave the 10 ms schedule short
          // (exit 1, and the document says so); the timestamps are the point.
          equal(code, successStatus(stdout), stderr);
          const document = JSON.parse(stdout);
          equal(document.received, count);
          equal(document.corrupted, 0);
          const { forward, backward } = document.one_way_ms;
          const sum = forward.mean + backward.mean + document.reflector_ms.mean;
          // T4 − T1 is the round trip: the four timestamps add up.
          ok(
            Math.abs(sum - document.rtt_ms.mean) < 0.01,
            `${sum} vs ${document.rtt_ms.mean}`,
          );
          ok(document.reflector_ms.min >= 0);
          ok(Math.abs(document.offset_ms.mean) < 50);
          const stamp = document.stamp;
          equal(
            stamp.reflector_timestamps,
            modes.includes("ptp") ? "ptp" : "ntp",
          );
          const ttl = await defaultTtl(host);
          deepEqual(stamp.ttl, { min: ttl, max: ttl });
          deepEqual(stamp.directional_loss, {
            forward: 0,
            backward: 0,
            undetermined: 0,
          });
          // It understands neither TLV: both come back with U set; the plain
          // one (RFC 8762 alone, SSID 0) returns Extra Padding as sent, U set.
          const returned = modes.includes("plain") ? 3 : 2;
          equal(stamp.unrecognized_tlvs, returned * count);
          equal(stamp.malformed_tlvs, 0);
          equal(stamp.location, null);
          equal(stamp.size_mismatch, 0);
          equal(stamp.mbz_nonzero, 0);
        } finally {
          await reflector.stop();
        }
      },
    });
  }
}

/** Sends `packet` and waits up to 2 s for the reply; undefined on timeout. */
async function exchange(
  conn: Deno.DatagramConn,
  to: Deno.NetAddr,
  packet: Uint8Array,
): Promise<Uint8Array | undefined> {
  await conn.send(packet, to);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), 2000);
  });
  try {
    const received = conn.receive(new Uint8Array(65536)).then(([data]) => data);
    return await Promise.race([received, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A request of `size` bytes whose TLV area is `tlvs` (after the 44-byte base). */
function request(size: number, tlvs: number[]): Uint8Array {
  const packet = new Uint8Array(size);
  packet.set(tlvs, 44);
  return packet;
}

Deno.test("server.ts --stamp survives malformed requests: each answered at its own length, M where a TLV runs past its end", async () => {
  const server = await startServer([
    "-H",
    "127.0.0.1",
    "-p",
    "0",
    "-q",
    "--stamp",
  ]);
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const to: Deno.NetAddr = {
    transport: "udp",
    hostname: "127.0.0.1",
    port: server.port,
  };
  let sent = 0;
  let failure: unknown;
  try {
    // Hand-built, with the flags RFC 8972 §4 wants back (U 0x80, M 0x40).
    const crafted: [string, Uint8Array, (reply: Uint8Array) => void][] = [
      [
        "a TLV whose length runs past the end",
        request(60, [0x80, 3, 0, 40]),
        (r) => equal(r[44], 0x40),
      ],
      [
        "3 bytes too few for a TLV header",
        request(47, [0x80, 1, 0]),
        (r) => equal(r[44], 0x40),
      ],
      [
        "zero-length TLVs",
        request(56, [0x80, 1, 0, 0, 0x80, 1, 0, 0, 0x80, 9, 0, 0]),
        (r) => deepEqual([r[44], r[48], r[52]], [0, 0, 0x80]),
      ],
      [
        "a Timestamp Information TLV of length 0",
        request(52, [0x80, 3, 0, 0, 0x80, 1, 0, 0]),
        (r) => deepEqual([r[44], r[48]], [0x40, 0]),
      ],
      [
        "a Location TLV of length 2",
        request(50, [0x80, 2, 0, 2, 0, 0]),
        (r) => equal(r[44], 0x40),
      ],
      [
        "a Location sub-TLV running past the Location TLV",
        request(72, [0x80, 2, 0, 24, 0, 0, 0, 0, 0x80, 7, 0, 30]),
        (r) => deepEqual([r[44], r[52]], [0x40, 0x40]),
      ],
      [
        "an address sub-TLV of length 4",
        request(60, [0x80, 2, 0, 12, 0, 0, 0, 0, 0x80, 4, 0, 4]),
        (r) => deepEqual([r[44], r[52]], [0x40, 0x40]),
      ],
      [
        "65507 bytes of zero-length TLVs, 3 left over at the end",
        new Uint8Array(65507),
        (r) => deepEqual([r[44], r[65500], r[65504]], [0x80, 0x80, 0x40]),
      ],
      [
        "65507 bytes of Location",
        (() => {
          const packet = request(65507, [
            0x80,
            2,
            (65507 - 48) >> 8,
            (65507 - 48) & 0xff,
          ]);
          for (let at = 52; at + 20 <= 65507; at += 20) {
            packet.set([0x80, 7, 0, 16], at);
          }
          return packet;
        })(),
        (r) => deepEqual([r[44], r[52], r[53]], [0x40, 0, 8]),
      ],
    ];
    for (const [name, packet, check] of crafted) {
      const reply = await exchange(conn, to, packet);
      sent++;
      ok(reply !== undefined, `no reply to ${name}`);
      equal(reply.length, packet.length, name);
      check(reply);
    }
    for (let i = 0; i < 300; i++) {
      const packet = crypto.getRandomValues(new Uint8Array(44 + i % 57));
      new DataView(packet.buffer).setUint32(0, i);
      const reply = await exchange(conn, to, packet);
      sent++;
      ok(reply !== undefined, `no reply to random request ${i}`);
      equal(reply.length, packet.length);
      equal(new DataView(reply.buffer).getUint32(24), i);
    }
    // 43 bytes: not a STAMP packet, no reply; the next one is answered.
    await conn.send(new Uint8Array(43), to);
    sent++;
    const after = await exchange(conn, to, new Uint8Array(44));
    sent++;
    equal(after?.length, 44);
  } catch (error) {
    failure = error;
  }
  conn.close();
  const { stdout } = await server.stop();
  if (failure !== undefined) throw failure;
  ok(new RegExp(`received ${sent} datagrams`).test(stdout), stdout);
  ok(/stamp-too-short 1/.test(stdout), stdout);
});
