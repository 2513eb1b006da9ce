/**
 * No module of the project imports itself through others: the graph
 * `deno info --json` gives from every entry point (the package's exports,
 * the Workers and the modules loaded by URL, found as `compile_test.ts`
 * finds them) has no cycle. Type-only and dynamic imports count; the
 * examples in JSDoc, which import their own module, are not in the graph.
 */

import { deepEqual, ok } from "node:assert/strict";
import config from "../deno.json" with { type: "json" };
import { ROOT } from "./cli.ts";

/** `new URL("./x.ts", import.meta.url)`: a module loaded later, by URL. */
const LOADED_MODULE =
  /new URL\(\s*["'](\.{1,2}\/[^"']+\.ts)["']\s*,\s*import\.meta\.url\s*\)/g;

/** Each local module and the local modules it imports. */
type Graph = Map<string, Set<string>>;

interface ModuleInfo {
  specifier: string;
  dependencies?: {
    code?: { specifier: string };
    type?: { specifier: string };
  }[];
}

/** The local part of `specifier`, or `undefined` for one outside the project. */
function local(specifier: string): string | undefined {
  return specifier.startsWith(ROOT.href) && specifier.endsWith(".ts")
    ? specifier.slice(ROOT.href.length)
    : undefined;
}

/** Adds the graph `deno info --json` gives for `entry` to `graph`. */
async function addGraph(graph: Graph, entry: string): Promise<void> {
  const { success, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  ok(success, new TextDecoder().decode(stderr));
  const info = JSON.parse(new TextDecoder().decode(stdout)) as {
    modules: ModuleInfo[];
  };
  for (const module of info.modules) {
    const from = local(module.specifier);
    if (from === undefined) continue;
    const edges = graph.get(from) ?? new Set();
    graph.set(from, edges);
    for (const dependency of module.dependencies ?? []) {
      for (const resolved of [dependency.code, dependency.type]) {
        const to = resolved && local(resolved.specifier);
        if (to !== undefined && to !== from) edges.add(to);
      }
    }
  }
}

/**
 * The graph from the package's exports and every module they load by URL
 * (Workers, decide and reflect modules, probe formats), to a fixed point.
 */
async function projectGraph(): Promise<Graph> {
  const graph: Graph = new Map();
  const queue: string[] = Object.values(config.exports);
  const entries = new Set<string>();
  while (queue.length > 0) {
    const entry = queue.shift()!.replace(/^\.\//, "");
    if (entries.has(entry)) continue;
    entries.add(entry);
    await addGraph(graph, entry);
    for (const module of graph.keys()) {
      const text = await Deno.readTextFile(new URL(module, ROOT));
      for (const [, relative] of text.matchAll(LOADED_MODULE)) {
        const loaded = local(new URL(relative!, new URL(module, ROOT)).href);
        if (loaded !== undefined && !entries.has(loaded)) queue.push(loaded);
      }
    }
  }
  return graph;
}

/**
 * One cycle through each group of modules that import one another, as
 * `a.ts -> b.ts -> a.ts`.
 */
export function findCycles(graph: Graph): string[] {
  // Tarjan's strongly connected components.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  const visit = (module: string) => {
    index.set(module, index.size);
    low.set(module, index.get(module)!);
    stack.push(module);
    onStack.add(module);
    for (const next of graph.get(module) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(module, Math.min(low.get(module)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(module, Math.min(low.get(module)!, index.get(next)!));
      }
    }
    if (low.get(module) === index.get(module)) {
      const group: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        group.push(member);
      } while (member !== module);
      if (group.length > 1) groups.push(group);
    }
  };
  for (const module of [...graph.keys()].sort()) {
    if (!index.has(module)) visit(module);
  }
  return groups.map((group) => {
    // The shortest way back to the group's first module, within the group.
    const inGroup = new Set(group);
    const start = group.sort()[0]!;
    const previous = new Map<string, string>();
    const queue = [start];
    while (queue.length > 0) {
      const module = queue.shift()!;
      for (const next of graph.get(module) ?? []) {
        if (!inGroup.has(next) || previous.has(next)) continue;
        previous.set(next, module);
        queue.push(next);
      }
    }
    const path = [start];
    for (let at = previous.get(start)!; at !== start; at = previous.get(at)!) {
      path.unshift(at);
    }
    return [start, ...path].join(" -> ");
  });
}

Deno.test("findCycles() names a cycle through each group of modules", () => {
  const graph: Graph = new Map([
    ["a.ts", new Set(["b.ts"])],
    ["b.ts", new Set(["c.ts"])],
    ["c.ts", new Set(["a.ts", "d.ts"])],
    ["d.ts", new Set()],
    ["e.ts", new Set(["f.ts"])],
    ["f.ts", new Set(["e.ts"])],
  ]);
  deepEqual(findCycles(graph).sort(), [
    "a.ts -> b.ts -> c.ts -> a.ts",
    "e.ts -> f.ts -> e.ts",
  ]);
  graph.get("c.ts")!.delete("a.ts");
  graph.get("f.ts")!.delete("e.ts");
  deepEqual(findCycles(graph), []);
});

Deno.test("no module imports itself through others", async () => {
  const graph = await projectGraph();
  // Pins the walk: the Workers and the modules they load are in it.
  for (
    const module of [
      "server.ts",
      "kernel/_echo_worker.ts",
      "kernel/_policy_hook.ts",
      "kernel/_probe_worker.ts",
      "server/_stamp_hook.ts",
    ]
  ) ok(graph.has(module), `${module} is not in the graph`);
  deepEqual(findCycles(graph), []);
});
