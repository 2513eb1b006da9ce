/**
 * The STAMP Session-Reflector in unauthenticated mode (RFC 8762 §4.3): turns
 * a Session-Sender test packet into the reply, exactly as long as the
 * request so it never amplifies. Stateless by default (the reply's sequence
 * number copies the sender's); stateful keeps a counter per session, keyed
 * by the sender's address, port and SSID, in a bounded table whose idle
 * sessions expire.
 *
 * A request with our Delayed Reply TLV (`tlv.ts`) may be granted a delay:
 * the reflector then tells its caller to hold the reply (`holdMs`), within
 * a bounded count and size of held replies and a bounded delay, and counts
 * what it refuses; a refused delay is answered at once, with 0 granted.
 *
 * @example Reflect a hand-made request
 * ```ts
 * import { StampReflector } from "./reflector.ts";
 * import { readReflectorPacket, writeSenderPacket } from "./packet.ts";
 * import { equal } from "node:assert/strict";
 *
 * const request = new Uint8Array(44);
 * writeSenderPacket(request, {
 *   seq: 7,
 *   timestampMs: Date.now(),
 *   errorEstimate: { synchronized: false, format: "ntp", scale: 0, multiplier: 1 },
 *   ssid: 3,
 * });
 * const reflector = new StampReflector();
 * const reply = new Uint8Array(44);
 * equal(reflector.reflect(request, reply, {
 *   from: { hostname: "192.0.2.1", port: 40000 },
 *   local: { hostname: "192.0.2.2", port: 862 },
 *   receivedAtMs: Date.now(),
 * }), 44);
 * equal(readReflectorPacket(reply)?.senderSeq, 7);
 * ```
 *
 * @module
 */

import {
  encodeErrorEstimate,
  errorEstimateFor,
  OFFSET,
  STAMP_BASE_SIZE,
  type TimestampFormat,
  writeTimestamp,
} from "./packet.ts";
import {
  type ClockInfo,
  type DelayGrant,
  reflectTlvs,
  SYNC_SOURCE,
  TIMESTAMP_METHOD,
  type TlvMarks,
} from "./tlv.ts";

/** The drop reason of a datagram shorter than the base packet. */
export const STAMP_TOO_SHORT = "stamp-too-short";

/** Sessions a stateful reflector tracks at once by default. */
export const DEFAULT_MAX_SESSIONS = 65_536;

/** Milliseconds after which an idle session of a stateful reflector may be dropped. */
export const DEFAULT_SESSION_IDLE_MS = 300_000;

/**
 * The longest delay a Delayed Reply TLV is granted by default, ms: the
 * longest binding-timeout search `client.ts --diagnose nat` makes by default.
 */
export const DEFAULT_MAX_DELAY_MS = 300_000;

/** Replies held for a Delayed Reply TLV at once by default. */
export const DEFAULT_MAX_HELD = 1024;

/** Bytes of replies held for a Delayed Reply TLV at once by default. */
export const DEFAULT_MAX_HELD_BYTES = 1 << 20;

/**
 * Replies held at once for one source (an IPv4 address or an IPv6 /64) by
 * default: a NAT search holds one at a time, and one source must not fill
 * the table for everyone else.
 */
export const DEFAULT_MAX_HELD_PER_SOURCE = 16;

/**
 * The error the reflector claims for its timestamps, in milliseconds: a
 * software timestamp taken in the event loop, off by up to about this much.
 */
const SOFTWARE_ERROR_MS = 1;

/** Options for {@linkcode StampReflector}. */
export interface StampReflectorOptions {
  /** Keep a sequence counter per session (RFC 8762 §4.3.1); default false. */
  stateful?: boolean;
  /** The format of the reflector's timestamps; default `ntp`. */
  format?: TimestampFormat;
  /** Sessions tracked at once when stateful; default 65536. */
  maxSessions?: number;
  /** An idle session may be dropped after this many ms; default 300000. */
  sessionIdleMs?: number;
  /** The wall clock in ms since the Unix epoch; default `Date.now`-like, sub-ms. */
  now?: () => number;
  /** The longest delay a Delayed Reply TLV is granted, ms; default 300000. */
  maxDelayMs?: number;
  /** Replies held at once for Delayed Reply TLVs; default 1024. */
  maxHeld?: number;
  /** Bytes of replies held at once; default 1 MiB. */
  maxHeldBytes?: number;
  /** Replies held at once for one source (IPv4 address, IPv6 /64); default 16. */
  maxHeldPerSource?: number;
}

/** What the reflector knows of one received packet. */
export interface ReflectContext {
  /** The sender's address and port. */
  from: { hostname: string; port: number };
  /** The socket's address and port (the destination the sender used). */
  local: { hostname: string; port: number };
  /** T2: when the packet was received, ms since the Unix epoch. */
  receivedAtMs: number;
  /** The TTL or hop limit it arrived with; 0 or absent when unknown. */
  ttl?: number;
  /**
   * Whether the caller can hold the reply and send it later, for a Delayed
   * Reply TLV; without it such a request is answered at once (granted 0).
   */
  canHold?: boolean;
  /**
   * Written by `reflect`: how long to hold the reply before sending it, ms;
   * 0 sends it now. A held reply takes room in the reflector's bounded
   * table until the caller hands it back with
   * {@linkcode StampReflector.release}, sent or dropped.
   */
  holdMs?: number;
  /**
   * The TOS or traffic class byte it arrived with, for the Class of
   * Service TLV; -1 or absent when unknown (the TLV then goes back with U
   * set: this reflector can neither read nor set the marking).
   */
  tos?: number;
}

/** What a reflector has done, for its totals. */
export interface StampReflectorCounts extends TlvMarks {
  /** Replies written. */
  reflected: number;
  /** Requests under 44 bytes, left unanswered. */
  tooShort: number;
  /** Sessions in the table now (stateful only). */
  sessions: number;
  /** Replies held for a Delayed Reply TLV, since the start. */
  held: number;
  /** Replies held now, not yet released. */
  heldNow: number;
  /**
   * Delayed Reply TLVs answered at once instead: the delay over the
   * ceiling, the table full, or a caller that cannot hold.
   */
  holdRefused: number;
}

interface Session {
  next: number;
  lastMs: number;
}

/** The wall clock with sub-millisecond resolution. */
function wallClock(): number {
  return performance.timeOrigin + performance.now();
}

/** A Session-Reflector: {@linkcode StampReflector.reflect} per datagram. */
export class StampReflector {
  readonly stateful: boolean;
  readonly format: TimestampFormat;
  readonly #maxSessions: number;
  readonly #idleMs: number;
  readonly #now: () => number;
  readonly #errorEstimate: number;
  readonly #clock: ClockInfo;
  readonly #sessions = new Map<string, Session>();
  readonly #counts: StampReflectorCounts = {
    reflected: 0,
    tooShort: 0,
    unrecognized: 0,
    malformed: 0,
    sessions: 0,
    held: 0,
    heldNow: 0,
    holdRefused: 0,
  };
  readonly #maxHeld: number;
  readonly #maxHeldBytes: number;
  readonly #maxHeldPerSource: number;
  #heldBytes = 0;
  readonly #heldBySource = new Map<string, number>();
  #holdSource = "";
  // What the request being reflected lets a Delayed Reply TLV have.
  #holdSize = 0;
  #canHold = false;
  #granted = 0;
  readonly #delay: DelayGrant;

  /**
   * Throws RangeError when `maxSessions`, `maxHeld`, `maxHeldBytes` or
   * `maxDelayMs` is not a non-negative integer (`maxSessions` positive).
   */
  constructor(options: StampReflectorOptions = {}) {
    this.stateful = options.stateful ?? false;
    this.format = options.format ?? "ntp";
    this.#maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    if (!Number.isInteger(this.#maxSessions) || this.#maxSessions < 1) {
      throw new RangeError(
        `Cannot keep ${this.#maxSessions} STAMP sessions: expected a positive integer`,
      );
    }
    this.#maxHeld = options.maxHeld ?? DEFAULT_MAX_HELD;
    this.#maxHeldBytes = options.maxHeldBytes ?? DEFAULT_MAX_HELD_BYTES;
    this.#maxHeldPerSource = options.maxHeldPerSource ??
      DEFAULT_MAX_HELD_PER_SOURCE;
    const maxDelayMs = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    for (
      const [name, value] of Object.entries({
        maxHeld: this.#maxHeld,
        maxHeldBytes: this.#maxHeldBytes,
        maxHeldPerSource: this.#maxHeldPerSource,
        maxDelayMs,
      })
    ) {
      if (!Number.isInteger(value) || value < 0 || value >= 2 ** 31) {
        throw new RangeError(
          `Cannot use ${name} ${value}: expected an integer from 0 to 2^31 - 1`,
        );
      }
    }
    this.#delay = {
      maxMs: maxDelayMs,
      grant: (askedMs) => this.#grant(askedMs, maxDelayMs),
    };
    this.#idleMs = options.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS;
    this.#now = options.now ?? wallClock;
    // Whether the system clock is synchronised is not asked of the OS: S = 0.
    this.#errorEstimate = encodeErrorEstimate(
      errorEstimateFor(SOFTWARE_ERROR_MS, {
        synchronized: false,
        format: this.format,
      }),
    );
    this.#clock = {
      syncSource: SYNC_SOURCE.localFreeRunning,
      receiveMethod: TIMESTAMP_METHOD.softwareLocal,
      transmitMethod: TIMESTAMP_METHOD.softwareLocal,
    };
  }

  /** The counts so far. */
  counts(): StampReflectorCounts {
    return { ...this.#counts, sessions: this.#sessions.size };
  }

  /**
   * Hands back the room of a reply `reflect` told the caller to hold
   * (`holdMs` over 0), once it is sent or dropped: `size` bytes, held for
   * the sender at `source` (the `from.hostname` of its context).
   */
  release(size: number, source: string): void {
    if (this.#counts.heldNow === 0) return;
    this.#counts.heldNow--;
    this.#heldBytes = Math.max(0, this.#heldBytes - size);
    const key = sourceKey(source);
    const held = this.#heldBySource.get(key) ?? 0;
    if (held <= 1) this.#heldBySource.delete(key);
    else this.#heldBySource.set(key, held - 1);
  }

  /** Writes the transmit timestamp (T3) of a held reply about to leave. */
  restamp(reply: Uint8Array): void {
    writeTimestamp(reply, OFFSET.timestamp, this.#now(), this.format);
  }

  /** The delay granted to a Delayed Reply TLV asking for `askedMs`. */
  #grant(askedMs: number, maxDelayMs: number): number {
    if (askedMs === 0) return 0;
    const fits = this.#canHold && askedMs <= maxDelayMs &&
      this.#counts.heldNow < this.#maxHeld &&
      this.#heldBytes + this.#holdSize <= this.#maxHeldBytes &&
      (this.#heldBySource.get(this.#holdSource) ?? 0) < this.#maxHeldPerSource;
    if (!fits) {
      this.#counts.holdRefused++;
      return 0;
    }
    this.#counts.held++;
    this.#counts.heldNow++;
    this.#heldBytes += this.#holdSize;
    this.#heldBySource.set(
      this.#holdSource,
      (this.#heldBySource.get(this.#holdSource) ?? 0) + 1,
    );
    this.#granted = askedMs;
    return askedMs;
  }

  /**
   * Writes the reply to `request` into `reply` (which may be `request`
   * itself, else at least as long) and returns its length, the request's;
   * returns {@linkcode STAMP_TOO_SHORT} for a request under 44 bytes, which
   * gets no reply. The transmit timestamp is written last. Never throws on
   * the request's bytes.
   */
  reflect(
    request: Uint8Array,
    reply: Uint8Array,
    context: ReflectContext,
  ): number | typeof STAMP_TOO_SHORT {
    if (request.length < STAMP_BASE_SIZE) {
      this.#counts.tooShort++;
      return STAMP_TOO_SHORT;
    }
    if (reply.length < request.length) {
      throw new RangeError(
        `Cannot reflect ${request.length} bytes into ${reply.length}`,
      );
    }
    const inView = new DataView(
      request.buffer,
      request.byteOffset,
      request.length,
    );
    const senderSeq = inView.getUint32(OFFSET.seq);
    const senderTimeHigh = inView.getUint32(OFFSET.timestamp);
    const senderTimeLow = inView.getUint32(OFFSET.timestamp + 4);
    const senderError = inView.getUint16(OFFSET.errorEstimate);
    const ssid = inView.getUint16(OFFSET.ssid);
    if (reply !== request) reply.set(request);
    const out = new DataView(reply.buffer, reply.byteOffset, request.length);
    const seq = this.stateful ? this.#nextSeq(context, ssid) : senderSeq;
    out.setUint32(OFFSET.seq, seq);
    out.setUint16(OFFSET.errorEstimate, this.#errorEstimate);
    out.setUint16(OFFSET.ssid, ssid);
    writeTimestamp(
      reply,
      OFFSET.receiveTimestamp,
      context.receivedAtMs,
      this.format,
    );
    out.setUint32(OFFSET.senderSeq, senderSeq);
    out.setUint32(OFFSET.senderTimestamp, senderTimeHigh);
    out.setUint32(OFFSET.senderTimestamp + 4, senderTimeLow);
    out.setUint16(OFFSET.senderErrorEstimate, senderError);
    out.setUint16(OFFSET.senderErrorEstimate + 2, 0);
    out.setUint32(OFFSET.senderTtl, 0);
    reply[OFFSET.senderTtl] = Math.max(0, Math.min(255, context.ttl ?? 0));
    this.#granted = 0;
    if (request.length > STAMP_BASE_SIZE) {
      this.#holdSize = request.length;
      this.#canHold = context.canHold === true;
      this.#holdSource = sourceKey(context.from.hostname);
      const marks = reflectTlvs(
        reply.subarray(0, request.length),
        STAMP_BASE_SIZE,
        {
          seen: { source: context.from, destination: context.local },
          clock: this.#clock,
          delay: this.#delay,
          tos: context.tos,
        },
      );
      this.#counts.unrecognized += marks.unrecognized;
      this.#counts.malformed += marks.malformed;
    }
    this.#counts.reflected++;
    context.holdMs = this.#granted;
    writeTimestamp(reply, OFFSET.timestamp, this.#now(), this.format);
    return request.length;
  }

  /**
   * The next reflector sequence number of the session, from 0. The table
   * is kept in order of last use, so the idle sessions are at its front.
   */
  #nextSeq(context: ReflectContext, ssid: number): number {
    const key = `${context.from.hostname}|${context.from.port}|${ssid}`;
    const now = context.receivedAtMs;
    let session = this.#sessions.get(key);
    if (session === undefined) {
      this.#makeRoom(now);
      session = { next: 0, lastMs: now };
    } else {
      this.#sessions.delete(key);
    }
    const seq = session.next;
    session.next = (session.next + 1) >>> 0;
    session.lastMs = now;
    this.#sessions.set(key, session);
    return seq;
  }

  /** Drops idle sessions, and the least recently used one when still full. */
  #makeRoom(now: number): void {
    for (const [key, session] of this.#sessions) {
      if (now - session.lastMs < this.#idleMs) break;
      this.#sessions.delete(key);
    }
    if (this.#sessions.size >= this.#maxSessions) {
      const oldest = this.#sessions.keys().next().value;
      if (oldest !== undefined) this.#sessions.delete(oldest);
    }
  }
}

/**
 * The source a held reply counts against: an IPv4 address as it is, an
 * IPv6 address by its /64 (one host may own all of it), as the rate limit
 * counts them.
 */
function sourceKey(hostname: string): string {
  const bare = hostname.replace(/%.*$/, "").toLowerCase();
  if (!bare.includes(":")) return bare;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(bare);
  if (mapped) return mapped[1]!;
  const [head = "", tail] = bare.split("::");
  const groups = head === "" ? [] : head.split(":");
  if (tail !== undefined) {
    const rest = tail === "" ? [] : tail.split(":");
    while (groups.length + rest.length < 8) groups.push("0");
    groups.push(...rest);
  }
  return groups.slice(0, 4).map((group) => parseInt(group, 16).toString(16))
    .join(":");
}
