/**
 * A Linux-only batched UDP echo engine: `recvmmsg(2)` and `sendmmsg(2)`
 * called through `Deno.dlopen("libc.so.6")`, many datagrams per system call.
 *
 * Memory safety is by construction. Every byte the kernel reads or writes
 * (message headers, iovecs, socket addresses, payload slots) lives in one
 * ArrayBuffer that is allocated once per socket, is large enough that V8 keeps
 * it outside the garbage-collected heap (so it never moves), is referenced by
 * the engine for its whole life, and whose address is taken once. The hot
 * loop writes only numbers into that buffer and allocates nothing per
 * datagram, so garbage collection has nothing to move or free under the
 * kernel. A receive blocked in the kernel is woken by `shutdown(2)` (with a
 * receive timeout as a backstop) and the socket is closed only after the
 * last system call has returned.
 *
 * The hot loop runs in a Worker with synchronous FFI calls, so the main event
 * loop stays free for signals and statistics; replies leave from the socket
 * the request arrived on, byte for byte, the zero-length datagram included.
 *
 * @example Serve on a free port and stop again
 * ```ts ignore
 * import { serveBatch } from "./batch.ts";
 *
 * const controller = new AbortController();
 * const server = serveBatch({
 *   hostname: "127.0.0.1",
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

import {
  type AddressFamily,
  errorMessage,
  formatAddress,
} from "../net/address.ts";
import { RECEIVE_BUFFER_SIZE } from "../net/payload.ts";

/** The datagrams one system call may receive or send (the batch size). */
export const DEFAULT_BATCH_SIZE = 64;

/** Bytes of each payload preview that datagram events carry. */
export const DEFAULT_PREVIEW_BYTES = 100;

/** How long a receive may block before the loop looks at its flags again. */
export const RECEIVE_TIMEOUT_MS = 200;

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0x80000;
const SOL_SOCKET = 1;
const SO_SNDTIMEO = 21;
const SO_RCVTIMEO = 20;
const SHUT_RDWR = 2;
const MSG_WAITFORONE = 0x10000;
const EINTR = 4;
const EAGAIN = 11;

/** `struct mmsghdr` on LP64 Linux (x86_64, aarch64). */
const MMSGHDR_SIZE = 64;
const IOVEC_SIZE = 16;
/** Room for a `struct sockaddr_in6` (28 bytes), rounded up. */
const SOCKADDR_SIZE = 32;

const WORKER_URL = new URL("./_worker.ts", import.meta.url);
const WORKER_DIR = new URL(".", import.meta.url);

/** The libc functions the engine calls, as `Deno.dlopen` wants them. */
export const LIBC_SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  setsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "u32"],
    result: "i32",
  },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  recvmmsg: {
    parameters: ["i32", "pointer", "u32", "i32", "pointer"],
    result: "i32",
  },
  sendmmsg: { parameters: ["i32", "pointer", "u32", "i32"], result: "i32" },
  getaddrinfo: {
    parameters: ["buffer", "pointer", "buffer", "buffer"],
    result: "i32",
  },
  freeaddrinfo: { parameters: ["pointer"], result: "void" },
  gai_strerror: { parameters: ["i32"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The opened C library with {@linkcode LIBC_SYMBOLS}. */
export type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>;

/**
 * Throws a `TypeError` ("Cannot use --io batch: ...") unless this process can
 * run the batch engine: Linux, and the `ffi` permission granted.
 */
export function checkBatchSupport(): void {
  if (Deno.build.os !== "linux") {
    throw new TypeError(
      `Cannot use --io batch: it needs Linux (recvmmsg), not ${Deno.build.os}`,
    );
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    throw new TypeError(
      "Cannot use --io batch: it needs --allow-ffi (see deno task server:fast)",
    );
  }
  // The loop runs in a Worker, whose module Deno loads only with read access.
  if (
    WORKER_URL.protocol === "file:" &&
    Deno.permissions.querySync({ name: "read", path: WORKER_DIR }).state !==
      "granted"
  ) {
    throw new TypeError(
      `Cannot use --io batch: it needs --allow-read=${
        decodeURIComponent(WORKER_DIR.pathname)
      } to start its Worker`,
    );
  }
}

let libcCache: Libc | undefined;
let libcUsers = 0;

/**
 * Opens libc, shared by every user on this thread; each call needs a
 * matching {@linkcode releaseLibc} (the last one closes the library).
 */
export function openLibc(): Libc {
  libcCache ??= Deno.dlopen("libc.so.6", LIBC_SYMBOLS);
  libcUsers++;
  return libcCache;
}

/** Releases one {@linkcode openLibc}; closes the library after the last. */
export function releaseLibc(): void {
  if (--libcUsers === 0) {
    libcCache?.close();
    libcCache = undefined;
  }
}

/** Reads `errno` of the calling thread right after a failed call. */
export function lastErrno(libc: Libc): number {
  const location = libc.symbols.__errno_location();
  return location === null
    ? 0
    : new Deno.UnsafePointerView(location).getInt32();
}

/** Describes an errno value in lower case: "connection refused". */
export function describeErrno(libc: Libc, errno: number): string {
  const text = libc.symbols.strerror(errno);
  const message = text === null
    ? `errno ${errno}`
    : Deno.UnsafePointerView.getCString(text);
  return message[0]!.toLowerCase() + message.slice(1);
}

const ERRNO_ERRORS: Record<number, new (message: string) => Error> = {
  1: Deno.errors.PermissionDenied,
  13: Deno.errors.PermissionDenied,
  98: Deno.errors.AddrInUse,
  99: Deno.errors.AddrNotAvailable,
};

function errnoError(libc: Libc, what: string): Error {
  const errno = lastErrno(libc);
  const ErrorClass = ERRNO_ERRORS[errno] ?? Error;
  return new ErrorClass(`Cannot ${what}: ${describeErrno(libc, errno)}`);
}

/**
 * Formats the IP address of a `sockaddr_in` or `sockaddr_in6` at `offset`
 * the way Deno does: `127.0.0.1`, `::1`, `::ffff:127.0.0.1`.
 */
export function formatSockaddrHost(bytes: Uint8Array, offset: number): string {
  const family = bytes[offset]! | (bytes[offset + 1]! << 8);
  if (family === AF_INET) {
    return `${bytes[offset + 4]}.${bytes[offset + 5]}.${bytes[offset + 6]}.${
      bytes[offset + 7]
    }`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) {
    groups.push((bytes[offset + 8 + 2 * i]! << 8) | bytes[offset + 9 + 2 * i]!);
  }
  if (
    groups[0] === 0 && groups[1] === 0 && groups[2] === 0 &&
    groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff
  ) {
    const b = offset + 20;
    return `::ffff:${bytes[b]}.${bytes[b + 1]}.${bytes[b + 2]}.${bytes[b + 3]}`;
  }
  // RFC 5952: compress the longest run of two or more zero groups, the first
  // one on a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${
    hex.slice(bestStart + bestLength).join(":")
  }`;
}

/** Reads the port of a `sockaddr_in` or `sockaddr_in6` at `offset`. */
export function sockaddrPort(bytes: Uint8Array, offset: number): number {
  return (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
}

/** Facts about one received datagram, as a {@linkcode DecideHook} sees them. */
export interface DatagramFacts {
  /** Payload length in bytes. */
  size: number;
  /** Source IP address, formatted as Deno formats it. */
  hostname: string;
  /** Source port. */
  port: number;
  /** The family of the socket that received it. */
  family: AddressFamily;
  /** The address the socket is bound to. */
  localHostname: string;
  /** The port the socket is bound to. */
  localPort: number;
  /** `performance.now()` when the batch holding the datagram arrived. */
  now: number;
}

/**
 * Decides one datagram: `undefined` echoes it, a string drops it and is the
 * reason counted. The engine passes the same object for every datagram, so a
 * hook must read it and not keep it. A hook may also count the sources it
 * tracks (`activeSources`), which the loop samples a few times a second.
 */
export type DecideHook =
  & ((facts: Readonly<DatagramFacts>) => string | undefined)
  & {
    activeSources?: (now: number) => number;
  };

/**
 * What a decide module (see {@linkcode BatchServeOptions.decideModule})
 * exports: a factory given the options and the socket's own address.
 */
export interface DecideModule {
  /** Builds the hook inside the Worker. */
  createDecideHook(options: unknown, local: Deno.NetAddr): DecideHook;
}

/** What became of one datagram, for logging. */
export interface BatchDatagramEvent {
  /** Always `"datagram"`. */
  event: "datagram";
  /** Source address. */
  hostname: string;
  /** Source port. */
  port: number;
  /** Payload length in bytes. */
  size: number;
  /** A copy of the first bytes of the payload (see `previewBytes`). */
  preview: Uint8Array;
  /** The drop reason, or `undefined` when the datagram was echoed. */
  dropped: string | undefined;
}

/** A receive or send that failed; the loop carries on. */
export interface BatchErrorEvent {
  /** Always `"error"`. */
  event: "error";
  /** Which system call failed. */
  op: "receive" | "send";
  /** One line, lower case: "connection refused". */
  message: string;
  /** The destination of a failed send. */
  hostname?: string;
  /** The destination port of a failed send. */
  port?: number;
}

/** An event the engine reports to `onEvent`. */
export type BatchEvent = BatchDatagramEvent | BatchErrorEvent;

/** Running totals of one batch socket. */
export interface BatchCounters {
  /** Datagrams received. */
  received: number;
  /** Payload bytes received. */
  receivedBytes: number;
  /** Datagrams echoed. */
  echoed: number;
  /** Payload bytes echoed. */
  echoedBytes: number;
  /** Datagrams the decide hook dropped. */
  dropped: number;
  /** Drops per reason. */
  droppedBy: Record<string, number>;
  /** Receives and sends that failed. */
  errors: number;
  /** `recvmmsg` calls that returned datagrams. */
  batches: number;
  /** `gc()` calls the loop made (see `gcEveryBatches`). */
  forcedGcs: number;
  /** What the decide hook's `activeSources` last said (0 without one). */
  activeSources: number;
}

/** Indices into the shared counter array. */
const C_RECEIVED = 0;
const C_RECEIVED_BYTES = 1;
const C_ECHOED = 2;
const C_ECHOED_BYTES = 3;
const C_DROPPED = 4;
const C_ERRORS = 5;
const C_BATCHES = 6;
const C_FORCED_GCS = 7;
const C_ACTIVE_SOURCES = 8;
/** The number of counters. */
export const COUNTER_SLOTS = 9;

/** Reads a counter array (see {@linkcode BatchEngine.counts}) into an object. */
export function readCounters(
  counts: Float64Array,
  droppedBy: Record<string, number>,
): BatchCounters {
  return {
    received: counts[C_RECEIVED]!,
    receivedBytes: counts[C_RECEIVED_BYTES]!,
    echoed: counts[C_ECHOED]!,
    echoedBytes: counts[C_ECHOED_BYTES]!,
    dropped: counts[C_DROPPED]!,
    droppedBy: { ...droppedBy },
    errors: counts[C_ERRORS]!,
    batches: counts[C_BATCHES]!,
    forcedGcs: counts[C_FORCED_GCS]!,
    activeSources: counts[C_ACTIVE_SOURCES]!,
  };
}

/** Options for {@linkcode BatchEngine}. */
export interface BatchEngineOptions {
  /** The bound socket's file descriptor. */
  fd: number;
  /** Family of the socket. */
  family: AddressFamily;
  /** Bound address, for the decide hook. */
  localHostname: string;
  /** Bound port, for the decide hook. */
  localPort: number;
  /** Datagrams per system call. */
  batchSize: number;
  /** Where the totals go; a `SharedArrayBuffer` view when another thread reads them. */
  counts: Float64Array;
  /** The decision per datagram; echo everything when absent. */
  decide?: DecideHook;
  /** Receives datagram and error events when given. */
  onEvent?: (event: BatchEvent) => void;
  /** Whether datagram events are wanted (error events always are). */
  datagramEvents?: boolean;
  /** Bytes of each payload preview. */
  previewBytes?: number;
}

const NAME_CACHE_SIZE = 256;

/**
 * The batch echo engine of one socket: owns the one buffer the kernel
 * touches, receives a batch, decides each datagram and sends the echoes.
 */
export class BatchEngine {
  /** Totals, updated in place. */
  readonly counts: Float64Array;
  /** Drops per reason. */
  readonly droppedBy: Record<string, number> = {};

  #libc: Libc;
  #fd: number;
  #vlen: number;
  // The one buffer every kernel-visible structure lives in. It must stay
  // referenced for as long as the socket can be in a system call: the engine
  // holds it for its whole life and never hands it out.
  #memory: ArrayBuffer;
  #u8: Uint8Array;
  #u32: Uint32Array;
  #recvHdrs: Deno.PointerObject;
  #sendHdrs: Deno.PointerObject[];
  #sendHdrOffset: number;
  #sendIovOffset: number;
  #addrOffset: number;
  #slotOffset: number;
  #addrLo: Uint32Array;
  #addrHi: Uint32Array;
  #sendIovLo: Uint32Array;
  #sendIovHi: Uint32Array;
  #keptSlot: Uint32Array;
  #nameKeys: Int32Array;
  #names: string[];
  #facts: DatagramFacts;
  #decide: DecideHook | undefined;
  #onEvent: ((event: BatchEvent) => void) | undefined;
  #datagramEvents: boolean;
  #previewBytes: number;
  #lastReceived = 0;

  /** Allocates the buffer and lays out every header once. */
  constructor(libc: Libc, options: BatchEngineOptions) {
    const vlen = options.batchSize;
    if (!Number.isInteger(vlen) || vlen < 1 || vlen > 1024) {
      throw new RangeError(
        `Cannot use batch size ${vlen}: expected an integer from 1 to 1024`,
      );
    }
    this.#libc = libc;
    this.#fd = options.fd;
    this.#vlen = vlen;
    this.counts = options.counts;
    this.#decide = options.decide;
    this.#onEvent = options.onEvent;
    this.#datagramEvents = options.datagramEvents === true &&
      options.onEvent !== undefined;
    this.#previewBytes = options.previewBytes ?? DEFAULT_PREVIEW_BYTES;
    this.#facts = {
      size: 0,
      hostname: "",
      port: 0,
      family: options.family,
      localHostname: options.localHostname,
      localPort: options.localPort,
      now: 0,
    };

    this.#sendHdrOffset = vlen * MMSGHDR_SIZE;
    const recvIovOffset = 2 * vlen * MMSGHDR_SIZE;
    this.#sendIovOffset = recvIovOffset + vlen * IOVEC_SIZE;
    this.#addrOffset = this.#sendIovOffset + vlen * IOVEC_SIZE;
    this.#slotOffset = Math.ceil(
      (this.#addrOffset + vlen * SOCKADDR_SIZE) /
        4096,
    ) * 4096;
    // At least 64 KiB per slot, so V8 always keeps the store off-heap.
    this.#memory = new ArrayBuffer(
      this.#slotOffset + vlen * RECEIVE_BUFFER_SIZE,
    );
    this.#u8 = new Uint8Array(this.#memory);
    this.#u32 = new Uint32Array(this.#memory);
    const base = Deno.UnsafePointer.of(this.#memory);
    if (base === null) throw new Error("Cannot map the batch buffer");
    const baseValue = Number(Deno.UnsafePointer.value(base));
    const at = (offset: number) =>
      Deno.UnsafePointer.create(BigInt(baseValue + offset))!;
    this.#recvHdrs = at(0);
    this.#sendHdrs = [];
    for (let i = 0; i < vlen; i++) {
      this.#sendHdrs.push(at(this.#sendHdrOffset + i * MMSGHDR_SIZE));
    }
    this.#addrLo = new Uint32Array(vlen);
    this.#addrHi = new Uint32Array(vlen);
    this.#sendIovLo = new Uint32Array(vlen);
    this.#sendIovHi = new Uint32Array(vlen);
    this.#keptSlot = new Uint32Array(vlen);
    const u32 = this.#u32;
    const write64 = (offset: number, value: number) => {
      u32[offset >> 2] = value % 2 ** 32;
      u32[(offset >> 2) + 1] = Math.floor(value / 2 ** 32);
    };
    for (let i = 0; i < vlen; i++) {
      const hdr = i * MMSGHDR_SIZE;
      const recvIov = recvIovOffset + i * IOVEC_SIZE;
      const sendIov = this.#sendIovOffset + i * IOVEC_SIZE;
      const addr = this.#addrOffset + i * SOCKADDR_SIZE;
      const slot = this.#slotOffset + i * RECEIVE_BUFFER_SIZE;
      write64(recvIov, baseValue + slot);
      write64(recvIov + 8, RECEIVE_BUFFER_SIZE);
      write64(sendIov, baseValue + slot);
      write64(sendIov + 8, 0);
      write64(hdr, baseValue + addr); // msg_name
      u32[(hdr >> 2) + 2] = SOCKADDR_SIZE; // msg_namelen
      write64(hdr + 16, baseValue + recvIov); // msg_iov
      write64(hdr + 24, 1); // msg_iovlen
      this.#addrLo[i] = (baseValue + addr) % 2 ** 32;
      this.#addrHi[i] = Math.floor((baseValue + addr) / 2 ** 32);
      this.#sendIovLo[i] = (baseValue + sendIov) % 2 ** 32;
      this.#sendIovHi[i] = Math.floor((baseValue + sendIov) / 2 ** 32);
    }
    this.#nameKeys = new Int32Array(NAME_CACHE_SIZE * 5);
    this.#names = new Array<string>(NAME_CACHE_SIZE).fill("");
  }

  /** The pointer `recvmmsg` receives into, for nonblocking callers. */
  get receivePointer(): Deno.PointerObject {
    return this.#recvHdrs;
  }

  /** The batch size. */
  get batchSize(): number {
    return this.#vlen;
  }

  /** Runs `gc()` and counts it (only with `--expose-gc`). */
  forceGc(gc: () => void): void {
    gc();
    this.counts[C_FORCED_GCS]!++;
  }

  /** Makes every receive header ready for the next `recvmmsg`. */
  prepareReceive(): void {
    const u32 = this.#u32;
    for (let i = 0; i < this.#lastReceived; i++) {
      const h = (i * MMSGHDR_SIZE) >> 2;
      u32[h + 2] = SOCKADDR_SIZE; // msg_namelen, overwritten by the kernel
      u32[h + 12] = 0; // msg_flags
    }
    this.#lastReceived = 0;
  }

  /**
   * Receives one batch, blocking until at least one datagram (or a timeout,
   * or shutdown). Returns the count, 0 when woken without data, or -errno.
   */
  receive(): number {
    this.prepareReceive();
    const n = this.#libc.symbols.recvmmsg(
      this.#fd,
      this.#recvHdrs,
      this.#vlen,
      MSG_WAITFORONE,
      null,
    );
    if (n >= 0) return n;
    return -lastErrno(this.#libc);
  }

  /**
   * Reports a failed receive (errno as `receive()` returned it, negated);
   * returns whether it was a real failure, not a timeout or an interruption.
   */
  receiveFailed(errno: number): boolean {
    if (errno === EINTR || errno === EAGAIN) return false;
    this.counts[C_ERRORS]!++;
    this.#onEvent?.({
      event: "error",
      op: "receive",
      message: describeErrno(this.#libc, errno),
    });
    return true;
  }

  /** Datagrams dropped so far. */
  get dropped(): number {
    return this.counts[C_DROPPED]!;
  }

  /** Samples the decide hook's count of active sources into the totals. */
  sampleActiveSources(): void {
    const count = this.#decide?.activeSources?.(performance.now());
    if (count !== undefined) this.counts[C_ACTIVE_SOURCES] = count;
  }

  #sourceName(addr: number): string {
    const u32 = this.#u32;
    const u8 = this.#u8;
    const keys = this.#nameKeys;
    const w = addr >> 2;
    const family = u8[addr]! | (u8[addr + 1]! << 8);
    let k0: number, k1: number, k2: number, k3: number;
    if (family === AF_INET) {
      k0 = u32[w + 1]! | 0;
      k1 = k2 = k3 = 0;
    } else {
      k0 = u32[w + 2]! | 0;
      k1 = u32[w + 3]! | 0;
      k2 = u32[w + 4]! | 0;
      k3 = u32[w + 5]! | 0;
    }
    let h = k0 ^ k1 ^ k2 ^ k3;
    h = (h ^ (h >>> 8) ^ (h >>> 16) ^ (h >>> 24)) & (NAME_CACHE_SIZE - 1);
    const e = h * 5;
    if (
      keys[e] === family && keys[e + 1] === k0 && keys[e + 2] === k1 &&
      keys[e + 3] === k2 && keys[e + 4] === k3
    ) {
      return this.#names[h]!;
    }
    const name = formatSockaddrHost(u8, addr);
    keys[e] = family;
    keys[e + 1] = k0;
    keys[e + 2] = k1;
    keys[e + 3] = k2;
    keys[e + 4] = k3;
    this.#names[h] = name;
    return name;
  }

  /** Decides the `n` datagrams just received and sends back the ones kept. */
  echo(n: number): void {
    this.#lastReceived = n;
    const u8 = this.#u8;
    const u32 = this.#u32;
    const counts = this.counts;
    const facts = this.#facts;
    const decide = this.#decide;
    const sendHdrBase = this.#sendHdrOffset >> 2;
    const sendIovBase = this.#sendIovOffset >> 2;
    facts.now = performance.now();
    counts[C_BATCHES]!++;
    let kept = 0;
    for (let i = 0; i < n; i++) {
      const h = (i * MMSGHDR_SIZE) >> 2;
      const size = u32[h + 14]!; // msg_len
      const namelen = u32[h + 2]!;
      // After shutdown() the kernel reports empty entries with no source;
      // a real datagram, even a zero-length one, always has an address.
      if (namelen === 0) continue;
      const addr = this.#addrOffset + i * SOCKADDR_SIZE;
      counts[C_RECEIVED]!++;
      counts[C_RECEIVED_BYTES]! += size;
      let reason: string | undefined = undefined;
      if (decide !== undefined || this.#datagramEvents) {
        facts.size = size;
        facts.hostname = this.#sourceName(addr);
        facts.port = (u8[addr + 2]! << 8) | u8[addr + 3]!;
        if (decide !== undefined) {
          try {
            reason = decide(facts);
          } catch {
            reason = "policy error";
          }
        }
      }
      if (reason !== undefined) {
        if (this.#datagramEvents) this.#datagramEvent(i, size, reason);
        counts[C_DROPPED]!++;
        this.droppedBy[reason] = (this.droppedBy[reason] ?? 0) + 1;
        continue;
      }
      const s = sendHdrBase + kept * (MMSGHDR_SIZE >> 2);
      u32[s] = this.#addrLo[i]!;
      u32[s + 1] = this.#addrHi[i]!;
      u32[s + 2] = namelen;
      u32[s + 4] = this.#sendIovLo[i]!;
      u32[s + 5] = this.#sendIovHi[i]!;
      u32[s + 6] = 1;
      u32[sendIovBase + i * (IOVEC_SIZE >> 2) + 2] = size;
      this.#keptSlot[kept] = i;
      kept++;
    }
    let sent = 0;
    while (sent < kept) {
      const r = this.#libc.symbols.sendmmsg(
        this.#fd,
        this.#sendHdrs[sent]!,
        kept - sent,
        0,
      );
      if (r > 0) {
        for (let j = sent; j < sent + r; j++) {
          const slot = this.#keptSlot[j]!;
          const size = u32[sendIovBase + slot * (IOVEC_SIZE >> 2) + 2]!;
          counts[C_ECHOED]!++;
          counts[C_ECHOED_BYTES]! += size;
          // Like the socket backend, report a datagram once it is echoed.
          if (this.#datagramEvents) this.#datagramEvent(slot, size, undefined);
        }
        sent += r;
        continue;
      }
      const errno = lastErrno(this.#libc);
      if (errno === EINTR) continue;
      // The first message of the rest failed: count it, skip it, go on.
      this.#sendFailed(this.#keptSlot[sent]!, errno);
      sent++;
    }
  }

  #datagramEvent(i: number, size: number, reason: string | undefined): void {
    const slot = this.#slotOffset + i * RECEIVE_BUFFER_SIZE;
    const addr = this.#addrOffset + i * SOCKADDR_SIZE;
    this.#onEvent!({
      event: "datagram",
      hostname: this.#sourceName(addr),
      port: sockaddrPort(this.#u8, addr),
      size,
      preview: this.#u8.slice(slot, slot + Math.min(size, this.#previewBytes)),
      dropped: reason,
    });
  }

  #sendFailed(i: number, errno: number): void {
    this.counts[C_ERRORS]!++;
    const addr = this.#addrOffset + i * SOCKADDR_SIZE;
    this.#onEvent?.({
      event: "error",
      op: "send",
      message: describeErrno(this.#libc, errno),
      hostname: formatSockaddrHost(this.#u8, addr),
      port: sockaddrPort(this.#u8, addr),
    });
  }
}

/** A bound socket made through libc. */
export interface BoundSocket {
  /** The file descriptor. */
  fd: number;
  /** The address actually bound (port 0 resolved). */
  addr: Deno.NetAddr;
  /** The socket's family. */
  family: AddressFamily;
}

const AI_NUMERICSERV = 0x400;
const EAI_SYSTEM = -11;

/**
 * Resolves `hostname` with `getaddrinfo(3)`, as `Deno.listenDatagram` does,
 * and returns each candidate `sockaddr` in the resolver's order.
 */
function resolveSockaddrs(
  libc: Libc,
  hostname: string,
  port: number,
): Uint8Array[] {
  const hints = new Int32Array(12); // struct addrinfo, 48 bytes, zeroed
  hints[0] = AI_NUMERICSERV;
  hints[2] = SOCK_DGRAM;
  const result = new BigUint64Array(1);
  const code = libc.symbols.getaddrinfo(
    new TextEncoder().encode(`${hostname}\0`),
    null,
    hints,
    result,
  );
  if (code !== 0) {
    const reason = code === EAI_SYSTEM
      ? describeErrno(libc, lastErrno(libc))
      : Deno.UnsafePointerView.getCString(libc.symbols.gai_strerror(code)!);
    throw new Deno.errors.NotFound(
      `Cannot resolve ${hostname}: ${reason[0]!.toLowerCase()}${
        reason.slice(1)
      }`,
    );
  }
  const head = Deno.UnsafePointer.create(result[0]!);
  const found: Uint8Array[] = [];
  try {
    for (let info = head; info !== null;) {
      const view = new Deno.UnsafePointerView(info);
      const family = view.getInt32(4);
      const length = view.getUint32(16);
      const addr = view.getPointer(24);
      if ((family === AF_INET || family === AF_INET6) && addr !== null) {
        const sockaddr = new Uint8Array(SOCKADDR_SIZE);
        new Deno.UnsafePointerView(addr).copyInto(
          sockaddr.subarray(0, Math.min(length, SOCKADDR_SIZE)),
        );
        sockaddr[2] = port >> 8;
        sockaddr[3] = port & 0xff;
        found.push(sockaddr.subarray(0, length));
      }
      info = view.getPointer(40);
    }
  } finally {
    libc.symbols.freeaddrinfo(head);
  }
  return found;
}

/**
 * Opens a UDP socket bound to `hostname` (an IP literal or a name, tried in
 * the resolver's order) and `port`, with send and receive timeouts so no
 * system call blocks for long. Throws `Deno.errors.AddrInUse` and friends,
 * like `Deno.listenDatagram`.
 */
export function bindSocket(
  libc: Libc,
  hostname: string,
  port: number,
): BoundSocket {
  let lastError: Error = new Deno.errors.NotFound(
    `Cannot resolve ${hostname}: no address found`,
  );
  for (const sockaddr of resolveSockaddrs(libc, hostname, port)) {
    const af = sockaddr[0]! | (sockaddr[1]! << 8);
    const fd = libc.symbols.socket(af, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw errnoError(libc, "open a UDP socket");
    try {
      if (libc.symbols.bind(fd, sockaddr, sockaddr.length) !== 0) {
        throw errnoError(libc, "bind");
      }
      const timeval = new BigInt64Array([
        0n,
        BigInt(RECEIVE_TIMEOUT_MS * 1000),
      ]);
      for (const option of [SO_RCVTIMEO, SO_SNDTIMEO]) {
        if (
          libc.symbols.setsockopt(fd, SOL_SOCKET, option, timeval, 16) !== 0
        ) {
          throw errnoError(libc, "set a socket timeout");
        }
      }
      const bound = new Uint8Array(SOCKADDR_SIZE);
      const boundLength = new Uint32Array([SOCKADDR_SIZE]);
      if (libc.symbols.getsockname(fd, bound, boundLength) !== 0) {
        throw errnoError(libc, "read the bound address");
      }
      return {
        fd,
        addr: {
          transport: "udp",
          hostname: formatSockaddrHost(bound, 0),
          port: sockaddrPort(bound, 0),
        },
        family: af === AF_INET6 ? "IPv6" : "IPv4",
      };
    } catch (error) {
      libc.symbols.close(fd);
      lastError = error as Error;
    }
  }
  throw lastError;
}

/** Options for {@linkcode serveBatch}. */
export interface BatchServeOptions {
  /** Address to bind: an IP literal or a name. */
  hostname: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** Aborting stops the server; `finished` settles once the socket is closed. */
  signal?: AbortSignal;
  /**
   * A module (URL) that exports `createDecideHook` (see
   * {@linkcode DecideModule}); the Worker imports it and calls the hook per
   * datagram. Echo all when absent.
   */
  decideModule?: string;
  /**
   * Passed to `createDecideHook` (structured-cloned into the Worker); a
   * function is called with the bound address to make them.
   */
  decideOptions?: unknown | ((addr: Deno.NetAddr) => unknown);
  /** Receives events; datagram events only with `datagramEvents`. */
  onEvent?: (event: BatchEvent) => void;
  /** Report every datagram to `onEvent` (costs a copy of its preview). */
  datagramEvents?: boolean;
  /** Bytes of payload each datagram event carries; default 100. */
  previewBytes?: number;
  /** Datagrams per system call; default 64. */
  batchSize?: number;
  /** Call `gc()` (with `--expose-gc`) in the hot loop every this many batches. */
  gcEveryBatches?: number;
}

/** A running batch server. */
export interface BatchServer {
  /** The bound address. */
  addr: Deno.NetAddr;
  /**
   * Resolves with the final totals once the loop has stopped and the socket
   * is closed; rejects if the Worker could not run the loop.
   */
  finished: Promise<BatchCounters>;
  /** The totals so far. */
  counters(): BatchCounters;
}

/** The first message the main thread posts to the Worker. */
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
  /** Counters, written by the Worker. */
  counts: SharedArrayBuffer;
  /** Control flags, one Int32: nonzero asks the loop to stop. */
  control: SharedArrayBuffer;
  /** See {@linkcode BatchServeOptions.decideModule}. */
  decideModule?: string;
  /** See {@linkcode BatchServeOptions.decideOptions}. */
  decideOptions?: unknown;
  /** See {@linkcode BatchServeOptions.datagramEvents}. */
  datagramEvents: boolean;
  /** See {@linkcode BatchServeOptions.previewBytes}. */
  previewBytes: number;
  /** See {@linkcode BatchServeOptions.gcEveryBatches}. */
  gcEveryBatches: number;
}

/** A message the Worker posts to the main thread. */
export type WorkerMessage =
  | { type: "events"; events: BatchEvent[]; droppedBy: Record<string, number> }
  | { type: "failed"; message: string }
  | { type: "done"; droppedBy: Record<string, number> };

/**
 * Serves UDP echo on one socket with the batch engine in a Worker until the
 * signal aborts. Binds synchronously, so `addr` is known at once; throws
 * `Cannot bind HOST:PORT: reason` (its cause a `Deno.errors` class, as
 * `Deno.listenDatagram` would throw) when the address cannot be bound.
 */
export function serveBatch(options: BatchServeOptions): BatchServer {
  checkBatchSupport();
  // FFI sockets bypass Deno's net checks; ask for what listenDatagram would.
  const where = formatAddress(options);
  if (
    Deno.permissions.querySync({ name: "net", host: where }).state !==
      "granted"
  ) {
    throw new Error(
      `Cannot bind ${where}: requires net access to "${where}", run again with the --allow-net flag`,
      {
        cause: new Deno.errors.NotCapable(`Requires net access to "${where}"`),
      },
    );
  }
  const libc = openLibc();
  let socket: BoundSocket;
  try {
    socket = bindSocket(libc, options.hostname, options.port);
  } catch (error) {
    releaseLibc();
    throw new Error(`Cannot bind ${where}: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  const countsBuffer = new SharedArrayBuffer(
    COUNTER_SLOTS * Float64Array.BYTES_PER_ELEMENT,
  );
  const control = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
  const controlFlags = new Int32Array(control);
  const counts = new Float64Array(countsBuffer);
  let droppedBy: Record<string, number> = {};
  const emit = (event: BatchEvent) => {
    try {
      options.onEvent?.(event);
    } catch {
      // A broken log must not stop the echo.
    }
  };
  const worker = new Worker(WORKER_URL, { type: "module" });
  const { promise: done, resolve: onDone, reject: onFail } = Promise
    .withResolvers<void>();
  worker.onmessage = (message: MessageEvent<WorkerMessage>) => {
    const data = message.data;
    switch (data.type) {
      case "events":
        droppedBy = data.droppedBy;
        for (const event of data.events) emit(event);
        break;
      case "failed":
        onFail(new Error(`Cannot run the batch loop: ${data.message}`));
        break;
      case "done":
        droppedBy = data.droppedBy;
        onDone();
        break;
    }
  };
  worker.onerror = (event: ErrorEvent) => {
    event.preventDefault();
    onFail(new Error(`Cannot run the batch loop: ${event.message}`));
  };
  const config: WorkerConfig = {
    fd: socket.fd,
    family: socket.family,
    localHostname: socket.addr.hostname,
    localPort: socket.addr.port,
    batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE,
    counts: countsBuffer,
    control,
    decideModule: options.decideModule,
    decideOptions: typeof options.decideOptions === "function"
      ? options.decideOptions(socket.addr)
      : options.decideOptions,
    datagramEvents: options.datagramEvents === true,
    previewBytes: options.previewBytes ?? DEFAULT_PREVIEW_BYTES,
    gcEveryBatches: options.gcEveryBatches ?? 0,
  };
  worker.postMessage(config);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    // Wake a receive blocked in the kernel, then ask the loop to end. The
    // Worker closes nothing itself, so this fd cannot have been reused.
    libc.symbols.shutdown(socket.fd, SHUT_RDWR);
    Atomics.store(controlFlags, 0, 1);
    Atomics.notify(controlFlags, 0);
  };
  const finished = (async () => {
    try {
      await done;
    } finally {
      // Only now has the loop left its last system call (or never started):
      // the Worker, and with it the buffer the kernel used, may go.
      stop();
      worker.terminate();
      libc.symbols.close(socket.fd);
      releaseLibc();
      options.signal?.removeEventListener("abort", stop);
    }
    return readCounters(counts, droppedBy);
  })();
  if (options.signal?.aborted) stop();
  else options.signal?.addEventListener("abort", stop, { once: true });
  return {
    addr: socket.addr,
    finished,
    counters: () => readCounters(counts, droppedBy),
  };
}
