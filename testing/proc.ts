/**
 * Reading a process's figures from /proc in tests. Deno grants /proc/PID
 * only with --allow-all, so `cat` reads it; a figure that cannot be read
 * throws, so that a test built on it can still fail.
 *
 * @module
 */

/** The resident set size of process `pid` in KiB; throws when it cannot be read. */
export async function rssKiB(pid: number): Promise<number> {
  const { success, stdout, stderr } = await new Deno.Command("cat", {
    args: [`/proc/${pid}/status`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(decoder.decode(stdout));
  if (!success || !match) {
    throw new Error(
      `Cannot read the resident size of process ${pid}: ${
        decoder.decode(stderr).trim() || "no VmRSS line"
      }`,
    );
  }
  return Number(match[1]);
}
