/**
 * The end of `bench/soak.ts`: stops the loads and processes in order (the
 * senders, the monitor, then the server once its counters settle), checks
 * what the loops saw against the soak's targets, and prints the report.
 *
 * @module
 */

import type { LimitedScript } from "../testing/abuse.ts";
import { pause, scrape } from "./_soak_load.ts";
import {
  type Check,
  flatCheck,
  formatChecks,
  formatSamples,
  identityCheck,
  type Sample,
  type Totals,
  totalsFromMetrics,
  totalsFromShutdown,
} from "./_soak_report.ts";
import type { Observed, Soak } from "./_soak_run.ts";
import { NUMBER } from "./tables.ts";

/** RSS and descriptors may move this much (a fraction) after the warm-up. */
const FLAT_TOLERANCE = 0.1;
const STOP_LIMIT_MS = 15_000;

/** Sends `signal`, and SIGKILL if the script has not ended after 15 s. */
async function stopWithin(script: LimitedScript, signal: Deno.Signal) {
  const timer = setTimeout(() => {
    try {
      Deno.kill(script.pid, "SIGKILL");
    } catch {
      // Ended already.
    }
  }, STOP_LIMIT_MS);
  try {
    return await script.stop(signal);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The server's totals from `/metrics` once two scrapes 250 ms apart agree
 * (the last datagrams counted); undefined when they never do within 10 s.
 */
async function settledTotals(url: string): Promise<Totals | undefined> {
  let before = "";
  for (let k = 0; k < 40; k++) {
    const text = await scrape(url);
    if (text !== undefined) {
      const totals = totalsFromMetrics(text);
      const key = JSON.stringify(totals);
      if (key === before) return totals;
      before = key;
    }
    await pause(250, new AbortController().signal);
  }
  return undefined;
}

/**
 * UDP datagrams the kernel dropped at a full receive buffer (IPv4 and
 * IPv6), from `/proc/net/snmp` and `/proc/net/snmp6`: in the soak's own
 * namespace, made at the start, they are all the soak's.
 */
async function receiveBufferDrops(): Promise<number | undefined> {
  try {
    const { stdout } = await new Deno.Command("cat", {
      args: ["/proc/net/snmp", "/proc/net/snmp6"],
    }).output();
    const text = new TextDecoder().decode(stdout);
    const [names, values] = text.split("\n").filter((line) =>
      line.startsWith("Udp: ")
    ).map((line) => line.split(/\s+/));
    const v4 = Number(values?.[names?.indexOf("RcvbufErrors") ?? -1]);
    const v6 = Number(/^Udp6RcvbufErrors\s+(\d+)$/m.exec(text)?.[1]);
    return Number.isFinite(v4 + v6) ? v4 + v6 : undefined;
  } catch {
    return undefined;
  }
}

async function loadAverage(): Promise<string> {
  try {
    const { stdout } = await new Deno.Command("cat", {
      args: ["/proc/loadavg"],
    }).output();
    return new TextDecoder().decode(stdout).split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}

function usageChecks(
  who: "server" | "monitor",
  samples: Sample[],
): Check[] {
  const read = samples.flatMap((s) => s[who] === undefined ? [] : [s[who]!]);
  return [
    flatCheck(
      `${who} RSS flat`,
      read.map((u) => u.rssMb),
      FLAT_TOLERANCE,
      "MB",
    ),
    flatCheck(`${who} fds flat`, read.map((u) => u.fds), FLAT_TOLERANCE, "fds"),
  ];
}

/** Stops everything, prints the table and the checks; resolves to the exit code. */
export async function finish(
  soak: Soak & { observed: Observed },
): Promise<number> {
  const { observed, options } = soak;
  await soak.echo.stop();
  const spoofed = soak.spoofer?.counts();
  const spoofEnd = await soak.spoofer?.stop();
  const monitorEnd = soak.monitor && await stopWithin(soak.monitor, "SIGTERM");
  const metricsTotals = await settledTotals(soak.metricsUrl);
  const serverEnd = await stopWithin(soak.server, "SIGINT");
  const shutdownTotals = totalsFromShutdown(serverEnd.stdout);

  const warmup = Math.min(60, 0.2 * soak.seconds);
  const settled = observed.samples.filter((s) => s.quiet && s.t >= warmup);
  const echo = { ...soak.echo.counts(), ...soak.echo.gaps() };
  const { abuse, scrapes, usr1, usr2 } = observed;
  // A wait during which the soak's own client stalled for half of it or
  // more says nothing of the server: reported, not counted.
  const kernelDrops = options.senderNetns === undefined
    ? undefined
    : await receiveBufferDrops();
  const serverWaits = echo.longWaits.filter((w) => w.stallMs < w.gapMs / 2);
  const checks: Check[] = [{
    name: "no wait for an echo over 1 s",
    ok: serverWaits.length === 0 && echo.received > 0,
    detail: `longest ${
      Math.round(echo.maxMs)
    } ms; ${echo.longWaits.length} over 1 s${
      echo.longWaits.length === serverWaits.length
        ? ""
        : ` (${
          echo.longWaits.length - serverWaits.length
        } while the soak itself stalled, not counted)`
    }; the soak's longest tick ${Math.round(echo.maxStallMs)} ms; sent ${
      NUMBER.format(echo.sent)
    }, echoed ${NUMBER.format(echo.received)} (lost ${
      NUMBER.format(echo.sent - echo.received)
    }), send errors ${echo.sendErrors}${
      kernelDrops === undefined
        ? ""
        : `; the namespace's kernel dropped ${
          NUMBER.format(kernelDrops)
        } at full receive buffers`
    }`,
  }];
  checks.push(...usageChecks("server", settled));
  if (soak.monitor) checks.push(...usageChecks("monitor", settled));
  checks.push(
    identityCheck("/metrics at the end", metricsTotals),
    identityCheck("shutdown totals", shutdownTotals),
    {
      name: "processes ended cleanly",
      ok: serverEnd.code === 0 && (monitorEnd?.code ?? 0) === 0,
      detail: `server exit ${serverEnd.code}${
        monitorEnd ? `, monitor exit ${monitorEnd.code}` : ""
      }`,
    },
    {
      name: "the endpoints answered and closed slow connections",
      ok: scrapes.server.failed + scrapes.monitor.failed === 0 &&
        abuse.unexpectedCount === 0 && abuse.slowClosed === abuse.slowOpened,
      detail:
        `scrapes ${scrapes.server.ok} ok ${scrapes.server.failed} failed (server), ${scrapes.monitor.ok} ok ${scrapes.monitor.failed} failed (monitor); ${abuse.rounds} rounds: slow connections ${abuse.slowClosed} of ${abuse.slowOpened} closed by the endpoints; /probe ${abuse.probeOk} ok, ${abuse.probeBusy} busy, ${abuse.probeRefused} refused, ${abuse.unexpectedCount} unexpected${
          abuse.unexpected.length ? ` (${abuse.unexpected.join(", ")})` : ""
        }`,
    },
    {
      name: "every /proc read succeeded",
      ok: observed.readErrors.count === 0,
      detail: observed.readErrors.count === 0
        ? `${observed.samples.length} samples`
        : `${observed.readErrors.count} failed: ${
          observed.readErrors.first.join("; ")
        }`,
    },
  );
  if (options.senderNetns !== undefined && options.spoofRate > 0) {
    checks.push({
      name: "forged sources sent",
      ok: (spoofed?.sent ?? 0) > 0 && spoofEnd?.code === 0,
      detail: `${NUMBER.format(spoofed?.sent ?? 0)} sent, ${
        spoofed?.errors ?? 0
      } failed, sender exit ${spoofEnd?.code}${
        spoofEnd?.stderr ? `: ${spoofEnd.stderr}` : ""
      }`,
    });
  }
  if (options.sigusr2) {
    checks.push({
      name: "a stats line after each SIGUSR2",
      ok: usr2.sent > 0 && usr2.answered === usr2.sent,
      detail: `${usr2.answered} of ${usr2.sent} answered within 5 s`,
    });
  }
  if (options.io === "batch") {
    checks.push({
      name: "nothing listens on 9229 after SIGUSR1",
      ok: usr1.sent > 0 && usr1.heard.length === 0,
      detail: usr1.heard.length === 0
        ? `${usr1.sent} sent, nothing listened within 3 s of each`
        : `${usr1.sent} sent; ${usr1.heard.join("; ")}`,
    });
  }

  const early = observed.ranSeconds < soak.seconds - 1;
  console.log(
    `\nsoak of server.ts --io ${options.io}: ${
      Math.round(observed.ranSeconds)
    } s of load${
      early ? ` (stopped early, of ${Math.round(soak.seconds)} s)` : ""
    }, warm-up ${Math.round(warmup)} s, load average ${await loadAverage()}\n`,
  );
  console.log(
    formatSamples(observed.samples, Math.max(10, soak.seconds / 10)),
  );
  const shutdownLine = serverEnd.stdout.split("\n").findLast((line) =>
    line.includes('"event":"shutdown"')
  );
  console.log(`\nserver: ${shutdownLine ?? "no shutdown line"}`);
  if (serverEnd.stderr.trim()) {
    console.log(`server stderr: ${serverEnd.stderr.trim().slice(0, 2000)}`);
  }
  console.log(`\nchecks (after the warm-up, quiet samples only):`);
  console.log(formatChecks(checks));
  const failed = checks.filter((check) => !check.ok).length;
  console.log(
    failed === 0
      ? "\nevery check held"
      : `\n${failed} of ${checks.length} checks failed`,
  );
  return failed === 0 ? 0 : 1;
}
