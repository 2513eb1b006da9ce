/**
 * The private network namespaces of `bench/soak.ts`, where datagrams with
 * forged sources reach the server and its echoes to those sources go
 * nowhere: a server namespace and a sender namespace joined by a veth pair.
 * The soak re-runs itself inside the server namespace, so its loopback
 * traffic, the server's and the monitor's all stay there too. Also: who
 * listens on the inspector's port.
 *
 * @module
 */

import { hasProgram } from "../testing/metrics.ts";
import { run as runCommand } from "../testing/command.ts";

/** The server's addresses on the veth link, and the sender's. */
export const LINK = {
  server4: "10.99.0.1",
  server6: "fd99::1",
  sender4: "10.99.0.2",
  sender6: "fd99::2",
} as const;

/** The names of the two namespaces. */
export interface Namespaces {
  /** Where the server, the monitor and the soak run. */
  server: string;
  /** Where the forged datagrams come from, and their echoes end. */
  sender: string;
}

/** Runs `program` to its end; its stdout, or an error saying why it failed. */
async function run(program: string, args: string[], input?: string) {
  const { success, stdout, stderr } = await runCommand(program, args, input);
  if (!success) {
    throw new Error(
      `Cannot run ${program} ${args.join(" ")}: ${stderr.trim()}`,
    );
  }
  return stdout;
}

/** Why the namespaces cannot be made here, or undefined when they can. */
export async function namespaceSkipReason(): Promise<string | undefined> {
  for (const tool of ["ip", "unshare", "setsid", "python3"]) {
    if (!hasProgram(tool)) return `${tool} is not installed`;
  }
  try {
    await run("unshare", ["-n", "true"]);
  } catch {
    return "a private network namespace needs root";
  }
  return undefined;
}

/**
 * Makes the namespaces, named after this process: the veth link, a route
 * from the server to the forged ranges (198.18.0.0/15 and fd98::/16) over
 * it, and, where `nft` is installed, a rule in the sender namespace that
 * discards the echoes before routing, so not even an ICMP error comes back.
 */
export async function makeNamespaces(): Promise<Namespaces> {
  const names = {
    server: `ue-soak-server-${Deno.pid}`,
    sender: `ue-soak-sender-${Deno.pid}`,
  };
  await run("ip", ["netns", "add", names.server]);
  try {
    await run("ip", ["netns", "add", names.sender]);
    const ip = (ns: string, ...args: string[]) =>
      run("ip", ["-n", ns, ...args]);
    const { server, sender } = names;
    await ip(server, "link", "set", "lo", "up");
    await ip(sender, "link", "set", "lo", "up");
    await ip(server, "link", "add", "s0", "type", "veth", "peer", "name", "a0");
    await ip(server, "link", "set", "a0", "netns", sender);
    await ip(server, "addr", "add", `${LINK.server4}/24`, "dev", "s0");
    await ip(sender, "addr", "add", `${LINK.sender4}/24`, "dev", "a0");
    await ip(server, "addr", "add", `${LINK.server6}/64`, "dev", "s0", "nodad");
    await ip(sender, "addr", "add", `${LINK.sender6}/64`, "dev", "a0", "nodad");
    await ip(server, "link", "set", "s0", "up");
    await ip(sender, "link", "set", "a0", "up");
    await ip(server, "route", "add", "198.18.0.0/15", "via", LINK.sender4);
    await ip(server, "route", "add", "fd98::/16", "via", LINK.sender6);
    if (hasProgram("nft")) {
      await run(
        "ip",
        ["netns", "exec", sender, "nft", "-f", "-"],
        [
          "table inet soak {",
          "  chain discard {",
          "    type filter hook prerouting priority raw; policy accept;",
          '    iifname "a0" meta l4proto udp drop',
          "  }",
          "}",
        ].join("\n"),
      );
    }
  } catch (error) {
    await removeNamespaces(names);
    throw error;
  }
  return names;
}

/** Deletes the namespaces, and with them the veth pair; never throws. */
export async function removeNamespaces(names: Namespaces): Promise<void> {
  for (const name of [names.server, names.sender]) {
    try {
      await run("ip", ["netns", "del", name]);
    } catch {
      // Not made, or gone already.
    }
  }
}

/**
 * Runs `deno run PERMISSIONS script ARGS` inside the server namespace, in a
 * session of its own (so a Ctrl-C reaches only this process), with this
 * process's stdout and stderr. When `interrupt` aborts it gets SIGINT, and
 * so still ends with its report. Resolves to its exit code; after
 * `limitMs` it is killed.
 */
export async function runInside(
  names: Namespaces,
  script: string,
  args: string[],
  options: { interrupt: AbortSignal; limitMs: number },
): Promise<number> {
  const child = new Deno.Command("ip", {
    args: [
      ...["netns", "exec", names.server, "setsid", Deno.execPath(), "run"],
      ...["--allow-net", "--allow-run", "--allow-read", script, ...args],
    ],
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const forward = () => {
    try {
      child.kill("SIGINT");
    } catch {
      // Ended already.
    }
  };
  options.interrupt.addEventListener("abort", forward);
  const guard = setTimeout(() => {
    console.error(
      `error: the soak did not end within ${options.limitMs} ms: killed`,
    );
    child.kill("SIGKILL");
  }, options.limitMs);
  try {
    return (await child.status).code;
  } finally {
    clearTimeout(guard);
    options.interrupt.removeEventListener("abort", forward);
  }
}

/**
 * Who listens on TCP port 9229, the V8 inspector's: "nothing", "the
 * server" (process `pid`) or the `ss` line of another process.
 */
export async function inspectorListener(pid: number): Promise<string> {
  const listing = await run("ss", ["-Hltnp", "sport = :9229"]);
  const lines = listing.split("\n").filter(Boolean);
  if (lines.length === 0) return "nothing";
  return lines.some((line) => line.includes(`pid=${pid},`))
    ? "the server"
    : lines[0]!.replace(/\s+/g, " ");
}
