import { equal, ok } from "node:assert/strict";
import { bindSocket } from "./_bind.ts";
import { openLibc, releaseLibc } from "./_libc.ts";
import {
  receiveBufferNeed,
  receiveBufferSize,
  sizeReceiveBuffer,
  socketDrops,
} from "./_socket_buffer.ts";

const ENGINE = Deno.build.os === "linux";

Deno.test({
  name:
    "sizeReceiveBuffer() grows a socket's buffer, reads back what the kernel gave, and says when rmem_max capped it",
  ignore: !ENGINE,
  fn() {
    const libc = openLibc();
    const socket = bindSocket(libc, "127.0.0.1", 0);
    try {
      const before = receiveBufferSize(libc, socket.fd);
      ok(before > 0);
      equal(socketDrops(libc, socket.fd), 0);
      // What it already holds: nothing asked.
      const enough = sizeReceiveBuffer(libc, socket.fd, before);
      equal(enough.asked, 0);
      equal(enough.granted, before);
      const more = sizeReceiveBuffer(libc, socket.fd, before + 65_536);
      equal(more.asked, before + 65_536);
      // The kernel doubles what it accepts: the request is half the need.
      ok(more.capped || more.granted >= before + 65_536, JSON.stringify(more));
      equal(more.granted, receiveBufferSize(libc, socket.fd));
      // No host caps a buffer at more than a gigabyte by default.
      const huge = sizeReceiveBuffer(libc, socket.fd, 2 ** 31);
      ok(huge.capped, JSON.stringify(huge));
      ok(huge.granted < 2 ** 31 && huge.granted >= more.granted);
    } finally {
      libc.symbols.close(socket.fd);
      releaseLibc();
    }
  },
});

Deno.test("receiveBufferNeed() holds the rate's replies, the window, or every probe of an unpaced run", () => {
  const paced = receiveBufferNeed({ size: 64, intervalMs: 0.1, count: 1e9 });
  const slower = receiveBufferNeed({ size: 64, intervalMs: 1, count: 1e9 });
  equal(paced, 10 * slower);
  equal(
    receiveBufferNeed({ size: 64, intervalMs: 1, count: 1e9, window: 8 }),
    8 * receiveBufferNeed({ size: 64, intervalMs: 1e6, count: 1 }),
  );
  ok(
    receiveBufferNeed({ size: 1400, intervalMs: 1, count: 1 }) >
      receiveBufferNeed({ size: 64, intervalMs: 1, count: 1 }),
  );
  equal(
    receiveBufferNeed({ size: 64, intervalMs: 0, count: 10 }),
    10 * receiveBufferNeed({ size: 64, intervalMs: 0, count: 1 }),
  );
});
