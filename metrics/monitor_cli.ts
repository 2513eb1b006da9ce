/**
 * `client.ts --metrics ADDR`: the monitor on the command line. It probes
 * every `-H` target without end (one flow each, every `-i` ms), prints
 * what ping prints per probe (text, `--ndjson`, nothing with `-q`), serves
 * the tallies at `/metrics` and runs probes on demand at `/probe`. It keeps
 * probing when stdout closes (the output says so once on stderr) and ends
 * with exit 0 on SIGINT, SIGTERM or SIGHUP. `client.ts` imports this module only
 * when `--metrics` is given.
 *
 * @module
 */

import {
  formatAddress,
  type HostPort,
  type ResolvedAddress,
} from "../net/address.ts";
import { resolveTarget } from "../net/resolve.ts";
import { checkUnstableNet } from "../net/errors.ts";
import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  parseListenFlag,
  parseNumberFlag,
  UsageError,
} from "../cli/flags.ts";
import type { Output } from "../cli/output.ts";
import { onStopSignals, survivePeerStatsSignal } from "../cli/signals.ts";
import { MEASURE_RANGES } from "../measure/cli.ts";
import { runMonitor } from "../measure/monitor.ts";
import { checkProbeSize, type ProbeEvent } from "../measure/modes.ts";
import { eventJson, formatLost, formatReply } from "../measure/report.ts";
import { listInterfaces, probeHandler, ProbeMetrics } from "./probe.ts";
import { serveMetrics } from "./http.ts";
import { readLinks } from "./_links.ts";
import { parseProbeAllow, type ProbeAllowEntry } from "./_probe_policy.ts";

/** The flags of a measurement that a monitor, which runs until stopped, refuses. */
const NOT_FOR_MONITOR = [
  "count",
  "duration",
  "wait",
  "window",
  "rate",
  "flows",
  "sweep",
  "max-loss",
  "bind",
] as const;

/** The flag values {@linkcode runMonitorCommand} reads, as parseArgs gives them. */
export interface MonitorValues {
  /** `--metrics`. */
  metrics?: string;
  /** `-i`. */
  interval?: string;
  /** `-s`. */
  size?: string;
  /** `--ndjson`. */
  ndjson?: boolean;
  /** `-4`. */
  ipv4?: boolean;
  /** `-6`. */
  ipv6?: boolean;
  /** `--probe-allow`, repeatable. */
  "probe-allow"?: string[];
  /** The refused ones. */
  [flag: string]: string | boolean | string[] | undefined;
}

/** What `client.ts` has read already. */
export interface MonitorCommandOptions {
  /** The `-H` targets, each with the `-p` port. */
  targets: HostPort[];
  /** `-t`: a probe without a reply this long is lost, in ms. */
  timeoutMs: number;
  /** `-q`. */
  quiet: boolean;
  /** `--json`, refused: a monitor has no end to print a document at. */
  json: boolean;
  /** Where everything is printed. */
  output: Output;
}

/**
 * Runs the monitor until SIGINT, SIGTERM or SIGHUP; resolves to the exit status:
 * 0 when stopped by a signal, 1 when it cannot serve metrics (the address
 * named) or a socket fails, 2 for a usage error.
 */
export async function runMonitorCommand(
  values: MonitorValues,
  options: MonitorCommandOptions,
): Promise<number> {
  const { output: out, quiet } = options;
  let targets: ResolvedAddress[];
  let listen: HostPort;
  let intervalMs: number;
  let size: number;
  let allow: ProbeAllowEntry[];
  try {
    const refused = NOT_FOR_MONITOR.find((flag) =>
      values[flag] !== undefined && values[flag] !== false
    );
    if (refused !== undefined || options.json) {
      throw new UsageError(
        `Cannot use --${
          refused ?? "json"
        } with --metrics: a monitor probes until stopped`,
      );
    }
    if (quiet && values.ndjson) {
      throw new UsageError("Cannot combine -q and --ndjson: pick one");
    }
    listen = parseListenFlag(values.metrics!, "--metrics");
    intervalMs = parseNumberFlag(values, "interval", MEASURE_RANGES) ?? 1000;
    if (intervalMs < 0.1) {
      throw new UsageError(
        `Cannot use --interval "${values.interval}" with --metrics: a monitor probes at most every 0.1 ms`,
      );
    }
    size = parseNumberFlag(values, "size", MEASURE_RANGES) ?? 64;
    allow = (values["probe-allow"] ?? []).map((text) => {
      try {
        return parseProbeAllow(text);
      } catch (error) {
        throw new UsageError((error as Error).message, { cause: error });
      }
    });
    const family = values.ipv4 ? "IPv4" : values.ipv6 ? "IPv6" : undefined;
    targets = await Promise.all(
      options.targets.map((target) => resolveTarget(target, { family })),
    );
    // A target given twice (in any spelling) is one flow, one label.
    targets = targets.filter((target, k) =>
      targets.findIndex((other) =>
        formatAddress(other) === formatAddress(target)
      ) === k
    );
    for (const target of targets) checkProbeSize(size, target);
    checkUnstableNet();
  } catch (error) {
    out.error(error);
    return error instanceof UsageError || error instanceof RangeError
      ? EXIT_USAGE
      : EXIT_FAILURE;
  }
  const metrics = new ProbeMetrics();
  const labels = targets.map((target) => formatAddress(target));
  const tallies = labels.map((label) => metrics.tally(label));
  let endpoint;
  try {
    endpoint = serveMetrics(listen, {
      metrics: metrics.registry,
      probe: probeHandler({ timeoutMs: options.timeoutMs, size, allow }),
      links: () => readLinks(metrics.registry),
    }, { onWarning: out.warn });
  } catch (error) {
    out.error(error);
    return EXIT_FAILURE;
  }
  if (listInterfaces() === undefined) {
    out.warn(
      "cannot list the network interfaces, so /probe cannot tell a local subnet's broadcast address and probes loopback targets only: grant --allow-sys=networkInterfaces",
    );
  }
  const controller = new AbortController();
  const removeSignalListeners = onStopSignals(() => controller.abort());
  const removeStatsListener = survivePeerStatsSignal();
  const url = `http://${formatAddress(endpoint.addr)}/metrics`;
  const format = values.ndjson ? "ndjson" : quiet ? "quiet" : "text";
  if (format === "ndjson") {
    out.line(JSON.stringify({
      event: "monitor",
      targets: labels,
      size,
      interval_ms: intervalMs,
      timeout_ms: options.timeoutMs,
      metrics: url,
    }));
  } else {
    (format === "text" ? out.line : out.status)(
      `MONITOR ${
        labels.join(", ")
      }: ${size}-byte probes, every ${intervalMs} ms; metrics on ${url}${
        format === "text" ? "" : "\n"
      }`,
    );
  }
  const sendFailed = new Set<number>();
  const onEvent = (index: number, event: ProbeEvent) => {
    if (event.type === "send_error" && !sendFailed.has(index)) {
      // Once per target: the counter has them all.
      sendFailed.add(index);
      out.error(
        new Error(`Cannot send to ${labels[index]}: ${event.reason}`),
      );
    }
    if (controller.signal.aborted || out.closed || format === "quiet") return;
    if (format === "ndjson") {
      if (event.type === "sweep") return;
      out.line(JSON.stringify({ target: labels[index], ...eventJson(event) }));
    } else if (event.type === "reply") {
      out.line(formatReply(event, labels[index]!));
    } else if (event.type === "lost") {
      out.line(formatLost(event, labels[index]!));
    }
  };
  try {
    await runMonitor({
      targets,
      tallies,
      intervalMs,
      timeoutMs: options.timeoutMs,
      size,
      signal: controller.signal,
      onEvent,
    });
    return EXIT_OK;
  } catch (error) {
    out.error(error);
    return EXIT_FAILURE;
  } finally {
    removeSignalListeners();
    removeStatsListener();
    await endpoint.close();
  }
}
