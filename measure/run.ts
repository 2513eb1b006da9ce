/**
 * Ping and load: probes on an open-loop schedule or in a closed-loop window,
 * over one or more flows, summarised into a {@linkcode RunResult}.
 *
 * @module
 */

import { type HostDrops, SocketDropCounter } from "../net/host_drops.ts";
import {
  decodeProbe,
  encodeProbeInto,
  newSessionId,
  verifyProbe,
} from "./probe.ts";
import { summarizeRun } from "./_summary.ts";
import {
  checkCount,
  checkMs,
  checkProbeSize,
  DEFAULT_PROBE_SIZE,
  DEFAULT_PROBE_TIMEOUT_MS,
  type ProbeFormat,
} from "./_common.ts";
import { Flow } from "./_flow.ts";
import type { ProbeOptions, RunResult } from "./types.ts";
import { Wakeup, Yielder } from "./_times.ts";
import {
  settle,
  WARM_UP_INTERVAL_MS,
  WARM_UP_PROBES,
  warmUpRun,
} from "./_warm_up.ts";

const DEFAULT_INTERVAL_MS = 1000;
/**
 * The longest the warm-up waits for a socket's datagram to itself, in ms:
 * it comes at once, but on a busy machine it may come late (it is never
 * counted, late or not), and a firewall may drop it.
 */
const WARM_UP_WAIT_MS = 1000;
/** Options for {@linkcode runProbes}. */
export interface RunOptions extends ProbeOptions {
  /** Probes per flow; unbounded by default (stop with `durationMs` or `signal`). */
  count?: number;
  /** A hard deadline for sending, in milliseconds from the first send. */
  durationMs?: number;
  /**
   * Stops sending; replies still due are awaited as after the last send,
   * but at most the timeout. `signal` then ends the wait at once.
   */
  stop?: AbortSignal;
  /** Payload per probe in bytes, from the header size to the family limit. Default 64. */
  size?: number;
  /** Open loop: send probe n at start + n x interval, in ms. Default 1000 without `window`. */
  intervalMs?: number;
  /** Closed loop: keep this many probes in flight per flow. */
  window?: number;
  /** Number of flows, each from its own source port. Default 1. */
  flows?: number;
  /** Called after each probe leaves, for a live status. */
  onSend?: (flow: number, seq: number) => void;
  /**
   * Whether `onEvent` hears of every reply and lost probe (the default);
   * false keeps it to failed sends, and a load run then spends nothing on
   * the events of its replies. The result counts them all either way.
   */
  replyEvents?: boolean;
  /**
   * What carries the datagrams: `socket` (Deno's sockets, the default) or
   * `batch`, the kernel engine in a Worker (Linux, `--allow-ffi`, read
   * access to this package): sends paced on
   * CLOCK_MONOTONIC to the microsecond and round trips from kernel
   * timestamps (see `RunResult.rttMs`).
   */
  io?: "socket" | "batch";
  /**
   * With `io: "batch"`: when the engine cannot start (nothing sent yet), run
   * on sockets instead rather than reject.
   */
  fallback?: boolean;
  /**
   * Called once the I/O runs, before the first probe: `batch`, or `socket`
   * with why the engine did not run when it was asked for. The start-up
   * work (sockets opened, the probe code run on throwaway state, on sockets
   * a short run against an echo on loopback, the engine's Worker started)
   * is done by then, and probe 0's send time is taken only after it returns.
   */
  onIo?: (io: "socket" | "batch", reason?: string) => void;
}

/**
 * {@linkcode RunOptions} with what the monitor and `--stamp` add, for
 * {@linkcode runFlows}.
 */
export interface FlowRunOptions extends RunOptions {
  /**
   * A run without end in fixed memory (the monitor): keep the state of the
   * latest `ring` probes per flow only (a power of two). Loss is then
   * decided by the timeout as the run goes: a `lost` event as soon as a
   * probe's timeout passes without a reply, and a reply after that is
   * `late` only. The result has no RTT list, and its RTT and jitter
   * figures are empty: read the events instead.
   */
  ring?: number;
  /** The probe format of each flow (STAMP with `--stamp`); the plain probe by default. */
  format?: (flow: number, session: number) => ProbeFormat;
  /**
   * The same format for the kernel engine, whose Worker cannot take a
   * function: see {@linkcode EngineFormat}. Needed with `format` and
   * `io: "batch"`.
   */
  engineFormat?: EngineFormat;
}

/**
 * A probe format the kernel engine's Worker loads by URL (a module that
 * exports `createEngineFormat`, as `stamp_probe.ts` does), and where what
 * it reads of each reply goes on this thread.
 */
export interface EngineFormat {
  /** The module's URL. */
  module: string;
  /** The options of flow `flow`'s format (structured-cloned into the Worker). */
  options(flow: number, session: number): unknown;
  /** What the format read of the intact first reply to probe `seq`, before its event. */
  onDetail(flow: number, seq: number, detail: unknown): void;
}

/** When, how long and what one flow sends; times in ms. */
interface Pacing {
  size: number;
  start: number;
  count: number;
  durationMs: number;
  intervalMs: number;
  waitMs: number;
  /** Aborted by `stop` or `signal`: no more sends. */
  sending: AbortSignal;
  /** Decide loss by the timeout while sending (a ring run). */
  expire: boolean;
}

/**
 * Sends probe n at start + n x interval; a late send never shifts the rest,
 * and nothing leaves after the deadline, however far behind the loop is.
 */
async function openLoop(flow: Flow, pace: Pacing): Promise<number> {
  const { start, count, durationMs, intervalMs, sending } = pace;
  const sleeper = new Wakeup();
  const yielder = new Yielder();
  for (let n = 0; n < count && n * intervalMs < durationMs; n++) {
    const due = start + n * intervalMs;
    let delay = due - performance.now();
    // A ring run tells a loss when the timeout passes, not at the next send.
    while (pace.expire && delay > 0 && !sending.aborted) {
      const next = flow.expire(performance.now());
      await sleeper.wait(Math.min(delay, next - performance.now()), sending);
      delay = due - performance.now();
    }
    if (delay > 0) await sleeper.wait(delay, sending);
    else await yielder.maybeYield();
    const now = performance.now();
    if (sending.aborted || flow.error !== undefined) return now;
    if (now - start >= durationMs) return start + durationMs;
    await flow.send(pace.size, due);
  }
  return performance.now();
}

/** Keeps `window` probes in flight; a probe past its timeout frees its slot. */
async function closedLoop(
  flow: Flow,
  pace: Pacing,
  window: number,
): Promise<number> {
  const { start, count, durationMs, sending: signal } = pace;
  const yielder = new Yielder();
  while (
    !signal.aborted && flow.error === undefined && flow.sent < count &&
    performance.now() - start < durationMs
  ) {
    await yielder.maybeYield();
    if (signal.aborted || performance.now() - start >= durationMs) break;
    const deadline = flow.expire(performance.now());
    if (flow.inflight < window) {
      await flow.send(pace.size);
      continue;
    }
    const remaining = durationMs - (performance.now() - start);
    await flow.wakeup.wait(
      Math.min(deadline - performance.now(), remaining),
      signal,
    );
  }
  return performance.now();
}

/**
 * Sends probes to an echo server and measures their round trips: on an
 * open-loop schedule (`intervalMs`; probe n leaves at start + n x interval,
 * late sends catch up rather than shift the schedule) or in a closed loop
 * (`window` probes in flight), over `flows` sockets at once. Each probe
 * carries a session id, a sequence number and its send time, so any echo
 * server can be measured. A failed send is counted in `sendErrors` and the
 * run goes on.
 *
 * @param options The target, the schedule or window, the size, and where
 * the events go; times in milliseconds, sizes in bytes.
 * @returns The counts, round trips, jitter and rates, once the wait after
 * the last send is over or `options.signal` aborts.
 * @throws {RangeError} When `size` is below the probe header or above the
 * family limit, when `count`, `window` or `flows` is not a positive
 * integer, when `durationMs`, `intervalMs` or `waitMs` is negative or
 * `timeoutMs` below 1, or when several flows would bind one nonzero port.
 * @throws {Error} The socket's error when a receive fails; with
 * `io: "batch"` and no `fallback`, when the kernel engine cannot start.
 *
 * @example Load: four probes in flight for a hundred milliseconds
 * ```ts
 * import { runProbes } from "./run.ts";
 * import { serveSocket } from "../echo/socket.ts";
 * import { equal, ok } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveSocket({ hostnames: ["127.0.0.1"], port: 0, signal: controller.signal });
 * try {
 *   const result = await runProbes({
 *     target: { ...server.addr, family: "IPv4" },
 *     window: 4,
 *     durationMs: 100,
 *   });
 *   equal(result.pacing, "window");
 *   ok(result.received > 0);
 * } finally {
 *   controller.abort();
 *   await server.finished;
 * }
 * ```
 */
export function runProbes(options: RunOptions): Promise<RunResult> {
  return runFlows(options);
}

/**
 * {@linkcode runProbes} with the monitor's ring and a probe format of
 * `--stamp`; throws as it does, and a TypeError for `format` on the kernel
 * engine without `engineFormat`.
 */
export async function runFlows(options: FlowRunOptions): Promise<RunResult> {
  const {
    target,
    size = DEFAULT_PROBE_SIZE,
    timeoutMs = DEFAULT_PROBE_TIMEOUT_MS,
    flows: flowCount = 1,
    count = Infinity,
    durationMs = Infinity,
    window,
    signal,
    stop,
    onEvent,
    onSend,
    bind,
    ring,
  } = options;
  const replyEvents = options.replyEvents !== false;
  const onReplyEvent = replyEvents ? onEvent : undefined;
  const waitMs = options.waitMs ?? 2 * timeoutMs;
  const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
  checkProbeSize(size, target);
  checkCount("count", count);
  checkCount("window", window);
  checkCount("flows", flowCount);
  checkMs("duration", durationMs === Infinity ? undefined : durationMs);
  checkMs("interval", intervalMs);
  checkMs("timeout", timeoutMs, 1);
  checkMs("wait", waitMs);
  if (flowCount > 1 && (bind?.port ?? 0) !== 0) {
    throw new RangeError(
      `Cannot bind ${flowCount} flows to port ${bind!.port}: flows need port 0`,
    );
  }
  const session = newSessionId();
  let fallbackReason: string | undefined;
  const { engineFormat } = options;
  if (
    options.io === "batch" && options.format !== undefined &&
    engineFormat === undefined
  ) {
    throw new TypeError(
      "Cannot use a probe format on the kernel engine without engineFormat: a function cannot cross to its Worker",
    );
  }
  if (options.io === "batch") {
    const { EngineStartError, runOnEngine } = await import(
      "../kernel/probes.ts"
    );
    try {
      return await runOnEngine({
        target,
        bind,
        session,
        size,
        timeoutMs,
        waitMs,
        count,
        durationMs,
        intervalMs,
        window,
        ring,
        flows: flowCount,
        stop,
        signal,
        onEvent,
        replyEvents,
        onSend,
        format: engineFormat && {
          module: engineFormat.module,
          options: Array.from(
            { length: flowCount },
            (_, flow) => engineFormat.options(flow, session),
          ),
        },
        onDetail: engineFormat?.onDetail,
        onStarted: () => options.onIo?.("batch"),
      });
    } catch (error) {
      if (!(options.fallback && error instanceof EngineStartError)) throw error;
      fallbackReason = error.message;
    }
  }
  const flows: Flow[] = [];
  const sending = AbortSignal.any(
    [stop, signal].filter((s) => s !== undefined),
  );
  try {
    for (let i = 0; i < flowCount; i++) {
      flows.push(
        new Flow(i, session, {
          target,
          bind,
          timeoutMs,
          onReply: onReplyEvent,
          onSendError: onEvent,
          onSend,
          ring,
          onLost: (flow, seq) => onReplyEvent?.({ type: "lost", flow, seq }),
          format: options.format?.(i, session),
        }),
      );
    }
    warmUp(session, size);
    await warmUpRun((flow) => {
      const pace: Pacing = {
        size,
        start: performance.now(),
        count: WARM_UP_PROBES,
        durationMs: Infinity,
        intervalMs: WARM_UP_INTERVAL_MS,
        waitMs: 0,
        sending,
        expire: false,
      };
      return window === undefined
        ? openLoop(flow, pace)
        : closedLoop(flow, pace, window);
    });
    for (const flow of flows) flow.options.format?.warmUp?.(size);
    await settle();
    const drops = new SocketDropCounter(flows.map((flow) => flow.local));
    options.onIo?.("socket", fallbackReason);
    // Last, so the kernel's send and receive path is warm at probe 0's T1.
    // A stop meanwhile (Ctrl-C) ends the wait for a datagram that may never
    // come (a firewall that drops it).
    const stopped = () => stop?.aborted === true || signal?.aborted === true;
    await Promise.all(flows.map((flow) => warmUpSocket(flow, stopped)));
    const start = performance.now();
    const pace: Pacing = {
      size,
      start,
      count,
      durationMs,
      intervalMs,
      waitMs,
      sending,
      expire: ring !== undefined,
    };
    let sendEnd = start;
    await Promise.all(flows.map(async (flow) => {
      const ended = window === undefined
        ? await openLoop(flow, pace)
        : await closedLoop(flow, pace, window);
      sendEnd = Math.max(sendEnd, ended);
      // After a stop, what is still due comes within the timeout or never.
      await flow.drain(
        stop?.aborted ? Math.min(waitMs, timeoutMs) : waitMs,
        signal,
      );
    }));
    const end = performance.now();
    // Read before the sockets close, which takes their lines away.
    const hostDrops = sumDrops(drops.read());
    for (const flow of flows) flow.close();
    await Promise.all(flows.map((flow) => flow.receiving));
    const failed = flows.find((flow) => flow.error !== undefined);
    if (failed) throw failed.error;
    const result = summarizeRun(flows, {
      target,
      size,
      pacing: window === undefined ? "interval" : "window",
      start,
      end,
      // Only a hard stop leaves probes in flight; otherwise the wait is over.
      inFlightAfter: signal?.aborted ? end - timeoutMs : Infinity,
      askedPps: window === undefined && intervalMs > 0
        ? flowCount * 1000 / intervalMs
        : NaN,
      sendEnd,
      onEvent: onReplyEvent,
    });
    return {
      ...result,
      io: "socket",
      hostDrops: hostDrops.drops,
      ...(hostDrops.unknown === undefined
        ? {}
        : { hostDropsUnknown: hostDrops.unknown }),
    };
  } finally {
    // Also on a failed send: no receive may outlive the run.
    for (const flow of flows) flow.close();
    await Promise.all(flows.map((flow) => flow.receiving));
  }
}

/** The drops of every flow added up; unknown when one is. */
function sumDrops(parts: HostDrops[]): HostDrops {
  let drops = 0;
  for (const part of parts) {
    if (part.drops === null) return part;
    drops += part.drops;
  }
  return { drops };
}

/**
 * Runs the probe code once before the first probe is timed: a cold encode
 * and verify would otherwise land in probe 0's round-trip time.
 */
function warmUp(session: number, size: number): void {
  const bytes = new Uint8Array(size);
  const header = { session, seq: 0, sentAt: performance.timeOrigin };
  encodeProbeInto(bytes, header);
  decodeProbe(bytes);
  verifyProbe(bytes, header, size);
}

/**
 * Sends one empty datagram from a flow's socket to itself and waits for it
 * (at most WARM_UP_WAIT_MS, and no longer once `stopped` says so), so the
 * first send and receive of the socket are not part of probe 0's round trip;
 * the flow never counts it (see `Flow.primersBack`), nor takes a stray for it.
 */
async function warmUpSocket(
  flow: Flow,
  stopped: () => boolean,
): Promise<void> {
  const before = flow.primersBack;
  try {
    await flow.conn.send(new Uint8Array(0), {
      ...flow.self,
      transport: "udp",
    });
  } catch {
    // Only a warm-up: the probes will meet and report any real failure.
    return;
  }
  const end = performance.now() + WARM_UP_WAIT_MS;
  while (
    flow.primersBack === before && performance.now() < end && !stopped()
  ) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}
