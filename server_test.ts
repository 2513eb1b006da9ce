import { deepEqual, equal, match, ok, throws } from "node:assert/strict";
import { type EchoStats, serveEcho, type ServerEvent } from "./server.ts";
import type { IoBackend } from "./kernel/choice.ts";
import { RECEIVE_BUFFER_SIZE } from "./net/payload.ts";
import { ROOT, runScript, startServer } from "./testing/cli.ts";

/** Permission flags for `server.ts` with each backend (cwd is the root). */
const PERMISSIONS: Record<IoBackend, string[]> = {
  socket: ["--allow-net"],
  batch: ["--allow-net", "--allow-ffi", "--allow-read=."],
};

/** Defines a test once per I/O backend; the behaviour must not differ. */
function testBoth(name: string, fn: (io: IoBackend) => Promise<void>): void {
  Deno.test(name, () => fn("socket"));
  Deno.test(`${name} (--io batch)`, () => fn("batch"));
}

/** Starts `server.ts` with `--io` and the permissions the backend needs. */
function startServerWith(io: IoBackend, args: string[]) {
  return startServer([...args, "--io", io], "server.ts", PERMISSIONS[io]);
}

/** Runs `test` against a server on a free port, then stops it. */
async function withServer(
  hostname: string,
  test: (addr: Deno.NetAddr) => Promise<void>,
  onEvent?: (event: ServerEvent) => void,
  io: IoBackend = "socket",
): Promise<EchoStats> {
  const controller = new AbortController();
  const server = serveEcho({
    hostname,
    port: 0,
    signal: controller.signal,
    onEvent,
    io,
  });
  try {
    await test(server.addr);
  } finally {
    controller.abort();
  }
  return await server.finished;
}

/** Sends `payload` from a fresh socket and returns the first datagram back. */
async function exchange(
  to: Deno.NetAddr,
  payload: Uint8Array,
): Promise<[Uint8Array, Deno.NetAddr]> {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: to.hostname,
    port: 0,
  });
  try {
    await conn.send(payload, to);
    const [data, from] = await conn.receive(
      new Uint8Array(RECEIVE_BUFFER_SIZE),
    );
    return [data.slice(), from as Deno.NetAddr];
  } finally {
    conn.close();
  }
}

function randomBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) {
    crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
  }
  return bytes;
}

testBoth(
  "serveEcho() echoes a datagram byte for byte and counts it",
  async (io) => {
    const payload = new TextEncoder().encode(
      "This is our message. It will be sent all at once",
    );
    const stats = await withServer(
      "127.0.0.1",
      async (addr) => {
        const [reply, from] = await exchange(addr, payload);
        deepEqual(reply, payload);
        deepEqual({ hostname: from.hostname, port: from.port }, {
          hostname: addr.hostname,
          port: addr.port,
        });
      },
      undefined,
      io,
    );
    equal(stats.received, 1);
    equal(stats.receivedBytes, 48);
    equal(stats.echoed, 1);
    equal(stats.echoedBytes, 48);
    equal(stats.errors, 0);
    ok(stats.uptimeMs >= 0);
  },
);

testBoth("serveEcho() echoes a zero-length datagram", async (io) => {
  const stats = await withServer(
    "127.0.0.1",
    async (addr) => {
      const [reply] = await exchange(addr, new Uint8Array(0));
      equal(reply.length, 0);
    },
    undefined,
    io,
  );
  equal(stats.echoed, 1);
});

testBoth(
  "serveEcho() echoes 1, 1472, 8192 and 65507 bytes over IPv4 intact",
  async (io) => {
    await withServer(
      "127.0.0.1",
      async (addr) => {
        for (const size of [1, 1472, 8192, 65_507]) {
          const payload = randomBytes(size);
          const [reply] = await exchange(addr, payload);
          deepEqual(reply, payload, `${size} bytes`);
        }
      },
      undefined,
      io,
    );
  },
);

testBoth("serveEcho() echoes 65527 bytes over ::1 intact", async (io) => {
  await withServer(
    "::1",
    async (addr) => {
      equal(addr.hostname, "::1");
      const payload = randomBytes(65_527);
      const [reply] = await exchange(addr, payload);
      equal(reply.length, 65_527);
      deepEqual(reply, payload);
    },
    undefined,
    io,
  );
});

testBoth(
  "serveEcho() gives 50 concurrent clients each its own echo",
  async (io) => {
    const stats = await withServer(
      "127.0.0.1",
      async (addr) => {
        const payloads = Array.from(
          { length: 50 },
          (_, i) => new TextEncoder().encode(`client ${i}`),
        );
        const replies = await Promise.all(
          payloads.map((payload) => exchange(addr, payload)),
        );
        replies.forEach(([reply], i) => deepEqual(reply, payloads[i]));
      },
      undefined,
      io,
    );
    equal(stats.echoed, 50);
  },
);

testBoth("serveEcho() keeps serving after a client vanished", async (io) => {
  await withServer(
    "127.0.0.1",
    async (addr) => {
      const gone = Deno.listenDatagram({
        transport: "udp",
        hostname: "127.0.0.1",
        port: 0,
      });
      await gone.send(new Uint8Array([1, 2, 3]), addr);
      gone.close();
      const payload = new Uint8Array([4, 5, 6]);
      const [reply] = await exchange(addr, payload);
      deepEqual(reply, payload);
    },
    undefined,
    io,
  );
});

testBoth("serveEcho() keeps echoing when its onEvent throws", async (io) => {
  let calls = 0;
  const stats = await withServer("127.0.0.1", async (addr) => {
    for (const byte of [1, 2]) {
      const [reply] = await exchange(addr, new Uint8Array([byte]));
      deepEqual(reply, new Uint8Array([byte]));
    }
  }, () => {
    calls++;
    throw new Error("log broke");
  }, io);
  equal(calls, 2);
  equal(stats.echoed, 2);
});

Deno.test("serveEcho() with datagramEvents false reports no datagram", async () => {
  const seen: ServerEvent[] = [];
  const controller = new AbortController();
  const server = serveEcho({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
    onEvent: (event) => seen.push(event),
    datagramEvents: false,
  });
  try {
    const [reply] = await exchange(server.addr, new Uint8Array([7, 8]));
    deepEqual(reply, new Uint8Array([7, 8]));
  } finally {
    controller.abort();
  }
  const stats = await server.finished;
  equal(stats.echoed, 1);
  deepEqual(seen, []);
});

testBoth(
  "serveEcho() reports each datagram to onEvent with its payload",
  async (io) => {
    const seen: string[] = [];
    await withServer("127.0.0.1", async (addr) => {
      await exchange(addr, new TextEncoder().encode("abc"));
    }, (event) => {
      if (event.type === "datagram") {
        seen.push(`${new TextDecoder().decode(event.data)} ${event.sent}`);
      }
    }, io);
    deepEqual(seen, ["abc 3"]);
  },
);

testBoth(
  "serveEcho() throws a one-line error when the port is in use",
  async (io) => {
    await withServer(
      "127.0.0.1",
      (addr) => {
        throws(
          () => serveEcho({ hostname: "127.0.0.1", port: addr.port, io }),
          {
            message:
              `Cannot bind 127.0.0.1:${addr.port}: address already in use`,
          },
        );
        return Promise.resolve();
      },
      undefined,
      io,
    );
  },
);

testBoth(
  "serveEcho() stops at once when its signal is already aborted",
  async (io) => {
    const server = serveEcho({
      hostname: "127.0.0.1",
      port: 0,
      signal: AbortSignal.abort(),
      io,
    });
    const stats = await server.finished;
    equal(stats.received, 0);
  },
);

testBoth(
  "server.ts starts up like the tutorial, on the port actually bound",
  async (io) => {
    const server = await startServerWith(io, ["-p", "0"]);
    const { code, stdout, stderr } = await server.stop();
    // The tutorial's line, naming the address the name stood for.
    match(
      server.firstLine,
      /^starting up on localhost \((127\.0\.0\.1|::1)\) port \d+$/,
    );
    ok(server.port > 0);
    equal(code, 0);
    equal(stderr, "");
    match(stdout, /\nwaiting to receive message\n/);
    match(
      stdout,
      /\nshutting down: received 0 datagrams \(0 bytes\), echoed 0 datagrams \(0 bytes\), 0 errors, (host drops unknown, )?up \d+\.\d s\n$/,
    );
  },
);

testBoth(
  "server.ts tells each datagram's story and totals on SIGINT",
  async (io) => {
    const server = await startServerWith(io, ["-H", "127.0.0.1", "-p", "0"]);
    const [, from] = await exchange(
      { transport: "udp", hostname: "127.0.0.1", port: server.port },
      new TextEncoder().encode("hello\n"),
    );
    const { code, stdout } = await server.stop("SIGINT");
    equal(code, 0);
    equal(from.port, server.port);
    match(
      stdout,
      /received 6 bytes from 127\.0\.0\.1:\d+\n"hello\\n"\nsent 6 bytes back to 127\.0\.0\.1:\d+\nwaiting to receive message\n/,
    );
    match(
      stdout,
      /shutting down: received 1 datagram \(6 bytes\), echoed 1 datagram \(6 bytes\), 0 errors/,
    );
  },
);

testBoth("server.ts stops on SIGTERM with totals", async (io) => {
  const server = await startServerWith(io, ["-p", "0", "-q"]);
  const { code, stdout } = await server.stop("SIGTERM");
  equal(code, 0);
  match(stdout, /shutting down: /);
  ok(
    !stdout.includes("waiting to receive"),
    "quiet prints no per-datagram lines",
  );
});

testBoth("server.ts --json prints only JSON events on stdout", async (io) => {
  const server = await startServerWith(io, ["-H", "::1", "-p", "0", "--json"]);
  await exchange(
    { transport: "udp", hostname: "::1", port: server.port },
    new Uint8Array(3),
  );
  const { code, stdout } = await server.stop();
  equal(code, 0);
  const events = stdout.trim().split("\n").map((line) => JSON.parse(line));
  deepEqual(events.map((event) => event.event), [
    "listening",
    "io",
    "datagram",
    "shutdown",
  ]);
  deepEqual(events[0], {
    event: "listening",
    host: "::1",
    address: "::1",
    port: server.port,
  });
  equal(events[1].io, io);
  equal(events[2].bytes, 3);
  equal(events[2].sent, 3);
  equal(events[2].preview, '"\\x00\\x00\\x00"');
  match(events[2].from, /^\[::1\]:\d+$/);
  equal(events[3].received, 1);
  equal(events[3].echoed_bytes, 3);
});

testBoth(
  "server.ts exits 1 with one error line when the port is in use",
  async (io) => {
    await withServer(
      "127.0.0.1",
      async (addr) => {
        const { code, stdout, stderr } = await runScript("server.ts", [
          "-H",
          "127.0.0.1",
          "-p",
          String(addr.port),
        ]);
        equal(code, 1);
        equal(stdout, "");
        equal(
          stderr,
          `error: cannot bind 127.0.0.1:${addr.port}: address already in use\n`,
        );
      },
      undefined,
      io,
    );
  },
);

Deno.test("server.ts exits 2 with one error line on bad usage", async () => {
  const cases: [string[], string][] = [
    [
      ["--nope"],
      "error: cannot use --nope: unknown flag (see --help)\n",
    ],
    [
      ["-p", "65536"],
      'error: cannot use --port "65536": expected a whole number from 0 to 65535\n',
    ],
    [
      ["-H", "bad host"],
      'error: cannot use --host "bad host": expected a host name, an IPv4 or an IPv6 address\n',
    ],
    [
      ["extra"],
      'error: cannot use "extra": unexpected argument (see --help)\n',
    ],
    [["-p"], "error: cannot use --port: it needs a value\n"],
    [
      ["--io", "fast"],
      'error: cannot use --io "fast": expected auto, socket or batch\n',
    ],
  ];
  for (const [args, expected] of cases) {
    const { code, stdout, stderr } = await runScript("server.ts", args);
    equal(code, 2, args.join(" "));
    equal(stdout, "");
    equal(stderr, expected);
  }
});

Deno.test("server.ts without --allow-net fails with one line, no stack trace", async () => {
  const { code, stderr } = await runScript("server.ts", ["-p", "0"], {
    permissions: [],
  });
  equal(code, 1);
  match(
    stderr,
    /^error: cannot bind localhost:0: requires net access to "localhost:0", run again with the --allow-net flag\n$/,
  );
});

Deno.test("server.ts --help and --version exit 0", async () => {
  const help = await runScript("server.ts", ["--help"]);
  equal(help.code, 0);
  match(help.stdout, /^Usage: server\.ts \[options\]/);
  match(help.stdout, /Exit status: 0 .*1 .*2 usage error/s);
  const version = await runScript("server.ts", ["-V"]);
  equal(version.code, 0);
  const { version: expected } = JSON.parse(
    await Deno.readTextFile(new URL("deno.json", ROOT)),
  );
  equal(version.stdout, `udp-echo server ${expected}\n`);
});

testBoth(
  "server.ts answers a Python socket client written like the tutorial",
  async (io) => {
    for (const host of ["127.0.0.1", "::1"]) {
      const server = await startServerWith(io, ["-H", host, "-p", "0", "-q"]);
      try {
        const client = await new Deno.Command("python3", {
          args: [
            new URL("testdata/py_echo_client.py", ROOT).pathname,
            host,
            String(server.port),
            "from python",
          ],
          stdout: "piped",
          stderr: "piped",
        }).output();
        equal(client.code, 0, new TextDecoder().decode(client.stderr));
        equal(new TextDecoder().decode(client.stdout), "from python\n");
      } finally {
        const { stdout } = await server.stop();
        match(stdout, /echoed 1 datagram \(11 bytes\)/);
      }
    }
  },
);

Deno.test("server.ts --io batch without --allow-ffi exits 2 with one line", async () => {
  const { code, stdout, stderr } = await runScript("server.ts", [
    "--io",
    "batch",
    "-p",
    "0",
  ]);
  equal(code, 2);
  equal(stdout, "");
  equal(
    stderr,
    "error: cannot use --io batch: it needs --allow-ffi (see deno task server:fast)\n",
  );
});

Deno.test("server.ts --io batch without --allow-net fails like the socket backend", async () => {
  const { code, stderr } = await runScript(
    "server.ts",
    ["--io", "batch", "-p", "0"],
    { permissions: ["--allow-ffi", "--allow-read=."] },
  );
  equal(code, 1);
  equal(
    stderr,
    'error: cannot bind localhost:0: requires net access to "localhost:0", run again with the --allow-net flag\n',
  );
});

Deno.test("server.ts --help wins over bad values", async () => {
  const { code, stdout } = await runScript("server.ts", ["-p", "x", "--help"]);
  equal(code, 0);
  match(stdout, /^Usage: server\.ts/);
});

Deno.test("server.ts without --unstable-net says which flag is missing", async () => {
  const child = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-config", "--allow-net", "server.ts", "-p", "0"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  equal(child.code, 2);
  equal(
    new TextDecoder().decode(child.stderr),
    "error: cannot open a UDP socket: Deno.listenDatagram needs the --unstable-net flag\n",
  );
});

Deno.test("server.ts shebang and the deno.json server tasks give the same V8 flags", async () => {
  const v8Flags = (command: string) => command.match(/--v8-flags=\S+/g) ?? [];
  const shebang = (await Deno.readTextFile(new URL("server.ts", ROOT))).split(
    "\n",
  )[0]!;
  const expected = v8Flags(shebang);
  // The flag keeps resident memory flat under load (docs/performance.md, Memory).
  deepEqual(expected, ["--v8-flags=--max-semi-space-size=4"]);
  const { tasks } = JSON.parse(
    await Deno.readTextFile(new URL("deno.json", ROOT)),
  );
  const compileServer: string | undefined = tasks.compile.split("&&")
    .find((part: string) => part.includes("server.ts"));
  ok(compileServer, `no server.ts in the compile task: ${tasks.compile}`);
  for (const command of [tasks.server, tasks["server:fast"], compileServer]) {
    deepEqual(v8Flags(command), expected, command);
  }
  // The shebang's own arguments start the server, V8 flags included.
  const prefix = "#!/usr/bin/env -S deno ";
  ok(shebang.startsWith(prefix), shebang);
  const args = shebang.slice(prefix.length).split(/\s+/);
  const child = await new Deno.Command(Deno.execPath(), {
    args: [...args, "server.ts", "--version"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  equal(new TextDecoder().decode(child.stderr), "");
  equal(child.code, 0);
  match(
    new TextDecoder().decode(child.stdout),
    /^udp-echo server \d+\.\d+\.\d+\n$/,
  );
});

testBoth(
  "serveEcho() binds an address once however it is spelt, and echoes from it",
  async (io) => {
    const controller = new AbortController();
    const server = serveEcho({
      hostnames: ["::1", "[::1]", "0:0:0:0:0:0:0:1", "127.0.0.1"],
      port: 0,
      signal: controller.signal,
      io,
    });
    try {
      deepEqual(server.addrs, [
        { transport: "udp", hostname: "::1", port: server.addr.port },
        { transport: "udp", hostname: "127.0.0.1", port: server.addr.port },
      ]);
      for (const addr of server.addrs) {
        const [reply] = await exchange(addr, new TextEncoder().encode("x"));
        equal(new TextDecoder().decode(reply), "x");
      }
    } finally {
      controller.abort();
    }
    equal((await server.finished).echoed, 2);
  },
);

Deno.test("server.ts warns that --burst and --max-sources do nothing without a rate limit", async () => {
  const idle = await startServer(
    ["-H", "127.0.0.1", "-p", "0", "-q", "--burst", "5", "--max-sources", "9"],
  );
  equal(
    (await idle.stop()).stderr,
    "warning: --burst and --max-sources do nothing without a rate limit (--rate, or the default on an address that is not loopback)\n",
  );
  const limited = await startServer(
    ["-H", "127.0.0.1", "-p", "0", "-q", "--burst", "5", "--rate", "10"],
  );
  equal((await limited.stop()).stderr, "");
});

Deno.test("server.ts --help says --stamp runs on either backend", async () => {
  const { stdout } = await runScript("server.ts", ["--help"]);
  match(stdout, /--stamp .*\n.*\n.*Runs on either backend/);
  equal(stdout.includes("for now"), false);
});
