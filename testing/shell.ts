/**
 * Small process helpers for the deploy tests: a shell command (the tests
 * may not write files themselves), and a script watched on stdout and
 * stderr at once, for scripts that print their start-up line on either.
 *
 * @module
 */

import { ROOT } from "./cli.ts";

/** Runs `script` in a shell, `stdin` written to it; resolves to its stdout, trimmed. */
export async function sh(script: string, stdin?: Uint8Array): Promise<string> {
  const child = new Deno.Command("sh", {
    args: ["-c", script],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin);
    await writer.close();
  }
  const { stdout, success } = await child.output();
  if (!success) throw new Error(`Cannot run: ${script}`);
  return new TextDecoder().decode(stdout).trim();
}

/** A process whose stdout and stderr are read together as they come. */
export interface Watched {
  /** Resolves to the first match of `pattern` in what it printed; rejects when it ends first. */
  waitFor(pattern: RegExp): Promise<RegExpMatchArray>;
  /** Sends `signal` (SIGTERM by default); resolves to its exit code and everything it printed. */
  stop(signal?: Deno.Signal): Promise<{ code: number; said: string }>;
}

/** Starts `words` (a program and its arguments) in the root, watched. */
export function startWatched(words: string[]): Watched {
  const child = new Deno.Command(words[0]!, {
    args: words.slice(1),
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let said = "";
  let changed = () => {};
  const read = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      said += chunk;
      changed();
    }
  };
  const reading = Promise.all([read(child.stdout), read(child.stderr)]);
  let ended = false;
  const status = child.status.then((status) => {
    ended = true;
    return status;
  });
  return {
    async waitFor(pattern) {
      while (true) {
        const found = said.match(pattern);
        if (found) return found;
        if (ended) {
          await reading;
          const late = said.match(pattern);
          if (late) return late;
          throw new Error(
            `Cannot find ${pattern}: ${words.join(" ")} ended: ${said}`,
          );
        }
        await Promise.race([
          new Promise<void>((resolve) => changed = resolve),
          status,
        ]);
      }
    },
    async stop(signal = "SIGTERM") {
      if (!ended) {
        try {
          child.kill(signal);
        } catch {
          // Ended meanwhile.
        }
      }
      const { code } = await status;
      await reading;
      return { code, said };
    },
  };
}
