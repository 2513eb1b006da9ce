/**
 * The echo engine of one socket: `recvmmsg(2)` and `sendmmsg(2)`, many
 * datagrams per system call, on a socket opened by `_bind.ts`, with the
 * structures of `_structs.ts`; it reports to an `EchoEventSink`
 * (`_echo_events.ts`).
 *
 * Memory safety is by construction. Every byte the kernel reads or writes
 * (message headers, iovecs, socket addresses, control messages, payload slots)
 * lives in one ArrayBuffer that is allocated once per socket, is large enough
 * that V8 keeps it outside the garbage-collected heap (so it never moves), is
 * referenced by the engine for its whole life, and whose address is taken
 * once. The hot loop writes only numbers into that buffer and allocates
 * nothing per datagram, so garbage collection has nothing to move or free
 * under the kernel. A receive blocked in the kernel is woken by `shutdown(2)`
 * (with a receive timeout as a backstop) and the socket is closed only after
 * the last system call has returned.
 *
 * Each datagram's destination comes with it as a control message
 * (`_pktinfo.ts`): a reply leaves from the address the request was sent to,
 * even on a wildcard socket, and a datagram sent to a broadcast or multicast
 * address is dropped (`not-unicast`) before any decide hook. A reflect hook
 * (`_hooks.ts`) may then rewrite a datagram into its reply in place, seeing
 * its kernel receive time, TTL and TOS, mark its reply with a TOS of its
 * choosing (the STAMP Class of Service) and stamp each reply right before
 * the `sendmmsg` that carries it, or hold it (`_held.ts`) to be sent later
 * through the same slots between turns.
 *
 * It is longer than 500 lines because the receive, decide and send steps
 * of one batch index the one buffer together, and read best side by side.
 *
 * @module
 */

import type { AddressFamily } from "../net/address.ts";
import { RECEIVE_BUFFER_SIZE } from "../net/payload.ts";
import type { DropReason } from "../policy/policy.ts";
import {
  checkBatchSize,
  describeErrno,
  EAGAIN,
  EINTR,
  EPIPE,
  lastErrno,
  type Libc,
  MSG_WAITFORONE,
  receiveMessages,
} from "./_libc.ts";
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
  type EchoEventSink,
} from "./_echo_events.ts";
import {
  ask,
  type DatagramFacts,
  type DecideHook,
  HELD,
  newDatagramFacts,
  type ReflectHook,
} from "./_hooks.ts";
import {
  ReplyStamper,
  SEND_AGAIN,
  shortSendCause,
  STAMPER_SIZE,
} from "./_transmit.ts";
import { NameCache } from "./_names.ts";
import {
  addReplyTos,
  copyInfo,
  INFO_SIZE,
  initSendControl,
  PKTINFO_NOT_UNICAST,
  PKTINFO_UNICAST,
  readPktinfo,
  RECEIVE_CONTROL_SIZE,
  SEND_CONTROL_SIZE,
} from "./_pktinfo.ts";
import { AF_INET, SOCKADDR_SIZE } from "./_sockaddr.ts";
import { HeldReplies, type HeldReply } from "./_held.ts";

/** Options for {@linkcode EchoEngine}. */
export interface EchoEngineOptions {
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
  /** Rewrites each datagram the decide hook let through into its reply. */
  reflect?: ReflectHook;
  /** Receives datagram and error events when given. */
  events?: EchoEventSink;
  /** Whether datagram events (each with a copy of its payload) are wanted; error events always are. */
  datagramEvents?: boolean;
}

/** The reason a datagram sent to a broadcast or multicast address is dropped. */
const NOT_UNICAST: DropReason = "not-unicast";

/**
 * The batch echo engine of one socket: owns the one buffer the kernel
 * touches, receives a batch, decides each datagram and sends the echoes.
 */
export class EchoEngine {
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
  #recvControlOffset: number;
  #sendControlOffset: number;
  #sendControlLength: number;
  #slotOffset: number;
  #ipv6: boolean;
  // Only a wildcard socket's replies must name their source (IP_PKTINFO).
  #wildcard: boolean;
  #info = new Uint32Array(INFO_SIZE);
  #current = 0;
  #currentKind = 0;
  #addrLo: Uint32Array;
  #addrHi: Uint32Array;
  #sendIovLo: Uint32Array;
  #sendIovHi: Uint32Array;
  #sendControlLo: Uint32Array;
  #sendControlHi: Uint32Array;
  #keptSlot: Uint32Array;
  #names = new NameCache();
  #facts: DatagramFacts;
  #decide: DecideHook | undefined;
  #reflect: ReflectHook | undefined;
  #payloads: Uint8Array[] = [];
  #stamper: ReplyStamper | undefined;
  #keptSize: Uint32Array;
  #events: EchoEventSink | undefined;
  #datagramEvents: boolean;
  #lastReceived = 0;
  #held: HeldReplies;

  /** Allocates the buffer and lays out every header once. */
  constructor(libc: Libc, options: EchoEngineOptions) {
    const vlen = options.batchSize;
    checkBatchSize(vlen);
    this.#libc = libc;
    this.#fd = options.fd;
    this.#vlen = vlen;
    this.counts = options.counts;
    this.#decide = options.decide;
    this.#reflect = options.reflect;
    this.#events = options.events;
    this.#datagramEvents = options.datagramEvents === true &&
      options.events !== undefined;
    this.#ipv6 = options.family === "IPv6";
    this.#wildcard = ["0.0.0.0", "::"].includes(options.localHostname);
    // Formatting the destination costs a lookup: only hooks that read it pay.
    const destination = () => this.#destination();
    this.#facts = newDatagramFacts(options, destination);

    this.#sendHdrOffset = vlen * MMSGHDR_SIZE;
    const recvIovOffset = 2 * vlen * MMSGHDR_SIZE;
    this.#sendIovOffset = recvIovOffset + vlen * IOVEC_SIZE;
    this.#addrOffset = this.#sendIovOffset + vlen * IOVEC_SIZE;
    this.#recvControlOffset = this.#addrOffset + vlen * SOCKADDR_SIZE;
    this.#sendControlOffset = this.#recvControlOffset +
      vlen * RECEIVE_CONTROL_SIZE;
    const clockOffset = this.#sendControlOffset + vlen * SEND_CONTROL_SIZE;
    this.#slotOffset = Math.ceil((clockOffset + STAMPER_SIZE) / 4096) * 4096;
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
    this.#sendControlLo = new Uint32Array(vlen);
    this.#sendControlHi = new Uint32Array(vlen);
    this.#keptSlot = new Uint32Array(vlen);
    this.#keptSize = new Uint32Array(vlen);
    const u32 = this.#u32;
    let sendControlLength = 0;
    for (let i = 0; i < vlen; i++) {
      const hdr = i * MMSGHDR_SIZE;
      const recvIov = recvIovOffset + i * IOVEC_SIZE;
      const sendIov = this.#sendIovOffset + i * IOVEC_SIZE;
      const addr = this.#addrOffset + i * SOCKADDR_SIZE;
      const recvControl = this.#recvControlOffset + i * RECEIVE_CONTROL_SIZE;
      const sendControl = this.#sendControlOffset + i * SEND_CONTROL_SIZE;
      const slot = this.#slotOffset + i * RECEIVE_BUFFER_SIZE;
      write64(u32, recvIov, baseValue + slot);
      write64(u32, recvIov + IOV_LEN, RECEIVE_BUFFER_SIZE);
      write64(u32, sendIov, baseValue + slot);
      write64(u32, sendIov + IOV_LEN, 0);
      write64(u32, hdr + MSG_NAME, baseValue + addr);
      u32[(hdr + MSG_NAMELEN) >> 2] = SOCKADDR_SIZE;
      write64(u32, hdr + MSG_IOV, baseValue + recvIov);
      write64(u32, hdr + MSG_IOVLEN, 1);
      write64(u32, hdr + MSG_CONTROL, baseValue + recvControl);
      write64(u32, hdr + MSG_CONTROLLEN, RECEIVE_CONTROL_SIZE);
      sendControlLength = initSendControl(u32, sendControl, this.#ipv6);
      this.#sendControlLo[i] = (baseValue + sendControl) % 2 ** 32;
      this.#sendControlHi[i] = Math.floor((baseValue + sendControl) / 2 ** 32);
      this.#addrLo[i] = (baseValue + addr) % 2 ** 32;
      this.#addrHi[i] = Math.floor((baseValue + addr) / 2 ** 32);
      this.#sendIovLo[i] = (baseValue + sendIov) % 2 ** 32;
      this.#sendIovHi[i] = Math.floor((baseValue + sendIov) / 2 ** 32);
    }
    this.#sendControlLength = sendControlLength;
    for (let i = 0, slot = this.#slotOffset; i < vlen; i++) {
      this.#payloads.push(this.#u8.subarray(slot, slot += RECEIVE_BUFFER_SIZE));
    }
    this.#held = new HeldReplies({
      u8: this.#u8,
      payloads: this.#payloads,
      addrOffset: this.#addrOffset,
      controlOffset: this.#sendControlOffset,
    });
    const transmit = options.reflect?.transmit;
    this.#stamper = transmit && new ReplyStamper(libc, transmit, {
      memory: { u32, offset: clockOffset, pointer: at(clockOffset) },
      payloads: this.#payloads,
    });
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
      u32[h + 10] = RECEIVE_CONTROL_SIZE; // msg_controllen, likewise
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
    return receiveMessages(
      this.#libc,
      this.#fd,
      this.#recvHdrs,
      this.#vlen,
      MSG_WAITFORONE,
    );
  }

  /**
   * Reports a failed receive (errno as `receive()` returned it, negated);
   * returns whether it was a real failure, not a timeout or an interruption.
   */
  receiveFailed(errno: number): boolean {
    if (errno === EINTR || errno === EAGAIN) return false;
    this.counts[C_RECEIVE_ERRORS]!++;
    this.#events?.error(
      "receive",
      errno,
      describeErrno(this.#libc, errno),
      this.#u8,
      -1,
    );
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
    return this.#u8[addr] === AF_INET
      ? this.#names.name(this.#u8, this.#u32, addr + 4, 4)
      : this.#names.name(this.#u8, this.#u32, addr + 8, 6);
  }

  #destination(): string {
    if (this.#currentKind === 0) return this.#facts.localHostname;
    const send = this.#sendControlOffset + this.#current * SEND_CONTROL_SIZE;
    return this.#ipv6
      ? this.#names.name(this.#u8, this.#u32, send + 16, 6)
      : this.#names.name(this.#u8, this.#u32, send + 20, 4);
  }

  /** Decides the `n` datagrams just received at `now` and echoes the kept. */
  echo(n: number, now: number = performance.now()): void {
    this.#lastReceived = n;
    const u8 = this.#u8;
    const u32 = this.#u32;
    const counts = this.counts;
    const facts = this.#facts;
    const decide = this.#decide;
    const reflect = this.#reflect;
    const info = this.#info;
    facts.now = now;
    counts[C_BATCHES]!++;
    let kept = 0;
    for (let i = 0; i < n; i++) {
      const h = (i * MMSGHDR_SIZE) >> 2;
      const size = u32[h + 14]!; // msg_len
      const namelen = u32[h + 2]!; // msg_namelen
      // After shutdown() empty entries have no source; a datagram always has.
      if (namelen === 0) continue;
      const addr = this.#addrOffset + i * SOCKADDR_SIZE;
      counts[C_RECEIVED]!++;
      counts[C_RECEIVED_BYTES]! += size;
      const controlLength = u32[h + 10]!; // msg_controllen
      if (controlLength === 0) info.fill(0);
      const kind = controlLength === 0 ? 0 : readPktinfo(
        u8,
        u32,
        this.#recvControlOffset + i * RECEIVE_CONTROL_SIZE,
        controlLength,
        this.#sendControlOffset + i * SEND_CONTROL_SIZE,
        this.#ipv6,
        this.#info,
      );
      let reason: string | undefined = undefined;
      if (kind === PKTINFO_NOT_UNICAST) {
        reason = NOT_UNICAST;
      } else if (
        decide !== undefined || reflect !== undefined || this.#datagramEvents
      ) {
        this.#current = i;
        this.#currentKind = kind;
        copyInfo(info, facts);
        facts.size = size;
        facts.hostname = this.#sourceName(addr);
        facts.port = (u8[addr + 2]! << 8) | u8[addr + 3]!;
        facts.payload = this.#payloads[i]!;
        reason = ask(decide, facts, "policy error");
        // As on sockets: the reflector answers what the policy let through.
        reason ??= ask(reflect, facts, "reflect error");
      }
      if (reason === HELD) {
        this.#hold(i, size, namelen, kind);
        continue;
      }
      if (reason !== undefined) {
        this.#drop(i, size, reason);
        continue;
      }
      // A STAMP reply's Class of Service: its marking rides with the pktinfo.
      this.#keep(i, kept++, namelen, kind, size, reflect?.replyTos ?? -1);
    }
    this.#sendKept(kept, now);
  }

  /** Lays out the send header of slot `i` as the `kept`th of the call. */
  #keep(
    i: number,
    kept: number,
    namelen: number,
    kind: number,
    size: number,
    tos: number,
  ) {
    const u32 = this.#u32;
    const s = (this.#sendHdrOffset >> 2) + kept * (MMSGHDR_SIZE >> 2);
    u32[s] = this.#addrLo[i]!; // msg_name
    u32[s + 1] = this.#addrHi[i]!;
    u32[s + 2] = namelen; // msg_namelen
    u32[s + 4] = this.#sendIovLo[i]!; // msg_iov
    u32[s + 5] = this.#sendIovHi[i]!;
    u32[s + 6] = 1; // msg_iovlen
    if (kind === PKTINFO_UNICAST && (this.#wildcard || tos >= 0)) {
      const addr = this.#addrOffset + i * SOCKADDR_SIZE;
      u32[s + 8] = this.#sendControlLo[i]!; // msg_control
      u32[s + 9] = this.#sendControlHi[i]!;
      u32[s + 10] = tos < 0 ? this.#sendControlLength : addReplyTos(
        u32,
        this.#sendControlOffset + i * SEND_CONTROL_SIZE,
        this.#sendControlLength,
        tos,
        !this.#ipv6 || u32[(addr + 16) >> 2] === 0xffff0000,
      ); // msg_controllen
    } else u32.fill(0, s + 8, s + 11);
    u32[(this.#sendIovOffset >> 2) + i * (IOVEC_SIZE >> 2) + 2] = size; // iov_len
    this.#keptSlot[kept] = i;
    this.#keptSize[kept] = size;
  }

  /** Sends the `kept` replies laid out, the first call begun at `now`. */
  #sendKept(kept: number, now: number): void {
    const u32 = this.#u32;
    const counts = this.counts;
    const sendIovBase = this.#sendIovOffset >> 2;
    let sent = 0;
    // When the call now due began: the batch's clock reading stands in for
    // the first one's, so the usual batch reads no clock for it.
    let callStart = now;
    while (sent < kept) {
      this.#stamper?.stamp(this.#keptSlot, this.#keptSize, sent, kept);
      const r = this.#libc.symbols.sendmmsg(
        this.#fd,
        this.#sendHdrs[sent]!,
        kept - sent,
        0,
      );
      let errno: number;
      if (r > 0) {
        for (let j = sent; j < sent + r; j++) {
          const slot = this.#keptSlot[j]!;
          const size = u32[sendIovBase + slot * (IOVEC_SIZE >> 2) + 2]!; // iov_len
          counts[C_ECHOED]!++;
          counts[C_ECHOED_BYTES]! += size;
          // Like the socket backend, report a datagram once it is echoed.
          if (this.#datagramEvents) this.#datagramEvent(slot, size, undefined);
        }
        sent += r;
        if (sent === kept) break;
        // Stopped short at `sent`, the errno kept back (`_transmit.ts`).
        errno = shortSendCause(
          this.#libc,
          this.#fd,
          this.#sendHdrs[sent]!,
          performance.now() - callStart,
        );
      } else errno = lastErrno(this.#libc);
      callStart = performance.now();
      if (errno === EINTR || errno === SEND_AGAIN) continue;
      if (errno === EPIPE) {
        // Stopping cut these echoes off: drops with their events, not failures.
        this.#cutOff(sent, kept);
        break;
      }
      // The first message of the rest failed: count it, skip it, go on.
      this.#sendFailed(this.#keptSlot[sent]!, errno);
      sent++;
    }
  }

  /** Copies what sends the reply in slot `i` later, as the reflect hook asked. */
  #hold(i: number, size: number, namelen: number, kind: number): void {
    this.#held.hold(i, size, {
      dueAt: this.#facts.now + (this.#reflect!.holdMs ?? 0),
      namelen,
      kind,
      tos: this.#reflect!.replyTos ?? -1,
      info: this.#info.slice(),
      hostname: this.#facts.hostname,
      port: this.#facts.port,
    });
  }

  /** Puts held reply `entry` back into slot `i`, its facts into the hooks' object. */
  #restore(i: number, entry: HeldReply): void {
    this.#held.restore(i, entry, this.#facts);
    this.#current = i;
    this.#currentKind = entry.kind;
  }

  /** Sends up to a batch of held replies due, decide asked again: how many. */
  sendHeld(now: number): number {
    const due = this.#held.due(now, this.#vlen);
    if (due.length === 0) return 0;
    this.#facts.now = now;
    let kept = 0;
    for (let i = 0; i < due.length; i++) {
      const entry = due[i]!;
      const size = entry.bytes.length;
      this.#restore(i, entry);
      this.#reflect?.release?.(size, this.#facts.hostname);
      const reason = ask(this.#decide, this.#facts, "policy error");
      if (reason !== undefined) {
        this.#drop(i, size, reason);
        continue;
      }
      this.#keep(i, kept++, entry.namelen, entry.kind, size, entry.tos);
    }
    this.#sendKept(kept, now);
    return due.length;
  }

  /** Drops every held reply, as the stop cut them off (`shutdown`). */
  dropAllHeld(): void {
    for (const entry of this.#held.due(Infinity, Infinity)) {
      this.#restore(0, entry);
      this.#reflect?.release?.(entry.bytes.length, this.#facts.hostname);
      this.#drop(0, entry.bytes.length, "shutdown");
    }
  }

  #drop(i: number, size: number, reason: string): void {
    if (this.#datagramEvents) this.#datagramEvent(i, size, reason);
    this.counts[C_DROPPED]!++;
    this.droppedBy[reason] = (this.droppedBy[reason] ?? 0) + 1;
  }

  #datagramEvent(i: number, size: number, reason: string | undefined): void {
    this.#events!.datagram(
      this.#u8,
      this.#addrOffset + i * SOCKADDR_SIZE,
      this.#slotOffset + i * RECEIVE_BUFFER_SIZE,
      size,
      reason,
    );
  }

  #cutOff(from: number, to: number): void {
    this.counts[C_DROPPED]! += to - from;
    this.droppedBy.shutdown = (this.droppedBy.shutdown ?? 0) + to - from;
    for (let j = from; j < to && this.#datagramEvents; j++) {
      this.#datagramEvent(this.#keptSlot[j]!, this.#keptSize[j]!, "shutdown");
    }
  }

  #sendFailed(i: number, errno: number): void {
    this.counts[C_SEND_ERRORS]!++;
    this.#events?.error(
      "send",
      errno,
      describeErrno(this.#libc, errno),
      this.#u8,
      this.#addrOffset + i * SOCKADDR_SIZE,
    );
  }
}
