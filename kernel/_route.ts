/**
 * The source address the routing table picks for a destination: a UDP
 * socket `connect(2)`ed to it (which sends nothing) reports through
 * `getsockname(2)` the local address the kernel chose, the one a socket
 * bound to a wildcard sends from. The STAMP Session-Sender compares it with
 * the source the reflector saw (the Location TLV) to tell whether a NAT
 * rewrote the path. Needs `--allow-ffi`; Linux `sockaddr` layouts.
 *
 * @module
 */

import { parseAddress, WORDS } from "../net/address.ts";
import {
  AF_INET,
  AF_INET6,
  formatSockaddrHost,
  SOCKADDR_SIZE,
} from "./_sockaddr.ts";

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0x80000;

/**
 * The address this host sends from to `target` (an IP literal without a
 * zone), as Deno formats addresses; throws an Error saying why it cannot
 * be learned (no route, a literal it cannot use).
 */
export function routeSource(
  target: { hostname: string; port: number },
): string {
  const family = parseAddress(target.hostname);
  if (family === 0 || target.hostname.includes("%")) {
    throw new Error(
      `Cannot ask the route to ${target.hostname}: not a plain IP address`,
    );
  }
  const sockaddr = new Uint8Array(SOCKADDR_SIZE);
  const view = new DataView(sockaddr.buffer);
  view.setUint16(0, family === 4 ? AF_INET : AF_INET6, true);
  view.setUint16(2, target.port);
  if (family === 4) view.setUint32(4, WORDS[0]!);
  else for (let k = 0; k < 4; k++) view.setUint32(8 + 4 * k, WORDS[k]!);
  const length = family === 4 ? 16 : 28;
  const libc = Deno.dlopen("libc.so.6", SYMBOLS);
  try {
    const fd = libc.symbols.socket(
      family === 4 ? AF_INET : AF_INET6,
      SOCK_DGRAM | SOCK_CLOEXEC,
      0,
    );
    if (fd < 0) throw new Error("Cannot ask the route: no socket");
    try {
      if (libc.symbols.connect(fd, sockaddr, length) !== 0) {
        throw new Error(`Cannot ask the route to ${target.hostname}: no route`);
      }
      const bound = new Uint8Array(SOCKADDR_SIZE);
      const boundLength = new Uint32Array([SOCKADDR_SIZE]);
      if (libc.symbols.getsockname(fd, bound, boundLength) !== 0) {
        throw new Error("Cannot ask the route: getsockname failed");
      }
      return formatSockaddrHost(bound, 0);
    } finally {
      libc.symbols.close(fd);
    }
  } finally {
    libc.close();
  }
}
