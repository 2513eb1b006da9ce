/**
 * The summary's pacing quality: the share of sends on time (within ±5% of
 * the interval of their schedule) against a truth we control, and the
 * advice to use the kernel engine when sockets paced loosely and the
 * engine was available but not used.
 *
 * The truth is each probe's own header: it carries the send time the
 * client stamped (on the socket path the very reading its schedule error
 * is taken from; on the engine the CLOCK_REALTIME twin of it), and probe n
 * is due at start + n x interval. An echo peer here reads the headers.
 *
 * @module
 */

import { equal, match, ok } from "node:assert/strict";
import { runScript } from "../testing/cli.ts";
import { startEcho } from "../testing/echo.ts";
import { formatRunSummary, LOW_ON_TIME_PERCENT } from "./report.ts";
import { summarize } from "./stats.ts";
import type { RunResult } from "./types.ts";

const IO_MODES = ["socket", "batch"] as const;
const ENGINE_PERMISSIONS = ["--allow-net", "--allow-ffi", "--allow-read"];
const ADVICE = /sockets pace loosely; the kernel engine keeps to the schedule/;

/** An echo peer that keeps each probe's sequence number and send stamp. */
function startStampReader() {
  const conn = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  const stamps = new Map<number, number>();
  const loop = (async () => {
    const buffer = new Uint8Array(2048);
    while (true) {
      try {
        const [data, from] = await conn.receive(buffer);
        const view = new DataView(data.buffer, data.byteOffset);
        stamps.set(view.getUint32(8), view.getFloat64(12));
        await conn.send(data, from);
      } catch {
        return; // closed
      }
    }
  })();
  return {
    port: (conn.addr as Deno.NetAddr).port,
    stamps,
    async [Symbol.asyncDispose]() {
      conn.close();
      await loop;
    },
  };
}

function client(port: number, args: string[], permissions: string[]) {
  return runScript(
    "client.ts",
    ["-H", "127.0.0.1", "-p", `${port}`, ...args],
    { permissions },
  );
}

for (const io of IO_MODES) {
  Deno.test(`client.ts's on-time share matches the probes' own send stamps [${io}]`, async () => {
    await using peer = startStampReader();
    const count = 300;
    const intervalMs = 1;
    const { stdout } = await client(peer.port, [
      "-c",
      `${count}`,
      "-i",
      `${intervalMs}`,
      "--io",
      io,
      "--json",
    ], io === "batch" ? ENGINE_PERMISSIONS : ["--allow-net"]);
    const document = JSON.parse(stdout);
    equal(document.io.backend, io);
    equal(peer.stamps.size, count);
    const schedule = document.schedule_error_ms;
    // The stamps less the schedule's steps are the errors plus one unknown
    // start: the reported mean places it.
    const offsets = [...peer.stamps].map(([seq, stamp]) =>
      stamp - seq * intervalMs
    );
    const start = summarize(offsets).mean - schedule.mean;
    const errors = offsets.map((offset) => offset - start);
    const onTime = errors.filter((error) =>
      Math.abs(error) <= 0.05 * intervalMs
    ).length / count * 100;
    // On sockets the stamp is the very reading the client judged, to the
    // float's rounding; on the engine it is a CLOCK_REALTIME reading taken
    // next to the monotonic one, a preemption between them apart.
    const [maxMs, probes] = io === "socket" ? [0.005, 1] : [0.05, 10];
    // The start so placed is the client's: its largest error agrees.
    const max = Math.max(...errors);
    ok(
      Math.abs(max - schedule.max) < maxMs,
      `${max} ${JSON.stringify(schedule)}`,
    );
    // Probes at the edge may round the other way.
    ok(
      Math.abs(onTime - schedule.on_time_percent) <=
        probes * 100 / count + 1e-9,
      `${onTime} vs ${schedule.on_time_percent}`,
    );
  });
}

Deno.test("formatRunSummary() passes on the pacing advice only when few sends were on time", () => {
  const result = {
    target: { hostname: "127.0.0.1", port: 9, family: "IPv4" },
    size: 64,
    pacing: "interval",
    sent: 10,
    received: 10,
    lost: 0,
    duplicates: 0,
    reordered: 0,
    corrupted: 0,
    sendErrors: 0,
    late: 0,
    truncated: 0,
    ignored: 0,
    rttMs: summarize([1]),
    jitterMs: { ipdv: NaN, rfc3550: NaN },
    scheduleMs: {
      mean: 0,
      max: 0,
      drift: 0,
      onTimePercent: LOW_ON_TIME_PERCENT - 0.1,
    },
    sendRate: { pps: NaN, bps: NaN },
    echoRate: { pps: NaN, bps: NaN },
    elapsedMs: 1,
    flows: [],
    rtts: [],
  } satisfies RunResult;
  const pacingAdvice = "use the engine";
  const low = formatRunSummary(result, "ping", { pacingAdvice });
  ok(
    low.includes(
      "on time: 89.9% of sends within ±5% of the interval of their schedule",
    ),
  );
  ok(low.includes(pacingAdvice));
  result.scheduleMs.onTimePercent = LOW_ON_TIME_PERCENT;
  const high = formatRunSummary(result, "ping", { pacingAdvice });
  ok(!high.includes(pacingAdvice));
  ok(
    high.includes(
      "on time: 90.0% of sends within ±5% of the interval of their schedule",
    ),
  );
});

Deno.test("client.ts suggests the kernel engine when sockets paced loosely and it was available", async () => {
  await using echo = startEcho();
  const args = ["-c", "200", "-i", "1"];
  const onTime = (stdout: string) =>
    Number(/^on time: ([\d.<>]+)% of sends/m.exec(stdout)?.[1]);
  // Chosen: sockets cannot wake within 50 µs of a 1 ms schedule.
  const chosen = await client(
    echo.port,
    [...args, "--io", "socket"],
    ENGINE_PERMISSIONS,
  );
  ok(onTime(chosen.stdout) < LOW_ON_TIME_PERCENT, chosen.stdout);
  match(chosen.stdout, ADVICE);
  match(chosen.stdout, /: leave out --io socket$/m);
  // Not granted: the advice says what grants it.
  const refused = await client(echo.port, args, ["--allow-net"]);
  match(refused.stdout, /^io: socket \(--allow-ffi not granted\)$/m);
  ok(onTime(refused.stdout) < LOW_ON_TIME_PERCENT, refused.stdout);
  match(refused.stdout, ADVICE);
  match(
    refused.stdout,
    /it needs --allow-ffi, --allow-read of .*kernel\/ and --allow-net for every host \(-A grants them\); here --allow-ffi not granted$/m,
  );
  // On the engine, never.
  const engine = await client(
    echo.port,
    [...args, "--io", "batch"],
    ENGINE_PERMISSIONS,
  );
  match(engine.stdout, /^on time: /m);
  ok(!ADVICE.test(engine.stdout), engine.stdout);
});
