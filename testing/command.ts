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

/** Runs shell lines (`sh -e`); throws with their stderr when one fails. */
export async function sh(lines: string[]): Promise<string> {
  const { success, stdout, stderr } = await run("sh", [
    "-ec",
    lines.join("\n"),
  ]);
  if (!success) throw new Error(`Cannot set up the namespaces: ${stderr}`);
  return stdout;
}

/** Loads an nft ruleset (text of `nft -f`) into namespace `ns`. */
export async function loadNft(ns: string, ruleset: string): Promise<void> {
  const { success, stderr } = await run(
    "ip",
    ["netns", "exec", ns, "nft", "-f", "-"],
    ruleset,
  );
  if (!success) throw new Error(`Cannot load the nft rules: ${stderr}`);
}

/** Packets counted by the one rule of namespace `ns` whose text includes `rule`. */
export async function nftCounter(ns: string, rule: string): Promise<number> {
  const listing = await sh([`ip netns exec ${ns} nft list ruleset`]);
  const lines = listing.split("\n").filter((line) => line.includes(rule));
  if (lines.length !== 1) {
    throw new Error(`Cannot find one rule with "${rule}" in:\n${listing}`);
  }
  const packets = /counter packets (\d+)/.exec(lines[0]!)?.[1];
  if (packets === undefined) {
    throw new Error(`Cannot find a counter in: ${lines[0]}`);
  }
  return Number(packets);
}
