/**
 * The soak's echo client, in a Worker of its own so that the soak's other
 * work (scrapes, `/proc` reads, abuse rounds) cannot delay its sends or
 * the timing of its echoes. It sends `rate` datagrams a second to a port
 * on 127.0.0.1 in ticks of 10 ms, counts every echo, and times each wait
 * between echoes together with its own longest tick in that wait: a wait
 * during which the client itself did not run says nothing of the server.
 *
 * Told `{ port, rate, limitMs }`, it posts an {@linkcode EchoReport} every
 * 100 ms; told `"stop"`, it stops sending, waits up to 1 s for the last
 * echoes and posts a final report with `done: true`.
 *
 * @module
 */

/** A wait over 1 s between two echoes, and the client's own longest tick in it. */
export interface LongWait {
  /** The wait, ms. */
  gapMs: number;
  /** The longest interval between the client's ticks during the wait, ms. */
  stallMs: number;
}

/** What the Worker posts. */
export interface EchoReport {
  /** Datagrams sent, echoes received, failed sends, so far. */
  sent: number;
  received: number;
  sendErrors: number;
  /** The longest wait since the last report, the current one included. */
  sliceMaxGapMs: number;
  /** Waits over 1 s since the last report. */
  longWaits: LongWait[];
  /** The client's longest tick so far. */
  maxStallMs: number;
  /** Set on the last report, after "stop". */
  done?: boolean;
}

const TICK_MS = 10;
const REPORT_MS = 100;
const LONG_WAIT_MS = 1000;

interface Start {
  port: number;
  rate: number;
  limitMs: number;
}

const worker = self as unknown as {
  postMessage(message: EchoReport): void;
  onmessage: ((event: MessageEvent<Start | "stop">) => void) | null;
  close(): void;
};

function run({ port, rate, limitMs }: Start): () => Promise<void> {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const target: Deno.NetAddr = {
    transport: "udp",
    hostname: "127.0.0.1",
    port,
  };
  const start = performance.now();
  const end = start + limitMs;
  let sent = 0, received = 0, sendErrors = 0, sending = true;
  let lastArrival = start, lastTick = start;
  let sliceGap = 0, stallInWait = 0, maxStall = 0;
  let longWaits: LongWait[] = [];
  const endWait = (now: number) => {
    const gap = now - lastArrival;
    sliceGap = Math.max(sliceGap, gap);
    if (gap > LONG_WAIT_MS) {
      // A tick not yet run after a freeze is a stall too.
      const stallMs = Math.max(stallInWait, now - lastTick);
      longWaits.push({ gapMs: gap, stallMs });
    }
  };
  const report = (done?: boolean) => {
    if (sending) sliceGap = Math.max(sliceGap, performance.now() - lastArrival);
    worker.postMessage({
      sent,
      received,
      sendErrors,
      sliceMaxGapMs: sliceGap,
      longWaits,
      maxStallMs: maxStall,
      done,
    });
    sliceGap = 0;
    longWaits = [];
  };
  const receiving = (async () => {
    try {
      for await (const _ of conn) {
        const now = performance.now();
        if (sending) endWait(now);
        lastArrival = now;
        stallInWait = 0;
        received++;
      }
    } catch {
      // Closed at the end.
    }
  })();
  // Waits are timed only while datagrams go out.
  const stopSending = () => {
    if (!sending) return;
    endWait(performance.now());
    sending = false;
  };
  const payload = new Uint8Array(64);
  const view = new DataView(payload.buffer);
  const sendingDone = (async () => {
    let nextReport = start + REPORT_MS;
    while (sending && performance.now() < end) {
      const now = performance.now();
      maxStall = Math.max(maxStall, now - lastTick);
      stallInWait = Math.max(stallInWait, now - lastTick);
      lastTick = now;
      // After a stall, catch up by at most a tenth of a second's worth.
      const due = Math.min(
        Math.floor((now - start) / 1000 * rate),
        sent + sendErrors + Math.ceil(rate / 10),
      );
      while (sent + sendErrors < due) {
        view.setUint32(0, sent + sendErrors);
        try {
          await conn.send(payload, target);
          sent++;
        } catch {
          sendErrors++;
        }
      }
      if (now >= nextReport) {
        report();
        nextReport = now + REPORT_MS;
      }
      await new Promise((resolve) => setTimeout(resolve, TICK_MS));
    }
    stopSending();
  })();
  return async () => {
    stopSending();
    await sendingDone;
    const drainEnd = performance.now() + 1000;
    while (received < sent && performance.now() < drainEnd) {
      await new Promise((resolve) => setTimeout(resolve, TICK_MS));
    }
    conn.close();
    await receiving;
    report(true);
  };
}

let stop: (() => Promise<void>) | undefined;
worker.onmessage = async ({ data }) => {
  if (data !== "stop") {
    stop ??= run(data);
    return;
  }
  await stop?.();
  worker.close();
};
