import { deepEqual, equal, match } from "node:assert/strict";
import {
  createEventLog,
  type LogOutput,
  printTotals,
  startStatsReport,
} from "./log.ts";
import type { EchoServer, EchoStats, ServerEvent } from "../echo/types.ts";
import { waitUntil } from "../testing/wait.ts";

const LOCAL = { transport: "udp" as const, hostname: "127.0.0.1", port: 7000 };
const PEER = { transport: "udp" as const, hostname: "127.0.0.2", port: 40000 };

function recorder(dropped = 0) {
  const out = { stdout: [] as string[], stderr: [] as string[] };
  const output: LogOutput = {
    line: (text) => out.stdout.push(text),
    error: (error) => out.stderr.push(`error: ${error}`),
    warn: (text) => out.stderr.push(`warning: ${text}`),
    status: (text) => out.stderr.push(text),
    dropped,
  };
  return { out, output };
}

/** An output whose every write throws, as a broken one might; counts the tries. */
function brokenOutput(): { output: LogOutput; tries: () => number } {
  let tries = 0;
  const fail = (): never => {
    tries++;
    throw new Error("No space left on device (os error 28)");
  };
  return {
    output: { line: fail, error: fail, warn: fail, status: fail },
    tries: () => tries,
  };
}

/** An output whose every write throws, as a broken one might. */
const BROKEN: LogOutput = {
  line() {
    throw new Error("No space left on device (os error 28)");
  },
  error() {
    throw new Error("broken");
  },
  warn() {
    throw new Error("broken");
  },
  status() {
    throw new Error("broken");
  },
};

const sendError: ServerEvent = {
  type: "error",
  operation: "send",
  local: LOCAL,
  peer: PEER,
  error: new Deno.errors.NotCapable("Requires net access"),
};

function stats(more: Partial<EchoStats> = {}): EchoStats {
  return {
    received: 5,
    receivedBytes: 50,
    echoed: 5,
    echoedBytes: 50,
    dropped: 0,
    droppedBy: {},
    errors: 0,
    errorsBy: { receive: 0, send: 0 },
    eventsDropped: 0,
    activeSources: 0,
    hostDrops: 0,
    uptimeMs: 1000,
    ...more,
  };
}

Deno.test("createEventLog() folds error lines past the limit into one '... N more errors' line on stderr", () => {
  const { out, output } = recorder();
  const log = createEventLog(output, { json: false, errorsPerSecond: 20 });
  for (let i = 0; i < 50_000; i++) log.log(sendError);
  log.close();
  equal(out.stdout.length, 0);
  equal(out.stderr.length, 21);
  equal(
    out.stderr[0],
    "error: cannot echo to 127.0.0.2:40000: requires net access",
  );
  equal(out.stderr[20], "... 49,980 more errors\n");
});

Deno.test("createEventLog() never throws from its fold timer on a broken output", async () => {
  const broken = brokenOutput();
  const log = createEventLog(broken.output, {
    json: false,
    errorsPerSecond: 0,
  });
  // Folded, not written: the timer writes the fold line, and its throw
  // would fail this test.
  log.log(sendError);
  equal(broken.tries(), 0);
  await waitUntil(() => broken.tries() > 0, "the fold timer wrote");
  log.close();
});

Deno.test("startStatsReport() never throws from its timer on a broken output", async () => {
  const server = { stats: () => stats() } as unknown as EchoServer;
  const broken = brokenOutput();
  const stop = startStatsReport(server, broken.output, {
    seconds: 0.01,
    json: true,
  });
  await waitUntil(() => broken.tries() >= 2, "the timer wrote twice");
  stop();
});

Deno.test("startStatsReport() tells what the log lost", async () => {
  const server = {
    stats: () => stats({ eventsDropped: 2 }),
  } as unknown as EchoServer;
  for (const json of [true, false]) {
    const { out, output } = recorder(3);
    const stop = startStatsReport(server, output, { seconds: 0.01, json });
    await waitUntil(() => out.stdout.length > 0, "a stats line");
    stop();
    const line = out.stdout[0]!;
    if (json) {
      const event = JSON.parse(line);
      deepEqual(
        [event.log_lines_dropped, event.log_events_dropped],
        [3, 2],
      );
    } else {
      match(line, /, 3 log lines dropped, 2 log events dropped$/);
    }
  }
});

Deno.test("printTotals() adds what the log lost, and returns the line even when it cannot write it", () => {
  const { out, output } = recorder(3);
  const text = printTotals(stats({ eventsDropped: 1 }), output, {
    json: false,
  });
  equal(out.stdout[0], text);
  match(text, /up 1\.0 s, 3 log lines dropped, 1 log event dropped$/);
  const json = printTotals(stats(), BROKEN, { json: true });
  const event = JSON.parse(json);
  deepEqual(
    [event.event, event.received, event.log_lines_dropped],
    ["shutdown", 5, 0],
  );
  const quiet = recorder(0);
  printTotals(stats(), quiet.output, { json: false });
  match(quiet.out.stdout[0]!, /errors?, up 1\.0 s$/, "no losses, no words");
});

Deno.test("the totals and the stats line give the kernel's drops at the sockets, or say they are unknown", async () => {
  const { out, output } = recorder(0);
  printTotals(stats({ hostDrops: 7 }), output, { json: false });
  match(out.stdout[0]!, /, 0 errors, host drops 7, up 1\.0 s$/);
  printTotals(
    stats({ hostDrops: null, hostDropsUnknown: "needs --allow-all" }),
    output,
    { json: false },
  );
  match(out.stdout[1]!, /, 0 errors, host drops unknown, up 1\.0 s$/);
  const unknown = JSON.parse(
    printTotals(
      stats({ hostDrops: null, hostDropsUnknown: "needs --allow-all" }),
      output,
      { json: true },
    ),
  );
  deepEqual(
    [unknown.host_drops, unknown.host_drops_unknown_reason],
    [null, "needs --allow-all"],
  );
  const known = JSON.parse(
    printTotals(stats({ hostDrops: 7 }), output, { json: true }),
  );
  deepEqual([known.host_drops, known.host_drops_unknown_reason], [7, null]);
  for (const json of [true, false]) {
    const server = {
      stats: () => stats({ hostDrops: 1234 }),
    } as unknown as EchoServer;
    const lines = recorder(0);
    const stop = startStatsReport(server, lines.output, {
      seconds: 0.01,
      json,
    });
    await waitUntil(() => lines.out.stdout.length > 0, "a stats line");
    stop();
    const line = lines.out.stdout[0]!;
    if (json) equal(JSON.parse(line).host_drops, 1234);
    else match(line, /, 0 active sources, host drops 1,234$/);
  }
});
