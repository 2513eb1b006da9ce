/**
 * The Worker's end of the guard against forged local sources
 * (`_spoof_guard.ts`): it reads the sink the kernel sets such datagrams
 * aside in, now and then and without waiting, and counts each into the
 * echo engine's totals as received and dropped `spoofed-local`, with its
 * event. The echo loop's buffer and system calls are left alone: the sink
 * has its own buffer, laid out as the engine's is and for the same reasons
 * (`_echo_engine.ts`: allocated once, off V8's heap, its address taken
 * once, held for the sink's life).
 *
 * @module
 */

import type { DropReason } from "../policy/policy.ts";
import { RECEIVE_BUFFER_SIZE } from "../net/payload.ts";
import { type Libc, MSG_DONTWAIT } from "./_libc.ts";
import {
  IOV_LEN,
  IOVEC_SIZE,
  MMSGHDR_SIZE,
  MSG_CONTROL,
  MSG_CONTROLLEN,
  MSG_IOV,
  MSG_IOVLEN,
  MSG_NAME,
  MSG_NAMELEN,
  write64,
} from "./_structs.ts";
import {
  C_DROPPED,
  C_RECEIVED,
  C_RECEIVED_BYTES,
  type EchoEventSink,
} from "./_echo_events.ts";
import {
  INFO_SIZE,
  PKTINFO_NOT_UNICAST,
  readPktinfo,
  RECEIVE_CONTROL_SIZE,
  SEND_CONTROL_SIZE,
} from "./_pktinfo.ts";
import { SOCKADDR_SIZE } from "./_sockaddr.ts";

const SPOOFED_LOCAL: DropReason = "spoofed-local";

/** Datagrams one read of the sink takes. */
const SINK_BATCH = 8;

/**
 * Reads per {@linkcode SpoofSink.prototype.drain}, at most: a flood of
 * forged datagrams must not hold up the echo. What does not fit in the
 * sink's receive buffer meanwhile, the kernel drops, as beyond any
 * socket's.
 */
const READS_PER_DRAIN = 8;

/** What a {@linkcode SpoofSink} counts into: the echo engine's. */
export interface SpoofSinkOptions {
  /** The sink's descriptor (`bindSpoofSink`). */
  fd: number;
  /** Whether the socket, and so the sink, is IPv6. */
  ipv6: boolean;
  /** The engine's totals (`EchoEngine.counts`). */
  counts: Float64Array;
  /** The engine's drops by reason (`EchoEngine.droppedBy`). */
  droppedBy: Record<string, number>;
  /** Receives a `dropped` event per datagram when `datagramEvents`. */
  events?: EchoEventSink;
  /** Whether datagram events are wanted. */
  datagramEvents?: boolean;
}

/** Reads one socket's sink of forged local sources. */
export class SpoofSink {
  #libc: Libc;
  #options: SpoofSinkOptions;
  // The one buffer the kernel touches: headers, iovecs, addresses, control
  // messages, a scratch area for what `readPktinfo` writes, then the slots.
  #memory: ArrayBuffer;
  #u8: Uint8Array;
  #u32: Uint32Array;
  #headers: Deno.PointerObject;
  #addrOffset: number;
  #controlOffset: number;
  #scratchOffset: number;
  #slotOffset: number;
  #info = new Uint32Array(INFO_SIZE);

  /** Lays out the sink's buffer once. */
  constructor(libc: Libc, options: SpoofSinkOptions) {
    this.#libc = libc;
    this.#options = options;
    const iovOffset = SINK_BATCH * MMSGHDR_SIZE;
    this.#addrOffset = iovOffset + SINK_BATCH * IOVEC_SIZE;
    this.#controlOffset = this.#addrOffset + SINK_BATCH * SOCKADDR_SIZE;
    this.#scratchOffset = this.#controlOffset +
      SINK_BATCH * RECEIVE_CONTROL_SIZE;
    this.#slotOffset = this.#scratchOffset + SEND_CONTROL_SIZE;
    this.#memory = new ArrayBuffer(
      this.#slotOffset + SINK_BATCH * RECEIVE_BUFFER_SIZE,
    );
    this.#u8 = new Uint8Array(this.#memory);
    this.#u32 = new Uint32Array(this.#memory);
    const base = Number(
      Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.#memory)),
    );
    this.#headers = Deno.UnsafePointer.create(BigInt(base))!;
    for (let i = 0; i < SINK_BATCH; i++) {
      const hdr = i * MMSGHDR_SIZE;
      const iov = iovOffset + i * IOVEC_SIZE;
      write64(
        this.#u32,
        iov,
        base + this.#slotOffset + i * RECEIVE_BUFFER_SIZE,
      );
      write64(this.#u32, iov + IOV_LEN, RECEIVE_BUFFER_SIZE);
      write64(
        this.#u32,
        hdr + MSG_NAME,
        base + this.#addrOffset + i * SOCKADDR_SIZE,
      );
      write64(this.#u32, hdr + MSG_IOV, base + iov);
      write64(this.#u32, hdr + MSG_IOVLEN, 1);
      write64(
        this.#u32,
        hdr + MSG_CONTROL,
        base + this.#controlOffset + i * RECEIVE_CONTROL_SIZE,
      );
    }
  }

  /**
   * Takes what is waiting in the sink, at most {@linkcode READS_PER_DRAIN}
   * reads, and counts each datagram; the sink's copy of a broadcast or
   * multicast datagram, which reaches the socket too and is counted there
   * (`not-unicast`), it leaves uncounted.
   */
  drain(): void {
    const { fd, ipv6, counts, droppedBy, events } = this.#options;
    const datagramEvents = this.#options.datagramEvents === true &&
      events !== undefined;
    const u32 = this.#u32;
    for (let read = 0; read < READS_PER_DRAIN; read++) {
      for (let i = 0; i < SINK_BATCH; i++) {
        const h = (i * MMSGHDR_SIZE) >> 2;
        u32[(i * MMSGHDR_SIZE + MSG_NAMELEN) >> 2] = SOCKADDR_SIZE;
        write64(u32, i * MMSGHDR_SIZE + MSG_CONTROLLEN, RECEIVE_CONTROL_SIZE);
        u32[h + 12] = 0; // msg_flags
      }
      const n = this.#libc.symbols.recvmmsg(
        fd,
        this.#headers,
        SINK_BATCH,
        MSG_DONTWAIT,
        null,
      );
      // Nothing waiting (EAGAIN), or a failure the next drain meets again.
      if (n <= 0) return;
      for (let i = 0; i < n; i++) {
        const h = (i * MMSGHDR_SIZE) >> 2;
        if (u32[h + 2] === 0) continue; // msg_namelen: no datagram
        const controlLength = u32[h + 10]!; // msg_controllen
        const kind = controlLength === 0 ? 0 : readPktinfo(
          this.#u8,
          u32,
          this.#controlOffset + i * RECEIVE_CONTROL_SIZE,
          controlLength,
          this.#scratchOffset,
          ipv6,
          this.#info,
        );
        if (kind === PKTINFO_NOT_UNICAST) continue;
        const size = u32[h + 14]!; // msg_len
        counts[C_RECEIVED]!++;
        counts[C_RECEIVED_BYTES]! += size;
        counts[C_DROPPED]!++;
        droppedBy[SPOOFED_LOCAL] = (droppedBy[SPOOFED_LOCAL] ?? 0) + 1;
        if (datagramEvents) {
          events!.datagram(
            this.#u8,
            this.#addrOffset + i * SOCKADDR_SIZE,
            this.#slotOffset + i * RECEIVE_BUFFER_SIZE,
            size,
            SPOOFED_LOCAL,
          );
        }
      }
      if (n < SINK_BATCH) return;
    }
  }
}
