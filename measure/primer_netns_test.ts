/**
 * Right before probe 0 each probe socket sends itself an empty datagram
 * (`docs/client.md`, "Probe 0 is not timed cold"). A host firewall may drop
 * it; the client then waits a while for it, and a stop (Ctrl-C) must end
 * that wait at once, not when it runs out. nftables drops the datagram in
 * the client's namespace, and its counter shows it did. Needs root, `ip`
 * and `nft`; else the test says it was skipped and why.
 *
 * @module
 */

import { equal, match, ok } from "node:assert/strict";
import { NetnsServer, nsTest, reportSkip } from "../testing/netns.ts";
import { spawnScript } from "../testing/cli.ts";
import { loadNft } from "../testing/command.ts";

reportSkip("the client's datagram to itself, dropped by a firewall");

/** The client's port: fixed, so nftables can drop what it sends itself. */
const CLIENT_PORT = 7777;
/**
 * The longest a stopped client may take to end, in ms: a Deno process
 * ends in a fraction of it; the wait for the dropped datagram is 1000 ms.
 */
const STOP_MS = 700;

nsTest(
  "client.ts --io socket ends at once on SIGINT while its datagram to itself is dropped",
  async (lan) => {
    await loadNft(
      lan.peer,
      `table inet primer {
        chain in {
          type filter hook input priority 0;
          udp sport ${CLIENT_PORT} udp dport ${CLIENT_PORT} counter drop
        }
      }`,
    );
    const server = new NetnsServer(
      lan.server,
      ["-H", "10.1.0.1", "-p", "7000"],
      [],
    );
    const client = spawnScript("client.ts", [
      "-H",
      "10.1.0.1",
      "-p",
      "7000",
      "--io",
      "socket",
      "--bind",
      `10.1.0.2:${CLIENT_PORT}`,
      "-c",
      "1",
    ], { namespace: lan.peer });
    const stderr = new Response(client.stderr).text();
    const stdout = new Response(client.stdout).text();
    try {
      // The datagram to itself leaves right after the io: line (which a
      // pipe may hold back): the counter shows the firewall took it.
      while (await lan.counter(lan.peer, "counter") === 0) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const stoppedAt = performance.now();
      client.kill("SIGINT");
      const status = await client.status;
      const took = performance.now() - stoppedAt;
      const text = await stdout;
      ok(took < STOP_MS, `client.ts took ${took} ms to end after SIGINT`);
      // Stopped before probe 0: nothing sent, which is a failed run.
      match(text, /\b0 sent\b/);
      equal(status.code, 1, await stderr);
    } finally {
      try {
        client.kill("SIGKILL");
      } catch {
        // Already ended.
      }
      await client.status;
      await server.stop();
    }
  },
);
