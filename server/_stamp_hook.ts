/**
 * The STAMP Session-Reflector (`stamp/reflector.ts`) as a reflect module of
 * the batch engine (`kernel/_hooks.ts`): each Worker imports this module by
 * URL and builds its own reflector, so a stateful reflector's session table
 * is per Worker, that is per socket (a sender whose datagrams reach two
 * sockets of one server is two sessions).
 *
 * On the engine the reflector's fields come from the kernel: T2 is the
 * kernel's receive timestamp (`SO_TIMESTAMPNS`, CLOCK_REALTIME), the TTL
 * the one the datagram arrived with (`IP_TTL` or `IPV6_HOPLIMIT`), the
 * Location TLV's destination the address the datagram was sent to
 * (`IP_PKTINFO`, not the wildcard bound), and T3 is CLOCK_REALTIME read
 * right before the `sendmmsg` that carries the reply: with a batch, every
 * reply of the batch gets the time of the one system call that sends them
 * all. The Class of Service TLV gets the TOS or traffic class the request
 * arrived with (`IP_RECVTOS`, `IPV6_RECVTCLASS`), and the reply leaves
 * marked with the DSCP1 it asks for (a per-datagram `IP_TOS` or
 * `IPV6_TCLASS`). The policy has already said echo when the hook runs, as on sockets.
 *
 * @module
 */

import type { ReflectHook } from "../kernel/echo.ts";
import { HELD } from "../kernel/_hooks.ts";
import {
  NTP_UNIX_OFFSET_S,
  OFFSET,
  type TimestampFormat,
} from "../stamp/packet.ts";
import { STAMP_TOO_SHORT, StampReflector } from "../stamp/reflector.ts";
import { replyTos } from "../stamp/tlv.ts";
import type { StampOptions } from "./serve.ts";

/**
 * Writes a timestamp given as whole seconds since the Unix epoch and
 * nanoseconds (a `struct timespec`), in `format`, at byte `offset`: no
 * rounding through milliseconds, whose float loses a fraction of a
 * microsecond at today's epoch.
 */
export function writeTimespec(
  target: Uint8Array,
  offset: number,
  time: { seconds: number; nanoseconds: number; format: TimestampFormat },
): void {
  const view = new DataView(target.buffer, target.byteOffset, target.length);
  const ntp = time.format === "ntp";
  view.setUint32(offset, (time.seconds + (ntp ? NTP_UNIX_OFFSET_S : 0)) >>> 0);
  view.setUint32(
    offset + 4,
    ntp ? Math.floor(time.nanoseconds * 2 ** 32 / 1e9) : time.nanoseconds,
  );
}

/** Builds the reflect hook of one Worker (see `kernel/_hooks.ts`). */
export function createReflectHook(
  options: StampOptions,
  local: Deno.NetAddr,
): ReflectHook {
  const reflector = new StampReflector(options);
  const format = reflector.format;
  // One context for every datagram: the reflector reads it and keeps none.
  const context = {
    from: { hostname: "", port: 0 },
    local: { hostname: local.hostname, port: local.port },
    receivedAtMs: 0,
    ttl: 0,
    canHold: true,
    holdMs: 0,
    tos: -1,
  };
  const time = { seconds: 0, nanoseconds: 0, format };
  const hook: ReflectHook = (facts) => {
    const kernel = facts.receivedAtS !== 0;
    context.from.hostname = facts.hostname;
    context.from.port = facts.port;
    context.local.hostname = facts.destination;
    context.receivedAtMs = kernel
      ? facts.receivedAtS * 1000 + facts.receivedAtNs / 1e6
      : performance.timeOrigin + facts.now;
    context.ttl = facts.ttl;
    context.tos = facts.tos;
    hook.replyTos = -1;
    const request = facts.payload.subarray(0, facts.size);
    if (reflector.reflect(request, request, context) === STAMP_TOO_SHORT) {
      return STAMP_TOO_SHORT;
    }
    if (facts.size > OFFSET.senderTtl + 4 && facts.tos >= 0) {
      hook.replyTos = replyTos(request, OFFSET.senderTtl + 4);
    }
    if (kernel) {
      time.seconds = facts.receivedAtS;
      time.nanoseconds = facts.receivedAtNs;
      writeTimespec(facts.payload, OFFSET.receiveTimestamp, time);
    }
    if (context.holdMs === 0) return undefined;
    hook.holdMs = context.holdMs;
    return HELD;
  };
  hook.release = (size, source) => reflector.release(size, source);
  hook.transmit = (reply) => {
    if (reply.size < OFFSET.receiveTimestamp) return;
    time.seconds = reply.sentAtS;
    time.nanoseconds = reply.sentAtNs;
    writeTimespec(reply.payload, OFFSET.timestamp, time);
  };
  return hook;
}
