import { deepEqual, equal, match, ok } from "node:assert/strict";
import { serveEcho } from "../server.ts";
import { type Output, ROOT, runScript, spawnScript } from "../testing/cli.ts";
import { startEcho } from "../testing/echo.ts";
import { at, startFaultyEcho } from "../testing/fault_relay.ts";

/** Runs client.ts as a user would and collects what they would see. */
function client(args: string[]): Promise<Output> {
  return runScript("client.ts", args);
}

Deno.test("client.ts -c pings with ping-style lines and a summary", async () => {
  await using server = startEcho();
  const { code, stdout, stderr } = await client([
    "-H",
    "127.0.0.1",
    "-p",
    `${server.port}`,
    "-c",
    "5",
    "-i",
    "10",
  ]);
  equal(stderr, "");
  equal(code, 0);
  const lines = stdout.split("\n");
  equal(lines[0], `PING 127.0.0.1:${server.port}: 64-byte probes, every 10 ms`);
  equal(lines[1], "io: socket (--allow-ffi not granted)");
  for (let seq = 0; seq < 5; seq++) {
    match(
      lines[seq + 2]!,
      new RegExp(
        `^64 bytes from 127\\.0\\.0\\.1:${server.port}: seq=${seq} time=\\d+\\.\\d{4} ms$`,
      ),
    );
  }
  ok(stdout.includes(
    "5 sent, 5 received, 0 lost, 0 duplicates, 0 reordered, 0 corrupted, 0.0% without intact reply",
  ));
  ok(stdout.includes("rtt histogram (ms):"));
});

Deno.test("client.ts --json prints one document whose counts match the relay", async () => {
  await using relay = startFaultyEcho([
    { select: at(2, 9), action: { type: "drop" } },
    { select: at(4), action: { type: "duplicate" } },
    { select: at(6), action: { type: "corrupt" } },
    { select: at(12), action: { type: "reorder" } },
  ]);
  const args = [
    "-H",
    "127.0.0.1",
    "-p",
    `${relay.target.port}`,
    "-c",
    "20",
    "-i",
    "3",
    "--wait",
    "300",
    "--json",
  ];
  const { code, stdout, stderr } = await client([...args, "--max-loss", "15"]);
  equal(stderr, "");
  const document = JSON.parse(stdout);
  equal(document.schema, "udp-echo.measure/1.3");
  equal(document.mode, "ping");
  equal(document.target.address, `127.0.0.1:${relay.target.port}`);
  deepEqual(
    [
      document.sent,
      document.received,
      document.lost,
      document.duplicates,
      document.reordered,
      document.corrupted,
    ],
    [20, 17, 2, 1, 1, 1],
  );
  const { stats } = relay;
  deepEqual(
    [stats.dropped, stats.duplicated, stats.reordered, stats.corrupted],
    [
      document.lost,
      document.duplicates,
      document.reordered,
      document.corrupted,
    ],
  );
  equal(document.loss_percent, 15);
  equal(code, 0, "15% without an intact reply is within --max-loss 15");
  for (const key of ["min", "mean", "median", "max", "p90", "p99", "p999"]) {
    equal(typeof document.rtt_ms[key], "number", key);
  }
  equal(typeof document.jitter_ms.rfc3550, "number");
});

Deno.test("client.ts exits 1 when loss exceeds --max-loss", async () => {
  await using relay = startFaultyEcho([
    { select: at(1), action: { type: "drop" } },
  ]);
  const { code, stdout } = await client([
    "-H",
    "127.0.0.1",
    "-p",
    `${relay.target.port}`,
    "-c",
    "4",
    "-i",
    "5",
    "--wait",
    "200",
    "-q",
  ]);
  equal(code, 1);
  ok(stdout.includes("4 sent, 3 received, 1 lost"));
  equal(stdout.includes("bytes from"), false, "-q leaves only the summary");
});

Deno.test("client.ts --ndjson streams one event per reply and the summary last", async () => {
  await using server = startEcho();
  const { code, stdout } = await client([
    "-H",
    "127.0.0.1",
    "-p",
    `${server.port}`,
    "-c",
    "4",
    "-i",
    "5",
    "--ndjson",
  ]);
  equal(code, 0);
  const events = stdout.trim().split("\n").map((line) => JSON.parse(line));
  deepEqual(events.map((event) => event.event), [
    "reply",
    "reply",
    "reply",
    "reply",
    "summary",
  ]);
  deepEqual(events.slice(0, 4).map((event) => event.seq).sort(), [0, 1, 2, 3]);
  equal(events[4].schema, "udp-echo.measure/1.3");
  equal(events[4].received, 4);
});

Deno.test("client.ts -w reports a closed-loop load whose counts match the relay", async () => {
  await using relay = startFaultyEcho([
    { select: at(10), action: { type: "drop" } },
    { select: at(20), action: { type: "duplicate" } },
  ]);
  const { code, stdout } = await client([
    "-H",
    "127.0.0.1",
    "-p",
    `${relay.target.port}`,
    "--json",
    "-w",
    "8",
    "-c",
    "200",
    "-t",
    "200",
  ]);
  const document = JSON.parse(stdout);
  equal(document.mode, "load");
  equal(document.window, 8);
  deepEqual(
    [document.sent, document.received, document.lost, document.duplicates],
    [200, 199, relay.stats.dropped, relay.stats.duplicated],
  );
  ok(document.send_rate.pps > 0 && document.echo_rate.bps > 0);
  equal(code, 1, "one lost probe exceeds the default --max-loss 0");
});

Deno.test("client.ts --rate --flows sends from distinct ports and counts per flow", async () => {
  await using relay = startFaultyEcho([
    { select: at(10), action: { type: "drop" } },
    { select: at(20), action: { type: "duplicate" } },
  ]);
  const { stdout } = await client([
    "-H",
    "127.0.0.1",
    "-p",
    `${relay.target.port}`,
    "--json",
    "--rate",
    "500",
    "-c",
    "50",
    "--flows",
    "3",
    "--wait",
    "300",
  ]);
  const document = JSON.parse(stdout);
  equal(document.interval_ms, 2);
  equal(document.flows.length, 3);
  equal(
    new Set(document.flows.map((flow: { local: string }) => flow.local)).size,
    3,
  );
  // Each flow is its own client to the relay: each loses its 11th probe.
  deepEqual(
    [document.sent, document.lost, document.duplicates],
    [150, relay.stats.dropped, relay.stats.duplicated],
  );
  equal(relay.stats.dropped, 3);
  for (const flow of document.flows) {
    deepEqual([flow.sent, flow.lost, flow.duplicates], [50, 1, 1]);
  }
});

Deno.test("client.ts --sweep finds the limit and tells truncation", async () => {
  await using server = startEcho();
  const plain = await client([
    "-H",
    "127.0.0.1",
    "-p",
    `${server.port}`,
    "--sweep",
    "--json",
  ]);
  equal(plain.code, 0);
  const found = JSON.parse(plain.stdout);
  equal(found.max_payload, 65_507);
  equal(found.failure, null);

  await using relay = startFaultyEcho([{
    direction: "reply",
    select: (d) => d.size > 1200,
    action: { type: "truncate", size: 1200 },
  }]);
  const cut = await client([
    "-H",
    "127.0.0.1",
    "-p",
    `${relay.target.port}`,
    "--sweep",
  ]);
  equal(cut.code, 0);
  ok(cut.stdout.includes("65507 bytes (try 1/3): truncated to 1200 bytes"));
  ok(cut.stdout.includes("largest intact echo: 1200 bytes (limit 65507)"));
  ok(cut.stdout.includes("1201 bytes came back truncated to 1200 bytes"));
});

Deno.test("client.ts -6 measures over ::1 and --bind picks the source", async () => {
  await using server = startEcho("::1");
  const { code, stdout } = await client([
    "-H",
    "::1",
    "-p",
    `${server.port}`,
    "-6",
    "--bind",
    "[::1]",
    "-c",
    "2",
    "-i",
    "5",
    "--json",
  ]);
  equal(code, 0);
  const document = JSON.parse(stdout);
  equal(document.target.family, "IPv6");
  match(document.flows[0].local, /^\[::1\]:\d+$/);
});

Deno.test("client.ts refuses bad measurement flags with exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [["-c", "0"], /^error: cannot use --count "0"/],
    [["-c", "2", "-s", "10"], /^error: cannot use --size "10": expected a/],
    [["-c", "2", "-s", "65508"], /^error: cannot send 65508 bytes/],
    [["--sweep", "-c", "3"], /^error: cannot combine --sweep and --count/],
    [["-w", "2", "--rate", "5"], /^error: cannot combine --window and --rate/],
    [["-c", "1", "--json", "--ndjson"], /^error: cannot combine --json/],
    [["-4", "-H", "::1", "-c", "1"], /^error: cannot use ::1: it is an IPv6/],
    [["-c", "1", "hello"], /^error: cannot send a message in ping mode/],
    [["-c", "1", "-H", "0.0.0.0"], /^error: cannot send to 0\.0\.0\.0: it is/],
    [["-4", "-6", "-c", "1"], /^error: cannot combine -4 and -6/],
    [["--bind", "127.0.0.1", "hi"], /^error: cannot use --bind without/],
    [["--rate", "0", "-c", "1"], /^error: cannot use --rate "0"/],
    [["-w", "4", "--bind", "[::1]:x"], /^error: cannot use --bind "\[::1\]:x"/],
    // A family conflict is a usage error in every mode, the plain echo too.
    [["-4", "-H", "::1"], /^error: cannot use ::1: it is an IPv6 address/],
    [["-6", "-H", "127.0.0.1"], /^error: cannot use 127\.0\.0\.1: it is/],
    [["-6", "-H", "127.0.0.1", "-w", "2"], /^error: cannot use 127\.0/],
    [["-4", "-H", "::1", "--sweep"], /^error: cannot use ::1: it is an/],
    [["-4", "--bind", "[::1]", "-c", "1"], /^error: cannot use ::1: it is/],
    [
      ["--bind", "[::1]", "-H", "127.0.0.1", "-c", "1"],
      /^error: cannot send from ::1 to 127\.0\.0\.1: one is IPv6, the other/,
    ],
    [
      ["--bind", "127.0.0.1", "-H", "localhost", "-6", "-c", "1"],
      /^error: cannot use 127\.0\.0\.1: it is an IPv4 address, not IPv6/,
    ],
    // Flags that would be accepted and do nothing.
    [["-c", "1", "-r", "3"], /^error: cannot use --retries in ping mode/],
    [["-w", "2", "-r", "0"], /^error: cannot use --retries in load mode/],
    [["-q", "--json"], /^error: cannot combine --quiet and --json/],
    [["-c", "1", "-q", "--ndjson"], /^error: cannot combine --quiet and/],
    [["--sweep", "--max-loss", "5"], /^error: cannot use --max-loss with/],
    [
      ["--sweep", "--io", "batch"],
      /^error: cannot use --io batch with --sweep: the sweep runs on sockets$/m,
    ],
    // The same words as server.ts.
    [
      ["-c", "1", "--io", "fast"],
      /^error: cannot use --io "fast": expected auto, socket or batch$/m,
    ],
  ];
  for (const [args, expected] of cases) {
    const { code, stdout, stderr } = await client(["-p", "9", ...args]);
    equal(code, 2, `${args.join(" ")}: ${stderr}`);
    equal(stdout, "");
    match(stderr, expected);
    equal(stderr.trim().split("\n").length, 1);
  }
});

const SOCAT = (() => {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/socat`).isFile) return `${dir}/socat`;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
})();

Deno.test({
  name: "client.ts pings and sweeps socat, a third-party echo server" +
    (SOCAT ? "" : " (skipped: socat is not installed)"),
  ignore: SOCAT === undefined,
  async fn() {
    // Find a free port, then let socat bind it.
    const probe = Deno.listenDatagram({
      hostname: "127.0.0.1",
      port: 0,
      transport: "udp",
    });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const socat = new Deno.Command(SOCAT!, {
      args: [`UDP4-RECVFROM:${port},bind=127.0.0.1,fork`, "PIPE"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      let ping: Output | undefined;
      // socat needs a moment to bind; a few quick tries beat a fixed sleep.
      for (let i = 0; i < 20; i++) {
        ping = await client([
          "-H",
          "127.0.0.1",
          "-p",
          `${port}`,
          "-c",
          "5",
          "-i",
          "10",
          "--wait",
          "200",
          "--json",
        ]);
        if (ping.code === 0) break;
      }
      const document = JSON.parse(ping!.stdout);
      deepEqual([document.sent, document.received], [5, 5]);
      const sweep = JSON.parse(
        (await client([
          "-H",
          "127.0.0.1",
          "-p",
          `${port}`,
          "--sweep",
          "--json",
        ]))
          .stdout,
      );
      // socat reads into an 8192-byte buffer unless told otherwise (-b).
      equal(sweep.max_payload, 8192);
      deepEqual(sweep.failure, {
        size: 8193,
        reason: "truncated",
        echoed: 8192,
      });
    } finally {
      socat.kill("SIGTERM");
      await socat.status;
    }
  },
});

Deno.test("client.ts stops a ping at SIGINT and still prints the summary", async () => {
  await using server = startEcho();
  const child = spawnScript("client.ts", [
    "-H",
    "127.0.0.1",
    "-p",
    `${server.port}`,
    "-i",
    "20",
  ]);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  while (!stdout.includes("seq=2 ")) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += value;
  }
  child.kill("SIGINT");
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += value;
  }
  await child.stderr.cancel();
  await child.status;
  match(stdout, /--- 127\.0\.0\.1:\d+ udp-echo ping statistics ---/);
  const [, sent, received] = /(\d+) sent, (\d+) received/.exec(stdout)!;
  ok(Number(sent) >= 3);
  ok(Number(received) >= Number(sent) - 1, "at most the probe in flight");
});

Deno.test("client.ts --help lists the measurement flags", async () => {
  const { code, stdout } = await client(["--help"]);
  equal(code, 0);
  for (const flag of ["--count", "--window", "--rate", "--flows", "--sweep"]) {
    ok(stdout.includes(flag), flag);
  }
  ok(stdout.includes("--max-loss PCT"));
});

Deno.test("client.ts refuses --bind with a port for several flows before printing anything", async () => {
  const { code, stdout, stderr } = await runScript("client.ts", [
    "-p",
    "9",
    "--bind",
    "127.0.0.1:5000",
    "--flows",
    "2",
    "-c",
    "1",
  ]);
  equal(stdout, "");
  equal(
    stderr,
    'error: cannot use --bind "127.0.0.1:5000" with --flows 2: each flow needs its own port, so bind port 0\n',
  );
  equal(code, 2);
});

/** A UDP port on 127.0.0.1 held by this process until disposed. */
function takeUdpPort(): { port: number } & Disposable {
  const conn = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  return {
    port: (conn.addr as Deno.NetAddr).port,
    [Symbol.dispose]: () => conn.close(),
  };
}

Deno.test("client.ts names the address and the cause when --bind fails", async () => {
  using taken = takeUdpPort();
  const { port } = taken;
  const text = await client([
    "-p",
    "9",
    "--bind",
    `127.0.0.1:${port}`,
    "-c",
    "1",
  ]);
  equal(
    text.stderr,
    `error: cannot bind 127.0.0.1:${port}: address already in use\n`,
  );
  equal(text.code, 1);
  const json = await client([
    "-p",
    "9",
    "--bind",
    `127.0.0.1:${port}`,
    "-w",
    "2",
    "--json",
  ]);
  equal(json.code, 1);
  const document = JSON.parse(json.stdout);
  equal(
    document.error,
    `cannot bind 127.0.0.1:${port}: address already in use`,
  );
  equal(document.mode, "load");
});

Deno.test("client.ts --io batch names the address and the cause when --bind fails, in one clause each", async () => {
  using taken = takeUdpPort();
  const { port } = taken;
  const { code, stderr } = await runScript("client.ts", [
    "--io",
    "batch",
    "-p",
    "9",
    "--bind",
    `127.0.0.1:${port}`,
    "-c",
    "1",
  ], { permissions: ["--allow-net", "--allow-ffi", "--allow-read"] });
  equal(
    stderr,
    `error: cannot bind 127.0.0.1:${port}: address already in use\n`,
  );
  equal(code, 1);
});

Deno.test("client.ts --json answers a resolution error on stdout in every mode", async () => {
  const args = ["-H", "nosuch.invalid", "-p", "9", "-t", "50"];
  const ping = await client([...args, "-c", "1", "--json"]);
  equal(ping.code, 1);
  match(ping.stderr, /^error: cannot resolve nosuch\.invalid: /);
  const document = JSON.parse(ping.stdout);
  equal(document.schema, "udp-echo.measure/1.3");
  equal(document.mode, "ping");
  equal(document.target.address, "nosuch.invalid:9");
  equal(document.error, ping.stderr.slice("error: ".length).trim());
  const ndjson = await client([...args, "--sweep", "--ndjson"]);
  equal(ndjson.code, 1);
  const events = ndjson.stdout.trim().split("\n").map((l) => JSON.parse(l));
  equal(events.length, 1);
  equal(events[0].event, "error");
  equal(events[0].mode, "sweep");
  const plain = await client([...args, "--json"]);
  equal(plain.code, 1);
  deepEqual(JSON.parse(plain.stdout), {
    event: "error",
    target: "nosuch.invalid:9",
    message: plain.stderr.slice("error: ".length).trim(),
  });
  // A usage error prints nothing on stdout, --json or not.
  const usage = await client([...args, "-c", "0", "--json"]);
  equal(usage.code, 2);
  equal(usage.stdout, "");
});

Deno.test("client.ts stops a ping at a closed stdout with one error line, exit 1", async () => {
  const controller = new AbortController();
  const server = serveEcho({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
  });
  try {
    // `| head -n 2`: the reader leaves after two lines; the ping must not
    // go on for its 100 probes.
    const { code, stdout, stderr } = await new Deno.Command("sh", {
      args: [
        "-c",
        `{ "$0" run --unstable-net --allow-net client.ts -p "$1" -c 100 -i 50; echo "exit $?" >&2; } | head -n 2`,
        Deno.execPath(),
        String(server.addr.port),
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
    }).output();
    const decoder = new TextDecoder();
    equal(code, 0);
    equal(decoder.decode(stdout).split("\n").length, 3);
    equal(
      decoder.decode(stderr),
      "error: cannot write to standard output: broken pipe\nexit 1\n",
    );
  } finally {
    controller.abort();
  }
  // A line a probe: the first write after `head` left fails, a few probes
  // in; half of them leaves `head` seconds to leave on a busy machine.
  const { received } = await server.finished;
  ok(received > 0 && received <= 50, `${received} probes sent`);
});
