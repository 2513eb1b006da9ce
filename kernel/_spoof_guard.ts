/**
 * Setting aside datagrams forged from this host's own addresses, for the
 * echo engine (`_echo_engine.ts`): the `spoofed-local` drop.
 *
 * A datagram whose source is one of this host's addresses but which
 * arrived on an interface other than loopback was forged: everything this
 * host sends to itself comes in on `lo`. Echoing it would answer a service
 * of this host, and two echo servers on one host would then answer each
 * other (IPv4 drops such a "martian" itself; IPv6 delivers it).
 *
 * The kernel's `IP_PKTINFO` and `IPV6_PKTINFO` cannot tell the two apart:
 * for a datagram this host sends to itself they name the interface that
 * holds the destination address, not `lo` (Linux, checked in a network
 * namespace: one to fd99::1 on a veth, from the same host or forged from
 * outside, both say the veth). So the kernel decides, where it still knows
 * the device a datagram came in on. The socket is bound with
 * `SO_REUSEPORT` and a classic BPF program attached before the bind
 * (`SO_ATTACH_REUSEPORT_CBPF`), and a second socket, the sink, joins it on
 * the same address and port. For each datagram the program picks the socket
 * that gets it: the sink when the device is not loopback (`SKF_AD_IFINDEX`;
 * Linux gives `lo` index 1 in every namespace) and the source (read from
 * the IP header) is one of the addresses the program was built with, the
 * socket itself otherwise. The echo loop never sees those datagrams; the
 * Worker reads the sink now and then (`_spoof_sink.ts`) and counts each as
 * received and dropped. A broadcast or multicast datagram
 * reaches both sockets: the sink's copy is left uncounted (the socket's
 * counts it, as `not-unicast`).
 *
 * What this costs or changes: a few instructions per datagram in the
 * kernel and a second descriptor per socket. A socket with a program
 * attached before its bind joins no group, so the bind fails where a plain
 * one would; but another socket of the same user that asks for
 * `SO_REUSEPORT` can still join the group later, and then receives
 * nothing. Addresses are this host's at start, refreshed while it runs
 * (`echo.ts`); a program holds at most {@linkcode MAX_GUARDED_ADDRESSES} of
 * each family.
 *
 * @module
 */

import { isLoopback } from "../policy/policy.ts";
import { parseAddress, WORDS } from "../net/address.ts";
import type { BoundSocket } from "./_bind.ts";
import {
  lastError,
  type Libc,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOL_SOCKET,
} from "./_libc.ts";
import { AF_INET6, SOCKADDR_SIZE, sockaddrFamily } from "./_sockaddr.ts";
import { IP_PKTINFO, IPV6_RECVPKTINFO, SOL_IP, SOL_IPV6 } from "./_pktinfo.ts";

export const SO_REUSEPORT = 15;
export const SO_ATTACH_REUSEPORT_CBPF = 51;

/** The most addresses of each family one program checks. */
export const MAX_GUARDED_ADDRESSES = 64;

// Classic BPF (linux/filter.h): `struct sock_filter` is a 16-bit code,
// two 8-bit jump offsets and a 32-bit constant.
const LD_W_ABS = 0x20;
const JMP_JA = 0x05;
const JMP_JEQ_K = 0x15;
const RET_K = 0x06;
const SKF_AD_OFF = -0x1000;
const SKF_AD_PROTOCOL = 0;
const SKF_AD_IFINDEX = 8;
const SKF_NET_OFF = -0x100000;
const LOOPBACK_IFINDEX = 1;
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const KEEP = 0;
const SET_ASIDE = 1;

/**
 * The addresses a datagram from outside may not claim: this host's
 * interface addresses but loopback ones (which the kernel refuses from any
 * other interface itself), without a zone, each once, at most
 * {@linkcode MAX_GUARDED_ADDRESSES} of each family.
 */
export function hostAddresses(
  interfaces: readonly Deno.NetworkInterfaceInfo[],
): string[] {
  const found = { IPv4: new Set<string>(), IPv6: new Set<string>() };
  for (const { family, address } of interfaces) {
    const plain = address.split("%")[0]!;
    if (isLoopback(plain) || found[family].size >= MAX_GUARDED_ADDRESSES) {
      continue;
    }
    found[family].add(plain);
  }
  return [...found.IPv4, ...found.IPv6];
}

/**
 * The reuseport program for `addresses` (IP literals), as an array of
 * `struct sock_filter`: index 1 (the sink) for a datagram from one of them
 * that came in on a device other than loopback, index 0 for every other.
 * An IPv4 source is also matched in its IPv4-mapped IPv6 form.
 */
export function spoofProgram(addresses: readonly string[]): Uint8Array {
  const v4: number[] = [];
  const v6: number[][] = [];
  for (const address of addresses) {
    const family = parseAddress(address);
    if (family === 4) v4.push(WORDS[0]!);
    else if (family === 6) v6.push([...WORDS]);
  }
  const code: [number, number, number, number][] = [];
  const op = (c: number, k: number, jt = 0, jf = 0) =>
    code.push([c, jt, jf, k]);
  const ret = (k: number) => op(RET_K, k);
  op(LD_W_ABS, SKF_AD_OFF + SKF_AD_IFINDEX);
  op(JMP_JEQ_K, LOOPBACK_IFINDEX, 0, 1);
  ret(KEEP);
  op(LD_W_ABS, SKF_AD_OFF + SKF_AD_PROTOCOL);
  // Jumps go forward only and conditional ones 255 instructions at most:
  // each test jumps over one unconditional jump to its section.
  op(JMP_JEQ_K, ETH_P_IPV6, 0, 1);
  const toV6 = code.length;
  op(JMP_JA, 0);
  op(JMP_JEQ_K, ETH_P_IP, 0, 1);
  const toV4 = code.length;
  op(JMP_JA, 0);
  ret(KEEP);
  // IPv6: an IPv4-mapped source goes to the IPv4 list with its last word.
  const v6Start = code.length;
  code[toV6]![3] = v6Start - toV6 - 1;
  op(LD_W_ABS, SKF_NET_OFF + 8);
  op(JMP_JEQ_K, 0, 0, 6);
  op(LD_W_ABS, SKF_NET_OFF + 12);
  op(JMP_JEQ_K, 0, 0, 4);
  op(LD_W_ABS, SKF_NET_OFF + 16);
  op(JMP_JEQ_K, 0xffff, 0, 2);
  op(LD_W_ABS, SKF_NET_OFF + 20);
  const mappedToV4 = code.length;
  op(JMP_JA, 0);
  const toV6List = code.length;
  op(JMP_JA, 0);
  // IPv4: the source, then one test per address.
  code[toV4]![3] = code.length - toV4 - 1;
  op(LD_W_ABS, SKF_NET_OFF + 12);
  code[mappedToV4]![3] = code.length - mappedToV4 - 1;
  for (const address of v4) {
    op(JMP_JEQ_K, address, 0, 1);
    ret(SET_ASIDE);
  }
  ret(KEEP);
  code[toV6List]![3] = code.length - toV6List - 1;
  for (const words of v6) {
    for (let k = 0; k < 4; k++) {
      op(LD_W_ABS, SKF_NET_OFF + 8 + 4 * k);
      op(JMP_JEQ_K, words[k]!, 0, 7 - 2 * k);
    }
    ret(SET_ASIDE);
  }
  ret(KEEP);
  const bytes = new Uint8Array(code.length * 8);
  const view = new DataView(bytes.buffer);
  code.forEach(([c, jt, jf, k], i) => {
    view.setUint16(i * 8, c, true);
    view.setUint8(i * 8 + 2, jt);
    view.setUint8(i * 8 + 3, jf);
    view.setUint32(i * 8 + 4, k >>> 0, true);
  });
  return bytes;
}

/** Turns socket option `option` of `level` on. */
function setInt(libc: Libc, fd: number, level: number, option: number) {
  return libc.symbols.setsockopt(fd, level, option, new Int32Array([1]), 4);
}

/**
 * Attaches `program` ({@linkcode spoofProgram}) to socket `fd`'s reuseport
 * group, replacing the one before; before the bind it also asks for
 * `SO_REUSEPORT`. Throws `Cannot guard against forged local sources:
 * reason`.
 */
export function attachSpoofProgram(
  libc: Libc,
  fd: number,
  program: Uint8Array,
  options: { beforeBind?: boolean } = {},
): void {
  const what = "guard against forged local sources";
  if (options.beforeBind && setInt(libc, fd, SOL_SOCKET, SO_REUSEPORT) !== 0) {
    throw lastError(libc, what);
  }
  // struct sock_fprog: the instruction count, then a pointer to them.
  const fprog = new BigUint64Array(2);
  fprog[0] = BigInt(program.length / 8);
  fprog[1] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(program)));
  if (
    libc.symbols.setsockopt(
      fd,
      SOL_SOCKET,
      SO_ATTACH_REUSEPORT_CBPF,
      new Uint8Array(fprog.buffer),
      16,
    ) !== 0
  ) {
    throw lastError(libc, what);
  }
}

/**
 * Binds the sink of a socket bound with a program attached: a socket of
 * its family on its address and port that joins its group second, so the
 * program's index 1 is it. Returns its descriptor; throws `Cannot bind
 * the sink for forged local sources: reason`.
 */
export function bindSpoofSink(libc: Libc, socket: BoundSocket): number {
  const name = new Uint8Array(SOCKADDR_SIZE);
  const length = new Uint32Array([SOCKADDR_SIZE]);
  if (libc.symbols.getsockname(socket.fd, name, length) !== 0) {
    throw lastError(libc, "read the bound address");
  }
  const fd = libc.symbols.socket(
    sockaddrFamily(name, 0),
    SOCK_DGRAM | SOCK_CLOEXEC,
    0,
  );
  if (fd < 0) throw lastError(libc, "open a UDP socket");
  // A broadcast or multicast datagram reaches every socket of the group:
  // the sink asks for destinations too, to leave its copy alone.
  const destinations = sockaddrFamily(name, 0) === AF_INET6
    ? [[SOL_IPV6, IPV6_RECVPKTINFO], [SOL_IP, IP_PKTINFO]]
    : [[SOL_IP, IP_PKTINFO]];
  if (
    setInt(libc, fd, SOL_SOCKET, SO_REUSEPORT) !== 0 ||
    destinations.some(([level, option]) =>
      setInt(libc, fd, level!, option!) !== 0
    ) ||
    libc.symbols.bind(fd, name, length[0]!) !== 0
  ) {
    const error = lastError(libc, "bind the sink for forged local sources");
    libc.symbols.close(fd);
    throw error;
  }
  return fd;
}
