import { deepEqual, equal, match, ok } from "node:assert/strict";
import { runScript, startServer } from "../testing/cli.ts";
import { parseDiagnose } from "./run.ts";
import { dscpName } from "./marking.ts";

const FFI = ["--allow-net", "--allow-ffi", "--allow-read"];

Deno.test("parseDiagnose() reads all, a list, and --nat-max", () => {
  deepEqual(parseDiagnose({ diagnose: "all" }), {
    checks: ["pmtu", "dscp", "ecn", "nat"],
    all: true,
    natMaxSeconds: 300,
  });
  deepEqual(parseDiagnose({ diagnose: "ecn,nat,ecn", "nat-max": "40" }), {
    checks: ["ecn", "nat"],
    all: false,
    natMaxSeconds: 40,
  });
});

Deno.test("dscpName() names the codepoints the checks send", () => {
  deepEqual([0, 10, 34, 46, 48, 44, 5].map(dscpName), [
    "CS0",
    "AF11",
    "AF41",
    "EF",
    "CS6",
    "VA",
    "DSCP 5",
  ]);
});

Deno.test("client.ts --diagnose: a bad check, --nat-max alone or a probing flag is a usage error (exit 2)", async () => {
  for (
    const [args, message] of [
      [["--diagnose", "mtu"], /Cannot run the check "mtu"/i],
      [["--nat-max", "30"], /Cannot use --nat-max without --diagnose/i],
      [["--diagnose", "all", "-c", "3"], /Cannot combine --count/i],
      [["--diagnose", "all", "--nat-max", "0"], /--nat-max/],
      [["--diagnose", "pmtu", "--nat-max", "5"], /without the nat check/],
    ] as const
  ) {
    const { code, stdout, stderr } = await runScript("client.ts", [...args]);
    equal(code, 2, stderr);
    equal(stdout, "");
    match(stderr, message);
  }
});

Deno.test("client.ts --diagnose without --allow-ffi: all lists the checks that need it as skipped (exit 0), a named one fails (exit 1)", async () => {
  const server = await startServer(["-H", "127.0.0.1", "-p", "0"]);
  try {
    const target = ["-H", "127.0.0.1", "-p", String(server.port)];
    const all = await runScript("client.ts", [...target, "--diagnose", "all"]);
    equal(all.code, 0, all.stderr);
    const lines = all.stdout.trim().split("\n");
    match(
      lines[0]!,
      /an echo server; socket options: no \(--allow-ffi not granted\)/,
    );
    for (const check of ["pmtu", "dscp", "ecn"]) {
      ok(
        lines.some((line) =>
          line.startsWith(`${check}: skipped: `) && line.includes("--allow-ffi")
        ),
        all.stdout,
      );
    }
    const named = await runScript("client.ts", [
      ...target,
      "--diagnose",
      "pmtu",
      "--json",
    ]);
    equal(named.code, 1);
    const document = JSON.parse(named.stdout);
    equal(document.exit_code, 1);
    equal(document.checks[0].status, "failed");
    match(document.checks[0].reason, /--allow-ffi/);
  } finally {
    await server.stop();
  }
});

Deno.test("client.ts --diagnose: no reply fails every named check (exit 1)", async () => {
  const server = await startServer(["-H", "127.0.0.1", "-p", "0"]);
  await server.stop();
  const { code, stdout } = await runScript("client.ts", [
    "-H",
    "127.0.0.1",
    "-p",
    String(server.port),
    "-t",
    "200",
    "--diagnose",
    "dscp",
    "--json",
  ], { permissions: FFI });
  equal(code, 1);
  const document = JSON.parse(stdout);
  equal(document.peer, null);
  equal(document.checks[0].status, "failed");
  match(document.checks[0].reason, /no reply/);
});

Deno.test("client.ts --diagnose dscp,ecn against an echo server and a reflector on sockets: the round trip only, said so", async () => {
  for (const stamp of [false, true]) {
    const server = await startServer([
      "-H",
      "127.0.0.1",
      "-p",
      "0",
      ...(stamp ? ["--stamp"] : []),
    ]);
    try {
      const { code, stdout, stderr } = await runScript("client.ts", [
        "-H",
        "127.0.0.1",
        "-p",
        String(server.port),
        "--diagnose",
        "dscp,ecn,pmtu",
        "--json",
      ], { permissions: FFI });
      equal(code, 0, stderr);
      const document = JSON.parse(stdout);
      equal(document.peer, stamp ? "stamp" : "echo");
      const [dscp, ecn, pmtu] = document.checks;
      equal(dscp.details.view, "round-trip");
      equal(ecn.details.view, "round-trip");
      match(
        dscp.findings.at(-1),
        stamp
          ? /can neither read nor set the DSCP marking .*--io batch/
          : /echo server's reply carries its own DSCP marking/,
      );
      // Loopback (MTU 65536): the largest UDP datagram passes.
      equal(pmtu.details.limit, null);
      equal(pmtu.details.largest_payload_df, 65507);
      match(pmtu.findings[0], /^no limit found/);
      equal(pmtu.details.fragmented.method, stamp ? "search" : "sweep");
    } finally {
      await server.stop();
    }
  }
});

Deno.test("client.ts --diagnose dscp,ecn against server.ts --stamp --io batch: each direction, from the Class of Service TLV", async () => {
  const server = await startServer(
    ["-H", "127.0.0.1", "-p", "0", "--stamp", "--io", "batch"],
    "server.ts",
    FFI,
  );
  try {
    const { code, stdout, stderr } = await runScript("client.ts", [
      "-H",
      "127.0.0.1",
      "-p",
      String(server.port),
      "--diagnose",
      "dscp,ecn",
      "--json",
    ], { permissions: FFI });
    equal(code, 0, stderr);
    const [dscp, ecn] = JSON.parse(stdout).checks;
    for (const check of [dscp, ecn]) {
      equal(check.details.view, "directional");
      equal(check.details.forward, "keeps");
      equal(check.details.return, "keeps");
    }
    deepEqual(
      dscp.details.probes.map((p: Record<string, number>) => [
        p.sent,
        p.arrived,
        p.reflector_sent,
        p.returned,
      ]),
      [0, 10, 34, 46, 48].map((v) => [v, v, v, v]),
    );
  } finally {
    await server.stop();
  }
});
