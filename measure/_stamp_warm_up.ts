/**
 * The warm-up of the STAMP Session-Sender (`stamp_probe.ts`): its code run
 * on a reply of our own reflector before the clock starts, so neither the
 * encode before probe 0's send nor the reading of its reply runs cold.
 *
 * @module
 */

import type { ProbeFormat } from "./_common.ts";
import { StampReflector } from "../stamp/reflector.ts";

/** Probes sent through the format. */
const WARM_UP_ROUNDS = 500;

/**
 * Runs `format` (one that reports nowhere) on `size`-byte probes and two
 * replies: one of our reflector, with the TLVs the format asks for, and
 * the request unchanged, as a plain echo server returns it. The reflector
 * runs once: its code is not the sender's to warm up.
 */
export function warmUpFormat(
  format: ProbeFormat,
  session: number,
  size: number,
): void {
  const request = new Uint8Array(size);
  const reflected = new Uint8Array(size);
  const here = { hostname: "127.0.0.1", port: 9 };
  format.encode(request, { session, seq: 0, sentAt: performance.timeOrigin });
  new StampReflector().reflect(request, reflected, {
    from: here,
    local: here,
    receivedAtMs: performance.timeOrigin,
  });
  for (let seq = 0; seq < WARM_UP_ROUNDS; seq++) {
    const header = { session, seq: 0, sentAt: performance.timeOrigin };
    format.encode(request, header);
    const data = seq % 2 === 0 ? request : reflected;
    if (format.decode(data) !== undefined) {
      format.verify(data, header, size);
      format.onReply?.(data, seq, 0);
    }
  }
}
