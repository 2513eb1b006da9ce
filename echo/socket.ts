/**
 * The portable I/O backend: `Deno.listenDatagram`, one socket per address,
 * each datagram received, decided by the policy and echoed back from the
 * socket it came in on, byte for byte, the zero-length datagram included.
 *
 * A Deno socket does not say which address a datagram was sent to, so a
 * wildcard (`0.0.0.0`, `::`) becomes one socket per interface address when
 * the interfaces may be listed: each reply then leaves from the address the
 * request was sent to, and a subnet broadcast reaches no socket at all.
 * Interfaces added later are not served.
 *
 * @example Echo on a free port until aborted
 * ```ts
 * import { serveSocket } from "./socket.ts";
 * import { equal } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveSocket({ hostnames: ["127.0.0.1"], port: 0, signal: controller.signal });
 * controller.abort();
 * equal((await server.finished).echoed, 0);
 * ```
 *
 * @module
 */

import { checkUnstableNet } from "../net/errors.ts";
import { SocketDropCounter } from "../net/host_drops.ts";
import {
  expandWildcards,
  interfaceWarning,
  listInterfaces,
  type PlannedSocket,
} from "./_interfaces.ts";
import { RECEIVE_BUFFER_SIZE } from "../net/payload.ts";
import { EchoPolicy, rateLimitOf } from "../policy/policy.ts";
import {
  addCounters,
  bindAll,
  type Counters,
  dropCounts,
  guardEvents,
  hostDropFields,
  RECEIVE_ERROR_PAUSE_MS,
  RECEIVE_ERRORS_BEFORE_PAUSE,
  serverPolicy,
  socketStats,
  zeroCounters,
} from "./_shared.ts";
import type {
  EchoBackendOptions,
  EchoServer,
  EchoStats,
  HeldReply,
  ServerEvent,
} from "./types.ts";
import { warmUpSocketLoop } from "./_warm_up.ts";

// Receives in flight at most per socket (bench/RESULTS.md, "The loop": more
// receivers raise the round trip at one datagram in flight).
const MAX_RECEIVERS = 4;

// A receive that settles this soon (milliseconds) found a datagram already
// queued: Deno completes it without a trip through the event loop, while
// waiting for one to arrive takes far longer.
const QUEUED_MS = 0.015;

/**
 * Binds a `Deno.listenDatagram` socket per host, all on one port, and echoes
 * every datagram the policy allows until the signal aborts. Throws an
 * `Error` ("Cannot bind HOST:PORT: reason", the `Deno.errors` cause kept)
 * when a socket cannot be bound; those already bound are closed.
 */
export function serveSocket(options: EchoBackendOptions): EchoServer {
  checkUnstableNet();
  const interfaces = listInterfaces();
  const plan = expandWildcards(options.hostnames, interfaces);
  const bound: PlannedSocket[] = [];
  const skipped: string[] = [];
  const conns = bindAll({
    hostnames: plan.map((p) => p.hostname),
    port: options.port,
  }, {
    bind: (hostname, port) => {
      const conn = Deno.listenDatagram({ transport: "udp", hostname, port });
      bound.push(plan.find((p) => p.hostname === hostname)!);
      return conn;
    },
    portOf: (conn) => (conn.addr as Deno.NetAddr).port,
    close: (conn) => conn.close(),
  }, (hostname, error) => {
    // An interface address may not be usable yet (IPv6 still checking it
    // is unique, say): the others still serve.
    const expanded = plan.find((p) => p.hostname === hostname)?.expanded;
    if (!expanded || !(error instanceof Deno.errors.AddrNotAvailable)) {
      return false;
    }
    skipped.push(hostname);
    return true;
  });
  // Plain objects, as the batch backend reports them.
  const addrs = conns.map((conn): Deno.NetAddr => {
    const { hostname, port } = conn.addr as Deno.NetAddr;
    return { transport: "udp", hostname, port };
  });
  if (conns.length === 0) {
    throw new Error(
      `Cannot bind ${
        options.hostnames.join(", ")
      }: no interface address is available`,
    );
  }
  const warnings = [
    interfaceWarning(options.hostnames, {
      listed: interfaces !== undefined,
      seesDestination: false,
    }),
    skipped.length === 0
      ? undefined
      : `cannot bind ${
        skipped.join(", ")
      } (not available yet): not serving on ${
        skipped.length === 1 ? "it" : "them"
      }`,
  ].filter((warning) => warning !== undefined);
  const policyOptions = serverPolicy(options.policy, {
    addrs,
    asked: bound.map((p, k) => p.expanded ? p.requested : addrs[k]!.hostname),
    interfaces,
  });
  // Built before the first receive: no datagram is judged without knowing
  // every socket of the server.
  const shared = options.rateLimitScope === "socket"
    ? undefined
    : new EchoPolicy(policyOptions);
  const policies = conns.map(() => shared ?? new EchoPolicy(policyOptions));
  const counters = conns.map(() => zeroCounters());
  const emit = guardEvents(options.onEvent);
  const datagramEvents = options.onEvent !== undefined &&
    options.datagramEvents !== false;
  const startedAt = performance.now();
  let closed = false;
  // Deno keeps the socket's descriptor to itself: its drops come from
  // /proc/net/udp{,6}, when Deno lets this process read it.
  const hostDrops = new SocketDropCounter(addrs);
  const close = () => {
    if (closed) return;
    closed = true;
    // The last reading, while the sockets' lines are still there.
    hostDrops.freeze();
    for (const conn of conns) conn.close();
  };
  const withDrops = (): Counters[] => {
    const drops = hostDrops.read();
    return counters.map((part, k) => ({
      ...part,
      ...hostDropFields(drops[k]!),
    }));
  };
  const stats = (): EchoStats => {
    const total = zeroCounters();
    for (const part of withDrops()) addCounters(total, part);
    for (const policy of new Set(policies)) {
      addCounters(total, {
        ...zeroCounters(),
        droppedBy: dropCounts(policy),
        activeSources: policy.rate > 0 ? policy.activeSources() : 0,
      });
    }
    return { ...total, uptimeMs: performance.now() - startedAt };
  };
  const { signal } = options;
  if (signal?.aborted) close();
  signal?.addEventListener("abort", close, { once: true });
  const loops = conns.map((conn, k) =>
    echoLoop(conn, {
      local: addrs[k]!,
      policy: policies[k]!,
      counters: counters[k]!,
      emit,
      datagramEvents,
      isClosed: () => closed,
      reflect: options.reflect,
    })
  );
  // The loop's start-up work, on sockets, a policy and a hook of its own.
  const started = warmUpSocketLoop(
    addrs[0]!.hostname.includes(":") ? "IPv6" : "IPv4",
    (conn, isClosed) =>
      echoLoop(conn, {
        local: conn.addr as Deno.NetAddr,
        policy: new EchoPolicy(policyOptions),
        counters: zeroCounters(),
        emit: () => {},
        datagramEvents: false,
        isClosed,
        reflect: options.warmUpReflect?.(),
      }),
    () => closed,
  ).then(() => {});
  // Stopping waits for the warm-up too: nothing of it outlives the server.
  const finished = Promise.all([...loops, started]).finally(() => {
    signal?.removeEventListener("abort", close);
    close();
  }).then(stats);
  return {
    addr: addrs[0]!,
    addrs,
    boundFor: bound.map((p) => p.requested),
    warnings,
    finished,
    started,
    rateLimit: rateLimitOf(policyOptions),
    stats,
    statsBySocket: () =>
      withDrops().map((part, k) => socketStats(addrs[k]!, part)),
  };
}

/** What one socket's echo loop works with. */
interface LoopContext {
  local: Deno.NetAddr;
  policy: EchoPolicy;
  counters: Counters;
  emit: (event: ServerEvent) => void;
  datagramEvents: boolean;
  isClosed: () => boolean;
  reflect: EchoBackendOptions["reflect"];
}

/**
 * Echoes on one socket until it closes. While idle one receive is in flight,
 * which gives the shortest round trip at one datagram in flight. A receive
 * that found a datagram already queued brings in one more receiver, up to
 * MAX_RECEIVERS, and an extra receiver leaves as soon as it has to wait. Each
 * receiver owns its buffer and awaits its own send before receiving into it
 * again, so no receive can overwrite bytes a pending send still reads.
 */
async function echoLoop(
  conn: Deno.DatagramConn,
  context: LoopContext,
): Promise<void> {
  const { local, policy, counters, emit, datagramEvents, isClosed, reflect } =
    context;
  const spareBuffers: Uint8Array[] = [];
  let extras = 0;
  let failuresInRow = 0;
  // Resolves once every receiver has stopped; only the primary one runs
  // until the socket closes, so that is when the count reaches zero.
  let running = 0;
  const { promise: stopped, resolve: allStopped } = Promise
    .withResolvers<void>();

  async function receiver(buffer: Uint8Array, primary: boolean) {
    running++;
    try {
      await receive(buffer, primary);
    } finally {
      if (--running === 0) allStopped();
    }
  }

  async function receive(buffer: Uint8Array, primary: boolean) {
    while (!isClosed()) {
      const issuedAt = performance.now();
      let data: Uint8Array;
      let from: Deno.NetAddr;
      try {
        const datagram = await conn.receive(buffer);
        data = datagram[0];
        from = datagram[1] as Deno.NetAddr;
        failuresInRow = 0;
      } catch (error) {
        if (isClosed()) break;
        counters.errorsBy.receive++;
        emit({
          type: "error",
          operation: "receive",
          local,
          error: asError(error),
        });
        if (!primary) break;
        if (++failuresInRow >= RECEIVE_ERRORS_BEFORE_PAUSE) {
          await new Promise((resolve) =>
            setTimeout(resolve, RECEIVE_ERROR_PAUSE_MS)
          );
        }
        continue;
      }
      const receivedAt = performance.now();
      const queued = receivedAt - issuedAt < QUEUED_MS;
      if (queued && extras < MAX_RECEIVERS - 1) {
        extras++;
        const spare = spareBuffers.pop() ??
          new Uint8Array(RECEIVE_BUFFER_SIZE);
        receiver(spare, false);
      }
      counters.received++;
      counters.receivedBytes += data.length;
      const decided = policy.decide(from, data.length);
      const reflected = decided === "echo" && reflect !== undefined
        ? reflect(data, { from, local, receivedAt })
        : undefined;
      if (typeof reflected === "object") {
        holdReply(data.slice(), from, reflected);
        if (!primary && !queued) break;
        continue;
      }
      const verdict = reflected ?? decided;
      if (verdict !== "echo") {
        if (decided === "echo") {
          // The policy counts its own drops; the hook's are counted here.
          counters.droppedBy[verdict] = (counters.droppedBy[verdict] ?? 0) + 1;
        }
        if (datagramEvents) {
          emit({ type: "dropped", from, local, data, reason: verdict });
        }
      } else if (!(await sendEcho(data, from))) {
        break;
      }
      if (!primary && !queued) break;
    }
    if (!primary) {
      extras--;
      spareBuffers.push(buffer);
    }
  }

  // Replies held for later (STAMP Delayed Reply): the timers still to
  // fire, each with what stopping does to it, and the sends under way.
  const held = new Map<ReturnType<typeof setTimeout>, () => void>();
  const sending = new Set<Promise<void>>();

  function shutdownDrop(from: Deno.NetAddr, data: Uint8Array): void {
    counters.droppedBy.shutdown = (counters.droppedBy.shutdown ?? 0) + 1;
    if (datagramEvents) {
      emit({ type: "dropped", from, local, data, reason: "shutdown" });
    }
  }

  function holdReply(data: Uint8Array, from: Deno.NetAddr, reply: HeldReply) {
    const timer = setTimeout(() => {
      held.delete(timer);
      const sent: Promise<void> = sendHeld(data, from, reply).finally(() => {
        reply.release();
        sending.delete(sent);
      });
      sending.add(sent);
    }, reply.delayMs);
    held.set(timer, () => {
      shutdownDrop(from, data);
      reply.release();
    });
  }

  // The policy and its rate limit judge a held reply again when it leaves.
  async function sendHeld(
    data: Uint8Array,
    from: Deno.NetAddr,
    reply: HeldReply,
  ) {
    if (isClosed()) return shutdownDrop(from, data);
    const verdict = policy.decide(from, data.length);
    if (verdict !== "echo") {
      if (datagramEvents) {
        emit({ type: "dropped", from, local, data, reason: verdict });
      }
      return;
    }
    reply.beforeSend(data);
    await sendEcho(data, from);
  }

  // Sends an echo and counts it; false when stopping cut it off, a drop,
  // not a send error, so the totals still add up (received = echoed +
  // dropped + errors).
  async function sendEcho(
    data: Uint8Array,
    from: Deno.NetAddr,
  ): Promise<boolean> {
    try {
      const sent = await conn.send(data, from);
      counters.echoed++;
      counters.echoedBytes += sent;
      if (datagramEvents) emit({ type: "datagram", from, local, data, sent });
    } catch (error) {
      if (isClosed()) {
        shutdownDrop(from, data);
        return false;
      }
      counters.errorsBy.send++;
      emit({
        type: "error",
        operation: "send",
        local,
        peer: from,
        error: asError(error),
      });
    }
    return true;
  }

  receiver(new Uint8Array(RECEIVE_BUFFER_SIZE), true);
  await stopped;
  for (const [timer, drop] of held) {
    clearTimeout(timer);
    drop();
  }
  held.clear();
  await Promise.all(sending);
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
