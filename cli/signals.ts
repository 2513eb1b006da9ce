/**
 * The signals of the scripts as programs: the ones that stop a run (each
 * script prints what it has before it exits), and SIGUSR1, which Deno
 * (2.9.2 and later) answers by opening the V8 inspector on 127.0.0.1:9229
 * for anyone on the host to run code as the server's user, even when the
 * program listens to the signal itself.
 *
 * {@linkcode keepInspectorClosed} sets SIGUSR1 to be ignored, where FFI is
 * granted. The order is what makes it hold: Deno installs its inspector's
 * handler a moment after start, through the same signal registry as
 * `Deno.addSignalListener`, and that registry calls `sigaction` only for
 * the first listener of a signal. So a listener of our own is added
 * first (if the runtime's came earlier, nothing changes), then the
 * disposition is set to `SIG_IGN`, which no later listener replaces,
 * however late it comes. A timer checks that it still holds.
 *
 * @module
 */

import {
  getDisposition,
  ignoreSignal,
  openProcessLibc,
  SIG_DFL,
  SIG_IGN,
} from "./_process_libc.ts";

/**
 * The signals that stop the server, the monitor or a measurement: SIGINT
 * (Ctrl-C), SIGTERM and SIGHUP (a closed terminal, or a service manager's
 * reload), on Windows SIGINT and SIGBREAK.
 */
export const STOP_SIGNALS: readonly Deno.Signal[] = Deno.build.os === "windows"
  ? ["SIGINT", "SIGBREAK"]
  : ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * Calls `stop` on each of the {@linkcode STOP_SIGNALS}; returns a function
 * that removes the listeners.
 *
 * @param stop Called on each stop signal.
 * @returns A function that stops listening.
 */
export function onStopSignals(stop: () => void): () => void {
  for (const signal of STOP_SIGNALS) Deno.addSignalListener(signal, stop);
  return () => {
    for (const signal of STOP_SIGNALS) Deno.removeSignalListener(signal, stop);
  };
}

/**
 * Keeps SIGUSR2, which asks the server for a stats line, from ending a
 * measurement or the monitor: its default action kills a process without a
 * word, and a script that signals every udp-echo process alike must not
 * lose a run's result.
 *
 * @returns A function that stops listening.
 */
export function survivePeerStatsSignal(): () => void {
  if (Deno.build.os === "windows") return () => {};
  const ignore = () => {};
  Deno.addSignalListener("SIGUSR2", ignore);
  return () => Deno.removeSignalListener("SIGUSR2", ignore);
}

/** SIGUSR1 on Linux (x86_64 and aarch64). */
const SIGUSR1 = 10;
/** How often the guard checks that SIGUSR1 is still ignored, in ms. */
const CHECK_MS = 500;

/** How {@linkcode keepInspectorClosed} left SIGUSR1. */
export type InspectorGuard =
  /** Ignored: the inspector cannot be opened by a signal. */
  | "ignored"
  /** Left as it was: no FFI, not Linux, or a call failed (a warning said so). */
  | "unguarded";

/** Options for {@linkcode keepInspectorClosed}. */
export interface InspectorGuardOptions {
  /** Told each thing the guard could not do, or had to undo. */
  onWarning: (text: string) => void;
}

const noop = () => {};

/**
 * Keeps the V8 inspector from opening on SIGUSR1 for the life of the
 * process, where `--allow-ffi` is granted on Linux (elsewhere it does
 * nothing): SIGUSR1 is ignored, which is checked at once and then on an
 * unref'd timer (a disposition found changed is set back, with a warning).
 * When the runtime's own handler was in place before this ran, a SIGUSR1
 * may have opened the inspector already: it is closed, with a warning.
 *
 * @param options Where warnings go.
 * @returns Whether SIGUSR1 is now ignored.
 */
export function keepInspectorClosed(
  options: InspectorGuardOptions,
): InspectorGuard {
  const libc = openProcessLibc();
  if (libc === undefined) return "unguarded";
  const before = getDisposition(libc, SIGUSR1);
  try {
    // Makes the runtime's signal registry install its handler now, so that
    // its later listener, the inspector's, leaves the disposition alone.
    Deno.addSignalListener("SIGUSR1", noop);
  } catch {
    // Ignoring the signal still holds until another listener is added.
  }
  if (
    !ignoreSignal(libc, SIGUSR1) || getDisposition(libc, SIGUSR1) !== SIG_IGN
  ) {
    libc.close();
    options.onWarning(
      "cannot set SIGUSR1 to be ignored: a SIGUSR1 would open the V8 inspector on 127.0.0.1:9229",
    );
    return "unguarded";
  }
  if (before !== SIG_DFL && before !== SIG_IGN) {
    closeOpenInspector(options.onWarning).catch(noop);
  }
  let warned = false;
  const timer = setInterval(() => {
    if (getDisposition(libc, SIGUSR1) === SIG_IGN) return;
    ignoreSignal(libc, SIGUSR1);
    if (!warned) {
      warned = true;
      options.onWarning(
        "SIGUSR1 was set to be handled again, which would open the V8 inspector: it is ignored again",
      );
    }
  }, CHECK_MS);
  Deno.unrefTimer(timer);
  return "ignored";
}

/** Closes the inspector if a SIGUSR1 opened it before the guard was in place. */
async function closeOpenInspector(
  onWarning: (text: string) => void,
): Promise<void> {
  const inspector = await import("node:inspector");
  const url = inspector.url();
  if (url === undefined) return;
  inspector.close();
  onWarning(
    `closed the V8 inspector at ${url}, open before SIGUSR1 was set to be ignored`,
  );
}
