/**
 * Runs a program to its end and keeps what it printed, for tests and
 * benchmarks that drive `ip`, `nft` and the like. Loading it runs nothing.
 *
 * @module
 */

/** What a finished command printed, and whether it succeeded. */
export interface RunResult {
  /** Exit status 0. */
  success: boolean;
  /** Its standard output. */
  stdout: string;
  /** Its standard error, or why it could not start. */
  stderr: string;
}

/** Runs `command` with `args` (and `input` on stdin) to its end; never throws. */
export async function run(
  command: string,
  args: string[],
  input?: string,
): Promise<RunResult> {
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
