import { deepEqual, equal, match, ok } from "node:assert/strict";
import type { PolicyOptions } from "../policy/policy.ts";
import { type EchoServer, serveEcho, type ServerEvent } from "../server.ts";
import type { IoBackend } from "../kernel/choice.ts";
import { formatAddress } from "../net/address.ts";
import { waitUntil } from "../testing/wait.ts";

const SERVER = new URL("../server.ts", import.meta.url).pathname;
const ROOT_DIR = new URL("..", import.meta.url).pathname;

/** Defines a test once per I/O backend; the policy must hold on both. */
function testBoth(name: string, fn: (io: IoBackend) => Promise<void>): void {
  Deno.test(name, () => fn("socket"));
  Deno.test(`${name} (--io batch)`, () => fn("batch"));
}

/** `spawnServer` options and extra flags that select a backend. */
function backend(io: IoBackend): { args: string[]; denoFlags: string[] } {
  return io === "socket" ? { args: ["--io", "socket"], denoFlags: [] } : {
    args: ["--io", "batch"],
    denoFlags: ["--allow-ffi", `--allow-read=${ROOT_DIR}`],
  };
}
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What the tests keep of an event: the payload view is gone after the call. */
interface Seen {
  type: ServerEvent["type"];
  from?: string;
  reason?: string;
}

/** An in-process server with a policy, recording its events. */
function startServer(
  policyOptions: PolicyOptions,
  hostnames: string[] = ["127.0.0.1"],
  io: IoBackend = "socket",
) {
  const controller = new AbortController();
  const events: Seen[] = [];
  const waiters: (() => void)[] = [];
  const server: EchoServer = serveEcho({
    hostnames,
    port: 0,
    signal: controller.signal,
    policy: policyOptions,
    io,
    onEvent(event) {
      events.push({
        type: event.type,
        from: event.type === "error" ? undefined : formatAddress(event.from),
        reason: event.type === "dropped" ? event.reason : undefined,
      });
      for (const wake of waiters.splice(0)) wake();
    },
  });
  const port = server.addr.port;
  /** Resolves once `count` events match, failing after a generous timeout. */
  async function waitFor(match: (event: Seen) => boolean, count = 1) {
    const deadline = Date.now() + 5_000;
    while (events.filter(match).length < count) {
      if (Date.now() > deadline) {
        throw new Error(`timed out; events: ${JSON.stringify(events)}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        timer = setTimeout(resolve, 100);
      });
      clearTimeout(timer);
    }
  }
  async function stop() {
    controller.abort();
    await server.finished;
  }
  return { server, port, events, waitFor, stop };
}

/** Binds a client socket; `undefined` when the port needs a privilege we lack. */
/**
 * A loopback address of this run's own (127.0.0.0/8 is all on `lo`): the
 * tests that must send from a fixed source port (7, 1023, 11211) bind it
 * there, so another test run on the machine cannot hold the same port.
 */
const FIXED_PORT_HOST = `127.${1 + Math.floor(Math.random() * 254)}.${
  Math.floor(Math.random() * 256)
}.${1 + Math.floor(Math.random() * 254)}`;

function bindClient(hostname: string, port = 0): Deno.DatagramConn | undefined {
  try {
    return Deno.listenDatagram({ transport: "udp", hostname, port });
  } catch (error) {
    if (error instanceof Deno.errors.PermissionDenied) return undefined;
    throw error;
  }
}

/** Receives one datagram, or `undefined` if none comes within `ms`. */
async function receiveWithin(
  conn: Deno.DatagramConn,
  ms: number,
): Promise<[Uint8Array, Deno.NetAddr] | undefined> {
  const buffer = new Uint8Array(65_536);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  const receive = conn.receive(buffer).then(
    ([data, addr]) => [data.slice(), addr as Deno.NetAddr] as const,
  );
  const result = await Promise.race([receive, timeout]);
  clearTimeout(timer);
  if (result !== undefined) return [result[0], result[1]];
  conn.close();
  await receive.catch(() => {});
  return undefined;
}

/** Closes a socket that `receiveWithin` may have closed already. */
function closeQuietly(conn: Deno.DatagramConn | undefined): void {
  try {
    conn?.close();
  } catch {
    // Already closed, to end a receive that got nothing.
  }
}

const FORGE = `
import socket, struct, sys
src, sport, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
payload = sys.argv[5].encode()
udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64,
    socket.IPPROTO_UDP, 0, socket.inet_aton(src), socket.inet_aton(dst))
words = struct.unpack("!10H", ip)
total = sum(words)
total = (total & 0xffff) + (total >> 16)
total = (total & 0xffff) + (total >> 16)
ip = ip[:10] + struct.pack("!H", ~total & 0xffff) + ip[12:]
try:
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
except PermissionError:
    sys.exit(3)
raw.sendto(ip + udp, (dst, 0))
`;

/**
 * Sends one UDP datagram with a forged IPv4 source, from a raw socket in
 * Python. Returns a reason to skip when raw sockets are not allowed.
 */
async function forge(
  from: Deno.NetAddr | { hostname: string; port: number },
  to: { hostname: string; port: number },
  options: { payload?: string; netnsOf?: number } = {},
): Promise<string | undefined> {
  const { payload = "forged", netnsOf } = options;
  // Inside another process's network namespace when asked.
  const prefix = netnsOf === undefined
    ? []
    : ["nsenter", "-t", String(netnsOf), "-n"];
  let output;
  try {
    output = await new Deno.Command(prefix[0] ?? "python3", {
      args: [
        ...(prefix.length > 0 ? [...prefix.slice(1), "python3"] : []),
        "-c",
        FORGE,
        from.hostname,
        String(from.port),
        to.hostname,
        String(to.port),
        payload,
      ],
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "python3 is missing";
    throw error;
  }
  if (output.code === 3) return "raw sockets need root (CAP_NET_RAW)";
  equal(output.code, 0, decoder.decode(output.stderr));
  return undefined;
}

function skip(reason: string): void {
  console.log(`skipped: ${reason}`);
}

/** server.ts as a subprocess, its stdout read line by line as it comes. */
function spawnServer(
  args: string[],
  options: { wrap?: string[]; denoFlags?: string[] } = {},
) {
  const { wrap = [], denoFlags = [] } = options;
  const command = [
    Deno.execPath(),
    "run",
    "--unstable-net",
    "--allow-net",
    ...denoFlags,
    SERVER,
    ...args,
  ];
  const child = new Deno.Command(wrap.length > 0 ? wrap[0]! : command[0]!, {
    args: wrap.length > 0 ? [...wrap.slice(1), ...command] : command.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let ended = false;
  const stderr = new Response(child.stderr).text();
  const reading = (async () => {
    let rest = "";
    for await (
      const chunk of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      lines.push(...parts);
      for (const wake of waiters) wake();
    }
    if (rest) lines.push(rest);
    ended = true;
    for (const wake of waiters) wake();
  })();
  /** The first line that matches, as soon as it is printed. */
  function waitForLine(match: (line: string) => boolean): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const line = lines.find(match);
        if (line === undefined && !ended) return;
        waiters.delete(check);
        clearTimeout(timer);
        if (line !== undefined) resolve(line);
        else reject(new Error(`no such line in: ${lines.join("\n")}`));
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out; stdout so far: ${lines.join("\n")}`));
      }, 10_000);
      waiters.add(check);
      check();
    });
  }
  let stopped: Promise<{ code: number; stderr: string }> | undefined;
  function stop() {
    if (!stopped) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      stopped = (async () => {
        const { code } = await child.status;
        await reading;
        return { code, stderr: await stderr };
      })();
    }
    return stopped;
  }
  const events = () => lines.map((line) => JSON.parse(line));
  return { lines, events, waitForLine, stop, pid: child.pid };
}

function jsonEvent(name: string) {
  return (line: string) => JSON.parse(line).event === name;
}

testBoth(
  "serveEcho() with a policy never echoes to a port below 1024 or a service port",
  async (io) => {
    const { port, waitFor, stop, server } = startServer({}, undefined, io);
    const low = [
      bindClient(FIXED_PORT_HOST, 1023),
      bindClient(FIXED_PORT_HOST, 7),
    ];
    const service = bindClient(FIXED_PORT_HOST, 11211);
    const client = bindClient("127.0.0.1")!;
    try {
      const target = { transport: "udp" as const, hostname: "127.0.0.1", port };
      if (low.some((conn) => conn === undefined)) {
        skip("binding ports 7 and 1023 needs root");
      } else {
        for (const conn of low) await conn!.send(encoder.encode("x"), target);
        await waitFor((event) => event.reason === "low-port", 2);
      }
      if (service) {
        await service.send(encoder.encode("x"), target);
        await waitFor((event) => event.reason === "service-port");
      }
      await client.send(encoder.encode("ok"), target);
      const reply = await receiveWithin(client, 2_000);
      equal(decoder.decode(reply?.[0]), "ok");
      // Nothing went back to the refused ports.
      for (const conn of [...low, service]) {
        if (conn) equal(await receiveWithin(conn, 100), undefined);
      }
      equal(server.stats().echoed, 1);
    } finally {
      for (const conn of [...low, service, client]) closeQuietly(conn);
      await stop();
    }
  },
);

testBoth(
  "serveEcho() applies --allow and --deny to 127.0.0.0/8 sources",
  async (io) => {
    const { port, waitFor, stop, events } = startServer(
      {
        allow: ["127.0.0.0/29"],
        deny: ["127.0.0.3"],
      },
      undefined,
      io,
    );
    const clients = ["127.0.0.2", "127.0.0.3", "127.0.0.9"].map((host) =>
      bindClient(host)!
    );
    try {
      for (const client of clients) {
        await client.send(encoder.encode("hi"), {
          transport: "udp",
          hostname: "127.0.0.1",
          port,
        });
      }
      await waitFor(() => true, 3);
      const verdict = (host: string) =>
        events.find((event) => event.from?.startsWith(`${host}:`));
      equal(verdict("127.0.0.2")?.type, "datagram");
      deepEqual(verdict("127.0.0.3"), {
        type: "dropped",
        from: formatAddress(clients[1]!.addr as Deno.NetAddr),
        reason: "denied",
      });
      equal(verdict("127.0.0.9")?.reason, "denied");
      equal(
        decoder.decode((await receiveWithin(clients[0]!, 2_000))?.[0]),
        "hi",
      );
    } finally {
      for (const client of clients) closeQuietly(client);
      await stop();
    }
  },
);

testBoth(
  "serveEcho() holds a flood from one source to rate x time + burst, another source unaffected",
  async (io) => {
    const rate = 50;
    const burst = 10;
    const { port, stop, events, waitFor } = startServer(
      { rate, burst },
      undefined,
      io,
    );
    const flooder = bindClient("127.0.0.2")!;
    const quiet = bindClient("127.0.0.3")!;
    const target = { transport: "udp" as const, hostname: "127.0.0.1", port };
    const started = performance.now();
    try {
      let quietEchoes = 0;
      for (let round = 0; round < 20; round++) {
        // Batches small enough for the socket buffer, so the server sees them.
        for (let k = 0; k < 20; k++) {
          await flooder.send(encoder.encode("flood"), target);
        }
        if (round % 4 === 0) {
          await quiet.send(encoder.encode(`quiet ${round}`), target);
          const reply = await receiveWithin(quiet, 2_000);
          equal(decoder.decode(reply?.[0]), `quiet ${round}`);
          quietEchoes++;
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await waitFor(() => true, 20 * 20 * 0.9); // allow some loss on loopback
      const seconds = (performance.now() - started) / 1000;
      const flooderAddress = formatAddress(flooder.addr as Deno.NetAddr);
      const echoed = events.filter((event) =>
        event.type === "datagram" && event.from === flooderAddress
      ).length;
      ok(echoed >= burst, `${echoed} echoed`);
      ok(
        echoed <= burst + Math.ceil(rate * seconds),
        `${echoed} echoed in ${seconds.toFixed(2)} s`,
      );
      ok(events.some((event) =>
        event.reason === "rate-limited"
      ));
      const quietAddress = formatAddress(quiet.addr as Deno.NetAddr);
      equal(quietEchoes, 5);
      equal(
        events.filter((event) =>
          event.type === "dropped" && event.from === quietAddress
        ).length,
        0,
      );
    } finally {
      flooder.close();
      closeQuietly(quiet);
      await stop();
    }
  },
);

testBoth(
  "serveEcho() drops a datagram longer than --max-size, echoes one at it",
  async (io) => {
    const { port, stop, waitFor } = startServer(
      { maxSize: 512 },
      undefined,
      io,
    );
    const client = bindClient("127.0.0.1")!;
    const target = { transport: "udp" as const, hostname: "127.0.0.1", port };
    try {
      await client.send(new Uint8Array(513), target);
      await waitFor((event) => event.reason === "too-large");
      await client.send(new Uint8Array(512), target);
      const reply = await receiveWithin(client, 2_000);
      equal(reply?.[0].length, 512);
    } finally {
      closeQuietly(client);
      await stop();
    }
  },
);

testBoth(
  "serveEcho() gives no reply to a datagram forged from its own address and port",
  async (io) => {
    const { server, port, stop, waitFor } = startServer(
      {},
      ["127.0.0.2", "127.0.0.3"],
      io,
    );
    try {
      const reason = await forge(
        { hostname: "127.0.0.2", port },
        { hostname: "127.0.0.2", port },
      );
      if (reason) return skip(reason);
      await waitFor((event) => event.reason === "own-address");
      // From the server's other socket: as much a loop.
      await forge(
        { hostname: "127.0.0.3", port },
        { hostname: "127.0.0.2", port },
      );
      await waitFor((event) => event.reason === "own-address", 2);
      // Both forged datagrams came in on the first socket.
      equal(server.stats().echoed, 0);
      equal(server.stats().received, 2);
    } finally {
      await stop();
    }
  },
);

testBoth(
  "server.ts: one forged datagram between two instances stays within the rate budget",
  async (io) => {
    const rate = 20;
    const burst = 5;
    const flags = [
      "--json",
      "-p",
      "0",
      "--rate",
      `${rate}`,
      "--burst",
      `${burst}`,
    ];
    const { args, denoFlags } = backend(io);
    const a = spawnServer([...flags, ...args, "-H", "127.0.0.2"], {
      denoFlags,
    });
    const b = spawnServer([...flags, ...args, "-H", "127.0.0.3"], {
      denoFlags,
    });
    try {
      const portA =
        JSON.parse(await a.waitForLine(jsonEvent("listening"))).port;
      const portB =
        JSON.parse(await b.waitForLine(jsonEvent("listening"))).port;
      const started = performance.now();
      const reason = await forge(
        { hostname: "127.0.0.2", port: portA },
        { hostname: "127.0.0.3", port: portB },
        { payload: "ping-pong" },
      );
      if (reason) return skip(reason);
      // The ping-pong ends at the first datagram either side refuses.
      const limited = (line: string) =>
        JSON.parse(line).reason === "rate-limited";
      const waits = [a.waitForLine(limited), b.waitForLine(limited)];
      await Promise.any(waits);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await Promise.all([a.stop(), b.stop()]);
      await Promise.allSettled(waits);
      const seconds = (performance.now() - started) / 1000;
      const shutdownA = a.events().find((event) => event.event === "shutdown");
      const shutdownB = b.events().find((event) => event.event === "shutdown");
      // B got the forged datagram "from" A and so started the exchange.
      equal(
        b.events().find((event) => event.event === "datagram")?.from,
        `127.0.0.2:${portA}`,
      );
      const budget = burst + Math.ceil(rate * seconds);
      ok(
        shutdownA.echoed <= budget,
        `A echoed ${shutdownA.echoed} > ${budget}`,
      );
      ok(
        shutdownB.echoed <= budget,
        `B echoed ${shutdownB.echoed} > ${budget}`,
      );
      ok(shutdownA.echoed + shutdownB.echoed >= burst);
      equal(
        (shutdownA.dropped["rate-limited"] ?? 0) +
          (shutdownB.dropped["rate-limited"] ?? 0),
        1,
      );
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  },
);

testBoth(
  "server.ts --json prints listening, datagram, dropped, stats and shutdown events only",
  async (io) => {
    const { args, denoFlags } = backend(io);
    const server = spawnServer([
      ...args,
      "--json",
      "-p",
      "0",
      "-H",
      "127.0.0.2",
      "-H",
      "127.0.0.3",
      "-H",
      "::1",
      "--max-size",
      "4",
      "--stats-interval",
      "0.1",
    ], { denoFlags });
    const client = bindClient("127.0.0.1")!;
    const client6 = bindClient("::1")!;
    try {
      await server.waitForLine((line) => line.includes('"::1"'));
      const listening = server.events().filter((e) => e.event === "listening");
      equal(listening.length, 3);
      const port = listening[0].port;
      ok(listening.every((event) => event.port === port), "one port for all");
      deepEqual(listening.map((event) => event.address), [
        "127.0.0.2",
        "127.0.0.3",
        "::1",
      ]);
      equal(listening[0].rate, undefined, "no default limit on loopback");
      // A reply leaves from the address the request came to.
      await client.send(encoder.encode("ping"), {
        transport: "udp",
        hostname: "127.0.0.3",
        port,
      });
      const reply = await receiveWithin(client, 2_000);
      equal(decoder.decode(reply?.[0]), "ping");
      equal(reply?.[1].hostname, "127.0.0.3");
      await client6.send(encoder.encode("too long"), {
        transport: "udp",
        hostname: "::1",
        port,
      });
      await server.waitForLine(jsonEvent("dropped"));
      // A batch Worker counts a datagram received before it counts what
      // became of it: a stats line may fall between the two.
      await server.waitForLine((line) => {
        const event = JSON.parse(line);
        return event.event === "stats" && event.received === 2 &&
          event.echoed === 1 && event.dropped["too-large"] === 1;
      });
      const { code } = await server.stop();
      equal(code, 0);
      const events = server.events();
      ok(events.every((event) => typeof event.event === "string"));
      deepEqual(
        [...new Set(events.map((event) => event.event))].sort(),
        ["datagram", "dropped", "io", "listening", "shutdown", "stats"],
      );
      deepEqual(events.find((event) => event.event === "dropped"), {
        event: "dropped",
        from: formatAddress(client6.addr as Deno.NetAddr),
        bytes: 8,
        reason: "too-large",
        preview: '"too long"',
      });
      const stats = events.findLast((event) => event.event === "stats");
      deepEqual(stats.dropped, { "too-large": 1 });
      equal(stats.echoed, 1);
      equal(typeof stats.rate, "number");
      equal(typeof stats.active_sources, "number");
      const shutdown = events.at(-1);
      equal(shutdown.event, "shutdown");
      equal(shutdown.received, 2);
      equal(shutdown.echoed, 1);
      deepEqual(shutdown.dropped, { "too-large": 1 });
    } finally {
      closeQuietly(client);
      closeQuietly(client6);
      await server.stop();
    }
  },
);

testBoth(
  "server.ts folds per-datagram lines past a modest rate into '... N more datagrams'",
  async (io) => {
    const { args, denoFlags } = backend(io);
    const server = spawnServer(["-p", "0", "-H", "127.0.0.1", ...args], {
      denoFlags,
    });
    const client = bindClient("127.0.0.1")!;
    try {
      const port = Number(
        (await server.waitForLine((line) => line.startsWith("starting up")))
          .split(" ").at(-1),
      );
      const started = performance.now();
      for (let k = 0; k < 300; k++) {
        await client.send(encoder.encode(`${k}`), {
          transport: "udp",
          hostname: "127.0.0.1",
          port,
        });
        if (k % 50 === 49) await new Promise((r) => setTimeout(r, 20));
      }
      const shownLines = () =>
        server.lines.filter((line) => line.startsWith("received ")).length;
      const foldLines = () =>
        server.lines.map((line) =>
          /^\.\.\. (\d+) more datagrams?$/.exec(line)?.[1]
        ).filter((n) => n !== undefined).map(Number);
      // The fold line comes with the next window: once it is out, the
      // server has read past a hundred datagrams.
      await waitUntil(
        () => shownLines() + foldLines().reduce((sum, n) => sum + n, 0) > 100,
        "a hundred datagrams were logged",
      );
      const { code } = await server.stop();
      equal(code, 0);
      const shown = shownLines();
      const folded = foldLines();
      ok(folded.length > 0, "a fold line");
      const received = Number(
        /received (\d+) datagrams/.exec(server.lines.at(-1)!)?.[1],
      );
      ok(received > 100, `${received} received`);
      equal(shown + folded.reduce((sum, n) => sum + n, 0), received);
      // 20 a second in full, in each one-second window the run touched.
      const windows = Math.ceil((performance.now() - started) / 1000) + 1;
      ok(shown <= 20 * windows, `${shown} shown in full in ${windows} windows`);
    } finally {
      closeQuietly(client);
      await server.stop();
    }
  },
);

Deno.test("server.ts says when the default rate limit applies", async () => {
  // A bind to 0.0.0.0 only inside a fresh network namespace: nothing leaves
  // loopback.
  const probe = await new Deno.Command("unshare", {
    args: ["-n", "true"],
    stderr: "null",
  }).output().catch(() => undefined);
  if (!probe?.success) {
    return skip("unshare -n (a private network namespace) needs root");
  }
  // With the interfaces listed, 0.0.0.0 there is one socket on 127.0.0.1:
  // the default still follows the address asked for, which is no loopback.
  const sys = ["--allow-sys=networkInterfaces"];
  const withLoopback = [
    "unshare",
    "-n",
    "sh",
    "-c",
    'ip link set lo up && exec "$0" "$@"',
  ];
  const open = spawnServer(["-p", "0", "-H", "0.0.0.0"], {
    wrap: withLoopback,
    denoFlags: sys,
  });
  const loopback = spawnServer(["-p", "0", "-H", "127.0.0.1", "-q"]);
  const explicit = spawnServer(["-p", "0", "-H", "127.0.0.1", "--rate", "5"]);
  const off = spawnServer(
    ["-p", "0", "-H", "0.0.0.0", "--rate", "0"],
    { wrap: withLoopback, denoFlags: sys },
  );
  try {
    await open.waitForLine((line) => line.startsWith("starting up"));
    match(
      open.lines[0]!,
      /^starting up on 0\.0\.0\.0 \(127\.0\.0\.1\) port \d+$/,
    );
    equal(
      await open.waitForLine((line) => line.startsWith("rate limit")),
      "rate limit: 1,000 datagrams/s per source, burst 1,000 (the default, " +
        "as an address is not loopback; --rate 0 turns it off)",
    );
    equal(
      await explicit.waitForLine((line) => line.startsWith("rate limit")),
      "rate limit: 5 datagrams/s per source, burst 5",
    );
    await loopback.waitForLine((line) => line.startsWith("starting up"));
    await loopback.stop();
    ok(!loopback.lines.some((line) => line.startsWith("rate limit")));
    await off.waitForLine((line) => line.startsWith("waiting"));
    ok(!off.lines.some((line) => line.startsWith("rate limit")));
    equal(
      (await off.stop()).stderr,
      "warning: no rate limit on an address that is not loopback\n",
    );
  } finally {
    await Promise.all(
      [open, loopback, explicit, off].map((server) => server.stop()),
    );
  }
});

Deno.test("server.ts refuses bad policy flags with exit 2", async () => {
  for (
    const [args, message] of [
      [["--allow", "10.0.0.0/33"], "error: cannot use --allow"],
      [["--deny", "example.com"], "error: cannot use --deny"],
      [["--rate=-1"], "error: cannot use --rate"],
      [["--rate", "10", "--burst", "0"], "error: cannot use --burst"],
      [["--max-size", "big"], "error: cannot use --max-size"],
      [["--max-sources", "0"], "error: cannot use --max-sources"],
      [["--stats-interval", "0"], "error: cannot use --stats-interval"],
    ] as const
  ) {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--unstable-net",
        "--allow-net",
        SERVER,
        "-p",
        "0",
        ...args,
      ],
    }).output();
    equal(code, 2, args.join(" "));
    equal(decoder.decode(stdout), "");
    const text = decoder.decode(stderr);
    ok(text.startsWith(message), `${args.join(" ")}: ${text}`);
    equal(text.trim().split("\n").length, 1);
  }
});

testBoth(
  "serveEcho() without a policy option still applies the fixed rules",
  async (io) => {
    const controller = new AbortController();
    const reasons: string[] = [];
    const server = serveEcho({
      hostname: "127.0.0.1",
      port: 0,
      signal: controller.signal,
      onEvent: (event) =>
        event.type === "dropped" && reasons.push(event.reason),
      io,
    });
    const client = bindClient(FIXED_PORT_HOST, 11211);
    try {
      if (!client) return skip("port 11211 is taken");
      await client.send(encoder.encode("stats"), server.addr);
      // A batch Worker reports the drop a while later on a busy machine.
      await waitUntil(() => reasons.length > 0, "the drop is reported");
      equal(await receiveWithin(client, 300), undefined);
      deepEqual(reasons, ["service-port"]);
      equal(server.stats().dropped, 1);
    } finally {
      closeQuietly(client);
      controller.abort();
      await server.finished;
    }
  },
);

Deno.test("server.ts on a wildcard socket refuses its interface addresses and directed broadcast", async () => {
  const probe = await new Deno.Command("unshare", {
    args: ["-n", "true"],
    stderr: "null",
  }).output().catch(() => undefined);
  if (!probe?.success) {
    return skip("unshare -n (a private network namespace) needs root");
  }
  // In a private namespace, 192.0.2.10/24 (TEST-NET-1) on its loopback stands
  // for a public interface; nothing leaves the namespace.
  const server = spawnServer(["--json", "-p", "0", "-H", "0.0.0.0"], {
    wrap: [
      "unshare",
      "-n",
      "sh",
      "-c",
      'ip link set lo up && ip addr add 192.0.2.10/24 dev lo && exec "$@"',
      "sh",
    ],
    denoFlags: ["--allow-sys=networkInterfaces"],
  });
  try {
    const { port } = JSON.parse(
      await server.waitForLine(jsonEvent("listening")),
    );
    const to = { hostname: "192.0.2.10", port };
    const netnsOf = server.pid;
    const reason = await forge({ hostname: "192.0.2.255", port: 4444 }, to, {
      netnsOf,
    });
    if (reason) return skip(reason);
    await forge({ hostname: "192.0.2.10", port }, to, { netnsOf });
    await forge({ hostname: "192.0.2.11", port: 4444 }, to, { netnsOf });
    await server.waitForLine(jsonEvent("datagram"));
    await server.stop();
    deepEqual(
      server.events().filter((event) =>
        event.event !== "listening" && event.event !== "io"
      ),
      [
        {
          event: "dropped",
          from: "192.0.2.255:4444",
          bytes: 6,
          reason: "bad-source",
          preview: '"forged"',
        },
        {
          event: "dropped",
          from: `192.0.2.10:${port}`,
          bytes: 6,
          reason: "own-address",
          preview: '"forged"',
        },
        {
          event: "datagram",
          from: "192.0.2.11:4444",
          bytes: 6,
          sent: 6,
          preview: '"forged"',
        },
        ...server.events().filter((event) => event.event === "shutdown"),
      ],
    );
  } finally {
    await server.stop();
  }
});

Deno.test("server.ts counts and logs a send that fails, and echoes on", async () => {
  // Allowed to talk to 127.0.0.1 only, so the echo to 127.0.0.2 is refused.
  const server = spawnServer(["--json", "-p", "0", "-H", "127.0.0.1"], {
    denoFlags: ["--allow-net=127.0.0.1"],
  });
  const stranger = bindClient("127.0.0.2")!;
  const client = bindClient("127.0.0.1")!;
  try {
    const { port } = JSON.parse(
      await server.waitForLine(jsonEvent("listening")),
    );
    const target = { transport: "udp" as const, hostname: "127.0.0.1", port };
    await stranger.send(encoder.encode("who"), target);
    const error = JSON.parse(await server.waitForLine(jsonEvent("error")));
    await client.send(encoder.encode("me"), target);
    equal(decoder.decode((await receiveWithin(client, 2_000))?.[0]), "me");
    await server.stop();
    deepEqual(error, {
      event: "error",
      operation: "send",
      peer: formatAddress(stranger.addr as Deno.NetAddr),
      message: error.message,
    });
    ok(/permission|net access/.test(error.message), error.message);
    const shutdown = server.events().at(-1);
    equal(shutdown.errors, 1);
    equal(shutdown.echoed, 1);
  } finally {
    closeQuietly(stranger);
    closeQuietly(client);
    await server.stop();
  }
});
