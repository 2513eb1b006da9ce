/**
 * The accounting examples end to end, through `client.ts --json` as
 * a user runs it: late duplicates and echoes cut short.
 *
 * @module
 */

import { deepEqual, equal } from "node:assert/strict";
import { runScript } from "../testing/cli.ts";
import {
  startFaultyEcho,
  startTruncatingEcho,
} from "../testing/fault_relay.ts";

/** Both I/O modes run the same behaviour suites. */
const IO_MODES = ["socket", "batch"] as const;
/** What the kernel engine needs granted. */
const ENGINE_PERMISSIONS = ["--allow-net", "--allow-ffi", "--allow-read"];

async function measure(
  port: number,
  args: string[],
  io: (typeof IO_MODES)[number] = "socket",
) {
  const { code, stdout, stderr } = await runScript("client.ts", [
    "-H",
    "127.0.0.1",
    "-p",
    `${port}`,
    "--json",
    "--io",
    io,
    ...args,
  ], { permissions: io === "batch" ? ENGINE_PERMISSIONS : ["--allow-net"] });
  equal(stderr, "");
  const document = JSON.parse(stdout);
  equal(document.io.backend, io);
  return { code, document };
}

for (const io of IO_MODES) {
  Deno.test(`client.ts counts copies of each echo that come 50 ms after it [${io}]`, async () => {
    await using relay = startFaultyEcho([{
      direction: "reply",
      select: () => true,
      action: { type: "duplicate", delayMs: 50 },
    }]);
    const one = await measure(relay.target.port, ["-c", "1"], io);
    deepEqual([one.document.received, one.document.duplicates], [1, 1]);
    equal(one.code, 0);
    const load = await measure(relay.target.port, ["-w", "2", "-c", "20"], io);
    deepEqual([load.document.received, load.document.duplicates], [20, 20]);
    equal(load.code, 0);
  });
}

for (const io of IO_MODES) {
  Deno.test(`client.ts counts echoes cut to 16 bytes as truncated, not ignored [${io}]`, async () => {
    await using peer = startTruncatingEcho(16);
    for (const mode of [["-c", "3", "-i", "20"], ["-w", "3", "-c", "3"]]) {
      const { code, document } = await measure(peer.target.port, [
        ...mode,
        "-t",
        "100",
        "--wait",
        "200",
      ], io);
      deepEqual(
        [
          document.sent,
          document.received,
          document.lost,
          document.truncated,
          document.corrupted,
          document.ignored,
        ],
        [3, 0, 0, 3, 3, 0],
        mode.join(" "),
      );
      equal(document.loss_percent, 100);
      equal(code, 1);
    }
  });
}
