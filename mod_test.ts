import { deepEqual, ok } from "node:assert/strict";
import { ROOT } from "./testing/cli.ts";

/**
 * The most distinct names the package may export: a user can hold the API
 * in mind, and internals stay free to change.
 */
const MAX_PUBLIC_SYMBOLS = 50;

interface DocParam {
  kind: string;
  name?: string;
  left?: DocParam;
  arg?: DocParam;
}

interface DocFunction {
  params: DocParam[];
  returnType?: { repr: string };
}

interface DocTag {
  kind: string;
  name?: string;
}

interface DocJs {
  tags?: DocTag[];
}

interface DocDeclaration {
  kind: string;
  location: { filename: string };
  jsDoc?: DocJs;
  def?: {
    target?: { filename: string };
    tsType?: { kind: string };
    params?: DocParam[];
    returnType?: { repr: string };
    constructors?: (DocFunction & { accessibility?: string; jsDoc?: DocJs })[];
    methods?: {
      name: string;
      kind: string;
      accessibility?: string;
      jsDoc?: DocJs;
      functionDef: DocFunction;
    }[];
  };
}

interface DocSymbol {
  name: string;
  declarations: DocDeclaration[];
}

/** `deno doc --json` over the files of deno.json's `exports`. */
async function publicSymbols(): Promise<Map<string, DocSymbol[]>> {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("deno.json", ROOT)),
  ) as { exports: Record<string, string> };
  const { stdout, stderr, success } = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", ...Object.values(config.exports)],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  ok(success, new TextDecoder().decode(stderr));
  const doc = JSON.parse(new TextDecoder().decode(stdout)) as {
    nodes: Record<string, { symbols: DocSymbol[] }>;
  };
  const byName = new Map<string, DocSymbol[]>();
  for (const { symbols } of Object.values(doc.nodes)) {
    for (const symbol of symbols) {
      byName.set(symbol.name, [...byName.get(symbol.name) ?? [], symbol]);
    }
  }
  return byName;
}

/** The file a declaration is written in, following a re-export to its source. */
function definedIn(declaration: DocDeclaration): string {
  const url = declaration.kind === "reference"
    ? declaration.def!.target!.filename
    : declaration.location.filename;
  return url.slice(ROOT.href.length);
}

function paramName(param: DocParam): string | undefined {
  if (param.kind === "identifier") return param.name;
  if (param.kind === "assign") return paramName(param.left!);
  if (param.kind === "rest") return paramName(param.arg!);
  return undefined;
}

/** What the JSDoc of a function or method lacks: `@param` per parameter, `@returns`. */
function missingTags(
  what: string,
  fn: DocFunction,
  jsDoc: DocJs | undefined,
): string[] {
  const tags = jsDoc?.tags ?? [];
  const missing: string[] = [];
  for (const param of fn.params) {
    const name = paramName(param);
    if (
      name !== undefined &&
      !tags.some((tag) => tag.kind === "param" && tag.name === name)
    ) {
      missing.push(`${what}: @param ${name}`);
    }
  }
  const returns = fn.returnType?.repr;
  if (
    returns !== undefined && returns !== "void" &&
    !tags.some((tag) => tag.kind === "return")
  ) {
    missing.push(`${what}: @returns`);
  }
  return missing;
}

Deno.test(`the public API has at most ${MAX_PUBLIC_SYMBOLS} symbols across deno.json's exports`, async () => {
  const names = [...(await publicSymbols()).keys()].sort();
  ok(
    names.length <= MAX_PUBLIC_SYMBOLS,
    `${names.length} public symbols: ${names.join(", ")}`,
  );
});

Deno.test("the public API bundles nothing: no namespaces, no object constants", async () => {
  const bundles: string[] = [];
  for (const [name, symbols] of await publicSymbols()) {
    for (const { declarations } of symbols) {
      for (const declaration of declarations) {
        if (declaration.kind === "namespace") bundles.push(name);
        const type = declaration.def?.tsType?.kind;
        if (
          declaration.kind === "variable" && type !== "literal" &&
          type !== "keyword"
        ) {
          bundles.push(`${name} (${type})`);
        }
      }
    }
  }
  deepEqual(bundles, []);
});

Deno.test("the public API is defined in public files, none starting with _", async () => {
  const hidden: string[] = [];
  for (const [name, symbols] of await publicSymbols()) {
    for (const { declarations } of symbols) {
      for (const declaration of declarations) {
        const path = definedIn(declaration);
        if (/(^|\/)_[^/]*$/.test(path)) hidden.push(`${name}: ${path}`);
      }
    }
  }
  deepEqual(hidden, []);
});

Deno.test("each public function and class documents its parameters, its result and an example", async () => {
  const missing: string[] = [];
  for (const [name, symbols] of await publicSymbols()) {
    for (const { declarations } of symbols) {
      for (const declaration of declarations) {
        if (declaration.kind !== "function" && declaration.kind !== "class") {
          continue;
        }
        const tags = declaration.jsDoc?.tags ?? [];
        if (!tags.some((tag) => tag.kind === "example")) {
          missing.push(`${name}: @example`);
        }
        if (declaration.kind === "function") {
          missing.push(
            ...missingTags(
              name,
              declaration.def as DocFunction,
              declaration.jsDoc,
            ),
          );
          continue;
        }
        for (const constructor of declaration.def?.constructors ?? []) {
          if (constructor.accessibility === "private") continue;
          missing.push(
            ...missingTags(`new ${name}()`, constructor, constructor.jsDoc),
          );
        }
        for (const method of declaration.def?.methods ?? []) {
          if (method.kind !== "method" || method.accessibility === "private") {
            continue;
          }
          missing.push(
            ...missingTags(
              `${name}.${method.name}()`,
              method.functionDef,
              method.jsDoc,
            ),
          );
        }
      }
    }
  }
  deepEqual(missing, []);
});
