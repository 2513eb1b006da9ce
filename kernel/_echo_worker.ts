/**
 * The Worker of the batch backend (see `echo.ts`): receives its
 * configuration, runs the blocking receive/decide/send loop of one socket
 * with synchronous FFI calls until the main thread sets the stop flag, and
 * hands its events and drops by reason to the main thread in batches
 * through its channel (`_echo_events.ts`).
 *
 * @module
 */

import { errorMessage } from "../net/errors.ts";
import type {
  DecideHook,
  DecideModule,
  ReflectHook,
  ReflectModule,
} from "./_hooks.ts";
import { EchoEngine } from "./_echo_engine.ts";
import { openLibc } from "./_libc.ts";
import type { WorkerMessage } from "./_channel.ts";
import { EchoEventWriter, type WorkerConfig } from "./_echo_events.ts";
import { loadModule } from "./_module.ts";
import { SpoofSink } from "./_spoof_sink.ts";
import { warmUpEngine } from "./_echo_warm_up.ts";
import {
  RECEIVE_ERROR_PAUSE_MS,
  RECEIVE_ERRORS_BEFORE_PAUSE,
} from "../echo/_shared.ts";

/** How often, at most, pending events go to the main thread. */
const FLUSH_INTERVAL_MS = 50;
/** How often the decide hook's active sources are counted (a table scan). */
const SAMPLE_INTERVAL_MS = 250;
/** How often the sink of forged local sources is looked at. */
const DRAIN_INTERVAL_MS = 50;
/** Events that, piled up, are announced at once. */
const FLUSH_EVENTS = 256;

/** What the Worker posts: the drops by reason are its result. */
type EchoMessage = WorkerMessage<Record<string, number>>;

declare const self: {
  onmessage: ((event: MessageEvent<WorkerConfig>) => void) | null;
  postMessage(message: EchoMessage): void;
};

function post(message: EchoMessage): void {
  self.postMessage(message);
}

async function loadDecideHook(
  config: WorkerConfig,
): Promise<DecideHook | undefined> {
  if (config.decideModule === null) return undefined;
  const module = await loadModule<DecideModule>(config.decideModule);
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
  const module = await loadModule<ReflectModule>(config.reflectModule);
  return module.createReflectHook(config.reflectOptions, {
    transport: "udp",
    hostname: config.localHostname,
    port: config.localPort,
  });
}

async function run(config: WorkerConfig): Promise<void> {
  const libc = openLibc();
  const writer = new EchoEventWriter(config.channel, post);
  const decide = await loadDecideHook(config);
  const engine = new EchoEngine(libc, {
    fd: config.fd,
    family: config.family,
    localHostname: config.localHostname,
    localPort: config.localPort,
    batchSize: config.batchSize,
    counts: writer.totals,
    decide,
    reflect: await loadReflectHook(config),
    events: writer,
    datagramEvents: config.datagramEvents,
  });
  // Datagrams the kernel set aside as forged from this host's addresses.
  const sink = config.spoofSinkFd < 0 ? undefined : new SpoofSink(libc, {
    fd: config.spoofSinkFd,
    ipv6: config.family === "IPv6",
    counts: engine.counts,
    droppedBy: engine.droppedBy,
    events: writer,
    datagramEvents: config.datagramEvents,
  });
  const control = new Int32Array(config.control);
  const gc = (globalThis as { gc?: () => void }).gc;
  const gcEvery = gc === undefined ? 0 : config.gcEveryBatches;
  let batches = 0;
  let lastFlush = performance.now();
  let failuresInRow = 0;
  let lastSample = 0;
  let lastDrain = 0;
  // The first datagram's start-up work, done before the server says it is
  // ready, with hooks of the warm-up's own (`_echo_warm_up.ts`).
  await warmUpEngine(libc, {
    family: config.family,
    batchSize: config.batchSize,
    receiveTimes: config.reflectModule !== null,
    hooks: async () => ({
      decide: await loadDecideHook(config),
      reflect: await loadReflectHook(config),
    }),
    ask: post,
  });
  // Everything that can fail at start (libc, the decide module, the
  // engine's buffers) has been set up: tell the main thread, which may
  // still pick another backend until now (`--io auto`).
  post({ type: "started" });
  while (Atomics.load(control, 0) === 0) {
    const n = engine.receive();
    // Stopping: whatever shutdown() made the receive return is no datagram.
    if (Atomics.load(control, 0) !== 0) break;
    // One clock read per turn: the batch's arrival time, for the hooks, the
    // active-sources sample and the flush alike.
    const now = performance.now();
    if (n > 0) {
      engine.echo(n, now);
      failuresInRow = 0;
    } else if (n < 0 && engine.receiveFailed(-n)) {
      // A socket that fails at once must not spin a core: pause, but wake
      // as soon as the main thread asks the loop to stop.
      if (++failuresInRow >= RECEIVE_ERRORS_BEFORE_PAUSE) {
        Atomics.wait(control, 0, 0, RECEIVE_ERROR_PAUSE_MS);
      }
    }
    // Replies held for later leave at the first turn once due: the receive
    // timeout wakes an idle loop. Those due together leave together, in as
    // many batches as it takes, not one batch per turn.
    while (engine.sendHeld(now) === config.batchSize);
    if (gcEvery > 0 && ++batches % gcEvery === 0) engine.forceGc(gc!);
    if (sink !== undefined) {
      const now = performance.now();
      if (now - lastDrain >= DRAIN_INTERVAL_MS) {
        sink.drain();
        lastDrain = now;
      }
    }
    if (decide?.activeSources !== undefined) {
      if (now - lastSample >= SAMPLE_INTERVAL_MS) {
        engine.sampleActiveSources();
        lastSample = now;
      }
    }
    // Events are announced in batches: when the socket looked drained (a
    // short or empty batch, so the loop is about to block), when many piled
    // up, or when a while has passed under a flood; and only while the main
    // thread keeps up with the notifications already posted.
    const dropped = engine.dropped;
    if (writer.hasNews(dropped) && writer.canPost) {
      if (
        n < config.batchSize || writer.unposted >= FLUSH_EVENTS ||
        now - lastFlush >= FLUSH_INTERVAL_MS
      ) {
        writer.flush(engine.droppedBy, dropped);
        lastFlush = now;
      }
    }
  }
  // What was set aside until the stop counts in the totals too.
  sink?.drain();
  engine.dropAllHeld();
  writer.flush(engine.droppedBy, engine.dropped, true);
  post({ type: "done", result: { ...engine.droppedBy } });
}

self.onmessage = (event: MessageEvent<WorkerConfig>) => {
  self.onmessage = null;
  run(event.data).catch((error) =>
    post({ type: "failed", message: errorMessage(error) })
  );
};
