/**
 * The echo engine's side of the channel (`_channel.ts`): the configuration
 * a Worker starts with, the counters it keeps in the channel's totals, and
 * its events (a datagram echoed or dropped, a system call that failed) as
 * records, which the main thread turns into the events the socket backend
 * emits (`echo/types.ts`) and its counters into the model's.
 *
 * A datagram's record carries the source's `struct sockaddr` and a copy
 * of the payload as its bytes; the source's text is formatted on the main
 * thread, cached as the engine caches it.
 *
 * @module
 */

import type { AddressFamily } from "../net/address.ts";
import type { Counters } from "../echo/_shared.ts";
import type {
  DropCause,
  DropCounts,
  IoOperation,
  ServerEvent,
} from "../echo/types.ts";
import {
  type Channel,
  ChannelReader,
  ChannelWriter,
  createChannel,
  type EventsMessage,
} from "./_channel.ts";
import { errnoError } from "./_libc.ts";
import { NameCache } from "./_names.ts";
import {
  AF_INET,
  formatSockaddrHost,
  SOCKADDR_SIZE,
  sockaddrPort,
} from "./_sockaddr.ts";

/** Indices into the counters (the channel's totals). */
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
/** The number of counters. */
export const COUNTER_SLOTS = 10;

/**
 * Notifications a Worker may have posted that the main thread has not read
 * yet: a loop blocked in `recvmmsg` cannot wait for the reader, so more
 * than one may be on their way while events keep coming.
 */
export const MAX_MESSAGES_IN_FLIGHT = 4;
/** Events a socket's ring holds while the main thread is behind. */
const RING_RECORDS = 4096;
/** Bytes of sources and payloads it holds with datagram events. */
const RING_BYTES = 4 * 1024 * 1024;
/** Bytes it holds for the destinations of failed sends only. */
const ERROR_RING_BYTES = 64 * 1024;

// Record codes; the fields after the code: a datagram's drop reason (a
// string index, -1 when echoed), or an error's operation (0 receive, 1
// send), errno and message (a string index).
const DATAGRAM = 0;
const DROPPED = 1;
const ERROR = 2;

/** The first message the main thread posts to a Worker. */
export interface WorkerConfig {
  /** Socket to serve. */
  fd: number;
  /**
   * Its sink of datagrams forged from this host's addresses
   * (`_spoof_guard.ts`), or -1 when it has none.
   */
  spoofSinkFd: number;
  /** Its family. */
  family: AddressFamily;
  /** Its bound address. */
  localHostname: string;
  /** Its bound port. */
  localPort: number;
  /** Datagrams per system call. */
  batchSize: number;
  /** Events and counters ({@linkcode COUNTER_SLOTS} totals), see {@linkcode createEchoChannel}. */
  channel: Channel;
  /** Control flags, one Int32: nonzero asks the loop to stop. */
  control: SharedArrayBuffer;
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

/**
 * The channel of one socket: room for its payloads only when datagram
 * events are wanted.
 */
export function createEchoChannel(datagramEvents: boolean): Channel {
  return createChannel({
    records: RING_RECORDS,
    bytes: datagramEvents ? RING_BYTES : ERROR_RING_BYTES,
    totals: COUNTER_SLOTS,
  });
}

/**
 * Where the echo engine (`_echo_engine.ts`) reports what it did; it hands
 * over views of its own buffer, which the sink copies from at once.
 */
export interface EchoEventSink {
  /**
   * A datagram of `size` bytes at byte `payload` of `memory`, from the
   * `struct sockaddr` at byte `addr` (8-aligned): echoed when `reason` is
   * `undefined`, else dropped for it.
   */
  datagram(
    memory: Uint8Array,
    addr: number,
    payload: number,
    size: number,
    reason: string | undefined,
  ): void;
  /**
   * A system call that failed with `errno` (`message` describes it); a
   * failed send's destination is the `struct sockaddr` at byte `addr` of
   * `memory`, a receive has none (`addr` -1).
   */
  error(
    operation: IoOperation,
    errno: number,
    message: string,
    memory: Uint8Array,
    addr: number,
  ): void;
}

/** The Worker's end: an {@linkcode EchoEventSink} that writes records. */
export class EchoEventWriter implements EchoEventSink {
  /** The counters, in shared memory (see {@linkcode COUNTER_SLOTS}). */
  readonly totals: Float64Array;
  #channel: ChannelWriter;
  #flushedDrops = 0;
  #memory: Uint8Array | undefined;
  #memoryWords: Uint32Array = new Uint32Array(0);
  #ringWords: Uint32Array;

  /** Writes into `channel` and posts notifications with `post`. */
  constructor(channel: Channel, post: (message: EventsMessage) => void) {
    this.#channel = new ChannelWriter(channel, post, {
      maxInFlight: MAX_MESSAGES_IN_FLIGHT,
    });
    this.totals = this.#channel.totals;
    this.#ringWords = new Uint32Array(channel.bytes);
  }

  /** Events written and not yet announced. */
  get unposted(): number {
    return this.#channel.unposted;
  }

  /** Whether a notification may be posted now. */
  get canPost(): boolean {
    return this.#channel.canPost;
  }

  /**
   * Whether there is anything to announce: events, or drops (`dropped`
   * counts them all) since the last notification.
   */
  hasNews(dropped: number): boolean {
    return this.#channel.unposted > 0 || dropped !== this.#flushedDrops;
  }

  datagram(
    memory: Uint8Array,
    addr: number,
    payload: number,
    size: number,
    reason: string | undefined,
  ): void {
    const channel = this.#channel;
    if (!channel.reserve(SOCKADDR_SIZE + size)) return;
    const records = channel.records;
    const at = channel.at;
    records[at] = reason === undefined ? DATAGRAM : DROPPED;
    records[at + 1] = reason === undefined ? -1 : channel.intern(reason);
    this.#copySockaddr(memory, addr, channel.byteAt);
    channel.bytes.set(
      memory.subarray(payload, payload + size),
      channel.byteAt + SOCKADDR_SIZE,
    );
    channel.commit();
  }

  error(
    operation: IoOperation,
    errno: number,
    message: string,
    memory: Uint8Array,
    addr: number,
  ): void {
    const channel = this.#channel;
    if (!channel.reserve(addr < 0 ? 0 : SOCKADDR_SIZE)) return;
    const records = channel.records;
    const at = channel.at;
    records[at] = ERROR;
    records[at + 1] = operation === "receive" ? 0 : 1;
    records[at + 2] = errno;
    records[at + 3] = channel.intern(message);
    if (addr >= 0) this.#copySockaddr(memory, addr, channel.byteAt);
    channel.commit();
  }

  /**
   * Posts a notification when events wait, or the drops by reason changed
   * since the last (`dropped` counts them all), and the main thread keeps
   * up (`force`: whatever is in flight, for the end); returns whether it did.
   */
  flush(
    droppedBy: Record<string, number>,
    dropped: number,
    force = false,
  ): boolean {
    if (!force && !this.#channel.canPost) return false;
    if (dropped !== this.#flushedDrops) {
      this.#channel.detail({ ...droppedBy });
      this.#flushedDrops = dropped;
    }
    return this.#channel.flush(force);
  }

  /** Copies the `struct sockaddr` at byte `addr` of `memory` into the ring. */
  #copySockaddr(memory: Uint8Array, addr: number, to: number): void {
    if (memory !== this.#memory) {
      this.#memory = memory;
      this.#memoryWords = new Uint32Array(
        memory.buffer,
        memory.byteOffset,
        memory.length >> 2,
      );
    }
    const from = this.#memoryWords;
    const ring = this.#ringWords;
    const w = addr >> 2;
    const t = to >> 2;
    for (let k = 0; k < SOCKADDR_SIZE >> 2; k++) ring[t + k] = from[w + k]!;
  }
}

function netAddr(hostname: string, port: number): Deno.NetAddr {
  return { transport: "udp", hostname, port };
}

/**
 * The main thread's end of one socket's channel: its events as the socket
 * backend emits them, and its counters as the model's.
 */
export class EchoEventReader {
  /** Drops per reason, as of the last notification read. */
  droppedBy: Record<string, number> = {};
  #channel: ChannelReader;
  #local: Deno.NetAddr;
  #names = new NameCache();
  #decode = (reader: ChannelReader): ServerEvent => this.#event(reader);
  #takeDrops = (detail: unknown) => {
    this.droppedBy = detail as Record<string, number>;
  };

  /** Reads `channel`, the socket at `local`'s. */
  constructor(channel: Channel, local: Deno.NetAddr) {
    this.#channel = new ChannelReader(channel);
    this.#local = local;
  }

  /** The counters as the Worker last wrote them (see {@linkcode COUNTER_SLOTS}). */
  get totals(): Float64Array {
    return this.#channel.totals;
  }

  /** Hands each event of `message` to `onEvent`. */
  read(message: EventsMessage, onEvent: (event: ServerEvent) => void): void {
    this.#channel.read(message, this.#decode, onEvent, this.#takeDrops);
  }

  /**
   * The socket's counters. `dropped` is the sum of `droppedBy`, which
   * arrives with the events, so the two agree.
   */
  counters(): Counters {
    return readCounters(
      this.#channel.totals,
      this.droppedBy,
      this.#channel.dropped,
    );
  }

  #event(reader: ChannelReader): ServerEvent {
    const records = reader.records;
    const at = reader.at;
    const code = records[at]!;
    const local = this.#local;
    const addr = reader.byteAt;
    if (code === ERROR) {
      const errno = records[at + 2]!;
      const message = reader.string(records[at + 3]!) ?? `errno ${errno}`;
      return {
        type: "error",
        operation: records[at + 1] === 0 ? "receive" : "send",
        local,
        ...(reader.byteLength === 0 ? {} : {
          peer: netAddr(
            formatSockaddrHost(reader.bytes, addr),
            sockaddrPort(reader.bytes, addr),
          ),
        }),
        error: errnoError(errno, message),
      };
    }
    const bytes = reader.bytes;
    const from = netAddr(
      bytes[addr] === AF_INET
        ? this.#names.name(bytes, reader.words, addr + 4, 4)
        : this.#names.name(bytes, reader.words, addr + 8, 6),
      sockaddrPort(bytes, addr),
    );
    const start = addr + SOCKADDR_SIZE;
    const data = bytes.slice(start, addr + reader.byteLength);
    return code === DATAGRAM
      ? { type: "datagram", from, local, data, sent: data.length }
      : {
        type: "dropped",
        from,
        local,
        data,
        reason: reader.string(records[at + 1]!) as DropCause,
      };
  }
}

/**
 * Reads one socket's counters into the model's: `dropped` is the sum of
 * `droppedBy`, errors are split by operation, and `eventsDropped` is what
 * the channel dropped.
 */
export function readCounters(
  counts: Float64Array,
  droppedBy: Record<string, number>,
  eventsDropped: number,
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
    eventsDropped,
    activeSources: counts[C_ACTIVE_SOURCES]!,
    // The kernel's count, which the thread owning the socket reads (echo.ts).
    hostDrops: 0,
  };
}
