import { equal, match } from "node:assert/strict";
import {
  flatCheck,
  formatSamples,
  identityCheck,
  type Sample,
  sumSeries,
  totalsFromMetrics,
  totalsFromShutdown,
} from "./_soak_report.ts";
import { runScript } from "../testing/cli.ts";

const EXPOSITION = `# TYPE udp_echo_received_datagrams_total counter
udp_echo_received_datagrams_total{address="127.0.0.1:1"} 70
udp_echo_received_datagrams_total{address="10.99.0.1:1"} 30
udp_echo_echoed_datagrams_total{address="127.0.0.1:1"} 90
udp_echo_dropped_datagrams_total{reason="low-port"} 6
udp_echo_dropped_datagrams_total{reason="shutdown"} 0
udp_echo_errors_total{address="127.0.0.1:1",operation="send"} 4
udp_echo_active_sources 2
`;

Deno.test("totalsFromMetrics() sums every socket, reason and operation", () => {
  const totals = totalsFromMetrics(EXPOSITION);
  equal(totals.received, 100);
  equal(totals.echoed, 90);
  equal(totals.dropped, 6);
  equal(totals.errors, 4);
  equal(identityCheck("m", totals).ok, true);
  equal(sumSeries(EXPOSITION, "udp_echo_active_sources"), 2);
  equal(Number.isNaN(sumSeries(EXPOSITION, "udp_echo_nothing")), true);
});

Deno.test("identityCheck() fails on one datagram too many, and on no figures", () => {
  const check = identityCheck("totals", {
    received: 101,
    echoed: 90,
    dropped: 6,
    errors: 4,
  });
  equal(check.ok, false);
  match(check.detail, /received 101 ≠ echoed 90/);
  equal(identityCheck("totals", undefined).ok, false);
  // Metrics that lack the received series cannot pass.
  equal(identityCheck("m", totalsFromMetrics("")).ok, false);
});

Deno.test("totalsFromShutdown() reads the last shutdown event, drops summed", () => {
  const stdout = [
    '{"event":"listening","port":1}',
    '{"event":"shutdown","received":10,"echoed":7,"dropped":{"low-port":2,"rate-limited":1},"errors":0}',
    "",
  ].join("\n");
  const totals = totalsFromShutdown(stdout);
  equal(totals?.dropped, 3);
  equal(identityCheck("t", totals).ok, true);
  equal(totalsFromShutdown('{"event":"listening"}\n'), undefined);
});

Deno.test("flatCheck() holds within the tolerance of the first value only", () => {
  equal(flatCheck("rss", [100, 109, 95], 0.1, "MB").ok, true);
  equal(flatCheck("rss", [100, 111], 0.1, "MB").ok, false);
  equal(flatCheck("fds", [40, 35], 0.1, "fds").ok, false);
  const none = flatCheck("fds", [], 0.1, "fds");
  equal(none.ok, false);
  match(none.detail, /no sample/);
});

Deno.test("formatSamples() gives rates per row and the quiet range", () => {
  const samples: Sample[] = [1, 2, 3, 4].map((t) => ({
    t,
    quiet: t !== 3,
    echoes: 100 * t,
    maxGapMs: t === 2 ? 40 : 5,
    spoofed: 50 * t,
    serverReceived: 150 * t,
    server: { rssMb: 80 + t, fds: t === 3 ? 140 : 30 },
  }));
  const lines = formatSamples(samples, 2).split("\n");
  equal(lines.length, 4);
  equal(
    lines[2],
    "| 0–2 | 100 | 40 | 81.0–82.0 | 30 (30) | - | - | 150 | 50 |",
  );
  equal(lines[3], "| 2–4 | 100 | 5 | 84.0 | 30 (140) | - | - | 150 | 50 |");
});

Deno.test("soak.ts refuses a bad flag with exit 2 and one line", async () => {
  const { code, stderr } = await runScript("bench/soak.ts", ["--io", "auto"], {
    permissions: ["--allow-net", "--allow-run", "--allow-read"],
  });
  equal(code, 2);
  equal(stderr, 'error: Cannot use --io "auto": expected batch or socket\n');
});
