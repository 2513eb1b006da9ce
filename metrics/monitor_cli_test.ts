import { equal, match, ok } from "node:assert/strict";
import { runScript, spawnScript } from "../testing/cli.ts";
import {
  fetchText,
  hasProgram,
  promtoolCheck,
  sample,
  startEchoSocket,
  startScript,
} from "../testing/metrics.ts";
import { waitUntil } from "../testing/wait.ts";

const HAS_PROMTOOL = hasProgram("promtool");
if (!HAS_PROMTOOL) {
  console.log(
    "skipping promtool checks: promtool is not installed (apt-get install prometheus)",
  );
}

/**
 * What a monitor needs to read its file descriptor limit and to list the
 * interfaces for /probe's policy; without them it warns at start.
 */
const MONITOR_PERMISSIONS = [
  "--allow-net",
  "--allow-ffi",
  "--allow-sys=networkInterfaces,hostname",
];

/** This host's name, as Deno.hostname() gives it on Linux. */
function hostName(): string {
  const { stdout } = new Deno.Command("uname", { args: ["-n"] }).outputSync();
  return new TextDecoder().decode(stdout).trim();
}

function closedPort(): number {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const { port } = conn.addr as Deno.NetAddr;
  conn.close();
  return port;
}

Deno.test("client.ts --metrics monitors each target: /metrics and /probe pass promtool, SIGTERM ends it with exit 0", async () => {
  const echo = startEchoSocket();
  const dead = closedPort();
  const monitor = startScript("client.ts", [
    "-H",
    "127.0.0.1",
    "-p",
    String(echo.port),
    "-i",
    "50",
    // No probe here may be lost: a busy machine must not make one late.
    "-t",
    "1000",
    "--ndjson",
    "--metrics",
    "127.0.0.1:0",
  ], MONITOR_PERMISSIONS);
  // The default node label, read as the test may (no --allow-sys here).
  const node = hostName();
  try {
    const header = JSON.parse(
      (await monitor.waitFor(/^(\{"event":"monitor".*)\n/m))[1]!,
    );
    const url: string = header.metrics;
    match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    equal(header.node, node);
    const target = `target="127.0.0.1:${echo.port}",flow="0",node="${node}"`;
    await monitor.waitFor(/"event":"reply".*"seq":4,/);
    const { status, text } = await fetchText(url);
    equal(status, 200);
    ok(sample(text, `udp_echo_probes_received_total{${target}}`) >= 5);
    equal(sample(text, `udp_echo_probes_lost_total{${target}}`), 0);
    equal(sample(text, `udp_echo_probe_up{${target}}`), 1);
    equal(
      sample(text, `udp_echo_probe_rtt_seconds_bucket{le="10",${target}}`),
      sample(text, `udp_echo_probes_received_total{${target}}`),
    );
    equal(
      sample(
        text,
        `udp_echo_probe_rtt_seconds_bucket{le="0.00005",${target}}`,
      ) >= 0,
      true,
    );
    if (HAS_PROMTOOL) equal(await promtoolCheck(text), "");

    const base = url.replace(/\/metrics$/, "");
    const probe = await fetchText(
      `${base}/probe?target=127.0.0.1:${echo.port}&count=5`,
    );
    equal(probe.status, 200);
    equal(sample(probe.text, `udp_echo_probes_received_total{${target}}`), 5);
    equal(sample(probe.text, `probe_success{node="${node}"}`), 1);
    if (HAS_PROMTOOL) equal(await promtoolCheck(probe.text), "");
    const down = await fetchText(
      `${base}/probe?target=127.0.0.1:${dead}&count=2`,
    );
    equal(
      sample(
        down.text,
        `udp_echo_probes_lost_total{target="127.0.0.1:${dead}",flow="0",node="${node}"}`,
      ),
      2,
    );
    equal(sample(down.text, `probe_success{node="${node}"}`), 0);
    for (
      const query of [
        "",
        "target=127.0.0.1",
        "target=127.0.0.1:1&count=0",
        "target=127.0.0.1:1&count=101",
        "target=no.such.host.invalid:7",
      ]
    ) {
      const bad = await fetchText(`${base}/probe?${query}`);
      equal(bad.status, 400, query);
      match(bad.text, /^Cannot probe[^\n]*\n$/, query);
    }
  } finally {
    const { code, stderr } = await monitor.stop("SIGTERM");
    await echo.close();
    equal(code, 0);
    equal(stderr, "");
  }
});

Deno.test("client.ts --metrics keeps probing when stdout closes, with one line on stderr", async () => {
  const echo = startEchoSocket();
  const child = spawnScript("client.ts", [
    "-H",
    "127.0.0.1",
    "-p",
    String(echo.port),
    "-i",
    "20",
    "--metrics",
    "0",
  ], { permissions: MONITOR_PERMISSIONS });
  let stderr = "";
  const errors = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const readStderr = async () => {
    const { value, done } = await errors.read();
    stderr += value ?? "";
    return !done;
  };
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    let text = "";
    while (!/metrics on (\S+)\n/.test(text)) {
      text += (await reader.read()).value ?? "";
    }
    const url = /metrics on (\S+)\n/.exec(text)![1]!;
    await reader.cancel(); // the reader leaves: stdout is closed
    // Its next line finds stdout closed and says so.
    while (!stderr.includes("\n") && await readStderr()) { /* reading */ }
    const sentAt = async () =>
      sample(
        (await fetchText(url)).text,
        `udp_echo_probes_sent_total{target="127.0.0.1:${echo.port}",flow="0",node="${hostName()}"}`,
      );
    const before = await sentAt();
    await waitUntil(async () => await sentAt() > before, "it probes on");
  } finally {
    child.kill("SIGINT");
    const { code } = await child.status;
    while (await readStderr()) { /* to the end */ }
    await echo.close();
    equal(code, 0);
    const lines = stderr.split("\n").filter(Boolean);
    equal(lines.length, 1, lines.join("\n"));
    match(lines[0]!, /^error: cannot write to standard output/);
  }
});

Deno.test("client.ts --metrics refuses a bad value and the flags of a finite run (exit 2)", async () => {
  const cases: [string[], RegExp][] = [
    [["--metrics", "x"], /cannot use --metrics "x": expected PORT, HOST:PORT/],
    [["--metrics", "0", "-c", "5"], /cannot use --count with --metrics/],
    [["--metrics", "0", "--json"], /cannot use --json with --metrics/],
    [["--metrics", "0", "-i", "0"], /a monitor probes at most every 0\.1 ms/],
    [
      ["-H", "127.0.0.1", "-H", "::1", "-c", "1"],
      /cannot use --host more than once without --metrics/,
    ],
  ];
  for (const [args, message] of cases) {
    const { code, stdout, stderr } = await runScript("client.ts", args);
    equal(code, 2, args.join(" "));
    equal(stdout, "");
    match(stderr, message);
  }
});

Deno.test("client.ts --metrics on a port in use names the address and exits 1", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { code, stderr } = await runScript("client.ts", [
    "--node",
    "n1",
    "--metrics",
    String(taken.addr.port),
  ]);
  equal(code, 1);
  equal(
    stderr,
    `error: cannot serve metrics on 127.0.0.1:${taken.addr.port}: address already in use\n`,
  );
});
