/**
 * The echo server on the kernel engine (`--io batch`): `recvmmsg(2)` and
 * `sendmmsg(2)` through `Deno.dlopen("libc.so.6")`, many datagrams per
 * system call, one Worker per socket running a blocking loop with
 * synchronous FFI calls, so the main event loop stays free for signals,
 * events and statistics. It takes the same options, emits the same events
 * and keeps the same counters as `echo/socket.ts` (see `echo/types.ts`);
 * replies leave from the socket the request arrived on, byte for byte, the
 * zero-length datagram included. Whether this process may run it is
 * `choice.ts`'s to say.
 *
 * The pieces are private modules: `_libc.ts` (the C library and errno),
 * `_structs.ts` (the C structures), `_sockaddr.ts`, `_bind.ts` (opening a
 * socket), `_echo_engine.ts` (the preallocated echo engine and why it is
 * memory-safe), `_echo_worker.ts` (its Worker), `_channel.ts` (how a Worker
 * hands its events to the main thread) and `_echo_events.ts` (the echo
 * engine's events and counters on it).
 *
 * @example Serve on a free port and stop again
 * ```ts ignore
 * import { serveBatch } from "./echo.ts";
 *
 * const controller = new AbortController();
 * const server = serveBatch({
 *   hostnames: ["127.0.0.1", "::1"],
 *   port: 0,
 *   signal: controller.signal,
 * });
 * console.log(server.addr.port);
 * controller.abort();
 * await server.finished;
 * ```
 *
 * @module
 */

import { bindSocket, type BoundSocket } from "./_bind.ts";
import { checkBatchSupport, checkNetPermission } from "./choice.ts";
import { interfaceWarning, listInterfaces } from "../echo/_interfaces.ts";
import {
  attachSpoofProgram,
  bindSpoofSink,
  hostAddresses,
  spoofProgram,
} from "./_spoof_guard.ts";
import { answerWake } from "./_wake_warm_up.ts";
import { checkBatchSize, openLibc, releaseLibc, SHUT_RDWR } from "./_libc.ts";
import { socketDrops } from "./_socket_buffer.ts";
import type { WorkerMessage } from "./_channel.ts";
import {
  C_BATCHES,
  C_FORCED_GCS,
  createEchoChannel,
  EchoEventReader,
  type WorkerConfig,
} from "./_echo_events.ts";
import {
  addCounters,
  bindAll,
  guardEvents,
  serverPolicy,
  socketStats,
  zeroCounters,
} from "../echo/_shared.ts";
import { rateLimitOf } from "../policy/policy.ts";
import type {
  EchoBackendOptions,
  EchoServer,
  EchoStats,
} from "../echo/types.ts";

export type {
  DatagramFacts,
  DecideHook,
  DecideModule,
  OutgoingReply,
  ReflectHook,
  ReflectModule,
} from "./_hooks.ts";

/** The datagrams one system call may receive or send (the batch size). */
const DEFAULT_BATCH_SIZE = 64;

/**
 * How often the host's addresses are listed again for the guard against
 * forged local sources (one `getifaddrs`; the program is rebuilt only when
 * they changed).
 */
const ADDRESS_REFRESH_MS = 2_000;

const WORKER_URL = new URL("./_echo_worker.ts", import.meta.url);
const POLICY_HOOK_URL = new URL("./_policy_hook.ts", import.meta.url).href;

/** Options for {@linkcode serveBatch}. */
export interface BatchServeOptions extends EchoBackendOptions {
  /**
   * Only `"socket"` with more than one socket: each Worker keeps its own
   * rate-limit table, so asking for `"server"` then throws a `TypeError`.
   * Unset means one table per socket, which with one socket is the same
   * as one per server.
   */
  rateLimitScope?: EchoBackendOptions["rateLimitScope"];
  /** Datagrams per system call, 1 to 1024; default 64. */
  batchSize?: number;
  /** Call `gc()` (with `--expose-gc`) in each loop every this many batches (stress tests). */
  gcEveryBatches?: number;
  /**
   * A module (URL) that exports `createDecideHook` (see
   * {@linkcode DecideModule}), which each Worker imports and asks per
   * datagram instead of the policy; `policy` is then ignored. `null` echoes
   * every datagram unjudged (benchmarks). Defaults to the policy.
   */
  decideModule?: string | null;
  /** Passed to the decide module's `createDecideHook` (structured-cloned). */
  decideOptions?: unknown;
  /**
   * A module (URL) that exports `createReflectHook` (see
   * {@linkcode ReflectModule}): each Worker imports it and has it turn every
   * datagram the decide hook let through into its reply, in place (the
   * STAMP Session-Reflector of `server/_stamp_hook.ts`). The sockets then
   * also report each datagram's kernel receive time and TTL. A
   * `reflect` function cannot cross to a Worker: with one and no module,
   * `serveBatch` throws a TypeError.
   */
  reflectModule?: string;
  /** Passed to the reflect module's `createReflectHook` (structured-cloned). */
  reflectOptions?: unknown;
}

/** Counters of the batch loops themselves, summed over the Workers. */
export interface LoopStats {
  /** `recvmmsg` calls that returned datagrams. */
  batches: number;
  /** `gc()` calls the loops made (see `gcEveryBatches`). */
  forcedGcs: number;
}

/** A running batch server: an {@linkcode EchoServer} and its loops' counters. */
export interface BatchServer extends EchoServer {
  /**
   * Resolves once every Worker has loaded its modules, opened the C library
   * done its start-up work (`_echo_warm_up.ts`) and entered its loop; rejects as `finished` does when one could not
   * (`Cannot run the batch loop: reason`), by which time the server has
   * stopped. Lets a caller try the engine and fall back (`--io auto`).
   */
  started: Promise<void>;
  /** The loops' own counters so far. */
  loopStats(): LoopStats;
}

/** One socket of the server and the Worker that serves it. */
interface Lane {
  socket: BoundSocket;
  /** Its sink of forged local sources, -1 when none. */
  spoofSinkFd: number;
  started: Promise<void>;
  worker: Worker;
  events: EchoEventReader;
  done: Promise<void>;
}

/**
 * Binds one socket per host, all on one port, and serves UDP echo on each
 * with the batch engine in a Worker of its own until the signal aborts.
 * Binds synchronously, so `addr` is known at once; throws `Cannot bind
 * HOST:PORT: reason` (its cause a `Deno.errors` class, as
 * `Deno.listenDatagram` would throw) when an address cannot be bound, and a
 * `TypeError` when `rateLimitScope: "server"` is asked of several sockets.
 * `finished` rejects when a Worker could not run its loop; every socket is
 * closed by then.
 */
export function serveBatch(options: BatchServeOptions): BatchServer {
  checkBatchSupport();
  if (options.reflect !== undefined && options.reflectModule === undefined) {
    throw new TypeError(
      "Cannot reflect on the batch backend with a function: a Worker needs a reflectModule",
    );
  }
  const receiveTimes = options.reflectModule !== undefined;
  if (options.rateLimitScope === "server" && options.hostnames.length > 1) {
    throw new TypeError(
      "Cannot share one rate limit across batch sockets: each Worker keeps its own table",
    );
  }
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  checkBatchSize(batchSize);
  const libc = openLibc();
  const interfaces = listInterfaces();
  // Without the host's addresses there is nothing to guard with.
  let guardedAddresses = interfaces && hostAddresses(interfaces);
  const program = guardedAddresses && spoofProgram(guardedAddresses);
  let sockets: BoundSocket[] = [];
  const spoofSinks: number[] = [];
  try {
    sockets = bindAll(options, {
      bind: (hostname, port) => {
        checkNetPermission(hostname, port);
        return bindSocket(libc, hostname, port, undefined, {
          receiveTimes,
          beforeBind: program === undefined
            ? undefined
            : (fd) =>
              attachSpoofProgram(libc, fd, program, { beforeBind: true }),
        });
      },
      portOf: (socket) => socket.addr.port,
      close: (socket) => libc.symbols.close(socket.fd),
    });
    if (program !== undefined) {
      for (const socket of sockets) {
        spoofSinks.push(bindSpoofSink(libc, socket));
      }
    }
  } catch (error) {
    // bindAll closed what it bound if it threw; sockets is then empty.
    for (const fd of spoofSinks) libc.symbols.close(fd);
    for (const socket of sockets) libc.symbols.close(socket.fd);
    releaseLibc();
    throw error;
  }
  const addrs = sockets.map((socket) => socket.addr);
  const decideModule = options.decideModule === undefined
    ? POLICY_HOOK_URL
    : options.decideModule;
  const policy = serverPolicy(options.policy, {
    addrs,
    asked: addrs.map((addr) => addr.hostname),
    interfaces,
  });
  const decideOptions = options.decideModule === undefined
    ? policy
    : options.decideOptions;
  const emit = guardEvents(options.onEvent);
  const datagramEvents = options.onEvent !== undefined &&
    options.datagramEvents !== false;
  // One stop flag for every Worker: a single store and notify stops them all.
  const control = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
  const controlFlags = new Int32Array(control);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    // Wake receives blocked in the kernel, then ask the loops to end. No
    // Worker closes a socket itself, so no fd here can have been reused.
    for (const lane of lanes) libc.symbols.shutdown(lane.socket.fd, SHUT_RDWR);
    Atomics.store(controlFlags, 0, 1);
    Atomics.notify(controlFlags, 0);
  };
  const lanes: Lane[] = [];
  const configs: WorkerConfig[] = [];
  try {
    for (const [k, socket] of sockets.entries()) {
      const channel = createEchoChannel(datagramEvents);
      const spoofSinkFd = spoofSinks[k] ?? -1;
      lanes.push(
        startWorker(
          socket,
          spoofSinkFd,
          new EchoEventReader(channel, socket.addr),
        ),
      );
      configs.push({
        fd: socket.fd,
        spoofSinkFd,
        family: socket.family,
        localHostname: socket.addr.hostname,
        localPort: socket.addr.port,
        batchSize,
        channel,
        control,
        decideModule,
        decideOptions,
        reflectModule: options.reflectModule ?? null,
        reflectOptions: options.reflectOptions,
        datagramEvents,
        gcEveryBatches: options.gcEveryBatches ?? 0,
      });
    }
  } catch (error) {
    // No Worker has its configuration yet, so none is in a system call.
    for (const lane of lanes) lane.worker.terminate();
    for (const fd of spoofSinks) libc.symbols.close(fd);
    for (const socket of sockets) libc.symbols.close(socket.fd);
    releaseLibc();
    throw error;
  }
  lanes.forEach((lane, k) => lane.worker.postMessage(configs[k]));

  function startWorker(
    socket: BoundSocket,
    spoofSinkFd: number,
    events: EchoEventReader,
  ): Lane {
    const worker = new Worker(WORKER_URL, { type: "module" });
    const { promise: done, resolve, reject } = Promise.withResolvers<void>();
    const started = Promise.withResolvers<void>();
    const lane: Lane = {
      socket,
      spoofSinkFd,
      started: started.promise,
      worker,
      events,
      done,
    };
    const fail = (message: string) => {
      const error = new Error(`Cannot run the batch loop: ${message}`);
      reject(error);
      started.reject(error);
      // The other loops cannot serve on alone: the server ends as a whole.
      stop();
    };
    worker.onmessage = (
      { data }: MessageEvent<WorkerMessage<Record<string, number>>>,
    ) => {
      switch (data.type) {
        case "started":
          started.resolve();
          break;
        case "events":
          events.read(data, emit);
          break;
        case "failed":
          fail(data.message);
          break;
        case "wake":
          answerWake(libc, data);
          break;
        case "done":
          events.droppedBy = data.result;
          // A loop stopped before it started has still not failed.
          started.resolve();
          resolve();
          break;
      }
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      fail(event.message);
    };
    return lane;
  }

  const startedAt = performance.now();
  // The kernel's drops at each socket, read on this thread, which owns the
  // sockets: at each call, and a last time right before they close. The
  // sink of forged sources is a socket of the server too: what it drops
  // counts in the host's RcvbufErrors as well.
  const finalDrops: number[] = [];
  const readDrops = (lane: Lane) => {
    const drops = socketDrops(libc, lane.socket.fd);
    if (lane.spoofSinkFd < 0 || drops < 0) return drops;
    const sink = socketDrops(libc, lane.spoofSinkFd);
    return sink < 0 ? sink : drops + sink;
  };
  const laneCounters = (lane: Lane, k: number) => {
    const drops = finalDrops[k] ?? readDrops(lane);
    return {
      ...lane.events.counters(),
      ...(drops >= 0 ? { hostDrops: drops } : {
        hostDrops: null,
        hostDropsUnknown: "the kernel did not say (getsockopt SO_MEMINFO)",
      }),
    };
  };
  const stats = (): EchoStats => {
    const total = zeroCounters();
    lanes.forEach((lane, k) => addCounters(total, laneCounters(lane, k)));
    return { ...total, uptimeMs: performance.now() - startedAt };
  };
  const loopStats = (): LoopStats => ({
    batches: lanes.reduce(
      (sum, lane) => sum + lane.events.totals[C_BATCHES]!,
      0,
    ),
    forcedGcs: lanes.reduce(
      (sum, lane) => sum + lane.events.totals[C_FORCED_GCS]!,
      0,
    ),
  });
  // The host's addresses change at run time (DHCP, SLAAC, an operator):
  // the guard follows them. An address removed keeps being guarded for up
  // to one refresh, one added is unguarded as long.
  const refresh = program === undefined ? undefined : setInterval(() => {
    const now = listInterfaces();
    if (now === undefined) return;
    const addresses = hostAddresses(now);
    if (addresses.join() === guardedAddresses!.join()) return;
    guardedAddresses = addresses;
    const updated = spoofProgram(addresses);
    for (const lane of lanes) {
      try {
        attachSpoofProgram(libc, lane.socket.fd, updated);
      } catch {
        // The program before stays; the next change tries again.
      }
    }
  }, ADDRESS_REFRESH_MS);
  if (refresh !== undefined) Deno.unrefTimer(refresh);
  const { signal } = options;
  const finished = (async () => {
    const outcomes = await Promise.allSettled(lanes.map((lane) => lane.done));
    clearInterval(refresh);
    // Only now has every loop left its last system call (or never started):
    // the Workers, and with them the buffers the kernel used, may go.
    stop();
    lanes.forEach((lane, k) => finalDrops[k] = readDrops(lane));
    for (const lane of lanes) {
      lane.worker.terminate();
      libc.symbols.close(lane.socket.fd);
      if (lane.spoofSinkFd >= 0) libc.symbols.close(lane.spoofSinkFd);
    }
    releaseLibc();
    signal?.removeEventListener("abort", stop);
    for (const outcome of outcomes) {
      if (outcome.status === "rejected") throw outcome.reason;
    }
    return stats();
  })();
  if (signal?.aborted) stop();
  else signal?.addEventListener("abort", stop, { once: true });
  const started = Promise.all(lanes.map((lane) => lane.started)).then(
    () => {},
  );
  // Its failure is `finished`'s too: nobody has to await both.
  started.catch(() => {});
  return {
    started,
    addr: addrs[0]!,
    addrs,
    boundFor: [...options.hostnames],
    // The engine sees each datagram's destination: only the broadcast
    // sources and the guard against forged local ones need the interfaces.
    warnings: [
      interfaceWarning(options.hostnames, {
        listed: interfaces !== undefined,
        seesDestination: true,
        seesArrival: true,
      }),
    ].filter((warning) => warning !== undefined),
    finished,
    rateLimit: rateLimitOf(policy),
    stats,
    statsBySocket: () =>
      lanes.map((lane, k) =>
        socketStats(lane.socket.addr, laneCounters(lane, k))
      ),
    loopStats,
  };
}
