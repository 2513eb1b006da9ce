/**
 * Stress test for the batch engine's memory safety: echoes many
 * content-checked datagrams of random sizes (0 bytes to the family limit,
 * log-uniform so small and large sizes both occur often) through
 * `serveBatch()` while forcing garbage collection on both sides, and fails
 * on any corrupted reply or any receive/send error in the server.
 *
 * Usage:
 *   deno run --v8-flags=--expose-gc --unstable-net --allow-net --allow-ffi --allow-read \
 *     bench/batch_stress.ts [--count N] [--lanes N] [--gc-every N] [--family IPv4|IPv6|both]
 *
 * Prints one JSON line with the totals; exit 0 when nothing was corrupted and
 * the server reported no error, else 1.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { serveBatch } from "../kernel/echo.ts";
import type { AddressFamily } from "../net/address.ts";
import { maxPayload, RECEIVE_BUFFER_SIZE } from "../net/payload.ts";

const MAGIC = 0x5eed_ec40;
const HEADER = 12;
const POOL_SIZE = 1 << 18;
const REPLY_TIMEOUT_MS = 500;

/** Totals of one stress run. */
export interface StressResult {
  /** Datagrams sent, retries included. */
  sent: number;
  /** Replies identical to the datagram sent. */
  intact: number;
  /** Intact replies of zero bytes. */
  empty: number;
  /** The largest payload echoed intact, in bytes. */
  largest: number;
  /** Replies that differ from what was sent. */
  corrupted: number;
  /** Datagrams given up on after the reply timeout (lost, or late). */
  timedOut: number;
  /** Errors the server counted. */
  serverErrors: number;
  /** `gc()` calls made on the client side. */
  clientGcs: number;
  /** `gc()` calls made inside the server's loop. */
  serverGcs: number;
  /** Wall time in seconds. */
  seconds: number;
}

/** Options for {@linkcode runStress}. */
export interface StressOptions {
  /** Datagrams to get echoed intact. */
  count: number;
  /** Concurrent closed loops (sockets), each with one datagram in flight. */
  lanes: number;
  /** Call `gc()` on both sides every this many datagrams/batches (0: never). */
  gcEvery: number;
  /** Families to serve and send over. */
  families: AddressFamily[];
  /** Seed of the size sequence. */
  seed?: number;
}

/** A small deterministic PRNG (mulberry32). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Runs one stress test against a fresh `serveBatch()` per family. */
export async function runStress(options: StressOptions): Promise<StressResult> {
  const gc = (globalThis as { gc?: () => void }).gc;
  const next = random(options.seed ?? 1);
  const pool = new Uint8Array(POOL_SIZE + 65_536);
  for (let i = 0; i < pool.length; i++) pool[i] = (next() * 256) | 0;
  const result: StressResult = {
    sent: 0,
    intact: 0,
    empty: 0,
    largest: 0,
    corrupted: 0,
    timedOut: 0,
    serverErrors: 0,
    clientGcs: 0,
    serverGcs: 0,
    seconds: 0,
  };
  const started = performance.now();
  const controller = new AbortController();
  const servers = options.families.map((family) =>
    serveBatch({
      hostnames: [family === "IPv6" ? "::1" : "127.0.0.1"],
      port: 0,
      signal: controller.signal,
      gcEveryBatches: options.gcEvery,
    })
  );
  let remaining = options.count;
  let seq = 0;

  async function lane(index: number): Promise<void> {
    const family = options.families[index % options.families.length]!;
    const server = servers[index % servers.length]!;
    const hostname = family === "IPv6" ? "::1" : "127.0.0.1";
    const limit = maxPayload(family);
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    const header = new DataView(new ArrayBuffer(HEADER));
    // One datagram in flight per socket: every reply it receives must equal
    // that datagram. After a timeout the socket is replaced, so a late reply
    // can never be mistaken for (or counted as) a corrupted one.
    let conn = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
    let pending: Promise<[Uint8Array, Deno.Addr]> | undefined;
    try {
      while (remaining > 0) {
        // Log-uniform size in [0, limit], so empty (about 6%), small and
        // large datagrams all occur often.
        const size = Math.min(
          limit,
          Math.floor(Math.exp(next() * Math.log(limit + 2))) - 1,
        );
        const mySeq = seq++;
        const offset = (mySeq * 7919) % POOL_SIZE;
        const payload = pool.slice(offset, offset + size);
        if (size >= HEADER) {
          header.setUint32(0, MAGIC);
          header.setUint32(4, mySeq);
          header.setUint32(8, size);
          payload.set(new Uint8Array(header.buffer), 0);
        }
        await conn.send(payload, server.addr);
        result.sent++;
        if (
          gc !== undefined && options.gcEvery > 0 &&
          result.sent % options.gcEvery === 0
        ) {
          gc();
          result.clientGcs++;
        }
        for (;;) {
          pending ??= conn.receive(buffer);
          let timer: ReturnType<typeof setTimeout> | undefined;
          const reply = await Promise.race([
            pending,
            new Promise<undefined>((resolve) => {
              timer = setTimeout(() => resolve(undefined), REPLY_TIMEOUT_MS);
            }),
          ]);
          clearTimeout(timer);
          if (reply === undefined) {
            result.timedOut++;
            conn.close();
            await pending.catch(() => {});
            pending = undefined;
            conn = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
            break;
          }
          pending = undefined;
          const [data] = reply;
          if (sameBytes(data, payload)) {
            result.intact++;
            if (size === 0) result.empty++;
            if (size > result.largest) result.largest = size;
            remaining--;
            break;
          }
          result.corrupted++;
          console.error(
            `corrupted: sent ${size} bytes (seq ${mySeq}), got ${data.length}`,
          );
        }
      }
    } finally {
      conn.close();
      await pending?.catch(() => {});
    }
  }

  try {
    await Promise.all(Array.from({ length: options.lanes }, (_, i) => lane(i)));
  } finally {
    controller.abort();
    await Promise.all(servers.map((server) => server.finished));
  }
  for (const server of servers) {
    result.serverErrors += server.stats().errors;
    result.serverGcs += server.loopStats().forcedGcs;
  }
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      count: { type: "string", default: "3000000" },
      lanes: { type: "string", default: "16" },
      "gc-every": { type: "string", default: "1000" },
      family: { type: "string", default: "both" },
      seed: { type: "string", default: "1" },
    },
  });
  const families: AddressFamily[] = values.family === "both"
    ? ["IPv4", "IPv6"]
    : [values.family as AddressFamily];
  if ((globalThis as { gc?: unknown }).gc === undefined) {
    console.error("warning: gc() not exposed; run with --v8-flags=--expose-gc");
  }
  const result = await runStress({
    count: Number(values.count),
    lanes: Number(values.lanes),
    gcEvery: Number(values["gc-every"]),
    families,
    seed: Number(values.seed),
  });
  console.log(JSON.stringify(result));
  return result.corrupted === 0 && result.serverErrors === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
