/**
 * The transmit stamp of the echo engine's reflect hook (`_hooks.ts`):
 * CLOCK_REALTIME read once right before each `sendmmsg`, handed to the
 * hook's `transmit` for every reply that system call carries. The timespec
 * the kernel writes lives in the engine's one buffer, like everything else
 * the kernel touches (see `_echo_engine.ts`).
 *
 * @module
 */

import { CLOCK_REALTIME, type Libc } from "./_libc.ts";
import { TIMESPEC_SIZE } from "./_structs.ts";
import type { OutgoingReply, ReflectHook } from "./_hooks.ts";

/** Bytes of the engine's buffer a {@linkcode ReplyStamper} needs: one `struct timespec`. */
export const STAMPER_SIZE = TIMESPEC_SIZE;

/** Where a {@linkcode ReplyStamper}'s clock reading lives. */
export interface StamperMemory {
  /** A view of the engine's buffer. */
  u32: Uint32Array;
  /** The byte offset of its {@linkcode STAMPER_SIZE} bytes, 8-aligned. */
  offset: number;
  /** The same bytes' address. */
  pointer: Deno.PointerObject;
}

/** Stamps the replies of one batch right before their `sendmmsg`. */
export class ReplyStamper {
  #libc: Libc;
  #transmit: NonNullable<ReflectHook["transmit"]>;
  #memory: StamperMemory;
  #payloads: readonly Uint8Array[];
  #reply: OutgoingReply;

  /** `payloads` are the engine's receive slots, one view each. */
  constructor(
    libc: Libc,
    transmit: NonNullable<ReflectHook["transmit"]>,
    options: { memory: StamperMemory; payloads: readonly Uint8Array[] },
  ) {
    this.#libc = libc;
    this.#transmit = transmit;
    this.#memory = options.memory;
    this.#payloads = options.payloads;
    this.#reply = {
      payload: options.payloads[0]!,
      size: 0,
      sentAtS: 0,
      sentAtNs: 0,
    };
  }

  /**
   * Reads the clock once and passes it with each kept reply `from` to `to`
   * (its slot in `slots`, its length in `sizes`); a hook that throws leaves
   * its reply as it was.
   */
  stamp(
    slots: Uint32Array,
    sizes: Uint32Array,
    from: number,
    to: number,
  ): void {
    const { u32, offset, pointer } = this.#memory;
    this.#libc.symbols.clock_gettime(CLOCK_REALTIME, pointer);
    const reply = this.#reply;
    // struct timespec: a 64-bit tv_sec (its low half suffices until 2106).
    reply.sentAtS = u32[offset >> 2]!;
    reply.sentAtNs = u32[(offset >> 2) + 2]!;
    for (let j = from; j < to; j++) {
      reply.payload = this.#payloads[slots[j]!]!;
      reply.size = sizes[j]!;
      try {
        this.#transmit(reply);
      } catch {
        // The reply leaves as the reflect hook made it.
      }
    }
  }
}
