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
/** RLIMIT_NOFILE on Linux (every architecture Deno runs on). */
const RLIMIT_NOFILE = 7;

/**
 * The soft limit on open file descriptors, read with `getrlimit` through
 * FFI; `undefined` when FFI is not granted (never prompts), off Linux, or
 * when the call fails. An unlimited one is `Infinity`.
 */
export function readFileLimit(): number | undefined {
  if (Deno.build.os !== "linux") return undefined;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
      return undefined;
    }
    const libc = Deno.dlopen("libc.so.6", {
      getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
    });
    try {
      const limits = new BigUint64Array(2); // rlim_cur, rlim_max
      if (libc.symbols.getrlimit(RLIMIT_NOFILE, limits) !== 0) return undefined;
      const soft = limits[0]!;
      return soft > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(soft);
    } finally {
      libc.close();
    }
  } catch {
    return undefined;
  }
}

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
