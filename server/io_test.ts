import { deepEqual, equal, match, ok } from "node:assert/strict";
import { chooseIo } from "../kernel/choice.ts";
import { startServer } from "../testing/cli.ts";

/** What the batch engine needs (cwd is the root, so `.` covers kernel/). */
const ENGINE = ["--allow-net", "--allow-ffi", "--allow-read=."];

/** Sends `text` to the server on `port` and returns what came back. */
async function echo(port: number, text: string): Promise<string> {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  try {
    await conn.send(new TextEncoder().encode(text), {
      transport: "udp",
      hostname: "127.0.0.1",
      port,
    });
    const [data] = await conn.receive();
    return new TextDecoder().decode(data);
  } finally {
    conn.close();
  }
}

/**
 * Starts `server.ts` with `permissions` (and `args`), checks that the first
 * line is still the start-up line and that a datagram comes back, and
 * returns the `io:` line it printed.
 */
async function ioLine(
  permissions: string[],
  args: string[] = [],
): Promise<{ line: string; stderr: string }> {
  const server = await startServer(
    ["-H", "127.0.0.1", "-p", "0", "-q", ...args],
    "server.ts",
    permissions,
  );
  match(server.firstLine, /^starting up on 127\.0\.0\.1 port \d+$/);
  equal(await echo(server.port, "auto"), "auto");
  const { code, stdout, stderr } = await server.stop();
  equal(code, 0, stderr);
  const lines = stdout.split("\n");
  equal(lines[0], server.firstLine);
  const io = lines.filter((line) => line.startsWith("io: "));
  equal(io.length, 1, stdout);
  // Right after the socket's line: before the totals, after the port.
  equal(lines[1], io[0]);
  return { line: io[0]!, stderr };
}

Deno.test("chooseIo() keeps an explicit backend and picks batch with this test's permissions", () => {
  deepEqual(chooseIo("socket"), { io: "socket", reason: "--io socket" });
  deepEqual(chooseIo("batch"), { io: "batch", reason: "recvmmsg/sendmmsg" });
  // deno task test grants --allow-net, --allow-ffi and --allow-read.
  deepEqual(chooseIo("auto"), { io: "batch", reason: "recvmmsg/sendmmsg" });
});

Deno.test("server.ts picks batch by default when --allow-ffi and --allow-read=. are granted", async () => {
  const { line } = await ioLine(ENGINE);
  equal(line, "io: batch (recvmmsg/sendmmsg)");
  equal((await ioLine(ENGINE, ["--io", "auto"])).line, line);
});

Deno.test("server.ts --io auto stays on sockets without --allow-ffi and says so", async () => {
  equal(
    (await ioLine(["--allow-net"])).line,
    "io: socket (--allow-ffi not granted)",
  );
});

Deno.test("server.ts --io auto stays on sockets when --allow-net is scoped to hosts", async () => {
  equal(
    (await ioLine(["--allow-net=127.0.0.1", "--allow-ffi", "--allow-read=."]))
      .line,
    "io: socket (--allow-net is scoped to hosts)",
  );
});

Deno.test("server.ts --io auto stays on sockets when --allow-read does not cover kernel/", async () => {
  const { line } = await ioLine([
    "--allow-net",
    "--allow-ffi",
    "--allow-read=net", // elsewhere in the project: not kernel/
  ]);
  match(line, /^io: socket \(--allow-read does not cover \/.*\/kernel\/\)$/);
});

Deno.test("server.ts --io auto falls back to sockets when the engine cannot start", async () => {
  // The permission checks pass (kernel/ is readable), but the Worker cannot
  // import the policy module: a real start-up failure, tried and undone.
  const { line, stderr } = await ioLine([
    ...ENGINE,
    "--deny-read=kernel/_policy_hook.ts",
  ]);
  match(
    line,
    /^io: socket \(the batch engine cannot start: cannot run the batch loop: .*_policy_hook\.ts.*\)$/,
  );
  equal(stderr, "");
});

Deno.test("server.ts --json says which I/O is in use in an io event", async () => {
  for (
    const [permissions, io, reason] of [
      [ENGINE, "batch", "recvmmsg/sendmmsg"],
      [["--allow-net"], "socket", "--allow-ffi not granted"],
    ] as const
  ) {
    const server = await startServer(
      ["-H", "127.0.0.1", "-p", "0", "-q", "--json"],
      "server.ts",
      [...permissions],
    );
    equal(await echo(server.port, "json"), "json");
    const { code, stdout } = await server.stop();
    equal(code, 0);
    const events = stdout.trim().split("\n").map((line) => JSON.parse(line));
    deepEqual(events.map((event) => event.event), [
      "listening",
      "io",
      "shutdown",
    ]);
    deepEqual(events[1], { event: "io", io, reason });
  }
});

Deno.test("server.ts --metrics reports the backend auto picked in udp_echo_info{io}", async () => {
  for (
    const [permissions, io] of [[ENGINE, "batch"], [
      ["--allow-net"],
      "socket",
    ]] as const
  ) {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const metricsPort = probe.addr.port;
    probe.close();
    const server = await startServer(
      [
        "-H",
        "127.0.0.1",
        "-p",
        "0",
        "-q",
        "--metrics",
        `127.0.0.1:${metricsPort}`,
      ],
      "server.ts",
      [...permissions],
    );
    try {
      let text = "";
      for (let tries = 0; tries < 50 && text === ""; tries++) {
        try {
          text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`))
            .text();
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      ok(
        new RegExp(`^udp_echo_info\\{version="[^"]+",io="${io}"\\} 1$`, "m")
          .test(text),
        text,
      );
    } finally {
      await server.stop();
    }
  }
});
