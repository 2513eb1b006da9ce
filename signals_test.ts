/**
 * The signals of server.ts and client.ts as programs, and a file
 * descriptor limit too low to start under. Every SIGUSR1 test of the
 * project is in this one file, whose tests run one after another: the V8
 * inspector a SIGUSR1 may open listens on the fixed port 9229, which two
 * test processes must not race on. Whether it opened is read from what the
 * process itself shows: a listener on 9229 it owns (`ss -ltnp`), the
 * runtime's "Debugger listening" or "Failed to start inspector" line, and
 * its signal masks in /proc. So a test still means something when another
 * program holds 9229.
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { echoes, type LimitedScript, startLimited } from "./testing/abuse.ts";
import { startEcho } from "./testing/echo.ts";
import { waitUntil } from "./testing/wait.ts";
import { ROOT, spawnScript } from "./testing/cli.ts";
import { MIN_FILE_LIMIT } from "./cli/limits.ts";

const IO_MODES = ["socket", "batch"] as const;
const FFI = ["--allow-net", "--allow-ffi", "--allow-read"];
/** Bit of SIGUSR1 (10) in the hex masks of /proc/PID/status. */
const SIGUSR1_BIT = 1n << 9n;
/**
 * How long after spawning a script SIGUSR1 keeps being sent: Deno installs
 * its inspector's handler a moment after start, so the signals go out both
 * before and well after it, however slow the machine.
 */
const SIGNAL_FOR_MS = 3000;
/** What the runtime prints when a SIGUSR1 starts, or tries to start, the inspector. */
const INSPECTOR_LINE = /Debugger listening|Failed to start inspector/;

async function run(program: string, args: string[]): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command(program, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (!success) {
    throw new Error(`Cannot run ${program}: ${decoder.decode(stderr)}`);
  }
  return decoder.decode(stdout);
}

/** Listeners on port 9229 that process `pid` owns, from `ss -ltnp`. */
async function inspectorListeners(pid: number): Promise<string[]> {
  const lines = (await run("ss", ["-H", "-l", "-t", "-n", "-p"])).split("\n");
  return lines.filter((line) =>
    /:9229\s/.test(line) && line.includes(`pid=${pid},`)
  );
}

/** The SIGUSR1 bit of each thread's `field` mask (SigIgn, SigBlk) of process `pid`. */
async function usr1InThreads(pid: number, field: string): Promise<boolean[]> {
  const text = await run("sh", ["-c", `cat /proc/${pid}/task/*/status`]);
  const masks = [
    ...text.matchAll(new RegExp(`^${field}:\\s+([0-9a-f]+)$`, "gm")),
  ]
    .map((found) => (BigInt(`0x${found[1]}`) & SIGUSR1_BIT) !== 0n);
  ok(masks.length > 0, `no ${field} line for process ${pid}`);
  return masks;
}

/**
 * Sends SIGUSR1 to `script` again and again until {@linkcode SIGNAL_FOR_MS}
 * after `spawnedAt`, five times at least; after each, the process still
 * does its work (`alive`) and owns no listener on 9229.
 */
async function signalUsr1Repeatedly(
  script: LimitedScript,
  spawnedAt: number,
  alive: () => Promise<boolean>,
): Promise<number> {
  let sent = 0;
  while (sent < 5 || performance.now() - spawnedAt < SIGNAL_FOR_MS) {
    Deno.kill(script.pid, "SIGUSR1");
    sent++;
    ok(await alive(), `not working after SIGUSR1 number ${sent}`);
    deepEqual(await inspectorListeners(script.pid), []);
    ok(!INSPECTOR_LINE.test(script.stderr()), script.stderr());
  }
  return sent;
}

for (const io of IO_MODES) {
  const json = io === "socket";
  Deno.test(`server.ts --io ${io}${json ? " --json" : ""}: SIGUSR1 never opens the inspector, SIGUSR2 prints a stats line, SIGHUP stops it with totals`, async () => {
    const spawnedAt = performance.now();
    const server = startLimited("server.ts", [
      "-H",
      "127.0.0.1",
      "-p",
      "0",
      "-q",
      "--io",
      io,
      ...(json ? ["--json"] : []),
    ], { permissions: FFI });
    try {
      const port = Number(
        (await server.waitFor(json ? /"port":(\d+)/ : /port (\d+)/))[1],
      );
      const sent = await signalUsr1Repeatedly(
        server,
        spawnedAt,
        () => echoes(port),
      );
      ok(
        (await usr1InThreads(server.pid, "SigIgn")).every(Boolean),
        "SIGUSR1 is not ignored",
      );

      Deno.kill(server.pid, "SIGUSR2");
      if (json) {
        const line = (await server.waitFor(/^\{"event":"stats".*\}$/m))[0];
        const stats = JSON.parse(line);
        equal(typeof stats.received, "number");
        equal(typeof stats.rate, "number");
      } else {
        await server.waitFor(
          /^stats: received [\d,]+ \([\d,.]+\/s\), echoed [\d,]+, dropped 0, 0 errors, 0 active sources, host drops (0|unknown)$/m,
        );
      }
      ok(await echoes(port), "no echo after SIGUSR2");

      const { code, stdout, stderr } = await server.stop("SIGHUP");
      equal(code, 0);
      equal(stderr, "");
      const echoed = sent + 1;
      if (json) {
        const totals = JSON.parse(stdout.trim().split("\n").at(-1)!);
        equal(totals.event, "shutdown");
        equal(totals.received, echoed);
        equal(totals.echoed, echoed);
      } else {
        match(
          stdout,
          new RegExp(
            `^shutting down: received ${echoed} datagrams \\(\\d+ bytes\\), echoed ${echoed} datagrams`,
            "m",
          ),
        );
      }
    } finally {
      await server.stop("SIGKILL");
    }
  });
}

Deno.test("server.ts without --allow-ffi, started with SIGUSR1 blocked (env --block-signal=USR1), never opens the inspector", async () => {
  const help = await run("env", ["--help"]);
  if (!help.includes("--block-signal")) {
    console.log(
      "skipped: this env has no --block-signal (GNU coreutils 8.31 or later)",
    );
    return;
  }
  const spawnedAt = performance.now();
  const server = startLimited(
    "server.ts",
    ["-H", "127.0.0.1", "-p", "0", "-q", "--io", "socket"],
    { permissions: ["--allow-net"], wrapper: ["env", "--block-signal=USR1"] },
  );
  try {
    const port = Number((await server.waitFor(/port (\d+)/))[1]);
    await signalUsr1Repeatedly(server, spawnedAt, () => echoes(port));
    // Every thread, those the runtime started later too, keeps it blocked.
    ok(
      (await usr1InThreads(server.pid, "SigBlk")).every(Boolean),
      "a thread does not block SIGUSR1",
    );
    const { code, stderr } = await server.stop("SIGTERM");
    equal(code, 0);
    equal(stderr, "");
  } finally {
    await server.stop("SIGKILL");
  }
});

Deno.test("client.ts --metrics (the monitor): SIGUSR1 never opens the inspector, SIGUSR2 does not end it, SIGHUP ends it with exit 0", async () => {
  await using peer = startEcho();
  const spawnedAt = performance.now();
  const monitor = startLimited("client.ts", [
    "-H",
    "127.0.0.1",
    "-p",
    `${peer.port}`,
    "-i",
    "20",
    "-q",
    "--node",
    "test-node",
    "--metrics",
    "127.0.0.1:0",
  ], { permissions: [...FFI, "--allow-sys=networkInterfaces"] });
  try {
    await monitor.waitForStderr(/^MONITOR /m);
    await signalUsr1Repeatedly(monitor, spawnedAt, async () => {
      const before = peer.received();
      await waitUntil(() => peer.received() > before, "the monitor probes");
      return true;
    });
    Deno.kill(monitor.pid, "SIGUSR2");
    const before = peer.received();
    await waitUntil(() => peer.received() > before + 3, "it probes on");
    const { code, stderr } = await monitor.stop("SIGHUP");
    equal(code, 0);
    match(stderr, /^MONITOR [^\n]*\n$/);
  } finally {
    await monitor.stop("SIGKILL");
  }
});

Deno.test("client.ts: SIGUSR2 does not end a --json ping, SIGHUP prints one document and exits 0", async () => {
  await using peer = startEcho();
  const client = spawnScript(
    "client.ts",
    ["-H", "127.0.0.1", "-p", `${peer.port}`, "-i", "20", "--json"],
    { permissions: FFI },
  );
  const output = client.output();
  await waitUntil(() => peer.received() >= 3, "3 probes arrived");
  client.kill("SIGUSR2");
  await waitUntil(() => peer.received() >= 6, "3 more probes arrived");
  client.kill("SIGHUP");
  const { code, stdout, stderr } = await output;
  equal(new TextDecoder().decode(stderr), "");
  equal(code, 0);
  const document = JSON.parse(new TextDecoder().decode(stdout));
  ok(document.sent >= 3, `sent ${document.sent}`);
  equal(document.received, document.sent);
  equal(document.lost, 0);
});

const LOW_LIMIT = MIN_FILE_LIMIT - 24;

/** Runs `script` with `args` to its end under `ulimit -n LOW_LIMIT`, granted FFI. */
async function runUnderLowLimit(script: string, args: string[]) {
  const { code, stdout, stderr } = await new Deno.Command("bash", {
    args: [
      "-c",
      `ulimit -n ${LOW_LIMIT}; exec "$@"`,
      "bash",
      Deno.execPath(),
      "run",
      "--unstable-net",
      ...FFI,
      script,
      ...args,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
  };
}

for (const io of IO_MODES) {
  Deno.test(`server.ts --io ${io} --metrics under ulimit -n ${LOW_LIMIT} stops with one error line, no panic`, async () => {
    const { code, stdout, stderr } = await runUnderLowLimit("server.ts", [
      "-H",
      "127.0.0.1",
      "-p",
      "0",
      "--io",
      io,
      "--metrics",
      "127.0.0.1:0",
    ]);
    equal(stdout, "");
    equal(
      stderr,
      `error: cannot start: the file descriptor limit is ${LOW_LIMIT}, under the ${MIN_FILE_LIMIT} the server needs; raise it (ulimit -n ${MIN_FILE_LIMIT}, or LimitNOFILE= in a systemd unit)\n`,
    );
    equal(code, 1);
  });
}

Deno.test(`client.ts --metrics under ulimit -n ${LOW_LIMIT} stops with one error line, no panic`, async () => {
  const { code, stdout, stderr } = await runUnderLowLimit("client.ts", [
    "-H",
    "127.0.0.1",
    "--node",
    "test-node",
    "--metrics",
    "127.0.0.1:0",
  ]);
  equal(stdout, "");
  match(
    stderr,
    /^error: cannot start: the file descriptor limit is \d+, under the \d+ the monitor needs; [^\n]*\n$/,
  );
  equal(code, 1);
});

Deno.test("keepInspectorClosed() sets SIGUSR1 back to ignored when something resets it", async () => {
  const child = spawnScript("testdata/inspector_guard.ts", [], {
    permissions: ["--allow-ffi"],
  });
  const { code, stdout, stderr } = await child.output();
  const lines = new TextDecoder().decode(stdout).trim().split("\n");
  equal(new TextDecoder().decode(stderr), "");
  equal(code, 0);
  equal(lines[0], "guard: ignored");
  equal(lines[1], "reset: true");
  match(lines[2]!, /^ignored again: SIGUSR1 was set to be handled again/);
});
