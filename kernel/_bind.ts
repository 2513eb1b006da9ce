/**
 * Opening a UDP socket through libc, as `Deno.listenDatagram` would:
 * `getaddrinfo(3)`, then `socket`, `bind`, timeouts and `getsockname`. The
 * socket is a plain file descriptor a receive or send loop can use; it
 * reports each datagram's destination (`IP_PKTINFO`, and `IPV6_RECVPKTINFO`
 * as well on IPv6, see `_pktinfo.ts`).
 *
 * @module
 */

import type { AddressFamily } from "../net/address.ts";
import {
  describeErrno,
  lastErrno,
  lastError,
  type Libc,
  SO_RCVTIMEO,
  SO_SNDTIMEO,
  SO_TIMESTAMPNS,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOL_SOCKET,
} from "./_libc.ts";
import {
  AF_INET,
  AF_INET6,
  formatSockaddrHost,
  SOCKADDR_SIZE,
  sockaddrFamily,
  sockaddrPort,
} from "./_sockaddr.ts";
import {
  IP_PKTINFO,
  IP_RECVTOS,
  IP_RECVTTL,
  IPV6_RECVHOPLIMIT,
  IPV6_RECVPKTINFO,
  IPV6_RECVTCLASS,
  SOL_IP,
  SOL_IPV6,
} from "./_pktinfo.ts";

/**
 * How long a receive or send may block, in milliseconds: a loop that blocks
 * in the kernel gets to look at its stop flag at least this often.
 */
export const SOCKET_TIMEOUT_MS = 200;

/** A bound socket made through libc. */
export interface BoundSocket {
  /** The file descriptor. */
  fd: number;
  /** The address actually bound (port 0 resolved). */
  addr: Deno.NetAddr;
  /** The socket's family. */
  family: AddressFamily;
}

const AI_NUMERICSERV = 0x400;
const EAI_SYSTEM = -11;

/**
 * Resolves `hostname` with `getaddrinfo(3)`, as `Deno.listenDatagram` does,
 * and returns each candidate `sockaddr` in the resolver's order.
 */
export function resolveSockaddrs(
  libc: Libc,
  hostname: string,
  port: number,
): Uint8Array[] {
  const hints = new Int32Array(12); // struct addrinfo, 48 bytes, zeroed
  hints[0] = AI_NUMERICSERV;
  hints[2] = SOCK_DGRAM;
  const result = new BigUint64Array(1);
  const code = libc.symbols.getaddrinfo(
    new TextEncoder().encode(`${hostname}\0`),
    null,
    hints,
    result,
  );
  if (code !== 0) {
    const reason = code === EAI_SYSTEM
      ? describeErrno(libc, lastErrno(libc))
      : Deno.UnsafePointerView.getCString(libc.symbols.gai_strerror(code)!);
    throw new Deno.errors.NotFound(
      `Cannot resolve ${hostname}: ${reason[0]!.toLowerCase()}${
        reason.slice(1)
      }`,
    );
  }
  const head = Deno.UnsafePointer.create(result[0]!);
  const found: Uint8Array[] = [];
  try {
    for (let info = head; info !== null;) {
      const view = new Deno.UnsafePointerView(info);
      const family = view.getInt32(4);
      const length = view.getUint32(16);
      const addr = view.getPointer(24);
      if ((family === AF_INET || family === AF_INET6) && addr !== null) {
        const sockaddr = new Uint8Array(SOCKADDR_SIZE);
        new Deno.UnsafePointerView(addr).copyInto(
          sockaddr.subarray(0, Math.min(length, SOCKADDR_SIZE)),
        );
        sockaddr[2] = port >> 8;
        sockaddr[3] = port & 0xff;
        found.push(sockaddr.subarray(0, length));
      }
      info = view.getPointer(40);
    }
  } finally {
    libc.symbols.freeaddrinfo(head);
  }
  return found;
}

/** Options for {@linkcode bindSocket}. */
export interface BindOptions {
  /**
   * Also ask for each datagram's kernel receive time (`SO_TIMESTAMPNS`) and
   * the TTL or hop limit it arrived with (`IP_RECVTTL`, and
   * `IPV6_RECVHOPLIMIT` too on IPv6, whose sockets receive IPv4 as well)
   * and TOS or traffic class (`IP_RECVTOS`, `IPV6_RECVTCLASS`): what the
   * STAMP Session-Reflector writes. Off by default: the kernel then
   * stamps every datagram of the host.
   */
  receiveTimes?: boolean;
  /**
   * Ask for each datagram's destination (`IP_PKTINFO`, `IPV6_RECVPKTINFO`),
   * which a server replies from; default true. A sender, which only talks
   * to its target, leaves it off so no reply carries a message nobody reads.
   */
  destinations?: boolean;
  /**
   * Called with the new socket's descriptor right before its bind, to set
   * what must be set then (`_spoof_guard.ts`); what it throws fails the
   * bind.
   */
  beforeBind?: (fd: number) => void;
}

/**
 * Opens a UDP socket bound to `hostname` (an IP literal or a name, tried in
 * the resolver's order) and `port`, with send and receive timeouts of
 * `timeoutMs` so no system call blocks for long. Throws
 * `Deno.errors.AddrInUse` and friends, like `Deno.listenDatagram`.
 */
export function bindSocket(
  libc: Libc,
  hostname: string,
  port: number,
  timeoutMs: number = SOCKET_TIMEOUT_MS,
  options: BindOptions = {},
): BoundSocket {
  let failure: Error = new Deno.errors.NotFound(
    `Cannot resolve ${hostname}: no address found`,
  );
  for (const sockaddr of resolveSockaddrs(libc, hostname, port)) {
    const af = sockaddrFamily(sockaddr, 0);
    const fd = libc.symbols.socket(af, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw lastError(libc, "open a UDP socket");
    try {
      options.beforeBind?.(fd);
      if (libc.symbols.bind(fd, sockaddr, sockaddr.length) !== 0) {
        throw lastError(libc, "bind");
      }
      const timeval = new BigInt64Array([
        BigInt(Math.floor(timeoutMs / 1000)),
        BigInt((timeoutMs % 1000) * 1000),
      ]);
      for (const option of [SO_RCVTIMEO, SO_SNDTIMEO]) {
        if (
          libc.symbols.setsockopt(fd, SOL_SOCKET, option, timeval, 16) !== 0
        ) {
          throw lastError(libc, "set a socket timeout");
        }
      }
      // An IPv6 socket also receives IPv4 (mapped): ask for both messages.
      const on = new Int32Array([1]);
      const wanted = options.destinations === false
        ? []
        : af === AF_INET6
        ? [[SOL_IPV6, IPV6_RECVPKTINFO], [SOL_IP, IP_PKTINFO]]
        : [[SOL_IP, IP_PKTINFO]];
      if (options.receiveTimes) {
        wanted.push([SOL_SOCKET, SO_TIMESTAMPNS], [SOL_IP, IP_RECVTTL]);
        wanted.push([SOL_IP, IP_RECVTOS]);
        if (af === AF_INET6) wanted.push([SOL_IPV6, IPV6_RECVHOPLIMIT]);
        if (af === AF_INET6) wanted.push([SOL_IPV6, IPV6_RECVTCLASS]);
      }
      for (const [level, option] of wanted) {
        if (libc.symbols.setsockopt(fd, level!, option!, on, 4) !== 0) {
          throw lastError(libc, "ask for each datagram's destination");
        }
      }
      const bound = new Uint8Array(SOCKADDR_SIZE);
      const boundLength = new Uint32Array([SOCKADDR_SIZE]);
      if (libc.symbols.getsockname(fd, bound, boundLength) !== 0) {
        throw lastError(libc, "read the bound address");
      }
      return {
        fd,
        addr: {
          transport: "udp",
          hostname: formatSockaddrHost(bound, 0),
          port: sockaddrPort(bound, 0),
        },
        family: af === AF_INET6 ? "IPv6" : "IPv4",
      };
    } catch (error) {
      libc.symbols.close(fd);
      failure = error as Error;
    }
  }
  throw failure;
}
