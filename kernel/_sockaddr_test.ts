import { equal } from "node:assert/strict";
import { formatSockaddrHost, sockaddrPort } from "./_sockaddr.ts";

Deno.test("formatSockaddrHost() formats IPv4, IPv6 and IPv4-mapped addresses", () => {
  const v4 = new Uint8Array([2, 0, 0x27, 0x10, 127, 0, 0, 1]);
  equal(formatSockaddrHost(v4, 0), "127.0.0.1");
  const v6 = (groups: number[]) => {
    const bytes = new Uint8Array(28);
    bytes[0] = 10;
    groups.forEach((group, i) => {
      bytes[8 + 2 * i] = group >> 8;
      bytes[9 + 2 * i] = group & 0xff;
    });
    return bytes;
  };
  equal(formatSockaddrHost(v6([0, 0, 0, 0, 0, 0, 0, 1]), 0), "::1");
  equal(formatSockaddrHost(v6([0, 0, 0, 0, 0, 0, 0, 0]), 0), "::");
  equal(
    formatSockaddrHost(v6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1]), 0),
    "2001:db8::1:0:0:1",
  );
  equal(
    formatSockaddrHost(v6([0x2001, 0xdb8, 1, 2, 3, 4, 5, 6]), 0),
    "2001:db8:1:2:3:4:5:6",
  );
  equal(
    formatSockaddrHost(v6([0, 0, 0, 0, 0, 0xffff, 0x7f00, 0x0001]), 0),
    "::ffff:127.0.0.1",
  );
});

Deno.test("sockaddrPort() reads the port in network byte order", () => {
  equal(
    sockaddrPort(new Uint8Array([2, 0, 0x27, 0x10, 127, 0, 0, 1]), 0),
    10000,
  );
});
