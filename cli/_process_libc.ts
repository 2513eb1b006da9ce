/**
 * The few C library calls the scripts make about their own process, through
 * FFI: the file descriptor limit (`getrlimit`) and a signal's disposition
 * (`sigaction`). Linux only (glibc's `libc.so.6`), and only where
 * `--allow-ffi` is granted: {@linkcode openProcessLibc} never prompts.
 *
 * @module
 */

/** RLIMIT_NOFILE on Linux (every architecture Deno runs on). */
const RLIMIT_NOFILE = 7;

/** `SIG_DFL` and `SIG_IGN`, the dispositions that are not a handler. */
export const SIG_DFL = 0n;
/** The disposition that discards a signal. */
export const SIG_IGN = 1n;

/**
 * Bytes of glibc's `struct sigaction` and more: the handler comes first on
 * x86_64 and aarch64 alike, then the mask, the flags and the restorer, which
 * stay zero in what is installed.
 */
const SIGACTION_BYTES = 256;

const SYMBOLS = {
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  sigaction: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The opened C library, with what this module calls in it. */
export type ProcessLibc = Deno.DynamicLibrary<typeof SYMBOLS>;

/**
 * Opens libc for the calls here; `undefined` off Linux, without
 * `--allow-ffi` (never prompts), or when it cannot be opened. The caller
 * closes it.
 */
export function openProcessLibc(): ProcessLibc | undefined {
  if (Deno.build.os !== "linux") return undefined;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
      return undefined;
    }
    return Deno.dlopen("libc.so.6", SYMBOLS);
  } catch {
    return undefined;
  }
}

/**
 * The soft limit on open file descriptors; `undefined` when the call fails.
 * An unlimited one is `Infinity`.
 */
export function getFileLimit(libc: ProcessLibc): number | undefined {
  const limits = new BigUint64Array(2); // rlim_cur, rlim_max
  if (libc.symbols.getrlimit(RLIMIT_NOFILE, limits) !== 0) return undefined;
  const soft = limits[0]!;
  return soft > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(soft);
}

/**
 * The disposition of `signal` (its number): {@linkcode SIG_DFL},
 * {@linkcode SIG_IGN} or a handler's address; `undefined` when the call
 * fails.
 */
export function getDisposition(
  libc: ProcessLibc,
  signal: number,
): bigint | undefined {
  const old = new BigUint64Array(SIGACTION_BYTES / 8);
  if (libc.symbols.sigaction(signal, null, old) !== 0) return undefined;
  return old[0]!;
}

/** Sets the disposition of `signal` to {@linkcode SIG_IGN}; false when the call fails. */
export function ignoreSignal(libc: ProcessLibc, signal: number): boolean {
  const action = new BigUint64Array(SIGACTION_BYTES / 8);
  action[0] = SIG_IGN;
  return libc.symbols.sigaction(signal, action, null) === 0;
}
