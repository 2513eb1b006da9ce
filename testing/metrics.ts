/**
 * Test helpers for the metrics endpoints: a script that runs until
 * stopped, read line by line; `promtool check metrics`; a real Prometheus.
 *
 * @module
 */

import { ROOT, spawnScript } from "./cli.ts";
import { run } from "./command.ts";
import { waitUntil } from "./wait.ts";

/** A scratch folder that a test writes through `sh`; see {@linkcode scratchDir}. */
export interface Scratch {
  /** Its path. */
  dir: string;
  /** Replaces file `name` with `text` by a rename: a reader sees old or new, never half. */
  write(name: string, text: string): Promise<void>;
  /** Deletes the folder. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * A scratch folder written through `sh`, as an operator would write a
 * configuration file (the tests run without `--allow-write`).
 */
export async function scratchDir(): Promise<Scratch> {
  const made = await run("mktemp", ["-d"]);
  if (!made.success) throw new Error(`Cannot make a folder: ${made.stderr}`);
  const dir = made.stdout.trim();
  return {
    dir,
    async write(name, text) {
      const { success, stderr } = await run("sh", [
        "-ec",
        'cat > "$1.next"; mv "$1.next" "$1"',
        "sh",
        `${dir}/${name}`,
      ], text);
      if (!success) throw new Error(`Cannot write ${name}: ${stderr}`);
    },
    async [Symbol.asyncDispose]() {
      await run("rm", ["-rf", dir]);
    },
  };
}

/** A script running as a subprocess, its stdout read as it comes. */
export interface Running {
  /** Waits (at most 10 s) for a stdout line matching `pattern`; returns its match. */
  waitFor(pattern: RegExp): Promise<RegExpMatchArray>;
  /** Waits (at most 60 s) for stderr to match `pattern`; returns its match. */
  waitForError(pattern: RegExp): Promise<RegExpMatchArray>;
  /** The process id of Deno running the script. */
  readonly pid: number;
  /** Sends `signal` (SIGINT by default) and waits for the end. */
  stop(
    signal?: Deno.Signal,
  ): Promise<{ code: number; stdout: string; stderr: string }>;
}

/**
 * Starts `deno run --unstable-net PERMISSIONS script ARGS` in the root; in
 * network namespace `namespace` when given (through `ip netns exec`, which
 * also mounts the files of `/etc/netns/NAMESPACE/` over those of `/etc/`).
 */
export function startScript(
  script: string,
  args: string[],
  permissions: string[] = ["--allow-net"],
  namespace?: string,
): Running {
  const child = namespace === undefined
    ? spawnScript(script, args, { permissions })
    : new Deno.Command("ip", {
      args: [
        ...["netns", "exec", namespace, Deno.execPath(), "run"],
        ...["--unstable-net", ...permissions],
        new URL(script, ROOT).pathname,
        ...args,
      ],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
  let errors = "";
  const stderr = (async () => {
    for await (
      const chunk of child.stderr.pipeThrough(new TextDecoderStream())
    ) {
      errors += chunk;
    }
    return errors;
  })();
  let stdout = "";
  let ended = false;
  const reading = (async () => {
    for await (
      const chunk of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      stdout += chunk;
    }
    ended = true;
  })();
  let stopped = false;
  return {
    pid: child.pid,
    async waitForError(pattern) {
      let found: RegExpMatchArray | null = null;
      await waitUntil(
        () => (found = errors.match(pattern)) !== null || ended,
        `${script} says ${pattern} on stderr`,
      );
      if (found === null) {
        throw new Error(
          `Cannot find ${pattern} in the stderr of ${script}: ${errors}`,
        );
      }
      return found;
    },
    async waitFor(pattern) {
      const end = Date.now() + 10_000;
      while (Date.now() < end) {
        const found = stdout.match(pattern);
        if (found) return found;
        if (ended) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(
        `Cannot find ${pattern} in the output of ${script}: ${stdout}${await (ended
          ? stderr
          : Promise.resolve(""))}`,
      );
    },
    async stop(signal = "SIGINT") {
      if (!stopped) {
        stopped = true;
        try {
          child.kill(signal);
        } catch {
          // Already ended.
        }
      }
      const { code } = await child.status;
      await reading;
      return { code, stdout, stderr: await stderr };
    },
  };
}

/** Whether a program is on PATH. */
export function hasProgram(name: string): boolean {
  try {
    const { success } = new Deno.Command("sh", {
      args: ["-c", `command -v ${name}`],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return success;
  } catch {
    return false;
  }
}

/** Runs `promtool check metrics` on `text`; resolves to its problems ("" when none). */
export async function promtoolCheck(text: string): Promise<string> {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  const said = decoder.decode(stdout) + decoder.decode(stderr);
  return code === 0 ? "" : said || `promtool exited ${code}`;
}

/** Fetches `url` and returns its status and body text. */
export async function fetchText(
  url: string,
): Promise<{ status: number; text: string; type: string | null }> {
  const response = await fetch(url);
  return {
    status: response.status,
    text: await response.text(),
    type: response.headers.get("content-type"),
  };
}

/**
 * A series as `name{labels}` with its labels sorted, so that two spellings
 * of one series compare equal whatever order the labels come in.
 */
function canonicalSeries(series: string): string {
  const open = series.indexOf("{");
  if (open < 0) return series;
  const labels = [
    ...series.slice(open).matchAll(
      /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g,
    ),
  ].map((match) => `${match[1]}="${match[2]}"`).sort();
  return `${series.slice(0, open)}{${labels.join(",")}}`;
}

/**
 * The value of one sample (`name{labels}`, labels in any order) in an
 * exposition; NaN when absent.
 */
export function sample(text: string, series: string): number {
  const wanted = canonicalSeries(series);
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    if (space > 0 && canonicalSeries(line.slice(0, space)) === wanted) {
      return Number(line.slice(space + 1));
    }
  }
  return NaN;
}

/** The series of `name` in an exposition, each as printed (labels included). */
export function seriesOf(text: string, name: string): string[] {
  return text.split("\n").filter((line) =>
    line.startsWith(`${name}{`) || line.startsWith(`${name} `)
  ).map((line) => line.slice(0, line.lastIndexOf(" ")));
}

/**
 * A UDP echo socket in the test's own process, for a monitor to probe; on
 * 127.0.0.1 and a free port unless told.
 */
export function startEchoSocket(
  hostname = "127.0.0.1",
  port = 0,
): { port: number; close(): Promise<void> } {
  const conn = Deno.listenDatagram({ transport: "udp", hostname, port });
  const serving = (async () => {
    try {
      for await (const [data, from] of conn) await conn.send(data, from);
    } catch {
      // Closed.
    }
  })();
  return {
    port: (conn.addr as Deno.NetAddr).port,
    async close() {
      conn.close();
      await serving;
    },
  };
}
