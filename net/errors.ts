/**
 * One-line, lower-case descriptions of what went wrong on a socket, and the
 * check that this Deno can open a UDP socket at all.
 *
 * @example
 * ```ts
 * import { errorMessage } from "./errors.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(errorMessage(new Error("Cannot bind: busy")), "cannot bind: busy");
 * ```
 *
 * @module
 */

const DENO_ERROR_REASONS: Record<string, string> = {
  AddrInUse: "address already in use",
  AddrNotAvailable: "address not available",
  PermissionDenied: "permission denied",
  ConnectionRefused: "connection refused",
  ConnectionReset: "connection reset",
  NetworkUnreachable: "network unreachable",
  BadResource: "socket closed",
  Interrupted: "interrupted",
};

/**
 * Returns a one-line, lower-case description of an error: the reason for a
 * Deno socket error ("address already in use"), else the message.
 */
export function errorMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const reason = DENO_ERROR_REASONS[error.name];
  if (reason !== undefined) return reason;
  const message = error.message.split("\n")[0]!
    .replace(/ \(os error \d+\)$/, "");
  // Keep acronyms such as "IPv4" intact; lower only a capitalised word.
  return /^[A-Z][a-z]/.test(message)
    ? message[0]!.toLowerCase() + message.slice(1)
    : message;
}

/**
 * Throws a `TypeError` when Deno runs without UDP support, which needs the
 * `--unstable-net` flag (or `"unstable": ["net"]` in `deno.json`).
 */
export function checkUnstableNet(): void {
  if (typeof Deno.listenDatagram !== "function") {
    throw new TypeError(
      "Cannot open a UDP socket: Deno.listenDatagram needs the --unstable-net flag",
    );
  }
}

/**
 * The OS's reason for a failed socket call, in lower case and without Deno's
 * `(os error N)`: `operation not permitted` for EPERM, which Deno names
 * `PermissionDenied` although no Deno permission is involved.
 */
export function osErrorReason(error: unknown): string {
  if (error instanceof Error && / \(os error \d+\)$/.test(error.message)) {
    const message = error.message.replace(/ \(os error \d+\)$/, "");
    return message[0]!.toLowerCase() + message.slice(1);
  }
  return errorMessage(error);
}
