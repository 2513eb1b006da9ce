/**
 * The warm-up of the STAMP Session-Sender (`stamp_probe.ts`): its code run
 * on replies of our own reflector before the clock starts, so neither the
 * encode before probe 0's send nor the reading of its reply runs cold.
 *
 * @module
 */

import type { ProbeFormat } from "./_common.ts";
import { StampReflector } from "../stamp/reflector.ts";

/** Probes sent through the format and the reflector. */
const WARM_UP_ROUNDS = 2000;

/**
 * Runs `format` (one that reports nowhere) on `size`-byte probes and their
 * replies: every other one reflected with the TLVs it asks for, the rest
 * returned unchanged, as a plain echo server would.
 */
export function warmUpFormat(
  format: ProbeFormat,
  session: number,
  size: number,
): void {
  const reflector = new StampReflector();
  const request = new Uint8Array(size);
  const reply = new Uint8Array(size);
  const here = { hostname: "127.0.0.1", port: 9 };
  for (let seq = 0; seq < WARM_UP_ROUNDS; seq++) {
    const header = { session, seq, sentAt: performance.timeOrigin };
    format.encode(request, header);
    const data = seq % 2 === 0 ? request : reply;
    if (data === reply) {
      reflector.reflect(request, reply, {
        from: here,
        local: here,
        receivedAtMs: header.sentAt,
      });
    }
    if (format.decode(data) !== undefined) {
      format.verify(data, header, size);
      format.onReply?.(data, seq, 0);
    }
  }
}
