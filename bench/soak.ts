#!/usr/bin/env -S deno run --allow-net --allow-run --allow-read
/**
 * Soak benchmark: runs `server.ts --metrics` for minutes under mixed load
 * and checks that it stays healthy. Not run in CI.
 *
 * Usage:
 *   deno task soak [--io batch|socket] [--minutes M] [--rate N]
 *     [--spoof-rate N] [--slow N] [--no-monitor] [--sigusr2]
 *
 * The load: echo traffic from the soak's own socket, every echo counted
 * and every wait between echoes timed; datagrams with forged, ever-new
 * sources (as root, from a private network namespace joined to the
 * server's by a veth pair; skipped, saying why, otherwise); a scrape of
 * the server's and the monitor's `/metrics` every second; every 10 s,
 * connections that never finish their head to both endpoints, and
 * `/probe` requests past the cap and to refused targets against a monitor
 * (`client.ts --metrics`) running beside; SIGUSR2 each minute with
 * `--sigusr2` (a stats line must follow), and on `--io batch` a SIGUSR1
 * after which nothing may listen on port 9229.
 *
 * It reads the resident size and open descriptors of the server and the
 * monitor every second, prints a progress line every 10 s, and at the end
 * a table over time and its checks. Exits 0 when every check holds, 1
 * otherwise, 2 on a bad flag. Ctrl-C ends the load early and still reports.
 *
 * @module
 */

import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  parseChoice,
  parseFlags,
  parseNumber,
  refuseArguments,
  UsageError,
} from "../cli/flags.ts";
import { startLimited } from "../testing/abuse.ts";
import {
  LINK,
  makeNamespaces,
  namespaceSkipReason,
  removeNamespaces,
  runInside,
} from "./_soak_netns.ts";
import { startEchoTraffic, startSpoofer } from "./_soak_load.ts";
import { runLoads, type Soak, type SoakOptions } from "./_soak_run.ts";
import { finish } from "./_soak_finish.ts";
import { SERVER_V8_FLAGS } from "./server_flags.ts";

const USAGE = `Usage: deno task soak [options]

Runs server.ts --metrics under mixed load and checks that it stays healthy.

Options:
  --io MODE         the server's backend: batch or socket (default batch)
  --minutes M       how long the load runs, fractions allowed (default 10)
  --rate N          echo datagrams a second from the soak's socket (default 1000)
  --spoof-rate N    datagrams a second with forged sources, 0 for none;
                    needs root for the network namespaces (default 1000)
  --slow N          connections per endpoint that never finish their head,
                    every 10 s (default 100)
  --no-monitor      run no monitor (client.ts --metrics) beside the server
  --sigusr2         send SIGUSR2 each minute and expect a stats line
  --sender-netns NS (internal) the soak runs inside its server namespace
  -h, --help        show this help

Exits 0 when every check holds, 1 otherwise, 2 on a bad flag.`;

function parseOptions(args: string[]): SoakOptions | "help" {
  const { values, positionals } = parseFlags(args, {
    io: { type: "string", default: "batch" },
    minutes: { type: "string", default: "10" },
    rate: { type: "string", default: "1000" },
    "spoof-rate": { type: "string", default: "1000" },
    slow: { type: "string", default: "100" },
    "no-monitor": { type: "boolean", default: false },
    sigusr2: { type: "boolean", default: false },
    "sender-netns": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  });
  if (values.help) return "help";
  refuseArguments(positionals);
  return {
    io: parseChoice(values.io, "--io", ["batch", "socket"]),
    minutes: parseNumber(values.minutes, "--minutes", {
      min: 0.1,
      max: 1440,
      fraction: true,
    }),
    rate: parseNumber(values.rate, "--rate", { min: 1, max: 100_000 }),
    spoofRate: parseNumber(values["spoof-rate"], "--spoof-rate", {
      min: 0,
      max: 100_000,
    }),
    slow: parseNumber(values.slow, "--slow", { min: 0, max: 200 }),
    monitor: !values["no-monitor"],
    sigusr2: values.sigusr2,
    senderNetns: values["sender-netns"],
  };
}

const SERVER_PERMISSIONS = [
  "--allow-net",
  "--allow-sys=networkInterfaces",
  "--allow-ffi",
  "--allow-read=.",
  ...SERVER_V8_FLAGS,
];
const MONITOR_PERMISSIONS = [
  "--allow-net",
  "--allow-sys=networkInterfaces",
  "--allow-ffi",
  "--allow-read",
  ...SERVER_V8_FLAGS,
];

/** Starts the server, the monitor and the loads; runs them; reports. */
async function soak(options: SoakOptions, skipped?: string): Promise<number> {
  const controller = new AbortController();
  const abort = () => controller.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, abort);
  const seconds = options.minutes * 60;
  const spoofing = options.senderNetns !== undefined && options.spoofRate > 0;
  if (skipped !== undefined) {
    console.log(`skipping the forged sources: ${skipped}`);
  }
  // In the namespace the server has link addresses, so it rate-limits:
  // allow the soak's and the monitor's loopback traffic well past its rate.
  const server = startLimited("server.ts", [
    ...["-H", "127.0.0.1"],
    ...(spoofing ? ["-H", LINK.server4, "-H", LINK.server6] : []),
    ...["-p", "0", "-q", "--json", "--io", options.io],
    ...["--metrics", "127.0.0.1:0", "--rate", String(2 * options.rate + 2000)],
  ], { permissions: SERVER_PERMISSIONS, wrapper: ["setsid"] });
  const soak: Partial<Soak> = { options, server, seconds };
  try {
    const port = Number(
      (await server.waitFor(/"event":"listening"[^\n]*"port":(\d+)/))[1],
    );
    const metricsUrl =
      (await server.waitFor(/"event":"metrics"[^\n]*"url":"([^"]+)"/))[1]!;
    let monitorPort: number | undefined;
    if (options.monitor) {
      soak.monitor = startLimited("client.ts", [
        ...["-H", "127.0.0.1", "-p", String(port), "-i", "100", "-q"],
        ...["--node", "soak", "--metrics", "127.0.0.1:0"],
      ], { permissions: MONITOR_PERMISSIONS, wrapper: ["setsid"] });
      monitorPort = Number(
        (await soak.monitor.waitForStderr(
          /metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/,
        ))[1],
      );
    }
    const t0 = performance.now();
    const deadline = t0 + seconds * 1000;
    // Stopped by finish(); the limit only ends a soak that hangs.
    soak.echo = startEchoTraffic(port, options.rate, (seconds + 300) * 1000);
    if (spoofing) {
      soak.spoofer = startSpoofer(
        options.senderNetns!,
        port,
        options.spoofRate,
        seconds + 5,
      );
    }
    console.log(
      `soak: server.ts --io ${options.io} (pid ${server.pid}) on port ${port}${
        spoofing ? ` of 127.0.0.1, ${LINK.server4} and ${LINK.server6}` : ""
      }, metrics ${metricsUrl}${
        soak.monitor ? `; monitor pid ${soak.monitor.pid}` : ""
      }; ${options.minutes} min of load`,
    );
    return await runLoads({
      ...soak as Soak,
      port,
      metricsUrl,
      monitorPort,
      t0,
      deadline,
      signal: controller.signal,
    }).then(finish);
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    await soak.echo?.stop();
    await soak.spoofer?.stop();
    await soak.monitor?.stop("SIGKILL");
    await server.stop("SIGKILL");
    return EXIT_FAILURE;
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, abort);
  }
}

/**
 * As root, makes the namespaces and runs the soak again inside them
 * (`--sender-netns`), deleting them at the end whatever happens.
 */
async function soakInNamespaces(
  args: string[],
  options: SoakOptions,
): Promise<number> {
  // A Ctrl-C from here on is passed to the soak inside: it reports, and the
  // namespaces are deleted after it ends.
  const interrupted = new AbortController();
  const interrupt = () => {
    if (interrupted.signal.aborted) {
      console.error("soak: ending, and deleting its namespaces");
    }
    interrupted.abort();
  };
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, interrupt);
  try {
    const names = await makeNamespaces();
    try {
      if (interrupted.signal.aborted) return EXIT_FAILURE;
      return await runInside(names, new URL(import.meta.url).pathname, [
        ...args,
        "--sender-netns",
        names.sender,
      ], {
        interrupt: interrupted.signal,
        // Far past the run and its end; only a soak that hangs meets it.
        limitMs: (options.minutes * 60 + 300) * 1000,
      });
    } finally {
      await removeNamespaces(names);
    }
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, interrupt);
  }
}

async function main(args: string[]): Promise<number> {
  let options;
  try {
    options = parseOptions(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`error: ${error.message}`);
    return EXIT_USAGE;
  }
  if (options === "help") {
    console.log(USAGE);
    return EXIT_OK;
  }
  if (options.senderNetns !== undefined || options.spoofRate === 0) {
    return await soak(options);
  }
  const skipped = await namespaceSkipReason();
  return skipped === undefined
    ? await soakInNamespaces(args, options)
    : await soak(options, skipped);
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
