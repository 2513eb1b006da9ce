#!/usr/bin/env -S deno run --unstable-net --allow-net
/**
 * Closed-loop UDP load generator for the echo benchmark.
 *
 * Keeps `window` datagrams of `size` bytes in flight against one echo
 * server: each reply is checked byte for byte against what was sent and
 * immediately replaced by the next datagram of its slot. After a warm-up it
 * counts echoes for `duration` seconds and prints one JSON line with the rate,
 * a round-trip histogram and the counts of lost and corrupt replies.
 *
 * Usage:
 *   deno run --unstable-net --allow-net bench/loadgen.ts \
 *     --port 10000 [--host 127.0.0.1] [--window 32] [--size 64] \
 *     [--duration 3] [--warmup 1]
 *
 * @module
 */

import { parseArgs } from "node:util";

/** What one load run measured. */
export interface LoadResult {
  /** Datagrams in flight. */
  window: number;
  /** Payload size in bytes. */
  size: number;
  /** Seconds measured (after the warm-up). */
  seconds: number;
  /** Echoes received and verified in the measured interval. */
  echoes: number;
  /** Replies whose bytes differed from what was sent (whole run). */
  corrupt: number;
  /** Datagrams given up on after the loss timeout (whole run). */
  lost: number;
  /** Whether the server stopped answering before the end. */
  stalled: boolean;
  /** Failed sends (whole run). */
  sendErrors: number;
  /** Round trips in microseconds as `[microseconds, count]` pairs. */
  histogram: [number, number][];
}

/** Options of {@linkcode runLoad}. */
export interface LoadOptions {
  /** Server host (an IP literal). */
  hostname: string;
  /** Server port. */
  port: number;
  /** Datagrams kept in flight. */
  window: number;
  /** Payload size in bytes, at least 8 (slot and sequence header). */
  size: number;
  /** Seconds to measure. */
  duration: number;
  /** Seconds to run before measuring. */
  warmup: number;
  /** Milliseconds without a reply before a datagram counts as lost. */
  lossTimeout?: number;
}

/** Histogram buckets: one per microsecond up to this bound, the last catches the rest. */
const HISTOGRAM_MICROS = 200_000;

/** Fills a payload so that every byte depends on the slot and sequence number. */
function fill(payload: Uint8Array, slot: number, sequence: number): void {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  view.setUint32(0, slot);
  view.setUint32(4, sequence);
  let x = (slot * 2654435761 + sequence * 40503) >>> 0;
  for (let i = 8; i < payload.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    payload[i] = x >>> 24;
  }
}

/** Returns whether two byte ranges are equal, comparing 32-bit words where it can. */
function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  const n = a.length;
  let i = 0;
  if (a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0) {
    const words = n >>> 2;
    const aw = new Uint32Array(a.buffer, a.byteOffset, words);
    const bw = new Uint32Array(b.buffer, b.byteOffset, words);
    for (let w = 0; w < words; w++) if (aw[w] !== bw[w]) return false;
    i = words << 2;
  }
  for (; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Runs one closed-loop load against an echo server and returns what it measured. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const { hostname, port, window, size } = options;
  if (size < 8) {
    throw new RangeError("Cannot run load: size must be at least 8");
  }
  const lossTimeout = options.lossTimeout ?? 1000;
  const conn = Deno.listenDatagram({
    hostname: hostname.includes(":") ? "::1" : "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  const target = { hostname, port, transport: "udp" as const };
  const payloads = Array.from({ length: window }, () => new Uint8Array(size));
  const sequences = new Uint32Array(window);
  const sentAt = new Float64Array(window);
  const histogram = new Uint32Array(HISTOGRAM_MICROS + 1);
  let counting = false;
  let echoes = 0;
  let corrupt = 0;
  let lost = 0;
  let sendErrors = 0;
  const onSendError = () => sendErrors++;

  function send(slot: number): void {
    const payload = payloads[slot]!;
    fill(payload, slot, ++sequences[slot]!);
    sentAt[slot] = performance.now();
    conn.send(payload, target).catch(onSendError);
  }

  // A datagram lost on the way would stall its slot forever: resend it, count it.
  const watchdog = setInterval(() => {
    const now = performance.now();
    // A server that stopped answering must not hang the run.
    if (now > end + lossTimeout) {
      stalled = true;
      conn.close();
      return;
    }
    for (let slot = 0; slot < window; slot++) {
      if (now - sentAt[slot]! > lossTimeout) {
        lost++;
        send(slot);
      }
    }
  }, Math.max(10, lossTimeout / 4));

  const buffer = new Uint8Array(65_536);
  const warmupEnd = performance.now() + options.warmup * 1000;
  const end = warmupEnd + options.duration * 1000;
  let stalled = false;
  for (let slot = 0; slot < window; slot++) send(slot);
  let started = 0;
  let now = 0;
  try {
    while (true) {
      let reply: Uint8Array;
      try {
        [reply] = await conn.receive(buffer);
      } catch (error) {
        if (stalled) break;
        throw error;
      }
      now = performance.now();
      if (!counting && now >= warmupEnd) {
        counting = true;
        started = now;
      }
      if (now >= end) break;
      if (reply.length < 8) {
        corrupt++;
        continue;
      }
      const slot =
        (reply[0]! << 24 | reply[1]! << 16 | reply[2]! << 8 | reply[3]!) >>> 0;
      const sequence =
        (reply[4]! << 24 | reply[5]! << 16 | reply[6]! << 8 | reply[7]!) >>> 0;
      // A late duplicate of a datagram already given up on is not an echo.
      if (slot >= window || sequence !== sequences[slot]) {
        if (slot >= window) corrupt++;
        continue;
      }
      if (!equalBytes(reply, payloads[slot]!)) {
        corrupt++;
        continue;
      }
      if (counting) {
        echoes++;
        const micros = Math.round((now - sentAt[slot]!) * 1000);
        histogram[micros < HISTOGRAM_MICROS ? micros : HISTOGRAM_MICROS]!++;
      }
      send(slot);
    }
  } finally {
    clearInterval(watchdog);
    if (!stalled) conn.close();
  }
  const pairs: [number, number][] = [];
  for (let i = 0; i < histogram.length; i++) {
    if (histogram[i]) pairs.push([i, histogram[i]!]);
  }
  return {
    window,
    size,
    seconds: (now - started) / 1000,
    echoes,
    corrupt,
    lost,
    stalled,
    sendErrors,
    histogram: pairs,
  };
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
      window: { type: "string", default: "32" },
      size: { type: "string", default: "64" },
      duration: { type: "string", default: "3" },
      warmup: { type: "string", default: "1" },
    },
  });
  if (values.port === undefined) {
    console.error("error: --port is required");
    return 2;
  }
  const result = await runLoad({
    hostname: values.host,
    port: Number(values.port),
    window: Number(values.window),
    size: Number(values.size),
    duration: Number(values.duration),
    warmup: Number(values.warmup),
  });
  console.log(JSON.stringify(result));
  return 0;
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
