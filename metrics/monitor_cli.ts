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
import { checkUnstableNet, errorMessage } from "../net/errors.ts";
import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  type NumberRange,
  parseListenFlag,
  parseNumberFlag,
  UsageError,
} from "../cli/flags.ts";
import type { Output } from "../cli/output.ts";
import { onStopSignals, survivePeerStatsSignal } from "../cli/signals.ts";
import { MEASURE_RANGES } from "../measure/cli.ts";
import { monitorRing, probeTarget } from "../measure/monitor.ts";
import { checkProbeSize, type ProbeEvent } from "../measure/modes.ts";
import { eventJson, formatLost, formatReply } from "../measure/report.ts";
import { listInterfaces, probeHandler, ProbeMetrics } from "./probe.ts";
import { serveMetrics } from "./http.ts";
import { readLinks } from "./_links.ts";
import { parseProbeAllow, type ProbeAllowEntry } from "./_probe_policy.ts";
import { TargetSources } from "./_targets.ts";
import { MAX_HTTP_CONNECTIONS, RESERVED_DESCRIPTORS } from "./_fd_limit.ts";
import { readFileLimit } from "../cli/limits.ts";
import type { StampMetricsOptions } from "./stamp_metrics.ts";

/** The flags of a measurement that a monitor, which runs until stopped, refuses. */
const NOT_FOR_MONITOR = [
  "count",
  "duration",
  "wait",
  "window",
  "rate",
  "sweep",
  "max-loss",
  "bind",
] as const;

/**
 * The most flows (targets x `--flows`, a socket each) one monitor runs: a
 * larger set from the file or DNS is refused and the last good one stays.
 */
export const MAX_MONITOR_FLOWS = 4096;
/** `--refresh` in seconds when not given. */
export const DEFAULT_REFRESH_S = 10;
/** The values of `--refresh`. */
export const REFRESH_RANGE = {
  refresh: { min: 0.1, max: 86_400, fraction: true, unit: "seconds" },
} as const satisfies Record<string, NumberRange>;
/** The longest `--node` value, in characters. */
const MAX_NODE_LENGTH = 253;

/** The flag values {@linkcode runMonitorCommand} reads, as parseArgs gives them. */
export interface MonitorValues {
  /** `--metrics`. */
  metrics?: string;
  /** `-H`, as given; absent when only the default host is meant. */
  host?: string[];
  /** `-i`. */
  interval?: string;
  /** `-s`. */
  size?: string;
  /** `--flows`. */
  flows?: string;
  /** `--ndjson`. */
  ndjson?: boolean;
  /** `-4`. */
  ipv4?: boolean;
  /** `-6`. */
  ipv6?: boolean;
  /** `--stamp`, `--stamp-tlv`, `--ssid`, `--reflector-stateful`. */
  stamp?: boolean;
  "stamp-tlv"?: string;
  ssid?: string;
  "reflector-stateful"?: boolean;
  /** `--probe-allow`, repeatable. */
  "probe-allow"?: string[];
  /** `--targets-file`. */
  "targets-file"?: string;
  /** `--targets-dns`. */
  "targets-dns"?: string;
  /** `--refresh`, seconds. */
  refresh?: string;
  /** `--node`. */
  node?: string;
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
 * `--node`, or this host's name when the process may read it; a
 * UsageError asks for `--node` otherwise.
 */
function nodeName(given: string | undefined): string {
  if (given !== undefined) {
    const control = [...given].some((c) =>
      c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f
    );
    if (given === "" || given.length > MAX_NODE_LENGTH || control) {
      throw new UsageError(
        `Cannot use --node "${given}": expected 1 to ${MAX_NODE_LENGTH} printable characters`,
      );
    }
    return given;
  }
  let state = "denied";
  try {
    state = Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state;
  } catch {
    // Reported below.
  }
  if (state !== "granted") {
    throw new UsageError(
      "Cannot name this node for the node label: give --node NAME, or grant --allow-sys=hostname to use the host name",
    );
  }
  return Deno.hostname();
}

/**
 * The flows a monitor may run: {@linkcode MAX_MONITOR_FLOWS}, or fewer
 * under a file descriptor limit that must also hold the endpoint's
 * connections and the process's own descriptors.
 */
export function flowBudget(limit: number | undefined): number {
  if (limit === undefined) return MAX_MONITOR_FLOWS;
  const spare = limit - MAX_HTTP_CONNECTIONS - RESERVED_DESCRIPTORS;
  return Math.max(1, Math.min(MAX_MONITOR_FLOWS, spare));
}

/** Refuses a set of more flows than `budget` (see {@linkcode flowBudget}). */
function checkFlowBudget(targets: number, flows: number, budget: number): void {
  if (targets * flows > budget) {
    throw new RangeError(
      `Cannot probe ${targets} targets over ${flows} flows each: a monitor runs at most ${budget} flows (targets x --flows)${
        budget < MAX_MONITOR_FLOWS ? " under its file descriptor limit" : ""
      }`,
    );
  }
}

/**
 * Runs the monitor until SIGINT, SIGTERM or SIGHUP; resolves to the exit status:
 * 0 when stopped by a signal, 1 when it cannot serve metrics (the address
 * named) or a socket fails, 2 for a usage error (a targets file that
 * cannot be read at start included).
 */
export async function runMonitorCommand(
  values: MonitorValues,
  options: MonitorCommandOptions,
): Promise<number> {
  const { output: out, quiet } = options;
  const file = values["targets-file"];
  const dns = values["targets-dns"];
  let fixed: ResolvedAddress[];
  let listen: HostPort;
  let intervalMs: number;
  let size: number;
  let flows: number;
  let budget: number;
  let node: string;
  let allow: ProbeAllowEntry[];
  let stamp: StampMetricsOptions | undefined;
  let sources: TargetSources | undefined;
  let initial: ResolvedAddress[] = [];
  // Set once the runs can start; a change before that waits for it.
  const following: { follow?: (targets: ResolvedAddress[]) => void } = {};
  let pending: ResolvedAddress[] | undefined;
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
    if (
      values.refresh !== undefined && file === undefined && dns === undefined
    ) {
      throw new UsageError(
        "Cannot use --refresh without --targets-file or --targets-dns: -H targets stay",
      );
    }
    listen = parseListenFlag(values.metrics!, "--metrics");
    intervalMs = parseNumberFlag(values, "interval", MEASURE_RANGES) ?? 1000;
    if (intervalMs < 0.1) {
      throw new UsageError(
        `Cannot use --interval "${values.interval}" with --metrics: a monitor probes at most every 0.1 ms`,
      );
    }
    size = parseNumberFlag(values, "size", MEASURE_RANGES) ?? 64;
    if (values.stamp) {
      const { stampRunOf } = await import("../measure/stamp_report.ts");
      const run = { size };
      stamp = stampRunOf(values, run).options;
      size = run.size;
    }
    flows = parseNumberFlag(values, "flows", MEASURE_RANGES) ?? 1;
    const refreshS = parseNumberFlag(values, "refresh", REFRESH_RANGE) ??
      DEFAULT_REFRESH_S;
    try {
      monitorRing(intervalMs, options.timeoutMs);
    } catch (error) {
      throw new UsageError((error as Error).message, { cause: error });
    }
    allow = (values["probe-allow"] ?? []).map((text) => {
      try {
        return parseProbeAllow(text);
      } catch (error) {
        throw new UsageError((error as Error).message, { cause: error });
      }
    });
    node = nodeName(values.node);
    const family = values.ipv4 ? "IPv4" : values.ipv6 ? "IPv6" : undefined;
    // With a file or a name, the default host is no target: only -H ones are.
    const hosts = values.host === undefined && (file ?? dns) !== undefined
      ? []
      : options.targets;
    fixed = await Promise.all(
      hosts.map((target) => resolveTarget(target, { family })),
    );
    for (const target of fixed) checkProbeSize(size, target);
    budget = flowBudget(readFileLimit());
    checkFlowBudget(fixed.length, flows, budget);
    checkUnstableNet();
    if (file !== undefined || dns !== undefined) {
      sources = new TargetSources({
        file,
        dns,
        port: options.targets[0]!.port,
        family,
        refreshMs: refreshS * 1000,
        ownAddresses: () =>
          (listInterfaces() ?? []).map((address) => address.address),
        onChange: (targets) => {
          pending = targets;
          following.follow?.(targets);
        },
        onError: (_, message) => {
          if (message !== undefined) out.error(new Error(message));
        },
      });
      try {
        initial = await sources.start();
      } catch (error) {
        throw new UsageError(
          `Cannot read targets from ${file}: ${errorMessage(error)}`,
          { cause: error },
        );
      }
    }
  } catch (error) {
    out.error(error);
    return error instanceof UsageError || error instanceof RangeError
      ? EXIT_USAGE
      : EXIT_FAILURE;
  }
  const unfit = new Set<string>();
  /**
   * The -H targets and those of the file and DNS, each once; a target the
   * probe size does not fit is left out, with an error line the first time.
   */
  const union = (dynamic: readonly ResolvedAddress[]) => {
    const byLabel = new Map<string, ResolvedAddress>();
    const fits = (target: ResolvedAddress) => {
      try {
        checkProbeSize(size, target);
        return true;
      } catch (error) {
        const label = formatAddress(target);
        if (!unfit.has(label)) out.error(error);
        unfit.add(label);
        return false;
      }
    };
    for (const target of [...fixed, ...dynamic.filter(fits)]) {
      byLabel.set(
        formatAddress(target),
        byLabel.get(formatAddress(target)) ?? target,
      );
    }
    return byLabel;
  };
  const metrics = new ProbeMetrics({ node });
  const stampMetrics = stamp === undefined
    ? undefined
    : new (await import("./stamp_metrics.ts")).StampMetrics(
      metrics.registry,
      { ...stamp, onNote: out.warn },
    );
  let endpoint;
  try {
    endpoint = serveMetrics(listen, {
      metrics: metrics.registry,
      probe: probeHandler({ timeoutMs: options.timeoutMs, size, allow, node }),
      links: () => readLinks(metrics.registry, node),
    }, { onWarning: out.warn });
  } catch (error) {
    await sources?.stop();
    out.error(error);
    return EXIT_FAILURE;
  }
  if (listInterfaces() === undefined) {
    out.warn(
      `cannot list the network interfaces, so /probe cannot tell a local subnet's broadcast address and probes loopback targets only${
        sources === undefined
          ? ""
          : ", and the targets of --targets-file and --targets-dns may include this host"
      }: grant --allow-sys=networkInterfaces`,
    );
  }
  const controller = new AbortController();
  const removeSignalListeners = onStopSignals(() => controller.abort());
  const removeStatsListener = survivePeerStatsSignal();
  const url = `http://${formatAddress(endpoint.addr)}/metrics`;
  const format = values.ndjson ? "ndjson" : quiet ? "quiet" : "text";
  const start = union(initial);
  if (format === "ndjson") {
    out.line(JSON.stringify({
      event: "monitor",
      node,
      targets: [...start.keys()],
      flows,
      size,
      stamp: stamp !== undefined,
      interval_ms: intervalMs,
      timeout_ms: options.timeoutMs,
      metrics: url,
    }));
  } else {
    (format === "text" ? out.line : out.status)(
      `MONITOR ${
        [...start.keys()].join(", ") || "(no targets yet)"
      }: ${size}-byte ${stamp ? "STAMP " : ""}probes, every ${intervalMs} ms${
        flows > 1 ? `, ${flows} flows each` : ""
      }; metrics on ${url}${format === "text" ? "" : "\n"}`,
    );
  }
  const sendFailed = new Set<string>();
  const onEvent = (label: string, event: ProbeEvent) => {
    if (event.type === "send_error" && !sendFailed.has(label)) {
      // Once per target: the counter has them all.
      sendFailed.add(label);
      out.error(new Error(`Cannot send to ${label}: ${event.reason}`));
    }
    if (controller.signal.aborted || out.closed || format === "quiet") return;
    if (format === "ndjson") {
      if (event.type === "sweep") return;
      out.line(JSON.stringify({ target: label, ...eventJson(event) }));
    } else if (event.type === "reply") {
      out.line(formatReply(event, label, flows));
    } else if (event.type === "lost") {
      out.line(formatLost(event, label, flows));
    }
  };
  let failure: unknown;
  const runs = new Map<
    string,
    { stop: AbortController; done: Promise<void> }
  >();
  const ending = new Set<Promise<void>>();
  const begin = (label: string, target: ResolvedAddress) => {
    const stop = new AbortController();
    const done = probeTarget(target, metrics.tallies(label, flows), {
      intervalMs,
      timeoutMs: options.timeoutMs,
      size,
      format: stampMetrics?.format(label),
      signal: AbortSignal.any([stop.signal, controller.signal]),
      onEvent: (event) => onEvent(label, event),
    }).catch((error) => {
      if (stop.signal.aborted) return;
      failure ??= error;
      controller.abort();
    });
    runs.set(label, { stop, done });
  };
  const end = (label: string) => {
    const run = runs.get(label)!;
    run.stop.abort();
    runs.delete(label);
    metrics.remove(label);
    stampMetrics?.remove(label);
    // A target that comes back may report its failed sends again.
    sendFailed.delete(label);
    // Held until it has ended: a fleet that churns keeps no list of runs.
    ending.add(run.done);
    run.done.then(() => ending.delete(run.done));
  };
  for (const [label, target] of start) begin(label, target);
  const follow = (dynamic: readonly ResolvedAddress[]) => {
    if (controller.signal.aborted) return;
    const next = union(dynamic);
    try {
      checkFlowBudget(next.size, flows, budget);
    } catch (error) {
      out.error(new Error(`${errorMessage(error)}; the last good set stays`));
      return;
    }
    const removed = [...runs.keys()].filter((label) => !next.has(label));
    const added = [...next.keys()].filter((label) => !runs.has(label));
    for (const label of removed) end(label);
    for (const label of added) begin(label, next.get(label)!);
    if (added.length + removed.length === 0 || out.closed) return;
    if (format === "ndjson") {
      out.line(JSON.stringify({
        event: "targets",
        added,
        removed,
        targets: runs.size,
      }));
    } else if (format === "text") {
      out.line(
        `TARGETS ${runs.size}: ${
          [
            added.length > 0 && `added ${added.join(", ")}`,
            removed.length > 0 && `removed ${removed.join(", ")}`,
          ].filter(Boolean).join("; ")
        }`,
      );
    }
  };
  following.follow = follow;
  if (pending !== undefined) follow(pending);
  try {
    await new Promise<void>((resolve) => {
      if (controller.signal.aborted) resolve();
      controller.signal.addEventListener("abort", () => resolve(), {
        once: true,
      });
    });
    await sources?.stop();
    for (const label of [...runs.keys()]) end(label);
    await Promise.all([...ending]);
    if (failure === undefined) return EXIT_OK;
    out.error(failure);
    return EXIT_FAILURE;
  } finally {
    removeSignalListeners();
    removeStatsListener();
    await endpoint.close();
  }
}
