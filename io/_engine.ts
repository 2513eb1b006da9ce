/**
 * The batch echo engine of one socket: `recvmmsg(2)` and `sendmmsg(2)`,
 * many datagrams per system call, on a socket opened by `_bind.ts`.
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
 * @module
 */

import type { AddressFamily } from "../net/address.ts";
import { RECEIVE_BUFFER_SIZE } from "../net/payload.ts";
import {
  describeErrno,
  EAGAIN,
  EINTR,
  lastErrno,
  type Libc,
  MSG_WAITFORONE,
} from "./_libc.ts";
import {
  C_ACTIVE_SOURCES,
  C_BATCHES,
  C_DROPPED,
  C_ECHOED,
  C_ECHOED_BYTES,
  C_FORCED_GCS,
  C_RECEIVE_ERRORS,
  C_RECEIVED,
  C_RECEIVED_BYTES,
  C_SEND_ERRORS,
  type EngineEvent,
} from "./_protocol.ts";
import {
  AF_INET,
  formatSockaddrHost,
  SOCKADDR_SIZE,
  sockaddrPort,
} from "./_sockaddr.ts";

/** `struct mmsghdr` on LP64 Linux (x86_64, aarch64). */
const MMSGHDR_SIZE = 64;
const IOVEC_SIZE = 16;

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
 * What a decide module (`serveBatch`'s `decideModule`) exports: a factory
 * given the options and the socket's own address.
 */
export interface DecideModule {
  /** Builds the hook inside the Worker. */
  createDecideHook(options: unknown, local: Deno.NetAddr): DecideHook;
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
  onEvent?: (event: EngineEvent) => void;
  /** Whether datagram events (each with a copy of its payload) are wanted; error events always are. */
  datagramEvents?: boolean;
}

const NAME_CACHE_SIZE = 256;

// What sendmmsg fails with once shutdown(2) has closed the socket for
// writing; a UDP socket reports it for nothing else.
const EPIPE = 32;

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
  #onEvent: ((event: EngineEvent) => void) | undefined;
  #datagramEvents: boolean;
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
    this.counts[C_RECEIVE_ERRORS]!++;
    this.#onEvent?.({
      type: "error",
      operation: "receive",
      errno,
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
      if (errno === EPIPE) {
        // The server is stopping: these echoes were cut off, not failed.
        this.#cutOff(kept - sent);
        break;
      }
      // The first message of the rest failed: count it, skip it, go on.
      this.#sendFailed(this.#keptSlot[sent]!, errno);
      sent++;
    }
  }

  #datagramEvent(i: number, size: number, reason: string | undefined): void {
    const slot = this.#slotOffset + i * RECEIVE_BUFFER_SIZE;
    const addr = this.#addrOffset + i * SOCKADDR_SIZE;
    this.#onEvent!({
      type: reason === undefined ? "datagram" : "dropped",
      hostname: this.#sourceName(addr),
      port: sockaddrPort(this.#u8, addr),
      data: this.#u8.slice(slot, slot + size),
      sent: reason === undefined ? size : 0,
      reason,
    });
  }

  #cutOff(count: number): void {
    this.counts[C_DROPPED]! += count;
    this.droppedBy.shutdown = (this.droppedBy.shutdown ?? 0) + count;
  }

  #sendFailed(i: number, errno: number): void {
    this.counts[C_SEND_ERRORS]!++;
    const addr = this.#addrOffset + i * SOCKADDR_SIZE;
    this.#onEvent?.({
      type: "error",
      operation: "send",
      errno,
      message: describeErrno(this.#libc, errno),
      hostname: formatSockaddrHost(this.#u8, addr),
      port: sockaddrPort(this.#u8, addr),
    });
  }
}
