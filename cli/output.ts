/**
 * Writing to the terminal: the one-line `error:` form, coloured only on a
 * terminal and never with `NO_COLOR`.
 *
 * @module
 */

import { errorMessage } from "../net/errors.ts";

/** Whether colour may be written to standard error. */
function stderrHasColor(): boolean {
  return !Deno.noColor && Deno.stderr.isTerminal();
}

/** Prints `error: <message>` as one line on standard error. */
export function printError(error: unknown): void {
  const prefix = stderrHasColor() ? "\x1b[1;31merror\x1b[0m:" : "error:";
  console.error(`${prefix} ${errorMessage(error)}`);
}
