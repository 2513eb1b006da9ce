/**
 * What the engines do around a `sendmmsg`: the transmit stamp of the echo
 * engine's reflect hook (`_hooks.ts`), CLOCK_REALTIME read once right
 * before each call and handed to the hook's `transmit` for every reply
 * that call carries (the timespec the kernel writes lives in the engine's
 * one buffer, like everything else the kernel touches, see
 * `_echo_engine.ts`); and why a call stopped short
 * ({@linkcode shortSendCause}), for the echo engine and the sender alike.
 *
 * @module
 */

import {
  CLOCK_REALTIME,
  EPERM,
  EPIPE,
  lastErrno,
  type Libc,
  MSG_PROBE,
  POLLHUP,
} from "./_libc.ts";
import { MSG_IOV, MSG_IOVLEN, POLLFD_SIZE, TIMESPEC_SIZE } from "./_structs.ts";
import { SOCKET_TIMEOUT_MS } from "./_bind.ts";
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

/** What {@linkcode shortSendCause} returns when the datagram may be sent again. */
export const SEND_AGAIN = 0;

// struct msghdr up to msg_flags, and a struct pollfd: what the two checks
// below hand the kernel, as buffers it reads during the call only.
const MSGHDR_BYTES = 56;
const probe = new Uint8Array(MSGHDR_BYTES);
const probeWords = new Uint32Array(probe.buffer);
const pollfd = new Int32Array(POLLFD_SIZE >> 2);

/**
 * Why a `sendmmsg` stopped short at the datagram whose `struct msghdr` is
 * at `header`: the kernel tried that one, it failed, and the call returned
 * how many went before it instead of its errno. Sending it again to learn
 * the errno would be a second attempt (a firewall counts two), so this
 * asks without sending, and answers:
 * - {@linkcode SEND_AGAIN} when the call lasted the socket's send timeout
 *   (`elapsedMs` at least `timeoutMs`, by default `_bind.ts`'s): it may
 *   have waited for room in a full send buffer (EAGAIN), as only a wait
 *   makes a UDP send that slow;
 * - EPIPE when the socket is shut down (the server is stopping);
 * - the errno of routing it (a `sendmsg` of no bytes with `MSG_PROBE`,
 *   which stops after the route lookup): an unreachable network or host, a
 *   prohibited route;
 * - else EPERM: refused after routing, which for a UDP socket without
 *   `IP_RECVERR` is a firewall's verdict (a full device queue is no error
 *   there: the kernel drops the datagram and reports it sent).
 */
export function shortSendCause(
  libc: Libc,
  fd: number,
  header: Deno.PointerObject,
  elapsedMs: number,
  timeoutMs: number = SOCKET_TIMEOUT_MS,
): number {
  if (elapsedMs >= timeoutMs) return SEND_AGAIN;
  pollfd[0] = fd;
  pollfd[1] = 0; // events none (a hang-up is always reported), revents
  if (libc.symbols.poll(pollfd, 1n, 0) > 0 && (pollfd[1]! >>> 16) & POLLHUP) {
    return EPIPE;
  }
  // The same name and control message (the reply's source), no payload.
  new Deno.UnsafePointerView(header).copyInto(probe);
  probeWords.fill(0, MSG_IOV >> 2, (MSG_IOVLEN >> 2) + 2);
  if (libc.symbols.sendmsg(fd, probe, MSG_PROBE) < 0) return lastErrno(libc);
  return EPERM;
}
