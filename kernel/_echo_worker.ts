/**
 * The Worker of the batch backend (see `echo.ts`): receives its
 * configuration, runs the blocking receive/decide/send loop of one socket
 * with synchronous FFI calls until the main thread sets the stop flag, and
 * posts events and drop counts in batches.
 *
 * @module
 */

import { errorMessage } from "../net/address.ts";
import type {
  DecideHook,
  DecideModule,
  ReflectHook,
  ReflectModule,
} from "./_hooks.ts";
import { BatchEngine } from "./_echo_engine.ts";
import { openLibc } from "./_libc.ts";
import {
  C_EVENTS_DROPPED,
  type EngineEvent,
  MAX_MESSAGES_IN_FLIGHT,
  type WorkerConfig,
  type WorkerMessage,
} from "./_echo_events.ts";
import {
  RECEIVE_ERROR_PAUSE_MS,
  RECEIVE_ERRORS_BEFORE_PAUSE,
} from "../echo/_shared.ts";

/** How often, at most, pending events go to the main thread. */
const FLUSH_INTERVAL_MS = 50;
/** How often the decide hook's active sources are counted (a table scan). */
const SAMPLE_INTERVAL_MS = 250;
/** Events that, piled up, leave at once: a flood must not grow the queue. */
const FLUSH_EVENTS = 256;
/**
 * The most events, and payload bytes in them, the Worker holds while the
 * main thread is behind (see MAX_MESSAGES_IN_FLIGHT); past either the
 * event is dropped and counted, never the datagram.
 */
const MAX_QUEUED_EVENTS = 1024;
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;

declare const self: {
  onmessage: ((event: MessageEvent<WorkerConfig>) => void) | null;
  postMessage(message: WorkerMessage, transfer?: Transferable[]): void;
};

function post(message: WorkerMessage): void {
  // Each payload is a copy of its own: hand it over rather than copy again.
  const transfer = message.type === "events"
    ? message.events.flatMap((event) =>
      event.type === "error" ? [] : [event.data.buffer]
    )
    : [];
  self.postMessage(message, transfer);
}

async function loadDecideHook(
  config: WorkerConfig,
): Promise<DecideHook | undefined> {
  if (config.decideModule === null) return undefined;
  const module: DecideModule = await import(config.decideModule);
  return module.createDecideHook(config.decideOptions, {
    transport: "udp",
    hostname: config.localHostname,
    port: config.localPort,
  });
}

async function loadReflectHook(
  config: WorkerConfig,
): Promise<ReflectHook | undefined> {
  if (config.reflectModule === null) return undefined;
  const module: ReflectModule = await import(config.reflectModule);
  return module.createReflectHook(config.reflectOptions, {
    transport: "udp",
    hostname: config.localHostname,
    port: config.localPort,
  });
}

async function run(config: WorkerConfig): Promise<void> {
  const libc = openLibc();
  const events: EngineEvent[] = [];
  let queuedBytes = 0;
  const counts = new Float64Array(config.counts);
  const mailbox = new Int32Array(config.mailbox);
  const decide = await loadDecideHook(config);
  const engine = new BatchEngine(libc, {
    fd: config.fd,
    family: config.family,
    localHostname: config.localHostname,
    localPort: config.localPort,
    batchSize: config.batchSize,
    counts,
    decide,
    reflect: await loadReflectHook(config),
    onEvent: (event) => {
      const bytes = event.type === "error" ? 0 : event.data.length;
      if (
        events.length >= MAX_QUEUED_EVENTS ||
        queuedBytes + bytes > MAX_QUEUED_BYTES
      ) {
        counts[C_EVENTS_DROPPED]!++;
        return;
      }
      events.push(event);
      queuedBytes += bytes;
    },
    datagramEvents: config.datagramEvents,
  });
  const postEvents = () => {
    Atomics.add(mailbox, 0, 1);
    post({
      type: "events",
      events: events.splice(0),
      droppedBy: { ...engine.droppedBy },
    });
    queuedBytes = 0;
  };
  const control = new Int32Array(config.control);
  const gc = (globalThis as { gc?: () => void }).gc;
  const gcEvery = gc === undefined ? 0 : config.gcEveryBatches;
  let batches = 0;
  let flushedDrops = 0;
  let lastFlush = performance.now();
  let failuresInRow = 0;
  let lastSample = 0;
  // Everything that can fail at start (libc, the decide module, the
  // engine's buffers) has been set up: tell the main thread, which may
  // still pick another backend until now (`--io auto`).
  post({ type: "started" });
  while (Atomics.load(control, 0) === 0) {
    const n = engine.receive();
    // Stopping: whatever shutdown() made the receive return is no datagram.
    if (Atomics.load(control, 0) !== 0) break;
    if (n > 0) {
      engine.echo(n);
      failuresInRow = 0;
    } else if (n < 0 && engine.receiveFailed(-n)) {
      // A socket that fails at once must not spin a core: pause, but wake
      // as soon as the main thread asks the loop to stop.
      if (++failuresInRow >= RECEIVE_ERRORS_BEFORE_PAUSE) {
        Atomics.wait(control, 0, 0, RECEIVE_ERROR_PAUSE_MS);
      }
    }
    if (gcEvery > 0 && ++batches % gcEvery === 0) engine.forceGc(gc!);
    if (decide?.activeSources !== undefined) {
      const now = performance.now();
      if (now - lastSample >= SAMPLE_INTERVAL_MS) {
        engine.sampleActiveSources();
        lastSample = now;
      }
    }
    // Events leave in batches: when the socket looked drained (a short or
    // empty batch, so the loop is about to block), when many piled up, or
    // when a while has passed under a flood; and only while the main thread
    // keeps up with the messages already posted.
    const dropped = engine.dropped;
    if (
      (events.length > 0 || dropped !== flushedDrops) &&
      Atomics.load(mailbox, 0) < MAX_MESSAGES_IN_FLIGHT
    ) {
      const now = performance.now();
      if (
        n < config.batchSize || events.length >= FLUSH_EVENTS ||
        now - lastFlush >= FLUSH_INTERVAL_MS
      ) {
        postEvents();
        flushedDrops = dropped;
        lastFlush = now;
      }
    }
  }
  postEvents();
  post({ type: "done", droppedBy: { ...engine.droppedBy } });
}

self.onmessage = (event: MessageEvent<WorkerConfig>) => {
  self.onmessage = null;
  run(event.data).catch((error) =>
    post({ type: "failed", message: errorMessage(error) })
  );
};
