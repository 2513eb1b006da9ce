/**
 * `deno publish --dry-run` against the package as it stands: no error (a
 * module the exports reach but `publish.include` leaves out, a slow type),
 * and no warning but the one computed import the kernel engine's Workers
 * keep on purpose (see `kernel/_module.ts`).
 */

import { deepEqual, equal } from "node:assert/strict";

const ROOT = new URL("./", import.meta.url);

/** The warnings `deno publish` may give, as `code at path`. */
const EXPECTED_WARNINGS = [
  "unanalyzable-dynamic-import at kernel/_module.ts",
];

Deno.test("deno publish --dry-run succeeds with no error and no warning but the kernel's computed import", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout) +
    new TextDecoder().decode(stderr);
  const lines = text.split("\n");
  const diagnostics = lines.flatMap((line, i) => {
    const found = /^(error|warning)\[([\w-]+)\]/.exec(line);
    if (found === null) return [];
    const where = /--> (\S+?)(?::\d+:\d+)?$/.exec(lines[i + 1] ?? "")?.[1];
    const path = where?.startsWith(ROOT.pathname)
      ? where.slice(ROOT.pathname.length)
      : where;
    return [{ kind: found[1]!, text: `${found[2]} at ${path}` }];
  });
  deepEqual(
    diagnostics.filter((d) => d.kind === "error").map((d) => d.text),
    [],
    text,
  );
  deepEqual(
    diagnostics.filter((d) => d.kind === "warning").map((d) => d.text),
    EXPECTED_WARNINGS,
    text,
  );
  equal(code, 0, text);
});
