/**
 * The kernel engine of a measuring sender (Linux): sockets opened through
 * libc with `SO_TIMESTAMPNS`, so each received datagram carries the
 * kernel's CLOCK_REALTIME arrival time, and a {@linkcode Sender} that
 * stamps each send with `clock_gettime(2)` right before `sendto(2)` or
 * `sendmmsg(2)` (a batch shares the call's stamp), waits
 * with `ppoll(2)` to the nanosecond and receives with `recvmmsg(2)`. The
 * probe loop that uses it runs in a Worker (`_probe_worker.ts`), next to
 * the system calls, so neither timers nor the main event loop land in a
 * round trip. Memory safety is by construction (see `_sender_engine.ts`).
 *
 * The sockets are opened and closed on the thread that owns them
 * ({@linkcode openSenderSockets}); the {@linkcode Sender} on the Worker's
 * thread only uses their descriptors, and the owner closes them only after
 * the Worker's last call has returned.
 *
 * @module
 */

import {
  formatAddress,
  type HostPort,
  type ResolvedAddress,
  selfAddress,
} from "../net/address.ts";
import { errorMessage } from "../net/errors.ts";
import { bindSocket, resolveSockaddrs } from "./_bind.ts";
import {
  lastError,
  type Libc,
  openLibc,
  releaseLibc,
  SO_TIMESTAMPNS,
  SOL_SOCKET,
} from "./_libc.ts";
import { SenderEngine, type SenderEngineOptions } from "./_sender_engine.ts";
import { sockaddrFamily } from "./_sockaddr.ts";
import { batchGap, checkNetPermission } from "./choice.ts";

export { SenderEngine, type SenderEngineOptions } from "./_sender_engine.ts";

/** Options for {@linkcode openSenderSockets}. */
export interface SenderSocketOptions {
  /** The echo server. */
  target: ResolvedAddress;
  /** Local address; defaults to the wildcard of the target's family, port 0. */
  bind?: HostPort;
  /** How many sockets (flows), each from its own port. */
  count: number;
}

/** Sockets a {@linkcode Sender} may use, owned by the thread that opened them. */
export interface SenderSockets {
  /** The descriptors, one per flow. */
  fds: number[];
  /** The local address of each. */
  locals: HostPort[];
  /** The target as a `sockaddr`, for {@linkcode SenderEngineOptions.target}. */
  target: Uint8Array;
  /**
   * Each socket's own address as a `sockaddr` (a wildcard made loopback),
   * where it sends itself a datagram to warm up; empty when it has none.
   */
  selves: Uint8Array[];
  /**
   * Shuts down and closes every socket once; call it only after the last
   * {@linkcode Sender} call on them has returned.
   */
  close(): void;
}

/**
 * Opens `count` UDP sockets with kernel receive timestamps for sending
 * probes to `target`. Throws a `TypeError` off Linux or without
 * `--allow-ffi`, `Deno.errors.NotCapable` without net access to the target
 * or the local address, and `Cannot bind ADDR: reason` (a `Deno.errors`
 * class) as `Deno.listenDatagram` would.
 */
export function openSenderSockets(options: SenderSocketOptions): SenderSockets {
  const gap = batchGap();
  if (gap === "linux" || gap === "ffi") {
    throw new TypeError(
      `Cannot use --io batch: it needs ${
        gap === "linux" ? "Linux" : "--allow-ffi"
      }`,
    );
  }
  const { target, bind } = options;
  checkNetPermission(target.hostname, target.port);
  const hostname = bind?.hostname ??
    (target.family === "IPv6" ? "::" : "0.0.0.0");
  const port = bind?.port ?? 0;
  checkNetPermission(hostname, port);
  const libc = openLibc();
  const fds: number[] = [];
  const locals: HostPort[] = [];
  const selves: Uint8Array[] = [];
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    for (const fd of fds) libc.symbols.close(fd);
    releaseLibc();
  };
  try {
    const family = target.family === "IPv6" ? 10 : 2;
    const sockaddr = resolveSockaddrs(libc, target.hostname, target.port)
      .find((candidate) => sockaddrFamily(candidate, 0) === family);
    if (sockaddr === undefined) {
      throw new Deno.errors.NotFound(
        `Cannot resolve ${target.hostname}: no ${target.family} address`,
      );
    }
    const on = new Int32Array([1]);
    for (let i = 0; i < options.count; i++) {
      let socket;
      try {
        socket = bindSocket(libc, hostname, port, undefined, {
          destinations: false,
        });
      } catch (error) {
        throw new Error(
          `Cannot bind ${formatAddress({ hostname, port })}: ${
            errorMessage(error)
          }`,
          { cause: error },
        );
      }
      fds.push(socket.fd);
      locals.push({ hostname: socket.addr.hostname, port: socket.addr.port });
      selves.push(selfSockaddr(libc, socket.addr, family));
      if (
        libc.symbols.setsockopt(
          socket.fd,
          SOL_SOCKET,
          SO_TIMESTAMPNS,
          on,
          4,
        ) !==
          0
      ) throw lastError(libc, "ask for receive timestamps");
    }
    return { fds, locals, target: sockaddr, selves, close };
  } catch (error) {
    close();
    throw error;
  }
}

/** Where a socket bound to `addr` reaches itself; empty when it cannot. */
function selfSockaddr(libc: Libc, addr: HostPort, family: number): Uint8Array {
  const hostname = selfAddress(addr.hostname, family === 10 ? "IPv6" : "IPv4");
  try {
    return resolveSockaddrs(libc, hostname, addr.port)
      .find((candidate) => sockaddrFamily(candidate, 0) === family) ??
      new Uint8Array(0);
  } catch {
    return new Uint8Array(0);
  }
}

/** A {@linkcode SenderEngine} and the C library it opened for itself. */
export interface Sender {
  /** The system calls, on the thread that called {@linkcode openSender}. */
  engine: SenderEngine;
  /** Releases the C library once; never closes the sockets. */
  release(): void;
}

/**
 * Opens the C library on the calling thread (a Worker) and lays out the
 * one buffer of a {@linkcode SenderEngine} on sockets of
 * {@linkcode openSenderSockets}; throws RangeError on bad sizes.
 */
export function openSender(options: SenderEngineOptions): Sender {
  const libc = openLibc();
  let engine: SenderEngine;
  try {
    engine = new SenderEngine(libc, options);
  } catch (error) {
    releaseLibc();
    throw error;
  }
  let released = false;
  return {
    engine,
    release: () => {
      if (released) return;
      released = true;
      releaseLibc();
    },
  };
}
