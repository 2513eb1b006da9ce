/**
 * `--io` of a measurement: which I/O carries the probes and why, decided
 * once before the first probe (see `io/choice.ts` for the permissions the
 * kernel engine needs).
 *
 * @module
 */

import { parseChoice, UsageError } from "../cli/flags.ts";
import { chooseIoBackend, type IoKind } from "../kernel/choice.ts";

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
  return parseChoice(value ?? "auto", "--io", IO_MODES);
}

/**
 * The I/O `mode` stands for in this run, asking the permissions without
 * prompting; STAMP probes (`stamp`) run on either. Throws a UsageError when
 * `batch` is asked for and cannot run, or for a sweep, which runs on sockets.
 */
export function chooseMeasureIo(
  mode: IoMode,
  options: { stamp: boolean; sweep: boolean },
): MeasureIo {
  if (mode === "batch" && options.sweep) {
    throw new UsageError(
      "Cannot use --io batch with --sweep: the sweep runs on sockets",
    );
  }
  if (mode === "batch") {
    const possible = chooseIoBackend("auto", BATCH_REASON);
    if (possible.io === "socket") {
      throw new UsageError(`Cannot use --io batch: ${possible.reason}`);
    }
  }
  const choice = chooseIoBackend(mode, BATCH_REASON);
  return { backend: choice.io, reason: choice.reason };
}
