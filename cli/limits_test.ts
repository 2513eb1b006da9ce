import { equal, throws } from "node:assert/strict";
import { checkFileLimit, MIN_FILE_LIMIT, readFileLimit } from "./limits.ts";

Deno.test("checkFileLimit() refuses a known limit under the minimum, in one line naming the fix", () => {
  checkFileLimit(undefined, "it");
  checkFileLimit(MIN_FILE_LIMIT, "it");
  checkFileLimit(Infinity, "it");
  throws(
    () => checkFileLimit(MIN_FILE_LIMIT - 1, "the server"),
    (error: Error) => {
      equal(
        error.message,
        `Cannot start: the file descriptor limit is ${
          MIN_FILE_LIMIT - 1
        }, under the ${MIN_FILE_LIMIT} the server needs; raise it (ulimit -n ${MIN_FILE_LIMIT}, or LimitNOFILE= in a systemd unit)`,
      );
      return true;
    },
  );
});

Deno.test("readFileLimit() reads the limit `ulimit -n` shows", () => {
  if (Deno.build.os !== "linux") {
    console.log("skipping: getrlimit is read on Linux only");
    return;
  }
  const shown = new TextDecoder().decode(
    new Deno.Command("sh", { args: ["-c", "ulimit -n"], stdout: "piped" })
      .outputSync().stdout,
  ).trim();
  equal(readFileLimit(), shown === "unlimited" ? Infinity : Number(shown));
});
