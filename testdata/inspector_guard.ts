/**
 * A fixture of cli/signals_test.ts: keeps the inspector closed, then sets
 * SIGUSR1 back to its default as another piece of code could, and prints
 * one line per state the test waits for: `guard: ignored`, `reset`, and
 * `ignored again` once the guard's timer has set it back. Needs
 * `--allow-ffi`.
 *
 * @module
 */

import { keepInspectorClosed } from "../cli/signals.ts";
import {
  getDisposition,
  openProcessLibc,
  SIG_DFL,
  SIG_IGN,
} from "../cli/_process_libc.ts";

const SIGUSR1 = 10;
const warnings: string[] = [];
console.log(
  `guard: ${keepInspectorClosed({ onWarning: (text) => warnings.push(text) })}`,
);
const libc = openProcessLibc()!;
const reset = new BigUint64Array(32);
reset[0] = SIG_DFL;
libc.symbols.sigaction(SIGUSR1, reset, null);
console.log(`reset: ${getDisposition(libc, SIGUSR1) === SIG_DFL}`);
// Held by a timer of its own: the guard's is unref'd.
const timer = setInterval(() => {
  if (getDisposition(libc, SIGUSR1) !== SIG_IGN) return;
  clearInterval(timer);
  console.log(`ignored again: ${warnings.join("; ")}`);
  libc.close();
}, 10);
