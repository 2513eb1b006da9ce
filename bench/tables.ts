/**
 * The benchmark's tables: the server, client and pacing tables as Markdown,
 * each row's ratios to a reference row, and the echoes/s bar chart as SVG.
 *
 * @module
 */

import type { ClientMeasurement, PacingMeasurement } from "./targets.ts";

/** The aggregate of every round of one server at one window and size. */
export interface Measurement {
  /** Server name. */
  server: string;
  /** Datagrams in flight. */
  window: number;
  /** Payload bytes. */
  size: number;
  /** Median over the rounds of echoes per second. */
  rate: number;
  /** Median round trip in microseconds. */
  p50: number;
  /**
   * The lowest of the rounds' median round trips, microseconds: at one in
   * flight a closed loop here either keeps both sides awake or lets them
   * sleep and pays the wake-up, round by round, so the median over a few
   * rounds is a coin toss between the two modes and the best round is the
   * awake one.
   */
  bestP50: number;
  /** 99th percentile round trip in microseconds. */
  p99: number;
  /** Lost datagrams over all rounds. */
  lost: number;
  /** Corrupt replies over all rounds. */
  corrupt: number;
  /** Server CPU use in percent of one core (Linux only, else NaN). */
  serverCpu: number;
  /** Load generator CPU use in percent of one core (Linux only, else NaN). */
  generatorCpu: number;
}

/** Returns the percentile `q` (0-1) of `[microseconds, count]` pairs. */
export function percentile(
  histogram: Map<number, number>,
  q: number,
): number {
  let total = 0;
  for (const count of histogram.values()) total += count;
  const target = q * total;
  let seen = 0;
  for (const key of [...histogram.keys()].sort((a, b) => a - b)) {
    seen += histogram.get(key)!;
    if (seen >= target) return key;
  }
  return NaN;
}

/** Returns the median of numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2
    ? sorted[middle]!
    : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Whole numbers with thousands separators. */
export const NUMBER = new Intl.NumberFormat("en-US", {
  maximumFractionDigits: 0,
});

/** `a ÷ b` as `1.23x`. */
export function ratio(a: number, b: number): string {
  return `${(a / b).toFixed(2)}x`;
}

/** Microseconds to one decimal. */
export const MICROS = new Intl.NumberFormat("en-US", {
  maximumFractionDigits: 1,
});

/** Formats measurements as a Markdown table, each row's ratios to the `reference` row of its window and size. */
export function formatTable(rows: Measurement[], reference: string): string {
  const lines = [
    `| server | window | bytes | echoes/s | p50 µs | p99 µs | echoes/s ÷ ${reference} | p50 ÷ ${reference} | server CPU | server CPU µs/echo | generator CPU | lost/corrupt | best-round p50 µs | best-round p50 ÷ ${reference} |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const row of rows) {
    const ref = rows.find((r) =>
      r.server === reference && r.window === row.window && r.size === row.size
    );
    const cpu = (v: number) => Number.isNaN(v) ? "n/a" : `${v.toFixed(0)}%`;
    lines.push(
      `| ${row.server} | ${row.window} | ${row.size} | ${
        NUMBER.format(row.rate)
      } | ${MICROS.format(row.p50)} | ${MICROS.format(row.p99)} | ${
        ref ? ratio(row.rate, ref.rate) : "-"
      } | ${ref ? ratio(row.p50, ref.p50) : "-"} | ${cpu(row.serverCpu)} | ${
        Number.isNaN(row.serverCpu)
          ? "n/a"
          : (row.serverCpu * 10_000 / row.rate).toFixed(1)
      } | ${cpu(row.generatorCpu)} | ${row.lost}/${row.corrupt} | ${
        MICROS.format(row.bestP50)
      } | ${ref ? ratio(row.bestP50, ref.bestP50) : "-"} |`,
    );
  }
  return lines.join("\n");
}

/**
 * Formats client measurements: echoes/s as ratios to the `generator` row,
 * round trips as ratios to each row's `reference` (the C row that times
 * them the same way), both at the row's window.
 */
export function formatClientTable(
  rows: ClientMeasurement[],
  generator: string,
): string {
  const lines = [
    `| client | window | echoes/s | p50 µs | best-round p50 µs | min µs | echoes/s ÷ ${generator} | round trips against | p50 ÷ | best-round p50 ÷ | min ÷ | lost/corrupt |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
  ];
  for (const row of rows) {
    const at = (name: string | undefined) =>
      rows.find((r) => r.client === name && r.window === row.window);
    const gen = row.reference === undefined ? undefined : at(generator);
    const ref = at(row.reference);
    const of = (mine: number, theirs: number | undefined) =>
      theirs === undefined ? "-" : ratio(mine, theirs);
    lines.push(
      `| ${row.client} | ${row.window} | ${NUMBER.format(row.rate)} | ${
        MICROS.format(row.p50)
      } | ${MICROS.format(row.bestP50)} | ${MICROS.format(row.min)} | ${
        of(row.rate, gen?.rate)
      } | ${row.reference ?? "-"} | ${of(row.p50, ref?.p50)} | ${
        of(row.bestP50, ref?.bestP50)
      } | ${of(row.min, ref?.min)} | ${row.lost}/${row.corrupt} |`,
    );
  }
  return lines.join("\n");
}

/** Formats pacing measurements. */
export function formatPacingTable(rows: PacingMeasurement[]): string {
  const lines = [
    "| sender | received | gaps within ±5% | largest burst | p50 gap error µs | p99 gap error µs |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const row of rows) {
    lines.push(
      `| ${row.sender} | ${row.received} | ${
        (row.within * 100).toFixed(1)
      }% | ${row.largestBurst} | ${MICROS.format(row.p50ErrorUs)} | ${
        MICROS.format(row.p99ErrorUs)
      } |`,
    );
  }
  return lines.join("\n");
}

const COLOURS = ["#2f6f9f", "#9fbf3f", "#df8f2f", "#8f5faf", "#5f5f5f"];

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(
    />/g,
    "&gt;",
  );
}

/** Draws echoes/s per server, grouped by window and size, as an SVG bar chart. */
export function barChart(rows: Measurement[], title: string): string {
  const servers = [...new Set(rows.map((r) => r.server))];
  const groups = [...new Set(rows.map((r) => `${r.window}|${r.size}`))];
  const max = Math.max(...rows.map((r) => r.rate));
  const bar = 28;
  const gap = 24;
  const groupWidth = servers.length * bar + gap;
  const left = 70;
  const top = 40;
  const height = 240;
  const width = left + groups.length * groupWidth + 20;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${
      top + height + 80
    }" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="20" font-size="14">${escapeXml(title)}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const value = max * i / 4;
    const y = top + height - height * i / 4;
    parts.push(
      `<line x1="${left}" x2="${
        width - 10
      }" y1="${y}" y2="${y}" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${y + 4}" text-anchor="end">${
        NUMBER.format(value)
      }</text>`,
    );
  }
  groups.forEach((group, g) => {
    const [window, size] = group.split("|");
    const x0 = left + gap / 2 + g * groupWidth;
    servers.forEach((server, s) => {
      const row = rows.find((r) =>
        r.server === server && `${r.window}|${r.size}` === group
      );
      if (!row) return;
      const h = height * row.rate / max;
      parts.push(
        `<rect x="${x0 + s * bar}" y="${top + height - h}" width="${
          bar - 4
        }" height="${h}" fill="${COLOURS[s % COLOURS.length]}"><title>${
          escapeXml(server)
        }: ${NUMBER.format(row.rate)} echoes/s</title></rect>`,
      );
    });
    parts.push(
      `<text x="${x0 + (servers.length * bar) / 2}" y="${
        top + height + 16
      }" text-anchor="middle">W=${window}, ${size} B</text>`,
    );
  });
  servers.forEach((server, s) => {
    const x = left + s * 150;
    const y = top + height + 44;
    parts.push(
      `<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${
        COLOURS[s % COLOURS.length]
      }"/>`,
      `<text x="${x + 16}" y="${y}">${escapeXml(server)}</text>`,
    );
  });
  parts.push(
    `<text x="${left}" y="${
      top + height + 70
    }" fill="#555">echoes per second, higher is better</text>`,
    "</svg>",
  );
  return parts.join("\n") + "\n";
}
