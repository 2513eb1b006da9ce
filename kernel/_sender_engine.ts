/**
 * The system calls of a measuring sender on sockets opened by `sender.ts`:
 * `sendto(2)`, or `sendmmsg(2)` for probes due together, stamped with
 * `clock_gettime(2)` right before the call; `recvmmsg(2)` with each
 * datagram's kernel receive time (`SO_TIMESTAMPNS`, CLOCK_REALTIME); and
 * `ppoll(2)` with a nanosecond timeout for a deadline or a reply.
 *
 * Memory safety is by construction, as in `_echo_engine.ts`: every byte the
 * kernel reads or writes lives in one ArrayBuffer allocated once per engine
 * (at least 64 KiB, so V8 keeps it off the heap), its address taken once;
 * every pointer is made in the constructor, and the hot path reads and
 * writes numbers only. The engine never closes a socket: its owner does,
 * after the last call here has returned.
 *
 * It is longer than 500 lines because the buffer's layout is private to
 * this one class: every reader of a received datagram (its bytes, length,
 * receive time and source) lives beside the offsets it reads, so no other
 * module learns where anything lies in memory the kernel writes.
 *
 * @module
 */

import {
  checkBatchSize,
  CLOCK_MONOTONIC,
  CLOCK_REALTIME,
  describeErrno,
  EAGAIN,
  EINTR,
  lastErrno,
  type Libc,
  MSG_DONTWAIT,
  MSG_TRUNC,
  POLLIN,
  receiveMessages,
  SCM_TIMESTAMPNS,
  SOL_SOCKET,
} from "./_libc.ts";
import { AF_INET, SOCKADDR_SIZE } from "./_sockaddr.ts";
import { shortSendCause } from "./_transmit.ts";
import {
  align8,
  IOV_LEN,
  IOVEC_SIZE,
  MMSGHDR_SIZE,
  MSG_CONTROL,
  MSG_IOV,
  MSG_IOVLEN,
  MSG_NAME,
  MSG_NAMELEN,
  POLL_EVENTS,
  POLLFD_SIZE,
  TIMESPEC_SIZE,
  write64,
} from "./_structs.ts";

/** Room for one `SCM_TIMESTAMPNS` message (CMSG_SPACE(16) = 32) and spare. */
const CMSG_ROOM = 64;
/** The smallest buffer V8 is sure to keep off its moving heap. */
const MIN_BUFFER = 64 * 1024;
/** Receive-slot bytes per engine for replies that merge probes, at most. */
const MERGED_SLOT_BYTES = 4 * 1024 * 1024;
/** Payload bytes of send slots per engine, at most; at least one per socket. */
const SEND_BUFFER_BYTES = 1024 * 1024;

/** Writes a send time (ms since the epoch) into a probe. */
type StampWriter = (slot: Uint8Array, epochMs: number) => void;

/** Options for {@linkcode SenderEngine}. */
export interface SenderEngineOptions {
  /** The bound sockets, one per flow, with `SO_TIMESTAMPNS` set. */
  fds: number[];
  /** The destination, a `sockaddr_in` or `sockaddr_in6` as bytes. */
  target: Uint8Array;
  /** Payload bytes of each datagram sent, 0 to 65535. */
  size: number;
  /**
   * Datagrams one `recvmmsg` may return, and one `sendmmsg` may send, per
   * socket; default 64 (sends: fewer for large datagrams or many sockets).
   */
  batchSize?: number;
}

/**
 * The syscall layer of a measuring sender. Times are milliseconds relative
 * to a whole second read at construction, one base per clock, so a float64
 * keeps them to far better than a nanosecond; {@linkcode realEpochMs} turns
 * a CLOCK_REALTIME time into ms since the Unix epoch.
 */
export class SenderEngine {
  /** CLOCK_MONOTONIC when the last send was about to make its system call. */
  sentMono = NaN;
  /** CLOCK_REALTIME when the last send was about to make its system call. */
  sentReal = NaN;
  /**
   * After a {@linkcode sendBatch} that stopped short: the errno of the
   * datagram it stopped at, which the kernel tried once and which is not to
   * be sent again (a firewall's refusal, an unreachable destination), or 0
   * when it may be sent again (see `_transmit.ts`). 0 after any other call.
   */
  stoppedBy = 0;

  #libc: Libc;
  #fds: number[];
  #vlen: number;
  // size_t arguments, made once: FFI takes them as bigint.
  #sizeArg: bigint;
  #nfdsArg: bigint;
  #slotSize: number;
  #memory: ArrayBuffer;
  #u8: Uint8Array;
  #u32: Uint32Array;
  #view: DataView;
  #base: number;
  #targetOffset: number;
  #targetLength: number;
  #sendOffset: number;
  #clockOffset: number;
  #timeoutOffset: number;
  #pollOffset: number;
  #clockPtr: Deno.PointerObject;
  #timeoutPtr: Deno.PointerObject;
  #pollPtr: Deno.PointerObject;
  #targetPtr: Deno.PointerObject;
  #sendPtrs: Deno.PointerObject[] = [];
  #sendHdrPtrs: Deno.PointerObject[] = [];
  #sendVlen: number;
  #sendStride: number;
  #recvPtrs: Deno.PointerObject[] = [];
  #sendSlots: Uint8Array[] = [];
  #recvSlots: Uint8Array[] = [];
  // The same slots cut to the probe size, the usual echo: no view per reply.
  #echoViews: Uint8Array[] = [];
  #size: number;
  #lastReceived: Int32Array;
  #monoBase: number;
  #realBase: number;
  #perSocket: number;
  #hdrOffset = 0;
  #cmsgOffset: number;
  #nameOffset: number;
  #dataOffset: number;

  /** Allocates the buffer and lays out every header once. */
  constructor(libc: Libc, options: SenderEngineOptions) {
    const { fds, target, size } = options;
    const vlen = options.batchSize ?? 64;
    if (!Number.isInteger(size) || size < 0 || size > 65535) {
      throw new RangeError(
        `Cannot send ${size}-byte datagrams: expected 0 to 65535`,
      );
    }
    checkBatchSize(vlen);
    this.#libc = libc;
    this.#fds = fds;
    this.#vlen = vlen;
    this.#sizeArg = BigInt(size);
    this.#size = size;
    this.#nfdsArg = BigInt(fds.length);
    // Up to 8 whole probes within the budget (a merged reply is split), and
    // a byte more: a longer echo shows as longer, MSG_TRUNC its full length.
    const room = MERGED_SLOT_BYTES / (fds.length * vlen * Math.max(size, 1));
    const seen = Math.max(1, Math.min(8, Math.floor(room)));
    this.#slotSize = align8(Math.min(size * seen, 65535) + 1);
    const n = fds.length;
    this.#cmsgOffset = vlen * MMSGHDR_SIZE + vlen * IOVEC_SIZE;
    this.#nameOffset = this.#cmsgOffset + vlen * CMSG_ROOM;
    this.#dataOffset = this.#nameOffset + vlen * SOCKADDR_SIZE;
    this.#perSocket = align8(this.#dataOffset + vlen * this.#slotSize);
    this.#sendOffset = n * this.#perSocket;
    const sendStride = align8(Math.max(size, 1));
    this.#sendStride = sendStride;
    const sendVlen = Math.max(
      1,
      Math.min(vlen, Math.floor(SEND_BUFFER_BYTES / (n * sendStride))),
    );
    this.#sendVlen = sendVlen;
    // Per socket: sendVlen payload slots, then their mmsghdrs and iovecs.
    const sendPerSocket = sendVlen * (sendStride + MMSGHDR_SIZE + IOVEC_SIZE);
    this.#targetOffset = this.#sendOffset + n * sendPerSocket;
    this.#clockOffset = this.#targetOffset + SOCKADDR_SIZE;
    this.#timeoutOffset = this.#clockOffset + TIMESPEC_SIZE;
    this.#pollOffset = this.#timeoutOffset + TIMESPEC_SIZE;
    const total = this.#pollOffset + n * POLLFD_SIZE;
    this.#memory = new ArrayBuffer(Math.max(MIN_BUFFER, align8(total)));
    this.#u8 = new Uint8Array(this.#memory);
    this.#u32 = new Uint32Array(this.#memory);
    const u32 = this.#u32;
    this.#view = new DataView(this.#memory);
    const base = Deno.UnsafePointer.of(this.#memory);
    if (base === null) throw new Error("Cannot map the sender buffer");
    this.#base = Number(Deno.UnsafePointer.value(base));
    const at = (offset: number) =>
      Deno.UnsafePointer.create(BigInt(this.#base + offset))!;
    this.#clockPtr = at(this.#clockOffset);
    this.#timeoutPtr = at(this.#timeoutOffset);
    this.#pollPtr = at(this.#pollOffset);
    this.#targetPtr = at(this.#targetOffset);
    this.#targetLength = target.length;
    this.#u8.set(target.subarray(0, SOCKADDR_SIZE), this.#targetOffset);
    this.#lastReceived = new Int32Array(n).fill(vlen);
    for (let s = 0; s < n; s++) {
      const socket = s * this.#perSocket;
      this.#recvPtrs.push(at(socket));
      const sends = this.#sendOffset + s * sendPerSocket;
      const sendHdrs = sends + sendVlen * sendStride;
      this.#sendPtrs.push(at(sends));
      for (let i = 0; i < sendVlen; i++) {
        const slot = sends + i * sendStride;
        this.#sendSlots.push(this.#u8.subarray(slot, slot + size));
        const hdr = sendHdrs + i * MMSGHDR_SIZE;
        const iov = sendHdrs + sendVlen * MMSGHDR_SIZE + i * IOVEC_SIZE;
        write64(u32, iov, this.#base + slot);
        write64(u32, iov + IOV_LEN, size);
        write64(u32, hdr + MSG_NAME, this.#base + this.#targetOffset);
        this.#u32[(hdr + MSG_NAMELEN) >> 2] = target.length;
        write64(u32, hdr + MSG_IOV, this.#base + iov);
        write64(u32, hdr + MSG_IOVLEN, 1);
      }
      this.#sendHdrPtrs.push(...Array.from(
        { length: sendVlen },
        (_, i) => at(sendHdrs + i * MMSGHDR_SIZE),
      ));
      for (let i = 0; i < vlen; i++) {
        const hdr = socket + i * MMSGHDR_SIZE;
        const iov = socket + vlen * MMSGHDR_SIZE + i * IOVEC_SIZE;
        const data = socket + this.#dataOffset + i * this.#slotSize;
        const name = socket + this.#nameOffset + i * SOCKADDR_SIZE;
        const control = socket + this.#cmsgOffset + i * CMSG_ROOM;
        write64(u32, iov, this.#base + data);
        write64(u32, iov + IOV_LEN, this.#slotSize);
        write64(u32, hdr + MSG_NAME, this.#base + name);
        write64(u32, hdr + MSG_IOV, this.#base + iov);
        write64(u32, hdr + MSG_IOVLEN, 1);
        write64(u32, hdr + MSG_CONTROL, this.#base + control);
        this.#recvSlots.push(this.#u8.subarray(data, data + this.#slotSize));
        this.#echoViews.push(this.#u8.subarray(data, data + size));
      }
      this.#view.setInt32(this.#pollOffset + s * POLLFD_SIZE, fds[s]!, true);
      this.#view.setInt16(
        this.#pollOffset + s * POLLFD_SIZE + POLL_EVENTS,
        POLLIN,
        true,
      );
    }
    this.#monoBase = this.#clockSeconds(CLOCK_MONOTONIC);
    this.#realBase = this.#clockSeconds(CLOCK_REALTIME);
  }

  #clockSeconds(clock: number): number {
    this.#libc.symbols.clock_gettime(clock, this.#clockPtr);
    const w = this.#clockOffset >> 2;
    return this.#u32[w]! + this.#u32[w + 1]! * 2 ** 32;
  }

  #clockMs(clock: number, baseSeconds: number): number {
    this.#libc.symbols.clock_gettime(clock, this.#clockPtr);
    const w = this.#clockOffset >> 2;
    const seconds = this.#u32[w]! + this.#u32[w + 1]! * 2 ** 32;
    return (seconds - baseSeconds) * 1000 + this.#u32[w + 2]! / 1e6;
  }

  /** Describes an errno value in lower case: "connection refused". */
  describeErrno(errno: number): string {
    return describeErrno(this.#libc, errno);
  }

  /** CLOCK_MONOTONIC now, in ms from the engine's base. */
  monoNow(): number {
    return this.#clockMs(CLOCK_MONOTONIC, this.#monoBase);
  }

  /** CLOCK_REALTIME now, in ms from the engine's base. */
  realNow(): number {
    return this.#clockMs(CLOCK_REALTIME, this.#realBase);
  }

  /** A CLOCK_REALTIME time of this engine in ms since the Unix epoch. */
  realEpochMs(real: number): number {
    return this.#realBase * 1000 + real;
  }

  /** How many datagrams one {@linkcode receive} may take per socket. */
  get receiveBatchSize(): number {
    return this.#vlen;
  }

  /** How many datagrams one {@linkcode sendBatch} may send per socket. */
  get sendBatchSize(): number {
    return this.#sendVlen;
  }

  /**
   * The payload of datagram `i` of socket `s`'s next send; fill it before
   * `send(s)` (slot 0) or `sendBatch`.
   */
  sendSlot(s: number, i = 0): Uint8Array {
    return this.#sendSlots[s * this.#sendVlen + i]!;
  }

  /**
   * Sends socket `s`'s slot to the target. Reads CLOCK_MONOTONIC and
   * CLOCK_REALTIME right before the call (`sentMono`, `sentReal`) and, when
   * `stampAt` is given, writes the realtime as ms since the epoch there
   * (a big-endian float64) first, or has `stampAt` write it (a format's
   * layout) when a function. `flags` go to `sendto` (`MSG_PROBE` for a
   * warm-up that sends nothing). Returns the bytes sent, or -errno.
   */
  send(s: number, stampAt: number | StampWriter = -1, flags = 0): number {
    this.sentMono = this.monoNow();
    this.sentReal = this.realNow();
    const slot = this.#sendSlots[s * this.#sendVlen]!;
    const epochMs = this.realEpochMs(this.sentReal);
    if (typeof stampAt === "function") stampAt(slot, epochMs);
    else if (stampAt >= 0) {
      this.#view.setFloat64(slot.byteOffset + stampAt, epochMs);
    }
    for (;;) {
      const sent = this.#libc.symbols.sendto(
        this.#fds[s]!,
        this.#sendPtrs[s]!,
        this.#sizeArg,
        flags,
        this.#targetPtr,
        this.#targetLength,
      );
      if (sent >= 0) return sent;
      const errno = lastErrno(this.#libc);
      if (errno !== EINTR) return -errno;
    }
  }

  /**
   * Sends slots `from` to `from + count - 1` of socket `s` (at most
   * {@linkcode sendBatchSize}) to the target in one `sendmmsg` call. Like
   * {@linkcode send}, it reads both clocks right before the call and, with
   * `stampAt`, writes that one realtime into every datagram of the batch:
   * the probes of a batch share the syscall's start as their send time.
   * Returns how many left, from `from` on (the kernel may stop early: then
   * see {@linkcode stoppedBy}), or -errno when the first one failed.
   */
  sendBatch(s: number, from: number, count: number, stampAt = -1): number {
    this.sentMono = this.monoNow();
    this.sentReal = this.realNow();
    const first = s * this.#sendVlen + from;
    if (stampAt >= 0) {
      const epoch = this.realEpochMs(this.sentReal);
      for (let i = 0; i < count; i++) {
        this.#view.setFloat64(
          this.#sendSlots[first + i]!.byteOffset + stampAt,
          epoch,
        );
      }
    }
    this.stoppedBy = 0;
    for (;;) {
      const sent = this.#libc.symbols.sendmmsg(
        this.#fds[s]!,
        this.#sendHdrPtrs[first]!,
        count,
        0,
      );
      if (sent > 0 && sent < count) {
        this.stoppedBy = shortSendCause(
          this.#libc,
          this.#fds[s]!,
          this.#sendHdrPtrs[first + sent]!,
          this.monoNow() - this.sentMono,
        );
      }
      if (sent >= 0) return sent;
      const errno = lastErrno(this.#libc);
      if (errno !== EINTR) return -errno;
    }
  }

  /**
   * Waits until any socket has a datagram or CLOCK_MONOTONIC reaches
   * `untilMono` (ms from the base); returns how many sockets are readable
   * (0 on the timeout), or -errno.
   */
  wait(untilMono: number): number {
    const ms = Math.max(0, untilMono - this.monoNow());
    const seconds = Math.floor(ms / 1000);
    const w = this.#timeoutOffset >> 2;
    this.#u32[w] = seconds;
    this.#u32[w + 1] = 0;
    this.#u32[w + 2] = Math.floor((ms - seconds * 1000) * 1e6);
    this.#u32[w + 3] = 0;
    const n = this.#libc.symbols.ppoll(
      this.#pollPtr,
      this.#nfdsArg,
      this.#timeoutPtr,
      null,
    );
    return n >= 0 ? n : -lastErrno(this.#libc);
  }

  /** Spins on CLOCK_MONOTONIC until `untilMono`; returns the time then. */
  spinUntil(untilMono: number): number {
    let now = this.monoNow();
    while (now < untilMono) now = this.monoNow();
    return now;
  }

  /**
   * Takes the datagrams waiting on socket `s` without blocking, up to the
   * batch size; returns how many (0 when none), or -errno. Read them with
   * {@linkcode length}, {@linkcode data}, {@linkcode arrivalReal} and
   * {@linkcode fromTarget} until the next `receive(s)`.
   */
  receive(s: number): number {
    const u32 = this.#u32;
    const socket = s * this.#perSocket;
    for (let i = 0; i < this.#lastReceived[s]!; i++) {
      const h = (socket + i * MMSGHDR_SIZE) >> 2;
      u32[h + 2] = SOCKADDR_SIZE; // msg_namelen
      u32[h + 10] = CMSG_ROOM; // msg_controllen
      u32[h + 11] = 0; // (its high half)
      u32[h + 12] = 0; // msg_flags
    }
    for (;;) {
      const n = receiveMessages(
        this.#libc,
        this.#fds[s]!,
        this.#recvPtrs[s]!,
        this.#vlen,
        MSG_DONTWAIT | MSG_TRUNC,
      );
      if (n === -EINTR) continue;
      this.#lastReceived[s] = Math.max(n, 0);
      return n === -EAGAIN ? 0 : n;
    }
  }

  /** The full length of datagram `i` of socket `s`'s last receive, in bytes. */
  length(s: number, i: number): number {
    // msg_len
    return this.#u32[(s * this.#perSocket + i * MMSGHDR_SIZE + 56) >> 2]!;
  }

  /**
   * The bytes of datagram `i` of socket `s`'s last receive: all of them, or
   * the first size + 1 of a longer one. A view of the engine's buffer, good
   * until the next `receive(s)`.
   */
  data(s: number, i: number): Uint8Array {
    const length = this.length(s, i);
    if (length === this.#size) return this.#echoViews[s * this.#vlen + i]!;
    const slot = this.#recvSlots[s * this.#vlen + i]!;
    return slot.subarray(0, Math.min(length, this.#slotSize));
  }

  /**
   * The kernel's receive time of datagram `i` (CLOCK_REALTIME, ms from the
   * engine's base); NaN when the kernel attached none.
   */
  arrivalReal(s: number, i: number): number {
    const socket = s * this.#perSocket;
    const hdr = socket + i * MMSGHDR_SIZE;
    const controlLength = this.#u32[(hdr + 40) >> 2]!; // msg_controllen
    const start = socket + this.#cmsgOffset + i * CMSG_ROOM;
    const view = this.#view;
    // A struct cmsghdr (cmsg_len, cmsg_level at 8, cmsg_type at 12) of 16
    // bytes, and for a timestamp a struct timespec after it.
    for (let at = 0; at + 16 <= controlLength;) {
      const length = view.getUint32(start + at, true);
      if (length < 16) break;
      if (
        view.getInt32(start + at + 8, true) === SOL_SOCKET &&
        view.getInt32(start + at + 12, true) === SCM_TIMESTAMPNS &&
        length >= 32
      ) {
        const w = (start + at + 16) >> 2;
        const seconds = this.#u32[w]! + this.#u32[w + 1]! * 2 ** 32;
        return (seconds - this.#realBase) * 1000 + this.#u32[w + 2]! / 1e6;
      }
      at += align8(length);
    }
    return NaN;
  }

  /** Whether datagram `i` came from the target's address and port. */
  fromTarget(s: number, i: number): boolean {
    return this.#cameFrom(s, i, this.#u8, this.#targetOffset);
  }

  /**
   * Whether datagram `i` of socket `s` came from `address` (a `sockaddr`,
   * as `SenderSockets.selves` holds); false for an empty `address`.
   */
  fromAddress(s: number, i: number, address: Uint8Array): boolean {
    return address.length >= 8 && this.#cameFrom(s, i, address, 0);
  }

  /** Whether datagram `i` of socket `s` came from the sockaddr at `bytes[at]`. */
  #cameFrom(s: number, i: number, bytes: Uint8Array, at: number): boolean {
    const u8 = this.#u8;
    const name = s * this.#perSocket + this.#nameOffset + i * SOCKADDR_SIZE;
    const family = u8[name]! | (u8[name + 1]! << 8);
    if (family !== (bytes[at]! | (bytes[at + 1]! << 8))) return false;
    if (u8[name + 2] !== bytes[at + 2] || u8[name + 3] !== bytes[at + 3]) {
      return false;
    }
    const from = family === AF_INET ? 4 : 8;
    const end = family === AF_INET ? 8 : 24;
    if (bytes.length < at + end) return false;
    for (let k = from; k < end; k++) {
      if (u8[name + k] !== bytes[at + k]) return false;
    }
    return true;
  }
}
