import { deepEqual, equal, ok } from "node:assert/strict";
import { at, type FaultRule, serveFaultRelay } from "../testing/fault_relay.ts";
import {
  fetchText,
  type Running,
  sample,
  scratchDir,
  startScript,
} from "../testing/metrics.ts";
import { waitUntil } from "../testing/wait.ts";
import { Registry } from "prom-client";
import { StampReflector } from "../stamp/reflector.ts";
import { runScript } from "../testing/cli.ts";
import { DirectionalLoss, StampMetrics } from "./stamp_metrics.ts";

const MONITOR_PERMISSIONS = ["--allow-net"];
/** The `node` label every series of the tests' monitors carries. */
const NODE = "test-node";

/**
 * Starts the monitor: `client.ts` with `args` (what to probe, how often),
 * probing with STAMP and serving its metrics on a free port of 127.0.0.1,
 * every series labelled {@linkcode NODE}.
 */
function startStampMonitor(
  args: string[],
  permissions: string[] = MONITOR_PERMISSIONS,
): Running {
  return startScript("client.ts", [
    ...args,
    ...["-t", "2000", "--stamp", "--ndjson", "--node", NODE],
    ...["--metrics", "127.0.0.1:0"],
  ], permissions);
}

/** The monitor's metrics URL, once it has printed it. */
async function metricsUrl(monitor: Running): Promise<string> {
  return (await monitor.waitFor(/"metrics":"(http:[^"]+)"/))[1]!;
}

/**
 * The exposition at `url` once it counts `replies` replies or more in the
 * series labelled `target`: polled, as the monitor probes at its own pace.
 */
async function metricsAfterReplies(
  url: string,
  target: string,
  replies: number,
): Promise<string> {
  let text = "";
  await waitUntil(async () => {
    text = (await fetchText(url)).text;
    return sample(text, `udp_echo_probes_received_total{${target}}`) >=
      replies;
  }, `the monitor has ${replies} replies`);
  return text;
}

/** What a monitor behind a fault relay had seen once it had 12 replies. */
interface RelayedRun {
  /** Its exposition then. */
  text: string;
  /** The labels of its series for the relay's address: node, target, flow 0. */
  target: string;
  /** The datagrams the relay had dropped by then. */
  dropped: number;
  /** The monitor's stderr, the relay's port (which the caller does not know) read as PORT. */
  stderr: string;
}

/**
 * Runs the monitor (with `monitorArgs`, probing every 50 ms) against a
 * reflector (`server.ts` with `reflectorArgs`) behind a relay that applies
 * `rules`, until it has 12 replies; stops both, failing unless each exits 0.
 */
async function monitorThroughRelay(
  reflectorArgs: string[],
  rules: FaultRule[],
  monitorArgs: string[],
): Promise<RelayedRun> {
  const reflector = startScript("server.ts", [
    ...["-H", "127.0.0.1", "-p", "0", "-q"],
    ...reflectorArgs,
  ]);
  const controller = new AbortController();
  let monitor;
  try {
    const port = Number((await reflector.waitFor(/port (\d+)\n/))[1]);
    const relay = serveFaultRelay({
      upstream: { hostname: "127.0.0.1", port },
      rules,
      signal: controller.signal,
    });
    monitor = startStampMonitor([
      ...["-H", "127.0.0.1", "-p", String(relay.addr.port), "-i", "50"],
      ...monitorArgs,
    ]);
    const url = await metricsUrl(monitor);
    const target =
      `node="${NODE}",target="127.0.0.1:${relay.addr.port}",flow="0"`;
    const text = await metricsAfterReplies(url, target, 12);
    const dropped = relay.stats.dropped;
    const { code, stderr } = await monitor.stop();
    monitor = undefined;
    equal(code, 0, stderr);
    return {
      text,
      target,
      dropped,
      stderr: stderr.replaceAll(`:${relay.addr.port} `, ":PORT "),
    };
  } finally {
    if (monitor) equal((await monitor.stop()).code, 0);
    controller.abort();
    equal((await reflector.stop()).code, 0);
  }
}

Deno.test("DirectionalLoss: skipped sender numbers are lost, the reflector's skipped ones forward, the rest backward", () => {
  const loss = new DirectionalLoss();
  // Probe 0 lost forward, probe 2 lost backward, probe 4 forward.
  loss.reply(1, 0);
  loss.reply(3, 2);
  loss.reply(5, 3);
  deepEqual({ forward: loss.forward, backward: loss.backward }, {
    forward: 2,
    backward: 1,
  });
  // A late reply shows nothing; a reflector that restarted starts again
  // (probes 6 to 8 not split), and then probe 10 was lost forward.
  loss.reply(4, 3);
  loss.reply(9, 0);
  loss.reply(11, 1);
  deepEqual({ forward: loss.forward, backward: loss.backward }, {
    forward: 3,
    backward: 1,
  });
});

Deno.test("DirectionalLoss: nothing split until the reflector is seen or said to keep its own numbers", () => {
  const stateless = new DirectionalLoss();
  stateless.reply(0, 0);
  stateless.reply(2, 2);
  deepEqual([stateless.stateful, stateless.forward, stateless.backward], [
    false,
    0,
    0,
  ]);
  const asserted = new DirectionalLoss(true);
  asserted.reply(0, 0);
  asserted.reply(2, 2);
  deepEqual([asserted.stateful, asserted.forward, asserted.backward], [
    true,
    0,
    1,
  ]);
  // Seen later: what the earlier gaps showed counts from then on.
  stateless.reply(4, 3);
  deepEqual([stateless.forward, stateless.backward], [1, 1]);
});

Deno.test("client.ts --metrics --stamp against a stateful reflector: one-way delay histograms, and the probes a relay dropped counted per direction", async () => {
  // Requests 3 and 7 dropped on the way there; the reply to request 10
  // (the 9th that reaches the reflector) on the way back.
  const { text, target, dropped } = await monitorThroughRelay(
    ["--stamp", "--stamp-stateful"],
    [
      { select: at(3, 7), action: { type: "drop" } },
      { direction: "reply", select: at(8), action: { type: "drop" } },
    ],
    [],
  );
  equal(dropped, 3);
  equal(
    sample(text, `udp_echo_stamp_lost_total{${target},direction="forward"}`),
    2,
  );
  equal(
    sample(
      text,
      `udp_echo_stamp_lost_total{${target},direction="backward"}`,
    ),
    1,
  );
  const received = sample(text, `udp_echo_probes_received_total{${target}}`);
  for (const direction of ["forward", "backward"]) {
    const series = `${target},direction="${direction}"`;
    equal(
      sample(text, `udp_echo_stamp_one_way_delay_seconds_count{${series}}`),
      received,
    );
    ok(
      sample(text, `udp_echo_stamp_one_way_delay_seconds_sum{${series}}`) <
        10,
    );
  }
});

Deno.test("StampMetrics: each flow's series exist at zero from its start, and a target's go when it is removed", async () => {
  const registry = new Registry();
  const metrics = new StampMetrics(registry, { ssid: 7, tlvs: [] });
  const first = metrics.format("10.0.0.2:10000");
  first(0, 1);
  first(1, 2);
  metrics.format("10.0.0.3:10000")(0, 3);
  let text = await registry.metrics();
  for (
    const [target, flow] of [
      ["10.0.0.2:10000", 0],
      ["10.0.0.2:10000", 1],
      ["10.0.0.3:10000", 0],
    ]
  ) {
    const flowLabels = `target="${target}",flow="${flow}"`;
    for (const direction of ["forward", "backward"]) {
      const labels = `${flowLabels},direction="${direction}"`;
      equal(sample(text, `udp_echo_stamp_lost_total{${labels}}`), 0);
      equal(
        sample(text, `udp_echo_stamp_one_way_delay_seconds_count{${labels}}`),
        0,
      );
    }
    equal(
      sample(text, `udp_echo_stamp_bad_timestamps_total{${flowLabels}}`),
      0,
    );
  }
  metrics.remove("10.0.0.2:10000");
  text = await registry.metrics();
  ok(!text.includes("10.0.0.2:10000"), text);
  ok(text.includes("10.0.0.3:10000"), text);
});

Deno.test("client.ts --metrics --stamp refuses a probe too small for STAMP with one line and exit 2", async () => {
  const { code, stdout, stderr } = await runScript("client.ts", [
    "-H",
    "127.0.0.1",
    "--stamp",
    "-s",
    "40",
    "--metrics",
    "127.0.0.1:0",
  ], { permissions: MONITOR_PERMISSIONS });
  equal(code, 2);
  equal(stdout, "");
  equal(
    stderr,
    "error: cannot send 40-byte STAMP packets: -s must be at least 44\n",
  );
});

/**
 * A STAMP reflector on 127.0.0.1 that writes its transmit time T3 a
 * second before its receive time T2 in every other reply.
 */
function backwardsClockReflector() {
  return reflectorSocket({ backwards: true });
}

/**
 * A stateless STAMP reflector in this process, on `hostname` and `port`
 * (127.0.0.1 and a free port unless told); with `backwards`, every other
 * reply's transmit time T3 is a second before its receive time T2.
 */
function reflectorSocket(
  options: { hostname?: string; port?: number; backwards?: boolean } = {},
) {
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 0,
  });
  const reflector = new StampReflector();
  let answered = 0;
  const loop = (async () => {
    try {
      for (;;) {
        const [data, from] = await socket.receive();
        const reply = new Uint8Array(data.length);
        reflector.reflect(data, reply, {
          from: { hostname: "127.0.0.1", port: 0 },
          local: { hostname: "127.0.0.1", port: 0 },
          receivedAtMs: performance.timeOrigin + performance.now(),
        });
        if (options.backwards && answered++ % 2 === 1) {
          // T3 (bytes 4-11) = T2 (bytes 16-23) less a second.
          const view = new DataView(reply.buffer);
          view.setUint32(4, view.getUint32(16) - 1);
          view.setUint32(8, view.getUint32(20));
        }
        await socket.send(reply, from);
      }
    } catch {
      // Closed.
    }
  })();
  return {
    port: (socket.addr as Deno.NetAddr).port,
    async stop() {
      socket.close();
      await loop;
    },
  };
}

Deno.test("client.ts --metrics --stamp: replies whose timestamps cannot be right are counted, and add no one-way delay", async () => {
  const reflector = backwardsClockReflector();
  const monitor = startStampMonitor(
    ["-H", "127.0.0.1", "-p", String(reflector.port), "-i", "20"],
  );
  try {
    const url = await metricsUrl(monitor);
    const target =
      `node="${NODE}",target="127.0.0.1:${reflector.port}",flow="0"`;
    const text = await metricsAfterReplies(url, target, 10);
    const received = sample(text, `udp_echo_probes_received_total{${target}}`);
    const bad = sample(text, `udp_echo_stamp_bad_timestamps_total{${target}}`);
    // Every other reply, whichever came first.
    ok(Math.abs(received - 2 * bad) <= 1, `${bad} bad of ${received}`);
    equal(
      sample(
        text,
        `udp_echo_stamp_one_way_delay_seconds_count{${target},direction="forward"}`,
      ),
      received - bad,
    );
  } finally {
    equal((await monitor.stop()).code, 0);
    await reflector.stop();
  }
});

Deno.test("client.ts --metrics --stamp --targets-file --flows 2: STAMP series per flow, and a target removed from the file takes its STAMP series with it", async () => {
  const a = reflectorSocket({ hostname: "127.0.0.2" });
  const b = reflectorSocket({ hostname: "127.0.0.3", port: a.port });
  const [peerA, peerB] = [`127.0.0.2:${a.port}`, `127.0.0.3:${a.port}`];
  await using files = await scratchDir();
  await files.write("targets", `${peerA}\n${peerB}\n`);
  const monitor = startStampMonitor([
    ...["--targets-file", `${files.dir}/targets`, "--refresh", "3600"],
    ...["--flows", "2", "-i", "50"],
  ], [...MONITOR_PERMISSIONS, `--allow-read=${files.dir}`]);
  try {
    const url = await metricsUrl(monitor);
    const delays = (text: string, target: string, flow: number) =>
      sample(
        text,
        `udp_echo_stamp_one_way_delay_seconds_count{node="${NODE}",target="${target}",flow="${flow}",direction="forward"}`,
      );
    const stampTargets = (text: string) =>
      new Set(
        text.split("\n").filter((line) => line.startsWith("udp_echo_stamp_"))
          .map((line) => /target="([^"]+)"/.exec(line)![1]!),
      );
    let text = "";
    await waitUntil(async () => {
      text = (await fetchText(url)).text;
      return [peerA, peerB].every((peer) =>
        delays(text, peer, 0) >= 1 && delays(text, peer, 1) >= 1
      );
    }, "both flows of both targets have one-way delays");
    await files.write("targets", `${peerB}\n`);
    await waitUntil(async () => {
      text = (await fetchText(url)).text;
      return !stampTargets(text).has(peerA);
    }, "the removed target's STAMP series are gone");
    deepEqual([...stampTargets(text)], [peerB]);
    ok(delays(text, peerB, 1) >= 1);
  } finally {
    equal((await monitor.stop("SIGTERM")).code, 0);
    await a.stop();
    await b.stop();
  }
});

/**
 * The monitor's `udp_echo_stamp_lost_total` forward and backward against a
 * reflector (`server.ts` with `reflectorArgs`) behind a relay that drops
 * requests 3 and 7 on the way there (`forward`) or their replies
 * (`backward`), and the warnings that name the target.
 */
async function lossSplit(
  reflectorArgs: string[],
  dropped: "forward" | "backward",
  monitorArgs: string[],
): Promise<{ forward: number; backward: number; warnings: string[] }> {
  const run = await monitorThroughRelay(
    reflectorArgs,
    [{
      direction: dropped === "forward" ? "request" : "reply",
      select: at(3, 7),
      action: { type: "drop" },
    }],
    monitorArgs,
  );
  equal(run.dropped, 2);
  const lost = (direction: string) =>
    sample(
      run.text,
      `udp_echo_stamp_lost_total{${run.target},direction="${direction}"}`,
    );
  return {
    forward: lost("forward"),
    backward: lost("backward"),
    warnings: run.stderr.split("\n").filter((line) => line.includes(":PORT ")),
  };
}

Deno.test("client.ts --metrics --stamp against a stateless reflector splits no loss, even when told it is stateful", async () => {
  deepEqual(
    await lossSplit(["--stamp"], "forward", ["--reflector-stateful"]),
    {
      forward: 0,
      backward: 0,
      warnings: [
        "warning: 127.0.0.1:PORT is a stateless STAMP reflector (it copies the sender's sequence numbers): no loss per direction for it (run it with --stamp-stateful)",
      ],
    },
  );
});

Deno.test("client.ts --metrics --stamp tells a stateful reflector by itself: loss on the way back alone is counted backward", async () => {
  deepEqual(
    await lossSplit(["--stamp", "--stamp-stateful"], "backward", []),
    { forward: 0, backward: 2, warnings: [] },
  );
});

Deno.test("DirectionalLoss: a copied number stops the split before any count, never after", () => {
  const copies = new DirectionalLoss(true);
  copies.copied();
  deepEqual([copies.stateful, copies.forward, copies.backward], [false, 0, 0]);
  const counted = new DirectionalLoss(true);
  counted.reply(0, 0);
  counted.reply(2, 2);
  counted.copied();
  deepEqual([counted.stateful, counted.backward], [true, 1]);
});

Deno.test("client.ts --metrics --stamp against a plain echo server says so once, and splits nothing", async () => {
  const { forward, backward, warnings } = await lossSplit([], "forward", []);
  deepEqual({ forward, backward, warnings }, {
    forward: 0,
    backward: 0,
    warnings: [
      "warning: 127.0.0.1:PORT answers as a plain echo server, not a STAMP reflector: no one-way delay or loss per direction for it",
    ],
  });
});
