/**
 * A connected UDP socket made through libc for the path checks of
 * `client.ts --diagnose`: what `Deno.listenDatagram` cannot do. It sets
 * don't-fragment (`IP_MTU_DISCOVER` = `IP_PMTUDISC_PROBE`, or on IPv6
 * `IPV6_MTU_DISCOVER` = `IPV6_PMTUDISC_PROBE` with `IPV6_DONTFRAG`: the
 * kernel neither fragments nor caps a datagram at a path MTU it learnt, so
 * every size is tried on the wire), reads the route MTU the kernel knows
 * (`IP_MTU`, `IPV6_MTU`), marks what it sends with a TOS or traffic class
 * (`IP_TOS`, `IPV6_TCLASS`), reads each reply's (`IP_RECVTOS`,
 * `IPV6_RECVTCLASS`), and reads the ICMP errors the path sent back
 * (`IP_RECVERR`, `IPV6_RECVERR`, from the error queue).
 *
 * Every call is non-blocking: the caller polls, which leaves the event loop
 * free for timers and signals. Linux only; needs `--allow-ffi`, and checks
 * the net permission a send would need.
 *
 * @example Echo one marked datagram off a local server
 * ```ts ignore
 * import { PathSocket } from "./path_socket.ts";
 *
 * const socket = PathSocket.open({ hostname: "127.0.0.1", port: 10000 });
 * socket.setMarking(46 << 2); // EF
 * socket.send(new Uint8Array(64));
 * // later: socket.receive() gives the reply and the TOS it came with
 * socket.close();
 * ```
 *
 * @module
 */

import type { HostPort } from "../net/address.ts";
import { resolveSockaddrs } from "./_bind.ts";
import {
  EAGAIN,
  lastErrno,
  lastError,
  type Libc,
  MSG_DONTWAIT,
  openLibc,
  releaseLibc,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
} from "./_libc.ts";
import {
  AF_INET,
  AF_INET6,
  formatSockaddrHost,
  sockaddrFamily,
} from "./_sockaddr.ts";
import { SOL_IP, SOL_IPV6 } from "./_pktinfo.ts";
import { CMSG_HEADER, MSG_CONTROL, MSG_IOV, write64 } from "./_structs.ts";
import { checkNetPermission } from "./choice.ts";

const SOCK_NONBLOCK = 0x800;
const MSG_ERRQUEUE = 0x2000;
/** What a send too large for the route, or an ICMP "too big", fails with. */
export const EMSGSIZE = 90;
const IP_TOS = 1;
const IP_MTU_DISCOVER = 10;
const IP_RECVERR = 11;
const IP_RECVTOS = 13;
const IP_MTU = 14;
const IP_PMTUDISC_DONT = 0;
const IP_PMTUDISC_PROBE = 3;
const IPV6_MTU_DISCOVER = 23;
const IPV6_MTU = 24;
const IPV6_RECVERR = 25;
const IPV6_DONTFRAG = 62;
const IPV6_RECVTCLASS = 66;
const IPV6_TCLASS = 67;

/** Where an error of the error queue came from (`ee_origin`). */
export const ERROR_ORIGIN = { local: 1, icmp: 2, icmp6: 3 } as const;

/** An error the kernel queued for the socket (`struct sock_extended_err`). */
export interface PathError {
  /** The errno it stands for: `EMSGSIZE` for "too big". */
  errno: number;
  /** One of {@linkcode ERROR_ORIGIN}. */
  origin: number;
  /** The ICMP type (3 or, on IPv6, 2 for "too big"); 0 for a local error. */
  type: number;
  /** The ICMP code (4: fragmentation needed). */
  code: number;
  /** With `EMSGSIZE`: the MTU the router or the route gave. */
  info: number;
  /** Who sent the ICMP message; absent for a local error. */
  offender?: string;
}

/** A reply read by {@linkcode PathSocket.receive}. */
export interface PathReply {
  /** The datagram. */
  bytes: Uint8Array;
  /** The TOS or traffic class byte it arrived with; -1 when not said. */
  tos: number;
}

/** Bytes of data one receive takes: the largest UDP payload. */
const RECEIVE_SIZE = 65_536;
/** Bytes of control data: a TOS or traffic class, or an error and its offender. */
const CONTROL_SIZE = 256;

/** A connected UDP socket for the path checks; see the module doc. */
export class PathSocket {
  /** 4 or 6. */
  readonly family: 4 | 6;
  #libc: Libc;
  #fd: number;
  #closed = false;
  #data = new Uint8Array(RECEIVE_SIZE);
  #control = new Uint8Array(CONTROL_SIZE);
  #iov = new Uint8Array(16);
  #header = new Uint8Array(56);

  private constructor(libc: Libc, fd: number, family: 4 | 6) {
    this.#libc = libc;
    this.#fd = fd;
    this.family = family;
    const iov = new Uint32Array(this.#iov.buffer);
    write64(iov, 0, pointerOf(this.#data));
    write64(iov, 8, RECEIVE_SIZE);
  }

  /**
   * Opens a socket connected to `target` (an IP address) with error and
   * TOS reporting on. Throws `Deno.errors.NotCapable` without the net
   * permission for it, and the OS error when a call fails.
   */
  static open(target: HostPort): PathSocket {
    checkNetPermission(target.hostname, target.port);
    const libc = openLibc();
    let fd = -1;
    try {
      const sockaddr = resolveSockaddrs(libc, target.hostname, target.port)[0];
      if (sockaddr === undefined) {
        throw new Deno.errors.NotFound(`Cannot resolve ${target.hostname}`);
      }
      const af = sockaddrFamily(sockaddr, 0);
      fd = libc.symbols.socket(
        af,
        SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
        0,
      );
      if (fd < 0) throw lastError(libc, "open a UDP socket");
      if (libc.symbols.connect(fd, sockaddr, sockaddr.length) !== 0) {
        throw lastError(libc, `connect to ${target.hostname}`);
      }
      const socket = new PathSocket(libc, fd, af === AF_INET6 ? 6 : 4);
      if (af === AF_INET) {
        socket.#set(SOL_IP, IP_RECVERR, 1, "ask for ICMP errors");
        socket.#set(SOL_IP, IP_RECVTOS, 1, "ask for each reply's TOS");
      } else {
        socket.#set(SOL_IPV6, IPV6_RECVERR, 1, "ask for ICMPv6 errors");
        socket.#set(SOL_IPV6, IPV6_RECVTCLASS, 1, "ask for each traffic class");
      }
      return socket;
    } catch (error) {
      if (fd >= 0) libc.symbols.close(fd);
      releaseLibc();
      throw error;
    }
  }

  #set(level: number, option: number, value: number, what: string): void {
    const on = new Int32Array([value]);
    if (this.#libc.symbols.setsockopt(this.#fd, level, option, on, 4) !== 0) {
      throw lastError(this.#libc, what);
    }
  }

  /**
   * Sets don't-fragment on every datagram from now on (`on`), or lets the
   * kernel fragment them (`IP_PMTUDISC_DONT`).
   */
  setDontFragment(on: boolean): void {
    if (this.family === 4) {
      this.#set(
        SOL_IP,
        IP_MTU_DISCOVER,
        on ? IP_PMTUDISC_PROBE : IP_PMTUDISC_DONT,
        "set don't-fragment",
      );
      return;
    }
    this.#set(
      SOL_IPV6,
      IPV6_MTU_DISCOVER,
      on ? IP_PMTUDISC_PROBE : IP_PMTUDISC_DONT,
      "set don't-fragment",
    );
    this.#set(SOL_IPV6, IPV6_DONTFRAG, on ? 1 : 0, "set don't-fragment");
  }

  /** Marks every datagram from now on with `tos` (DSCP << 2 | ECN). */
  setMarking(tos: number): void {
    if (this.family === 4) this.#set(SOL_IP, IP_TOS, tos, "set the TOS");
    else this.#set(SOL_IPV6, IPV6_TCLASS, tos, "set the traffic class");
  }

  /** The MTU the kernel holds for the route to the peer, in bytes. */
  routeMtu(): number {
    const value = new Int32Array(1);
    const length = new Uint32Array([4]);
    const r = this.#libc.symbols.getsockopt(
      this.#fd,
      this.family === 4 ? SOL_IP : SOL_IPV6,
      this.family === 4 ? IP_MTU : IPV6_MTU,
      value,
      length,
    );
    if (r !== 0) throw lastError(this.#libc, "read the route MTU");
    return value[0]!;
  }

  /**
   * Sends `bytes`; returns `"too-big"` when the kernel refuses it as larger
   * than the route allows (`EMSGSIZE`), `"again"` when the buffer is full.
   * Throws the OS error of any other failure.
   */
  send(bytes: Uint8Array): "sent" | "too-big" | "again" {
    const r = this.#libc.symbols.sendto(
      this.#fd,
      Deno.UnsafePointer.of(bytes as Uint8Array<ArrayBuffer>),
      BigInt(bytes.length),
      0,
      null,
      0,
    );
    if (r >= 0) return "sent";
    const errno = lastErrno(this.#libc);
    if (errno === EMSGSIZE) return "too-big";
    if (errno === EAGAIN) return "again";
    throw lastError(this.#libc, "send");
  }

  #receive(flags: number): number {
    const header = new Uint32Array(this.#header.buffer);
    header.fill(0);
    write64(header, MSG_IOV, pointerOf(this.#iov));
    write64(header, MSG_IOV + 8, 1);
    write64(header, MSG_CONTROL, pointerOf(this.#control));
    write64(header, MSG_CONTROL + 8, CONTROL_SIZE);
    return this.#libc.symbols.recvmsg(this.#fd, this.#header, flags);
  }

  /** The control data of the last receive: [level, type, data offset] each. */
  *#messages(): Generator<[number, number, number]> {
    const header = new Uint32Array(this.#header.buffer);
    const length = header[(MSG_CONTROL + 8) >> 2]!;
    const words = new DataView(this.#control.buffer);
    for (let at = 0; at + CMSG_HEADER <= length;) {
      const size = words.getUint32(at, true);
      if (size < CMSG_HEADER || at + size > length) break;
      yield [
        words.getInt32(at + 8, true),
        words.getInt32(at + 12, true),
        at + CMSG_HEADER,
      ];
      at += (size + 7) & ~7;
    }
  }

  /**
   * The next reply waiting, or `undefined` when none is. A pending ICMP
   * error is left for {@linkcode readError}.
   */
  receive(): PathReply | undefined {
    const n = this.#receive(MSG_DONTWAIT);
    if (n < 0) return undefined;
    let tos = -1;
    for (const [level, type, at] of this.#messages()) {
      if (level === SOL_IP && type === IP_TOS) tos = this.#control[at]!;
      if (level === SOL_IPV6 && type === IPV6_TCLASS) {
        tos = this.#control[at]!;
      }
    }
    return { bytes: this.#data.slice(0, n), tos };
  }

  /** The next error the kernel queued, or `undefined` when none is. */
  readError(): PathError | undefined {
    const n = this.#receive(MSG_DONTWAIT | MSG_ERRQUEUE);
    if (n < 0) return undefined;
    for (const [level, type, at] of this.#messages()) {
      if (
        !(level === SOL_IP && type === IP_RECVERR ||
          level === SOL_IPV6 && type === IPV6_RECVERR)
      ) continue;
      const view = new DataView(this.#control.buffer, at);
      const origin = view.getUint8(4);
      // struct sock_extended_err (16 bytes), then the offender's sockaddr.
      const offender = origin === ERROR_ORIGIN.local
        ? undefined
        : formatSockaddrHost(this.#control, at + 16);
      return {
        errno: view.getUint32(0, true),
        origin,
        type: view.getUint8(5),
        code: view.getUint8(6),
        info: view.getUint32(8, true),
        ...(offender === undefined ? {} : { offender }),
      };
    }
    return { errno: 0, origin: 0, type: 0, code: 0, info: 0 };
  }

  /** Closes the socket; later calls to close do nothing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#libc.symbols.close(this.#fd);
    releaseLibc();
  }
}

function pointerOf(bytes: Uint8Array): number {
  return Number(
    Deno.UnsafePointer.value(
      Deno.UnsafePointer.of(bytes as Uint8Array<ArrayBuffer>),
    ),
  );
}
