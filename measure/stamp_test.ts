import { deepEqual, equal, ok } from "node:assert/strict";
import {
  ROOT,
  type RunningPeer,
  runScript,
  startPeer,
  startServer,
  successStatus,
} from "../testing/cli.ts";
import { runFlows } from "./run.ts";
import { formatStampSummary, StampRun } from "./stamp_report.ts";
import { serveEcho } from "../server/serve.ts";
import { serveSocket } from "../echo/socket.ts";
import { StampReflector } from "../stamp/reflector.ts";
import type { ReflectInfo } from "../echo/types.ts";
import { StampFlowLog, stampFormat } from "./stamp_probe.ts";

/** Starts the independent Python Session-Reflector on `host`. */
function pythonReflector(host: string): Promise<RunningPeer> {
  return startPeer("python3", [
    new URL("testdata/stamp_reflector.py", ROOT).pathname,
    host,
  ]);
}

/** Where the Session-Sender's probes travel: Deno's sockets or the kernel engine. */
const IO_MODES = ["socket", "batch"] as const;
/** What `client.ts --io batch` and `server.ts --io batch` need besides the network. */
const ENGINE = ["--allow-net", "--allow-ffi", "--allow-read=."];

for (const io of IO_MODES) {
  for (const host of ["127.0.0.1", "::1"]) {
    Deno.test(`runFlows({io: "${io}"}) as a STAMP Session-Sender measures an independent reflector over ${host}`, async () => {
      const reflector = await pythonReflector(host);
      try {
        const stamp = new StampRun({
          ssid: 7,
          tlvs: ["location", "timestamp-info"],
        });
        const target = {
          hostname: host,
          port: reflector.port,
          family: host.includes(":") ? "IPv6" as const : "IPv4" as const,
        };
        const rtt: number[] = [];
        let ran: string | undefined;
        const result = await runFlows({
          target,
          count: 4,
          intervalMs: 5,
          size: 128,
          timeoutMs: 2000,
          format: stamp.format,
          engineFormat: stamp.engineFormat,
          io,
          onIo: (backend) => ran = backend,
          onEvent: (event) => {
            if (event.type === "reply") rtt[event.seq] = event.rttMs;
          },
        });
        equal(ran, io);
        equal(result.received, 4);
        // One clock on both ends: each way takes time, and the parts add up
        // to the round trip (T4 − T1); the RTT itself is read from another
        // clock at another moment, which a busy machine can put a tenth of a
        // millisecond apart, far below what a unit or field mix-up gives.
        const log = stamp.logs[0]!;
        for (let seq = 0; seq < 4; seq++) {
          const forward = log.forward[seq]!;
          const backward = log.backward[seq]!;
          ok(forward > -0.001 && backward > -0.001, `${forward} ${backward}`);
          const parts = forward + backward + log.reflector[seq]!;
          ok(Math.abs(parts - rtt[seq]!) < 0.5, `${parts} vs ${rtt[seq]}`);
        }
        equal(result.corrupted, 0);
        const summary = stamp.summary(result, target);
        equal(summary.forward.count, 4);
        equal(summary.backward.count, 4);
        ok(summary.reflector.min >= 0);
        deepEqual(summary.loss, { forward: 0, backward: 0, undetermined: 0 });
        equal(summary.ttl, undefined); // it writes 0: unknown
        deepEqual(summary.timestampInfo, [5, 2, 5, 2]);
        equal(summary.path?.rewritten, false);
        equal(summary.path?.sourceSeen.port, result.flows[0]!.local.port);
        equal(summary.unrecognized, 0);
        equal(summary.malformed, 0);
        equal(summary.sizeMismatch, 0);
      } finally {
        await reflector.stop();
      }
    });
  }
}

/** A reflector in this process whose hook can drop or rewrite. */
function reflectorWith(
  hook: (
    seq: number,
    info: ReflectInfo,
  ) => "forward" | "backward" | ReflectInfo,
) {
  const controller = new AbortController();
  const reflector = new StampReflector({ stateful: true });
  const server = serveSocket({
    hostnames: ["127.0.0.1"],
    port: 0,
    signal: controller.signal,
    reflect: (data, info) => {
      const seq = new DataView(data.buffer, data.byteOffset).getUint32(0);
      const fate = hook(seq, info);
      if (fate === "forward") return "stamp-too-short";
      const seen = fate === "backward" ? info : fate;
      reflector.reflect(data, data, {
        from: seen.from,
        local: seen.local,
        receivedAtMs: performance.timeOrigin + info.receivedAt,
      });
      return fate === "backward" ? "stamp-too-short" : undefined;
    },
  });
  return {
    target: { ...server.addr, family: "IPv4" as const },
    async stop() {
      controller.abort();
      await server.finished;
    },
  };
}

for (const io of IO_MODES) {
  Deno.test(`StampRun on ${io} splits loss into forward and backward with a stateful reflector`, async () => {
    const server = reflectorWith((seq, info) =>
      seq === 1 ? "forward" : seq === 3 || seq === 4 ? "backward" : info
    );
    try {
      const stamp = new StampRun({ ssid: 1, tlvs: [] });
      const result = await runFlows({
        target: server.target,
        count: 6,
        intervalMs: 5,
        size: 44,
        timeoutMs: 300,
        format: stamp.format,
        engineFormat: stamp.engineFormat,
        io,
      });
      equal(result.io, io);
      equal(result.lost, 3);
      const summary = stamp.summary(result, server.target);
      equal(summary.stateful, true);
      deepEqual(summary.loss, { forward: 1, backward: 2, undetermined: 0 });
    } finally {
      await server.stop();
    }
  });
}

Deno.test("StampRun says how many replies its one-way figures cover when fields were dropped", async () => {
  const server = reflectorWith((_seq, info) => info);
  try {
    const stamp = new StampRun({ ssid: 3, tlvs: [] });
    const result = await runFlows({
      target: server.target,
      count: 3,
      intervalMs: 5,
      size: 44,
      timeoutMs: 1000,
      format: stamp.format,
    });
    equal(stamp.summary(result, server.target).measured, 3);
    // As the engine's run reports it when its output fell behind: the run
    // counted two replies whose STAMP fields never reached the main thread.
    const behind = {
      ...result,
      received: result.received + 2,
      flows: [{ ...result.flows[0]!, received: result.flows[0]!.received + 2 }],
    };
    const summary = stamp.summary(behind, server.target);
    deepEqual([summary.measured, summary.received], [3, 5]);
    ok(
      formatStampSummary(summary).includes(
        "one-way and reflector figures cover 3 of 5 replies (the output fell behind)",
      ),
    );
  } finally {
    await server.stop();
  }
});

Deno.test("StampRun reports a rewritten path when the reflector saw another source port", async () => {
  const server = reflectorWith((_seq, info) => ({
    ...info,
    from: { ...info.from, port: info.from.port + 1 },
  }));
  try {
    const stamp = new StampRun({ ssid: 2, tlvs: ["location"] });
    const result = await runFlows({
      target: server.target,
      count: 2,
      intervalMs: 5,
      size: 100,
      timeoutMs: 1000,
      format: stamp.format,
    });
    const summary = stamp.summary(result, server.target);
    equal(summary.path?.rewritten, true);
    equal(summary.path?.sourceSeen.port, result.flows[0]!.local.port + 1);
    equal(summary.path?.sourceSeen.hostname, "127.0.0.1");
  } finally {
    await server.stop();
  }
});

for (const io of IO_MODES) {
  Deno.test(`client.ts --stamp --io ${io} --json against server.ts --stamp --io ${io} reports one-way delays (schema 1.2)`, async () => {
    const permissions = io === "batch" ? ENGINE : ["--allow-net"];
    const server = await startServer(
      ["-H", "::1", "-p", "0", "-q", "--stamp", "--io", io],
      "server.ts",
      permissions,
    );
    try {
      const { code, stdout } = await runScript("client.ts", [
        "--io",
        io,
        "-H",
        "::1",
        "-p",
        String(server.port),
        "--stamp",
        "--stamp-tlv",
        "location",
        "--ssid",
        "9",
        "-c",
        "3",
        "-i",
        "10",
        "-s",
        "100",
        "--json",
      ], { permissions });
      equal(code, 0, stdout);
      equal(backendOf(stdout), io);
      const document = JSON.parse(stdout);
      equal(document.schema, "udp-echo.measure/1.3");
      equal(document.received, 3);
      equal(document.one_way_ms.forward.min >= -1000, true);
      equal(typeof document.one_way_ms.backward.ipdv, "number");
      equal(typeof document.reflector_ms.mean, "number");
      equal(document.stamp.ssid, 9);
      // Bound to a wildcard, the source address sent from is learned from
      // the route, which needs FFI: without it the answer is unknown.
      if (io === "batch") equal(document.stamp.location.rewritten, false);
      else {
        equal(document.stamp.location.rewritten, null);
        ok(
          document.stamp.location.rewritten_unknown.includes("--allow-ffi"),
          document.stamp.location.rewritten_unknown,
        );
      }
      // The engine's reflector reads the hop limit; sockets cannot (0).
      deepEqual(
        document.stamp.ttl,
        io === "batch" ? { min: 64, max: 64 } : null,
      );
      // Stateless: the split is known only because nothing was lost.
      deepEqual(document.stamp.directional_loss, {
        forward: 0,
        backward: 0,
        undetermined: 0,
      });
    } finally {
      await server.stop();
    }
  });
}

Deno.test("client.ts --stamp compares the Location TLV with the address a name resolved to", async () => {
  const server = await startServer(
    ["-H", "127.0.0.1", "-p", "0", "-q", "--stamp", "--io", "socket"],
    "server.ts",
    ["--allow-net"],
  );
  try {
    const { code, stdout } = await runScript("client.ts", [
      "--io",
      "socket",
      "-4",
      "-H",
      "localhost",
      "-p",
      String(server.port),
      "--stamp",
      "--stamp-tlv",
      "location",
      "-c",
      "2",
      "-i",
      "10",
      "-s",
      "100",
      "--json",
    ], { permissions: ["--allow-net", "--allow-ffi"] });
    equal(code, 0, stdout);
    const { location } = JSON.parse(stdout).stamp;
    equal(location.destination_seen, `127.0.0.1:${server.port}`);
    equal(location.rewritten, false);
  } finally {
    await server.stop();
  }
});

/** The backend a client's JSON summary says it ran on. */
function backendOf(stdout: string): string {
  return JSON.parse(stdout).io.backend;
}

Deno.test("client.ts --stamp refuses a size under the base packet and its TLVs", async () => {
  const small = await runScript("client.ts", ["--stamp", "-s", "43"]);
  equal(small.code, 2);
  ok(small.stderr.includes("at least 44"), small.stderr);
  const tlv = await runScript("client.ts", [
    "--stamp",
    "--stamp-tlv",
    "location",
    "-s",
    "60",
  ]);
  equal(tlv.code, 2);
  ok(tlv.stderr.includes("at least 92"), tlv.stderr);
  const bare = await runScript("client.ts", ["-c", "1", "--ssid", "3"]);
  equal(bare.code, 2);
  ok(bare.stderr.includes("without --stamp"), bare.stderr);
});

Deno.test("stampFormat() takes the SSID 0 of a reflector of RFC 8762 alone as its own", () => {
  const format = stampFormat({
    ssid: 9,
    tlvs: [],
    session: 3,
    log: new StampFlowLog(),
  });
  // Bytes 14-15 are MBZ in RFC 8762 §4.3.1; Session-Sender seq 5 at 24-27.
  const reply = new Uint8Array(44);
  reply[27] = 5;
  deepEqual(format.decode(reply), { session: 3, seq: 5 });
  reply[15] = 9;
  deepEqual(format.decode(reply), { session: 3, seq: 5 });
  reply[15] = 8; // another Session-Sender's SSID
  equal(format.decode(reply), undefined);
});

for (const io of IO_MODES) {
  Deno.test(`StampRun on ${io} takes requests echoed unchanged by a plain echo server as the replies they are`, async () => {
    const controller = new AbortController();
    const server = serveEcho({
      hostname: "127.0.0.1",
      port: 0,
      signal: controller.signal,
    });
    try {
      const stamp = new StampRun({ ssid: 4, tlvs: [] });
      const target = { ...server.addr, family: "IPv4" as const };
      const seqs: number[] = [];
      const result = await runFlows({
        target,
        count: 3,
        intervalMs: 20,
        size: 64,
        timeoutMs: 1000,
        format: stamp.format,
        engineFormat: stamp.engineFormat,
        io,
        onEvent: (event) => {
          if (event.type === "reply") seqs.push(event.seq);
        },
      });
      // Each echo answers its own probe (it was all read as seq 0).
      deepEqual(seqs, [0, 1, 2]);
      deepEqual(
        [result.received, result.lost, result.corrupted, result.duplicates],
        [3, 0, 0, 0],
      );
      const summary = stamp.summary(result, target);
      equal(summary.plainEcho, 3);
      equal(summary.forward.count, 0);
      equal(stamp.describe(0, 1), "");
    } finally {
      controller.abort();
      await server.finished;
    }
  });
}

Deno.test("client.ts --stamp says once that a plain echo server echoed the requests unchanged", async () => {
  const server = await startServer(["-H", "127.0.0.1", "-p", "0", "-q"]);
  try {
    const args = ["-p", String(server.port), "--stamp", "-c", "3", "-i", "10"];
    const text = await runScript("client.ts", args);
    equal(text.code, successStatus(text.stdout), text.stderr);
    const errors = text.stderr.split("\n").filter((l) =>
      l.startsWith("error:")
    );
    equal(errors.length, 1, text.stderr);
    ok(errors[0]!.includes("plain echo server"), errors[0]);
    ok(text.stdout.includes("3 sent, 3 received, 0 lost"), text.stdout);
    ok(!text.stdout.includes("directional loss"), text.stdout);
    const json = await runScript("client.ts", [...args, "--json"]);
    const document = JSON.parse(json.stdout);
    equal(document.received, 3);
    equal(document.stamp.plain_echo, true);
  } finally {
    await server.stop();
  }
});
