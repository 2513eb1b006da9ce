/**
 * Tests in private network namespaces: two namespaces joined by a veth pair
 * (server 10.1.0.1/24 and fd00:1::1/64, peer 10.1.0.2/24 and fd00:1::2/64,
 * with 127.0.0.2 and ::2 on the server's loopback), `server.ts` running as
 * a subprocess in one of them, a small Deno script sending from either,
 * and nftables rules and counters set in either with `sh()`. Needs root,
 * `ip` and `nft`: {@linkcode NETNS_SKIP} says why not, and
 * {@linkcode nsTest} then reports the test as skipped.
 *
 * @module
 */

import { ok } from "node:assert/strict";
import { ROOT } from "./cli.ts";
import { waitUntil } from "./wait.ts";
import { nftCounter, run, type RunResult, sh } from "./command.ts";

/** The permission that lets `server.ts` list the interfaces. */
export const SYS = "--allow-sys=networkInterfaces";

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

/** Why namespace tests cannot run here, or `undefined` when they can. */
export const NETNS_SKIP: string | undefined = await cannotRun();

/** Prints, when namespace tests cannot run here, that `what` are skipped and why. */
export function reportSkip(what: string): void {
  if (NETNS_SKIP !== undefined) console.log(`skipped: ${what}: ${NETNS_SKIP}`);
}

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

/** `ip` arguments that run a Deno script from stdin with `--allow-net` in namespace `ns`. */
function denoInNamespace(ns: string, args: string[]): string[] {
  return [
    "netns",
    "exec",
    ns,
    Deno.execPath(),
    "run",
    "--unstable-net",
    "--allow-net",
    "-",
    ...args,
  ];
}

let made = 0;

/**
 * A name part for a test's namespaces, unique on this host for a while:
 * test files run in parallel share the process id, each with its own count,
 * so a random part keeps them apart. Short enough for interface names
 * (15 characters at most) with a 4-character prefix.
 */
export function namespaceId(): string {
  const salt = Math.floor(Math.random() * 36 ** 3).toString(36)
    .padStart(3, "0");
  return `${Deno.pid % 100_000}${salt}x${made++}`;
}

/** Two namespaces joined by a veth pair; `close()` deletes them. */
export class Lan {
  /** The server's namespace. */
  readonly server: string;
  /** The peer's namespace. */
  readonly peer: string;
  /** The server's end of the veth pair. */
  readonly serverLink: string;
  /** The peer's end of the veth pair. */
  readonly peerLink: string;

  private constructor(id: string) {
    this.server = `uews${id}`;
    this.peer = `uewp${id}`;
    this.serverLink = `uews${id}`;
    this.peerLink = `uewp${id}`;
  }

  /** Makes the namespaces; deletes what it made when a step fails. */
  static async open(): Promise<Lan> {
    const lan = new Lan(namespaceId());
    const s = lan.server;
    const p = lan.peer;
    try {
      await lan.sh([
        `ip netns add ${s}`,
        `ip netns add ${p}`,
        `ip link add ${lan.serverLink} netns ${s} type veth peer name ${lan.peerLink} netns ${p}`,
        // No link-local address of its own making: one still checked for
        // uniqueness cannot be bound yet.
        `ip -n ${s} link set ${lan.serverLink} addrgenmode none`,
        `ip -n ${p} link set ${lan.peerLink} addrgenmode none`,
        `ip -n ${s} link set lo up`,
        `ip -n ${p} link set lo up`,
        `ip -n ${s} addr add 127.0.0.2/8 dev lo`,
        `ip -n ${s} addr add ::2/128 dev lo nodad`,
        `ip -n ${s} addr add 10.1.0.1/24 broadcast + dev ${lan.serverLink}`,
        `ip -n ${s} addr add fd00:1::1/64 dev ${lan.serverLink} nodad`,
        `ip -n ${s} addr add fe80::1/64 dev ${lan.serverLink} nodad`,
        `ip -n ${p} addr add 10.1.0.2/24 broadcast + dev ${lan.peerLink}`,
        `ip -n ${p} addr add fd00:1::2/64 dev ${lan.peerLink} nodad`,
        `ip -n ${s} link set ${lan.serverLink} up`,
        `ip -n ${p} link set ${lan.peerLink} up`,
      ]);
    } catch (error) {
      await lan.close();
      throw error;
    }
    return lan;
  }

  /** Runs shell lines (`sh -e`); throws with their stderr when one fails. */
  sh(lines: string[]): Promise<string> {
    return sh(lines);
  }

  /**
   * Makes the peer know the server's link address for good: a datagram the
   * peer forges from an address of the server's then leaves at once (its
   * neighbour solicitation would carry that source, and the server would
   * answer itself).
   */
  async pinNeighbours(): Promise<void> {
    const mac = JSON.parse(
      await this.sh([
        `ip -n ${this.server} -j link show ${this.serverLink}`,
      ]),
    )[0].address;
    await this.sh(
      ["10.1.0.1", "fd00:1::1"].map((address) =>
        `ip -n ${this.peer} neigh replace ${address} lladdr ${mac} dev ${this.peerLink} nud permanent`
      ),
    );
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
    const { stdout, stderr } = await this.deno(from, PEER, [
      host,
      String(port),
      String(replies > 0 ? PATIENCE_MS : QUIET_MS),
      String(QUIET_MS),
    ]);
    ok(stdout.startsWith("["), stderr);
    return JSON.parse(stdout);
  }

  /** Runs a Deno `script` (source text) with `--allow-net` in namespace `ns`. */
  deno(ns: string, script: string, args: string[]): Promise<RunResult> {
    return run("ip", denoInNamespace(ns, args), script);
  }

  /**
   * Starts a Deno `script` (source text) with `--allow-net` in namespace
   * `ns`; its stdout lines come as they are printed.
   */
  spawnDeno(ns: string, script: string, args: string[]): {
    lines: AsyncIterator<string>;
    status: Promise<Deno.CommandStatus>;
  } {
    const child = new Deno.Command("ip", {
      args: denoInNamespace(ns, args),
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const writer = child.stdin.getWriter();
    writer.write(new TextEncoder().encode(script)).then(() => writer.close());
    async function* lines() {
      let rest = "";
      for await (
        const chunk of child.stdout.pipeThrough(new TextDecoderStream())
      ) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        yield* parts;
      }
    }
    return { lines: lines(), status: child.status };
  }

  /**
   * The packets counted so far by the counter of the one rule in namespace
   * `ns` whose text includes `rule`.
   */
  counter(ns: string, rule: string): Promise<number> {
    return nftCounter(ns, rule);
  }

  /** Deletes both namespaces, and with them everything in them. */
  async close(): Promise<void> {
    await run("ip", ["netns", "del", this.server]);
    await run("ip", ["netns", "del", this.peer]);
  }
}

/** `server.ts` in namespace `ns`, as `deno task server` runs it. */
export class NetnsServer {
  /** Its stdout lines so far. */
  readonly lines: string[] = [];
  #child: Deno.ChildProcess;
  #stdout: Promise<void>;
  #stderr: Promise<string>;

  /**
   * Starts it with `flags` for Deno (`--allow-all` instead of the usual
   * permissions) and `args` for the server, on port 0
   * unless `args` has `-p`, and `-q` unless `quiet` is false.
   */
  constructor(
    ns: string,
    args: string[],
    flags: string[],
    options: { quiet?: boolean } = {},
  ) {
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns,
        Deno.execPath(),
        "run",
        "--unstable-net",
        // Deno refuses --allow-all beside the narrower flags.
        ...(flags.includes("--allow-all")
          ? []
          : ["--allow-net", "--allow-ffi", `--allow-read=${ROOT.pathname}`]),
        ...flags,
        new URL("server.ts", ROOT).pathname,
        ...(args.includes("-p") ? [] : ["-p", "0"]),
        ...(options.quiet === false ? [] : ["-q"]),
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
        this.lines.push(...parts);
      }
    })();
  }

  /** The process id (`ip netns exec` runs Deno in its own place). */
  get pid(): number {
    return this.#child.pid;
  }

  /**
   * Waits for a stdout line that `matches`, and returns it; kills the
   * server and throws with its stderr when none comes.
   */
  async waitForLine(matches: (line: string) => boolean): Promise<string> {
    let found: string | undefined;
    let ended = false;
    this.#stdout.then(() => ended = true);
    try {
      await waitUntil(
        () => (found = this.lines.find(matches)) !== undefined || ended,
        "server.ts prints the line awaited",
      );
    } catch {
      // Reported below.
    }
    if (found === undefined) {
      this.#child.kill("SIGKILL");
      const { stderr } = await this.stop();
      throw new Error(`server.ts did not print the line awaited: ${stderr}`);
    }
    return found;
  }

  /** The port, once the first socket's line is out. */
  async port(): Promise<number> {
    const first = await this.waitForLine(() => true);
    return first.startsWith("{")
      ? JSON.parse(first).port
      : Number(/port (\d+)/.exec(first)![1]);
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
    return { lines: this.lines, stderr: await this.#stderr };
  }
}

/** The JSON events named `event` among `lines`. */
export function events(
  lines: string[],
  event: string,
): Record<string, unknown>[] {
  return lines.filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line))
    .filter((e) => e.event === event);
}

/**
 * A test given a fresh {@linkcode Lan}, deleted after it; reported as
 * skipped, and why, where namespaces cannot be made.
 */
export function nsTest(name: string, fn: (lan: Lan) => Promise<void>): void {
  Deno.test({
    name,
    ignore: NETNS_SKIP !== undefined,
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
