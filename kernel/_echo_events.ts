/**
 * What the batch backend's main thread and its Workers say to each other:
 * the configuration a Worker starts with, the messages it posts back, the
 * events the engine reports, and the layout of the counters it writes into
 * shared memory. Also how the main thread turns both into the one model
 * (`types.ts`).
 *
 * @module
 */

import type { AddressFamily } from "../net/address.ts";
import { errnoError } from "./_libc.ts";
import type { Counters } from "../echo/_shared.ts";
import type {
  DropCause,
  DropCounts,
  IoOperation,
  ServerEvent,
} from "../echo/types.ts";

/** Indices into the shared counter array. */
export const C_RECEIVED = 0;
export const C_RECEIVED_BYTES = 1;
export const C_ECHOED = 2;
export const C_ECHOED_BYTES = 3;
export const C_DROPPED = 4;
export const C_RECEIVE_ERRORS = 5;
export const C_SEND_ERRORS = 6;
export const C_BATCHES = 7;
export const C_FORCED_GCS = 8;
export const C_ACTIVE_SOURCES = 9;
export const C_EVENTS_DROPPED = 10;
/** The number of counters. */
export const COUNTER_SLOTS = 11;

/**
 * Messages of events a Worker may have posted that the main thread has not
 * handled yet; past it the Worker keeps events in its own bounded queue
 * (and drops them when that is full), so a main thread that falls behind
 * cannot make the message channel grow without end.
 */
export const MAX_MESSAGES_IN_FLIGHT = 4;

/**
 * A datagram the engine received, as it reports it: the source as text and
 * a copy of the payload, so the event can cross to another thread.
 */
export interface EngineDatagramEvent {
  /** Echoed (`"datagram"`) or refused (`"dropped"`). */
  type: "datagram" | "dropped";
  /** Source address. */
  hostname: string;
  /** Source port. */
  port: number;
  /** A copy of the whole payload, in a buffer of its own (transferable). */
  data: Uint8Array<ArrayBuffer>;
  /** Bytes sent back (0 when dropped). */
  sent: number;
  /** The drop reason, or `undefined` when echoed. */
  reason: string | undefined;
}

/** A receive or send that failed, as the engine reports it. */
export interface EngineErrorEvent {
  /** Always `"error"`. */
  type: "error";
  /** Which system call failed. */
  operation: IoOperation;
  /** The errno it failed with. */
  errno: number;
  /** One line, lower case: "connection refused". */
  message: string;
  /** The destination of a failed send. */
  hostname?: string;
  /** The destination port of a failed send. */
  port?: number;
}

/** An event the engine reports. */
export type EngineEvent = EngineDatagramEvent | EngineErrorEvent;

/** The first message the main thread posts to a Worker. */
export interface WorkerConfig {
  /** Socket to serve. */
  fd: number;
  /** Its family. */
  family: AddressFamily;
  /** Its bound address. */
  localHostname: string;
  /** Its bound port. */
  localPort: number;
  /** Datagrams per system call. */
  batchSize: number;
  /** Counters ({@linkcode COUNTER_SLOTS} doubles), written by the Worker. */
  counts: SharedArrayBuffer;
  /** Control flags, one Int32: nonzero asks the loop to stop. */
  control: SharedArrayBuffer;
  /**
   * One Int32: `events` messages posted and not yet handled. The Worker
   * adds one per message, the main thread takes one away per message
   * handled; see {@linkcode MAX_MESSAGES_IN_FLIGHT}.
   */
  mailbox: SharedArrayBuffer;
  /** The decide module's URL; `null` echoes everything unjudged. */
  decideModule: string | null;
  /** Passed to the module's `createDecideHook`. */
  decideOptions: unknown;
  /** The reflect module's URL (see `ReflectModule`); `null` for plain echo. */
  reflectModule: string | null;
  /** Passed to the reflect module's `createReflectHook`. */
  reflectOptions: unknown;
  /** Report every datagram, not only errors. */
  datagramEvents: boolean;
  /** Call `gc()` (with `--expose-gc`) every this many batches; 0 never. */
  gcEveryBatches: number;
}

/** A message a Worker posts to the main thread. */
export type WorkerMessage =
  /** The loop is about to make its first receive: the engine is running. */
  | { type: "started" }
  | { type: "events"; events: EngineEvent[]; droppedBy: Record<string, number> }
  | { type: "failed"; message: string }
  | { type: "done"; droppedBy: Record<string, number> };

/**
 * Reads one socket's counter array into the model's counters. `dropped` is
 * the sum of `droppedBy`, which arrives with the events, so the two agree.
 */
export function readCounters(
  counts: Float64Array,
  droppedBy: Record<string, number>,
): Counters {
  const receiveErrors = counts[C_RECEIVE_ERRORS]!;
  const sendErrors = counts[C_SEND_ERRORS]!;
  return {
    received: counts[C_RECEIVED]!,
    receivedBytes: counts[C_RECEIVED_BYTES]!,
    echoed: counts[C_ECHOED]!,
    echoedBytes: counts[C_ECHOED_BYTES]!,
    dropped: Object.values(droppedBy).reduce((sum, n) => sum + n, 0),
    // A decide module other than the policy's may name reasons of its own.
    droppedBy: { ...droppedBy } as DropCounts,
    errors: receiveErrors + sendErrors,
    errorsBy: { receive: receiveErrors, send: sendErrors },
    eventsDropped: counts[C_EVENTS_DROPPED]!,
    activeSources: counts[C_ACTIVE_SOURCES]!,
  };
}

function netAddr(hostname: string, port: number): Deno.NetAddr {
  return { transport: "udp", hostname, port };
}

/**
 * Turns an engine event from the socket at `local` into the event the
 * socket backend would emit; an error becomes the `Deno.errors` class its
 * errno stands for.
 */
export function toServerEvent(
  event: EngineEvent,
  local: Deno.NetAddr,
): ServerEvent {
  switch (event.type) {
    case "error":
      return {
        type: "error",
        operation: event.operation,
        local,
        ...(event.hostname === undefined
          ? {}
          : { peer: netAddr(event.hostname, event.port!) }),
        error: errnoError(event.errno, event.message),
      };
    case "dropped":
      return {
        type: "dropped",
        from: netAddr(event.hostname, event.port),
        local,
        data: event.data,
        reason: event.reason as DropCause,
      };
    case "datagram":
      return {
        type: "datagram",
        from: netAddr(event.hostname, event.port),
        local,
        data: event.data,
        sent: event.sent,
      };
  }
}
