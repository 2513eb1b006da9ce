/**
 * Stopping and pacing a measurement as a user meets them: signals, the
 * `-d` deadline, `-i 0`, a rate the machine cannot reach, and probe 0.
 * A signal goes out once the peer has seen the probes that show the client
 * is under way (its signal listeners are set before the first probe), and
 * times are the client's own, from its summary: the machine running the
 * tests is shared, and a slow start-up must not count.
 */
import { equal, match, ok } from "node:assert/strict";
import { spawnScript } from "../testing/cli.ts";
import { startEcho } from "../testing/echo.ts";
import { waitUntil } from "../testing/wait.ts";
import { runProbes } from "./modes.ts";
import { fitStatus } from "../cli/output.ts";
import { formatStatus } from "./report.ts";

/** A socket that receives and never answers: every probe stays in flight. */
function startSilent() {
  const conn = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  let received = 0;
  const reading = (async () => {
    try {
      for await (const _ of conn) received++;
    } catch {
      // Closed.
    }
  })();
  return {
    port: (conn.addr as Deno.NetAddr).port,
    /** Datagrams received so far. */
    received: () => received,
    async [Symbol.asyncDispose]() {
      conn.close();
      await reading;
    },
  };
}

/** Both I/O modes run the same behaviour suites. */
const IO_MODES = ["socket", "batch"] as const;

/**
 * Longest a client may run before the test kills it and fails: only a
 * client that never stops comes near it.
 */
const HANG_MS = 60_000;

/**
 * client.ts as a subprocess, with its stdout read as it comes; with `io`,
 * on that I/O, granted what it needs.
 */
function spawnClient(args: string[], io?: (typeof IO_MODES)[number]) {
  const child = spawnScript(
    "client.ts",
    io === undefined ? args : ["--io", io, ...args],
    {
      permissions: io === "batch"
        ? ["--allow-net", "--allow-ffi", "--allow-read"]
        : ["--allow-net"],
    },
  );
  const stdout = new Response(child.stdout).text();
  const stderr = new Response(child.stderr).text();
  let exited = false;
  child.status.then(() => exited = true);
  return {
    kill: (signal: Deno.Signal) => child.kill(signal),
    /** Waits until `check` holds; fails with the client's output if it ends first. */
    async until(check: () => boolean, what: string) {
      try {
        await waitUntil(() => check() || exited, what);
      } catch (error) {
        child.kill("SIGKILL");
        throw error;
      }
      if (!check()) {
        const { code } = await child.status;
        throw new Error(
          `Cannot wait until ${what}: the client ended (exit ${code}): ${await stdout}${await stderr}`,
        );
      }
    },
    /** Waits for the end; kills the client and fails if it runs past `HANG_MS`. */
    async finish() {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const hung = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), HANG_MS);
      });
      const status = await Promise.race([child.status, hung]);
      clearTimeout(timer);
      if (status === undefined) child.kill("SIGKILL");
      const { code } = await child.status;
      const ended = performance.now();
      const text = { code, stdout: await stdout, stderr: await stderr, ended };
      ok(status !== undefined, `still running after ${HANG_MS} ms`);
      return text;
    },
  };
}

/** The run's length in seconds, from the summary's `rate:` line. */
function runSeconds(stdout: string): number {
  const seconds = /^rate: .*, (\d+\.\d+) s$/m.exec(stdout)?.[1];
  ok(seconds !== undefined, `no rate line in ${stdout}`);
  return Number(seconds);
}

for (const io of IO_MODES) {
  Deno.test(`SIGTERM during a --json ping prints one document and exits 0 [${io}]`, async () => {
    await using server = startEcho();
    const client = spawnClient([
      "-H",
      "127.0.0.1",
      "-p",
      `${server.port}`,
      "-i",
      "50",
      "--json",
    ], io);
    await client.until(() => server.received() >= 3, "3 probes arrived");
    client.kill("SIGTERM");
    const { code, stdout, stderr } = await client.finish();
    equal(stderr, "");
    equal(code, 0);
    const document = JSON.parse(stdout);
    equal(document.schema, "udp-echo.measure/1.3");
    ok(document.sent >= 3, `sent ${document.sent}`);
    equal(document.received, document.sent);
    equal(document.lost, 0);
    equal(document.in_flight, 0);
  });
}

for (const io of IO_MODES) {
  Deno.test(`SIGINT during -w 16 waits for the window: 0 lost, exit 0 [${io}]`, async () => {
    await using server = startEcho();
    const client = spawnClient([
      "-H",
      "127.0.0.1",
      "-p",
      `${server.port}`,
      "-w",
      "16",
      "-q",
    ], io);
    // Past the first window: the window has moved on replies.
    await client.until(() => server.received() > 64, "64 probes arrived");
    client.kill("SIGINT");
    const { code, stdout } = await client.finish();
    match(stdout, /^\d+ sent, \d+ received, 0 lost, /m);
    const [, sent, received] = /^(\d+) sent, (\d+) received/m.exec(stdout)!;
    equal(received, sent);
    ok(Number(sent) > 16);
    equal(code, 0);
  });
}

for (const io of IO_MODES) {
  Deno.test(`a second signal ends at once: unanswered probes are in flight, not lost [${io}]`, async () => {
    await using silent = startSilent();
    const client = spawnClient([
      "-H",
      "127.0.0.1",
      "-p",
      `${silent.port}`,
      "-w",
      "16",
      "-t",
      "10000",
      "--json",
    ], io);
    await client.until(() => silent.received() >= 16, "the window was sent");
    // Two kinds of signal: two of one kind, sent at once, may reach the
    // client as one. Either order is a first and a second signal.
    client.kill("SIGINT");
    client.kill("SIGTERM");
    const signalled = performance.now();
    const { code, stdout, stderr, ended } = await client.finish();
    const document = JSON.parse(stdout);
    equal(document.sent, 16, `stdout ${stdout}, stderr ${stderr}`);
    // After the first signal alone the run would wait out the 10 s timeout
    // and count all 16 lost.
    equal(document.in_flight, 16);
    equal(document.lost, 0);
    equal(document.flows[0].in_flight, 16);
    equal(code, 1, "nothing came back");
    ok(ended - signalled < 5_000, `ended ${ended - signalled} ms after`);
  });
}

for (const io of IO_MODES) {
  Deno.test(`-i 0 -d 1 sends as fast as possible and stops at the deadline [${io}]`, async () => {
    await using server = startEcho();
    const client = spawnClient([
      "-H",
      "127.0.0.1",
      "-p",
      `${server.port}`,
      "-i",
      "0",
      "-d",
      "1",
      "-t",
      "200",
      "-q",
    ], io);
    const { stdout } = await client.finish();
    match(stdout, /udp-echo ping statistics/);
    // From the first send to the end of the wait for replies: the deadline,
    // then at most -t. Sending on past it would take as long as the probes
    // a fast sender can schedule.
    const seconds = runSeconds(stdout);
    ok(seconds >= 0.9 && seconds < 5, `ran ${seconds} s`);
    match(stdout, /schedule error \(ms\): mean -, p50 -, p99 -, max -, span -/);
  });
}

for (const io of IO_MODES) {
  Deno.test(`a signal stops continuous sending within the timeout [${io}]`, async () => {
    await using server = startEcho();
    const client = spawnClient([
      "-H",
      "127.0.0.1",
      "-p",
      `${server.port}`,
      "-i",
      "0",
      "-t",
      "100",
      "-q",
    ], io);
    await client.until(() => server.received() >= 100, "100 probes arrived");
    client.kill("SIGINT");
    const signalled = performance.now();
    const { stdout, ended } = await client.finish();
    match(stdout, /udp-echo ping statistics/);
    // 100 ms to be heard, up to -t for the replies due, the summary, the
    // exit: a client that went on sending would not end at all.
    ok(ended - signalled < 5_000, `ended ${ended - signalled} ms after`);
  });
}

Deno.test("--rate 200000 -d 2 stops at the deadline, not when all 400000 probes are out", async () => {
  await using server = startEcho();
  const client = spawnClient([
    "-H",
    "127.0.0.1",
    "-p",
    `${server.port}`,
    "--rate",
    "200000",
    "-d",
    "2",
    "-t",
    "200",
    "-q",
  ]);
  const { stdout } = await client.finish();
  // A sender that went on past the deadline would send every probe the
  // rate asked for, however late; only one that keeps up may send them all.
  const sent = Number(/^(\d+) sent, /m.exec(stdout)?.[1]);
  const short = /^send rate short of the schedule: /m.test(stdout);
  ok(sent < 400_000 || !short, `${sent} sent, short of the rate: ${short}`);
  ok(sent > 0, stdout);
  const seconds = runSeconds(stdout);
  ok(seconds >= 1.9 && seconds < 7, `ran ${seconds} s`);
});

Deno.test("a rate the machine cannot reach is reported, asked versus achieved, and exits 1", async () => {
  await using server = startEcho();
  const args = [
    "-H",
    "127.0.0.1",
    "-p",
    `${server.port}`,
    "--rate",
    "5000000",
    "-d",
    "0.5",
    "-t",
    "200",
    "--max-loss",
    "100",
  ];
  const text = await spawnClient([...args, "-q"]).finish();
  match(
    text.stdout,
    /^send rate short of the schedule: asked 5000000\.0 pps, achieved \d+\.\d pps \(\d+\.\d%\)$/m,
  );
  equal(text.code, 1);
  const json = await spawnClient([...args, "--json"]).finish();
  const document = JSON.parse(json.stdout);
  equal(document.asked_pps, 5_000_000);
  ok(document.achieved_pps < 0.95 * 5_000_000);
  equal(document.rate_shortfall, true);
  equal(json.code, 1);
});

Deno.test("probe 0's round trip is no outlier: at most 5 x the median", async () => {
  await using server = startEcho();
  let best = Infinity;
  for (let run = 0; run < 3 && best > 5; run++) {
    const rtts: number[] = [];
    const result = await runProbes({
      target: { hostname: "127.0.0.1", port: server.port, family: "IPv4" },
      count: 20,
      intervalMs: 10,
      onEvent: (event) => {
        if (event.type === "reply" && event.seq === 0) rtts.push(event.rttMs);
      },
    });
    equal(result.received, 20);
    best = Math.min(best, rtts[0]! / result.rttMs.median);
  }
  ok(best <= 5, `probe 0 took ${best.toFixed(2)} x the median`);
});

Deno.test("fitStatus() keeps a status line inside the terminal", () => {
  const line = formatStatus({
    sent: 123_456_789,
    received: 123_456_000,
    elapsedMs: 3_600_000,
    echoPps: 1_234_567.8,
    lastRttMs: 12.345,
  });
  ok(line.length > 80, "the unfitted line is too long for 80 columns");
  for (const columns of [80, 60, 40, 20]) {
    const fitted = fitStatus(line, columns);
    ok(fitted.length < columns, `${columns}: ${fitted}`);
    ok(line.startsWith(fitted));
  }
  equal(
    fitStatus(line, 80),
    "3600.0 s: 123456789 sent, 123456000 received, 789 in flight or lost",
  );
  equal(fitStatus("short", 80), "short");
});

Deno.test("SIGINT during a sweep reports the try it cut short as in flight, not lost", async () => {
  await using silent = startSilent();
  const client = spawnClient([
    "-H",
    "127.0.0.1",
    "-p",
    String(silent.port),
    "--sweep",
    "-t",
    "1000",
    "--json",
  ]);
  // The first try times out at 1 s; the second is cut short: it has 1 s to
  // be heard in.
  await client.until(() => silent.received() >= 2, "the second try was sent");
  client.kill("SIGINT");
  const { code, stdout } = await client.finish();
  const document = JSON.parse(stdout);
  equal(document.failure.reason, "interrupted");
  equal(document.steps.at(-1).outcome, "interrupted");
  equal(document.in_flight, 1);
  equal(document.lost, document.sent - 1);
  equal(code, 1, "no size came back intact");
});
