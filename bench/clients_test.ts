import { deepEqual, equal, ok } from "node:assert/strict";
import {
  type ClientSpec,
  clientSpecs,
  runClient,
  runPacing,
} from "./clients.ts";
import { buildC, type CTools } from "./native.ts";

const HAS_CC = await new Deno.Command("cc", { args: ["--version"] }).output()
  .then((o) => o.success, () => false);
const IGNORE = !HAS_CC;
if (IGNORE) console.error("skipped: bench C tools (cc not found)");

/** Builds the C tools into a fresh folder; `mktemp` and `rm` make and remove it, as tests may not write. */
async function withC(body: (c: CTools) => Promise<void>): Promise<void> {
  const made = await new Deno.Command("mktemp", {
    args: ["-d", "-t", "udp-echo-bench-test-XXXXXX"],
    stdout: "piped",
  }).output();
  const dir = new TextDecoder().decode(made.stdout).trim();
  ok(made.success && dir, "mktemp -d failed");
  try {
    await body(await buildC(dir));
  } finally {
    await new Deno.Command("rm", { args: ["-rf", dir] }).output();
  }
}

Deno.test("clientSpecs() runs client.ts per --io mode only when it has the flag", () => {
  deepEqual(clientSpecs(false).map((s) => [s.name, s.reference]), [
    ["C udp_loadgen", undefined],
    ["C udp_loadgen, kernel stamps", undefined],
    ["client.ts", "C udp_loadgen"],
  ]);
  // Each client.ts row is judged against the C client that times as it does.
  deepEqual(clientSpecs(true).map((s) => [s.name, s.flags, s.reference]), [
    ["C udp_loadgen", [], undefined],
    ["C udp_loadgen, kernel stamps", ["kernel"], undefined],
    ["client.ts --io socket", ["--io", "socket"], "C udp_loadgen"],
    ["client.ts --io batch", ["--io", "batch"], "C udp_loadgen, kernel stamps"],
  ]);
});

Deno.test({
  name:
    "runPacing() gets a kernel arrival time for every datagram the C sender and client.ts send",
  ignore: IGNORE,
  fn: () =>
    withC(async (c) => {
      const senders: ClientSpec[] = [
        { name: "C paced sender", kind: "c", flags: [] },
        ...clientSpecs(false).filter((spec) => spec.kind === "deno"),
      ];
      for (const spec of senders) {
        const stats = await runPacing(spec, c, "127.0.0.1", {
          count: 30,
          intervalMs: 2,
          size: 64,
        });
        equal(stats.received, 30, spec.name);
        equal(stats.gaps, 29, spec.name);
        ok(stats.within >= 0 && stats.within <= 1, spec.name);
      }
    }),
});

Deno.test({
  name:
    "runClient() reads the C client and client.ts --json against the C echo server",
  ignore: IGNORE,
  fn: () =>
    withC(async (c) => {
      const echo = new Deno.Command(c.echo_mmsg, {
        args: ["127.0.0.1", "0"],
        stdout: "piped",
      }).spawn();
      const reader = echo.stdout.pipeThrough(new TextDecoderStream())
        .getReader();
      try {
        const { value } = await reader.read();
        const port = Number(value!.match(/listening (\d+)/)![1]);
        for (const spec of clientSpecs(false)) {
          const sample = await runClient(spec, c, {
            host: "127.0.0.1",
            port,
          }, { window: 4, size: 64, duration: 0.3, warmup: 0.1 });
          ok(sample.rate > 0, spec.name);
          ok(sample.min > 0 && sample.min <= sample.p50, spec.name);
          equal(sample.corrupt, 0, spec.name);
          equal(sample.lost, 0, spec.name);
        }
      } finally {
        echo.kill("SIGTERM");
        await echo.status;
        await reader.cancel();
      }
    }),
});
