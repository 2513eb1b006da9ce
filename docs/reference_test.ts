/**
 * Keeps the documentation true to the scripts: every flag `--help` lists has
 * a row in the reference's flag tables and every row is a flag `--help`
 * lists; the README stays short; every relative link of the README, the
 * reference and the benchmark log resolves, anchors included; and no page
 * names a tracker issue, which readers cannot see.
 *
 * @module
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import { ROOT, runScript } from "../testing/cli.ts";

/** The README's length limit: it stays task-first, the reference lives here. */
const README_MAX_LINES = 400;

/** Each script and the page whose flag tables document it. */
const REFERENCES = [
  { script: "server.ts", page: "docs/server.md" },
  { script: "client.ts", page: "docs/client.md" },
] as const;

/** A flag, with an optional metavariable (`ADDR`, `[:PORT]`), then a comma. */
const FLAG_TOKEN = /^(--?[A-Za-z0-9][\w-]*)(?: [A-Z][A-Z[\]:]*)?(?:, *)?/;

/**
 * The flags an option line of `--help` names. Option lines are indented by
 * at most 8 spaces and start with a dash; continuation lines are indented
 * further, so a flag named in a description (`--allow-ffi`) is not taken.
 */
function helpFlags(help: string): Set<string> {
  const flags = new Set<string>();
  for (const line of help.split("\n")) {
    const indent = line.length - line.trimStart().length;
    if (indent === 0 || indent > 8) continue;
    let rest = line.trimStart();
    for (
      let match = FLAG_TOKEN.exec(rest);
      match;
      match = FLAG_TOKEN.exec(rest)
    ) {
      flags.add(match[1]!);
      rest = rest.slice(match[0].length);
    }
  }
  return flags;
}

/** The cells of one Markdown table row, trimmed. */
function cells(row: string): string[] {
  return row.trim().replace(/^\||\|$/g, "").split(/(?<!\\)\|/).map((cell) =>
    cell.trim()
  );
}

/**
 * The flags in the first column of every table whose first header cell is
 * `flag`: `` `-H`, `--host ADDR` `` gives `-H` and `--host`.
 */
function tableFlags(markdown: string): Set<string> {
  const flags = new Set<string>();
  let inFlagTable = false;
  for (const line of markdown.split("\n")) {
    if (!line.trimStart().startsWith("|")) {
      inFlagTable = false;
      continue;
    }
    const first = cells(line)[0] ?? "";
    if (first === "flag") {
      inFlagTable = true;
      continue;
    }
    if (!inFlagTable || /^:?-+:?$/.test(first)) continue;
    for (const [, code] of first.matchAll(/`([^`]+)`/g)) {
      const flag = /^--?[A-Za-z0-9][\w-]*/.exec(code!);
      if (flag) flags.add(flag[0]);
    }
  }
  return flags;
}

/** GitHub's anchor for a heading: lower case, punctuation gone, spaces to `-`. */
function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/`/g, "")
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
    .replace(/ /g, "-");
}

/** The anchors of a Markdown page's headings, repeats numbered as GitHub does. */
function anchors(markdown: string): Set<string> {
  const found = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of withoutCode(markdown).split("\n")) {
    const heading = /^#{1,6} +(.*?) *#*$/.exec(line);
    if (!heading) continue;
    const base = slug(heading[1]!);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    found.add(count === 0 ? base : `${base}-${count}`);
  }
  return found;
}

/** The page without fenced code blocks (their lines are kept, empty). */
function withoutCode(markdown: string): string {
  let fenced = false;
  return markdown.split("\n").map((line) => {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      return "";
    }
    return fenced ? "" : line;
  }).join("\n");
}

/** The link targets of a page: inline links, images and reference definitions. */
function linkTargets(markdown: string): string[] {
  const text = withoutCode(markdown).replace(/`[^`\n]*`/g, "``");
  const targets: string[] = [];
  for (
    const match of text.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?[^)]*\)/g)
  ) {
    targets.push(match[1]!);
  }
  for (const match of text.matchAll(/^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)) {
    targets.push(match[1]!);
  }
  return targets;
}

/** The user-facing pages: the README, the reference and the benchmark log. */
async function pages(): Promise<string[]> {
  const found = ["README.md", "bench/RESULTS.md"];
  for await (const entry of Deno.readDir(new URL("docs/", ROOT))) {
    if (entry.isFile && entry.name.endsWith(".md")) {
      found.push(`docs/${entry.name}`);
    }
  }
  return found.sort();
}

async function exists(url: URL): Promise<boolean> {
  try {
    await Deno.stat(url);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** The broken relative links of one page, as `page: target (why)`. */
async function brokenLinks(page: string): Promise<string[]> {
  const pageUrl = new URL(page, ROOT);
  const text = await Deno.readTextFile(pageUrl);
  const broken: string[] = [];
  for (const target of linkTargets(text)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
    const hash = target.indexOf("#");
    const path = hash === -1 ? target : target.slice(0, hash);
    const anchor = hash === -1 ? undefined : target.slice(hash + 1);
    const url = path === "" ? pageUrl : new URL(path, pageUrl);
    if (!url.href.startsWith(ROOT.href)) {
      broken.push(`${page}: ${target} (outside the repository)`);
      continue;
    }
    if (!(await exists(url))) {
      broken.push(`${page}: ${target} (no such file)`);
      continue;
    }
    if (anchor !== undefined && url.pathname.endsWith(".md")) {
      const headings = anchors(await Deno.readTextFile(url));
      if (!headings.has(decodeURIComponent(anchor))) {
        broken.push(`${page}: ${target} (no such heading)`);
      }
    }
  }
  return broken;
}

Deno.test("helpFlags() takes each option line's flags, not the flags its description names", () => {
  const help = [
    "Usage: x.ts [options]",
    "  -H, --host ADDR      an address (default: localhost)",
    "      --bind ADDR[:PORT]  send from this local address",
    "      --stamp-tlv LIST with --stamp: location",
    "  -4, -6               use only IPv4 or only IPv6",
    "                       --allow-ffi --allow-read=.); auto picks batch",
    "  Load without -c or -d runs 10 s",
  ].join("\n");
  deepEqual(
    [...helpFlags(help)].sort(),
    ["--bind", "--host", "--stamp-tlv", "-4", "-6", "-H"],
  );
});

Deno.test("tableFlags() reads the first column of flag tables only", () => {
  const page = [
    "| flag                | meaning | default |",
    "| ------------------- | ------- | ------- |",
    "| `-H`, `--host ADDR` | address | `-`     |",
    "| `-4`, `-6`          | family  |         |",
    "",
    "| mode | started by |",
    "| ---- | ---------- |",
    "| ping | `-c`       |",
  ].join("\n");
  deepEqual([...tableFlags(page)].sort(), ["--host", "-4", "-6", "-H"]);
});

Deno.test("slug() and linkTargets() follow GitHub's anchors and Markdown's links", () => {
  equal(slug("I/O backends (`--io`)"), "io-backends---io");
  equal(
    slug("Wildcard binds (`0.0.0.0` and `::`)"),
    "wildcard-binds-0000-and-",
  );
  equal(
    slug("The kernel engine's permissions"),
    "the-kernel-engines-permissions",
  );
  deepEqual(
    linkTargets(
      "[a](b.md#c) ![i](x.svg) `[not](a link)`\n```\n[no](code.md)\n```\n[r]: https://x\n",
    ),
    ["b.md#c", "x.svg", "https://x"],
  );
});

for (const { script, page } of REFERENCES) {
  Deno.test(`${page} documents exactly the flags of ${script} --help`, async () => {
    const { code, stdout } = await runScript(script, ["--help"]);
    equal(code, 0);
    const fromHelp = helpFlags(stdout);
    ok(fromHelp.has("--help"), `no flags found in ${script} --help`);
    const documented = tableFlags(
      await Deno.readTextFile(new URL(page, ROOT)),
    );
    const missing = [...fromHelp].filter((flag) => !documented.has(flag));
    const unknown = [...documented].filter((flag) => !fromHelp.has(flag));
    deepEqual(
      { missing, unknown },
      { missing: [], unknown: [] },
      `${page} against ${script} --help: without a row in a flag table: ${
        missing.join(" ") || "none"
      }; rows --help does not list: ${unknown.join(" ") || "none"}`,
    );
  });
}

Deno.test(`README.md is at most ${README_MAX_LINES} lines`, async () => {
  const text = await Deno.readTextFile(new URL("README.md", ROOT));
  const lines = text.endsWith("\n")
    ? text.split("\n").length - 1
    : text.split("\n").length;
  ok(lines <= README_MAX_LINES, `README.md has ${lines} lines`);
});

Deno.test("every relative link of the README, docs/ and bench/RESULTS.md resolves", async () => {
  const broken: string[] = [];
  for (const page of await pages()) broken.push(...await brokenLinks(page));
  deepEqual(broken, []);
});

Deno.test("no user-facing page names a tracker issue", async () => {
  const found: string[] = [];
  for (const page of await pages()) {
    const text = await Deno.readTextFile(new URL(page, ROOT));
    for (const match of text.matchAll(/\b(?:issues?|PR) *#?\d+\b/gi)) {
      found.push(`${page}: ${match[0]}`);
    }
  }
  deepEqual(found, []);
});

Deno.test("the README sections that --help points to exist", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const headings = [...readme.matchAll(/^#{1,6} +(.*)$/gm)].map((m) => m[1]!);
  for (const { script } of REFERENCES) {
    const { stdout } = await runScript(script, ["--help"]);
    for (const [, section] of stdout.matchAll(/\bREADME, ([A-Z][\w ]*)/g)) {
      ok(
        headings.some((heading) => heading.startsWith(section!)),
        `${script} --help points to README section "${section}"`,
      );
    }
  }
});
