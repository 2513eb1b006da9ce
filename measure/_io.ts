/**
 * `--io` of a measurement: which I/O carries the probes and why, decided
 * once before the first probe (see `io/choice.ts` for the permissions the
 * kernel engine needs).
 *
 * @module
 */

import { UsageError } from "../cli/flags.ts";
import { chooseIoBackend, type IoKind } from "../io/choice.ts";

/** What `--io` accepts, the default first. */
export const IO_MODES = ["auto", "socket", "batch"] as const;
/** A value of `--io`. */
export type IoMode = (typeof IO_MODES)[number];
/** The reason the start-up line gives for the kernel engine. */
const BATCH_REASON = "sendmmsg/recvmmsg with kernel timestamps";

/** The I/O a measurement runs on and why, as the `io:` line says. */
export interface MeasureIo {
  /** `batch` (the kernel engine) or `socket`. */
  backend: IoKind;
  /** Why, in a few words. */
  reason: string;
}

/** Reads `--io`; throws a UsageError for anything but {@linkcode IO_MODES}. */
export function parseIoFlag(value: string | undefined): IoMode {
  const io = value ?? "auto";
  if (!(IO_MODES as readonly string[]).includes(io)) {
    throw new UsageError(
      `Cannot use --io "${io}": expected ${IO_MODES.join(", ")}`,
    );
  }
  return io as IoMode;
}

/**
 * The I/O `mode` stands for in this run, asking the permissions without
 * prompting; STAMP probes (`stamp`) run on either. Throws a UsageError when
 * `batch` is asked for and cannot run (a sweep runs on sockets and says so
 * in its own start-up line).
 */
export function chooseMeasureIo(
  mode: IoMode,
  options: { stamp: boolean; sweep: boolean },
): MeasureIo {
  if (mode === "batch" && !options.sweep) {
    const possible = chooseIoBackend("auto", BATCH_REASON);
    if (possible.io === "socket") {
      throw new UsageError(`Cannot use --io batch: ${possible.reason}`);
    }
  }
  const choice = chooseIoBackend(mode, BATCH_REASON);
  return { backend: choice.io, reason: choice.reason };
}
