/**
 * Wildcard binds on real interfaces, in two private network namespaces
 * joined by a veth pair (server 10.1.0.1/24, peer 10.1.0.2/24, IPv6 too),
 * with 127.0.0.2 and ::2 on the server's loopback: every reply leaves from
 * the address its request was sent to, a subnet broadcast is never echoed,
 * a datagram forged from the directed broadcast address (nft snat on the
 * peer's side) is refused, and without `--allow-sys` the server says what
 * it cannot check. The server runs as a subprocess in its namespace, the
 * peer is a small Deno script in either. Needs root, `ip` and `nft`; else
 * each test says it was skipped and why.
 *
 * @module
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
import { ROOT } from "../testing/cli.ts";

const SYS = "--allow-sys=networkInterfaces";
const IO_BACKENDS = ["socket", "batch"] as const;

// Sends one datagram and reports the source of every reply: it waits up to
// \`patience\` ms for the first, then \`quiet\` ms more after each.
const PEER = `
const [host, port, patience, quiet] = Deno.args;
const conn = Deno.listenDatagram({
  transport: "udp",
  hostname: host.includes(":") ? "::" : "0.0.0.0",
  port: 0,
});
await conn.send(new TextEncoder().encode("ping"), {
  transport: "udp", hostname: host, port: Number(port),
});
let timer = setTimeout(() => conn.close(), Number(patience));
const replies = [];
try {
  for (;;) {
    replies.push((await conn.receive())[1].hostname);
    clearTimeout(timer);
    timer = setTimeout(() => conn.close(), Number(quiet));
  }
} catch { /* closed */ }
console.log(JSON.stringify(replies));
`;

/** How long a peer listens for a reply that should not come, in ms. */
const QUIET_MS = 400;

/** How long a peer waits for a reply that should come: a busy machine's server may be slow. */
const PATIENCE_MS = 10_000;

async function run(
  command: string,
  args: string[],
  input?: string,
): Promise<{ success: boolean; stdout: string; stderr: string }> {
  try {
    const child = new Deno.Command(command, {
      args,
      stdin: input === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (input !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(input));
      await writer.close();
    }
    const { success, stdout, stderr } = await child.output();
    const decoder = new TextDecoder();
    return {
      success,
      stdout: decoder.decode(stdout),
      stderr: decoder.decode(stderr),
    };
  } catch (error) {
    return { success: false, stdout: "", stderr: String(error) };
  }
}

async function cannotRun(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "network namespaces need Linux";
  for (const tool of ["ip", "nft"]) {
    if (!(await run("sh", ["-c", `command -v ${tool}`])).success) {
      return `${tool} is not installed (Debian: apt-get install iproute2 nftables)`;
    }
  }
  if (!(await run("unshare", ["-n", "true"])).success) {
    return "private network namespaces need root";
  }
  return undefined;
}

const SKIP = await cannotRun();
if (SKIP !== undefined) console.log(`skipped: wildcard tests: ${SKIP}`);

let made = 0;

/** Two namespaces joined by a veth pair; `close()` deletes them. */
class Lan {
  readonly server: string;
  readonly peer: string;
  readonly peerLink: string;

  private constructor(id: string) {
    this.server = `uews${id}`;
    this.peer = `uewp${id}`;
    this.peerLink = `uewp${id}`;
  }

  static async open(): Promise<Lan> {
    const id = `${Deno.pid % 100_000}x${made++}`;
    const lan = new Lan(id);
    const s = lan.server;
    const p = lan.peer;
    const serverLink = `uews${id}`;
    try {
      await lan.sh([
        `ip netns add ${s}`,
        `ip netns add ${p}`,
        `ip link add ${serverLink} netns ${s} type veth peer name ${lan.peerLink} netns ${p}`,
        // No link-local address of its own making: one still checked for
        // uniqueness cannot be bound yet.
        `ip -n ${s} link set ${serverLink} addrgenmode none`,
        `ip -n ${p} link set ${lan.peerLink} addrgenmode none`,
        `ip -n ${s} link set lo up`,
        `ip -n ${p} link set lo up`,
        `ip -n ${s} addr add 127.0.0.2/8 dev lo`,
        `ip -n ${s} addr add ::2/128 dev lo nodad`,
        `ip -n ${s} addr add 10.1.0.1/24 broadcast + dev ${serverLink}`,
        `ip -n ${s} addr add fd00:1::1/64 dev ${serverLink} nodad`,
        `ip -n ${s} addr add fe80::1/64 dev ${serverLink} nodad`,
        `ip -n ${p} addr add 10.1.0.2/24 broadcast + dev ${lan.peerLink}`,
        `ip -n ${p} addr add fd00:1::2/64 dev ${lan.peerLink} nodad`,
        `ip -n ${s} link set ${serverLink} up`,
        `ip -n ${p} link set ${lan.peerLink} up`,
      ]);
    } catch (error) {
      await lan.close();
      throw error;
    }
    return lan;
  }

  async sh(lines: string[]): Promise<void> {
    const { success, stderr } = await run("sh", [
      "-ec",
      lines.join("\n"),
    ]);
    if (!success) throw new Error(`Cannot set up the namespaces: ${stderr}`);
  }

  /**
   * Sources of the replies to one datagram sent from namespace `from`;
   * `replies` is how many should come (0 waits only a short while).
   */
  async ping(
    from: string,
    host: string,
    port: number,
    replies = 1,
  ): Promise<string[]> {
    const { stdout, stderr } = await run("ip", [
      "netns",
      "exec",
      from,
      Deno.execPath(),
      "run",
      "--unstable-net",
      "--allow-net",
      "-",
      host,
      String(port),
      String(replies > 0 ? PATIENCE_MS : QUIET_MS),
      String(QUIET_MS),
    ], PEER);
    ok(stdout.startsWith("["), stderr);
    return JSON.parse(stdout);
  }

  async close(): Promise<void> {
    await run("ip", ["netns", "del", this.server]);
    await run("ip", ["netns", "del", this.peer]);
  }
}

/** `server.ts` in the server namespace, as `deno task server` runs it. */
class Server {
  #child: Deno.ChildProcess;
  #lines: string[] = [];
  #stdout: Promise<void>;
  #stderr: Promise<string>;

  constructor(lan: Lan, args: string[], flags: string[]) {
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        lan.server,
        Deno.execPath(),
        "run",
        "--unstable-net",
        "--allow-net",
        "--allow-ffi",
        `--allow-read=${ROOT.pathname}`,
        ...flags,
        new URL("server.ts", ROOT).pathname,
        "-p",
        "0",
        "-q",
        ...args,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.#child = child;
    this.#stderr = new Response(child.stderr).text();
    this.#stdout = (async () => {
      let rest = "";
      for await (
        const chunk of child.stdout.pipeThrough(new TextDecoderStream())
      ) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        this.#lines.push(...parts);
      }
    })();
  }

  /** The port, once the first socket's line is out. */
  async port(): Promise<number> {
    for (let i = 0; i < 200; i++) {
      const first = this.#lines[0];
      if (first !== undefined) {
        return first.startsWith("{")
          ? JSON.parse(first).port
          : Number(/port (\d+)/.exec(first)![1]);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    this.#child.kill("SIGKILL");
    throw new Error(`server.ts did not start: ${await this.stop()}`);
  }

  /** Stops it with SIGINT; its stdout lines and its stderr. */
  async stop(): Promise<{ lines: string[]; stderr: string }> {
    try {
      this.#child.kill("SIGINT");
    } catch {
      // Already gone.
    }
    await this.#child.status;
    await this.#stdout;
    return { lines: this.#lines, stderr: await this.#stderr };
  }
}

function events(lines: string[], event: string): Record<string, unknown>[] {
  return lines.map((line) => JSON.parse(line)).filter((e) => e.event === event);
}

function nsTest(name: string, fn: (lan: Lan) => Promise<void>): void {
  Deno.test({
    name,
    ignore: SKIP !== undefined,
    fn: async () => {
      const lan = await Lan.open();
      try {
        await fn(lan);
      } finally {
        await lan.close();
      }
    },
  });
}

for (const io of IO_BACKENDS) {
  nsTest(
    `server.ts -H 0.0.0.0 --io ${io} replies from the address asked, never echoes a subnet broadcast or a forged broadcast source`,
    async (lan) => {
      const server = new Server(lan, ["-H", "0.0.0.0", "--io", io, "--json"], [
        SYS,
      ]);
      let lines: string[] = [];
      try {
        const port = await server.port();
        deepEqual(await lan.ping(lan.server, "127.0.0.2", port), ["127.0.0.2"]);
        deepEqual(await lan.ping(lan.peer, "10.1.0.1", port), ["10.1.0.1"]);
        deepEqual(await lan.ping(lan.peer, "10.1.0.255", port, 0), []);
        // From now on the peer's datagrams to the server claim to come from
        // the subnet's directed broadcast address.
        await lan.sh([
          `ip netns exec ${lan.peer} nft -f - <<'EOF'
table ip forge {
  chain post {
    type nat hook postrouting priority srcnat;
    ip daddr 10.1.0.1 udp dport ${port} snat to 10.1.0.255
  }
}
EOF`,
        ]);
        deepEqual(await lan.ping(lan.peer, "10.1.0.1", port, 0), []);
      } finally {
        // Stopped here, checked below: a failed check in `finally` would
        // hide the failure that led here.
        ({ lines } = await server.stop());
      }
      const listening = events(lines, "listening").map((e) => e.address);
      const [shutdown] = events(lines, "shutdown");
      deepEqual(events(lines, "warning"), []);
      equal(shutdown!.echoed, 2);
      if (io === "batch") {
        deepEqual(listening, ["0.0.0.0"], "the engine keeps one socket");
        deepEqual(shutdown!.dropped, { "not-unicast": 1, "bad-source": 1 });
      } else {
        deepEqual(listening, ["127.0.0.1", "127.0.0.2", "10.1.0.1"]);
        // No socket is bound to the broadcast: it never arrives.
        deepEqual(shutdown!.dropped, { "bad-source": 1 });
        equal(shutdown!.received, 3);
      }
    },
  );

  nsTest(
    `server.ts -H :: --io ${io} replies from the address asked, IPv6 and IPv4`,
    async (lan) => {
      const server = new Server(lan, ["-H", "::", "--io", io, "--json"], [SYS]);
      let lines: string[] = [];
      try {
        const port = await server.port();
        deepEqual(await lan.ping(lan.server, "::2", port), ["::2"]);
        deepEqual(await lan.ping(lan.server, "127.0.0.2", port), [
          "127.0.0.2",
        ]);
        deepEqual(await lan.ping(lan.peer, "fd00:1::1", port), ["fd00:1::1"]);
        deepEqual(await lan.ping(lan.peer, "10.1.0.255", port, 0), []);
        deepEqual(await lan.ping(lan.peer, "ff02::1", port, 0), []);
      } finally {
        ({ lines } = await server.stop());
      }
      const listening = events(lines, "listening").map((e) => e.address);
      deepEqual(events(lines, "warning"), []);
      const [shutdown] = events(lines, "shutdown");
      if (io === "batch") {
        deepEqual(listening, ["::"]);
        // The IPv4 broadcast, and the multicast if it was delivered at all.
        const dropped = shutdown!.dropped as Record<string, number>;
        ok(dropped["not-unicast"]! >= 1, JSON.stringify(dropped));
      } else {
        // Link-local addresses are bound with their zone.
        deepEqual(
          new Set(listening),
          new Set([
            "127.0.0.1",
            "127.0.0.2",
            "10.1.0.1",
            "::1",
            "::2",
            "fd00:1::1",
            "fe80::1",
          ]),
        );
      }
      equal(shutdown!.echoed, 3);
    },
  );

  nsTest(
    `server.ts -H 0.0.0.0 --io ${io} without ${SYS} warns once about what it cannot check`,
    async (lan) => {
      const json = new Server(lan, ["-H", "0.0.0.0", "--io", io, "--json"], []);
      const text = new Server(lan, ["-H", "0.0.0.0", "--io", io], []);
      let reply: string[] = [];
      let lines: string[] = [];
      let stderr = "";
      try {
        reply = await lan.ping(lan.server, "127.0.0.2", await json.port());
        await text.port();
      } finally {
        ({ lines } = await json.stop());
        ({ stderr } = await text.stop());
      }
      deepEqual(events(lines, "listening").map((e) => e.address), [
        "0.0.0.0",
      ]);
      const warnings = events(lines, "warning");
      equal(warnings.length, 1);
      const message = warnings[0]!.message as string;
      match(
        message,
        new RegExp(`cannot list the network interfaces.*${SYS}`),
      );
      match(message, /directed broadcast/);
      equal(stderr, `warning: ${message}\n`);
      if (io === "batch") {
        // The engine sees the destination even so.
        deepEqual(reply, ["127.0.0.2"]);
        ok(!message.includes("one socket per interface address"));
      } else {
        // What the warning says: the reply leaves from another address.
        deepEqual(reply, ["127.0.0.1"]);
        match(message, /one socket per interface address/);
      }
    },
  );
}
