import { deepEqual, equal, ok } from "node:assert/strict";
import type { ReplyEvent, RunResult, SweepResult } from "./modes.ts";
import {
  eventJson,
  formatBits,
  formatLost,
  formatPercent,
  formatReply,
  formatRunSummary,
  formatSweepStep,
  formatSweepSummary,
  JSON_SCHEMA,
  runJson,
  sweepJson,
  toJson,
} from "./report.ts";
import { lossPercent, summarize } from "./stats.ts";

const REPLY: ReplyEvent = {
  type: "reply",
  flow: 1,
  seq: 7,
  bytes: 64,
  rttMs: 1.23456,
  check: "intact",
  duplicate: false,
  reordered: false,
  late: false,
};

const TARGET = { hostname: "::1", port: 10000, family: "IPv6" } as const;

function runResult(): RunResult {
  return {
    target: TARGET,
    size: 64,
    pacing: "interval",
    sent: 10,
    received: 8,
    lost: 1,
    duplicates: 1,
    reordered: 0,
    corrupted: 1,
    sendErrors: 0,
    late: 0,
    truncated: 0,
    ignored: 0,
    rttMs: summarize([1, 2, 3, 4, 5, 6, 7, 8]),
    jitterMs: { ipdv: 1, rfc3550: NaN },
    scheduleMs: { mean: 0.1, max: 0.5, drift: 0.25 },
    sendRate: { pps: 100, bps: 51_200 },
    echoRate: { pps: 80, bps: 40_960 },
    elapsedMs: 100,
    flows: [{
      flow: 0,
      local: { hostname: "::", port: 5000 },
      sent: 10,
      received: 8,
      lost: 1,
      duplicates: 1,
      reordered: 0,
      corrupted: 1,
      sendErrors: 0,
    }],
    rtts: [1, 2, 3, 4, 5, 6, 7, 8],
  };
}

Deno.test("formatReply() marks duplicates, damage, reordering and lateness", () => {
  equal(
    formatReply(REPLY, "[::1]:10000"),
    "64 bytes from [::1]:10000: seq=7 time=1.2346 ms",
  );
  equal(
    formatReply(
      { ...REPLY, duplicate: true, reordered: true, late: true },
      "a:1",
      2,
    ),
    "64 bytes from a:1: flow=1 seq=7 time=1.2346 ms (DUP!) (reordered) (late)",
  );
  equal(
    formatReply({ ...REPLY, bytes: 20, check: "truncated" }, "a:1"),
    "20 bytes from a:1: seq=7 time=1.2346 ms (truncated)",
  );
  equal(
    formatLost({ type: "lost", flow: 0, seq: 3 }, "a:1"),
    "no reply from a:1: seq=3",
  );
});

Deno.test("formatSweepStep() tells truncation from loss", () => {
  const step = {
    type: "sweep",
    size: 9000,
    attempt: 1,
    bytes: 8192,
    rttMs: 0.5,
  } as const;
  equal(
    formatSweepStep({ ...step, outcome: "truncated" }, 3),
    "9000 bytes (try 1/3): truncated to 8192 bytes",
  );
  equal(
    formatSweepStep({ ...step, outcome: "truncated", bytes: 1 }, 3),
    "9000 bytes (try 1/3): truncated to 1 byte",
  );
  equal(
    formatSweepStep({ ...step, outcome: "lost", attempt: 2 }, 3),
    "9000 bytes (try 2/3): no reply",
  );
  equal(
    formatSweepStep({ ...step, outcome: "intact", bytes: 9000 }, 3),
    "9000 bytes (try 1/3): intact, time=0.500 ms",
  );
});

Deno.test("formatBits() and lossPercent() scale and count", () => {
  equal(formatBits(999), "999 bit/s");
  equal(formatBits(51_200), "51.2 kbit/s");
  equal(formatBits(2_500_000_000), "2.5 Gbit/s");
  equal(lossPercent({ sent: 10, received: 8 }), 20);
  ok(Number.isNaN(lossPercent({ sent: 0, received: 0 })));
});

Deno.test("formatRunSummary() reports counts, percentiles, jitter, schedule and rates", () => {
  const text = formatRunSummary(runResult(), "ping").join("\n");
  ok(text.startsWith("--- [::1]:10000 udp-echo ping statistics ---\n"));
  ok(text.includes(
    "10 sent, 8 received, 1 lost, 1 duplicate, 0 reordered, 1 corrupted, 20.0% without intact reply",
  ));
  ok(
    /rtt \(ms\) +1\.0000 +4\.5000 +4\.5000 +8\.0000 +2\.4495 +8\.0000/.test(
      text,
    ),
  );
  ok(text.includes("jitter (ms): mean ipdv 1.000, rfc3550 -"));
  ok(
    /schedule error \(ms\): mean 0\.100, p50 .*, max 0\.500, span \+0\.250%/
      .test(text),
  );
  ok(text.includes("rate: sent 100.0 pps (51.2 kbit/s)"));
  ok(text.includes("rtt histogram (ms):"));
  equal(
    formatRunSummary(runResult(), "load", { histogram: false }).some((line) =>
      line.includes("histogram")
    ),
    false,
  );
});

Deno.test("runJson() has the documented fields, null where nothing was measured", () => {
  const document = JSON.parse(
    toJson(runJson(runResult(), "ping", { settings: { interval_ms: 10 } })),
  );
  equal(document.schema, JSON_SCHEMA);
  equal(document.mode, "ping");
  deepEqual(document.target, {
    address: "[::1]:10000",
    hostname: "::1",
    port: 10000,
    family: "IPv6",
  });
  equal(document.interval_ms, 10);
  deepEqual(
    [
      document.sent,
      document.received,
      document.lost,
      document.duplicates,
      document.reordered,
      document.corrupted,
    ],
    [10, 8, 1, 1, 0, 1],
  );
  deepEqual(Object.keys(document.rtt_ms), [
    "min",
    "mean",
    "median",
    "max",
    "stddev",
    "p90",
    "p99",
    "p999",
  ]);
  deepEqual(document.jitter_ms, { ipdv: 1, rfc3550: null });
  equal(document.send_rate.pps, 100);
  equal(document.flows[0].local, "[::]:5000");
  equal("rtts" in document, false);
});

Deno.test("sweepJson() carries max_payload, the failure and every try", () => {
  const result: SweepResult = {
    target: { hostname: "127.0.0.1", port: 9, family: "IPv4" },
    limit: 65_507,
    maxPayload: 8192,
    failure: { size: 8193, reason: "truncated", echoed: 8192 },
    sent: 2,
    received: 1,
    lost: 0,
    duplicates: 0,
    reordered: 0,
    corrupted: 1,
    sendErrors: 0,
    truncated: 1,
    ignored: 0,
    steps: [{
      type: "sweep",
      size: 8193,
      attempt: 1,
      outcome: "truncated",
      bytes: 8192,
      rttMs: 0.2,
    }],
    rttMs: summarize([0.1]),
  };
  const document = JSON.parse(toJson(sweepJson(result)));
  equal(document.max_payload, 8192);
  deepEqual(document.failure, {
    size: 8193,
    reason: "truncated",
    echoed: 8192,
  });
  deepEqual(document.steps, [{
    event: "sweep",
    size: 8193,
    attempt: 1,
    outcome: "truncated",
    bytes: 8192,
    rtt_ms: 0.2,
  }]);
  deepEqual(document.jitter_ms, { ipdv: null, rfc3550: null });
  ok(
    formatSweepSummary(result).includes(
      "8193 bytes came back truncated to 8192 bytes",
    ),
  );
});

Deno.test("eventJson() names each event", () => {
  equal(eventJson(REPLY).event, "reply");
  deepEqual(eventJson({ type: "lost", flow: 0, seq: 2 }), {
    event: "lost",
    flow: 0,
    seq: 2,
  });
});

Deno.test("formatPercent() never shows a non-zero share as 0.0 or a partial one as 100.0", () => {
  equal(formatPercent(0), "0.0");
  equal(formatPercent(1 / 5000 * 100), "<0.1"); // 1 of 5000 probes: 0.02%
  equal(formatPercent(0.049), "<0.1");
  equal(formatPercent(1 / 1201 * 100), "0.1"); // 0.083% rounds to 0.1
  equal(formatPercent(0.1), "0.1");
  equal(formatPercent(99.96), ">99.9");
  equal(formatPercent(100), "100.0");
  equal(formatPercent(NaN), "-");
});

Deno.test("formatRunSummary() shows a loss of 1 in 5000 as <0.1%, not 0.0%", () => {
  const result = { ...runResult(), sent: 5000, received: 4999, lost: 1 };
  result.duplicates = 0;
  result.corrupted = 0;
  const text = formatRunSummary(result, "ping").join("\n");
  ok(
    text.includes(
      "5000 sent, 4999 received, 1 lost, 0 duplicates, 0 reordered, 0 corrupted, <0.1% without intact reply",
    ),
    text,
  );
});

Deno.test("send errors show in the text summary, the JSON document and the events", () => {
  const result: RunResult = {
    ...runResult(),
    sent: 7,
    received: 7,
    lost: 0,
    duplicates: 0,
    corrupted: 0,
    sendErrors: 3,
    sendError: "operation not permitted",
  };
  result.flows = [{ ...result.flows[0]!, sent: 7, sendErrors: 3 }];
  const text = formatRunSummary(result, "ping").join("\n");
  ok(text.includes("\n3 send errors (operation not permitted)\n"), text);
  ok(text.includes("7 sent, 7 received, 0 lost"), text);
  const document = JSON.parse(toJson(runJson(result, "ping")));
  equal(JSON_SCHEMA, "udp-echo.measure/1.3");
  equal(document.schema, "udp-echo.measure/1.3");
  equal(document.send_errors, 3);
  equal(document.send_error, "operation not permitted");
  equal(document.flows[0].send_errors, 3);
  equal(document.loss_percent, 0);
  equal(JSON.parse(toJson(runJson(runResult(), "ping"))).send_error, null);
  deepEqual(
    eventJson({
      type: "send_error",
      flow: 0,
      seq: 4,
      reason: "operation not permitted",
    }),
    {
      event: "send_error",
      flow: 0,
      seq: 4,
      reason: "operation not permitted",
    },
  );
  equal(
    formatSweepStep({
      type: "sweep",
      size: 20,
      attempt: 2,
      outcome: "unsent",
      bytes: 0,
      rttMs: NaN,
    }, 3),
    "20 bytes (try 2/3): not sent",
  );
});

Deno.test("dropped events show in the text summary and as events_dropped, 0 when none", () => {
  const quiet = JSON.parse(toJson(runJson(runResult(), "load", {})));
  equal(quiet.events_dropped, 0);
  equal(
    formatRunSummary(runResult(), "load").some((line) =>
      line.includes("not shown")
    ),
    false,
  );
  const behind = { ...runResult(), eventsDropped: 42 };
  equal(JSON.parse(toJson(runJson(behind, "load", {}))).events_dropped, 42);
  ok(
    formatRunSummary(behind, "load").some((line) =>
      line.includes("42 events not shown (output fell behind)")
    ),
  );
});

Deno.test("host drops show apart from the loss, and how much of it they explain, in text and JSON", () => {
  const lost = { ...runResult(), sent: 600, received: 3, lost: 597 };
  const text = (result: RunResult) => formatRunSummary(result, "load");
  const json = (result: RunResult) =>
    JSON.parse(toJson(runJson(result, "load")));
  const some = { ...lost, hostDrops: 529 };
  ok(
    text(some).includes(
      "host drops: 529 datagrams dropped by this host's receive buffer, not the path",
    ),
  );
  ok(
    text(some).includes(
      "host drops explain up to 529 of the 597 lost: at least 68 lost on the path or at the server",
    ),
  );
  deepEqual(
    [json(some).host_drops, json(some).lost_beyond_host_drops],
    [529, 68],
  );
  equal(json(some).host_drops_unknown_reason, null);
  const all = { ...lost, hostDrops: 600 };
  ok(
    text(all).includes(
      "host drops explain all 597 lost: the path need have lost none",
    ),
  );
  equal(json(all).lost_beyond_host_drops, 0);
  // Only the client's sockets are read: a server on this host may drop all.
  ok(
    text({ ...lost, hostDrops: 0 }).includes(
      "host drops: 0, the client's receive buffers dropped none of the 597 lost",
    ),
  );
  const unknown = {
    ...lost,
    hostDrops: null,
    hostDropsUnknown: "needs --allow-all",
  };
  ok(
    text(unknown).includes(
      "host drops: unknown (needs --allow-all); the 597 lost may include this host's own drops",
    ),
  );
  deepEqual(
    [json(unknown).host_drops, json(unknown).host_drops_unknown_reason],
    [null, "needs --allow-all"],
  );
  equal(json(unknown).lost_beyond_host_drops, null);
  // No loss, no drops: nothing to say in text.
  const clean = { ...runResult(), lost: 0, hostDrops: 0 };
  equal(text(clean).some((line) => line.includes("host drops")), false);
  equal(json(clean).host_drops, 0);
  const capped = {
    ...clean,
    receiveBuffer: { asked: 800_000, granted: 425_984, capped: true },
  };
  ok(
    text(capped).includes(
      "receive buffer: 425984 bytes, capped by net.core.rmem_max (800000 needed for the rate asked)",
    ),
  );
  deepEqual(json(capped).receive_buffer, {
    asked: 800_000,
    granted: 425_984,
    capped: true,
  });
});
