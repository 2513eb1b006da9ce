import { deepEqual, equal, ok, throws } from "node:assert/strict";
import {
  describeRange,
  parseBindFlag,
  parseChoice,
  parseFlags,
  parseHostFlag,
  parseNumber,
  refuseArguments,
  UsageError,
} from "./flags.ts";

const PORT = { min: 1, max: 65535 };
const SECONDS = { min: 0.01, max: 86400, fraction: true, unit: "seconds" };

/** Asserts that `text` is refused for `--port` with the one message form. */
function refusesPort(text: string): void {
  throws(() => parseNumber(text, "--port", PORT), {
    name: "UsageError",
    message:
      `Cannot use --port "${text}": expected a whole number from 1 to 65535`,
  });
}

Deno.test("parseNumber() reads decimal digits within the range", () => {
  equal(parseNumber("1", "--port", PORT), 1);
  equal(parseNumber("65535", "--port", PORT), 65535);
  equal(parseNumber("007", "--port", PORT), 7);
});

Deno.test("parseNumber() refuses hex", () => refusesPort("0x10"));

Deno.test("parseNumber() refuses an exponent", () => {
  refusesPort("1e3");
  refusesPort("1E3");
});

Deno.test("parseNumber() refuses a sign", () => {
  refusesPort("+5");
  refusesPort("-5");
});

Deno.test("parseNumber() refuses whitespace", () => {
  refusesPort(" 5");
  refusesPort("5 ");
  refusesPort("5\n");
});

Deno.test("parseNumber() refuses a fraction where the flag takes none", () => {
  refusesPort("5.0");
  refusesPort("5.5");
});

Deno.test("parseNumber() reads a fraction where the flag takes one", () => {
  equal(parseNumber("0.01", "--stats-interval", SECONDS), 0.01);
  equal(parseNumber("2.5", "--stats-interval", SECONDS), 2.5);
  equal(parseNumber("86400", "--stats-interval", SECONDS), 86400);
});

Deno.test("parseNumber() refuses a half-written fraction", () => {
  for (const text of [".5", "5.", "1.2.3", "Infinity", "NaN"]) {
    throws(() => parseNumber(text, "--stats-interval", SECONDS), {
      message:
        `Cannot use --stats-interval "${text}": expected a number of seconds from 0.01 to 86400`,
    });
  }
});

Deno.test("parseNumber() refuses below and above the range", () => {
  refusesPort("0");
  refusesPort("65536");
  throws(() => parseNumber("0.001", "--stats-interval", SECONDS), UsageError);
  throws(() => parseNumber("86400.5", "--stats-interval", SECONDS), UsageError);
});

Deno.test("parseNumber() refuses numbers beyond MAX_SAFE_INTEGER", () => {
  refusesPort("9007199254740993");
  refusesPort("9".repeat(400));
});

Deno.test("parseNumber() refuses an empty string", () => refusesPort(""));

Deno.test("describeRange() names the kind, unit and bounds", () => {
  equal(describeRange(PORT), "a whole number from 1 to 65535");
  equal(describeRange(SECONDS), "a number of seconds from 0.01 to 86400");
});

Deno.test("UsageError is an Error named UsageError", () => {
  const error = new UsageError("Cannot x: y");
  ok(error instanceof Error);
  equal(error.name, "UsageError");
  equal(error.message, "Cannot x: y");
});

Deno.test("parseChoice() accepts a choice and names the others", () => {
  equal(parseChoice("batch", "--io", ["socket", "batch"]), "batch");
  throws(() => parseChoice("fast", "--io", ["socket", "batch"]), {
    name: "UsageError",
    message: 'Cannot use --io "fast": expected socket or batch',
  });
});

Deno.test("parseHostFlag() names the long flag", () => {
  equal(parseHostFlag("[::1]", "--host"), "::1");
  throws(() => parseHostFlag("bad host", "--host"), {
    name: "UsageError",
    message:
      'Cannot use --host "bad host": expected a host name, an IPv4 or an IPv6 address',
  });
});

Deno.test("parseBindFlag() reads ADDR, ADDR:PORT and [V6ADDR]:PORT", () => {
  deepEqual(parseBindFlag("127.0.0.1", "--bind"), {
    hostname: "127.0.0.1",
    port: 0,
  });
  deepEqual(parseBindFlag("127.0.0.1:9", "--bind"), {
    hostname: "127.0.0.1",
    port: 9,
  });
  deepEqual(parseBindFlag("[::1]:9", "--bind"), { hostname: "::1", port: 9 });
  deepEqual(parseBindFlag("::1", "--bind"), { hostname: "::1", port: 0 });
  throws(() => parseBindFlag("[::1]:x", "--bind"), {
    name: "UsageError",
    message:
      'Cannot use --bind "[::1]:x": expected ADDR, ADDR:PORT, [V6ADDR] or [V6ADDR]:PORT',
  });
});

const OPTIONS = {
  port: { type: "string", short: "p" },
  count: { type: "string", short: "c" },
  quiet: { type: "boolean", short: "q" },
} as const;

Deno.test("parseFlags() returns values and arguments", () => {
  deepEqual(parseFlags(["-p", "7", "word"], OPTIONS), {
    values: { port: "7" },
    positionals: ["word"],
  });
});

Deno.test("parseFlags() reads a negative number as a value", () => {
  deepEqual(parseFlags(["-p", "-1"], OPTIONS).values, { port: "-1" });
  deepEqual(parseFlags(["--port", "-1.5"], OPTIONS).values, { port: "-1.5" });
  deepEqual(parseFlags(["-qc", "-3"], OPTIONS).values, {
    quiet: true,
    count: "-3",
  });
  // After "--" everything is an argument.
  deepEqual(parseFlags(["--", "-p", "-1"], OPTIONS).positionals, ["-p", "-1"]);
});

Deno.test("parseFlags() refuses an unknown flag with a UsageError", () => {
  throws(() => parseFlags(["--nope"], OPTIONS), {
    name: "UsageError",
    message: "Cannot use --nope: unknown flag (see --help)",
  });
  throws(() => parseFlags(["-x"], OPTIONS), {
    name: "UsageError",
    message: "Cannot use -x: unknown flag (see --help)",
  });
});

Deno.test("parseFlags() refuses a missing value", () => {
  throws(() => parseFlags(["--port"], OPTIONS), {
    name: "UsageError",
    message: "Cannot use --port: it needs a value",
  });
  throws(() => parseFlags(["-p", "-q"], OPTIONS), {
    name: "UsageError",
    message:
      'Cannot use --port: it needs a value (write --port=VALUE for one that starts with "-")',
  });
});

Deno.test("parseFlags() refuses a value for a flag that takes none", () => {
  throws(() => parseFlags(["--quiet=yes"], OPTIONS), {
    name: "UsageError",
    message: "Cannot use --quiet: it takes no value",
  });
});

Deno.test("refuseArguments() names the first argument", () => {
  refuseArguments([]);
  throws(() => refuseArguments(["extra", "more"]), {
    name: "UsageError",
    message: 'Cannot use "extra": unexpected argument (see --help)',
  });
});

Deno.test("parseFlags() keeps a flag of the script as a flag after one that takes a value", () => {
  const options = {
    host: { type: "string", short: "H" },
    ipv6: { type: "boolean", short: "6" },
  } as const;
  throws(() => parseFlags(["-H", "-6"], options), {
    name: "UsageError",
    message:
      'Cannot use --host: it needs a value (write --host=VALUE for one that starts with "-")',
  });
});

Deno.test("parseFlags() names a short flag given a value with =", () => {
  const options = { quiet: { type: "boolean", short: "q" } } as const;
  throws(() => parseFlags(["-q=1"], options), {
    name: "UsageError",
    message: "Cannot use -q: it takes no value",
  });
});

Deno.test("parseFlags() answers --help and --version past an unknown flag", () => {
  const options = {
    help: { type: "boolean", short: "h" },
    version: { type: "boolean", short: "V" },
  } as const;
  deepEqual(parseFlags(["--bogus", "--help"], options).values, { help: true });
  deepEqual(parseFlags(["-V", "--bogus"], options).values, { version: true });
  throws(() => parseFlags(["--bogus"], options), { name: "UsageError" });
});
