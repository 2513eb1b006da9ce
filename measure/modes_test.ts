import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { type ProbeEvent, runProbes, sweepPayload } from "./modes.ts";
import { RECEIVE_BUFFER_SIZE } from "../net/payload.ts";
import type { ResolvedAddress } from "../net/address.ts";
import { startEcho } from "../testing/echo.ts";
import {
  at,
  type FaultRule,
  startFaultyEcho,
  startTruncatingEcho,
} from "../testing/fault_relay.ts";

/** Both I/O modes run the same behaviour suites. */
const IO_MODES = ["socket", "batch"] as const;

/**
 * An echo peer of our own that answers only the first source port it hears
 * from, so every other flow of a run gets no reply at all.
 */
function startOnePortEcho() {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  let answered: number | undefined;
  const loop = (async () => {
    try {
      for await (const [data, from] of conn) {
        const { port } = from as Deno.NetAddr;
        answered ??= port;
        if (port === answered) await conn.send(data, from);
      }
    } catch {
      // Closed.
    }
  })();
  return {
    target: {
      hostname: "127.0.0.1",
      port: (conn.addr as Deno.NetAddr).port,
      family: "IPv4",
    } as ResolvedAddress,
    async [Symbol.asyncDispose]() {
      conn.close();
      await loop;
    },
  };
}

for (const io of IO_MODES) {
  Deno.test(`runProbes() gives the echo rate when a flow gets no reply [${io}]`, async () => {
    await using echo = startOnePortEcho();
    const result = await runProbes({
      io,
      target: echo.target,
      flows: 2,
      count: 5,
      intervalMs: 5,
      timeoutMs: 200,
    });
    equal(result.received, 5);
    equal(result.lost, 5);
    ok(result.echoRate.pps > 0, `echo rate ${result.echoRate.pps}`);
    ok(result.sendRate.pps > 0, `send rate ${result.sendRate.pps}`);
  });
}

/** Faults at fixed request numbers, far enough apart not to interact. */
const MIXED_FAULTS: FaultRule[] = [
  { select: at(3, 7), action: { type: "drop" } },
  { select: at(5), action: { type: "duplicate" } },
  { select: at(9), action: { type: "corrupt" } },
  { select: at(11), action: { type: "reorder" } },
  { select: at(14), action: { type: "delay", ms: 150 } },
];

for (const io of IO_MODES) {
  Deno.test(`runProbes() echoes every probe of a ping run [${io}]`, async () => {
    await using echo = startEcho();
    const events: ProbeEvent[] = [];
    const result = await runProbes({
      io,
      target: echo.target,
      count: 20,
      intervalMs: 2,
      onEvent: (event) => events.push(event),
    });
    deepEqual(
      [result.sent, result.received, result.lost, result.duplicates],
      [20, 20, 0, 0],
    );
    equal(result.corrupted + result.reordered + result.ignored, 0);
    equal(result.rttMs.count, 20);
    ok(result.rttMs.min <= result.rttMs.median);
    ok(result.rttMs.median <= result.rttMs.max);
    deepEqual(
      events.map((event) => event.type === "reply" && event.seq).sort((a, b) =>
        Number(a) - Number(b)
      ),
      Array.from({ length: 20 }, (_, i) => i),
    );
    equal(result.pacing, "interval");
    equal(result.flows.length, 1);
  });
}

for (const io of IO_MODES) {
  Deno.test(`runProbes() counts exactly what the relay did in ping mode [${io}]`, async () => {
    await using relay = startFaultyEcho(MIXED_FAULTS);
    const events: ProbeEvent[] = [];
    const result = await runProbes({
      io,
      target: relay.target,
      count: 24,
      intervalMs: 3,
      waitMs: 300,
      onEvent: (event) => events.push(event),
    });
    const { stats } = relay;
    deepEqual(
      [stats.dropped, stats.duplicated, stats.corrupted, stats.reordered],
      [2, 1, 1, 1],
    );
    equal(result.sent, 24);
    equal(result.lost, stats.dropped);
    equal(result.duplicates, stats.duplicated);
    equal(result.corrupted, stats.corrupted);
    equal(result.reordered, stats.reordered + stats.delayed);
    equal(result.received, 24 - stats.dropped - stats.corrupted);
    deepEqual(
      events.filter((event) => event.type === "lost").map((event) =>
        event.type === "lost" && event.seq
      ),
      [3, 7],
    );
    const labels = events.flatMap((event) =>
      event.type === "reply"
        ? [
          event.duplicate && `dup ${event.seq}`,
          event.reordered && `reordered ${event.seq}`,
          event.check !== "intact" && `${event.check} ${event.seq}`,
        ].filter(Boolean)
        : []
    ).sort();
    deepEqual(labels, [
      "corrupted 9",
      "dup 5",
      "reordered 11",
      "reordered 14",
    ]);
  });
}

for (const io of IO_MODES) {
  Deno.test(`runProbes() counts exactly what the relay did in window mode [${io}]`, async () => {
    await using relay = startFaultyEcho(MIXED_FAULTS);
    const result = await runProbes({
      io,
      target: relay.target,
      count: 40,
      window: 4,
      timeoutMs: 100,
      waitMs: 200,
    });
    const { stats } = relay;
    equal(result.pacing, "window");
    equal(result.sent, 40);
    equal(result.lost, stats.dropped);
    equal(result.duplicates, stats.duplicated);
    equal(result.corrupted, stats.corrupted);
    equal(result.reordered, stats.reordered + stats.delayed);
    equal(result.received, 40 - stats.dropped - stats.corrupted);
    ok(Number.isNaN(result.scheduleMs.mean));
  });
}

for (const io of IO_MODES) {
  Deno.test(`runProbes() counts exactly what the relay did over several flows at a rate [${io}]`, async () => {
    await using relay = startFaultyEcho([
      { select: at(2, 30), action: { type: "drop" } },
      { select: at(10), action: { type: "duplicate", copies: 2 } },
      { select: at(20), direction: "reply", action: { type: "corrupt" } },
      { select: at(40), action: { type: "reorder" } },
    ]);
    const result = await runProbes({
      io,
      target: relay.target,
      count: 60,
      intervalMs: 1,
      flows: 3,
      waitMs: 300,
    });
    const { stats } = relay;
    deepEqual(
      [stats.dropped, stats.duplicated, stats.corrupted, stats.reordered],
      [6, 6, 3, 3],
    );
    equal(result.sent, 180);
    equal(new Set(result.flows.map((flow) => flow.local.port)).size, 3);
    for (const flow of result.flows) {
      deepEqual(
        [flow.sent, flow.lost, flow.duplicates, flow.corrupted, flow.reordered],
        [60, 2, 2, 1, 1],
      );
    }
    equal(result.lost, stats.dropped);
    equal(result.duplicates, stats.duplicated);
    equal(result.corrupted, stats.corrupted);
    equal(result.reordered, stats.reordered);
    equal(result.received, 180 - stats.dropped - stats.corrupted);
  });
}

Deno.test("runProbes() keeps its schedule within 1% over 300 probes", async () => {
  await using echo = startEcho();
  // Sleeping a fixed interval after each send drifts on every probe, each
  // timer firing late; sending on the schedule does not. A single stall of a
  // loaded machine near the end can still push one run past 1%, so take the
  // best of three: a drifting sender fails all.
  const drifts: number[] = [];
  for (let run = 0; run < 3; run++) {
    const result = await runProbes({
      target: echo.target,
      count: 300,
      intervalMs: 4,
    });
    equal(result.sent, 300);
    ok(result.scheduleMs.mean >= 0);
    drifts.push(result.scheduleMs.drift);
    if (Math.abs(result.scheduleMs.drift) < 1) break;
  }
  ok(Math.abs(drifts.at(-1)!) < 1, `span drift ${drifts.join("%, ")}%`);
});

Deno.test("runProbes() stops at the duration", async () => {
  await using echo = startEcho();
  // Nothing leaves after the deadline, however late: the last probe has an
  // interval to leave in, long enough for a busy machine's timers.
  const result = await runProbes({
    target: echo.target,
    durationMs: 500,
    intervalMs: 100,
  });
  equal(result.sent, 5); // sends at 0, 100, 200, 300 and 400 ms
  equal(result.received, 5);
});

Deno.test("runProbes() refuses sizes the probe or the family cannot hold", async () => {
  const target: ResolvedAddress = {
    hostname: "127.0.0.1",
    port: 9,
    family: "IPv4",
  };
  await rejects(runProbes({ target, size: 19 }), {
    name: "RangeError",
    message: "Cannot send probes of 19 bytes: a probe needs at least 20",
  });
  await rejects(runProbes({ target, size: 65_508 }), RangeError);
  await rejects(
    runProbes({ target, flows: 2, bind: { hostname: "127.0.0.1", port: 5 } }),
    RangeError,
  );
});

Deno.test("sweepPayload() finds the IPv4 limit through a plain echo", async () => {
  await using echo = startEcho();
  const result = await sweepPayload({ target: echo.target });
  equal(result.maxPayload, 65_507);
  equal(result.failure, undefined);
  deepEqual(result.steps.map((step) => step.size), [20, 65_507]);
});

Deno.test("sweepPayload() finds the IPv6 limit over ::1", async () => {
  await using echo = startEcho("::1");
  const result = await sweepPayload({ target: echo.target });
  equal(result.maxPayload, 65_527);
  equal(result.received, 2);
});

Deno.test("sweepPayload() tells truncation from loss and counts what the relay did", async () => {
  let dropped = 0;
  await using relay = startFaultyEcho([
    // The first two tries of the largest size vanish; the third is cut.
    {
      select: (d) => d.size === 65_507 && dropped++ < 2,
      action: { type: "drop" },
    },
    {
      direction: "reply",
      select: (d) => d.size > 3000,
      action: { type: "truncate", size: 3000 },
    },
  ]);
  const result = await sweepPayload({ target: relay.target, timeoutMs: 300 });
  const { stats } = relay;
  equal(result.maxPayload, 3000);
  deepEqual(result.failure, { size: 3001, reason: "truncated", echoed: 3000 });
  equal(result.lost, stats.dropped);
  equal(stats.dropped, 2);
  equal(result.truncated, stats.truncated);
  equal(result.corrupted, stats.truncated);
  equal(result.received, result.sent - stats.dropped - stats.truncated);
  deepEqual(
    result.steps.map((step) => `${step.size} ${step.outcome}`),
    [
      "20 intact",
      "65507 lost",
      "65507 lost",
      "65507 truncated",
      "3000 intact", // the length the truncated echo came back with
      "3001 truncated",
    ],
  );
});

Deno.test("sweepPayload() calls a size failing after three lost tries", async () => {
  await using relay = startFaultyEcho([
    { select: (d) => d.size > 1000, action: { type: "drop" } },
  ]);
  const result = await sweepPayload({
    target: relay.target,
    timeoutMs: 100,
    waitMs: 0,
    max: 1100,
  });
  equal(result.maxPayload, 1000);
  deepEqual(result.failure, { size: 1001, reason: "lost" });
  equal(result.lost, relay.stats.dropped);
  // Every failing size had exactly three tries.
  const tries = new Map<number, number>();
  for (const step of result.steps) {
    if (step.outcome === "lost") {
      tries.set(step.size, (tries.get(step.size) ?? 0) + 1);
    }
  }
  ok([...tries.values()].every((n) => n === 3));
});

for (const io of IO_MODES) {
  Deno.test(`runProbes() ignores replies from another port or another session [${io}]`, async () => {
    const conn = Deno.listenDatagram({
      hostname: "127.0.0.1",
      port: 0,
      transport: "udp",
    });
    const foreign = Deno.listenDatagram({
      hostname: "127.0.0.1",
      port: 0,
      transport: "udp",
    });
    // Sends a copy of each probe from a foreign port and one with another
    // session id from the right port, then the echo: only the echo may count.
    // Copies go first so that they are read before the run can end.
    const loop = (async () => {
      const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
      while (true) {
        try {
          const [data, from] = await conn.receive(buffer);
          const echo = data.slice();
          await foreign.send(echo, from);
          const stranger = echo.slice();
          stranger[4] = stranger[4]! ^ 0xff;
          await conn.send(stranger, from);
          await conn.send(echo, from);
        } catch {
          return;
        }
      }
    })();
    try {
      const addr = conn.addr as Deno.NetAddr;
      const result = await runProbes({
        io,
        target: { hostname: addr.hostname, port: addr.port, family: "IPv4" },
        count: 10,
        intervalMs: 5,
        // The run ends once every echo is in; a busy machine may hold the
        // peer above, in the test's own thread, for a while.
        waitMs: 5_000,
      });
      deepEqual(
        [result.received, result.duplicates, result.corrupted, result.ignored],
        [10, 0, 0, 20],
      );
    } finally {
      conn.close();
      foreign.close();
      await loop;
    }
  });
}

for (const io of IO_MODES) {
  Deno.test(`runProbes() counts a failed send per probe and goes on [${io}]`, async () => {
    // An IPv6 socket cannot send to an IPv4 address: every send fails.
    const events: ProbeEvent[] = [];
    const result = await runProbes({
      io,
      target: { hostname: "127.0.0.1", port: 9, family: "IPv4" },
      bind: { hostname: "::1", port: 0 },
      count: 3,
      intervalMs: 1,
      waitMs: 50,
      onEvent: (event) => events.push(event),
    });
    deepEqual(
      [result.sent, result.sendErrors, result.received, result.lost],
      [0, 3, 0, 0],
    );
    equal(result.sendError, "network is unreachable");
    equal(result.flows[0]!.sendErrors, 3);
    deepEqual(
      events.map((event) => `${event.type} ${"seq" in event ? event.seq : ""}`),
      ["send_error 0", "send_error 1", "send_error 2"],
    );
  });
}

Deno.test("sweepPayload() reports tries that could not be sent", async () => {
  const result = await sweepPayload({
    target: { hostname: "127.0.0.1", port: 9, family: "IPv4" },
    bind: { hostname: "::1", port: 0 },
    timeoutMs: 50,
    waitMs: 0,
  });
  equal(result.maxPayload, 0);
  deepEqual(result.failure, { size: 20, reason: "unsent" });
  deepEqual(
    result.steps.map((step) => step.outcome),
    ["unsent", "unsent", "unsent"],
  );
  deepEqual([result.sent, result.sendErrors, result.lost], [0, 3, 0]);
});

/**
 * A path that delivers every echo twice, the copy a little after the first:
 * well inside the shortest grace period, even when a busy machine fires
 * the relay's timer late.
 */
const LATE_COPIES: FaultRule[] = [{
  direction: "reply",
  select: () => true,
  action: { type: "duplicate", delayMs: 20 },
}];

for (const io of IO_MODES) {
  Deno.test(`runProbes() counts the late copy of a single probe's echo [${io}]`, async () => {
    await using relay = startFaultyEcho(LATE_COPIES);
    const result = await runProbes({
      io,
      target: relay.target,
      count: 1,
    });
    deepEqual(
      [result.sent, result.received, result.lost, result.duplicates],
      [1, 1, 0, 1],
    );
    // The grace period ends the run well before the 2 s wait.
    ok(result.elapsedMs < 1000, `${result.elapsedMs} ms`);
  });
}

for (const io of IO_MODES) {
  Deno.test(`runProbes() counts every late copy in a window [${io}]`, async () => {
    await using relay = startFaultyEcho(LATE_COPIES);
    const result = await runProbes({
      io,
      target: relay.target,
      count: 20,
      window: 2,
    });
    deepEqual(
      [result.sent, result.received, result.lost, result.duplicates],
      [20, 20, 0, 20],
    );
    equal(result.duplicates, relay.stats.duplicated);
  });
}

Deno.test("runProbes() never waits past --wait for late copies", async () => {
  // The request is held 400 ms, so the grace period for late copies (twice
  // the largest RTT) would end 800 ms after the reply, at 1200 ms; --wait
  // ends the run 600 ms after the send. The copy comes between the two, at
  // 900 ms: counted only by a run that waited past --wait.
  await using relay = startFaultyEcho([
    { select: at(0), action: { type: "delay", ms: 400 } },
    {
      direction: "reply",
      select: () => true,
      action: { type: "duplicate", delayMs: 500 },
    },
  ]);
  const result = await runProbes({
    target: relay.target,
    count: 1,
    timeoutMs: 2000,
    waitMs: 600,
  });
  deepEqual([result.received, result.duplicates], [1, 0]);
  ok(result.elapsedMs < 900, `${result.elapsedMs} ms`);
});

for (const io of IO_MODES) {
  Deno.test(`runProbes() counts echoes cut to 16 bytes as truncated, not ignored [${io}]`, async () => {
    await using peer = startTruncatingEcho(16);
    const ping = await runProbes({
      io,
      target: peer.target,
      count: 3,
      intervalMs: 10,
      waitMs: 200,
    });
    deepEqual(
      [
        ping.sent,
        ping.received,
        ping.lost,
        ping.truncated,
        ping.corrupted,
        ping.ignored,
      ],
      [3, 0, 0, 3, 3, 0],
    );
    // Several in flight: the 12 bytes of magic, session and seq still name
    // the probe.
    const load = await runProbes({
      io,
      target: peer.target,
      count: 40,
      window: 8,
      flows: 2,
      timeoutMs: 100,
      waitMs: 200,
    });
    deepEqual(
      [load.sent, load.lost, load.truncated, load.ignored],
      [80, 0, 80, 0],
    );
  });
}

for (const io of IO_MODES) {
  Deno.test(`runProbes() matches an echo cut below its sequence number to the one probe in flight [${io}]`, async () => {
    await using peer = startTruncatingEcho(10);
    // A window of one: the next probe leaves only once the echo is in, so
    // however slow the peer, one probe is in flight.
    const result = await runProbes({
      io,
      target: peer.target,
      count: 3,
      window: 1,
      waitMs: 200,
    });
    deepEqual(
      [result.sent, result.lost, result.truncated, result.ignored],
      [3, 0, 3, 0],
    );
  });
}

/** A peer on loopback that answers each datagram with `answer(data)`. */
function startPeer(answer: (data: Uint8Array) => Uint8Array) {
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const serving = (async () => {
    try {
      for await (const [data, from] of socket) {
        await socket.send(answer(data), from);
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) throw error;
    }
  })();
  const addr = socket.addr as Deno.NetAddr;
  return {
    target: {
      hostname: addr.hostname,
      port: addr.port,
      family: "IPv4",
    } as ResolvedAddress,
    async [Symbol.asyncDispose]() {
      socket.close();
      await serving;
    },
  };
}

Deno.test("sweepPayload() bisects against a server that trims one byte off long echoes", async () => {
  // Following each truncated echo's length walked down one byte a try:
  // 64,510 probes of up to 64 KiB.
  await using peer = startPeer((d) => d.length > 1000 ? d.subarray(0, -1) : d);
  const result = await sweepPayload({ target: peer.target, timeoutMs: 300 });
  equal(result.maxPayload, 1000);
  deepEqual(result.failure, { size: 1001, reason: "truncated", echoed: 1000 });
  ok(result.sent < 30, `${result.sent} probes sent`);
  deepEqual(
    result.steps.slice(0, 4).map((step) => `${step.size} ${step.outcome}`),
    [
      "20 intact",
      "65507 truncated",
      "65506 truncated", // the echoed length, tried once
      "32763 truncated", // then bisection
    ],
  );
});

Deno.test("sweepPayload() stops at the header when even 20 bytes are cut", async () => {
  // Halving every echo once led the search to 10, 5, 2 and 1 bytes: probes
  // too short to carry a sequence number.
  await using peer = startPeer((d) => d.subarray(0, d.length >> 1));
  const result = await sweepPayload({ target: peer.target, timeoutMs: 300 });
  equal(result.maxPayload, 0);
  deepEqual(result.failure, { size: 20, reason: "truncated", echoed: 10 });
  deepEqual(
    result.steps.map((step) => `${step.size} ${step.outcome}`),
    ["20 truncated"],
  );
});

Deno.test("sweepPayload() finds the truncation length through one flow", async () => {
  await using relay = startFaultyEcho([
    // The first try of the limit comes back cut and late, while the flow
    // awaits a 1500-byte try whose own request was dropped: an echo of the
    // right length for the wrong probe, which must not answer it.
    { select: at(1), action: { type: "delay", ms: 450 } },
    { select: at(3), action: { type: "drop" } },
    {
      direction: "reply",
      select: (d) => d.size > 1500,
      action: { type: "truncate", size: 1500 },
    },
  ]);
  const result = await sweepPayload({
    target: relay.target,
    timeoutMs: 300,
    waitMs: 100,
  });
  deepEqual(
    result.steps.map((step) => `${step.size} ${step.outcome}`),
    [
      "20 intact",
      "65507 lost",
      "65507 truncated",
      "1500 lost",
      "1500 intact",
      "1501 truncated",
    ],
  );
  equal(result.maxPayload, 1500);
  deepEqual(result.failure, { size: 1501, reason: "truncated", echoed: 1500 });
  const { stats } = relay;
  deepEqual([stats.delayed, stats.dropped, stats.truncated], [1, 1, 3]);
  // The late echo still answers its own probe: only the dropped one is lost.
  deepEqual(
    [result.sent, result.received, result.lost, result.duplicates],
    [6, 2, 1, 0],
  );
  equal(result.truncated, stats.truncated);
  equal(result.corrupted, stats.truncated);
  equal(result.ignored, 0);
  equal(result.rttMs.count, 2);
});

for (const io of IO_MODES) {
  Deno.test(`runProbes() counts a duplicated, late reply once through one flow [${io}]`, async () => {
    await using relay = startFaultyEcho([
      // Probe 2 is held past the timeout, so its reply is the relay's fifth
      // (after those of probes 3 and 4), and that reply comes twice.
      { select: at(2), action: { type: "delay", ms: 250 } },
      { direction: "reply", select: at(4), action: { type: "duplicate" } },
    ]);
    const events: ProbeEvent[] = [];
    const result = await runProbes({
      io,
      target: relay.target,
      count: 5,
      intervalMs: 20,
      timeoutMs: 100,
      waitMs: 400,
      onEvent: (event) => events.push(event),
    });
    deepEqual([relay.stats.delayed, relay.stats.duplicated], [1, 1]);
    deepEqual(
      [
        result.sent,
        result.received,
        result.lost,
        result.duplicates,
        result.reordered,
        result.late,
        result.corrupted,
      ],
      [5, 5, 0, 1, 1, 1, 0],
    );
    equal(result.rttMs.count, 5);
    equal(result.rtts.length, 5);
    ok(result.rttMs.max >= 250, `slowest ${result.rttMs.max} ms`);
    deepEqual(
      events.map((event) =>
        event.type === "reply" && event.seq === 2
          ? `2 duplicate=${event.duplicate} reordered=${event.reordered} late=${event.late}`
          : event.type
      ),
      [
        "reply",
        "reply",
        "reply",
        "reply",
        "2 duplicate=false reordered=true late=true",
        "2 duplicate=true reordered=false late=true",
      ],
    );
  });
}
