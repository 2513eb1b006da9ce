/**
 * The monitor's links as the live page shows them (`/api/links`): one row
 * per source → target, read from the monitor's own registry at request
 * time, so the page and `/metrics` never disagree. The series of a
 * target's flows are added up; percentiles are estimated from the
 * histogram buckets as Prometheus's `histogram_quantile` does, over
 * everything since the monitor started.
 *
 * {@linkcode LINK_METRICS} is the one place that names the metrics and
 * labels the page reads: when a metric is renamed, change it there.
 *
 * @module
 */

import type { Registry } from "prom-client";

/** The metric and label names each column of the page is read from. */
export const LINK_METRICS = {
  /** Counter: probes sent, per target (and flow). */
  sent: "udp_echo_probes_sent_total",
  /** Counter: probes without any reply within the timeout. */
  lost: "udp_echo_probes_lost_total",
  /** Gauge: 1 when any of the last few probes got an intact reply. */
  up: "udp_echo_probe_up",
  /** Histogram: round-trip times, in seconds. */
  rtt: "udp_echo_probe_rtt_seconds",
  /** Histogram (`--stamp`): one-way delay per `direction`, in seconds. */
  oneWay: "udp_echo_stamp_one_way_delay_seconds",
  /** Counter (`--stamp`): probes lost per `direction`. */
  lostByDirection: "udp_echo_stamp_lost_total",
  /** The label naming the source node (on every series, when given). */
  sourceLabel: "node",
  /** The label naming the target. */
  targetLabel: "target",
  /** The label naming a direction: `forward` or `backward`. */
  directionLabel: "direction",
} as const;

/** The percentiles the page shows. */
export const LINK_QUANTILES: readonly number[] = [0.5, 0.9, 0.99];

/** Rows one `/api/links` answer holds at most, so its size is bounded. */
export const MAX_LINKS = 1000;

/** Percentiles in seconds, in the order of {@linkcode LINK_QUANTILES}; null without samples. */
export type Percentiles = (number | null)[];

/** One source → target link. */
export interface LinkRow {
  /** The `node` label, or the monitor's own name. */
  source: string;
  /** The `target` label. */
  target: string;
  /** Flows of the target whose `up` is 1, and flows with an `up` series. */
  up: { flows: number; of: number };
  /** Probes sent, all flows. */
  sent: number;
  /** Probes lost (either way), all flows. */
  lost: number;
  /** With STAMP: probes lost on the way there and back; null without. */
  lostForward: number | null;
  /** See `lostForward`. */
  lostBackward: number | null;
  /** Round-trip time percentiles. */
  rtt: Percentiles;
  /** With STAMP: one-way delay percentiles there; null without. */
  forward: Percentiles | null;
  /** With STAMP: one-way delay percentiles back; null without. */
  backward: Percentiles | null;
}

/** The `/api/links` document. */
export interface LinksDocument {
  /** The monitor's own name (`--node`), when it has one. */
  node: string | null;
  /** When it was read, as an ISO 8601 string. */
  generated: string;
  /** The percentiles of each `Percentiles` list. */
  quantiles: readonly number[];
  /** The links, in the order the monitor added their targets. */
  links: LinkRow[];
  /** How many links were left out past {@linkcode MAX_LINKS}. */
  leftOut: number;
}

interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** Cumulative bucket counts by upper bound (`+Inf` last). */
type Buckets = Map<number, number>;

/**
 * Reads the links from `registry` (see the module doc). `node` names the
 * source when the series carry no `node` label.
 */
export async function readLinks(
  registry: Registry,
  node?: string,
): Promise<LinksDocument> {
  const M = LINK_METRICS;
  const metrics = await registry.getMetricsAsJSON();
  const samples = new Map<string, Sample[]>();
  for (const metric of metrics) {
    samples.set(metric.name, metric.values as Sample[]);
  }
  const rows = new Map<string, LinkRow>();
  const rowOf = (labels: Sample["labels"]): LinkRow => {
    const source = String(labels[M.sourceLabel] ?? node ?? "");
    const target = String(labels[M.targetLabel] ?? "");
    const key = `${source}\n${target}`;
    let row = rows.get(key);
    if (row === undefined) {
      row = {
        source,
        target,
        up: { flows: 0, of: 0 },
        sent: 0,
        lost: 0,
        lostForward: null,
        lostBackward: null,
        rtt: [],
        forward: null,
        backward: null,
      };
      rows.set(key, row);
    }
    return row;
  };
  for (const { labels, value } of samples.get(M.sent) ?? []) {
    rowOf(labels).sent += value;
  }
  for (const { labels, value } of samples.get(M.lost) ?? []) {
    rowOf(labels).lost += value;
  }
  for (const { labels, value } of samples.get(M.up) ?? []) {
    const row = rowOf(labels);
    row.up.of++;
    if (value === 1) row.up.flows++;
  }
  for (const { labels, value } of samples.get(M.lostByDirection) ?? []) {
    const row = rowOf(labels);
    if (labels[M.directionLabel] === "forward") {
      row.lostForward = (row.lostForward ?? 0) + value;
    } else if (labels[M.directionLabel] === "backward") {
      row.lostBackward = (row.lostBackward ?? 0) + value;
    }
  }
  const rtt = new Map<LinkRow, Buckets>();
  const forward = new Map<LinkRow, Buckets>();
  const backward = new Map<LinkRow, Buckets>();
  addBuckets(samples.get(M.rtt), `${M.rtt}_bucket`, rowOf, () => rtt);
  addBuckets(
    samples.get(M.oneWay),
    `${M.oneWay}_bucket`,
    rowOf,
    (labels) =>
      labels[M.directionLabel] === "forward"
        ? forward
        : labels[M.directionLabel] === "backward"
        ? backward
        : undefined,
  );
  const links = [...rows.values()];
  for (const row of links) {
    row.rtt = percentiles(rtt.get(row));
    if (forward.has(row)) row.forward = percentiles(forward.get(row));
    if (backward.has(row)) row.backward = percentiles(backward.get(row));
    // Loss each way is told by a later reply: with no reply ever, which
    // way the probes were lost is unknown, not zero.
    const answered = [forward.get(row), backward.get(row)].some((buckets) =>
      (buckets?.get(Infinity) ?? 0) > 0
    );
    if (!answered) {
      row.lostForward = null;
      row.lostBackward = null;
    }
  }
  return {
    node: node ?? null,
    generated: new Date().toISOString(),
    quantiles: LINK_QUANTILES,
    links: links.slice(0, MAX_LINKS),
    leftOut: Math.max(0, links.length - MAX_LINKS),
  };
}

/** Adds each `_bucket` sample to its row's buckets in the map `pick` names. */
function addBuckets(
  values: Sample[] | undefined,
  bucketName: string,
  rowOf: (labels: Sample["labels"]) => LinkRow,
  pick: (labels: Sample["labels"]) => Map<LinkRow, Buckets> | undefined,
): void {
  for (const { labels, value, metricName } of values ?? []) {
    if (metricName !== bucketName) continue;
    const into = pick(labels);
    if (into === undefined) continue;
    const row = rowOf(labels);
    let buckets = into.get(row);
    if (buckets === undefined) into.set(row, buckets = new Map());
    const le = labels.le === "+Inf" ? Infinity : Number(labels.le);
    buckets.set(le, (buckets.get(le) ?? 0) + value);
  }
}

/** {@linkcode LINK_QUANTILES} of `buckets`, each null when it is empty. */
function percentiles(buckets: Buckets | undefined): Percentiles {
  return LINK_QUANTILES.map((q) =>
    buckets === undefined ? null : histogramQuantile(q, buckets)
  );
}

/**
 * The `q` quantile of cumulative `buckets`, interpolated linearly inside
 * its bucket as Prometheus's `histogram_quantile` does (the first bucket
 * starts at 0; a rank in the `+Inf` bucket gives the highest finite
 * bound); null when the histogram is empty.
 */
export function histogramQuantile(
  q: number,
  buckets: ReadonlyMap<number, number>,
): number | null {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(bounds[bounds.length - 1] ?? Infinity) ?? 0;
  if (total <= 0 || bounds[bounds.length - 1] !== Infinity) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const upper of bounds) {
    const count = buckets.get(upper)!;
    if (count >= rank) {
      if (upper === Infinity) return bounds[bounds.length - 2] ?? null;
      if (count === below) return upper;
      return lower + (upper - lower) * (rank - below) / (count - below);
    }
    lower = upper;
    below = count;
  }
  return null;
}
