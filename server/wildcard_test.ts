/**
 * Wildcard binds on real interfaces, in two private network namespaces
 * joined by a veth pair (server 10.1.0.1/24, peer 10.1.0.2/24, IPv6 too),
 * with 127.0.0.2 and ::2 on the server's loopback: every reply leaves from
 * the address its request was sent to, a subnet broadcast is never echoed,
 * a datagram forged from the directed broadcast address (nft snat on the
 * peer's side) is refused, and without `--allow-sys` the server says what
 * it cannot check. The server runs as a subprocess in its namespace, the
 * peer is a small Deno script in either. Needs root, `ip` and `nft`; else
 * each test says it was skipped and why.
 *
 * @module
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
import {
  events,
  NetnsServer as Server,
  nsTest,
  reportSkip,
  SYS,
} from "../testing/netns.ts";

const IO_BACKENDS = ["socket", "batch"] as const;

reportSkip("wildcard tests");

for (const io of IO_BACKENDS) {
  nsTest(
    `server.ts -H 0.0.0.0 --io ${io} replies from the address asked, never echoes a subnet broadcast or a forged broadcast source`,
    async (lan) => {
      const server = new Server(lan.server, [
        "-H",
        "0.0.0.0",
        "--io",
        io,
        "--json",
      ], [
        SYS,
      ]);
      let lines: string[] = [];
      try {
        const port = await server.port();
        deepEqual(await lan.ping(lan.server, "127.0.0.2", port), ["127.0.0.2"]);
        deepEqual(await lan.ping(lan.peer, "10.1.0.1", port), ["10.1.0.1"]);
        deepEqual(await lan.ping(lan.peer, "10.1.0.255", port, 0), []);
        // From now on the peer's datagrams to the server claim to come from
        // the subnet's directed broadcast address.
        await lan.sh([
          `ip netns exec ${lan.peer} nft -f - <<'EOF'
table ip forge {
  chain post {
    type nat hook postrouting priority srcnat;
    ip daddr 10.1.0.1 udp dport ${port} snat to 10.1.0.255
  }
}
EOF`,
        ]);
        deepEqual(await lan.ping(lan.peer, "10.1.0.1", port, 0), []);
      } finally {
        // Stopped here, checked below: a failed check in `finally` would
        // hide the failure that led here.
        ({ lines } = await server.stop());
      }
      const listening = events(lines, "listening").map((e) => e.address);
      const [shutdown] = events(lines, "shutdown");
      deepEqual(events(lines, "warning"), []);
      equal(shutdown!.echoed, 2);
      if (io === "batch") {
        deepEqual(listening, ["0.0.0.0"], "the engine keeps one socket");
        deepEqual(shutdown!.dropped, { "not-unicast": 1, "bad-source": 1 });
      } else {
        deepEqual(listening, ["127.0.0.1", "127.0.0.2", "10.1.0.1"]);
        // No socket is bound to the broadcast: it never arrives.
        deepEqual(shutdown!.dropped, { "bad-source": 1 });
        equal(shutdown!.received, 3);
      }
    },
  );

  nsTest(
    `server.ts -H :: --io ${io} replies from the address asked, IPv6 and IPv4`,
    async (lan) => {
      const server = new Server(
        lan.server,
        ["-H", "::", "--io", io, "--json"],
        [SYS],
      );
      let lines: string[] = [];
      try {
        const port = await server.port();
        deepEqual(await lan.ping(lan.server, "::2", port), ["::2"]);
        deepEqual(await lan.ping(lan.server, "127.0.0.2", port), [
          "127.0.0.2",
        ]);
        deepEqual(await lan.ping(lan.peer, "fd00:1::1", port), ["fd00:1::1"]);
        deepEqual(await lan.ping(lan.peer, "10.1.0.255", port, 0), []);
        deepEqual(await lan.ping(lan.peer, "ff02::1", port, 0), []);
      } finally {
        ({ lines } = await server.stop());
      }
      const listening = events(lines, "listening").map((e) => e.address);
      deepEqual(events(lines, "warning"), []);
      const [shutdown] = events(lines, "shutdown");
      if (io === "batch") {
        deepEqual(listening, ["::"]);
        // The IPv4 broadcast, and the multicast if it was delivered at all.
        const dropped = shutdown!.dropped as Record<string, number>;
        ok(dropped["not-unicast"]! >= 1, JSON.stringify(dropped));
      } else {
        // Link-local addresses are bound with their zone.
        deepEqual(
          new Set(listening),
          new Set([
            "127.0.0.1",
            "127.0.0.2",
            "10.1.0.1",
            "::1",
            "::2",
            "fd00:1::1",
            "fe80::1",
          ]),
        );
      }
      equal(shutdown!.echoed, 3);
    },
  );

  nsTest(
    `server.ts -H 0.0.0.0 --io ${io} without ${SYS} warns once about what it cannot check`,
    async (lan) => {
      const json = new Server(lan.server, [
        "-H",
        "0.0.0.0",
        "--io",
        io,
        "--json",
      ], []);
      const text = new Server(lan.server, ["-H", "0.0.0.0", "--io", io], []);
      let reply: string[] = [];
      let lines: string[] = [];
      let stderr = "";
      try {
        reply = await lan.ping(lan.server, "127.0.0.2", await json.port());
        await text.port();
      } finally {
        ({ lines } = await json.stop());
        ({ stderr } = await text.stop());
      }
      deepEqual(events(lines, "listening").map((e) => e.address), [
        "0.0.0.0",
      ]);
      const warnings = events(lines, "warning");
      equal(warnings.length, 1);
      const message = warnings[0]!.message as string;
      match(
        message,
        new RegExp(`cannot list the network interfaces.*${SYS}`),
      );
      match(message, /directed broadcast/);
      equal(stderr, `warning: ${message}\n`);
      if (io === "batch") {
        // The engine sees the destination even so.
        deepEqual(reply, ["127.0.0.2"]);
        ok(!message.includes("one socket per interface address"));
      } else {
        // What the warning says: the reply leaves from another address.
        deepEqual(reply, ["127.0.0.1"]);
        match(message, /one socket per interface address/);
      }
    },
  );
}
