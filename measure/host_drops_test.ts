/**
 * The client's count of replies its own receive buffer dropped, apart from
 * the loss on the path, on both I/O modes, against the ground truth of the
 * namespace's `RcvbufErrors` (`/proc/net/snmp`). A reflector of ours holds
 * every reply until the client has sent its last probe; the client is then
 * stopped (SIGSTOP), the reflector sends every reply in one burst, which
 * overflows the client's socket buffer, and the client goes on (SIGCONT).
 * Nothing is lost on the path: every lost probe is a host drop. Needs
 * root, `ip` and `nft`; else each test says it was skipped and why.
 *
 * @module
 */

import { equal, match, ok } from "node:assert/strict";
import { nsTest, reportSkip } from "../testing/netns.ts";
import { runScript, spawnScript, startServer } from "../testing/cli.ts";
import { udpCounters } from "../testing/snmp.ts";
import { BURST_GO, BURST_REFLECTOR } from "../testing/burst_reflector.ts";

reportSkip("client host drop tests");

/** Probes of the run: far more than the client's receive buffer holds. */
const PROBES = 2000;

async function next(lines: AsyncIterator<string>, what: string) {
  const { value, done } = await lines.next();
  ok(!done, `the reflector ended before "${what}"`);
  ok((value as string).startsWith(what), `"${what}", not "${value}"`);
  return value as string;
}

for (const io of ["batch", "socket"] as const) {
  nsTest(
    `client.ts --io ${io} counts the replies its receive buffer dropped as the kernel does, apart from the path's loss`,
    async (lan) => {
      const reflector = lan.spawnDeno(lan.server, BURST_REFLECTOR, [
        String(PROBES),
      ]);
      const port = (await next(reflector.lines, "port ")).slice(5);
      const before = await udpCounters(lan.peer);
      const client = spawnScript("client.ts", [
        "-H",
        "10.1.0.1",
        "-p",
        port,
        "--io",
        io,
        "--rate",
        "1000",
        "-c",
        String(PROBES),
        // Long enough for the stop and the burst however slow the machine.
        "--wait",
        "10000",
        "--json",
      ], { permissions: ["--allow-all"], namespace: lan.peer });
      let stopped = false;
      let burst = false;
      try {
        // A client that ends first (it failed, or its wait ran out) fails
        // the test instead of leaving it waiting.
        const ended = client.status.then(() => {
          throw new Error("client.ts ended before every request was held");
        });
        ended.catch(() => {});
        await Promise.race([next(reflector.lines, "held "), ended]);
        Deno.kill(client.pid, "SIGSTOP");
        stopped = true;
        await lan.deno(lan.server, BURST_GO, [port]);
        burst = true;
        await next(reflector.lines, "sent ");
      } finally {
        if (stopped) Deno.kill(client.pid, "SIGCONT");
        // The reflector ends only on its go.
        if (!burst) await lan.deno(lan.server, BURST_GO, [port]);
      }
      const output = await client.output();
      await reflector.status;
      const text = new TextDecoder().decode(output.stdout);
      const dropped = (await udpCounters(lan.peer)).RcvbufErrors! -
        before.RcvbufErrors!;
      const result = JSON.parse(text);
      ok(dropped > 0, "the stopped client's buffer overflowed");
      equal(result.io.backend, io);
      equal(result.host_drops, dropped);
      equal(result.host_drops_unknown_reason, null);
      equal(result.sent, PROBES);
      // The path lost nothing: every reply came or was dropped at this host.
      equal(result.received + result.host_drops, PROBES);
      equal(result.lost, result.host_drops);
      equal(result.lost_beyond_host_drops, 0);
      if (io === "batch") ok(result.receive_buffer.granted > 0);
      else equal(result.receive_buffer, null);
    },
  );
}

Deno.test("client.ts on sockets without --allow-all says its host drops are unknown, and why", async () => {
  const server = await startServer(["-H", "127.0.0.1", "-p", "0", "-q"]);
  try {
    const { code, stdout, stderr } = await runScript("client.ts", [
      "-H",
      "127.0.0.1",
      "-p",
      String(server.port),
      "--io",
      "socket",
      "-c",
      "2",
      "-i",
      "10",
      "--json",
    ]);
    equal(code, 0, stderr);
    const result = JSON.parse(stdout);
    equal(result.host_drops, null);
    match(result.host_drops_unknown_reason, /^needs --allow-all/);
    equal(result.lost_beyond_host_drops, null);
  } finally {
    await server.stop();
  }
});
