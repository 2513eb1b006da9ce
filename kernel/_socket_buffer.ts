/**
 * A kernel-engine socket's receive buffer: its size, set for the rate a run
 * asks for and read back as the kernel granted it, and the datagrams the
 * kernel dropped because it was full (`getsockopt(SO_MEMINFO)`'s
 * `SK_MEMINFO_DROPS`, the counter `/proc/net/udp` shows in its `drops`
 * column and `SO_RXQ_OVFL` hands out with each datagram). Read on the
 * thread that owns the socket, at any time and once more right before it
 * closes, so drops after the last datagram count too.
 *
 * @module
 */

import { type Libc, SOL_SOCKET } from "./_libc.ts";
import type { RunResult } from "../measure/types.ts";

/** A receive buffer as sized: see `RunResult.receiveBuffer`. */
export type ReceiveBufferSize = NonNullable<RunResult["receiveBuffer"]>;

/** `getsockopt`/`setsockopt`: the receive buffer's size in bytes. */
const SO_RCVBUF = 8;
/** `getsockopt`: the socket's memory figures, `SK_MEMINFO_VARS` u32s. */
const SO_MEMINFO = 55;
/** The figures `SO_MEMINFO` fills (`SK_MEMINFO_VARS`). */
const SK_MEMINFO_VARS = 9;
/** Index of the drop count among them (`SK_MEMINFO_DROPS`). */
const SK_MEMINFO_DROPS = 8;

/**
 * The datagrams the kernel dropped at socket `fd` so far (its receive
 * buffer was full, or rarer: a bad checksum, a socket filter); -1 when it
 * cannot say.
 */
export function socketDrops(libc: Libc, fd: number): number {
  const info = new Uint32Array(SK_MEMINFO_VARS);
  const length = new Uint32Array([info.byteLength]);
  const r = libc.symbols.getsockopt(fd, SOL_SOCKET, SO_MEMINFO, info, length);
  if (r !== 0 || length[0]! <= SK_MEMINFO_DROPS * 4) return -1;
  return info[SK_MEMINFO_DROPS]!;
}

/** The receive buffer's size in bytes as the kernel reports it; -1 on failure. */
export function receiveBufferSize(libc: Libc, fd: number): number {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  const r = libc.symbols.getsockopt(fd, SOL_SOCKET, SO_RCVBUF, value, length);
  return r === 0 ? value[0]! : -1;
}

/**
 * Grows socket `fd`'s receive buffer to hold `bytes` as the kernel counts
 * them (the datagrams with its bookkeeping), unless it already does; never
 * shrinks it. The kernel doubles what `SO_RCVBUF` asks for, and caps the
 * request at `net.core.rmem_max`: the size read back tells both.
 */
export function sizeReceiveBuffer(
  libc: Libc,
  fd: number,
  bytes: number,
): ReceiveBufferSize {
  const before = receiveBufferSize(libc, fd);
  if (before >= bytes) return { asked: 0, granted: before, capped: false };
  // The kernel doubles the value it accepts: ask for half of what is needed.
  const half = Math.min(Math.ceil(bytes / 2), 2 ** 30);
  libc.symbols.setsockopt(
    fd,
    SOL_SOCKET,
    SO_RCVBUF,
    new Int32Array([half]),
    4,
  );
  const granted = receiveBufferSize(libc, fd);
  return { asked: bytes, granted, capped: granted >= 0 && granted < bytes };
}

/**
 * What the kernel charges per datagram in a receive buffer besides its
 * payload: its `sk_buff` and shared info, with headers, rounded up.
 */
const DATAGRAM_OVERHEAD_BYTES = 1024;
/**
 * How long a run's replies must fit in the buffer while its reader is
 * away (a busy core, a garbage collection), in milliseconds.
 */
const HOLD_MS = 250;
/** The most replies a buffer is sized for, for a run without pacing. */
const MAX_HELD_DATAGRAMS = 65_536;

/**
 * The receive buffer a run needs, in bytes as the kernel counts them: the
 * replies {@linkcode HOLD_MS} of its rate bring in (per flow, each flow its
 * own socket), the window of a closed loop, or for a run without pacing
 * every probe up to {@linkcode MAX_HELD_DATAGRAMS}.
 */
export function receiveBufferNeed(run: {
  size: number;
  intervalMs: number;
  count: number;
  window?: number;
}): number {
  const datagrams = run.window !== undefined
    ? run.window
    : run.intervalMs > 0
    ? HOLD_MS / run.intervalMs
    : run.count;
  const held = Math.min(Math.ceil(datagrams), MAX_HELD_DATAGRAMS);
  return Math.max(held, 1) * (run.size + DATAGRAM_OVERHEAD_BYTES);
}
