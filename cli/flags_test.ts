import { deepEqual, throws } from "node:assert/strict";
import { parseFlags } from "./flags.ts";

Deno.test("parseFlags() turns parseArgs errors into short TypeErrors", () => {
  const options = {
    port: { type: "string", short: "p" },
    quiet: { type: "boolean", short: "q" },
  } as const;
  deepEqual(parseFlags(["-p", "7", "word"], options), {
    values: { port: "7" },
    positionals: ["word"],
  });
  throws(() => parseFlags(["--nope"], options), {
    name: "TypeError",
    message: "Cannot parse flags: unknown flag --nope (see --help)",
  });
  throws(() => parseFlags(["--port"], options), {
    name: "TypeError",
    message: "Cannot parse flags: --port needs a value",
  });
  throws(() => parseFlags(["-p", "-1"], options), {
    name: "TypeError",
    message:
      'Cannot parse flags: --port needs a value (write --port=VALUE for one that starts with "-")',
  });
  throws(() => parseFlags(["--quiet=yes"], options), {
    name: "TypeError",
    message: "Cannot parse flags: --quiet takes no value",
  });
});
