/**
 * What `bench/soak.ts` reports: its samples over time as a Markdown table,
 * the counter totals read from the server's shutdown event and from its
 * `/metrics`, and the checks that decide the exit code. Pure functions, so
 * that `soak_test.ts` can check them without a soak.
 *
 * @module
 */

import { NUMBER } from "./tables.ts";

/** Resident size and open descriptors of one process at one moment. */
export interface Usage {
  /** `VmRSS` in MB. */
  rssMb: number;
  /** Entries of `/proc/PID/fd`. */
  fds: number;
}

/** One reading, taken every second. */
export interface Sample {
  /** Seconds since the load started. */
  t: number;
  /** No slow connection or `/probe` request of the soak was open. */
  quiet: boolean;
  /** Echoes the soak's client got so far. */
  echoes: number;
  /** The longest wait for an echo since the sample before, in ms. */
  maxGapMs: number;
  /** Datagrams with forged sources sent so far. */
  spoofed: number;
  /** Datagrams the server had received at the last scrape. */
  serverReceived: number;
  /** The server's figures; absent when they could not be read. */
  server?: Usage;
  /** The monitor's figures; absent without a monitor or a reading. */
  monitor?: Usage;
}

/** The server's counters, summed over sockets, reasons and operations. */
export interface Totals {
  /** Datagrams received. */
  received: number;
  /** Datagrams echoed. */
  echoed: number;
  /** Datagrams dropped, every reason. */
  dropped: number;
  /** Failed receives and sends. */
  errors: number;
}

/** One check of the soak and whether it held. */
export interface Check {
  /** What was checked. */
  name: string;
  /** Whether it held. */
  ok: boolean;
  /** The figures behind it. */
  detail: string;
}

/** The sum of every sample of `name` in a Prometheus exposition; NaN when none. */
export function sumSeries(text: string, name: string): number {
  let sum = NaN;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    sum = Number.isNaN(sum) ? value : sum + value;
  }
  return sum;
}

/** The server's totals from a `/metrics` exposition. */
export function totalsFromMetrics(text: string): Totals {
  return {
    received: sumSeries(text, "udp_echo_received_datagrams_total"),
    echoed: sumSeries(text, "udp_echo_echoed_datagrams_total"),
    // A server that dropped nothing may list no reason at all.
    dropped: sumSeries(text, "udp_echo_dropped_datagrams_total") || 0,
    errors: sumSeries(text, "udp_echo_errors_total") || 0,
  };
}

/**
 * The server's totals from its `--json` stdout: the `shutdown` event;
 * undefined when there is none.
 */
export function totalsFromShutdown(stdout: string): Totals | undefined {
  const line = stdout.split("\n").findLast((text) =>
    text.startsWith('{"event":"shutdown"')
  );
  if (line === undefined) return undefined;
  const event = JSON.parse(line);
  const dropped = Object.values(event.dropped as Record<string, number>)
    .reduce((sum, count) => sum + count, 0);
  return {
    received: event.received,
    echoed: event.echoed,
    dropped,
    errors: event.errors,
  };
}

/** Checks received = echoed + dropped + errors, exactly. */
export function identityCheck(
  source: string,
  totals: Totals | undefined,
): Check {
  const name = `counter identity (${source})`;
  if (totals === undefined) {
    return { name, ok: false, detail: "no figures to check" };
  }
  const { received, echoed, dropped, errors } = totals;
  const ok = [received, echoed, dropped, errors].every(Number.isFinite) &&
    received === echoed + dropped + errors;
  return {
    name,
    ok,
    detail: `received ${NUMBER.format(received)} ${ok ? "=" : "≠"} echoed ${
      NUMBER.format(echoed)
    } + dropped ${NUMBER.format(dropped)} + errors ${NUMBER.format(errors)}`,
  };
}

/**
 * Checks that every value stays within `tolerance` (a fraction) of the
 * first; the check fails when there is no value to judge.
 */
export function flatCheck(
  name: string,
  values: number[],
  tolerance: number,
  unit: string,
): Check {
  const first = values[0];
  if (first === undefined) {
    return { name, ok: false, detail: "no sample after the warm-up" };
  }
  let deviation = 0;
  for (const value of values) {
    deviation = Math.max(deviation, Math.abs(value - first) / first);
  }
  const fixed = (value: number) => value.toFixed(unit === "MB" ? 1 : 0);
  return {
    name,
    ok: deviation <= tolerance,
    detail: `${values.length} quiet samples from ${
      fixed(Math.min(...values))
    } to ${fixed(Math.max(...values))} ${unit}, at most ${
      (deviation * 100).toFixed(1)
    }% from the first (${fixed(first)} ${unit})`,
  };
}

/** Formats checks one a line: `ok` or `FAIL`, the name, the figures. */
export function formatChecks(checks: Check[]): string {
  return checks.map(({ name, ok, detail }) =>
    `${ok ? "ok  " : "FAIL"}  ${name}: ${detail}`
  ).join("\n");
}

function range(values: number[], digits: number): string {
  if (values.length === 0) return "-";
  const low = Math.min(...values).toFixed(digits);
  const high = Math.max(...values).toFixed(digits);
  return low === high ? low : `${low}–${high}`;
}

function usageCells(samples: Sample[], of: "server" | "monitor"): string[] {
  const quiet = samples.filter((s) => s.quiet && s[of] !== undefined);
  const all = samples.flatMap((s) => s[of] === undefined ? [] : [s[of]!.fds]);
  return [
    range(quiet.map((s) => s[of]!.rssMb), 1),
    `${range(quiet.map((s) => s[of]!.fds), 0)}${
      all.length === 0 ? "" : ` (${Math.max(...all)})`
    }`,
  ];
}

/**
 * The samples as a Markdown table, a row per `rowSeconds`: echo rate and
 * longest gap, resident size and descriptors of the quiet samples (the peak
 * under abuse in brackets), the server's receive rate (from its
 * `/metrics`) and the forged datagrams sent.
 */
export function formatSamples(samples: Sample[], rowSeconds: number): string {
  const lines = [
    "| seconds | echoes/s | longest gap ms | server RSS MB | server fds (peak) | monitor RSS MB | monitor fds (peak) | server received/s | forged/s |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  let before: Sample | undefined;
  for (let start = 0; start < (samples.at(-1)?.t ?? 0); start += rowSeconds) {
    const row = samples.filter((s) => s.t > start && s.t <= start + rowSeconds);
    const last = row.at(-1);
    if (last === undefined) continue;
    const from = before ?? { t: 0, echoes: 0, spoofed: 0, serverReceived: 0 };
    const seconds = last.t - from.t;
    const perSecond = (count: number) =>
      NUMBER.format(seconds > 0 ? Math.round(count / seconds) : 0);
    lines.push(
      `| ${start}–${Math.min(start + rowSeconds, Math.round(last.t))} | ${
        perSecond(last.echoes - from.echoes)
      } | ${Math.round(Math.max(...row.map((s) => s.maxGapMs)))} | ${
        [...usageCells(row, "server"), ...usageCells(row, "monitor")]
          .join(" | ")
      } | ${perSecond(last.serverReceived - from.serverReceived)} | ${
        perSecond(last.spoofed - from.spoofed)
      } |`,
    );
    before = last;
  }
  return lines.join("\n");
}
