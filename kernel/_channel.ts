/**
 * The one way a kernel engine's Worker talks to the main thread, for the
 * echo engine and the probe loop alike: a ring of fixed-size records in a
 * SharedArrayBuffer, with a ring of bytes beside it for what a record
 * carries (a payload, an address), written by the Worker and read by the
 * main thread; totals the Worker keeps in shared memory for the main
 * thread to read at any time; and few small messages: `started`, an
 * `events` notification when records are ready, `failed`, and `done` with
 * the run's result.
 *
 * The Worker never waits for the reader while it works: when the ring (or
 * its bytes) is full, such as when a main thread falls behind writing
 * `--ndjson` into a slow pipe, the event is dropped and counted, never the
 * datagram, so totals the Worker keeps in its own books stay exact.
 * Notifications in flight are bounded too (`maxInFlight`). Strings (drop
 * reasons, error messages) cross once and are then referred to by index;
 * values that are neither numbers nor bytes (a STAMP reply's details, the
 * echo engine's drops by reason) travel with the next notification as
 * details, as many at most as the ring holds records.
 *
 * A record is {@linkcode RECORD_FIELDS} float64s: a code and four numbers
 * whose meaning the code's user gives (`_echo_events.ts`,
 * `_probe_events.ts`), and the length of its bytes. Bytes are written
 * whole (a record's bytes never wrap around the end of the ring), 8-aligned.
 *
 * @module
 */

/** Float64 fields per record: code, four numbers, byte length. */
export const RECORD_FIELDS = 6;
/** The field holding the length of a record's bytes. */
const BYTE_LENGTH = 5;
// Indices into the Int32 control words.
const WRITTEN = 0;
const READ = 1;
const IN_FLIGHT = 2;
const BYTES_READ = 3;
const CONTROL_WORDS = 4;
/** How long an end-of-run write waits for the reader per try, in ms. */
const END_WAIT_SLICE_MS = 50;

/** The shared memory of one Worker's channel (structured-clones to it). */
export interface Channel {
  /** A power of two of records of {@linkcode RECORD_FIELDS} float64s. */
  records: SharedArrayBuffer;
  /** A power of two of bytes (or none) for what records carry. */
  bytes: SharedArrayBuffer;
  /** Int32 words (written, read, notifications in flight, bytes read), then a float64: events dropped. */
  control: SharedArrayBuffer;
  /** Float64 totals the Worker writes and the main thread reads any time. */
  totals: SharedArrayBuffer;
}

/** The sizes of a {@linkcode Channel}. */
export interface ChannelSizes {
  /** Records the ring holds, a power of two. */
  records: number;
  /** Bytes the byte ring holds, 0 or a power of two of at least 8. */
  bytes?: number;
  /** Float64 totals. */
  totals?: number;
}

/** The notification the Worker posts: records up to `upTo` are readable. */
export interface EventsMessage {
  type: "events";
  /** Records written so far (a wrapping 32-bit count). */
  upTo: number;
  /** Strings first used since the last notification, in order. */
  strings: string[];
  /** Values handed on since the last notification, before its records. */
  details?: unknown[];
}

/** Every message a kernel engine's Worker posts; `R` is its result. */
export type WorkerMessage<R> =
  /** Set up, about to make its first system call: the engine is running. */
  | { type: "started" }
  | EventsMessage
  /** The engine could not start or stopped on a failure. */
  | { type: "failed"; message: string }
  /** The last message: every event before it was notified. */
  | { type: "done"; result: R }
  /** A warm-up engine waits for a datagram from the main thread. */
  | WakeRequest;

/** A Worker's ask: send a datagram from socket `fd` to `hostname`:`port`. */
export interface WakeRequest {
  type: "wake";
  fd: number;
  hostname: string;
  port: number;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && Number.isInteger(Math.log2(n));
}

/**
 * Allocates a channel; throws RangeError when `records` is not a power of
 * two, or `bytes` neither 0 nor a power of two of at least 8.
 */
export function createChannel(sizes: ChannelSizes): Channel {
  const { records, bytes = 0, totals = 0 } = sizes;
  if (!isPowerOfTwo(records)) {
    throw new RangeError(
      `Cannot hold ${records} events: expected a power of two`,
    );
  }
  if (bytes !== 0 && !(isPowerOfTwo(bytes) && bytes >= 8)) {
    throw new RangeError(
      `Cannot hold ${bytes} bytes of events: expected a power of two`,
    );
  }
  return {
    records: new SharedArrayBuffer(
      records * RECORD_FIELDS * Float64Array.BYTES_PER_ELEMENT,
    ),
    bytes: new SharedArrayBuffer(bytes),
    control: new SharedArrayBuffer(
      CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT +
        Float64Array.BYTES_PER_ELEMENT,
    ),
    totals: new SharedArrayBuffer(totals * Float64Array.BYTES_PER_ELEMENT),
  };
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Where a record's bytes start in the ring: they never wrap. */
function bytesStart(position: number, length: number, mask: number): number {
  const at = position & mask;
  return at + length > mask + 1 ? 0 : at;
}

/**
 * The Worker's end. {@linkcode reserve} makes room for one record, which
 * the caller then fills at {@linkcode at} (and its bytes at
 * {@linkcode byteAt}) and publishes with {@linkcode commit};
 * {@linkcode flush} posts a notification when one is due. Nothing here
 * allocates per record except a string's first use.
 */
export class ChannelWriter {
  /** The record ring: fill fields `at` to `at + 4` of a reserved record. */
  readonly records: Float64Array;
  /** The byte ring: fill `byteAt` onwards with a reserved record's bytes. */
  readonly bytes: Uint8Array;
  /** The totals (see {@linkcode Channel.totals}). */
  readonly totals: Float64Array;
  /** The first field of the record reserved last. */
  at = 0;
  /** The first byte of the record reserved last. */
  byteAt = 0;
  #mask: number;
  #byteMask: number;
  #control: Int32Array;
  #dropped: Float64Array;
  #post: (message: EventsMessage) => void;
  #maxInFlight: number;
  #written = 0;
  #posted = 0;
  #bytesWritten = 0;
  #nextBytes = 0;
  #strings = new Map<string, number>();
  #newStrings: string[] = [];
  #details: unknown[] = [];

  /**
   * Writes into `channel` and posts notifications with `post`, at most
   * `maxInFlight` of them unread at once (default 1).
   */
  constructor(
    channel: Channel,
    post: (message: EventsMessage) => void,
    options: { maxInFlight?: number } = {},
  ) {
    this.records = new Float64Array(channel.records);
    this.bytes = new Uint8Array(channel.bytes);
    this.totals = new Float64Array(channel.totals);
    this.#mask = this.records.length / RECORD_FIELDS - 1;
    this.#byteMask = this.bytes.length - 1;
    this.#control = new Int32Array(channel.control, 0, CONTROL_WORDS);
    this.#dropped = new Float64Array(
      channel.control,
      CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT,
      1,
    );
    this.#post = post;
    this.#maxInFlight = options.maxInFlight ?? 1;
  }

  /** Events dropped because the ring was full or the reader behind. */
  get dropped(): number {
    return this.#dropped[0]!;
  }

  /** Records written and not yet announced. */
  get unposted(): number {
    return (this.#written - this.#posted) | 0;
  }

  /** Whether a notification may be posted now (fewer than `maxInFlight` unread). */
  get canPost(): boolean {
    return Atomics.load(this.#control, IN_FLIGHT) < this.#maxInFlight;
  }

  /**
   * Makes room for one record carrying `byteLength` bytes and points
   * {@linkcode at} and {@linkcode byteAt} at it; returns false, and counts
   * the event as dropped, when the reader has not freed enough yet.
   */
  reserve(byteLength = 0): boolean {
    if (!this.#hasRoom(byteLength)) {
      this.#dropped[0]!++;
      return false;
    }
    this.at = (this.#written & this.#mask) * RECORD_FIELDS;
    this.records[this.at + BYTE_LENGTH] = byteLength;
    return true;
  }

  /** Publishes the record {@linkcode reserve} made room for. */
  commit(): void {
    this.#bytesWritten = this.#nextBytes;
    this.#written = (this.#written + 1) | 0;
    Atomics.store(this.#control, WRITTEN, this.#written);
  }

  /**
   * Like {@linkcode reserve}, but once the reader has made room (for the
   * end of a run, after the loop); drops the event, and returns false, if
   * `aborted()` turns true meanwhile.
   */
  reserveWaiting(byteLength: number, aborted: () => boolean): boolean {
    while (!this.#hasRoom(byteLength)) {
      if (aborted() || !this.#fits(byteLength)) {
        this.#dropped[0]!++;
        return false;
      }
      this.flush();
      Atomics.wait(
        this.#control,
        READ,
        Atomics.load(this.#control, READ),
        END_WAIT_SLICE_MS,
      );
    }
    return this.reserve(byteLength);
  }

  /** The index of `text` for a record's field, sent with the next notification on first use. */
  intern(text: string): number {
    let index = this.#strings.get(text);
    if (index === undefined) {
      index = this.#strings.size;
      this.#strings.set(text, index);
      this.#newStrings.push(text);
    }
    return index;
  }

  /**
   * Hands `value` on with the next notification, before its records; past
   * as many as the ring holds records, while the reader is behind, it is
   * dropped and counted like an event.
   */
  detail(value: unknown): void {
    if (this.#details.length > this.#mask) {
      this.#dropped[0]!++;
      return;
    }
    this.#details.push(value);
  }

  /**
   * Posts a notification when records, strings or details wait and fewer
   * than `maxInFlight` are unread (`force`: whatever is in flight, for the
   * end of a run); returns whether it did.
   */
  flush(force = false): boolean {
    if (
      this.unposted === 0 && this.#newStrings.length === 0 &&
      this.#details.length === 0
    ) return false;
    if (!force && !this.canPost) return false;
    Atomics.add(this.#control, IN_FLIGHT, 1);
    this.#posted = this.#written;
    const strings = this.#newStrings;
    if (strings.length > 0) this.#newStrings = [];
    const details = this.#details;
    if (details.length > 0) this.#details = [];
    this.#post({
      type: "events",
      upTo: this.#written,
      strings,
      ...(details.length > 0 ? { details } : {}),
    });
    return true;
  }

  /** Whether `byteLength` bytes could ever fit. */
  #fits(byteLength: number): boolean {
    return byteLength === 0 || align8(byteLength) <= this.#byteMask + 1;
  }

  #hasRoom(byteLength: number): boolean {
    const read = Atomics.load(this.#control, READ);
    if (((this.#written - read) | 0) > this.#mask) return false;
    if (byteLength === 0) {
      this.#nextBytes = this.#bytesWritten;
      return true;
    }
    if (!this.#fits(byteLength)) return false;
    const length = align8(byteLength);
    const position = this.#bytesWritten;
    const start = bytesStart(position, length, this.#byteMask);
    // Bytes skipped at the end of the ring, so that these do not wrap.
    const skipped = start === 0 ? (-position & this.#byteMask) : 0;
    const used = (position - Atomics.load(this.#control, BYTES_READ)) | 0;
    if (used + skipped + length > this.#byteMask + 1) return false;
    this.byteAt = start;
    this.#nextBytes = (position + skipped + length) | 0;
    return true;
  }
}

/**
 * The main thread's end: hands each record to a decoder, which turns it
 * into an event (copying its bytes) while the record is still its own,
 * frees its room, then hands the event on.
 */
export class ChannelReader {
  /** The record ring (see {@linkcode ChannelWriter.records}). */
  readonly records: Float64Array;
  /** The byte ring. */
  readonly bytes: Uint8Array;
  /** The same bytes as 32-bit words (a record's bytes start 8-aligned). */
  readonly words: Uint32Array;
  /** The totals, as the Worker last wrote them. */
  readonly totals: Float64Array;
  /** The first field of the record being decoded. */
  at = 0;
  /** The first byte of the record being decoded. */
  byteAt = 0;
  /** How many bytes it carries. */
  byteLength = 0;
  #mask: number;
  #byteMask: number;
  #control: Int32Array;
  #dropped: Float64Array;
  #read = 0;
  #bytesRead = 0;
  #strings: string[] = [];

  /** Reads `channel`. */
  constructor(channel: Channel) {
    this.records = new Float64Array(channel.records);
    this.bytes = new Uint8Array(channel.bytes);
    this.words = new Uint32Array(channel.bytes);
    this.totals = new Float64Array(channel.totals);
    this.#mask = this.records.length / RECORD_FIELDS - 1;
    this.#byteMask = this.bytes.length - 1;
    this.#control = new Int32Array(channel.control, 0, CONTROL_WORDS);
    this.#dropped = new Float64Array(
      channel.control,
      CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT,
      1,
    );
  }

  /** Events the Worker dropped because this end fell behind. */
  get dropped(): number {
    return this.#dropped[0]!;
  }

  /** A string a record names by index; `undefined` when never sent. */
  string(index: number): string | undefined {
    return this.#strings[index];
  }

  /**
   * Hands the message's details to `onDetail`, then decodes every record up
   * to its `upTo` with `decode`, frees the record's room and hands the
   * event to `onEvent`; then lets the Worker post another notification.
   */
  read<T>(
    message: EventsMessage,
    decode: (reader: ChannelReader) => T,
    onEvent?: (event: T) => void,
    onDetail?: (detail: unknown) => void,
  ): void {
    for (const text of message.strings) this.#strings.push(text);
    if (onDetail !== undefined) {
      for (const detail of message.details ?? []) onDetail(detail);
    }
    const records = this.records;
    while (((message.upTo - this.#read) | 0) > 0) {
      this.at = (this.#read & this.#mask) * RECORD_FIELDS;
      const byteLength = records[this.at + BYTE_LENGTH]!;
      this.byteLength = byteLength;
      if (byteLength > 0) {
        const length = align8(byteLength);
        const position = this.#bytesRead;
        this.byteAt = bytesStart(position, length, this.#byteMask);
        const skipped = this.byteAt === 0 ? (-position & this.#byteMask) : 0;
        this.#bytesRead = (position + skipped + length) | 0;
      }
      const event = decode(this);
      this.#read = (this.#read + 1) | 0;
      // Room is freed before the event is handed on: a slow handler must
      // not keep the ring full longer than it has to.
      Atomics.store(this.#control, BYTES_READ, this.#bytesRead);
      Atomics.store(this.#control, READ, this.#read);
      onEvent?.(event);
    }
    Atomics.notify(this.#control, READ);
    Atomics.sub(this.#control, IN_FLIGHT, 1);
  }
}
