// The nat check across a router (testing/routed.ts): the router masquerades
// (or not) with its conntrack UDP timeouts set to a few seconds, the ground
// truth; `server.ts --stamp` runs in the server namespace, and checkNat (or
// `client.ts --diagnose nat`) in the client namespace.
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { describeBracket } from "./nat.ts";
import { NETNS_SKIP, NetnsServer, reportSkip, SYS } from "../testing/netns.ts";
import { RoutedLan } from "../testing/routed.ts";
import { run } from "../testing/command.ts";
import { ROOT, runScript } from "../testing/cli.ts";

/** `--nat-max` in these tests, seconds. */
const NAT_MAX_S = 12;

reportSkip("the nat check across a router namespace");

type Nat = "" | "masquerade" | "masquerade random";

/** Makes the router masquerade on its far link, its UDP bindings idle out after `timeoutS`. */
async function masquerade(
  lan: RoutedLan,
  nat: Nat,
  timeoutS: number,
): Promise<void> {
  if (nat === "") return;
  await lan.nft(
    lan.router,
    `table inet nat {
      chain post {
        type nat hook postrouting priority 100;
        oifname "${lan.routerFar}" ${nat}
      }
    }`,
  );
  // The conntrack sysctls exist once the rules loaded conntrack.
  await lan.sh([
    `ip netns exec ${lan.router} sysctl -qw net.netfilter.nf_conntrack_udp_timeout=${timeoutS}`,
    `ip netns exec ${lan.router} sysctl -qw net.netfilter.nf_conntrack_udp_timeout_stream=${timeoutS}`,
  ]);
}

/** Runs checkNat in the client namespace against `host`:`port`. */
async function checkNatIn(
  lan: RoutedLan,
  host: string,
  port: number,
): Promise<Record<string, unknown>> {
  const script = `
    import { checkNat } from ${
    JSON.stringify(new URL("diagnose/nat.ts", ROOT).href)
  };
    const [host, port, natMax] = Deno.args;
    const result = await checkNat({
      hostname: host, port: Number(port), family: host.includes(":") ? 6 : 4,
      engine: true, stamp: true, signal: new AbortController().signal,
      progress: (text) => console.error(text), replyTimeoutMs: 1000,
      natMaxSeconds: Number(natMax),
    });
    console.log(JSON.stringify(result));
  `;
  const { stdout, stderr } = await run("ip", [
    "netns",
    "exec",
    lan.client,
    Deno.execPath(),
    "run",
    "--unstable-net",
    "--allow-net",
    "--allow-ffi",
    SYS,
    `--allow-read=${ROOT.pathname}`,
    "-",
    host,
    String(port),
    String(NAT_MAX_S),
  ], script);
  ok(stdout.startsWith("{"), stderr);
  return JSON.parse(stdout);
}

/**
 * Over a fresh router: `server.ts --stamp` on `io`, then `measure` in the
 * client namespace.
 */
async function across<T>(
  nat: Nat,
  options: { io: "socket" | "batch"; family: 4 | 6; timeoutS?: number },
  measure: (lan: RoutedLan, host: string, port: number) => Promise<T>,
): Promise<T> {
  const lan = await RoutedLan.open();
  try {
    await masquerade(lan, nat, options.timeoutS ?? 0);
    const host = RoutedLan.ADDRESSES[options.family].server;
    const server = new NetnsServer(lan.server, [
      "--stamp",
      "--io",
      options.io,
      "-H",
      host,
    ], []);
    try {
      return await measure(lan, host, await server.port());
    } finally {
      await server.stop();
    }
  } finally {
    await lan.close();
  }
}

/** Checks a bracket against the router's timeout, `timeoutS`. */
function checkBracket(
  result: Record<string, unknown>,
  label: string,
  timeoutS: number,
): void {
  equal(result.status, "ran", JSON.stringify(result));
  const data = result.data as Record<string, unknown>;
  equal(data.nat, true, `${label}: ${JSON.stringify(result)}`);
  equal(data.address_rewritten, true);
  const binding = data.binding as Record<string, number | null>;
  const open = binding.binding_open_seconds!;
  const expired = binding.binding_expired_seconds;
  ok(expired !== null, `${label}: an expiry within ${NAT_MAX_S} s`);
  // The router's idle time is the delay plus the reflector's lateness, so
  // the binding is open at `open` and gone a little after `expired`.
  ok(
    open <= timeoutS && timeoutS <= expired! + 1,
    `${label}: ${open}–${expired} s should hold ${timeoutS} s`,
  );
  equal(binding.meets_rfc4787, false);
  const findings = result.findings as string[];
  ok(findings.some((line) => line.startsWith("binding expires after")));
  ok(findings.some((line) => line.includes("RFC 4787")));
  console.log(`${label}: ${findings.join("; ")}`);
}

Deno.test({
  name: "nat: a router that does not masquerade is no NAT, on IPv4 and IPv6",
  ignore: NETNS_SKIP !== undefined,
  fn: async () => {
    for (const family of [4, 6] as const) {
      const result = await across("", { io: "socket", family }, checkNatIn);
      equal(result.status, "ran", JSON.stringify(result));
      equal((result.data as { nat: boolean }).nat, false);
      const line = (result.findings as string[])[0]!;
      ok(line.startsWith("no NAT"), line);
      ok(line.includes(RoutedLan.ADDRESSES[family].client), line);
    }
  },
});

Deno.test({
  name:
    "nat: masquerade (port kept) and masquerade random, IPv4 and IPv6, both backends, bracket the router's timeout; client.ts --diagnose nat says so",
  ignore: NETNS_SKIP !== undefined,
  fn: async () => {
    // Side by side: each search waits out idle delays, not the CPU. The
    // router's conntrack UDP timeouts, in seconds, are the truth.
    const runs = [
      ["masquerade", 4, "socket", 5],
      ["masquerade random", 4, "socket", 3],
      ["masquerade", 6, "socket", 8],
      ["masquerade", 4, "batch", 8],
      ["masquerade random", 6, "batch", 5],
    ] as const;
    const cli = across(
      "masquerade",
      { io: "batch", family: 4, timeoutS: 5 },
      (lan, host, port) =>
        lan.runClient([
          "-H",
          host,
          "-p",
          String(port),
          "--diagnose",
          "nat",
          "--nat-max",
          String(NAT_MAX_S),
        ], [SYS]),
    );
    const found = await Promise.all(
      runs.map(([nat, family, io, timeoutS]) =>
        across(nat, { io, family, timeoutS }, checkNatIn)
      ),
    );
    found.forEach((result, k) => {
      const [nat, family, io, timeoutS] = runs[k]!;
      checkBracket(
        result,
        `${nat}, IPv${family}, ${io}, ${timeoutS} s`,
        timeoutS,
      );
    });
    // Plain masquerade kept the port: only the address gave the NAT away.
    equal(
      (found[0]!.data as { port_rewritten: boolean }).port_rewritten,
      false,
    );
    const { code, stdout, stderr } = await cli;
    equal(code, 0, stderr);
    console.log(stdout);
    match(
      stdout,
      /^nat: NAT: the reflector saw 10\.2\.2\.1 port \d+; address/m,
    );
    match(stdout, /^nat: binding expires after [\d.]+–[\d.]+ s idle$/m);
    match(stdout, /^nat: shorter than RFC 4787's 120 s minimum$/m);
  },
});

Deno.test("nat: a stopped search names the longest idle it tried, not the ceiling it never reached", () => {
  const { findings } = describeBracket(
    { openMs: 8000, expiredMs: undefined, stopped: true },
    300_000,
  );
  deepEqual(findings, [
    "binding still open after 8 s idle (the longest tried)",
    "not tried up to RFC 4787's 120 s minimum (longest idle tried 8 s)",
    "search stopped before it ended",
  ]);
});

Deno.test("nat: a bracket around RFC 4787's 2 minutes says it cannot tell, not that 2 minutes was not tried", () => {
  const { findings, data } = describeBracket(
    { openMs: 112_500, expiredMs: 125_000, stopped: false },
    300_000,
  );
  deepEqual(findings, [
    "binding expires after 113–125 s idle",
    "cannot tell against RFC 4787's 120 s minimum: the bracket contains it",
  ]);
  equal(data.meets_rfc4787, null);
});

Deno.test({
  name:
    "nat: without --allow-ffi, a rewritten port does not read as a kept address (masquerade random)",
  ignore: NETNS_SKIP !== undefined,
  async fn() {
    await across(
      "masquerade random",
      { io: "batch", family: 4, timeoutS: 30 },
      async (lan, host, port) => {
        const { stdout } = await runScript(
          "client.ts",
          [
            "-H",
            host,
            "-p",
            String(port),
            "--diagnose",
            "nat",
            "--nat-max",
            "1",
            "--json",
          ],
          { namespace: lan.client },
        );
        const document = JSON.parse(stdout);
        const check = document.checks[0];
        equal(check.details.port_rewritten, true);
        equal(check.details.address_rewritten, null);
        match(
          check.findings[0],
          /port \(was \d+\) rewritten; whether the address was too cannot be told/,
        );
      },
    );
  },
});

Deno.test("nat: a search refused before any delayed reply came back brackets nothing", () => {
  const { findings } = describeBracket(
    { openMs: 0, expiredMs: undefined, stopped: true, refused: true },
    300_000,
  );
  deepEqual(findings, [
    "binding timeout not measured: no delayed reply came back",
    "search stopped: the reflector would not hold a reply (too many held)",
  ]);
});
