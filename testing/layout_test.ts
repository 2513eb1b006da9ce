import { deepEqual, ok } from "node:assert/strict";
import { ROOT } from "./cli.ts";

/**
 * Which folders each folder's modules may import (besides their own). The
 * entry scripts at the top may import anything; `bench/` and `testing/` are
 * not part of the library.
 */
const MAY_IMPORT: Record<string, readonly string[]> = {
  "net": [],
  "policy": ["net"],
  // The echo server's events and counters, its socket backend, the client.
  "echo": ["net", "policy"],
  "cli": ["net"],
  // STAMP (RFC 8762, RFC 8972): packets, TLVs and the Session-Reflector.
  "stamp": ["net"],
  // The kernel engine: recvmmsg/sendmmsg through FFI in Workers, for the
  // echo server and for the measuring sender (see KERNEL_MAY_RUN).
  "kernel": ["net", "policy", "echo"],
  "server": ["net", "policy", "echo", "kernel", "stamp"],
  "measure": ["net", "kernel", "cli", "stamp"],
  // The Prometheus exposition of the server and of the monitor.
  "metrics": ["net", "policy", "echo", "cli", "measure"],
  // `client.ts --diagnose`: path checks on the kernel's path socket.
  "diagnose": ["net", "kernel", "cli", "stamp", "measure"],
};

/**
 * The modules of `measure/` the kernel's probe loop runs in its Worker: the
 * probe and its book, which the socket path shares, so that a reply counts
 * the same on either. Nothing else of `measure/` (which itself calls the
 * kernel) may be imported from `kernel/`; `cycles_test.ts` checks that no
 * module imports itself through the other folder.
 */
const KERNEL_MAY_RUN: readonly string[] = [
  "measure/_book.ts",
  "measure/_common.ts",
  "measure/_summary.ts",
  "measure/_times.ts",
  "measure/probe.ts",
  "measure/types.ts",
];

/** Source modules may be this long; longer ones are split by concept. */
const MAX_MODULE_LINES = 500;

/**
 * A module may pass {@linkcode MAX_MODULE_LINES}, up to this, only when its
 * opening comment says why ("It is longer than 500 lines because …").
 */
const MAX_EXPLAINED_LINES = 600;

const IMPORT =
  /^\s*(?:import|export)\b[^"'`]*?from\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/gm;

async function* sourceFiles(dir: URL, prefix = ""): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${prefix}${entry.name}`;
    if (entry.isDirectory) {
      if (!entry.name.startsWith(".")) {
        yield* sourceFiles(new URL(`${entry.name}/`, dir), `${path}/`);
      }
    } else if (entry.name.endsWith(".ts")) {
      yield path;
    }
  }
}

/** The relative imports of a module, as paths from the root, doc examples left out. */
function importsOf(path: string, text: string): string[] {
  const code = text.split("\n").filter((line) => !/^\s*\*/.test(line))
    .join("\n");
  const found: string[] = [];
  for (const match of code.matchAll(IMPORT)) {
    const specifier = match[1] ?? match[2]!;
    if (!specifier.startsWith(".")) continue;
    const url = new URL(specifier, new URL(path, ROOT));
    found.push(url.pathname.slice(ROOT.pathname.length));
  }
  return found;
}

Deno.test("layout: library folders import only the folders below them", async () => {
  const wrong: string[] = [];
  for await (const path of sourceFiles(ROOT)) {
    const folder = path.includes("/") ? path.slice(0, path.indexOf("/")) : "";
    const allowed = MAY_IMPORT[folder];
    if (allowed === undefined || path.endsWith("_test.ts")) continue;
    const text = await Deno.readTextFile(new URL(path, ROOT));
    for (const target of importsOf(path, text)) {
      const into = target.includes("/")
        ? target.slice(0, target.indexOf("/"))
        : "";
      if (into === folder || target === "deno.json") continue;
      if (folder === "kernel" && KERNEL_MAY_RUN.includes(target)) continue;
      if (!allowed.includes(into)) wrong.push(`${path} imports ${target}`);
    }
  }
  deepEqual(wrong, []);
});

Deno.test(`layout: no library module is longer than ${MAX_MODULE_LINES} lines`, async () => {
  const long: string[] = [];
  for await (const path of sourceFiles(ROOT)) {
    if (path.endsWith("_test.ts") || /^(bench|testing|testdata)\//.test(path)) {
      continue;
    }
    const text = await Deno.readTextFile(new URL(path, ROOT));
    const lines = text.split("\n").length - 1;
    const opening = text.slice(0, text.indexOf("*/"));
    const explained = /It is longer than 500 lines because/.test(
      opening.replaceAll(/\n \* ?/g, " "),
    );
    const max = explained ? MAX_EXPLAINED_LINES : MAX_MODULE_LINES;
    if (lines > max) long.push(`${path}: ${lines} lines`);
  }
  deepEqual(long, []);
});

/**
 * What the plain echo must not load before a flag asks for it: the
 * measurement, its kernel engine, STAMP and the Prometheus side.
 */
const PLAIN_ECHO_NEVER_LOADS = /^(measure|metrics|stamp|kernel)\/|prom-client/;

Deno.test("layout: the plain client statically loads none of measure/, metrics/, stamp/, kernel/ or prom-client", async () => {
  const { stdout, success } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "client.ts"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "null",
  }).output();
  ok(success, "deno info failed");
  const graph = JSON.parse(new TextDecoder().decode(stdout)) as {
    roots: string[];
    modules: {
      specifier: string;
      dependencies?: {
        code?: { specifier: string };
        type?: { specifier: string };
        isDynamic?: boolean;
      }[];
    }[];
  };
  const bySpecifier = new Map(
    graph.modules.map((module) => [module.specifier, module]),
  );
  const seen = new Set<string>();
  const visit = (specifier: string) => {
    if (seen.has(specifier)) return;
    seen.add(specifier);
    if (!specifier.startsWith("file:")) return;
    for (const dependency of bySpecifier.get(specifier)?.dependencies ?? []) {
      if (dependency.isDynamic) continue;
      // Type-only imports are erased: only code is loaded.
      if (dependency.code !== undefined) visit(dependency.code.specifier);
    }
  };
  visit(graph.roots[0]!);
  const loaded = [...seen].map((url) =>
    url.startsWith(ROOT.href) ? url.slice(ROOT.href.length) : url
  );
  ok(loaded.length > 3, `deno info saw only ${loaded.join(", ")}`);
  deepEqual(loaded.filter((path) => PLAIN_ECHO_NEVER_LOADS.test(path)), []);
});
