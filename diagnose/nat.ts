/**
 * The nat check of `client.ts --diagnose`: a stand-in until the check is
 * built. It reports itself skipped, and why.
 *
 * @module
 */

import type { Check } from "./types.ts";

/**
 * The nat check: not built yet, so always skipped.
 *
 * @param _context What every check is given.
 * @returns A skipped result saying why.
 * @example
 * ```ts
 * import { checkNat } from "./nat.ts";
 * const result = await checkNat({} as never);
 * console.log(result.status); // "skipped"
 * ```
 */
export const checkNat: Check = (_context) =>
  Promise.resolve({
    check: "nat",
    status: "skipped",
    reason: "not built yet",
    findings: [],
    data: {},
  });
