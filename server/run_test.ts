import { equal, match } from "node:assert/strict";
import { createOutput, type Sink } from "../cli/output.ts";
import { resolveHosts } from "./hosts.ts";
import { runServer } from "./run.ts";

function recorder(): Sink & { text(): string } {
  const chunks: string[] = [];
  const decoder = new TextDecoder();
  return {
    writeSync(bytes) {
      chunks.push(decoder.decode(bytes));
      return bytes.length;
    },
    isTerminal: () => false,
    text: () => chunks.join(""),
  };
}

for (const io of ["socket", "batch"] as const) {
  // The program listens for stop signals before it starts the server and
  // passes a stop that came during start-up in.
  Deno.test(`runServer() --io ${io}: a stop that came during start-up stops the server once bound, with totals`, async () => {
    const stdout = recorder();
    const stderr = recorder();
    const output = createOutput({ stdout, stderr });
    const { failed } = await runServer({
      hosts: await resolveHosts(["127.0.0.1"]),
      port: 0,
      io,
      policy: {},
      json: true,
      quiet: true,
      rateIsDefault: true,
      rateFlags: [],
      signal: AbortSignal.abort(),
    }, output);
    equal(failed, false);
    equal(stderr.text(), "");
    const events = stdout.text().trim().split("\n").map((line) =>
      JSON.parse(line).event
    );
    equal(events[0], "listening");
    equal(events.at(-1), "shutdown");
    match(stdout.text(), /"received":0,/);
  });
}
