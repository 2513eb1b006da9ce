/**
 * The running part of `bench/soak.ts`: the loops that sample, scrape,
 * abuse and signal until the deadline or a Ctrl-C, each bounded in count
 * and time, and the progress line every 10 s.
 *
 * @module
 */

import { type LimitedScript, openFds, rssMb } from "../testing/abuse.ts";
import {
  abuseRound,
  type AbuseTally,
  type EchoTraffic,
  emptyTally,
  pause,
  scrape,
  type Spoofer,
} from "./_soak_load.ts";
import { inspectorListener } from "./_soak_netns.ts";
import { type Sample, sumSeries, type Usage } from "./_soak_report.ts";
import { NUMBER } from "./tables.ts";

/** What the flags ask for. */
export interface SoakOptions {
  /** The server's `--io`. */
  io: "batch" | "socket";
  /** Minutes of load. */
  minutes: number;
  /** Echo datagrams a second. */
  rate: number;
  /** Forged datagrams a second; 0 for none. */
  spoofRate: number;
  /** Slow connections per endpoint and round. */
  slow: number;
  /** Whether a monitor runs beside. */
  monitor: boolean;
  /** Whether to send SIGUSR2. */
  sigusr2: boolean;
  /** The sender namespace, when this run is inside the server namespace. */
  senderNetns?: string;
}

/** A soak under way: its processes, loads and clock. */
export interface Soak {
  /** What the flags asked for. */
  options: SoakOptions;
  /** Seconds of load asked for. */
  seconds: number;
  /** `server.ts`. */
  server: LimitedScript;
  /** `client.ts --metrics`, unless `--no-monitor`. */
  monitor?: LimitedScript;
  /** The soak's echo traffic. */
  echo: EchoTraffic;
  /** The forged-source sender, when it runs. */
  spoofer?: Spoofer;
  /** The server's UDP port. */
  port: number;
  /** The server's `/metrics`. */
  metricsUrl: string;
  /** The monitor's HTTP port. */
  monitorPort?: number;
  /** When the load started (`performance.now()`). */
  t0: number;
  /** When it ends unless stopped before. */
  deadline: number;
  /** Aborts on Ctrl-C or SIGTERM. */
  signal: AbortSignal;
}

/** What the loops saw. */
export interface Observed {
  /** A sample per second. */
  samples: Sample[];
  /** `/proc` reads that failed: how many, the first messages. */
  readErrors: { count: number; first: string[] };
  /** Scrapes answered 200, and not, per endpoint. */
  scrapes: Record<"server" | "monitor", { ok: number; failed: number }>;
  /** What the abuse rounds met. */
  abuse: AbuseTally;
  /** SIGUSR2 sent, and answered by a stats line within 5 s. */
  usr2: { sent: number; answered: number };
  /** SIGUSR1 sent; who listened on 9229 afterwards, each time it was not nothing. */
  usr1: { sent: number; heard: string[] };
  /** Seconds of load run. */
  ranSeconds: number;
}

const SECOND = 1000;
const ABUSE_PERIOD_MS = 10_000;
const STATS_LINE_WAIT_MS = 5000;
const INSPECTOR_WATCH_MS = 3000;

/**
 * Calls `body` every `periodMs` from `firstMs` after the start until the
 * deadline or an abort, never two at once: a late call skips the ticks it
 * missed, and the count is bounded by the run's length.
 */
async function repeat(
  soak: Soak,
  periodMs: number,
  firstMs: number,
  body: () => Promise<void>,
): Promise<void> {
  const limit = Math.ceil((soak.deadline - soak.t0) / periodMs) + 1;
  let at = soak.t0 + firstMs;
  for (let k = 0; k < limit; k++) {
    await pause(at - performance.now(), soak.signal);
    if (soak.signal.aborted || performance.now() >= soak.deadline) return;
    await body();
    at = Math.max(at + periodMs, performance.now());
  }
}

/** Runs every loop to the deadline or a Ctrl-C; resolves to what they saw. */
export async function runLoads(
  soak: Soak,
): Promise<Soak & { observed: Observed }> {
  const observed: Observed = {
    samples: [],
    readErrors: { count: 0, first: [] },
    scrapes: { server: { ok: 0, failed: 0 }, monitor: { ok: 0, failed: 0 } },
    abuse: emptyTally(),
    usr2: { sent: 0, answered: 0 },
    usr1: { sent: 0, heard: [] },
    ranSeconds: 0,
  };
  const elapsed = () => (performance.now() - soak.t0) / SECOND;
  let abusing = 0;
  let abuseEpoch = 0;
  let serverReceived = 0;
  const usageOf = async (who: string, pid: number) => {
    try {
      return { rssMb: await rssMb(pid), fds: await openFds(pid) } as Usage;
    } catch (error) {
      observed.readErrors.count++;
      if (observed.readErrors.first.length < 3) {
        const message = (error as Error).message.replace(/\s+/g, " ").trim();
        observed.readErrors.first.push(`${who}: ${message}`);
      }
      return undefined;
    }
  };
  const sampling = repeat(soak, SECOND, SECOND, async () => {
    const epoch = abuseEpoch;
    const quietBefore = abusing === 0;
    const server = await usageOf("server", soak.server.pid);
    const monitor = soak.monitor && await usageOf("monitor", soak.monitor.pid);
    observed.samples.push({
      t: elapsed(),
      quiet: quietBefore && abusing === 0 && epoch === abuseEpoch,
      echoes: soak.echo.counts().received,
      maxGapMs: soak.echo.takeMaxGap(),
      spoofed: soak.spoofer?.counts().sent ?? 0,
      serverReceived,
      server,
      monitor,
    });
  });
  const scraping = repeat(soak, SECOND, 0, async () => {
    const text = await scrape(soak.metricsUrl);
    observed.scrapes.server[text === undefined ? "failed" : "ok"]++;
    if (text !== undefined) {
      serverReceived = sumSeries(text, "udp_echo_received_datagrams_total");
    }
    if (soak.monitorPort !== undefined) {
      const monitor = await scrape(
        `http://127.0.0.1:${soak.monitorPort}/metrics`,
      );
      observed.scrapes.monitor[monitor === undefined ? "failed" : "ok"]++;
    }
  });
  const abusing$ = repeat(soak, ABUSE_PERIOD_MS, 2 * SECOND, async () => {
    abusing++;
    abuseEpoch++;
    try {
      await abuseRound(
        [
          Number(new URL(soak.metricsUrl).port),
          ...(soak.monitorPort === undefined ? [] : [soak.monitorPort]),
        ],
        soak.monitorPort,
        soak.port,
        soak.options.slow,
        observed.abuse,
      );
    } finally {
      abusing--;
    }
  });
  // Each minute, or three times in a shorter run.
  const signalMs = Math.min(60, soak.seconds / 3) * SECOND;
  const signalling = repeat(
    soak,
    signalMs,
    signalMs,
    () => signalRound(soak, observed),
  );
  const progress = repeat(soak, 10 * SECOND, 10 * SECOND, () => {
    console.log(progressLine(soak, observed, elapsed()));
    return Promise.resolve();
  });
  await Promise.all([sampling, scraping, abusing$, signalling, progress]);
  observed.ranSeconds = Math.min(elapsed(), soak.seconds);
  return { ...soak, observed };
}

/** Counts of `stats` seen so far on the server's stdout and stderr. */
const statsSeen = { stdout: 0, stderr: 0 };

async function signalRound(soak: Soak, observed: Observed): Promise<void> {
  const { server } = soak;
  if (soak.options.sigusr2) {
    observed.usr2.sent++;
    const nth = (count: number) =>
      new RegExp(`(?:[\\s\\S]*?\\bstats\\b){${count + 1}}`);
    try {
      Deno.kill(server.pid, "SIGUSR2");
      const stream = await Promise.any([
        server.waitFor(nth(statsSeen.stdout), STATS_LINE_WAIT_MS).then(() =>
          "stdout" as const
        ),
        server.waitForStderr(nth(statsSeen.stderr), STATS_LINE_WAIT_MS)
          .then(() => "stderr" as const),
      ]);
      statsSeen[stream]++;
      observed.usr2.answered++;
    } catch {
      // Not answered: counted by what is missing.
    }
  }
  if (soak.options.io !== "batch") return;
  observed.usr1.sent++;
  const at = `${Math.round((performance.now() - soak.t0) / SECOND)} s`;
  try {
    Deno.kill(server.pid, "SIGUSR1");
    const end = performance.now() + INSPECTOR_WATCH_MS;
    let who = "nothing";
    while (who === "nothing" && performance.now() < end) {
      who = await inspectorListener(server.pid);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    if (who !== "nothing") observed.usr1.heard.push(`${at}: ${who}`);
  } catch (error) {
    observed.usr1.heard.push(`${at}: ${(error as Error).message}`);
  }
}

function progressLine(soak: Soak, observed: Observed, t: number): string {
  const recent = observed.samples.filter((s) => s.t > t - 10);
  const before = observed.samples.findLast((s) => s.t <= t - 10) ??
    { t: 0, echoes: 0, serverReceived: 0 };
  const last = recent.at(-1);
  const rateOf = (key: "echoes" | "serverReceived") =>
    last === undefined || last.t <= before.t
      ? 0
      : (last[key] - before[key]) / (last.t - before.t);
  const gap = Math.max(0, ...recent.map((s) => s.maxGapMs));
  const usage = (who: string, usage?: Usage) =>
    usage === undefined
      ? `${who} unread`
      : `${who} ${usage.rssMb.toFixed(1)} MB ${usage.fds} fds`;
  const { abuse, scrapes } = observed;
  return [
    `[${Math.round(t)} of ${Math.round(soak.seconds)} s] echoes ${
      NUMBER.format(rateOf("echoes"))
    }/s, longest gap ${Math.round(gap)} ms`,
    usage("server", last?.server),
    ...(soak.monitor ? [usage("monitor", last?.monitor)] : []),
    `server received ${NUMBER.format(rateOf("serverReceived"))}/s, forged ${
      NUMBER.format(last?.spoofed ?? 0)
    }`,
    `scrapes ${scrapes.server.ok + scrapes.monitor.ok} ok ${
      scrapes.server.failed + scrapes.monitor.failed
    } failed`,
    `slow ${abuse.slowClosed}/${abuse.slowOpened} closed`,
    `/probe ${abuse.probeOk} ok ${abuse.probeBusy} busy ${abuse.probeRefused} refused`,
  ].join(" | ");
}
