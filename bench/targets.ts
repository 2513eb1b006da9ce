/**
 * The speed targets of issue 12, judged from one bench run's figures
 * against the C references measured beside them. They live in the bench's
 * output, never in a test: the machine is a noisy shared VM.
 *
 * @module
 */

import type { PacingStats } from "./pacing.ts";

/** One client's figures at one window, against the C echo server. */
export interface ClientMeasurement {
  /** Client name. */
  client: string;
  /** The C client row it is judged against (none for C rows). */
  reference?: string;
  /** Probes in flight. */
  window: number;
  /** Median over the rounds of echoes per second. */
  rate: number;
  /** Median over the rounds of the median round trip, microseconds. */
  p50: number;
  /** The lowest of the rounds' median round trips, microseconds (see `Measurement.bestP50`). */
  bestP50: number;
  /** Median over the rounds of the shortest round trip, microseconds. */
  min: number;
  /** Lost probes over all rounds. */
  lost: number;
  /** Corrupt replies over all rounds. */
  corrupt: number;
}

/** One sender's pacing, medians over the rounds. */
export interface PacingMeasurement extends PacingStats {
  /** Sender name. */
  sender: string;
}

/** A server row as the targets read it. */
export interface ServerFigures {
  server: string;
  window: number;
  size: number;
  rate: number;
  p50: number;
  bestP50: number;
}

/** One judged target. */
export interface Target {
  /** What is measured, e.g. "server 32 in flight echoes/s". */
  target: string;
  /** The row judged. */
  row: string;
  /** The ratio or share measured. */
  value: number;
  /** The goal, e.g. ">= 0.90x C". */
  goal: string;
  /** Whether the value meets the goal. */
  met: boolean;
}

/** Names of the references the targets are judged against. */
export interface References {
  /** The C echo server's row name. */
  server: string;
  /** The C generator's client row (its default timing): the reference of echoes/s. */
  generator: string;
  /** The C paced sender's row name. */
  sender: string;
  /** Payload bytes of the server targets. */
  size: number;
}

/**
 * Judges every row of our server and client against the C references:
 * server 32 in flight >= 0.9x C echoes/s, server 1 in flight p50 <= 1.1x C
 * (best rounds, see `Measurement.bestP50`),
 * client 1 in flight p50 and min <= 1.2x the C client's (the C row each
 * client names as its `reference`, which times round trips as it does),
 * client 32 in flight >= 0.8x the C generator's echoes/s (`generator`,
 * whatever the client's timing), pacing >= 95% of gaps within ±5%.
 * Rows without their reference are left out.
 */
export function judgeTargets(
  servers: ServerFigures[],
  clients: ClientMeasurement[],
  pacing: PacingMeasurement[],
  refs: References,
): Target[] {
  const targets: Target[] = [];
  const atMost = (value: number, limit: number) => value <= limit;
  const atLeast = (value: number, limit: number) => value >= limit;
  function add(
    target: string,
    row: string,
    value: number,
    goal: string,
    met: boolean,
  ) {
    targets.push({ target, row, value, goal, met });
  }
  for (const row of servers) {
    if (row.server === refs.server || row.size !== refs.size) continue;
    if (!row.server.startsWith("server.ts")) continue;
    const c = servers.find((r) =>
      r.server === refs.server && r.window === row.window && r.size === row.size
    );
    if (!c) continue;
    if (row.window === 32) {
      const value = row.rate / c.rate;
      add(
        "server 32 in flight echoes/s",
        row.server,
        value,
        ">= 0.90x C",
        atLeast(value, 0.9),
      );
    }
    if (row.window === 1) {
      const value = row.bestP50 / c.bestP50;
      add(
        "server 1 in flight p50, best round",
        row.server,
        value,
        "<= 1.10x C",
        atMost(value, 1.1),
      );
    }
  }
  for (const row of clients) {
    if (row.reference === undefined) continue;
    const c = clients.find((r) =>
      r.client === row.reference && r.window === row.window
    );
    if (!c) continue;
    if (row.window === 1) {
      const p50 = row.bestP50 / c.bestP50;
      add(
        "client -w 1 p50, best round",
        row.client,
        p50,
        "<= 1.20x C",
        atMost(p50, 1.2),
      );
      const min = row.min / c.min;
      add("client -w 1 min", row.client, min, "<= 1.20x C", atMost(min, 1.2));
    }
    const generator = clients.find((r) =>
      r.client === refs.generator && r.window === row.window
    );
    if (row.window === 32 && generator) {
      const value = row.rate / generator.rate;
      add(
        "client -w 32 echoes/s",
        row.client,
        value,
        ">= 0.80x C",
        atLeast(value, 0.8),
      );
    }
  }
  for (const row of pacing) {
    if (row.sender === refs.sender) continue;
    add(
      "pacing: gaps within ±5%",
      row.sender,
      row.within,
      ">= 95%",
      atLeast(row.within, 0.95),
    );
  }
  return targets;
}

/** Formats judged targets as a Markdown table. */
export function formatTargets(targets: Target[]): string {
  const lines = [
    "| target | row | measured | goal | met |",
    "| --- | --- | ---: | --- | --- |",
  ];
  for (const t of targets) {
    const value = t.goal.endsWith("%")
      ? `${(t.value * 100).toFixed(1)}%`
      : `${t.value.toFixed(2)}x`;
    lines.push(
      `| ${t.target} | ${t.row} | ${value} | ${t.goal} | ${
        t.met ? "yes" : "no"
      } |`,
    );
  }
  return lines.join("\n");
}
