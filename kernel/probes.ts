/**
 * Ping and load on the kernel engine, from the main thread: opens the
 * sockets (`sender.ts`), starts the Worker that runs the whole probe loop
 * (`_probe_worker.ts`), hands on its events as they come in batches through
 * its channel (`_probe_events.ts`), turns `stop` and `signal` into a shared
 * control flag, and closes the sockets only once the Worker has made its
 * last system call.
 *
 * @module
 */

import type { HostPort, ResolvedAddress } from "../net/address.ts";
import { errorMessage } from "../net/errors.ts";
import { openSenderSockets } from "./sender.ts";
import type { ProbeFormat } from "../measure/_common.ts";
import type { ProbeEvent } from "../measure/types.ts";
import type { RunResult } from "../measure/types.ts";
import type { Channel, WorkerMessage } from "./_channel.ts";
import { createProbeChannel, ProbeEventReader } from "./_probe_events.ts";
import { openLibc, releaseLibc } from "./_libc.ts";
import {
  receiveBufferNeed,
  sizeReceiveBuffer,
  socketDrops,
} from "./_socket_buffer.ts";

/** Control flag bit: stop sending, wait for the replies due. */
export const STOP = 1;
/** Control flag bit: end the run now. */
export const ABORT = 2;
/**
 * Control flag bit: the main thread has handled the Worker's `started`
 * (`onStarted` returned), so probe 0 may be timed.
 */
export const GO = 4;

/** What the Worker gets. */
export interface EngineConfig {
  fds: number[];
  locals: HostPort[];
  targetSockaddr: Uint8Array;
  /** Each socket's own address as a `sockaddr` (see `SenderSockets.selves`). */
  selfSockaddrs: Uint8Array[];
  target: ResolvedAddress;
  session: number;
  size: number;
  timeoutMs: number;
  waitMs: number;
  count: number;
  durationMs: number;
  intervalMs: number;
  window?: number;
  ring?: number;
  /** Whether to report events (someone listens). */
  events: boolean;
  /** With `events`: replies and lost probes too, not only failed sends. */
  replyEvents: boolean;
  /** A probe format other than the plain probe: see {@linkcode EngineFormatModule}. */
  format?: EngineFormatConfig;
  /** An Int32Array's buffer: {@linkcode STOP}, {@linkcode ABORT} and {@linkcode GO} bits. */
  control: SharedArrayBuffer;
  /** Where the events and the per-flow send counts go. */
  channel: Channel;
}

/**
 * A probe format the Worker loads by URL, as `RunOptions.engineFormat`
 * describes it: the module and each flow's options (structured-cloned).
 */
export interface EngineFormatConfig {
  module: string;
  options: unknown[];
}

/** What the Worker hands a format module's factory besides the flow's options. */
export interface EngineFormatContext {
  /** T4 of the reply being handled: the kernel's receive time, ms since the epoch. */
  arrivalEpochMs(): number;
  /** Sends what a reply said to the main thread with the next batch of events. */
  report(seq: number, detail: unknown): void;
}

/** A probe format the Worker uses: it writes the send time itself, right before `sendto`. */
export interface EngineProbeFormat extends ProbeFormat {
  /** Writes the send time (ms since the epoch) into a probe `encode` wrote. */
  writeSendTime(packet: Uint8Array, epochMs: number): void;
}

/** What a format module (`EngineFormatConfig.module`) exports. */
export interface EngineFormatModule {
  createEngineFormat(
    options: unknown,
    context: EngineFormatContext,
  ): EngineProbeFormat;
}

/** A reply's detail as the Worker sends it: flow, sequence number, what the format read. */
export type ReplyDetail = [flow: number, seq: number, detail: unknown];

/** A failure before the engine ran: the socket path may take over. */
export class EngineStartError extends Error {
  override name = "EngineStartError";
}

/** The run's parameters, checked, and its hooks. */
export interface EngineRun extends
  Omit<
    EngineConfig,
    | "fds"
    | "locals"
    | "targetSockaddr"
    | "selfSockaddrs"
    | "control"
    | "events"
    | "replyEvents"
    | "channel"
  > {
  /** Whether `onEvent` hears of replies and lost probes too; default true. */
  replyEvents?: boolean;
  flows: number;
  bind?: HostPort;
  stop?: AbortSignal;
  signal?: AbortSignal;
  onEvent?: (event: ProbeEvent) => void;
  onSend?: (flow: number, seq: number) => void;
  /** Each reply's detail from the format, before the events of its batch. */
  onDetail?: (flow: number, seq: number, detail: unknown) => void;
  /**
   * Called once the Worker's start-up work is done (its code run on
   * throwaway state); probe 0 is timed only after it returns.
   */
  onStarted?: () => void;
  /** Events the ring between the threads holds (a power of two). */
  eventRecords?: number;
}

const WORKER_URL = new URL("./_probe_worker.ts", import.meta.url);

/**
 * Runs one ping or load on the kernel engine. Rejects with an
 * {@linkcode EngineStartError} when the sockets or the Worker cannot start
 * (nothing was sent), and with an `Error` when the loop fails later.
 */
export async function runOnEngine(run: EngineRun): Promise<RunResult> {
  let sockets;
  try {
    sockets = openSenderSockets({
      target: run.target,
      bind: run.bind,
      count: run.flows,
    });
  } catch (error) {
    throw new EngineStartError(errorMessage(error), { cause: error });
  }
  const libc = openLibc();
  // Sized before the first send: the buffer holds what the rate asked for
  // brings in while the Worker is away from its receive.
  const receiveBuffer =
    sockets.fds.map((fd) =>
      sizeReceiveBuffer(libc, fd, receiveBufferNeed(run))
    )[0];
  const dropsBefore = sockets.fds.map((fd) => socketDrops(libc, fd));
  const control = new Int32Array(new SharedArrayBuffer(4));
  const onStop = () => Atomics.or(control, 0, STOP);
  const onAbort = () => Atomics.or(control, 0, ABORT);
  let worker: Worker | undefined;
  try {
    worker = new Worker(WORKER_URL, { type: "module" });
    const { stop, signal, onEvent, onSend } = run;
    if (stop?.aborted) onStop();
    if (signal?.aborted) onAbort();
    stop?.addEventListener("abort", onStop);
    signal?.addEventListener("abort", onAbort);
    let started = false;
    const sent = new Array<number>(run.flows).fill(0);
    const channel = createProbeChannel(run.flows, run.eventRecords);
    const reader = new ProbeEventReader(channel);
    const done = Promise.withResolvers<RunResult>();
    const fail = (message: string) => {
      done.reject(
        started ? new Error(message) : new EngineStartError(message),
      );
    };
    worker.onmessage = ({ data }: MessageEvent<WorkerMessage<RunResult>>) => {
      switch (data.type) {
        case "started":
          started = true;
          try {
            run.onStarted?.();
          } finally {
            Atomics.or(control, 0, GO);
            Atomics.notify(control, 0);
          }
          break;
        case "events":
          // Details first: an event's listener may look them up.
          reader.read(data, onEvent, (detail) => {
            const [flow, seq, value] = detail as ReplyDetail;
            run.onDetail?.(flow, seq, value);
          });
          reader.sent.forEach((total, flow) => {
            for (; sent[flow]! < total; sent[flow]!++) {
              onSend?.(flow, sent[flow]!);
            }
          });
          break;
        case "done":
          done.resolve(data.result);
          break;
        case "failed":
          fail(data.message);
          break;
      }
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      fail(event.message);
    };
    const config: EngineConfig = {
      fds: sockets.fds,
      locals: sockets.locals,
      targetSockaddr: sockets.target,
      selfSockaddrs: sockets.selves,
      target: run.target,
      session: run.session,
      size: run.size,
      timeoutMs: run.timeoutMs,
      waitMs: run.waitMs,
      count: run.count,
      durationMs: run.durationMs,
      intervalMs: run.intervalMs,
      window: run.window,
      ring: run.ring,
      events: onEvent !== undefined,
      replyEvents: run.replyEvents !== false,
      format: run.format,
      control: control.buffer as SharedArrayBuffer,
      channel,
    };
    worker.postMessage(config);
    const result = await done.promise;
    // The Worker is past its last receive: what the kernel dropped until
    // now, after the last datagram too, is the run's.
    const drops = sockets.fds.map((fd, k) =>
      socketDrops(libc, fd) - dropsBefore[k]!
    );
    const known = dropsBefore.every((count) => count >= 0) &&
      drops.every((count) => count >= 0);
    return {
      ...result,
      ...(known ? { hostDrops: drops.reduce((a, b) => a + b, 0) } : {
        hostDrops: null,
        hostDropsUnknown: "the kernel did not say (getsockopt SO_MEMINFO)",
      }),
      receiveBuffer,
    };
  } catch (error) {
    if (error instanceof EngineStartError) throw error;
    if (worker === undefined) {
      throw new EngineStartError(errorMessage(error), { cause: error });
    }
    throw error;
  } finally {
    run.stop?.removeEventListener("abort", onStop);
    run.signal?.removeEventListener("abort", onAbort);
    // The Worker has posted its last message (or died in JS): it makes no
    // more system calls, so the sockets may close.
    worker?.terminate();
    sockets.close();
    releaseLibc();
  }
}
