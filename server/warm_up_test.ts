/**
 * The server's start-up work (`echo/_warm_up.ts`, `kernel/_echo_warm_up.ts`)
 * is done before its first `listening` line, and none of it shows: the
 * kernel's UDP counters of a private namespace (`/proc/net/snmp`) have
 * risen by the warm-up's datagrams by the time the line is out, while the
 * server's totals and events hold only the one datagram a peer sent after.
 * On the engine they include the datagrams its main thread sent to wake
 * each warm-up engine from a waiting receive.
 *
 * @module
 */

import { equal, ok } from "node:assert/strict";
import {
  SOCKET_WARM_UP_LOOPS,
  SOCKET_WARM_UP_ROUNDS,
} from "../echo/_warm_up.ts";
import { WARM_UP_ENGINES, WARM_UP_ROUNDS } from "../kernel/_echo_warm_up.ts";
import { WAKE_ROUNDS } from "../kernel/_wake_warm_up.ts";
import { events, NetnsServer, nsTest, reportSkip } from "../testing/netns.ts";
import { udpCounters } from "../testing/snmp.ts";

reportSkip("the server's start-up work against /proc/net/snmp");

/** Datagrams the kernel delivers for the warm-up, at least, per backend. */
const WARM_UP_DATAGRAMS = {
  // Each engine receives every echo it sends itself, and before those the
  // datagrams the main thread sends it while it waits.
  batch: WARM_UP_ENGINES * (WARM_UP_ROUNDS + WAKE_ROUNDS),
  // The loop receives each request and the peer each echo.
  socket: SOCKET_WARM_UP_LOOPS * SOCKET_WARM_UP_ROUNDS * 2,
};

for (const io of ["batch", "socket"] as const) {
  for (const stamp of [false, true]) {
    nsTest(
      `server.ts --io ${io}${
        stamp ? " --stamp" : ""
      } does its start-up work before it says it is listening, counting none of it`,
      async (lan) => {
        const before = (await udpCounters(lan.server)).InDatagrams!;
        const server = new NetnsServer(
          lan.server,
          [
            "-H",
            "10.1.0.1",
            "--io",
            io,
            "--json",
            ...(stamp ? ["--stamp"] : []),
          ],
          [],
          { quiet: false },
        );
        let lines: string[];
        try {
          const port = await server.port();
          const warmed = (await udpCounters(lan.server)).InDatagrams! - before;
          ok(
            warmed >= WARM_UP_DATAGRAMS[io],
            `${warmed} datagrams delivered before the listening line, expected at least ${
              WARM_UP_DATAGRAMS[io]
            }`,
          );
          // "ping" is too short for STAMP: dropped, so no reply to wait for.
          const replies = await lan.ping(
            lan.peer,
            "10.1.0.1",
            port,
            stamp ? 0 : 1,
          );
          equal(replies.length, stamp ? 0 : 1);
        } finally {
          ({ lines } = await server.stop());
        }
        const [totals] = events(lines, "shutdown");
        equal(totals?.received, 1, "only the peer's datagram is counted");
        equal(totals?.echoed, stamp ? 0 : 1);
        equal(totals?.errors, 0);
        const datagrams = [
          ...events(lines, "datagram"),
          ...events(lines, "dropped"),
        ];
        equal(datagrams.length, 1, "only the peer's datagram has an event");
        ok(String(datagrams[0]?.from).startsWith("10.1.0.2:"), "from the peer");
      },
    );
  }
}
