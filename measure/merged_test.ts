/**
 * Replies that merge probes: a server that returns several datagrams as one
 * (a stream relay) loses nothing, and the client counts each probe inside
 * as received and the reply as `merged`, on both I/O backends. The truth is
 * a merging echo we wrote (`testing/merging_echo.ts`); socat's `PIPE` is the
 * third-party check, whose merging is left to chance.
 *
 * @module
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
import { runScript } from "../testing/cli.ts";
import { startMergingEcho } from "../testing/merging_echo.ts";
import { ProbeBook } from "./_book.ts";
import { encodeProbe } from "./probe.ts";
import type { ReplyEvent } from "./types.ts";

const IO_MODES = ["socket", "batch"] as const;
const ENGINE_PERMISSIONS = ["--allow-net", "--allow-ffi", "--allow-read"];

function client(port: number, io: string, args: string[]) {
  return runScript("client.ts", [
    "-H",
    "127.0.0.1",
    "-p",
    `${port}`,
    "--io",
    io,
    ...args,
  ], { permissions: io === "batch" ? ENGINE_PERMISSIONS : ["--allow-net"] });
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all;
}

/**
 * A book that has sent probes 0 to 5 (32 bytes each, probe n at time n),
 * the events it reports, the probes' bytes, and an arrival at time 10 from
 * the target to hand it replies with.
 */
function bookWithSixProbes() {
  const events: ReplyEvent[] = [];
  const book = new ProbeBook(0, 7, {
    target: { hostname: "127.0.0.1", port: 9, family: "IPv4" },
    timeoutMs: 1000,
    onReply: (event) => events.push(event),
  });
  const probes = [0, 1, 2, 3, 4, 5].map((n) => {
    const seq = book.beginSend(32, n, 1_700_000_000_000 + n, n);
    return encodeProbe(book.header(seq), 32);
  });
  const arrival = { fromTarget: true, now: 10 };
  return { book, events, probes, arrival };
}

Deno.test("ProbeBook splits a reply of whole intact probes, and only that", () => {
  const { book, events, probes, arrival } = bookWithSixProbes();
  book.handle(concat(probes[0]!, probes[1]!, probes[2]!), arrival);
  equal(book.merged, 1);
  deepEqual(events.map((event) => [event.seq, event.check, event.merged]), [
    [0, "intact", true],
    [1, "intact", true],
    [2, "intact", true],
  ]);
  // Each round trip ends at the merged reply's arrival.
  deepEqual(events.map((event) => event.rttMs), [10, 9, 8]);
  events.length = 0;
  // A changed byte, a cut probe or bytes after the last probe: corrupted.
  const changed = concat(probes[3]!, probes[4]!);
  changed[40] = changed[40]! ^ 1;
  book.handle(changed, arrival);
  book.handle(concat(probes[3]!, probes[4]!.subarray(0, 31)), arrival);
  book.handle(concat(probes[5]!, new Uint8Array(3)), arrival);
  equal(book.merged, 1);
  // The cut probe 4 came back too, damaged: it is not lost. (The byte
  // changed is probe 4's sequence number: that part names no probe.)
  deepEqual(events.map((event) => [event.seq, event.check, event.merged]), [
    [3, "corrupted", undefined],
    [3, "corrupted", undefined],
    [4, "truncated", undefined],
    [5, "corrupted", undefined],
  ]);
  const counts = book.counts();
  deepEqual([counts.received, counts.lost, counts.corrupted], [3, 0, 4]);
});

for (const io of IO_MODES) {
  Deno.test(`client.ts counts probes merged two to a reply as received, none lost [${io}]`, async () => {
    await using peer = startMergingEcho(2);
    const port = peer.target.port;
    for (const mode of [["-c", "40", "-i", "5"], ["-w", "4", "-c", "40"]]) {
      const { code, stdout, stderr } = await client(port, io, [
        ...mode,
        "--json",
      ]);
      equal(stderr, "");
      const document = JSON.parse(stdout);
      equal(document.io.backend, io);
      deepEqual(
        [
          document.sent,
          document.received,
          document.lost,
          document.duplicates,
          document.reordered,
          document.corrupted,
          document.merged,
          document.loss_percent,
        ],
        [40, 40, 0, 0, 0, 0, 20, 0],
        mode.join(" "),
      );
      equal(code, 0);
    }
    equal(peer.replies, 40);
    // Each event of a merged reply says so; the later probe of a pair
    // waited less for the same arrival.
    const events = await client(port, io, ["-c", "10", "-i", "5", "--ndjson"]);
    const replies = events.stdout.trim().split("\n").map((line) =>
      JSON.parse(line)
    ).filter((event) => event.event === "reply");
    deepEqual(replies.map((event) => [event.seq, event.merged]), [
      [0, true],
      [1, true],
      [2, true],
      [3, true],
      [4, true],
      [5, true],
      [6, true],
      [7, true],
      [8, true],
      [9, true],
    ]);
    for (let i = 0; i < 10; i += 2) {
      // Sent later, back together: shorter, or equal when a stall sent
      // both in one batch.
      ok(replies[i].rtt_ms >= replies[i + 1].rtt_ms, events.stdout);
    }
    const text = await client(port, io, ["-c", "4", "-i", "5", "-q"]);
    match(
      text.stdout,
      /^4 sent, 4 received, 0 lost, 0 duplicates, 0 reordered, 0 corrupted, 0\.0% without intact reply\n2 replies carried several whole probes each, all counted as received: the server merges datagrams \(a stream relay\)$/m,
    );
    equal(text.code, 0);
  });
}

const SOCAT = (() => {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/socat`).isFile) return `${dir}/socat`;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
})();

Deno.test({
  name: "client.ts counts socat PIPE's merged replies, none of them corrupted" +
    (SOCAT ? "" : " (skipped: socat is not installed)"),
  ignore: SOCAT === undefined,
  async fn() {
    for (const io of IO_MODES) {
      // Find a free port, then let socat bind it. Without `fork` socat
      // serves the first client only, and leaves no child behind.
      const free = Deno.listenDatagram({
        hostname: "127.0.0.1",
        port: 0,
        transport: "udp",
      });
      const port = (free.addr as Deno.NetAddr).port;
      free.close();
      const socat = new Deno.Command(SOCAT!, {
        args: ["-d", "-d", `UDP-LISTEN:${port},bind=127.0.0.1`, "PIPE"],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const log = socat.stderr.pipeThrough(new TextDecoderStream())
        .getReader();
      try {
        let text = "";
        while (!text.includes("listening on")) {
          const { value, done } = await log.read();
          if (done) throw new Error(`socat ended: ${text}`);
          text += value;
        }
        // 64-byte probes fill socat's 8192-byte reads exactly: however the
        // pipe groups them, each reply is whole probes.
        const { stdout } = await client(port, io, [
          "-c",
          "500",
          "-i",
          "0.2",
          "--json",
        ]);
        const document = JSON.parse(stdout);
        equal(document.corrupted, 0, io);
        equal(document.received + document.lost, document.sent, io);
        ok(Number.isInteger(document.merged), io);
      } finally {
        socat.kill("SIGTERM");
        await socat.status;
        await log.cancel();
      }
    }
  },
});

Deno.test("ProbeBook counts each probe of a damaged merged reply as damaged, none lost", () => {
  const { book, events, probes, arrival } = bookWithSixProbes();
  // Three whole probes and bytes after them, as a relay that appends.
  book.handle(
    concat(probes[0]!, probes[1]!, probes[2]!, new Uint8Array(3)),
    arrival,
  );
  // A byte of the second probe's fill changed; the second probe cut.
  const changed = concat(probes[3]!, probes[4]!);
  changed[52] = changed[52]! ^ 1;
  book.handle(changed, arrival);
  book.handle(concat(probes[5]!, probes[4]!.subarray(0, 20)), arrival);
  equal(book.merged, 0);
  deepEqual(events.map((event) => [event.seq, event.check, event.bytes]), [
    [0, "corrupted", 32],
    [1, "corrupted", 32],
    [2, "corrupted", 35],
    [3, "corrupted", 32],
    [4, "corrupted", 32],
    [5, "corrupted", 32],
    [4, "truncated", 20],
  ]);
  const counts = book.counts();
  deepEqual([counts.sent, counts.received, counts.lost], [6, 0, 0]);
});

for (const io of IO_MODES) {
  Deno.test(`client.ts counts probes of merged replies with bytes appended as corrupted, none lost [${io}]`, async () => {
    await using peer = startMergingEcho(3, {
      tail: new TextEncoder().encode("xyz"),
    });
    const { code, stdout, stderr } = await client(peer.target.port, io, [
      "-c",
      "30",
      "-i",
      "5",
      "--json",
    ]);
    equal(stderr, "");
    const document = JSON.parse(stdout);
    equal(document.io.backend, io);
    deepEqual(
      [document.sent, document.received, document.lost, document.merged],
      [30, 0, 0, 0],
    );
    ok(document.corrupted >= 30, stdout);
    equal(peer.replies, 10);
    equal(code, 1);
  });
}

for (const io of IO_MODES) {
  Deno.test(`client.ts --stamp counts STAMP requests merged by a plain echo relay as received and merged [${io}]`, async () => {
    await using peer = startMergingEcho(2);
    const { code, stdout } = await client(peer.target.port, io, [
      "--stamp",
      "-c",
      "20",
      "-i",
      "5",
      "--json",
    ]);
    const document = JSON.parse(stdout);
    equal(document.io.backend, io);
    deepEqual(
      [
        document.sent,
        document.received,
        document.lost,
        document.corrupted,
        document.merged,
        document.stamp.plain_echo,
      ],
      [20, 20, 0, 0, 10, true],
    );
    equal(peer.replies, 10);
    equal(code, 0);
  });
}
