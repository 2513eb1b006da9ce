/**
 * The loads of `bench/soak.ts`: steady echo traffic (in a Worker) that
 * counts every echo and times the waits between them, the forged-source
 * sender, and a round
 * of abuse against the HTTP endpoints (connections that never finish their
 * head, `/probe` requests past the monitor's cap and to refused targets).
 *
 * @module
 */

import { holdConnections } from "../testing/abuse.ts";
import { PROBE_CONCURRENCY } from "../metrics/probe.ts";
import { LINK } from "./_soak_netns.ts";
import type { EchoReport, LongWait } from "./_soak_echo_worker.ts";

/** Waits `ms`, or less when `signal` aborts. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted || ms <= 0) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

/** Echo traffic from the soak's own socket on 127.0.0.1, in a Worker. */
export interface EchoTraffic {
  /** Datagrams sent, echoes received, failed sends. */
  counts(): { sent: number; received: number; sendErrors: number };
  /** The longest wait for an echo since the last call, the current one included. */
  takeMaxGap(): number;
  /** The longest wait, every wait over 1 s, the client's longest tick. */
  gaps(): { maxMs: number; longWaits: LongWait[]; maxStallMs: number };
  /** Stops sending, waits up to 1 s for the last echoes, ends the Worker. */
  stop(): Promise<void>;
}

/**
 * Starts the echo client of `_soak_echo_worker.ts`: `rate` datagrams a
 * second to `port` on 127.0.0.1, until stopped or for at most `limitMs`.
 */
export function startEchoTraffic(
  port: number,
  rate: number,
  limitMs: number,
): EchoTraffic {
  const worker = new Worker(
    new URL("./_soak_echo_worker.ts", import.meta.url).href,
    { type: "module" },
  );
  let last: EchoReport = {
    sent: 0,
    received: 0,
    sendErrors: 0,
    sliceMaxGapMs: 0,
    longWaits: [],
    maxStallMs: 0,
  };
  let windowGap = 0, maxGap = 0;
  const longWaits: LongWait[] = [];
  const { promise: done, resolve: ended } = Promise.withResolvers<void>();
  worker.onmessage = ({ data }: MessageEvent<EchoReport>) => {
    last = data;
    windowGap = Math.max(windowGap, data.sliceMaxGapMs);
    maxGap = Math.max(maxGap, data.sliceMaxGapMs);
    longWaits.push(...data.longWaits);
    if (data.done) ended();
  };
  worker.postMessage({ port, rate, limitMs });
  return {
    counts: () => ({
      sent: last.sent,
      received: last.received,
      sendErrors: last.sendErrors,
    }),
    takeMaxGap() {
      const gap = windowGap;
      windowGap = 0;
      return gap;
    },
    gaps: () => ({ maxMs: maxGap, longWaits, maxStallMs: last.maxStallMs }),
    async stop() {
      worker.postMessage("stop");
      await Promise.race([done, pause(10_000, new AbortController().signal)]);
      worker.terminate();
    },
  };
}

/** The forged-source sender, running in the sender namespace. */
export interface Spoofer {
  /** Datagrams sent so far, and sends that failed. */
  counts(): { sent: number; errors: number };
  /** Stops it; resolves to its exit code and stderr. */
  stop(): Promise<{ code: number; stderr: string }>;
}

/**
 * Starts `bench/spoof_sender.py` in namespace `ns`: `rate` datagrams a
 * second to the server's link addresses on `port`, for at most `seconds`.
 */
export function startSpoofer(
  ns: string,
  port: number,
  rate: number,
  seconds: number,
): Spoofer {
  const script = new URL("./spoof_sender.py", import.meta.url).pathname;
  const child = new Deno.Command("ip", {
    args: [
      ...["netns", "exec", ns, "setsid", "python3", script],
      ...[LINK.server4, LINK.server6, String(port), String(rate)],
      String(seconds),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const counts = { sent: 0, errors: 0 };
  const stderr = new Response(child.stderr).text();
  const reading = (async () => {
    let text = "";
    for await (
      const chunk of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      text += chunk;
      const lines = text.split("\n");
      text = lines.pop()!;
      const last = lines.findLast((line) => line.startsWith("sent "));
      const match = /^sent (\d+) errors (\d+)$/.exec(last ?? "");
      if (match) {
        counts.sent = Number(match[1]);
        counts.errors = Number(match[2]);
      }
    }
  })();
  return {
    counts: () => ({ ...counts }),
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Ended already.
      }
      const { code } = await child.status;
      await reading;
      return { code, stderr: (await stderr).trim() };
    },
  };
}

/** What the abuse rounds met so far. */
export interface AbuseTally {
  /** Rounds run. */
  rounds: number;
  /** Slow connections opened, and how many the endpoints closed. */
  slowOpened: number;
  /** Slow connections the endpoints closed (or refused) themselves. */
  slowClosed: number;
  /** `/probe` requests answered 200. */
  probeOk: number;
  /** `/probe` requests refused as busy (429 or 503). */
  probeBusy: number;
  /** `/probe` requests to refused targets answered 400. */
  probeRefused: number;
  /** Answers nobody should get, as `status target` (the first few). */
  unexpected: string[];
  /** How many unexpected answers in all. */
  unexpectedCount: number;
}

/** A tally of no rounds. */
export function emptyTally(): AbuseTally {
  return {
    rounds: 0,
    slowOpened: 0,
    slowClosed: 0,
    probeOk: 0,
    probeBusy: 0,
    probeRefused: 0,
    unexpected: [],
    unexpectedCount: 0,
  };
}

/** Targets a `/probe` caller must be refused: broadcast, multicast, a chargen port. */
const REFUSED_TARGETS = ["255.255.255.255:7", "[ff02::1]:7", "127.0.0.1:19"];

/**
 * One round: `slow` connections to each HTTP port that never finish their
 * head, held until the endpoint closes them (at most 30 s), and, with a
 * monitor, three times its `/probe` cap of requests for 100 probes of the
 * server at `echoPort`, plus requests for refused targets.
 */
export async function abuseRound(
  httpPorts: number[],
  monitorPort: number | undefined,
  echoPort: number,
  slow: number,
  tally: AbuseTally,
): Promise<void> {
  tally.rounds++;
  const note = (text: string) => {
    tally.unexpectedCount++;
    if (tally.unexpected.length < 5) tally.unexpected.push(text);
  };
  const probe = async (target: string, refused: boolean) => {
    const url = `http://127.0.0.1:${monitorPort}/probe?target=${
      encodeURIComponent(target)
    }&count=${refused ? 1 : 100}`;
    try {
      const response = await fetch(url, {
        signal: AbortSignal.timeout(30_000),
      });
      await response.body?.cancel();
      const { status } = response;
      if (refused && status === 400) tally.probeRefused++;
      else if (!refused && status === 200) tally.probeOk++;
      else if (!refused && (status === 429 || status === 503)) {
        tally.probeBusy++;
      } else note(`${status} ${target}`);
    } catch (error) {
      note(`${(error as Error).name} ${target}`);
    }
  };
  const held = await Promise.all(
    httpPorts.map((port) => holdConnections(port, slow)),
  );
  tally.slowOpened += slow * held.length;
  // The refused targets first: past the cap, any request is refused as busy.
  if (monitorPort !== undefined) {
    for (const target of REFUSED_TARGETS) await probe(target, true);
  }
  const probes = monitorPort === undefined ? [] : Array.from(
    { length: 3 * PROBE_CONCURRENCY },
    () => probe(`127.0.0.1:${echoPort}`, false),
  );
  await Promise.all([
    ...probes,
    ...held.map(async (connections) => {
      try {
        await connections.waitClosed(slow);
      } catch {
        // Counted below: the ones the endpoint did not close.
      }
      tally.slowClosed += connections.closedByServer();
      await connections.close();
    }),
  ]);
}

/** The body of `url` when it answers 200 within 5 s; undefined otherwise. */
export async function scrape(url: string): Promise<string | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
    const text = await response.text();
    return response.status === 200 ? text : undefined;
  } catch {
    return undefined;
  }
}
