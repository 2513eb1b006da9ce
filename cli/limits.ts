/**
 * The file descriptor limit a script starts under. Below a few dozen
 * descriptors the runtime itself fails where no program can catch it: Deno
 * panics when it sets up signal handling or a Worker's standard streams,
 * or reports a module it cannot open as an invalid package. So the server
 * and the client's long-running modes read the limit first, where
 * `--allow-ffi` lets them, and refuse a low one with one `error:` line.
 *
 * @module
 */

import { getFileLimit, openProcessLibc } from "./_process_libc.ts";

/**
 * The fewest file descriptors a script starts with, with room over what the
 * heaviest start (the batch engine with the metrics endpoint and one
 * scrape) was seen to need; docs/security.md gives the figures.
 */
export const MIN_FILE_LIMIT = 64;

/**
 * The soft limit on open file descriptors, read with `getrlimit` through
 * FFI; `undefined` when FFI is not granted (never prompts), off Linux, or
 * when the call fails. An unlimited one is `Infinity`.
 */
export function readFileLimit(): number | undefined {
  const libc = openProcessLibc();
  if (libc === undefined) return undefined;
  try {
    return getFileLimit(libc);
  } finally {
    libc.close();
  }
}

/**
 * Throws an `Error` ("Cannot start: …") when `limit` is known and below
 * {@linkcode MIN_FILE_LIMIT}; an unknown limit passes.
 *
 * @param limit The soft limit, as {@linkcode readFileLimit} gives it.
 * @param what What would start, for the message: "the server".
 * @throws {Error} When the limit is too low to start.
 */
export function checkFileLimit(limit: number | undefined, what: string): void {
  if (limit === undefined || limit >= MIN_FILE_LIMIT) return;
  throw new Error(
    `Cannot start: the file descriptor limit is ${limit}, under the ${MIN_FILE_LIMIT} ${what} needs; raise it (ulimit -n ${MIN_FILE_LIMIT}, or LimitNOFILE= in a systemd unit)`,
  );
}
