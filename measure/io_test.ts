/**
 * `--io` of the measurement modes: which I/O runs and why, the kernel
 * engine's timestamps and pacing, and the fallback to sockets.
 */
import { equal, match, ok, rejects } from "node:assert/strict";
import { runScript, startServer, successStatus } from "../testing/cli.ts";
import { startEcho } from "../testing/echo.ts";
import { runProbes } from "./modes.ts";

const ENGINE_PERMISSIONS = ["--allow-net", "--allow-ffi", "--allow-read"];

/** An echo server in a process of its own, on the batch engine. */
async function startServerProcess() {
  const server = await startServer(
    ["-H", "127.0.0.1", "-p", "0"],
    "server.ts",
    ENGINE_PERMISSIONS,
  );
  return {
    port: server.port,
    async [Symbol.asyncDispose]() {
      await server.stop("SIGTERM");
    },
  };
}

Deno.test("runProbes() on the engine matches replies by kernel timestamps, RTT > 0", async () => {
  await using echo = startEcho();
  const ios: string[] = [];
  const result = await runProbes({
    target: echo.target,
    count: 20,
    intervalMs: 2,
    io: "batch",
    onIo: (io) => ios.push(io),
  });
  equal(result.io, "batch");
  equal(ios.join(), "batch");
  equal(result.received, 20);
  equal(result.clockSteps, 0);
  ok(result.rtts.every((rtt) => rtt > 0 && rtt < 1000), `${result.rtts}`);
  ok(result.scheduleMs.largestBurst! >= 1);
});

Deno.test("runProbes() on the engine refuses probes below the header size", async () => {
  await using echo = startEcho();
  await rejects(
    runProbes({ target: echo.target, count: 1, size: 0, io: "batch" }),
    RangeError,
  );
  await rejects(
    runProbes({ target: echo.target, count: 1, size: 19, io: "batch" }),
    /a probe needs at least 20/,
  );
});

Deno.test("runProbes() on the engine keeps the result so far on stop", async () => {
  await using echo = startEcho();
  const stop = new AbortController();
  let replies = 0;
  const result = await runProbes({
    target: echo.target,
    intervalMs: 10,
    stop: stop.signal,
    io: "batch",
    onEvent: (event) => {
      if (event.type === "reply" && ++replies === 10) stop.abort();
    },
  });
  ok(result.sent >= 10, `sent ${result.sent}`);
  equal(result.received, result.sent);
  equal(result.lost, 0);
});

Deno.test("client.ts says which I/O runs, in text and JSON", async () => {
  await using server = startEcho();
  const base = [
    "-H",
    "127.0.0.1",
    "-p",
    `${server.port}`,
    "-c",
    "3",
    "-i",
    "5",
  ];
  const engine = await runScript("client.ts", base, {
    permissions: ENGINE_PERMISSIONS,
  });
  equal(engine.code, successStatus(engine.stdout));
  match(
    engine.stdout,
    /^io: batch \(sendmmsg\/recvmmsg with kernel timestamps\)$/m,
  );
  match(engine.stdout, /time=\d+\.\d{4} ms/);
  const chosen = await runScript("client.ts", [...base, "--io", "socket"], {
    permissions: ENGINE_PERMISSIONS,
  });
  match(chosen.stdout, /^io: socket \(--io socket\)$/m);
  const json = await runScript("client.ts", [...base, "--json"], {
    permissions: ENGINE_PERMISSIONS,
  });
  const document = JSON.parse(json.stdout);
  equal(document.io.backend, "batch");
  equal(document.clock_steps, 0);
  equal(typeof document.schedule_error_ms.largest_burst, "number");
});

Deno.test("client.ts falls back to sockets when --allow-ffi is not granted", async () => {
  await using server = startEcho();
  const base = [
    "-H",
    "127.0.0.1",
    "-p",
    `${server.port}`,
    "-c",
    "2",
    "-i",
    "5",
  ];
  const plain = await runScript("client.ts", [...base, "--json"]);
  const document = JSON.parse(plain.stdout);
  equal(plain.code, successStatus(plain.stdout));
  equal(document.io.backend, "socket");
  equal(document.io.reason, "--allow-ffi not granted");
  equal(document.received, 2);
  const refused = await runScript("client.ts", [...base, "--io", "batch"]);
  equal(refused.code, 2);
  match(refused.stderr, /--io batch: --allow-ffi not granted/);
  const bad = await runScript("client.ts", [...base, "--io", "fast"]);
  equal(bad.code, 2);
  const idle = await runScript("client.ts", ["--io", "batch", "hello"]);
  equal(idle.code, 2);
});

Deno.test("client.ts -c 200 -i 1 on the engine sends on time where the socket path is late", async () => {
  await using server = await startServerProcess();
  const ping = (io: string) =>
    runScript("client.ts", [
      "-H",
      "127.0.0.1",
      "-p",
      `${server.port}`,
      "-c",
      "200",
      "-i",
      "1",
      "--io",
      io,
      "--json",
    ], { permissions: ENGINE_PERMISSIONS });
  // Side by side, so that both meet the same load: a busy machine delays
  // the engine's wake-ups too, and then its median, as far as it likes.
  const [engine, socket] = (await Promise.all([ping("batch"), ping("socket")]))
    .map(({ code, stdout }) => {
      equal(code, successStatus(stdout), stdout);
      return JSON.parse(stdout);
    });
  equal(engine.io.backend, "batch");
  equal(socket.io.backend, "socket");
  // A JS timer wakes 1.4 ms late or more, so the socket path sends most
  // probes an interval late or more, in bursts of 2 or 3. The engine spins
  // to each deadline: only preemptions (which then make a burst to catch
  // up) delay its probes, and the socket path's as much.
  const { p50, largest_burst: burst } = engine.schedule_error_ms;
  const late = socket.schedule_error_ms.p50;
  ok(p50 >= 0 && p50 < late, `median send error ${p50} ms, sockets ${late}`);
  ok(burst >= 1 && burst < 200, `largest burst ${burst}`);
});

Deno.test("runOnEngine() drops and counts events a slow main thread cannot take, counts stay exact", async () => {
  await using server = await startServerProcess();
  const { runOnEngine } = await import("../kernel/probes.ts");
  const RING = 256;
  const COUNT = 4000;
  const replies: number[] = [];
  let others = 0;
  const result = await runOnEngine({
    target: { hostname: "127.0.0.1", port: server.port, family: "IPv4" },
    flows: 1,
    session: 7,
    size: 64,
    timeoutMs: 1000,
    waitMs: 2000,
    count: COUNT,
    durationMs: Infinity,
    intervalMs: 0,
    window: 8,
    eventRecords: RING,
    onEvent: (event) => {
      // A main thread far slower than the Worker: 1 ms per event.
      const until = performance.now() + 1;
      while (performance.now() < until) { /* blocking on purpose */ }
      if (event.type === "reply") replies.push(event.seq);
      else others++;
    },
  });
  equal(result.sent, COUNT);
  equal(result.received + result.lost, COUNT);
  equal(others, 0);
  ok((result.eventsDropped ?? 0) > 0, "no event was dropped");
  // Every reply event either reached onEvent or was counted as dropped.
  equal(replies.length + result.eventsDropped!, result.received);
  // What got through is intact and in order: the ring never overwrote
  // a record the main thread had not read.
  ok(replies.every((seq, i) => i === 0 || seq > replies[i - 1]!));
  ok(replies.every((seq) => Number.isInteger(seq) && seq < COUNT));
});

Deno.test("runProbes() on the engine reads replies at an interval shorter than its spin", async () => {
  const server = await startServer(
    ["-H", "127.0.0.1", "-p", "0", "-q"],
    "server.ts",
    ENGINE_PERMISSIONS,
  );
  let replies = 0;
  let stdout = "";
  const result = await runProbes({
    target: { hostname: "127.0.0.1", port: server.port, family: "IPv4" },
    count: 1000,
    intervalMs: 0.1,
    io: "batch",
    onEvent: (event) => {
      if (event.type === "reply") replies++;
    },
  }).finally(async () => {
    ({ stdout } = await server.stop("SIGTERM"));
  });
  equal(result.sent, 1000);
  // A busy machine may keep the server from reading them all; what it
  // echoed came back. Before the fix the Worker spun from send to send and
  // read only what its socket's buffer held once sending was over.
  const echoed = Number(
    /, echoed ([\d,]+) datagrams/.exec(stdout)?.[1]?.replaceAll(",", ""),
  );
  ok(echoed > 0, stdout);
  ok(
    result.received >= 0.9 * echoed,
    `received ${result.received} of ${echoed}`,
  );
  equal(result.eventsDropped, 0);
  equal(replies, result.received + result.duplicates);
});
