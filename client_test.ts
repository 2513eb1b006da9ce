import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { EchoClient, EchoTimeoutError } from "./client.ts";
import { DEFAULT_MESSAGE } from "./echo/client.ts";
import { serveEcho } from "./server.ts";
import { RECEIVE_BUFFER_SIZE } from "./net/payload.ts";
import { ROOT, runScript, spawnScript } from "./testing/cli.ts";
import { type FaultRule, startFaultyEcho } from "./testing/fault_relay.ts";

const encode = (text: string) => new TextEncoder().encode(text);

type Respond = (
  data: Uint8Array,
  from: Deno.NetAddr,
  conn: Deno.DatagramConn,
  index: number,
) => Promise<void> | void;

/**
 * Runs `test` against a scripted server on a free port: `respond` decides
 * what, if anything, goes back for each datagram. Returns what it received.
 */
async function withFakeServer(
  hostname: string,
  respond: Respond,
  test: (addr: Deno.NetAddr) => Promise<void>,
): Promise<Uint8Array[]> {
  const conn = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
  const received: Uint8Array[] = [];
  const loop = (async () => {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    try {
      while (true) {
        const [data, from] = await conn.receive(buffer);
        received.push(data.slice());
        await respond(
          data.slice(),
          from as Deno.NetAddr,
          conn,
          received.length - 1,
        );
      }
    } catch {
      // Closed by the test.
    }
  })();
  try {
    await test(conn.addr as Deno.NetAddr);
  } finally {
    conn.close();
    await loop;
  }
  return received;
}

const echoBack: Respond = async (data, from, conn) => {
  await conn.send(data, from);
};

Deno.test("EchoClient echoes a message off serveEcho in one try", async () => {
  const controller = new AbortController();
  const server = serveEcho({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
  });
  const client = await EchoClient.open(server.addr);
  try {
    const reply = await client.echo(encode("hello"));
    deepEqual(reply.data, encode("hello"));
    equal(reply.matches, true);
    equal(reply.tries, 1);
    ok(reply.rttMs >= 0);
    equal(client.target.family, "IPv4");
  } finally {
    await client.close();
    controller.abort();
  }
  equal((await server.finished).echoed, 1);
});

Deno.test("EchoClient ignores a datagram from a foreign socket", async () => {
  const foreign = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  try {
    await withFakeServer("127.0.0.1", async (data, from, conn) => {
      // Another port on the same host answers first, with other bytes: a
      // send on loopback is queued at the receiver when it returns.
      await foreign.send(encode("spoofed"), from);
      await conn.send(data, from);
    }, async (addr) => {
      await using client = await EchoClient.open(addr, {
        timeout: 2000,
        retries: 0,
      });
      const reply = await client.echo(encode("real"));
      deepEqual(reply.data, encode("real"));
      equal(reply.matches, true);
    });
  } finally {
    foreign.close();
  }
});

Deno.test("EchoClient flags an echo that differs from what was sent", async () => {
  await withFakeServer("127.0.0.1", async (data, from, conn) => {
    await conn.send(data.subarray(0, data.length - 1), from);
  }, async (addr) => {
    await using client = await EchoClient.open(addr);
    const reply = await client.echo(encode("truncate me"));
    equal(reply.matches, false);
    deepEqual(reply.data, encode("truncate m"));
  });
});

Deno.test("EchoClient sends again when the first datagram is lost", async () => {
  const retries: [number, number][] = [];
  const received = await withFakeServer(
    "127.0.0.1",
    async (data, from, conn, index) => {
      if (index > 0) await conn.send(data, from);
    },
    async (addr) => {
      await using client = await EchoClient.open(addr, {
        timeout: 250,
        retries: 2,
      });
      const reply = await client.echo(encode("again"), {
        onRetry: (retry, wait) => retries.push([retry, wait]),
      });
      equal(reply.tries, 2);
      equal(reply.matches, true);
    },
  );
  equal(received.length, 2);
  deepEqual(retries, [[1, 500]]);
});

Deno.test("EchoClient gives up after its retries, in bounded time", async () => {
  const received = await withFakeServer("127.0.0.1", () => {}, async (addr) => {
    await using client = await EchoClient.open(addr, {
      timeout: 100,
      retries: 2,
    });
    const started = performance.now();
    await rejects(client.echo(encode("anyone?")), (error: unknown) => {
      ok(error instanceof EchoTimeoutError);
      equal(error.tries, 3);
      match(
        error.message,
        new RegExp(
          `^Cannot get an echo from 127\\.0\\.0\\.1:${addr.port}: no reply after 3 tries \\(\\d+ ms\\)$`,
        ),
      );
      return true;
    });
    const elapsed = performance.now() - started;
    // 100 + 200 + 400 ms of waiting; a loaded machine may add some.
    // Bounded: the waits add up to 700 ms; a loaded machine may add some.
    ok(elapsed >= 690 && elapsed < 5000, `took ${elapsed} ms`);
  });
  equal(received.length, 3);
});

Deno.test("EchoClient ignores a late echo of an earlier unanswered message", async () => {
  await withFakeServer("127.0.0.1", async (data, from, conn, index) => {
    // The first message's echo comes only after the second message is sent.
    if (index === 1) {
      await conn.send(encode("first"), from);
      await conn.send(data, from);
    }
  }, async (addr) => {
    await using client = await EchoClient.open(addr, {
      timeout: 300,
      retries: 0,
    });
    await rejects(client.echo(encode("first")), EchoTimeoutError);
    const reply = await client.echo(encode("second"));
    deepEqual(reply.data, encode("second"));
    equal(reply.matches, true);
  });
});

Deno.test("EchoClient refuses a payload over the IPv4 limit before sending", async () => {
  const received = await withFakeServer("127.0.0.1", echoBack, async (addr) => {
    await using client = await EchoClient.open(addr);
    await rejects(client.echo(new Uint8Array(65_508)), {
      name: "RangeError",
      message:
        "Cannot send 65508 bytes: an IPv4 UDP payload holds at most 65507",
    });
    equal((await client.echo(new Uint8Array(65_507))).matches, true);
  });
  deepEqual(received.map((data) => data.length), [65_507]);
});

Deno.test("EchoClient.open() refuses port 0 and bad timing options", async () => {
  await rejects(
    EchoClient.open({ hostname: "127.0.0.1", port: 0 }),
    RangeError,
  );
  await rejects(
    EchoClient.open({ hostname: "127.0.0.1", port: 9 }, { timeout: 0 }),
    RangeError,
  );
  await rejects(
    EchoClient.open({ hostname: "127.0.0.1", port: 9 }, { retries: -1 }),
    RangeError,
  );
});

Deno.test("client.ts prints the tutorial's story and exits 0", async () => {
  const received = await withFakeServer("127.0.0.1", echoBack, async (addr) => {
    const { code, stdout, stderr } = await runScript("client.ts", [
      "-p",
      String(addr.port),
    ]);
    equal(code, 0);
    equal(stderr, "");
    equal(
      stdout,
      `sending "${DEFAULT_MESSAGE}"\nwaiting to receive\nreceived "${DEFAULT_MESSAGE}"\nclosing socket\n`,
    );
  });
  deepEqual(received, [encode(DEFAULT_MESSAGE)]);
});

Deno.test("client.ts sends its words as one message", async () => {
  const received = await withFakeServer("::1", echoBack, async (addr) => {
    const { code, stdout } = await runScript("client.ts", [
      "-H",
      "[::1]",
      "-p",
      String(addr.port),
      "hello",
      "there",
    ]);
    equal(code, 0);
    match(stdout, /^sending "hello there"\n/);
  });
  deepEqual(received, [encode("hello there")]);
});

Deno.test("client.ts - sends each line of stdin as its own datagram", async () => {
  const received = await withFakeServer("127.0.0.1", echoBack, async (addr) => {
    const { code, stdout } = await runScript("client.ts", [
      "-q",
      "-p",
      String(addr.port),
      "-",
    ], {
      stdin: "one\r\ntwo\n\nthree",
    });
    equal(code, 0);
    equal(stdout, "one\ntwo\n\nthree\n");
  });
  deepEqual(received, [
    encode("one"),
    encode("two"),
    encode(""),
    encode("three"),
  ]);
});

Deno.test("client.ts --json prints one object per message", async () => {
  await withFakeServer("127.0.0.1", echoBack, async (addr) => {
    const { code, stdout } = await runScript("client.ts", [
      "--json",
      "-p",
      String(addr.port),
      "-",
    ], {
      stdin: "a\nbb\n",
    });
    equal(code, 0);
    const lines = stdout.trim().split("\n").map((line) => JSON.parse(line));
    equal(lines.length, 2);
    deepEqual(
      lines.map((
        { event, target, sent_bytes, received_bytes, match, tries },
      ) => ({
        event,
        target,
        sent_bytes,
        received_bytes,
        match,
        tries,
      })),
      [1, 2].map((size) => ({
        event: "echo",
        target: `127.0.0.1:${addr.port}`,
        sent_bytes: size,
        received_bytes: size,
        match: true,
        tries: 1,
      })),
    );
    ok(lines.every((line) => typeof line.rtt_ms === "number"));
  });
});

Deno.test("client.ts exits 1 with one error line when no echo comes", async () => {
  const received = await withFakeServer("127.0.0.1", () => {}, async (addr) => {
    const { code, stdout, stderr } = await runScript("client.ts", [
      "-p",
      String(addr.port),
      "-t",
      "50",
      "-r",
      "1",
    ]);
    equal(code, 1);
    match(
      stdout,
      /no reply yet; sending again \(retry 1 of 1, waiting 100 ms\)\n/,
    );
    match(stdout, /closing socket\n$/);
    match(
      stderr,
      new RegExp(
        `^error: cannot get an echo from 127\\.0\\.0\\.1:${addr.port}: no reply after 2 tries \\(\\d+ ms\\)\\n$`,
      ),
    );
  });
  equal(received.length, 2);
});

Deno.test("client.ts exits 1 when the echo differs", async () => {
  await withFakeServer("127.0.0.1", async (data, from, conn) => {
    await conn.send(data.map((byte) => byte ^ 1), from);
  }, async (addr) => {
    const { code, stderr } = await runScript("client.ts", [
      "-p",
      String(addr.port),
      "abc",
    ]);
    equal(code, 1);
    equal(
      stderr,
      `error: the echo from 127.0.0.1:${addr.port} differs from what was sent (3 bytes sent, 3 received)\n`,
    );
  });
});

Deno.test("client.ts refuses 65508 bytes over IPv4 with exit 2, sends 65527 over ::1", async () => {
  const v4 = await withFakeServer("127.0.0.1", echoBack, async (addr) => {
    const { code, stdout, stderr } = await runScript("client.ts", [
      "-p",
      String(addr.port),
      "x".repeat(65_508),
    ]);
    equal(code, 2);
    equal(stdout, "");
    equal(
      stderr,
      "error: cannot send 65508 bytes: an IPv4 UDP payload holds at most 65507\n",
    );
  });
  equal(v4.length, 0);
  const v6 = await withFakeServer("::1", echoBack, async (addr) => {
    const { code } = await runScript("client.ts", [
      "-q",
      "-H",
      "::1",
      "-p",
      String(addr.port),
      "y".repeat(65_527),
    ]);
    equal(code, 0);
  });
  deepEqual(v6.map((data) => data.length), [65_527]);
});

Deno.test("EchoClient takes the echo of a message sent again after it timed out", async () => {
  await withFakeServer("127.0.0.1", async (data, from, conn, index) => {
    if (index > 0) await conn.send(data, from);
  }, async (addr) => {
    await using client = await EchoClient.open(addr, {
      timeout: 300,
      retries: 0,
    });
    await rejects(client.echo(encode("ping")), EchoTimeoutError);
    const reply = await client.echo(encode("ping"));
    equal(reply.matches, true);
  });
});

Deno.test("EchoClient ignores the leftover echo of a retried message", async () => {
  await withFakeServer("127.0.0.1", async (data, from, conn, index) => {
    // The first send is echoed only with the retry: two echoes of "first".
    if (index === 1) await conn.send(data, from);
    if (index >= 1) await conn.send(data, from);
  }, async (addr) => {
    await using client = await EchoClient.open(addr, {
      timeout: 300,
      retries: 2,
    });
    equal((await client.echo(encode("first"))).tries, 2);
    const reply = await client.echo(encode("second"));
    deepEqual(reply.data, encode("second"));
    equal(reply.matches, true);
  });
});

Deno.test("client.ts refuses the unspecified address with exit 2", async () => {
  for (
    const [host, use] of [["0.0.0.0", "127.0.0.1"], ["::", "::1"]] as const
  ) {
    const { code, stderr } = await runScript("client.ts", [
      "-H",
      host,
      "-p",
      "9",
    ]);
    equal(code, 2);
    equal(
      stderr,
      `error: cannot send to ${host}: it is the unspecified address; use ${use} for this machine\n`,
    );
  }
});

Deno.test("client.ts - reports a line too long for a datagram and goes on", async () => {
  const received = await withFakeServer("127.0.0.1", echoBack, async (addr) => {
    const long = "z".repeat(8_000_000);
    const { code, stdout, stderr } = await runScript("client.ts", [
      "-p",
      String(addr.port),
      "-",
    ], {
      stdin: `before\n${long}\nafter\n`,
    });
    equal(code, 1);
    equal(
      stderr,
      "error: cannot send 8000000 bytes: an IPv4 UDP payload holds at most 65507\n",
    );
    equal(
      stdout.match(/^sending /gm)?.length,
      2,
      "no sending line for the refused one",
    );
  });
  deepEqual(received, [encode("before"), encode("after")]);
});

Deno.test("client.ts stops at a closed stdout with one error line", async () => {
  await withFakeServer("127.0.0.1", echoBack, async (addr) => {
    const child = spawnScript(
      "client.ts",
      ["-q", "-p", String(addr.port), "-"],
      {
        stdin: "piped",
      },
    );
    await child.stdout.cancel();
    const writer = child.stdin.getWriter();
    await writer.write(
      encode(Array.from({ length: 200 }, (_, i) => `line ${i}`).join("\n")),
    );
    await writer.close();
    const { code, stderr } = await child.output();
    equal(code, 1);
    equal(
      new TextDecoder().decode(stderr),
      "error: cannot write to standard output: broken pipe\n",
    );
  });
});

Deno.test("client.ts --help wins over bad values", async () => {
  const { code, stdout } = await runScript("client.ts", ["-p", "x", "--help"]);
  equal(code, 0);
  match(stdout, /^Usage: client\.ts/);
});

Deno.test("client.ts exits 2 with one error line on bad usage", async () => {
  const cases: [string[], string][] = [
    [
      ["--nope"],
      "error: cannot use --nope: unknown flag (see --help)\n",
    ],
    [
      ["-p", "0"],
      'error: cannot use --port "0": expected a whole number from 1 to 65535\n',
    ],
    [
      ["-p", "x"],
      'error: cannot use --port "x": expected a whole number from 1 to 65535\n',
    ],
    [
      ["-t", "0"],
      'error: cannot use --timeout "0": expected a whole number of milliseconds from 1 to 3600000\n',
    ],
    [
      ["-r", "-1"],
      'error: cannot use --retries "-1": expected a whole number from 0 to 100\n',
    ],
    [
      ["--retries=-1"],
      'error: cannot use --retries "-1": expected a whole number from 0 to 100\n',
    ],
    [
      ["-r", "1.5"],
      'error: cannot use --retries "1.5": expected a whole number from 0 to 100\n',
    ],
    [
      ["a", "-"],
      'error: cannot use "-": it reads standard input, so it stands alone\n',
    ],
  ];
  for (const [args, expected] of cases) {
    const { code, stdout, stderr } = await runScript("client.ts", args);
    equal(code, 2, args.join(" "));
    equal(stdout, "");
    equal(stderr, expected, args.join(" "));
  }
});

Deno.test("client.ts --help and --version exit 0", async () => {
  const help = await runScript("client.ts", ["-h"]);
  equal(help.code, 0);
  match(help.stdout, /^Usage: client\.ts \[options\] \[message \.\.\.\]/);
  match(help.stdout, /Exit status: 0 .*1 failure.*2 usage error/s);
  const version = await runScript("client.ts", ["--version"]);
  equal(version.code, 0);
  match(version.stdout, /^udp-echo client \d+\.\d+\.\d+\n$/);
});

Deno.test("client.ts gets its echo from a Python socket server written like the tutorial", async () => {
  for (const host of ["127.0.0.1", "::1"]) {
    const server = new Deno.Command("python3", {
      args: [new URL("testdata/py_echo_server.py", ROOT).pathname, host, "0"],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const lines = server.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    try {
      const { value = "" } = await lines.read();
      const port = /^listening (\d+)/.exec(value)?.[1];
      ok(port, `python server said ${value}`);
      const { code, stdout } = await runScript("client.ts", [
        "-H",
        host,
        "-p",
        port,
        "to python",
      ]);
      equal(code, 0);
      match(stdout, /\nreceived "to python"\n/);
    } finally {
      server.kill();
      await lines.cancel();
      await server.status;
    }
  }
});

/** Every echo comes back twice, the copy right behind the first. */
const TWICE: FaultRule[] = [{
  direction: "reply",
  select: () => true,
  action: { type: "duplicate" },
}];

Deno.test("EchoClient never takes the second copy of an echo for the next reply", async () => {
  await using relay = startFaultyEcho(TWICE);
  await using client = await EchoClient.open(relay.target, { timeout: 500 });
  for (const word of ["one", "two", "three", "one", "four"]) {
    const reply = await client.echo(encode(word));
    deepEqual(reply.data, encode(word));
    equal(reply.matches, true);
    equal(reply.tries, 1);
  }
  equal(relay.stats.duplicated, 5);
});

Deno.test("client.ts - through a path that delivers every echo twice gives each line once", async () => {
  await using relay = startFaultyEcho(TWICE);
  const { code, stdout, stderr } = await runScript("client.ts", [
    "-q",
    "-H",
    "127.0.0.1",
    "-p",
    String(relay.target.port),
    "-",
  ], { stdin: "one\ntwo\nthree\n" });
  equal(stderr, "");
  equal(stdout, "one\ntwo\nthree\n");
  equal(code, 0);
  equal(relay.stats.duplicated, 3);
});

Deno.test("client.ts and server.ts --help and -V into a full disk exit 1 with one error line", async () => {
  for (const script of ["client.ts", "server.ts"]) {
    for (const flag of ["--help", "-V"]) {
      const { code, stderr } = await new Deno.Command("sh", {
        args: [
          "-c",
          'exec "$0" "$@" >/dev/full',
          Deno.execPath(),
          "run",
          "--allow-net",
          script,
          flag,
        ],
        cwd: ROOT,
        stdin: "null",
        env: { NO_COLOR: "1" },
      }).output();
      const text = new TextDecoder().decode(stderr);
      const what = `${script} ${flag}: ${text}`;
      equal(code, 1, what);
      equal(
        text,
        "error: cannot write to standard output: no space left on device\n",
        what,
      );
    }
  }
});

Deno.test("client.ts stopped by SIGINT while awaiting an echo exits 1, not 130", async () => {
  // A socket that never answers.
  const silent = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const port = (silent.addr as Deno.NetAddr).port;
  const child = spawnScript("client.ts", ["-p", `${port}`, "-t", "5000", "hi"]);
  const stderr = new Response(child.stderr).text();
  // Once it says it waits, the signal listener is set.
  let stdout = "";
  const lines = child.stdout.pipeThrough(new TextDecoderStream());
  const reader = lines.getReader();
  while (!stdout.includes("waiting to receive\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += value;
  }
  child.kill("SIGINT");
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    stdout += read.value;
  }
  const { code } = await child.status;
  equal(code, 1);
  match(stdout, /waiting to receive\nclosing socket\n$/);
  silent.close();
  equal(await stderr, "error: cannot wait for the echo: stopped\n");
});
