/**
 * Test helpers for abusing the HTTP endpoints of a script run as a
 * subprocess: a script under a lowered file descriptor limit (`ulimit -n`
 * in a child shell), its resident size and open descriptors read from
 * `/proc` through a subprocess (Deno needs `--allow-all` for most of
 * `/proc`), and many TCP connections that never finish their request head.
 *
 * @module
 */

import { ROOT } from "./cli.ts";

/** A script running as a subprocess, both streams read as they come. */
export interface LimitedScript {
  /** Its process id (the shell `exec`s Deno, so it is Deno's unless wrapped). */
  pid: number;
  /** Waits (at most `timeoutMs`, default 20 s) for a stdout match. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Waits (at most `timeoutMs`, default 20 s) for a stderr match. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Everything on stderr so far. */
  stderr(): string;
  /** Sends `signal` (SIGINT by default) and waits for the end. */
  stop(
    signal?: Deno.Signal,
  ): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** Options for {@linkcode startLimited}. */
export interface LimitedOptions {
  /** Deno permission flags. */
  permissions: string[];
  /** `ulimit -n` for the script (soft and hard); none when absent. */
  nofile?: number;
  /** Shell commands run before Deno (after `ulimit`). */
  prelude?: string;
  /** A command the shell runs under: `["ip", "netns", "exec", NAME]`. */
  wrapper?: string[];
}

/**
 * Starts `deno run --unstable-net PERMISSIONS script ARGS` in the root
 * through `WRAPPER bash -c 'ulimit -n N; PRELUDE; exec …'`.
 */
export function startLimited(
  script: string,
  args: string[],
  options: LimitedOptions,
): LimitedScript {
  const limit = options.nofile === undefined
    ? ""
    : `ulimit -n ${options.nofile}; `;
  const prelude = options.prelude === undefined ? "" : `${options.prelude}; `;
  const [program, ...wrapperArgs] = [...options.wrapper ?? [], "bash"];
  const child = new Deno.Command(program!, {
    args: [
      ...wrapperArgs,
      "-c",
      `${limit}${prelude}exec "$@"`,
      "bash",
      Deno.execPath(),
      "run",
      "--unstable-net",
      ...options.permissions,
      script,
      ...args,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const text = { stdout: "", stderr: "" };
  let ended = false;
  const read = async (
    stream: ReadableStream<Uint8Array>,
    key: "stdout" | "stderr",
  ) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text[key] += chunk;
    }
  };
  const reading = Promise.all([
    read(child.stdout, "stdout"),
    read(child.stderr, "stderr"),
  ]).finally(() => ended = true);
  const waitIn = async (
    key: "stdout" | "stderr",
    pattern: RegExp,
    timeoutMs = 20_000,
  ) => {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const found = text[key].match(pattern);
      if (found) return found;
      if (ended) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(
      `Cannot find ${pattern} in the ${key} of ${script}:\n${text.stdout}\n${text.stderr}`,
    );
  };
  let stopped = false;
  return {
    pid: child.pid,
    waitFor: (pattern, timeoutMs) => waitIn("stdout", pattern, timeoutMs),
    waitForStderr: (pattern, timeoutMs) => waitIn("stderr", pattern, timeoutMs),
    stderr: () => text.stderr,
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
      return { code, ...text };
    },
  };
}

async function shell(command: string): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command("sh", {
    args: ["-c", command],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (!success) {
    throw new Error(`Cannot run ${command}: ${decoder.decode(stderr)}`);
  }
  return decoder.decode(stdout);
}

/** The resident size of process `pid` in MB, from `VmRSS`; throws when it cannot be read. */
export async function rssMb(pid: number): Promise<number> {
  const status = await shell(`cat /proc/${pid}/status`);
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`Cannot find VmRSS of ${pid}`);
  return Number(kb) / 1024;
}

/** The file descriptors process `pid` holds open; throws when it cannot be read. */
export async function openFds(pid: number): Promise<number> {
  const listing = await shell(`ls /proc/${pid}/fd`);
  return listing.split("\n").filter(Boolean).length;
}

/** The head every abusive connection sends, never ended by an empty line. */
export const UNFINISHED_HEAD = "GET /metrics HTTP/1.1\r\nHost: x\r\n";

/** Connections that sent an unfinished head and wait. */
export interface HeldConnections {
  /** How many have closed so far (by the server, until close()). */
  closedByServer(): number;
  /** Waits (at most 30 s) until the server closed at least `count`. */
  waitClosed(count: number): Promise<void>;
  /** Closes every connection. */
  close(): Promise<void>;
}

/**
 * Opens `count` TCP connections to `port` on 127.0.0.1, each sending
 * {@linkcode UNFINISHED_HEAD}, and watches which the server closes.
 */
export async function holdConnections(
  port: number,
  count: number,
): Promise<HeldConnections> {
  const head = new TextEncoder().encode(UNFINISHED_HEAD);
  const conns: Deno.TcpConn[] = [];
  const watching: Promise<void>[] = [];
  let closed = 0;
  for (let k = 0; k < count; k++) {
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname: "127.0.0.1", port });
    } catch {
      // Refused, or reset while queued: closed by the server too.
      closed++;
      continue;
    }
    conns.push(conn);
    watching.push((async () => {
      try {
        await conn.write(head);
        const buffer = new Uint8Array(1024);
        while (await conn.read(buffer) !== null) {
          // An answer (408, 431) is not expected; read to the end.
        }
      } catch {
        // Reset by the server, or closed by close().
      }
      closed++;
    })());
  }
  return {
    closedByServer: () => closed,
    async waitClosed(wanted) {
      const end = Date.now() + 30_000;
      while (closed < wanted && Date.now() < end) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      if (closed < wanted) {
        throw new Error(
          `The server closed ${closed} of ${count}, not ${wanted}`,
        );
      }
    },
    async close() {
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Closed already.
        }
      }
      await Promise.all(watching);
    },
  };
}

/**
 * Sends one datagram to `port` on 127.0.0.1 and waits up to 5 s for its
 * echo; resolves whether it came back intact.
 */
export async function echoes(port: number): Promise<boolean> {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const payload = crypto.getRandomValues(new Uint8Array(32));
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await conn.send(payload, { transport: "udp", hostname: "127.0.0.1", port });
    const reply = await Promise.race([
      conn.receive(),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), 5000);
      }),
    ]);
    return reply !== undefined &&
      reply[0].length === payload.length &&
      reply[0].every((byte, k) => byte === payload[k]);
  } finally {
    clearTimeout(timer);
    conn.close();
  }
}

/**
 * Fetches `url` until it answers 200 (at most 20 s, a try every 100 ms):
 * the endpoint serves again. Resolves to the body.
 */
export async function fetchWhenServing(url: string): Promise<string> {
  const end = Date.now() + 20_000;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const response = await fetch(url);
      const text = await response.text();
      if (response.status === 200) return text;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`Cannot fetch ${url}: ${last}`);
}
