/**
 * The server's count of datagrams its own receive buffer dropped, on both
 * backends, against the ground truth of the namespace's `RcvbufErrors`
 * (`/proc/net/snmp`): the server is stopped (SIGSTOP) while a peer floods
 * it, so its socket's buffer overflows, then goes on (SIGCONT). Its stats
 * line, its metrics and its totals must give the kernel's count; without
 * `--allow-all` the socket backend must say it cannot know. Needs root,
 * `ip` and `nft`; else each test says it was skipped and why.
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
import { udpCounters } from "../testing/snmp.ts";

reportSkip("server host drop tests");

/** Datagrams of the flood: far more than a default receive buffer holds. */
const FLOOD = 3000;

// Sends `count` datagrams of 64 bytes to host:port, then says "sent".
const FLOODER = `
const [host, port, count] = Deno.args;
const conn = Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port: 0 });
const to = { transport: "udp", hostname: host, port: Number(port) };
const data = new Uint8Array(64);
for (let i = 0; i < Number(count); i++) await conn.send(data, to);
conn.close();
console.log("sent");
`;

// Prints the body of http://127.0.0.1:port/metrics.
const SCRAPE = `
const response = await fetch("http://127.0.0.1:" + Deno.args[0] + "/metrics");
console.log(await response.text());
`;

/** `server` stopped, flooded from the peer, and going on again. */
async function floodStopped(lan: Lan, server: NetnsServer, port: number) {
  Deno.kill(server.pid, "SIGSTOP");
  try {
    const { stdout, stderr } = await lan.deno(lan.peer, FLOODER, [
      "10.1.0.1",
      String(port),
      String(FLOOD),
    ]);
    equal(stdout.trim(), "sent", stderr);
  } finally {
    Deno.kill(server.pid, "SIGCONT");
  }
}

for (const io of ["batch", "socket"] as const) {
  nsTest(
    `server.ts --io ${io} counts what its receive buffer dropped as the kernel does, in its stats, metrics and totals`,
    async (lan) => {
      const server = new NetnsServer(lan.server, [
        "-H",
        "10.1.0.1",
        "--io",
        io,
        "--json",
        "--rate",
        "0",
        "--stats-interval",
        "0.05",
        "--metrics",
        "127.0.0.1:0",
      ], io === "socket" ? ["--allow-all"] : []);
      try {
        const port = await server.port();
        const metrics = JSON.parse(
          await server.waitForLine((line) => line.includes('"metrics"')),
        ).port;
        const before = await udpCounters(lan.server);
        await floodStopped(lan, server, port);
        // Every datagram was either read or dropped: the line that says so.
        const settled = JSON.parse(
          await server.waitForLine((line) => {
            if (!line.startsWith('{"event":"stats"')) return false;
            const stats = JSON.parse(line);
            return stats.received + stats.host_drops === FLOOD;
          }),
        );
        const dropped = (await udpCounters(lan.server)).RcvbufErrors! -
          before.RcvbufErrors!;
        ok(dropped > 0, "the stopped server's buffer overflowed");
        equal(settled.host_drops, dropped);
        equal(settled.host_drops_unknown_reason, null);
        const { stdout } = await lan.deno(lan.server, SCRAPE, [
          String(metrics),
        ]);
        match(
          stdout,
          new RegExp(
            `^udp_echo_receive_buffer_drops_total\\{address="10\\.1\\.0\\.1:${port}"\\} ${dropped}$`,
            "m",
          ),
        );
        const { lines } = await server.stop();
        const [shutdown] = events(lines, "shutdown");
        equal(shutdown!.host_drops, dropped);
        equal(shutdown!.received, FLOOD - dropped);
        equal(
          (await udpCounters(lan.server)).RcvbufErrors! - before.RcvbufErrors!,
          dropped,
          "nothing dropped after the count",
        );
      } finally {
        await server.stop();
      }
    },
  );
}

nsTest(
  "server.ts --io socket without --allow-all says its host drops are unknown, and why",
  async (lan) => {
    const server = new NetnsServer(lan.server, [
      "-H",
      "10.1.0.1",
      "--io",
      "socket",
      "--json",
    ], []);
    try {
      await server.port();
      const { lines } = await server.stop();
      const [shutdown] = events(lines, "shutdown");
      equal(shutdown!.host_drops, null);
      match(
        shutdown!.host_drops_unknown_reason as string,
        /^needs --allow-all/,
      );
    } finally {
      await server.stop();
    }
  },
);
