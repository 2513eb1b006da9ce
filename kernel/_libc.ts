/**
 * The C library as the kernel engine calls it, for the echo engine and the
 * sender alike: the `Deno.dlopen` symbols, one shared handle per thread,
 * `errno` and its description, and the `Deno.errors` class an errno stands
 * for.
 *
 * @module
 */

export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = 0x80000;
export const SOL_SOCKET = 1;
export const SO_RCVTIMEO = 20;
export const SO_SNDTIMEO = 21;
export const SHUT_RDWR = 2;
export const MSG_WAITFORONE = 0x10000;
/** A firewall's refusal of a send, among others. */
export const EPERM = 1;
export const EINTR = 4;
export const EAGAIN = 11;
/**
 * What a send fails with once `shutdown(2)` has closed the socket for
 * writing; a UDP socket reports it for nothing else.
 */
export const EPIPE = 32;
/** `setsockopt` option: a `struct timespec` (CLOCK_REALTIME) cmsg per datagram. */
export const SO_TIMESTAMPNS = 35;
/** The cmsg type `SO_TIMESTAMPNS` delivers (the same number). */
export const SCM_TIMESTAMPNS = 35;
export const MSG_DONTWAIT = 0x40;
/** With `recvmmsg`: report a datagram's full length even when cut to the buffer. */
export const MSG_TRUNC = 0x20;
export const MSG_CTRUNC = 0x08;
export const CLOCK_REALTIME = 0;
export const CLOCK_MONOTONIC = 1;
export const POLLIN = 1;
export const POLLHUP = 0x10;
/** With `sendmsg`: route the message, then stop; nothing is sent. */
export const MSG_PROBE = 0x10;

/**
 * Throws a RangeError unless `size` is an integer from 1 to 1024: the
 * datagrams one `recvmmsg(2)` or `sendmmsg(2)` takes (`sendmmsg` stops at
 * `UIO_MAXIOV`, 1024).
 */
export function checkBatchSize(size: number): void {
  if (!Number.isInteger(size) || size < 1 || size > 1024) {
    throw new RangeError(
      `Cannot use batch size ${size}: expected an integer from 1 to 1024`,
    );
  }
}

/** The libc functions the engine calls, as `Deno.dlopen` wants them. */
export const LIBC_SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // The path socket (`path_socket.ts`): a connected socket, its options
  // read back, and one message at a time with its control data. The receive
  // buffer's size and drop count are read with getsockopt too
  // (`_socket_buffer.ts`).
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "buffer"],
    result: "i32",
  },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  setsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "u32"],
    result: "i32",
  },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  recvmmsg: {
    parameters: ["i32", "pointer", "u32", "i32", "pointer"],
    result: "i32",
  },
  sendmmsg: { parameters: ["i32", "pointer", "u32", "i32"], result: "i32" },
  // Only with MSG_PROBE, which sends nothing: a route check (`_transmit.ts`).
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  // ssize_t read as its low 32 bits: a datagram's length, or -1.
  sendto: {
    parameters: ["i32", "pointer", "usize", "i32", "pointer", "u32"],
    result: "i32",
  },
  clock_gettime: { parameters: ["i32", "pointer"], result: "i32" },
  ppoll: {
    parameters: ["pointer", "usize", "pointer", "pointer"],
    result: "i32",
  },
  getaddrinfo: {
    parameters: ["buffer", "pointer", "buffer", "buffer"],
    result: "i32",
  },
  freeaddrinfo: { parameters: ["pointer"], result: "void" },
  gai_strerror: { parameters: ["i32"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The opened C library with {@linkcode LIBC_SYMBOLS}. */
export type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>;

let libcCache: Libc | undefined;
let libcUsers = 0;

/**
 * Opens libc, shared by every user on this thread; each call needs a
 * matching {@linkcode releaseLibc} (the last one closes the library).
 */
export function openLibc(): Libc {
  libcCache ??= Deno.dlopen("libc.so.6", LIBC_SYMBOLS);
  // Finds this thread's errno now rather than right after a failed call.
  lastErrno(libcCache);
  libcUsers++;
  return libcCache;
}

/** Releases one {@linkcode openLibc}; closes the library after the last. */
export function releaseLibc(): void {
  if (--libcUsers === 0) {
    libcCache?.close();
    libcCache = undefined;
  }
}

// This thread's errno, found once: each Worker has a module of its own.
let errnoView: Deno.UnsafePointerView | null | undefined;

/**
 * Reads `errno` of the calling thread right after a failed call: a read
 * of memory, no FFI call, after the first, so as little as can runs
 * between the failed call and the read.
 */
export function lastErrno(libc: Libc): number {
  if (errnoView === undefined) {
    const location = libc.symbols.__errno_location();
    errnoView = location === null ? null : new Deno.UnsafePointerView(location);
  }
  return errnoView?.getInt32() ?? 0;
}

/**
 * `recvmmsg(2)` into `headers` (`vlen` of them) with `flags`: the count, or
 * -errno. A failure other than EINTR or EAGAIN is believed only when a
 * second, nonblocking try fails too (and if that one takes datagrams, it is
 * their count). `errno` is read after the call returns to JavaScript, and
 * V8 may run its own work on this thread in between: CI saw ENOENT, which
 * `recvmmsg` never returns, end a run. These sockets are neither connected
 * nor `IP_RECVERR`, so no ICMP error waits on them; the one pending error
 * left is a failure `recvmmsg` met after its first datagram, kept for the
 * next call, which returns it once: that one goes uncounted. Any other real
 * failure comes again, and a second receive takes nothing a first would
 * not have.
 *
 * @param libc The opened C library.
 * @param fd The socket.
 * @param headers The `struct mmsghdr` array.
 * @param vlen How many headers.
 * @param flags The `recvmmsg` flags of the first try.
 * @returns The count of datagrams received, or -errno.
 */
export function receiveMessages(
  libc: Libc,
  fd: number,
  headers: Deno.PointerObject,
  vlen: number,
  flags: number,
): number {
  const n = libc.symbols.recvmmsg(fd, headers, vlen, flags, null);
  if (n >= 0) return n;
  const errno = lastErrno(libc);
  if (errno === EINTR || errno === EAGAIN) return -errno;
  const again = libc.symbols.recvmmsg(
    fd,
    headers,
    vlen,
    flags | MSG_DONTWAIT,
    null,
  );
  return again >= 0 ? again : -lastErrno(libc);
}

/** Describes an errno value in lower case: "connection refused". */
export function describeErrno(libc: Libc, errno: number): string {
  const text = libc.symbols.strerror(errno);
  const message = text === null
    ? `errno ${errno}`
    : Deno.UnsafePointerView.getCString(text);
  return message[0]!.toLowerCase() + message.slice(1);
}

// Linux errno values, mapped as Deno maps the same errors of its own sockets.
const ERRNO_ERRORS: Record<number, new (message: string) => Error> = {
  1: Deno.errors.PermissionDenied, // EPERM
  2: Deno.errors.NotFound, // ENOENT
  4: Deno.errors.Interrupted, // EINTR
  9: Deno.errors.BadResource, // EBADF
  11: Deno.errors.WouldBlock, // EAGAIN
  13: Deno.errors.PermissionDenied, // EACCES
  17: Deno.errors.AlreadyExists, // EEXIST
  32: Deno.errors.BrokenPipe, // EPIPE
  95: Deno.errors.NotSupported, // EOPNOTSUPP
  98: Deno.errors.AddrInUse, // EADDRINUSE
  99: Deno.errors.AddrNotAvailable, // EADDRNOTAVAIL
  101: Deno.errors.NetworkUnreachable, // ENETUNREACH
  103: Deno.errors.ConnectionAborted, // ECONNABORTED
  104: Deno.errors.ConnectionReset, // ECONNRESET
  107: Deno.errors.NotConnected, // ENOTCONN
  110: Deno.errors.TimedOut, // ETIMEDOUT
  111: Deno.errors.ConnectionRefused, // ECONNREFUSED
};

/**
 * An error for `errno` with `message`: of the `Deno.errors` class the errno
 * stands for, else a plain `Error`. Needs no libc, so the main thread can
 * build it from what a Worker posted.
 */
export function errnoError(errno: number, message: string): Error {
  const ErrorClass = ERRNO_ERRORS[errno] ?? Error;
  return new ErrorClass(message);
}

/** The error of the call that just failed: "Cannot WHAT: reason". */
export function lastError(libc: Libc, what: string): Error {
  const errno = lastErrno(libc);
  return errnoError(errno, `Cannot ${what}: ${describeErrno(libc, errno)}`);
}
