/**
 * Probe 0 is not timed cold, on both backends: the start-up work (sockets
 * opened, the probe code run on throwaway state, the engine's Worker
 * started) is done when `onIo` is called, and probe 0's send time (T1, in its
 * header) is taken only after `onIo` has returned. An `onIo` that holds
 * the thread shows it: a T1 taken meanwhile would be earlier than its end.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { runFlows } from "./run.ts";
import { decodeProbe, encodeProbeInto, verifyProbe } from "./probe.ts";
import type { ProbeFormat } from "./_common.ts";

/** How long `onIo` holds its thread, in ms. */
const HOLD_MS = 500;
/**
 * How far the test's clock (time origin plus monotonic time) and the
 * engine's CLOCK_REALTIME may drift apart over a test, in ms: NTP slews
 * at most 0.5 ms a second.
 */
const CLOCK_SLACK_MS = 100;

/** A UDP echo in this process that keeps each probe's header. */
function headerEcho() {
  const conn = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  const headers: { seq: number; sentAt: number }[] = [];
  let datagrams = 0;
  const done = (async () => {
    try {
      for await (const [data, from] of conn) {
        datagrams++;
        const header = decodeProbe(data);
        if (header !== undefined) headers.push(header);
        await conn.send(data, from);
      }
    } catch {
      // Closed.
    }
  })();
  return {
    port: (conn.addr as Deno.NetAddr).port,
    headers,
    /** Every datagram it got, a probe or not. */
    get datagrams() {
      return datagrams;
    },
    async close() {
      conn.close();
      await done;
    },
  };
}

for (const io of ["socket", "batch"] as const) {
  Deno.test(`runFlows({io: "${io}"}) takes probe 0's send time only after the start-up work and onIo are over`, async () => {
    const echo = headerEcho();
    try {
      let readyAt = NaN;
      let ran: string | undefined;
      const result = await runFlows({
        target: { hostname: "127.0.0.1", port: echo.port, family: "IPv4" },
        count: 3,
        intervalMs: 5,
        timeoutMs: 5000,
        io,
        onIo: (backend) => {
          ran = backend;
          const until = performance.now() + HOLD_MS;
          while (performance.now() < until) {
            // Holds the thread, as a slow listener would.
          }
          readyAt = performance.timeOrigin + performance.now();
        },
      });
      equal(ran, io);
      equal(result.received, 3);
      // The warm-up sent nothing to the target: it saw the probes alone.
      deepEqual(echo.headers.map((header) => header.seq), [0, 1, 2]);
      equal(echo.datagrams, 3);
      // What each socket sent itself right before probe 0 is not counted.
      equal(result.ignored, 0);
      const first = echo.headers[0]!.sentAt;
      ok(
        first >= readyAt - CLOCK_SLACK_MS,
        `probe 0 was timed ${readyAt - first} ms before onIo returned`,
      );
    } finally {
      await echo.close();
    }
  });
}

Deno.test("runFlows() runs a probe format's warm-up before onIo, and encodes probe 0 only after", async () => {
  const echo = headerEcho();
  try {
    const trace: string[] = [];
    const format = (): ProbeFormat => ({
      encode: (target, header) => {
        trace.push(`encode ${header.seq}`);
        encodeProbeInto(target, header);
      },
      decode: decodeProbe,
      verify: verifyProbe,
      warmUp: (size) => trace.push(`warm-up ${size}`),
    });
    const result = await runFlows({
      target: { hostname: "127.0.0.1", port: echo.port, family: "IPv4" },
      count: 2,
      size: 80,
      intervalMs: 5,
      timeoutMs: 5000,
      flows: 2,
      format,
      onIo: () => trace.push("onIo"),
    });
    equal(result.received, 4);
    deepEqual(trace.slice(0, 3), ["warm-up 80", "warm-up 80", "onIo"]);
    deepEqual(trace.slice(3).sort(), [
      "encode 0",
      "encode 0",
      "encode 1",
      "encode 1",
    ]);
  } finally {
    await echo.close();
  }
});

/**
 * How long after `onIo` probe 0's reply may be reported at most, in ms:
 * priming, its rest and a loopback round trip take a fraction of it; an
 * announcement that waits a whole interval of the Worker's (50 ms) after
 * that rest takes longer.
 */
const FIRST_REPLY_MS = 45;

Deno.test('runFlows({io: "batch"}) reports probe 0\'s reply as soon as it is in, not an announcement interval later', async () => {
  const echo = headerEcho();
  try {
    let ioAt = NaN;
    let firstReplyAt = NaN;
    const result = await runFlows({
      target: { hostname: "127.0.0.1", port: echo.port, family: "IPv4" },
      count: 2,
      // Probe 1 is due long after: only probe 0's reply can be announced.
      intervalMs: 1000,
      timeoutMs: 5000,
      io: "batch",
      onIo: () => {
        ioAt = performance.now();
      },
      onEvent: (event) => {
        if (event.type === "reply" && event.seq === 0) {
          firstReplyAt = performance.now();
        }
      },
    });
    equal(result.received, 2);
    ok(
      firstReplyAt - ioAt < FIRST_REPLY_MS,
      `probe 0's reply came ${firstReplyAt - ioAt} ms after onIo`,
    );
  } finally {
    await echo.close();
  }
});
