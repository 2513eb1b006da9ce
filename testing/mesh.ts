/**
 * A mesh of network namespaces for tests: N nodes (10.22.0.1/24 and up),
 * each on a veth pair to one bridge in a hub namespace (10.22.0.254/24),
 * and a real Prometheus in the hub that scrapes them. Processes run in a
 * node with `ip netns exec`; Prometheus answers through a small Deno
 * relay in the hub, since its address is not reachable from the test's
 * own namespace. Needs root, `ip` and `nft` (`NETNS_SKIP` of
 * `netns.ts`) and `prometheus`.
 *
 * @module
 */

import { ROOT } from "./cli.ts";
import { run, sh } from "./command.ts";
import { waitUntil } from "./wait.ts";
import { namespaceId } from "./netns.ts";

/** The hub's address on the bridge: Prometheus listens there. */
export const HUB_ADDRESS = "10.22.0.254";

/** A process in a namespace: its output as it comes, and how to stop it. */
export class NsProcess {
  /** Its stdout and stderr so far, as they came. */
  output = "";
  #child: Deno.ChildProcess;
  #reading: Promise<void>;
  #ended = false;

  /** Starts `command` with `args` in namespace `ns`. */
  constructor(ns: string, command: string, args: string[]) {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, command, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.#child = child;
    const read = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        this.output += chunk;
      }
    };
    this.#reading = Promise.all([read(child.stdout), read(child.stderr)])
      .then(() => {
        this.#ended = true;
      });
  }

  /** Waits for the output to match `pattern`; throws with it when the process ends first. */
  async waitFor(pattern: RegExp): Promise<RegExpMatchArray> {
    let found: RegExpMatchArray | null = null;
    await waitUntil(
      () => (found = this.output.match(pattern)) !== null || this.#ended,
      `the output matches ${pattern}`,
    );
    if (found === null) {
      throw new Error(`Cannot find ${pattern} before the end: ${this.output}`);
    }
    return found;
  }

  /** Stops it with `signal` and resolves to its exit code. */
  async stop(signal: Deno.Signal = "SIGINT"): Promise<number> {
    try {
      this.#child.kill(signal);
    } catch {
      // Already ended.
    }
    const { code } = await this.#child.status;
    await this.#reading;
    return code;
  }
}

/** N namespaces on one bridge, and a hub; `close()` deletes them all. */
export class Mesh {
  /** The nodes' namespaces, in order. */
  readonly nodes: string[];
  /** The nodes' addresses, in order. */
  readonly addresses: string[];
  /** The hub's namespace (the bridge, Prometheus). */
  readonly hub: string;
  readonly #processes: NsProcess[] = [];
  #relay?: {
    child: Deno.ChildProcess;
    writer: WritableStreamDefaultWriter<Uint8Array>;
    lines: AsyncIterator<string>;
    queue: Promise<unknown>;
  };
  #dir?: string;

  private constructor(id: string, size: number) {
    this.hub = `uem${id}h`;
    this.nodes = Array.from({ length: size }, (_, k) => `uem${id}n${k}`);
    this.addresses = this.nodes.map((_, k) => `10.22.0.${k + 1}`);
  }

  /** Makes `size` nodes; deletes what it made when a step fails. */
  static async open(size: number): Promise<Mesh> {
    const mesh = new Mesh(namespaceId(), size);
    const hub = mesh.hub;
    try {
      await sh([
        `ip netns add ${hub}`,
        `ip -n ${hub} link set lo up`,
        `ip -n ${hub} link add br0 type bridge`,
        `ip -n ${hub} addr add ${HUB_ADDRESS}/24 dev br0`,
        `ip -n ${hub} link set br0 up`,
        ...mesh.nodes.flatMap((ns, k) => [
          `ip netns add ${ns}`,
          `ip -n ${ns} link set lo up`,
          `ip link add eth0 netns ${ns} type veth peer name p${k} netns ${hub}`,
          `ip -n ${ns} link set eth0 addrgenmode none`,
          `ip -n ${hub} link set p${k} addrgenmode none`,
          `ip -n ${ns} addr add ${mesh.addresses[k]}/24 dev eth0`,
          `ip -n ${hub} link set p${k} master br0`,
          `ip -n ${hub} link set p${k} up`,
          `ip -n ${ns} link set eth0 up`,
        ]),
      ]);
    } catch (error) {
      await mesh.close();
      throw error;
    }
    return mesh;
  }

  /** Starts `deno run --unstable-net PERMISSIONS script ARGS` (a script of ours) in `ns`. */
  deno(
    ns: string,
    script: string,
    args: string[],
    permissions: string[],
  ): NsProcess {
    return this.#keep(
      new NsProcess(ns, Deno.execPath(), [
        "run",
        "--unstable-net",
        ...permissions,
        new URL(script, ROOT).pathname,
        ...args,
      ]),
    );
  }

  /**
   * Starts Prometheus in the hub with `config` (a prometheus.yml, whose
   * relative paths are read from the repository's `deploy/prometheus/`),
   * and waits until it is ready.
   */
  async prometheus(config: string): Promise<void> {
    this.#dir = (await sh(["mktemp -d"])).trim();
    await sh([
      `cat > '${this.#dir}/prometheus.yml' <<'EOF_CONFIG'\n${config}\nEOF_CONFIG`,
    ]);
    const prometheus = this.#keep(
      new NsProcess(this.hub, "prometheus", [
        `--config.file=${this.#dir}/prometheus.yml`,
        `--storage.tsdb.path=${this.#dir}/data`,
        `--web.listen-address=${HUB_ADDRESS}:9090`,
      ]),
    );
    this.#relay = startRelay(this.hub);
    await waitUntil(
      async () => (await this.get("/-/ready")).status === 200,
      "prometheus is ready",
    ).catch((error) => {
      throw new Error(`${error.message}: ${prometheus.output.slice(-1000)}`);
    });
  }

  /** GETs `path` from Prometheus; status 0 when it did not answer. */
  get(path: string): Promise<{ status: number; body: string }> {
    const relay = this.#relay!;
    const answer = relay.queue.then(async () => {
      await relay.writer.write(new TextEncoder().encode(`${path}\n`));
      const { value, done } = await relay.lines.next();
      if (done) throw new Error("Cannot query prometheus: the relay ended");
      return JSON.parse(value);
    });
    relay.queue = answer.catch(() => {});
    return answer;
  }

  /** The result of PromQL `query` now: each series' labels and value. */
  async query(
    query: string,
  ): Promise<{ labels: Record<string, string>; value: number }[]> {
    const { status, body } = await this.get(
      `/api/v1/query?query=${encodeURIComponent(query)}`,
    );
    if (status !== 200) {
      throw new Error(`Cannot query ${query}: ${status} ${body}`);
    }
    return JSON.parse(body).data.result.map((
      item: { metric: Record<string, string>; value: [number, string] },
    ) => ({ labels: item.metric, value: Number(item.value[1]) }));
  }

  /** Runs shell lines in namespace `ns`. */
  sh(ns: string, lines: string[]): Promise<string> {
    return sh(lines.map((line) => `ip netns exec ${ns} ${line}`));
  }

  #keep(process: NsProcess): NsProcess {
    this.#processes.push(process);
    return process;
  }

  /** Stops every process (SIGKILL when SIGINT does not end it) and deletes the namespaces. */
  async close(): Promise<void> {
    if (this.#relay) {
      await this.#relay.writer.close().catch(() => {});
      await this.#relay.child.status;
    }
    await Promise.all(this.#processes.map((process) => process.stop()));
    for (const ns of [...this.nodes, this.hub]) {
      await run("ip", ["netns", "del", ns]);
    }
    if (this.#dir) await sh([`rm -rf '${this.#dir}'`]);
  }
}

// Reads paths on stdin and answers each with one line of JSON: the status
// and body of GET base+path.
const RELAY = `
const base = Deno.args[0];
let rest = "";
for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  const parts = (rest + chunk).split("\\n");
  rest = parts.pop();
  for (const path of parts) {
    let answer;
    try {
      const response = await fetch(base + path);
      answer = { status: response.status, body: await response.text() };
    } catch (error) {
      answer = { status: 0, body: String(error) };
    }
    console.log(JSON.stringify(answer));
  }
}
`;

function startRelay(ns: string) {
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns,
      Deno.execPath(),
      "eval",
      RELAY,
      `http://${HUB_ADDRESS}:9090`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
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
  return {
    child,
    writer: child.stdin.getWriter(),
    lines: lines(),
    queue: Promise.resolve() as Promise<unknown>,
  };
}
