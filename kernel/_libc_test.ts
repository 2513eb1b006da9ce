import { equal, ok } from "node:assert/strict";
import {
  describeErrno,
  EAGAIN,
  errnoError,
  lastErrno,
  type Libc,
  MSG_DONTWAIT,
  openLibc,
  receiveMessages,
  releaseLibc,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
} from "./_libc.ts";
import { MMSGHDR_SIZE } from "./_structs.ts";

Deno.test("errnoError() gives the Deno.errors class an errno stands for", () => {
  const refused = errnoError(111, "connection refused");
  ok(refused instanceof Deno.errors.ConnectionRefused);
  equal(refused.message, "connection refused");
  ok(
    errnoError(1, "operation not permitted") instanceof
      Deno.errors.PermissionDenied,
  );
  ok(
    errnoError(13, "permission denied") instanceof
      Deno.errors.PermissionDenied,
  );
  ok(
    errnoError(98, "address already in use") instanceof
      Deno.errors.AddrInUse,
  );
  ok(
    errnoError(101, "network is unreachable") instanceof
      Deno.errors.NetworkUnreachable,
  );
});

Deno.test("errnoError() falls back to a plain Error for an errno without a class", () => {
  const error = errnoError(90, "message too long");
  equal(error.constructor, Error);
  equal(error.message, "message too long");
});

Deno.test("describeErrno() describes an errno in lower case", () => {
  const libc = openLibc();
  try {
    equal(describeErrno(libc, 111), "connection refused");
  } finally {
    releaseLibc();
  }
});

const AF_INET = 2;
const POLLIN = 1;
const POLLERR = 8;
const EBADF = 9;
const ECONNREFUSED = 111;

/** A UDP socket of libc bound to 127.0.0.1 on a free port: its fd and port. */
function boundSocket(libc: Libc): { fd: number; port: number } {
  const fd = libc.symbols.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ok(fd >= 0, "socket");
  const address = loopbackAddress(0);
  equal(libc.symbols.bind(fd, address, address.length), 0, "bind");
  const length = new Uint32Array([address.length]);
  equal(libc.symbols.getsockname(fd, address, length), 0, "getsockname");
  return { fd, port: (address[2]! << 8) | address[3]! };
}

/** A `struct sockaddr_in` of 127.0.0.1 and `port`. */
function loopbackAddress(port: number): Uint8Array {
  const address = new Uint8Array(16);
  new DataView(address.buffer).setUint16(0, AF_INET, true);
  new DataView(address.buffer).setUint16(2, port, false);
  address.set([127, 0, 0, 1], 4);
  return address;
}

/** Sends one datagram on `fd`, to `address` or to its connected peer. */
function send(libc: Libc, fd: number, address?: Uint8Array): void {
  const payload = new Uint8Array([1]);
  const sent = libc.symbols.sendto(
    fd,
    Deno.UnsafePointer.of(payload),
    BigInt(payload.length),
    0,
    address === undefined ? null : Deno.UnsafePointer.of(address),
    address?.length ?? 0,
  );
  equal(sent, 1, "sendto");
}

/** Waits (5 s at most) until `fd` shows one of `events`; returns them. */
function waitFor(libc: Libc, fd: number, events: number): number {
  const pollfd = new Uint8Array(8);
  const view = new DataView(pollfd.buffer);
  view.setInt32(0, fd, true);
  view.setInt16(4, events, true);
  equal(libc.symbols.poll(pollfd, 1n, 5000), 1, "poll");
  return view.getInt16(6, true);
}

Deno.test("receiveMessages() counts the datagrams waiting, then gives -EAGAIN", () => {
  const libc = openLibc();
  const receiver = boundSocket(libc);
  const sender = boundSocket(libc);
  // Zeroed headers: no buffers, so each datagram is taken cut to 0 bytes.
  const headers = new Uint8Array(4 * MMSGHDR_SIZE);
  const pointer = Deno.UnsafePointer.of(headers)!;
  try {
    send(libc, sender.fd, loopbackAddress(receiver.port));
    send(libc, sender.fd, loopbackAddress(receiver.port));
    let received = 0;
    while (received < 2) {
      waitFor(libc, receiver.fd, POLLIN);
      const n = receiveMessages(libc, receiver.fd, pointer, 4, MSG_DONTWAIT);
      ok(n > 0, `a receive gave ${n}`);
      received += n;
    }
    equal(received, 2);
    equal(
      receiveMessages(libc, receiver.fd, pointer, 4, MSG_DONTWAIT),
      -EAGAIN,
    );
  } finally {
    libc.symbols.close(receiver.fd);
    libc.symbols.close(sender.fd);
    releaseLibc();
  }
});

Deno.test("receiveMessages() believes a failure that comes again: -EBADF", () => {
  const libc = openLibc();
  const headers = new Uint8Array(MMSGHDR_SIZE);
  try {
    equal(
      receiveMessages(
        libc,
        -1,
        Deno.UnsafePointer.of(headers)!,
        1,
        MSG_DONTWAIT,
      ),
      -EBADF,
    );
  } finally {
    releaseLibc();
  }
});

// A connected socket's refusal (ICMP port unreachable) is a pending error
// that only the next receive returns: a failure that does not come again.
Deno.test("receiveMessages() does not believe a failure that does not come again", () => {
  const libc = openLibc();
  const socket = boundSocket(libc);
  const peer = boundSocket(libc);
  const headers = new Uint8Array(4 * MMSGHDR_SIZE);
  const pointer = Deno.UnsafePointer.of(headers)!;
  try {
    const peerAddress = loopbackAddress(peer.port);
    equal(
      libc.symbols.connect(socket.fd, peerAddress, peerAddress.length),
      0,
      "connect",
    );
    send(libc, peer.fd, loopbackAddress(socket.port));
    waitFor(libc, socket.fd, POLLIN);
    libc.symbols.close(peer.fd);
    // Refused, with a datagram waiting behind the refusal: the second try
    // takes it.
    send(libc, socket.fd);
    ok(waitFor(libc, socket.fd, POLLERR) & POLLERR, "a pending refusal");
    equal(receiveMessages(libc, socket.fd, pointer, 4, MSG_DONTWAIT), 1);
    // Refused with nothing waiting: as if nothing had happened.
    send(libc, socket.fd);
    ok(waitFor(libc, socket.fd, POLLERR) & POLLERR, "a pending refusal");
    equal(
      receiveMessages(libc, socket.fd, pointer, 4, MSG_DONTWAIT),
      -EAGAIN,
    );
    // What one plain recvmmsg returns for that refusal, so the two above
    // show the second try, not a refusal that never came.
    send(libc, socket.fd);
    ok(waitFor(libc, socket.fd, POLLERR) & POLLERR, "a pending refusal");
    equal(
      libc.symbols.recvmmsg(socket.fd, pointer, 4, MSG_DONTWAIT, null),
      -1,
    );
    equal(lastErrno(libc), ECONNREFUSED);
  } finally {
    libc.symbols.close(socket.fd);
    releaseLibc();
  }
});
