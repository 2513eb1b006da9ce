/**
 * Host drops in a run's report: the datagrams this host's own receive
 * buffer dropped, told apart from the loss on the path. The two figures
 * count different things: `lost` counts probes without a reply, the host
 * drops count datagrams the kernel dropped at the run's sockets. A dropped
 * reply leaves its probe lost, so up to that many of the lost reached this
 * host; a dropped duplicate or foreign datagram counts there too, so it is
 * "up to", and `lost` less the host drops is the least the path (and the
 * server) lost.
 *
 * @module
 */

import type { RunResult } from "./types.ts";

/** The least loss the host drops cannot explain; `null` when they are unknown. */
export function lostBeyondHostDrops(result: RunResult): number | null {
  if (result.hostDrops === undefined || result.hostDrops === null) return null;
  return Math.max(0, result.lost - result.hostDrops);
}

/** The summary's lines on host drops and the receive buffer, if any. */
export function formatHostDrops(result: RunResult): string[] {
  const lines: string[] = [];
  const { hostDrops, lost } = result;
  const buffer = result.receiveBuffer;
  if (buffer?.capped) {
    lines.push(
      `receive buffer: ${buffer.granted} bytes, capped by net.core.rmem_max (${buffer.asked} needed for the rate asked)`,
    );
  }
  if (hostDrops === undefined) return lines;
  if (hostDrops === null) {
    if (lost > 0) {
      lines.push(
        `host drops: unknown (${result.hostDropsUnknown}); the ${lost} lost may include this host's own drops`,
      );
    }
    return lines;
  }
  if (hostDrops === 0) {
    if (lost > 0) {
      // Only the client's sockets are read: a server on this host may have
      // dropped them all (its own host drops, RcvbufErrors).
      lines.push(
        `host drops: 0, the client's receive buffers dropped none of the ${lost} lost`,
      );
    }
    return lines;
  }
  const beyond = lostBeyondHostDrops(result)!;
  lines.push(
    `host drops: ${hostDrops} datagrams dropped by this host's receive buffer, not the path`,
  );
  if (lost === 0) return lines;
  lines.push(
    beyond === 0
      ? `host drops explain all ${lost} lost: the path need have lost none`
      : `host drops explain up to ${hostDrops} of the ${lost} lost: at least ${beyond} lost on the path or at the server`,
  );
  return lines;
}

/** The JSON fields on host drops (see docs/json.md). */
export function hostDropsJson(result: RunResult): Record<string, unknown> {
  return {
    host_drops: result.hostDrops ?? null,
    host_drops_unknown_reason: result.hostDrops === null
      ? result.hostDropsUnknown ?? null
      : result.hostDrops === undefined
      ? "not measured"
      : null,
    lost_beyond_host_drops: lostBeyondHostDrops(result),
    receive_buffer: result.receiveBuffer ?? null,
  };
}
