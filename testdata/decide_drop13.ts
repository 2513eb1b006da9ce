/**
 * A decide hook for the batch tests: drops datagrams of `options.size` bytes
 * with the reason "unlucky" and records what it saw of the last one.
 *
 * @module
 */

import type { DecideHook } from "../kernel/echo.ts";

/** Options of {@linkcode createDecideHook}. */
export interface DropOptions {
  /** Datagrams of exactly this size are dropped. */
  size: number;
}

/** Returns a hook that drops datagrams of one size. */
export function createDecideHook(
  options: DropOptions,
  local: Deno.NetAddr,
): DecideHook {
  return (facts) => {
    if (facts.size !== options.size) return undefined;
    if (
      local.port !== facts.localPort || facts.port === 0 ||
      facts.hostname === ""
    ) {
      return "facts missing";
    }
    return "unlucky";
  };
}
