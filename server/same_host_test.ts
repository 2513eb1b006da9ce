/**
 * Datagrams forged from this host's own addresses or from a local subnet's
 * network address, in two private network namespaces joined by a veth pair
 * (`testing/netns.ts`); the peer forges sources with an nftables `snat`
 * rule. On the batch engine a datagram from one of the server's own
 * addresses that comes in over the veth is dropped as `spoofed-local`, so
 * two servers on one host cannot be set on each other, while a client on
 * the same host, sending from the same address, is still answered; on both
 * backends a subnet's network address is a `bad-source`. Needs root, `ip`
 * and `nft`; else each test says it was skipped and why.
 *
 * @module
 */

import { deepEqual, equal } from "node:assert/strict";
import {
  events,
  type Lan,
  NetnsServer,
  nsTest,
  reportSkip,
  SYS,
} from "../testing/netns.ts";

reportSkip("same-host tests");

/** Rules in the peer's namespace that rewrite the source of its datagrams. */
function forge(lan: Lan, rules: string[]): Promise<string> {
  return lan.sh([
    `ip netns exec ${lan.peer} nft -f - <<'EOF'
table inet forge {
  chain post {
    type nat hook postrouting priority srcnat;
${rules.map((rule) => `    ${rule}`).join("\n")}
  }
}
EOF`,
  ]);
}

function shutdownOf(lines: string[]): Record<string, unknown> {
  const [shutdown] = events(lines, "shutdown");
  if (shutdown === undefined) {
    throw new Error(`No shutdown event in:\n${lines.join("\n")}`);
  }
  return shutdown;
}

/** Waits until `server` has logged `count` drops for `reason`. */
async function waitForDrops(
  server: NetnsServer,
  reason: string,
  count: number,
): Promise<void> {
  await server.waitForLine(() =>
    events(server.lines, "dropped").filter((e) => e.reason === reason)
      .length >= count
  );
}

nsTest(
  "two --io batch servers on one host do not echo each other a datagram forged from one to the other (spoofed-local), and still echo a client on the host",
  async (lan) => {
    // IPv4 delivers a local source from outside only when told to.
    await lan.sh([
      `ip netns exec ${lan.server} sysctl -qw net.ipv4.conf.all.accept_local=1 net.ipv4.conf.${lan.serverLink}.accept_local=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.${lan.serverLink}.rp_filter=0`,
    ]);
    await lan.pinNeighbours();
    const args = ["-H", "::", "--io", "batch", "--json"];
    const a = new NetnsServer(lan.server, args, [SYS], { quiet: false });
    const b = new NetnsServer(lan.server, args, [SYS]);
    try {
      const portA = await a.port();
      const portB = await b.port();
      // A client on the host, from a non-loopback address of it.
      deepEqual(await lan.ping(lan.server, "fd00:1::1", portA), ["fd00:1::1"]);
      deepEqual(await lan.ping(lan.server, "10.1.0.1", portA), ["10.1.0.1"]);
      // From now on the peer's datagrams to A claim to come from B.
      await forge(lan, [
        `ip6 daddr fd00:1::1 udp dport ${portA} snat ip6 to [fd00:1::1]:${portB}`,
        `ip daddr 10.1.0.1 udp dport ${portA} snat ip to 10.1.0.1:${portB}`,
      ]);
      deepEqual(await lan.ping(lan.peer, "fd00:1::1", portA, 0), []);
      deepEqual(await lan.ping(lan.peer, "10.1.0.1", portA, 0), []);
      await waitForDrops(a, "spoofed-local", 2);
    } finally {
      const shutdownA = shutdownOf((await a.stop()).lines);
      const shutdownB = shutdownOf((await b.stop()).lines);
      deepEqual(shutdownA.dropped, { "spoofed-local": 2 });
      equal(shutdownA.echoed, 2);
      equal(shutdownA.received, 4);
      equal(shutdownB.received, 0, "B never heard of the forged datagrams");
    }
  },
);

nsTest(
  "an --io batch server guards the addresses the host gets while it runs",
  async (lan) => {
    await lan.pinNeighbours();
    const server = new NetnsServer(
      lan.server,
      ["-H", "::", "--io", "batch", "--json"],
      [SYS],
      { quiet: false },
    );
    try {
      const port = await server.port();
      await lan.sh([
        `ip -n ${lan.server} addr add fd00:1::9/64 dev ${lan.serverLink} nodad`,
      ]);
      await forge(lan, [
        `ip6 daddr fd00:1::1 udp dport ${port} snat ip6 to fd00:1::9`,
      ]);
      // Until the guard has listed the new address, the forged datagram is
      // echoed (to nobody): send again until one is dropped.
      const dropped = (line: string) => line.includes('"spoofed-local"');
      for (let tries = 0; !server.lines.some(dropped); tries++) {
        if (tries === 200) throw new Error("never dropped as spoofed-local");
        await lan.ping(lan.peer, "fd00:1::1", port, 0);
      }
      const line = JSON.parse(server.lines.find(dropped)!);
      equal(line.event, "dropped");
      equal(line.from.startsWith("[fd00:1::9]:"), true, line.from);
    } finally {
      await server.stop();
    }
  },
);

for (const io of ["socket", "batch"] as const) {
  nsTest(
    `server.ts -H 0.0.0.0 --io ${io} refuses a datagram forged from the network address of a local subnet (bad-source)`,
    async (lan) => {
      const server = new NetnsServer(
        lan.server,
        ["-H", "0.0.0.0", "--io", io, "--json"],
        [SYS],
        { quiet: false },
      );
      try {
        const port = await server.port();
        deepEqual(await lan.ping(lan.peer, "10.1.0.1", port), ["10.1.0.1"]);
        await forge(lan, [
          `ip daddr 10.1.0.1 udp dport ${port} snat ip to 10.1.0.0`,
        ]);
        deepEqual(await lan.ping(lan.peer, "10.1.0.1", port, 0), []);
        await waitForDrops(server, "bad-source", 1);
      } finally {
        const shutdown = shutdownOf((await server.stop()).lines);
        deepEqual(shutdown.dropped, { "bad-source": 1 });
        equal(shutdown.echoed, 1);
      }
    },
  );
}
