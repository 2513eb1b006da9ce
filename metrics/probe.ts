/**
 * The monitor's Prometheus metrics, per `target` and `flow` label (and a
 * `node` label on every series when given): the RTT histogram,
 * the probe counters, the jitter gauges and `udp_echo_probe_up`, read from
 * each target's {@linkcode ProbeTally} at scrape time (the histogram is
 * fed as replies come). Also the `/probe` handler, which runs a few probes
 * when Prometheus scrapes, as blackbox_exporter does.
 *
 * @module
 */

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import {
  formatAddress,
  parseHost,
  parsePort,
  type ResolvedAddress,
} from "../net/address.ts";
import { resolveAddress } from "../net/resolve.ts";
import { errorMessage } from "../net/errors.ts";
import { ProbeTally, type TargetCounts } from "../measure/monitor.ts";
import { runFlows } from "../measure/run.ts";
import { ProbeRequestError } from "./http.ts";
import { type ProbeAllowEntry, probeTargetRefusal } from "./_probe_policy.ts";

/**
 * Upper bounds of the RTT histogram's buckets, in seconds: from 50 µs to
 * 10 s, about three to a decade, so loopback and intercontinental paths
 * both get resolution.
 */
export const RTT_BUCKETS_SECONDS: readonly number[] = [
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

const COUNTERS: readonly [keyof TargetCounts, string, string][] = [
  ["sent", "udp_echo_probes_sent_total", "Probes that left this host."],
  [
    "received",
    "udp_echo_probes_received_total",
    "Probes with an intact reply within the timeout.",
  ],
  [
    "lost",
    "udp_echo_probes_lost_total",
    "Probes without any reply within the timeout.",
  ],
  [
    "late",
    "udp_echo_probes_late_total",
    "First intact replies that came after their probe was counted lost.",
  ],
  [
    "duplicates",
    "udp_echo_probes_duplicates_total",
    "Intact replies beyond the first for a probe.",
  ],
  [
    "corrupted",
    "udp_echo_probes_corrupted_total",
    "Replies whose bytes differ from the probe (truncated ones included).",
  ],
  [
    "sendErrors",
    "udp_echo_probes_send_errors_total",
    "Probes whose send failed (they never left, and are not lost).",
  ],
];

/** The labels of one flow's series. */
type FlowLabels = "target" | "flow";

/** Options for {@linkcode ProbeMetrics}. */
export interface ProbeMetricsOptions {
  /** The `node` label every series carries: the source of the probes. */
  node?: string;
}

/** A registry of probe metrics and the tallies of each target it labels. */
export class ProbeMetrics {
  /** The registry to serve. */
  readonly registry: Registry = new Registry();
  readonly #tallies = new Map<string, ProbeTally[]>();
  readonly #rtt: Histogram<FlowLabels>;

  constructor(options: ProbeMetricsOptions = {}) {
    if (options.node !== undefined) {
      this.registry.setDefaultLabels({ node: options.node });
    }
    const registers = [this.registry];
    const labelNames: FlowLabels[] = ["target", "flow"];
    const tallies = this.#tallies;
    const each = function* () {
      for (const [target, flows] of tallies) {
        for (const [flow, tally] of flows.entries()) {
          yield [{ target, flow: String(flow) }, tally] as const;
        }
      }
    };
    this.#rtt = new Histogram({
      name: "udp_echo_probe_rtt_seconds",
      help: "Round-trip times of probes answered intact within the timeout.",
      labelNames,
      buckets: [...RTT_BUCKETS_SECONDS],
      registers,
    });
    for (const [key, name, help] of COUNTERS) {
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const [labels, tally] of each()) {
            this.inc(labels, tally.counts[key]);
          }
        },
      });
    }
    const gauge = (
      name: string,
      help: string,
      read: (tally: ProbeTally) => number,
    ) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const [labels, tally] of each()) {
            const value = read(tally);
            // No sample yet: no series, rather than a NaN.
            if (!Number.isNaN(value)) this.set(labels, value);
          }
        },
      });
    gauge(
      "udp_echo_probe_jitter_ipdv_seconds",
      "Mean absolute RTT difference of the latest 16 pairs of consecutive probes both answered.",
      (tally) => tally.ipdvMs / 1000,
    );
    gauge(
      "udp_echo_probe_jitter_rfc3550_seconds",
      "RFC 3550 interarrival jitter over RTTs in arrival order.",
      (tally) => tally.rfc3550Ms / 1000,
    );
    gauge(
      "udp_echo_probe_up",
      "1 when any of the last 3 probes got an intact reply in time, else 0.",
      (tally) => tally.up ? 1 : 0,
    );
  }

  /** The tally of `target` (its label) and its one flow, made on first use. */
  tally(target: string): ProbeTally {
    return this.tallies(target, 1)[0]!;
  }

  /**
   * The tallies of `target`'s `flows` flows (`flow` labels 0 to flows - 1),
   * made on first use; each feeds the histogram. Throws RangeError when the
   * target has tallies for another number of flows.
   */
  tallies(target: string, flows: number): ProbeTally[] {
    let made = this.#tallies.get(target);
    if (made === undefined) {
      const flowTallies: ProbeTally[] = Array.from(
        { length: flows },
        (_, flow) => {
          const labels = { target, flow: String(flow) };
          // Every series of the flow exists from the start, at zero.
          this.#rtt.zero(labels);
          return new ProbeTally((rttMs) => {
            // A removed target's last replies must not bring its series back.
            if (this.#tallies.get(target) !== flowTallies) return;
            this.#rtt.observe(labels, rttMs / 1000);
          });
        },
      );
      made = flowTallies;
      this.#tallies.set(target, made);
    } else if (made.length !== flows) {
      throw new RangeError(
        `Cannot count ${target} over ${flows} flows: it has ${made.length}`,
      );
    }
    return made;
  }

  /** Forgets `target`: its series leave the exposition. */
  remove(target: string): void {
    const made = this.#tallies.get(target);
    if (made === undefined) return;
    this.#tallies.delete(target);
    for (const flow of made.keys()) {
      this.#rtt.remove({ target, flow: String(flow) });
    }
  }

  /** The targets counted, in the order they were added. */
  targets(): string[] {
    return [...this.#tallies.keys()];
  }
}

/** The probes one `/probe` scrape may ask for. */
export const PROBE_COUNT_RANGE = { min: 1, max: 100 } as const;
/** The probes of one `/probe` scrape leave this many ms apart. */
export const PROBE_INTERVAL_MS = 10;
/** `/probe` scrapes that run at once; more are answered 503 at once. */
export const PROBE_CONCURRENCY = 8;
/** How long a `/probe` waits for its target's name to resolve, in ms. */
export const PROBE_RESOLVE_TIMEOUT_MS = 2000;
/**
 * Probe state kept per scrape: the smallest power of two that holds
 * {@linkcode PROBE_COUNT_RANGE}'s most, so a scrape costs the same however
 * large the monitor's own ring is.
 */
const PROBE_RING = 128;

/** Options for {@linkcode probeHandler}. */
export interface ProbeHandlerOptions {
  /** A probe without a reply this long is lost, in ms. */
  timeoutMs: number;
  /** Payload bytes per probe. */
  size?: number;
  /** The `node` label of every series, as the monitor's own carry it. */
  node?: string;
  /** `--probe-allow`: when not empty, a target must match one entry. */
  allow?: readonly ProbeAllowEntry[];
  /** Scrapes at once; default {@linkcode PROBE_CONCURRENCY}. */
  concurrency?: number;
  /** This host's interfaces, read at each scrape; default: listed when permitted. */
  interfaces?: () => readonly Deno.NetworkInterfaceInfo[] | undefined;
}

/**
 * This host's interfaces, or `undefined` when the process may not list
 * them (`--allow-sys=networkInterfaces`). Never prompts, never throws.
 */
export function listInterfaces(): Deno.NetworkInterfaceInfo[] | undefined {
  try {
    const { state } = Deno.permissions.querySync({
      name: "sys",
      kind: "networkInterfaces",
    });
    return state === "granted" ? Deno.networkInterfaces() : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The `/probe?target=HOST:PORT&count=N` handler: resolves the target (at
 * most {@linkcode PROBE_RESOLVE_TIMEOUT_MS}), checks it against the target
 * policy (`_probe_policy.ts`), runs N probes (default 1, at most 100)
 * {@linkcode PROBE_INTERVAL_MS} apart and resolves to their metrics, plus
 * blackbox_exporter's `probe_success` and `probe_duration_seconds`. Throws
 * {@linkcode ProbeRequestError}: 400 for a missing, bad or refused target
 * or count, or a name that does not resolve in time; 503 when
 * `concurrency` scrapes run already. A slot is held until the scrape ends
 * and its name lookup, which cannot be cancelled, has returned.
 */
export function probeHandler(
  options: ProbeHandlerOptions,
): (query: URLSearchParams, signal: AbortSignal) => Promise<Registry> {
  const concurrency = options.concurrency ?? PROBE_CONCURRENCY;
  const interfaces = options.interfaces ?? listInterfaces;
  let running = 0;
  return async (query, signal) => {
    if (running >= concurrency) {
      throw new ProbeRequestError(
        `Cannot probe now: ${concurrency} probes are running; try again later`,
        { status: 503 },
      );
    }
    running++;
    let holds = 1;
    const release = () => {
      if (--holds === 0) running--;
    };
    try {
      const started = performance.now();
      const text = query.get("target");
      const count = probeCount(query.get("count"));
      const target = await probeTarget(text, signal, (lookup) => {
        holds++;
        lookup.then(release, release);
      });
      const refusal = probeTargetRefusal(target, {
        allow: options.allow ?? [],
        interfaces: interfaces(),
      });
      if (refusal !== undefined) {
        throw new ProbeRequestError(
          `Cannot probe target "${text}": ${refusal}`,
        );
      }
      return await runScrape(target, count, options, signal, started);
    } finally {
      release();
    }
  };
}

async function runScrape(
  target: ResolvedAddress,
  count: number,
  options: ProbeHandlerOptions,
  signal: AbortSignal,
  started: number,
): Promise<Registry> {
  const metrics = new ProbeMetrics({ node: options.node });
  const tally = metrics.tally(formatAddress(target));
  await runFlows({
    target,
    size: options.size,
    intervalMs: PROBE_INTERVAL_MS,
    timeoutMs: options.timeoutMs,
    waitMs: options.timeoutMs,
    count,
    signal,
    ring: PROBE_RING,
    onSend: () => tally.sent(),
    onEvent: (event) => tally.record(event),
  });
  const registers = [metrics.registry];
  new Gauge({
    name: "probe_success",
    help: "1 when any probe got an intact reply in time (blackbox_exporter).",
    registers,
  }).set(tally.counts.received > 0 ? 1 : 0);
  new Gauge({
    name: "probe_duration_seconds",
    help: "How long the probes of this scrape took (blackbox_exporter).",
    registers,
  }).set((performance.now() - started) / 1000);
  return metrics.registry;
}

/**
 * Reads and resolves the target; a name's lookup is handed to `onLookup`
 * first, since it goes on after a timeout gives up on it.
 */
async function probeTarget(
  text: string | null,
  signal: AbortSignal,
  onLookup: (lookup: Promise<unknown>) => void,
): Promise<ResolvedAddress> {
  if (text === null || text === "") {
    throw new ProbeRequestError(
      "Cannot probe: the query needs target=HOST:PORT",
    );
  }
  const match = /^(\[[^\]]+\]|[^:[\]]+):(\d+)$/.exec(text);
  let host: string;
  let port: number;
  try {
    if (match === null) throw new RangeError("no port");
    host = parseHost(match[1]!);
    port = parsePort(match[2]!);
    if (port === 0) throw new RangeError("port 0");
  } catch {
    throw new ProbeRequestError(
      `Cannot probe target "${text}": expected HOST:PORT or [V6ADDR]:PORT with a port from 1 to 65535`,
    );
  }
  const lookup = resolveAddress({ hostname: host, port });
  onLookup(lookup);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      lookup,
      new Promise<never>((_, reject) => {
        const fail = () =>
          reject(
            new Error(
              `cannot resolve ${host}: no answer within ${
                PROBE_RESOLVE_TIMEOUT_MS / 1000
              } s`,
            ),
          );
        timer = setTimeout(fail, PROBE_RESOLVE_TIMEOUT_MS);
        onAbort = fail;
        signal.addEventListener("abort", fail, { once: true });
      }),
    ]);
  } catch (error) {
    throw new ProbeRequestError(
      `Cannot probe target "${text}": ${errorMessage(error)}`,
    );
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) signal.removeEventListener("abort", onAbort);
  }
}

function probeCount(text: string | null): number {
  if (text === null) return 1;
  const { min, max } = PROBE_COUNT_RANGE;
  if (!/^\d{1,3}$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new ProbeRequestError(
      `Cannot probe with count "${text}": expected a whole number from ${min} to ${max}`,
    );
  }
  return Number(text);
}
