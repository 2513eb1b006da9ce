/**
 * The replies a reflect hook of the echo engine holds for later (`HELD` in
 * `_hooks.ts`, a STAMP Delayed Reply): copies of each reply and of what
 * sends it, until it is due. How many there may be is the hook's to bound
 * (the reflector grants a delay only while its table has room).
 *
 * @module
 */

import type { DatagramFacts } from "./_hooks.ts";
import { copyInfo, SEND_CONTROL_SIZE } from "./_pktinfo.ts";
import { SOCKADDR_SIZE } from "./_sockaddr.ts";

/** A held reply: copies of its bytes and of the slot data that sends it. */
export interface HeldReply {
  /** `performance.now()` when it is due. */
  dueAt: number;
  /** The reply. */
  bytes: Uint8Array;
  /** The sender's socket address, and its length. */
  name: Uint8Array;
  namelen: number;
  /** The control message naming the reply's source, and its kind. */
  control: Uint8Array;
  kind: number;
  /** The TOS or traffic class the reply leaves with; -1 for the socket's. */
  tos: number;
  /** The datagram's receive facts (`_pktinfo.ts`). */
  info: Uint32Array;
  /** The sender, for the decide hook. */
  hostname: string;
  port: number;
}

/** Where an engine's slots lie in its one buffer (`_echo_engine.ts`). */
export interface SlotLayout {
  /** The whole buffer. */
  u8: Uint8Array;
  /** The payload slots. */
  payloads: Uint8Array[];
  /** The offsets of the first socket address and send control message. */
  addrOffset: number;
  controlOffset: number;
}

/** The held replies of one engine, and when the first is due. */
export class HeldReplies {
  #layout: SlotLayout;
  #held: HeldReply[] = [];
  #nextDue = Infinity;

  constructor(layout: SlotLayout) {
    this.#layout = layout;
  }

  /** Holds the reply in slot `i`, `size` bytes, copied with what sends it. */
  hold(
    i: number,
    size: number,
    facts: Omit<HeldReply, "bytes" | "name" | "control">,
  ): void {
    const { u8, payloads, addrOffset, controlOffset } = this.#layout;
    const name = addrOffset + i * SOCKADDR_SIZE;
    const control = controlOffset + i * SEND_CONTROL_SIZE;
    this.#held.push({
      ...facts,
      bytes: payloads[i]!.slice(0, size),
      name: u8.slice(name, name + SOCKADDR_SIZE),
      control: u8.slice(control, control + SEND_CONTROL_SIZE),
    });
    this.#nextDue = Math.min(this.#nextDue, facts.dueAt);
  }

  /**
   * Writes a held reply and what sends it back into slot `i`, and its
   * sender and receive facts into `facts`, for the decide hook.
   */
  restore(i: number, reply: HeldReply, facts: DatagramFacts): void {
    const { u8, payloads, addrOffset, controlOffset } = this.#layout;
    payloads[i]!.set(reply.bytes);
    u8.set(reply.name, addrOffset + i * SOCKADDR_SIZE);
    u8.set(reply.control, controlOffset + i * SEND_CONTROL_SIZE);
    copyInfo(reply.info, facts);
    facts.size = reply.bytes.length;
    facts.hostname = reply.hostname;
    facts.port = reply.port;
    facts.payload = payloads[i]!;
  }

  /** Takes out up to `most` replies due at `now`, earliest first. */
  due(now: number, most: number): HeldReply[] {
    if (now < this.#nextDue) return [];
    this.#held.sort((a, b) => a.dueAt - b.dueAt);
    let count = 0;
    while (
      count < this.#held.length && count < most &&
      this.#held[count]!.dueAt <= now
    ) count++;
    const due = this.#held.splice(0, count);
    this.#nextDue = this.#held[0]?.dueAt ?? Infinity;
    return due;
  }
}
