/**
 * The batch engine under stress, each run as a subprocess of its own: the
 * stress needs `--expose-gc`, which the test runner lacks, and descriptor
 * and thread counts are only meaningful in a process nothing else runs in.
 * `deno task stress` runs the same scripts at full scale (3 million
 * datagrams).
 */

import { equal, ok } from "node:assert/strict";
import { FD_SLACK } from "../bench/batch_cycles.ts";

const BENCH = new URL("../bench/", import.meta.url);

async function runJson(
  flags: string[],
  script: string,
  args: string[],
): Promise<Record<string, number>> {
  const { success, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, new URL(script, BENCH).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout);
  ok(success, `${text}${new TextDecoder().decode(stderr)}`);
  return JSON.parse(text);
}

Deno.test("serveBatch() echoes 200,000 datagrams of 0 to 65,527 bytes intact with gc() forced on both sides", async () => {
  const result = await runJson(
    [
      "--v8-flags=--expose-gc",
      "--unstable-net",
      "--allow-net",
      "--allow-ffi",
      "--allow-read",
    ],
    "batch_stress.ts",
    ["--count", "200000", "--gc-every", "1000", "--family", "both"],
  );
  equal(result.corrupted, 0);
  // Every receive and send error (an EFAULT from a moved buffer among
  // them) is counted here.
  equal(result.serverErrors, 0);
  ok(result.intact! >= 200_000, `only ${result.intact} intact`);
  ok(result.empty! > 0, "no zero-length datagram was sent");
  ok(result.largest! > 60_000, `the largest was ${result.largest} bytes`);
  ok(result.clientGcs! > 0 && result.serverGcs! > 0, JSON.stringify(result));
});

Deno.test("serveBatch() started and stopped 200 times leaves no descriptor or thread behind", async () => {
  const result = await runJson(
    ["--unstable-net", "--allow-all"],
    "batch_cycles.ts",
    ["--cycles", "200", "--settle", "15"],
  );
  equal(result.echoes, 400);
  ok(
    result.fdsAfter! <= result.fdsBefore! + FD_SLACK,
    `descriptors: ${result.fdsBefore} before, ${result.fdsAfter} after`,
  );
  ok(
    result.threadsAfter! <= result.threadsBefore!,
    `threads: ${result.threadsBefore} before, ${result.threadsAfter} after`,
  );
});
