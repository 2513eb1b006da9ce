/**
 * The replies a reflect hook of the echo engine holds for later (`HELD` in
 * `_hooks.ts`, a STAMP Delayed Reply): copies of each reply and of what
 * sends it, until it is due. How many there may be is the hook's to bound
 * (the reflector grants a delay only while its table has room).
 *
 * @module
 */

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
  /** The datagram's receive facts (`_pktinfo.ts`). */
  info: Uint32Array;
  /** The sender, for the decide hook. */
  hostname: string;
  port: number;
}

/** The held replies of one engine, and when the first is due. */
export class HeldReplies {
  #held: HeldReply[] = [];
  #nextDue = Infinity;

  /** Holds `reply` until its `dueAt`. */
  add(reply: HeldReply): void {
    this.#held.push(reply);
    this.#nextDue = Math.min(this.#nextDue, reply.dueAt);
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
