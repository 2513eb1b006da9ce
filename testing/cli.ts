/**
 * Runs the scripts as a user would, as subprocesses of the Deno that runs the
 * tests, for tests that check exit codes and what reaches stdout and stderr.
 *
 * @module
 */

/** The project's root folder, where `deno.json` is. */
export const ROOT: URL = new URL("../", import.meta.url);

/** What a finished subprocess printed and returned. */
export interface Output {
  /** The exit code. */
  code: number;
  /** Everything written to stdout, as text. */
  stdout: string;
  /** Everything written to stderr, as text. */
  stderr: string;
}

/** Options for {@linkcode runScript}. */
export interface RunOptions {
  /** Bytes or text for standard input; none closes it at once. */
  stdin?: string | Uint8Array;
  /** Deno permission flags; defaults to `--allow-net`. */
  permissions?: string[];
  /** A network namespace to run it in (`ip netns exec`); needs root. */
  namespace?: string;
}

/** Options for {@linkcode spawnScript}. */
export interface SpawnOptions {
  /** Deno permission flags; defaults to `--allow-net`. */
  permissions?: string[];
  /** `piped` to write standard input; `null` (the default) closes it. */
  stdin?: "null" | "piped";
  /** A network namespace to run it in (`ip netns exec`); needs root. */
  namespace?: string;
}

/**
 * Spawns `deno run --unstable-net PERMISSIONS script ARGS` in the root, as a
 * user would run it: stdout and stderr piped, without colour; with
 * `namespace`, inside that network namespace.
 */
export function spawnScript(
  script: string,
  args: string[],
  options: SpawnOptions = {},
): Deno.ChildProcess {
  const { permissions = ["--allow-net"], stdin = "null", namespace } = options;
  const deno = [
    Deno.execPath(),
    "run",
    "--unstable-net",
    ...permissions,
    script,
    ...args,
  ];
  const [command, ...rest] = namespace === undefined
    ? deno
    : ["ip", "netns", "exec", namespace, ...deno];
  return new Deno.Command(command!, {
    args: rest,
    cwd: ROOT,
    stdin,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
}

/** Runs `script` (a path relative to the root) to its end. */
export async function runScript(
  script: string,
  args: string[],
  options: RunOptions = {},
): Promise<Output> {
  const { stdin, permissions = ["--allow-net"], namespace } = options;
  const child = spawnScript(script, args, {
    permissions,
    namespace,
    stdin: stdin === undefined ? "null" : "piped",
  });
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(
      typeof stdin === "string" ? new TextEncoder().encode(stdin) : stdin,
    );
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
  };
}

/** A server script running as a subprocess. */
export interface RunningServer {
  /** The port it reported in its first line. */
  port: number;
  /** Its first line of output. */
  firstLine: string;
  /** Sends `signal` (SIGINT by default) and waits for the process to end. */
  stop(signal?: Deno.Signal): Promise<Output>;
}

/**
 * Starts `server.ts` with `args` and waits for its first line, from which
 * the port is read: the last number of the text line, or `port` in JSON.
 */
export async function startServer(
  args: string[],
  script = "server.ts",
  permissions: string[] = ["--allow-net"],
): Promise<RunningServer> {
  const child = spawnScript(script, args, { permissions });
  const stderrText = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) {
      const status = await child.status;
      throw new Error(
        `Cannot start server: exit ${status.code}: ${await stderrText}`,
      );
    }
    text += value;
  }
  const firstLine = text.slice(0, text.indexOf("\n"));
  const port = firstLine.startsWith("{")
    ? JSON.parse(firstLine).port
    : Number(/(\d+)$/.exec(firstLine)?.[1]);
  const rest = (async () => {
    let more = "";
    while (true) {
      const { value, done } = await lines.read();
      if (done) return more;
      more += value;
    }
  })();
  return {
    port,
    firstLine,
    async stop(signal: Deno.Signal = "SIGINT") {
      child.kill(signal);
      const { code } = await child.status;
      return { code, stdout: text + await rest, stderr: await stderrText };
    },
  };
}

/** A peer program of the tests that is listening: its port, and how to stop it. */
export interface RunningPeer {
  /** The UDP port it printed on its first line. */
  port: number;
  /** Sends SIGTERM and waits for it to exit. */
  stop(): Promise<void>;
}

/**
 * Starts `program` with `args` (an interop peer: the Python or C STAMP
 * reflector) and waits for the port it prints on its first line.
 */
export async function startPeer(
  program: string,
  args: string[],
): Promise<RunningPeer> {
  const child = new Deno.Command(program, {
    args,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  return {
    port: Number(text.trim()),
    async stop() {
      child.kill("SIGTERM");
      await reader.cancel();
      await child.status;
    },
  };
}

/**
 * The exit status of a measurement that should succeed: 0, or 1 when it
 * says (in text or JSON) that it fell short of its schedule, as a stall of
 * a busy machine can make a short run do. For tests whose point is not the
 * pacing.
 */
export function successStatus(stdout: string): number {
  return /^send rate short of the schedule|"rate_shortfall": true/m.test(stdout)
    ? 1
    : 0;
}
