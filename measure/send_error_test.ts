/**
 * Sends that the OS refuses, on real sockets: an nftables rule in the output
 * path of a private network namespace makes `sendto` fail with EPERM, and
 * the client must count each failure and go on. Needs root, `unshare`, `ip`
 * and `nft` (Debian: `apt-get install nftables`); without them each test
 * says it was skipped and why.
 *
 * @module
 */

import { equal, match, ok } from "node:assert/strict";
import { type Output, ROOT } from "../testing/cli.ts";
import { hasProgram } from "../testing/metrics.ts";

/** The server's port inside the namespace, which has it all to itself. */
const PORT = 10000;

function skip(reason: string): void {
  console.log(`skipped: ${reason}`);
}

/** Why these tests cannot run here, or undefined when they can. */
async function cannotRun(): Promise<string | undefined> {
  for (const tool of ["unshare", "ip", "nft"]) {
    if (!hasProgram(tool)) {
      return `${tool} is not installed (Debian: apt-get install nftables iproute2 util-linux)`;
    }
  }
  const { success } = await new Deno.Command("unshare", {
    args: ["-n", "true"],
    stdout: "null",
    stderr: "null",
  }).output();
  return success
    ? undefined
    : "unshare -n (a private network namespace) needs root";
}

/** Asked once for the whole file: each answer costs a few subprocesses. */
const CANNOT_RUN = await cannotRun();

function deno(script: string, args: string[], flags: string[] = []): string {
  const quoted = [
    Deno.execPath(),
    "run",
    "--unstable-net",
    "--allow-net",
    ...flags,
    script,
    ...args,
  ].map((word) => `'${word.replaceAll("'", `'\\''`)}'`);
  return quoted.join(" ");
}

/**
 * Runs `client.ts args` in a fresh network namespace whose output chain
 * holds `rules` (for UDP to {@linkcode PORT}); with `server`, this project's
 * echo server listens on 127.0.0.1:PORT there first. With `clientFlags`
 * the client gets those Deno flags too, and with `listRules` the rules and
 * their counters follow its stderr.
 */
async function clientInNetns(
  rules: string | string[],
  args: string[],
  options: { server?: boolean; clientFlags?: string[]; listRules?: boolean } =
    {},
): Promise<Output> {
  const script = [
    "set -e",
    "ip link set lo up",
    "nft add table ip t",
    `nft add chain ip t out '{ type filter hook output priority 0; }'`,
    ...[rules].flat().map((rule) =>
      `nft add rule ip t out udp dport ${PORT} ${rule}`
    ),
    ...(options.server
      ? [
        "log=$(mktemp)",
        `${
          deno("server.ts", ["-H", "127.0.0.1", "-p", `${PORT}`, "-q"])
        } >"$log" 2>&1 & server=$!`,
        // Up to 20 s for a busy machine; a server that never says it
        // started fails the run with its output.
        `for i in $(seq 400); do grep -q starting "$log" && break; sleep 0.05; done`,
        `grep -q starting "$log" || { cat "$log" >&2; exit 97; }`,
      ]
      : []),
    `set +e; ${deno("client.ts", args, options.clientFlags)}; code=$?`,
    ...(options.listRules ? ["nft list table ip t >&2"] : []),
    ...(options.server
      ? ['kill -INT "$server"; wait "$server" 2>/dev/null; rm -f "$log"']
      : []),
    "exit $code",
  ].join("\n");
  const { code, stdout, stderr } = await new Deno.Command("unshare", {
    args: ["-n", "sh", "-c", script],
    cwd: ROOT,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
  };
}

const TARGET = ["-H", "127.0.0.1", "-p", `${PORT}`];
const REFUSED =
  `error: cannot send to 127.0.0.1:${PORT}: operation not permitted\n`;

Deno.test("a ping whose every send is refused counts each one and still prints its summary", async () => {
  if (CANNOT_RUN) return skip(CANNOT_RUN);
  const text = await clientInNetns("reject", [
    ...TARGET,
    "-c",
    "3",
    "-i",
    "10",
    "--wait",
    "100",
  ]);
  equal(text.stderr, REFUSED, "one line naming the OS error and the target");
  ok(
    text.stdout.includes(
      "0 sent, 0 received, 0 lost, 0 duplicates, 0 reordered, 0 corrupted, -% without intact reply\n3 send errors (operation not permitted)\n",
    ),
    text.stdout,
  );
  equal(text.code, 1, "nothing was sent");
  const json = await clientInNetns("drop", [
    ...TARGET,
    "-c",
    "3",
    "-i",
    "10",
    "--wait",
    "100",
    "--json",
  ]);
  equal(json.stderr, REFUSED);
  const document = JSON.parse(json.stdout);
  equal(document.schema, "udp-echo.measure/1.3");
  equal(document.sent, 0);
  equal(document.send_errors, 3);
  equal(document.send_error, "operation not permitted");
  equal(document.lost, 0);
  equal(document.flows[0].send_errors, 3);
  equal(json.code, 1);
});

Deno.test("a load and a sweep whose sends are refused go on and count them", async () => {
  if (CANNOT_RUN) return skip(CANNOT_RUN);
  const load = await clientInNetns("reject", [
    ...TARGET,
    "-w",
    "4",
    "-c",
    "20",
    "--wait",
    "100",
    "--ndjson",
  ]);
  equal(load.stderr, REFUSED);
  const events = load.stdout.trim().split("\n").map((line) => JSON.parse(line));
  equal(events.filter((event) => event.event === "send_error").length, 20);
  const summary = events.at(-1);
  equal(summary.event, "summary");
  equal(summary.send_errors, 20);
  equal(summary.sent, 0);
  const sweep = await clientInNetns("reject", [...TARGET, "--sweep", "-q"]);
  equal(sweep.stderr, REFUSED);
  match(sweep.stdout, /20 bytes could not be sent in any of its tries/);
  match(sweep.stdout, /\n3 send errors \(operation not permitted\)\n/);
  equal(sweep.code, 1);
});

Deno.test("a ping with 10% of its sends refused at random counts them as not sent, not lost", async () => {
  if (CANNOT_RUN) return skip(CANNOT_RUN);
  const { code, stdout, stderr } = await clientInNetns(
    "numgen random mod 10 0 reject",
    [...TARGET, "-c", "100", "-i", "2", "--wait", "500", "--json"],
    { server: true },
  );
  equal(stderr, REFUSED);
  const document = JSON.parse(stdout);
  // 0.9^100: the odds of no refusal at all are 3 in 100,000.
  ok(document.send_errors > 0, "some sends were refused");
  equal(document.sent + document.send_errors, 100);
  equal(document.received, document.sent);
  equal(document.lost, 0);
  equal(document.loss_percent, 0);
  equal(code, 0, "every probe that left came back");
});

Deno.test("a plain echo whose send is refused names the target and the OS error", async () => {
  if (CANNOT_RUN) return skip(CANNOT_RUN);
  const plain = await clientInNetns("reject", [...TARGET, "-q", "hi"]);
  equal(plain.stderr, REFUSED);
  equal(plain.stdout, "");
  equal(plain.code, 1);
  const json = await clientInNetns("reject", [...TARGET, "--json", "hi"]);
  equal(json.stderr, REFUSED);
  equal(
    JSON.parse(json.stdout).message,
    `cannot send to 127.0.0.1:${PORT}: operation not permitted`,
  );
  equal(json.code, 1);
});

Deno.test("a load on the batch engine tries each probe once when the firewall refuses some in the middle of a sendmmsg batch", async () => {
  if (CANNOT_RUN) return skip(CANNOT_RUN);
  const probes = 400;
  const { stdout, stderr } = await clientInNetns(
    ["counter", "numgen random mod 4 0 counter reject"],
    [...TARGET, "--io", "batch", "-w", "32", "-c", `${probes}`, "--json"],
    {
      server: true,
      clientFlags: ["--allow-ffi", `--allow-read=${ROOT.pathname}`],
      listRules: true,
    },
  );
  const document = JSON.parse(stdout);
  equal(document.io.backend, "batch", stderr);
  // The first rule counts every attempt; the second every refusal.
  const counters = [...stderr.matchAll(/counter packets (\d+)/g)]
    .map((found) => Number(found[1]));
  equal(counters.length, 2, stderr);
  ok(document.send_errors > 0, "some sends were refused");
  equal(document.sent + document.send_errors, probes);
  equal(counters[0], probes, "each probe was tried once");
  equal(counters[1], document.send_errors, "each refusal counted once");
});
