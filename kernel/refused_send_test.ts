/**
 * Echoes the kernel refuses in the middle of a `sendmmsg` batch, on the
 * batch engine in a private network namespace (`testing/netns.ts`): the
 * call stops short at the refused one and does not say why, and the engine
 * must count it as one send error without sending it again. The server is
 * stopped (SIGSTOP) while a sender queues its datagrams, so that one
 * `recvmmsg` takes them all and one batch alternates echoes that leave
 * with echoes that cannot; an nftables counter on the output path is the
 * ground truth of how often each was tried. Needs root, `ip` and `nft`;
 * else each test says it was skipped and why.
 *
 * @module
 */

import { equal, match, ok } from "node:assert/strict";
import {
  events,
  type Lan,
  NetnsServer,
  nsTest,
  reportSkip,
} from "../testing/netns.ts";

reportSkip("refused send tests");

/** Refused echoes per batch: with the echoes that leave, one batch of 64. */
const REFUSED = 20;
const OK_PORT = 40000;
const REFUSED_PORT = 40001;

// Queues `pairs` pairs (one from OK_PORT, one from REFUSED_PORT) and one
// more from OK_PORT, says "sent", and counts the echoes back to OK_PORT.
const SENDER = `
const [host, port, bindHost, okPort, refusedPort, pairs] = Deno.args;
const open = (p) => Deno.listenDatagram({ transport: "udp", hostname: bindHost, port: Number(p) });
const good = open(okPort);
const refused = open(refusedPort);
const to = { transport: "udp", hostname: host, port: Number(port) };
const data = new TextEncoder().encode("x");
for (let i = 0; i < Number(pairs); i++) {
  await good.send(data, to);
  await refused.send(data, to);
}
await good.send(data, to);
console.log("sent");
const timer = setTimeout(() => good.close(), 20000);
let echoes = 0;
try {
  while (echoes < Number(pairs) + 1) {
    await good.receive();
    echoes++;
  }
} catch { /* closed */ }
clearTimeout(timer);
console.log(echoes);
refused.close();
`;

/**
 * Runs the sender in `ns` against a stopped `server`, lets the server go
 * on once everything is queued, and returns how many echoes came back.
 */
async function queueThenServe(
  lan: Lan,
  ns: string,
  server: NetnsServer,
  target: { host: string; port: number; bindHost: string },
): Promise<number> {
  Deno.kill(server.pid, "SIGSTOP");
  try {
    const sender = lan.spawnDeno(ns, SENDER, [
      target.host,
      String(target.port),
      target.bindHost,
      String(OK_PORT),
      String(REFUSED_PORT),
      String(REFUSED),
    ]);
    const first = await sender.lines.next();
    equal(first.value, "sent");
    Deno.kill(server.pid, "SIGCONT");
    const last = await sender.lines.next();
    await sender.status;
    return Number(last.value);
  } finally {
    Deno.kill(server.pid, "SIGCONT");
  }
}

for (const host of ["127.0.0.1", "::1"]) {
  nsTest(
    `--io batch on ${host} tries an echo the firewall refuses once, and counts it as one send error`,
    async (lan) => {
      await lan.sh([
        `ip netns exec ${lan.server} nft -f - <<'EOF'
table inet refuse {
  chain out {
    type filter hook output priority 0;
    udp dport ${REFUSED_PORT} counter reject
  }
}
EOF`,
      ]);
      const server = new NetnsServer(lan.server, [
        "-H",
        host,
        "--io",
        "batch",
        "--json",
      ], []);
      let echoes = 0;
      try {
        const port = await server.port();
        echoes = await queueThenServe(lan, lan.server, server, {
          host,
          port,
          bindHost: host,
        });
      } finally {
        const { lines } = await server.stop();
        const [shutdown] = events(lines, "shutdown");
        equal(echoes, REFUSED + 1, "every echo that may leave came back");
        equal(
          await lan.counter(lan.server, `dport ${REFUSED_PORT}`),
          REFUSED,
          "the firewall saw each refused echo once",
        );
        equal(shutdown!.errors, REFUSED);
        equal(shutdown!.echoed, REFUSED + 1);
        equal(shutdown!.received, 2 * REFUSED + 1);
        const errors = events(lines, "error");
        ok(errors.length > 0);
        for (const error of errors) {
          match(error.message as string, /permission denied/);
        }
      }
    },
  );
}

nsTest(
  "--io batch counts an echo to an unreachable network in the middle of a batch once, as unreachable",
  async (lan) => {
    // The peer's datagrams from REFUSED_PORT claim a source the server has
    // no route back to.
    await lan.sh([
      `ip netns exec ${lan.server} sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.${lan.serverLink}.rp_filter=0`,
      `ip netns exec ${lan.peer} nft -f - <<'EOF'
table ip forge {
  chain post {
    type nat hook postrouting priority srcnat;
    udp sport ${REFUSED_PORT} snat to 192.0.2.7
  }
}
EOF`,
    ]);
    await lan.pinNeighbours();
    const server = new NetnsServer(lan.server, [
      "-H",
      "10.1.0.1",
      "--io",
      "batch",
      "--json",
    ], []);
    let echoes = 0;
    try {
      const port = await server.port();
      echoes = await queueThenServe(lan, lan.peer, server, {
        host: "10.1.0.1",
        port,
        bindHost: "10.1.0.2",
      });
    } finally {
      const { lines } = await server.stop();
      const [shutdown] = events(lines, "shutdown");
      equal(echoes, REFUSED + 1);
      equal(shutdown!.errors, REFUSED);
      equal(shutdown!.echoed, REFUSED + 1);
      const errors = events(lines, "error");
      ok(errors.length > 0);
      for (const error of errors) {
        match(error.message as string, /network unreachable/);
      }
    }
  },
);
