/**
 * Waiting in tests for a state to be reached, instead of sleeping for a
 * while and hoping it was: a loaded machine makes any fixed sleep too short.
 *
 * @module
 */

/** How long {@linkcode waitUntil} waits before it fails, unless told. */
export const WAIT_LIMIT_MS = 60_000;

/**
 * Resolves once `check` holds, polling it every few milliseconds; rejects
 * naming `what` when it still does not after `limitMs`. The limit only
 * stops a broken run from hanging: it is far above any expected wait.
 */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  what: string,
  limitMs: number = WAIT_LIMIT_MS,
): Promise<void> {
  const end = performance.now() + limitMs;
  while (!await check()) {
    if (performance.now() > end) {
      throw new Error(`Cannot wait until ${what}: not after ${limitMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
