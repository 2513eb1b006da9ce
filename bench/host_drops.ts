#!/usr/bin/env -S deno run --allow-all
/**
 * Host drops against the kernel's count: a load run of `client.ts` from
 * one private network namespace to `server.ts` in another (a veth pair),
 * as root, with the `RcvbufErrors` of each namespace (`/proc/net/snmp`)
 * read before and after. Prints the client's summary lines on loss and
 * host drops, the server's totals and both namespaces' counts, so what the
 * client and the server report can be set beside what the kernel counted.
 * Not run in CI.
 *
 * Usage:
 *   deno run --allow-all bench/host_drops.ts [--repo DIR] [--server-io IO]
 *     [--burst N] -- CLIENT-FLAGS…
 *
 * `--repo` runs another checkout's scripts (a "before" run); `--server-io`
 * is the server's `--io` (default batch). `--burst N` replaces the server
 * with a reflector of ours that holds N requests and sends every reply at
 * once while the client is stopped (SIGSTOP), so the client's socket
 * overflows for sure; the client flags then need `-c N`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Lan } from "../testing/netns.ts";
import { udpCounters } from "../testing/snmp.ts";
import { BURST_GO, BURST_REFLECTOR } from "../testing/burst_reflector.ts";
const { values, positionals } = parseArgs({
  args: Deno.args,
  options: {
    repo: { type: "string", default: new URL("..", import.meta.url).pathname },
    "server-io": { type: "string", default: "batch" },
    burst: { type: "string" },
  },
  allowPositionals: true,
});
const repo = values.repo!;

function inNamespace(ns: string, script: string, args: string[]) {
  return new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns,
      Deno.execPath(),
      "run",
      "--allow-all",
      `${repo}/${script}`,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
}

async function firstLine(child: Deno.ChildProcess): Promise<{
  line: string;
  rest: Promise<string>;
}> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`Cannot start: ${text}`);
    text += value;
  }
  const rest = (async () => {
    let more = text;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return more;
      more += value;
    }
  })();
  return { line: text.slice(0, text.indexOf("\n")), rest };
}

const lan = await Lan.open();
try {
  const serverBefore = await udpCounters(lan.server);
  let port: string;
  let stopServer: () => Promise<string>;
  let burst: ReturnType<Lan["spawnDeno"]> | undefined;
  if (values.burst === undefined) {
    const server = inNamespace(lan.server, "server.ts", [
      "-H",
      "10.1.0.1",
      "-p",
      "0",
      "-q",
      "--rate",
      "0",
      "--io",
      values["server-io"]!,
    ]);
    const { line, rest } = await firstLine(server);
    port = /port (\d+)/.exec(line)![1]!;
    stopServer = async () => {
      server.kill("SIGINT");
      await server.status;
      return (await rest).split("\n").filter((l) => l.startsWith("shutting"))
        .join("\n");
    };
  } else {
    burst = lan.spawnDeno(lan.server, BURST_REFLECTOR, [values.burst]);
    port = ((await burst.lines.next()).value as string).slice(5);
    stopServer = async () => {
      await burst!.status;
      return "(the reflector sent every reply in one burst)";
    };
  }
  const peerBefore = await udpCounters(lan.peer);
  const client = inNamespace(lan.peer, "client.ts", [
    "-H",
    "10.1.0.1",
    "-p",
    port,
    ...positionals,
  ]);
  if (burst !== undefined) {
    await burst.lines.next();
    Deno.kill(client.pid, "SIGSTOP");
    await lan.deno(lan.server, BURST_GO, [port]);
    await burst.lines.next();
    Deno.kill(client.pid, "SIGCONT");
  }
  const output = await client.output();
  const peerAfter = await udpCounters(lan.peer);
  const totals = await stopServer();
  const serverAfter = await udpCounters(lan.server);
  const lines = new TextDecoder().decode(output.stdout).split("\n");
  console.log(
    lines.filter((line) =>
      /^io:| sent, |^host drops|^receive buffer/.test(line)
    ).join("\n"),
  );
  console.log(`server: ${totals}`);
  console.log(
    `RcvbufErrors: client namespace +${
      peerAfter.RcvbufErrors! - peerBefore.RcvbufErrors!
    }, server namespace +${
      serverAfter.RcvbufErrors! - serverBefore.RcvbufErrors!
    }`,
  );
} finally {
  await lan.close();
}
