import { deepEqual, equal, throws } from "node:assert/strict";
import { bindSocket } from "./_bind.ts";
import { openLibc, POLLIN, releaseLibc } from "./_libc.ts";
import {
  attachSpoofProgram,
  bindSpoofSink,
  hostAddresses,
  MAX_GUARDED_ADDRESSES,
  spoofProgram,
} from "./_spoof_guard.ts";

function info(
  family: "IPv4" | "IPv6",
  address: string,
): Deno.NetworkInterfaceInfo {
  return {
    family,
    name: "eth0",
    address,
    netmask: family === "IPv4" ? "255.255.255.0" : "ffff:ffff:ffff:ffff::",
    scopeid: null,
    cidr: "",
    mac: "00:00:00:00:00:00",
  };
}

Deno.test("hostAddresses() leaves out loopback and zones, and keeps at most MAX_GUARDED_ADDRESSES of a family", () => {
  deepEqual(
    hostAddresses([
      info("IPv4", "127.0.0.1"),
      info("IPv6", "::1"),
      info("IPv4", "10.1.0.1"),
      info("IPv6", "fe80::1%eth0"),
      info("IPv6", "fe80::1"),
      info("IPv6", "fd00:1::1"),
    ]),
    ["10.1.0.1", "fe80::1", "fd00:1::1"],
  );
  const many = Array.from(
    { length: 2 * MAX_GUARDED_ADDRESSES },
    (_, k) => info("IPv4", `10.2.${k >> 8}.${k & 255}`),
  );
  equal(
    hostAddresses([...many, info("IPv6", "fd00::1")]).length,
    MAX_GUARDED_ADDRESSES + 1,
  );
});

Deno.test("a socket guarded against forged local sources binds where a plain one would, and its sink gets nothing from loopback", async () => {
  const libc = openLibc();
  const fds: number[] = [];
  try {
    const addresses = [
      ...Array.from(
        { length: MAX_GUARDED_ADDRESSES },
        (_, k) => `10.3.0.${k}`,
      ),
      ...Array.from(
        { length: MAX_GUARDED_ADDRESSES },
        (_, k) => `fd00:3::${k.toString(16)}`,
      ),
      // Loopback itself, so that only the arrival device keeps it out.
      "127.0.0.1",
    ];
    const program = spoofProgram(addresses);
    const guarded = (port: number) =>
      bindSocket(libc, "127.0.0.1", port, undefined, {
        beforeBind: (fd) =>
          attachSpoofProgram(libc, fd, program, { beforeBind: true }),
      });
    const socket = guarded(0);
    fds.push(socket.fd);
    const sink = bindSpoofSink(libc, socket);
    fds.push(sink);
    const port = socket.addr.port;
    // Neither a second guarded socket nor a plain one shares its port.
    throws(() => guarded(port), Deno.errors.AddrInUse);
    throws(
      () =>
        Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port }),
      Deno.errors.AddrInUse,
    );
    // The program can be replaced while it serves.
    attachSpoofProgram(libc, socket.fd, spoofProgram(addresses));
    const client = Deno.listenDatagram({
      transport: "udp",
      hostname: "127.0.0.1",
      port: 0,
    });
    try {
      for (let k = 0; k < 8; k++) {
        await client.send(new Uint8Array(1), {
          transport: "udp",
          hostname: "127.0.0.1",
          port,
        });
      }
    } finally {
      client.close();
    }
    // All from one source: the program sends them all one way.
    const main = new Int32Array([socket.fd, POLLIN]);
    equal(libc.symbols.poll(main, 1n, 10_000), 1, "the socket has them");
    const aside = new Int32Array([sink, POLLIN]);
    equal(libc.symbols.poll(aside, 1n, 0), 0, "the sink has none");
  } finally {
    for (const fd of fds) libc.symbols.close(fd);
    releaseLibc();
  }
});
