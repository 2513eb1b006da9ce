/**
 * The file descriptor limit and the connection cap of an HTTP endpoint
 * that fits under it. Deno raises the soft limit to the hard one at start,
 * but `ulimit -n 1024` sets both, and an endpoint whose connections use up
 * the limit leaves the process no descriptor for anything else.
 *
 * @module
 */

/** Connections an endpoint keeps open at once when the limit allows. */
export const MAX_HTTP_CONNECTIONS = 256;
/**
 * Descriptors kept for the process itself: the runtime's own, the echo
 * sockets, the batch engine's, and the sockets of running `/probe` scrapes.
 */
export const RESERVED_DESCRIPTORS = 128;
/** The fewest connections an endpoint takes, however low the limit. */
const MIN_HTTP_CONNECTIONS = 16;
/**
 * The connection cap under `limit` (unknown: the full cap): the limit less
 * {@linkcode RESERVED_DESCRIPTORS}, at most {@linkcode MAX_HTTP_CONNECTIONS}.
 */
export function connectionCap(limit: number | undefined): number {
  if (limit === undefined) return MAX_HTTP_CONNECTIONS;
  return Math.max(
    MIN_HTTP_CONNECTIONS,
    Math.min(MAX_HTTP_CONNECTIONS, limit - RESERVED_DESCRIPTORS),
  );
}

/**
 * The start-up line for a limit that is unknown or too low for the full
 * cap, naming the cap it gives and the limit that would be enough;
 * `undefined` when the limit is enough.
 */
export function fileLimitWarning(
  limit: number | undefined,
  what: string,
): string | undefined {
  const enough = MAX_HTTP_CONNECTIONS + RESERVED_DESCRIPTORS;
  const fix =
    `a limit of at least ${enough} (ulimit -n, or LimitNOFILE= in a systemd unit)`;
  if (limit === undefined) {
    return `the file descriptor limit is unknown (reading it needs --allow-ffi): ${what} takes up to ${MAX_HTTP_CONNECTIONS} connections at once, which needs ${fix}`;
  }
  if (limit >= enough) return undefined;
  return `the file descriptor limit is ${limit}: ${what} takes at most ${
    connectionCap(limit)
  } connections at once instead of ${MAX_HTTP_CONNECTIONS}; give it ${fix}`;
}
