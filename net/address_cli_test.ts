/**
 * Address forms as a user types them, through every mode of client.ts and
 * through server.ts: one canonical comparison decides which datagram is a
 * reply, and a name binds every address it stands for.
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
import { serveEcho } from "../server.ts";
import { ROOT, runScript } from "../testing/cli.ts";

const DENO = Deno.execPath();

/** Runs `test` against an in-process echo server on `hostname`, a free port. */
async function withServer(
  hostname: string,
  test: (port: number) => Promise<void>,
): Promise<void> {
  const controller = new AbortController();
  const server = serveEcho({ hostname, port: 0, signal: controller.signal });
  try {
    await test(server.addr.port);
  } finally {
    controller.abort();
    await server.finished;
  }
}

/** The `--json` summary of a measurement run. */
async function measure(args: string[]) {
  const { code, stdout, stderr } = await runScript("client.ts", [
    ...args,
    "--json",
  ]);
  equal(stderr, "", args.join(" "));
  return { code, summary: JSON.parse(stdout) };
}

Deno.test("client.ts gets replies from ::1 written in any IPv6 form, in every mode", async () => {
  await withServer("::1", async (port) => {
    const p = String(port);
    for (const host of ["0:0:0:0:0:0:0:1", "0000::0001", "[0000::0001]"]) {
      const ping = await measure(["-H", host, "-p", p, "-c", "3", "-i", "20"]);
      equal(ping.summary.received, 3, `ping ${host}`);
      equal(ping.summary.ignored, 0, `ping ${host}`);
      // 1 only for a schedule that a stall left short (see successStatus).
      equal(ping.code, ping.summary.rate_shortfall ? 1 : 0);
      const load = await measure(["-H", host, "-p", p, "-w", "2", "-c", "10"]);
      equal(load.summary.received, 10, `load ${host}`);
      equal(load.code, 0);
    }
    const sweep = await measure(["-H", "0:0:0:0:0:0:0:1", "-p", p, "--sweep"]);
    equal(sweep.summary.max_payload, 65_527);
    equal(sweep.code, 0);
    const plain = await runScript("client.ts", [
      "-H",
      "0:0:0:0:0:0:0:1",
      "-p",
      p,
      "-q",
      "hello",
    ]);
    deepEqual(plain, { code: 0, stdout: "hello\n", stderr: "" });
    const lines = await runScript(
      "client.ts",
      ["-H", "0000::0001", "-p", p, "-q", "-"],
      { stdin: "one\ntwo\n" },
    );
    deepEqual(lines, { code: 0, stdout: "one\ntwo\n", stderr: "" });
  });
});

Deno.test("client.ts treats ::ffff:127.0.0.1 as the IPv4 endpoint it names", async () => {
  await withServer("127.0.0.1", async (port) => {
    const p = String(port);
    const ping = await measure(["-H", "::FFFF:127.0.0.1", "-p", p, "-c", "3"]);
    equal(ping.summary.received, 3);
    equal(ping.code, 0);
    const plain = await runScript("client.ts", [
      "-H",
      "::ffff:127.0.0.1",
      "-p",
      p,
      "-q",
      "hi",
    ]);
    deepEqual(plain, { code: 0, stdout: "hi\n", stderr: "" });
    // An IPv4 endpoint for -4, -6 and --bind as well.
    const v4 = await measure([
      "-4",
      "-H",
      "::ffff:127.0.0.1",
      "-p",
      p,
      "-c",
      "1",
    ]);
    equal(v4.summary.received, 1);
    const bound = await measure(
      ["--bind", "127.0.0.1", "-H", "::ffff:127.0.0.1", "-p", p, "-c", "1"],
    );
    equal(bound.summary.received, 1);
    const v6 = await runScript("client.ts", [
      "-6",
      "-H",
      "::ffff:127.0.0.1",
      "-p",
      p,
      "hi",
    ]);
    deepEqual(v6, {
      code: 2,
      stdout: "",
      stderr:
        "error: cannot use ::ffff:127.0.0.1: it is an IPv4 address, not IPv6 (--host and -6)\n",
    });
    // The IPv4 payload limit applies, refused before anything is sent.
    const big = await runScript("client.ts", [
      "-H",
      "::ffff:127.0.0.1",
      "-p",
      p,
      "-s",
      "65520",
      "-c",
      "1",
    ]);
    equal(big.code, 2);
    equal(big.stdout, "");
    match(big.stderr, /^error: .*65507.*\n$/);
  });
});

/** Whether this process may make private namespaces (root); says why not. */
async function canUnshare(flag: "-n" | "-m"): Promise<boolean> {
  const probe = await new Deno.Command("unshare", {
    args: [flag, "true"],
    stderr: "null",
  }).output().catch(() => undefined);
  if (probe?.success) return true;
  console.log(`skipped: unshare ${flag} (a private namespace) needs root`);
  return false;
}

/** Runs a shell script in a private network namespace; returns its stdout. */
async function inNetworkNamespace(script: string): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command("unshare", {
    args: ["-n", "sh", "-euc", script],
    cwd: ROOT,
    env: { NO_COLOR: "1", DENO: DENO },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  equal(code, 0, decoder.decode(stderr));
  return decoder.decode(stdout);
}

Deno.test("client.ts reaches a link-local server by zone name, bracketed or by index", async () => {
  if (!await canUnshare("-n")) return;
  // Two ends of a veth pair with fixed link-local addresses (no DAD wait).
  const out = await inNetworkNamespace(`
    ip link set lo up
    ip link add v0 type veth peer name v1
    ip link set v0 up; ip link set v1 up
    ip -6 addr add fe80::1/64 dev v0 nodad
    ip -6 addr add fe80::2/64 dev v1 nodad
    log=$(mktemp)
    "$DENO" run --unstable-net --allow-net server.ts -H 'fe80::1%v0' -p 0 -q > "$log" &
    server=$!
    trap 'kill $server 2>/dev/null; rm -f "$log"' EXIT
    until grep -q port "$log" 2>/dev/null; do sleep 0.05; done
    port=$(head -n 1 "$log" | grep -o '[0-9]*$')
    index=$(ip -o link show v0 | cut -d: -f1)
    for host in 'fe80::1%v0' '[fe80::1%v0]' "fe80::1%$index"; do
      "$DENO" run --unstable-net --allow-net client.ts -H "$host" -p "$port" -c 2 -i 10 --json |
        tr -d '\\n ' | grep -o '"received":[0-9]*' | head -n 1
    done
    "$DENO" run --unstable-net --allow-net client.ts -H 'fe80::1%v0' -p "$port" -q zoned
  `);
  equal(
    out,
    '"received":2\n"received":2\n"received":2\nzoned\n',
  );
});

Deno.test("server.ts binds every address a name stands for, and says which", async () => {
  if (!await canUnshare("-m")) return;
  // Debian's layout, localhost standing for 127.0.0.1 and ::1, in a hosts
  // file only this mount namespace sees (the mount keeps it once removed).
  const child = new Deno.Command("unshare", {
    args: [
      "-m",
      "sh",
      "-euc",
      `hosts=$(mktemp)
      printf '127.0.0.1 localhost\n::1 localhost\n' > "$hosts"
      mount --bind "$hosts" /etc/hosts
      rm "$hosts"
      exec "$0" run --unstable-net --allow-net server.ts -p 0 -q`,
      DENO,
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    while (text.split("\n").length < 3) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const lines = text.split("\n").slice(0, 2).sort();
    const port = Number(/port (\d+)$/.exec(lines[0]!)?.[1]);
    deepEqual(lines, [
      `starting up on localhost (127.0.0.1) port ${port}`,
      `starting up on localhost (::1) port ${port}`,
    ]);
    for (const hostname of ["127.0.0.1", "::1"]) {
      const conn = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
      try {
        await conn.send(new TextEncoder().encode(hostname), {
          transport: "udp",
          hostname,
          port,
        });
        const [reply] = await conn.receive();
        equal(new TextDecoder().decode(reply), hostname);
      } finally {
        conn.close();
      }
    }
  } finally {
    child.kill("SIGINT");
    await reader.cancel();
    const status = await child.status;
    await child.stderr.cancel();
    ok(status.code === 0, `server exit ${status.code}`);
  }
});
