/**
 * `deno task compile` against the modules the binaries load: Workers and
 * computed dynamic imports are not in the module graph `deno compile`
 * embeds, so each must be named with `--include`, and a rename must break
 * this test rather than a binary at run time. The binaries themselves cannot
 * be built here (compiling downloads the runtime), see docs/development.md,
 * Binaries.
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import config from "./deno.json" with { type: "json" };

const ROOT = new URL("./", import.meta.url);

/** `new URL("./x.ts", import.meta.url)`: how the engine names a module it loads later. */
const LOADED_MODULE =
  /new URL\(\s*["'](\.{1,2}\/[^"']+\.ts)["']\s*,\s*import\.meta\.url\s*\)/g;

/** One `deno compile` command of the task. */
interface CompileCommand {
  entry: string;
  includes: string[];
  flags: string[];
}

/** Splits the compile task into its `deno compile` commands. */
function compileCommands(task: string): CompileCommand[] {
  return task.split("&&").map((part) => {
    const words = part.trim().split(/\s+/);
    equal(words[0], "deno");
    equal(words[1], "compile");
    const includes: string[] = [];
    for (let i = 2; i < words.length; i++) {
      if (words[i] === "--include") includes.push(words[++i]!);
      const inline = words[i]!.match(/^--include=(.+)$/);
      if (inline) includes.push(inline[1]!);
    }
    return { entry: words.at(-1)!, includes, flags: words.slice(2, -1) };
  });
}

/** The local modules `path` reaches statically or by a literal `import()`. */
async function moduleGraph(path: string): Promise<string[]> {
  const { success, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", path],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  ok(success, new TextDecoder().decode(stderr));
  const info = JSON.parse(new TextDecoder().decode(stdout)) as {
    modules: { specifier: string }[];
  };
  return info.modules.map((m) => m.specifier).filter((s) =>
    s.startsWith(ROOT.href) && s.endsWith(".ts")
  ).map((s) => s.slice(ROOT.href.length));
}

/** Modules a binary built from `entry` loads outside its static graph, worked out to a fixed point. */
async function loadedModules(entry: string): Promise<string[]> {
  const found = new Set<string>();
  const queue = [entry];
  const seen = new Set<string>();
  while (queue.length) {
    for (const module of await moduleGraph(queue.shift()!)) {
      if (seen.has(module)) continue;
      seen.add(module);
      const text = await Deno.readTextFile(new URL(module, ROOT));
      for (const [, relative] of text.matchAll(LOADED_MODULE)) {
        const loaded = new URL(relative!, new URL(module, ROOT)).href.slice(
          ROOT.href.length,
        );
        if (!found.has(loaded)) {
          found.add(loaded);
          queue.push(loaded);
        }
      }
    }
  }
  return [...found].sort();
}

const COMMANDS = compileCommands(config.tasks.compile);

Deno.test("deno task compile builds the server and the client", () => {
  deepEqual(COMMANDS.map((c) => c.entry), ["server.ts", "client.ts"]);
});

for (const command of COMMANDS) {
  Deno.test(`deno task compile includes every Worker and computed import ${command.entry} loads`, async () => {
    const loaded = await loadedModules(command.entry);
    for (const module of loaded) {
      ok(
        command.includes.includes(module),
        `${command.entry} loads ${module} at run time, but the compile task has no --include ${module}`,
      );
    }
    for (const include of command.includes) {
      const stat = await Deno.stat(new URL(include, ROOT));
      ok(stat.isFile, `--include ${include} names no file`);
    }
    // The kernel engine is FFI; batchGap() also asks for read access to the
    // engine's folder, which inside a binary is a temporary path known only
    // at run time, so the grant cannot be scoped.
    if (loaded.includes("kernel/_echo_worker.ts")) {
      ok(command.flags.includes("--allow-ffi"), "no --allow-ffi");
      ok(command.flags.includes("--allow-read"), "no --allow-read");
    }
  });
}

Deno.test("the server binary's compile command loads the batch engine's Worker and policy hook", async () => {
  // Pins the detection above: if it found nothing it could not fail.
  const loaded = await loadedModules("server.ts");
  ok(loaded.includes("kernel/_echo_worker.ts"), loaded.join(", "));
  ok(loaded.includes("kernel/_policy_hook.ts"), loaded.join(", "));
});
