/**
 * A deterministic fault-injecting UDP relay for tests. It sits between
 * clients and an upstream server, gives each client its own upstream socket
 * (so replies find their way back and flows stay apart), and applies rules to
 * chosen datagrams: drop, duplicate (at once, or each copy `delayMs` after
 * the one before), delay, reorder (hold until the next one has passed),
 * corrupt a byte, or truncate. It counts what it did, so a test
 * can check that a client reports exactly that.
 *
 * Datagrams are numbered per client and per direction from 0, in the order
 * the relay receives them: "the 4th request of each client".
 *
 * @example Drop every client's second request
 * ```ts ignore
 * const relay = serveFaultRelay({
 *   upstream: server.addr,
 *   rules: [{ select: (d) => d.index === 1, action: { type: "drop" } }],
 *   signal,
 * });
 * ```
 *
 * @module
 */

import { serveEcho } from "../server.ts";
import type { HostPort, ResolvedAddress } from "../net/address.ts";
import { RECEIVE_BUFFER_SIZE } from "../net/payload.ts";

/** What the relay does to a selected datagram. */
export type FaultAction =
  | { type: "drop" }
  | { type: "duplicate"; copies?: number; delayMs?: number }
  | { type: "delay"; ms: number }
  | { type: "reorder" }
  | { type: "corrupt"; offset?: number }
  | { type: "truncate"; size: number };

/** Which way a datagram travels through the relay. */
export type Direction = "request" | "reply";

/** A datagram as a rule sees it. */
export interface DatagramInfo {
  /** Which way it travels. */
  direction: Direction;
  /** Its number among this client's datagrams in this direction, from 0. */
  index: number;
  /** Its length in bytes. */
  size: number;
  /** The client it comes from or goes to. */
  client: HostPort;
}

/** A fault: the action for datagrams the selector picks. */
export interface FaultRule {
  /** Which way the rule applies; defaults to `request` (client to server). */
  direction?: Direction;
  /** Picks the datagrams to act on. */
  select: (datagram: DatagramInfo) => boolean;
  /** What to do to them. */
  action: FaultAction;
}

/** What the relay did, datagram by datagram. */
export interface RelayStats {
  /** Datagrams received from clients. */
  requests: number;
  /** Datagrams received from upstream. */
  replies: number;
  /** Datagrams dropped. */
  dropped: number;
  /** Extra copies sent. */
  duplicated: number;
  /** Datagrams held back for a while. */
  delayed: number;
  /** Datagrams sent after the one that followed them. */
  reordered: number;
  /** Datagrams with one byte flipped. */
  corrupted: number;
  /** Datagrams cut short. */
  truncated: number;
}

/** Options for {@linkcode serveFaultRelay}. */
export interface FaultRelayOptions {
  /** The server to relay to. */
  upstream: HostPort;
  /** Address to listen on; defaults to 127.0.0.1. */
  hostname?: string;
  /** Port to listen on; defaults to 0 (a free port). */
  port?: number;
  /** The faults; the first rule that selects a datagram applies. */
  rules?: FaultRule[];
  /** Longest a reordered datagram waits for a successor; defaults to 500 ms. */
  holdMs?: number;
  /** Stops the relay. */
  signal: AbortSignal;
}

/** A running relay. */
export interface FaultRelay {
  /** The address clients send to. */
  addr: Deno.NetAddr;
  /** Settles once the relay has stopped. */
  finished: Promise<void>;
  /** What the relay has done so far. */
  stats: RelayStats;
}

type Timer = ReturnType<typeof setTimeout>;

interface Lane {
  count: number;
  held?: () => Promise<void>;
  holdTimer?: Timer;
}

interface Client {
  address: Deno.NetAddr;
  upstream: Deno.DatagramConn;
  lanes: Record<Direction, Lane>;
  loop: Promise<void>;
}

/** Starts a fault-injecting relay in front of `upstream`. */
export function serveFaultRelay(options: FaultRelayOptions): FaultRelay {
  const { upstream, rules = [], holdMs = 500, signal } = options;
  const hostname = options.hostname ?? "127.0.0.1";
  const front = Deno.listenDatagram({
    hostname,
    port: options.port ?? 0,
    transport: "udp",
  });
  const stats: RelayStats = {
    requests: 0,
    replies: 0,
    dropped: 0,
    duplicated: 0,
    delayed: 0,
    reordered: 0,
    corrupted: 0,
    truncated: 0,
  };
  const clients = new Map<string, Client>();
  const timers = new Set<Timer>();
  const pending = new Set<Promise<void>>();
  let closed = false;

  function track(promise: Promise<void>): void {
    pending.add(promise);
    promise.finally(() => pending.delete(promise));
  }

  async function send(
    conn: Deno.DatagramConn,
    data: Uint8Array,
    to: HostPort,
  ): Promise<void> {
    if (closed) return;
    try {
      await conn.send(data, { ...to, transport: "udp" });
    } catch {
      // A closed socket at shutdown; nothing to deliver any more.
    }
  }

  function later(ms: number, task: () => Promise<void>): void {
    const id = setTimeout(() => {
      timers.delete(id);
      track(task());
    }, ms);
    timers.add(id);
  }

  async function forward(
    client: Client,
    direction: Direction,
    bytes: Uint8Array,
  ): Promise<void> {
    const lane = client.lanes[direction];
    const info: DatagramInfo = {
      direction,
      index: lane.count++,
      size: bytes.length,
      client: { hostname: client.address.hostname, port: client.address.port },
    };
    const [conn, to] = direction === "request"
      ? [client.upstream, upstream]
      : [front, info.client];
    const rule = rules.find((rule) =>
      (rule.direction ?? "request") === direction && rule.select(info)
    );
    // A datagram held for reordering goes out right after its successor.
    const released = lane.held;
    lane.held = undefined;
    if (lane.holdTimer !== undefined) {
      clearTimeout(lane.holdTimer);
      timers.delete(lane.holdTimer);
      lane.holdTimer = undefined;
    }
    const data = bytes.slice();
    const action = rule?.action;
    switch (action?.type) {
      case "drop":
        stats.dropped++;
        break;
      case "duplicate": {
        const copies = action.copies ?? 1;
        stats.duplicated += copies;
        const gap = action.delayMs ?? 0;
        // Copy i leaves i x delayMs after the original: a path that
        // delivers each echo again later, after the run may think it is done.
        if (gap > 0) {
          await send(conn, data, to);
          for (let i = 1; i <= copies; i++) {
            later(i * gap, () => send(conn, data, to));
          }
        } else {
          for (let i = 0; i <= copies; i++) await send(conn, data, to);
        }
        break;
      }
      case "delay":
        stats.delayed++;
        later(action.ms, () => send(conn, data, to));
        break;
      case "reorder": {
        stats.reordered++;
        lane.held = () => send(conn, data, to);
        const id = setTimeout(() => {
          timers.delete(id);
          lane.holdTimer = undefined;
          const held = lane.held;
          lane.held = undefined;
          if (held) track(held());
        }, holdMs);
        lane.holdTimer = id;
        timers.add(id);
        break;
      }
      case "corrupt": {
        if (data.length > 0) {
          const offset = action.offset ?? data.length - 1;
          const at = offset < 0 ? data.length + offset : offset;
          data[at] = data[at]! ^ 0xff;
          stats.corrupted++;
        }
        await send(conn, data, to);
        break;
      }
      case "truncate":
        if (data.length > action.size) stats.truncated++;
        await send(conn, data.subarray(0, action.size), to);
        break;
      default:
        await send(conn, data, to);
    }
    if (released) await released();
  }

  async function upstreamLoop(client: Client): Promise<void> {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    while (!closed) {
      let data: Uint8Array;
      try {
        [data] = await client.upstream.receive(buffer);
      } catch {
        return;
      }
      stats.replies++;
      await forward(client, "reply", data);
    }
  }

  async function frontLoop(): Promise<void> {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    while (!closed) {
      let data: Uint8Array;
      let from: Deno.Addr;
      try {
        [data, from] = await front.receive(buffer);
      } catch {
        return;
      }
      const address = from as Deno.NetAddr;
      const key = `${address.hostname}|${address.port}`;
      let client = clients.get(key);
      if (client === undefined) {
        const conn = Deno.listenDatagram({
          hostname,
          port: 0,
          transport: "udp",
        });
        client = {
          address,
          upstream: conn,
          lanes: { request: { count: 0 }, reply: { count: 0 } },
          loop: Promise.resolve(),
        };
        client.loop = upstreamLoop(client);
        clients.set(key, client);
      }
      stats.requests++;
      await forward(client, "request", data);
    }
  }

  const frontDone = frontLoop();
  const finished = new Promise<void>((resolve) => {
    const stop = async () => {
      closed = true;
      for (const id of timers) clearTimeout(id);
      timers.clear();
      front.close();
      for (const client of clients.values()) client.upstream.close();
      await frontDone;
      await Promise.all([...clients.values()].map((client) => client.loop));
      await Promise.all(pending);
      resolve();
    };
    if (signal.aborted) stop();
    else signal.addEventListener("abort", stop, { once: true });
  });
  return { addr: front.addr as Deno.NetAddr, finished, stats };
}

/** This project's echo server behind a fault relay, for one test. */
export interface FaultyEcho extends AsyncDisposable {
  /** Where clients send: the relay, as a resolved IPv4 address. */
  target: ResolvedAddress;
  /** What the relay has done so far. */
  stats: RelayStats;
}

/**
 * Starts `serveEcho()` on 127.0.0.1 and a relay with `rules` in front of it,
 * both on free ports; `await using` stops both.
 */
export function startFaultyEcho(rules: FaultRule[]): FaultyEcho {
  const controller = new AbortController();
  const server = serveEcho({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
  });
  const relay = serveFaultRelay({
    upstream: server.addr,
    rules,
    signal: controller.signal,
  });
  return {
    target: {
      hostname: relay.addr.hostname,
      port: relay.addr.port,
      family: "IPv4",
    },
    stats: relay.stats,
    async [Symbol.asyncDispose]() {
      controller.abort();
      await Promise.all([server.finished, relay.finished]);
    },
  };
}

/** Selects the datagrams with these numbers (per client and direction). */
export function at(...indices: number[]): (datagram: DatagramInfo) => boolean {
  return (datagram) => indices.includes(datagram.index);
}

/** A peer that echoes every datagram cut to a fixed size. */
export interface TruncatingEcho extends AsyncDisposable {
  /** Where clients send, as a resolved IPv4 address. */
  target: ResolvedAddress;
}

/**
 * Starts a plain echo peer on 127.0.0.1 that sends back only the first
 * `size` bytes of each datagram, as `socat -b SIZE ... PIPE` does, without
 * needing socat; `await using` stops it.
 */
export function startTruncatingEcho(size: number): TruncatingEcho {
  const conn = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  const loop = (async () => {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    while (true) {
      try {
        const [data, from] = await conn.receive(buffer);
        await conn.send(data.subarray(0, size), from);
      } catch {
        return; // closed
      }
    }
  })();
  const { hostname, port } = conn.addr as Deno.NetAddr;
  return {
    target: { hostname, port, family: "IPv4" },
    async [Symbol.asyncDispose]() {
      conn.close();
      await loop;
    },
  };
}
