/**
 * server.ts under output it cannot write and senders it cannot answer
 * (issue 11, §9 and §10), as a user runs it: a subprocess on real sockets.
 */
import { equal, match, ok } from "node:assert/strict";
import { ROOT, spawnScript, startServer } from "./testing/cli.ts";
import { rssKiB } from "./testing/proc.ts";

type Io = "socket" | "batch";
const PERMISSIONS: Record<Io, string[]> = {
  socket: ["--allow-net"],
  batch: ["--allow-net", "--allow-ffi", "--allow-read=."],
};

function freePort(): number {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const { port } = conn.addr as Deno.NetAddr;
  conn.close();
  return port;
}

/** The server's arguments: loopback, the backend, then `args`. */
function serverArgs(io: Io, args: string[]): string[] {
  return ["-H", "127.0.0.1", "--io", io, ...args];
}

function spawnServer(io: Io, args: string[], permissions = PERMISSIONS[io]) {
  return spawnScript("server.ts", serverArgs(io, args), { permissions });
}

/**
 * Sends one datagram from `from` until one comes back (the server is up),
 * for at most 20 s; returns how many it sent, since a slow echo is sent for
 * again.
 */
async function waitForEcho(port: number, from = "127.0.0.1"): Promise<number> {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: from,
    port: 0,
  });
  const received = conn.receive().then(() => true, () => false);
  try {
    const deadline = Date.now() + 20_000;
    for (let sent = 1; Date.now() < deadline; sent++) {
      await conn.send(new Uint8Array([1]), {
        transport: "udp",
        hostname: "127.0.0.1",
        port,
      });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const got = await Promise.race([
        received,
        new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), 100);
        }),
      ]);
      clearTimeout(timer);
      if (got) return sent;
    }
    throw new Error(`no echo from port ${port}`);
  } finally {
    conn.close();
    await received;
  }
}

/**
 * Sends `count` datagrams from `from` to `port`, 64 at a time, for at most
 * `ms`; stops early once `until` holds.
 */
async function flood(
  port: number,
  options: {
    count: number;
    ms: number;
    from?: string;
    until?: () => boolean;
  },
): Promise<number> {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: options.from ?? "127.0.0.1",
    port: 0,
  });
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
  const payload = new TextEncoder().encode("flood \u009b2J");
  const deadline = Date.now() + options.ms;
  let sent = 0;
  try {
    while (
      sent < options.count && Date.now() < deadline && !options.until?.()
    ) {
      const sends = [];
      for (let i = 0; i < 64; i++) sends.push(conn.send(payload, to));
      await Promise.allSettled(sends);
      sent += 64;
    }
  } finally {
    conn.close();
  }
  return sent;
}

for (const io of ["socket", "batch"] as const) {
  for (const json of [false, true]) {
    Deno.test(`server.ts${json ? " --json" : ""} --io ${io} >/dev/full keeps echoing and puts its totals on stderr`, async () => {
      const port = freePort();
      const args = [
        "run",
        "--unstable-net",
        ...PERMISSIONS[io],
        "server.ts",
        ...serverArgs(io, [
          "-p",
          String(port),
          "--stats-interval",
          "0.05",
          ...(json ? ["--json"] : []),
        ]),
      ];
      const child = new Deno.Command("sh", {
        args: ["-c", 'exec "$0" "$@" >/dev/full', Deno.execPath(), ...args],
        cwd: ROOT,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).spawn();
      const stderrText = new Response(child.stderr).text();
      await waitForEcho(port);
      await waitForEcho(port);
      // Let the stats timer and the fold timer run against the full disk.
      await new Promise((resolve) => setTimeout(resolve, 300));
      child.kill("SIGTERM");
      const { code } = await child.status;
      const stderr = await stderrText;
      equal(code, 0, stderr);
      const lines = stderr.trimEnd().split("\n");
      equal(
        lines[0],
        "error: cannot write to standard output: no space left on device",
      );
      equal(lines.length, 2, stderr);
      ok(!stderr.includes("    at "), "no stack trace");
      if (json) {
        const totals = JSON.parse(lines[1]!);
        equal(totals.event, "shutdown");
        ok(totals.received >= 2);
        equal(totals.echoed, totals.received);
        ok(totals.log_lines_dropped >= 3, lines[1]);
      } else {
        match(
          lines[1]!,
          /^shutting down: received \d+ datagrams .*, \d+ log lines dropped$/,
        );
      }
    });
  }

  Deno.test(`server.ts --json --io ${io} with a stdout nobody reads stays bounded under a flood and stops on SIGTERM at once`, async () => {
    const port = freePort();
    const child = spawnServer(io, ["-p", String(port), "--json"]);
    let stderr = "";
    const stderrText = (async () => {
      for await (
        const text of child.stderr.pipeThrough(new TextDecoderStream())
      ) {
        stderr += text;
      }
      return stderr;
    })();
    try {
      await waitForEcho(port);
      // A failed read of the size fails the test (through `sampling`).
      let maxRss = 0;
      let flooding = true;
      const sampling = (async () => {
        while (flooding) {
          maxRss = Math.max(maxRss, await rssKiB(child.pid));
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      })();
      // Until the server's queue for stdout is full and it drops lines,
      // however slowly a busy machine floods; then as much again, to show
      // it stays bounded.
      const dropping = () => stderr.includes("not keeping up");
      const sent = await flood(port, {
        count: Infinity,
        ms: 60_000,
        until: dropping,
      }).then(async (before) =>
        before + await flood(port, {
          count: before,
          ms: 60_000,
        })
      ).finally(() => flooding = false);
      await sampling;
      maxRss = Math.max(maxRss, await rssKiB(child.pid));
      ok(dropping(), `no line dropped after ${sent} datagrams: ${stderr}`);
      ok(maxRss < 200 * 1024, `VmRSS ${maxRss} KiB`);
      // It still answers.
      await waitForEcho(port);
      const stopAt = performance.now();
      child.kill("SIGTERM");
      const { code } = await child.status;
      const stopMs = performance.now() - stopAt;
      equal(code, 0);
      // It gives up on the stuck stdout after a short wait; waiting for it
      // to drain, it would never stop.
      ok(stopMs < 20_000, `stopped in ${stopMs.toFixed(0)} ms`);
      await stderrText;
      match(
        stderr,
        /^warning: standard output is not keeping up: dropping lines\n/,
      );
      const totals = JSON.parse(stderr.trimEnd().split("\n").at(-1)!);
      equal(totals.event, "shutdown");
      ok(totals.log_lines_dropped + totals.log_events_dropped > 0);
      equal(
        totals.received,
        totals.echoed + totals.errors +
          Object.values(totals.dropped as Record<string, number>).reduce(
            (a, b) => a + b,
            0,
          ),
      );
    } finally {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      await child.status;
      await child.stdout.cancel();
      await stderrText;
    }
  });

  Deno.test(`server.ts --io ${io} keeps echoing when its stdout reader leaves`, async () => {
    const port = freePort();
    const child = spawnServer(io, ["-p", String(port)]);
    const stderrText = new Response(child.stderr).text();
    const reader = child.stdout.getReader();
    await reader.read();
    await reader.cancel();
    let sent = 0;
    for (let i = 0; i < 5; i++) sent += await waitForEcho(port);
    child.kill("SIGTERM");
    const { code } = await child.status;
    const stderr = await stderrText;
    equal(code, 0, stderr);
    const lines = stderr.trimEnd().split("\n");
    equal(lines[0], "error: cannot write to standard output: broken pipe");
    equal(lines.length, 2, stderr);
    match(
      lines[1]!,
      new RegExp(
        `^shutting down: received ${sent} datagrams .*log lines? dropped$`,
      ),
    );
  });
}

Deno.test("server.ts folds the errors of a sender it may not answer: one line a second, not one per datagram", async () => {
  // Port 0 and the port its first line names: a port picked beforehand may
  // be taken meanwhile by another test's echo, which would answer for it.
  const server = await startServer(
    serverArgs("socket", ["-p", "0", "-q"]),
    "server.ts",
    ["--allow-net=127.0.0.1"],
  );
  const port = server.port;
  await waitForEcho(port);
  const started = performance.now();
  const sent = await flood(port, {
    count: 50_000,
    ms: 3_000,
    from: "127.0.0.2",
  });
  const seconds = (performance.now() - started) / 1000;
  const { code, stdout, stderr } = await server.stop("SIGTERM");
  equal(code, 0);
  const lines = stderr.trimEnd().split("\n");
  const errorLines = lines.filter((line) =>
    line.startsWith("error: cannot echo to 127.0.0.2:")
  );
  const foldLines = lines.filter((line) =>
    /^\.\.\. [\d,]+ more errors?$/.test(line)
  );
  ok(
    errorLines.length <= 20 * (Math.ceil(seconds) + 2),
    `${errorLines.length} error lines for ${sent} datagrams in ${
      seconds.toFixed(1)
    } s`,
  );
  ok(
    foldLines.length >= 1 && foldLines.length <= Math.ceil(seconds) + 2,
    foldLines.join("\n"),
  );
  equal(
    lines.length,
    errorLines.length + foldLines.length,
    stderr.slice(0, 2000),
  );
  const errors = Number(
    /, ([\d,]+) errors/.exec(stdout)?.[1]?.replaceAll(",", ""),
  );
  const folded = foldLines.reduce(
    (sum, line) => sum + Number(/[\d,]+/.exec(line)![0].replaceAll(",", "")),
    0,
  );
  equal(
    errorLines.length + folded,
    errors,
    "every error is a line or in a fold",
  );
  ok(errors > 1_000, stdout);
});
