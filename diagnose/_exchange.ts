/**
 * One request and its reply on a path socket, as every check of this
 * folder asks it: the request is a STAMP test packet (RFC 8762) when the
 * peer is a Session-Reflector, else bytes an echo server returns as they
 * are; the reply is matched by its sequence number, and an ICMP "too big"
 * or a refused port queued for the socket ends the wait early.
 *
 * @module
 */

import {
  EMSGSIZE,
  type PathError,
  type PathReply,
  type PathSocket,
} from "../kernel/path_socket.ts";
import {
  OFFSET,
  SOFTWARE_SENDER_ERROR,
  STAMP_BASE_SIZE,
  writeSenderPacket,
} from "../stamp/packet.ts";
import { type RequestTlv, writeRequestTlvs } from "../stamp/tlv.ts";

/** How often a wait looks at the socket, in ms. */
const POLL_MS = 2;

/** What one try came to. */
export type Answer =
  | { kind: "reply"; reply: PathReply; rttMs: number }
  | { kind: "icmp"; error: PathError }
  | { kind: "too-big" }
  | { kind: "timeout" };

/** The smallest request a peer gets: the STAMP base, or a tag for an echo. */
export function smallestRequest(stamp: boolean): number {
  return stamp ? STAMP_BASE_SIZE : 8;
}

/** Makes the requests of one check and knows their replies. */
export class Requests {
  #stamp: boolean;
  #tag = crypto.getRandomValues(new Uint32Array(1))[0]!;
  #seq = 0;
  #ssid = crypto.getRandomValues(new Uint16Array(1))[0]!;

  constructor(stamp: boolean) {
    this.#stamp = stamp;
  }

  /**
   * A request of `size` bytes (at least {@linkcode smallestRequest}), with
   * `tlvs` after the STAMP base when the peer is a reflector.
   */
  make(
    size: number,
    options: { tlvs?: RequestTlv[]; dscp1?: number } = {},
  ): { bytes: Uint8Array; seq: number } {
    const bytes = new Uint8Array(size);
    const seq = this.#seq++;
    const view = new DataView(bytes.buffer);
    if (this.#stamp) {
      writeSenderPacket(bytes, {
        seq,
        timestampMs: Date.now(),
        errorEstimate: SOFTWARE_SENDER_ERROR,
        ssid: this.#ssid,
      });
      if (size > STAMP_BASE_SIZE) {
        writeRequestTlvs(bytes, STAMP_BASE_SIZE, options.tlvs ?? [], options);
      }
    } else {
      view.setUint32(0, this.#tag);
      view.setUint32(4, seq);
    }
    return { bytes, seq };
  }

  /** Whether `reply` answers the request `seq` of `size` bytes. */
  matches(reply: Uint8Array, seq: number, size: number): boolean {
    if (reply.length !== size) return false;
    const view = new DataView(reply.buffer, reply.byteOffset, reply.length);
    return this.#stamp
      ? view.getUint32(OFFSET.senderSeq) === seq &&
        view.getUint16(OFFSET.ssid) === this.#ssid
      : view.getUint32(0) === this.#tag && view.getUint32(4) === seq;
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Sends a request of `size` bytes and waits up to `timeoutMs` for its
 * reply, an ICMP "too big" (or other ICMP error) for it, or the kernel's
 * refusal to send it at all (`too-big`). Stops early, as a timeout, when
 * `signal` aborts.
 */
export async function exchange(
  socket: PathSocket,
  requests: Requests,
  size: number,
  options: {
    timeoutMs: number;
    signal: AbortSignal;
    tlvs?: RequestTlv[];
    dscp1?: number;
  },
): Promise<Answer> {
  // Errors of earlier tries are not this one's.
  while (socket.readError() !== undefined);
  const { bytes, seq } = requests.make(size, options);
  const start = performance.now();
  for (;;) {
    const sent = socket.send(bytes);
    if (sent === "too-big") return { kind: "too-big" };
    if (sent === "sent") break;
    if (performance.now() - start > options.timeoutMs) {
      return { kind: "timeout" };
    }
    await pause(POLL_MS);
  }
  while (!options.signal.aborted) {
    const error = socket.readError();
    if (error !== undefined && error.errno !== 0) {
      if (error.errno === EMSGSIZE && error.origin === 1) {
        return { kind: "too-big" };
      }
      return { kind: "icmp", error };
    }
    for (let reply = socket.receive(); reply; reply = socket.receive()) {
      if (requests.matches(reply.bytes, seq, size)) {
        return { kind: "reply", reply, rttMs: performance.now() - start };
      }
    }
    if (performance.now() - start >= options.timeoutMs) break;
    await pause(POLL_MS);
  }
  return { kind: "timeout" };
}
