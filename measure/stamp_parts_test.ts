/**
 * STAMP's one-way parts and the round trip come from the same two
 * timestamps of this host, T1 and T4, on both backends: forward + backward
 * + reflector time is each probe's RTT, to float rounding.
 */
import { equal, ok } from "node:assert/strict";
import { startServer } from "../testing/cli.ts";
import { runFlows } from "./run.ts";
import { StampRun } from "./stamp_report.ts";

/** What `server.ts --io batch` needs besides the network. */
const ENGINE = ["--allow-net", "--allow-ffi", "--allow-read=."];
/** Float rounding of epoch milliseconds stays far below this, in ms. */
const TOLERANCE_MS = 0.001;
const PROBES = 100;

for (const io of ["socket", "batch"] as const) {
  Deno.test(`runFlows({io: "${io}"}) with STAMP: forward + backward + reflector time is every probe's RTT within 1 µs, against server.ts --stamp`, async () => {
    const server = await startServer(
      ["--stamp", "-H", "127.0.0.1", "-p", "0", "-q"],
      "server.ts",
      ENGINE,
    );
    try {
      const stamp = new StampRun({ ssid: 9, tlvs: [] });
      const rtt: number[] = [];
      let ran: string | undefined;
      const result = await runFlows({
        target: { hostname: "127.0.0.1", port: server.port, family: "IPv4" },
        count: PROBES,
        intervalMs: 2,
        timeoutMs: 5000,
        format: stamp.format,
        engineFormat: stamp.engineFormat,
        io,
        onIo: (backend) => ran = backend,
        onEvent: (event) => {
          if (event.type === "reply" && !event.duplicate) {
            rtt[event.seq] = event.rttMs;
          }
        },
      });
      equal(ran, io);
      equal(result.corrupted, 0);
      ok(result.received > PROBES / 2, `${result.received} replies`);
      const log = stamp.logs[0]!;
      let checked = 0;
      const off: string[] = [];
      rtt.forEach((ms, seq) => {
        const parts = log.forward[seq]! + log.backward[seq]! +
          log.reflector[seq]!;
        checked++;
        if (!(Math.abs(parts - ms) <= TOLERANCE_MS)) {
          off.push(`probe ${seq}: parts ${parts} ms, RTT ${ms} ms`);
        }
      });
      equal(checked, result.received);
      equal(off.length, 0, off.slice(0, 5).join("; "));
    } finally {
      await server.stop();
    }
  });
}
