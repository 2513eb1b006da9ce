// The nat check through a router namespace: client, router and server
// namespaces joined by two veth pairs, the router masquerading (or not) with
// its conntrack UDP timeouts set to a few seconds, `server.ts --stamp` in
// the server namespace, and checkNat run in the client namespace.
import { deepEqual, equal, ok } from "node:assert/strict";
import { compareSource } from "./nat.ts";
import { NETNS_SKIP, NetnsServer, reportSkip, SYS } from "../testing/netns.ts";
import { run } from "../testing/command.ts";
import { ROOT } from "../testing/cli.ts";

/** `--nat-max` in these tests, seconds. */
const NAT_MAX_S = 12;

reportSkip("the nat check through a router namespace");

let made = 0;

/** Three namespaces: client 10.2.0.2 / fd00:2::2, router, server 10.3.0.2 / fd00:3::2. */
class Path {
  readonly client: string;
  readonly router: string;
  readonly server: string;

  private constructor(id: string) {
    this.client = `unc${id}`;
    this.router = `unr${id}`;
    this.server = `uns${id}`;
  }

  /** Makes the path; `nat` sets the router's masquerade rule. */
  static async open(
    nat: "" | "masquerade" | "masquerade random",
    timeoutS: number,
  ) {
    const path = new Path(`${Deno.pid % 100_000}x${made++}`);
    const { client: c, router: r, server: s } = path;
    try {
      await path.sh([
        `ip netns add ${c}`,
        `ip netns add ${r}`,
        `ip netns add ${s}`,
        `ip link add c0 netns ${c} type veth peer name rc netns ${r}`,
        `ip link add rs netns ${r} type veth peer name s0 netns ${s}`,
        ...[[c, "c0"], [r, "rc"], [r, "rs"], [s, "s0"]].flatMap((
          [ns, link],
        ) => [
          `ip -n ${ns} link set ${link} addrgenmode none`,
          `ip -n ${ns} link set ${link} up`,
        ]),
        ...[c, r, s].map((ns) => `ip -n ${ns} link set lo up`),
        // Neighbour discovery needs a link-local address, without waiting.
        `ip -n ${c} addr add fe80::2/64 dev c0 nodad`,
        `ip -n ${r} addr add fe80::1/64 dev rc nodad`,
        `ip -n ${r} addr add fe80::1/64 dev rs nodad`,
        `ip -n ${s} addr add fe80::2/64 dev s0 nodad`,
        `ip -n ${c} addr add 10.2.0.2/24 dev c0`,
        `ip -n ${c} addr add fd00:2::2/64 dev c0 nodad`,
        `ip -n ${r} addr add 10.2.0.1/24 dev rc`,
        `ip -n ${r} addr add fd00:2::1/64 dev rc nodad`,
        `ip -n ${r} addr add 10.3.0.1/24 dev rs`,
        `ip -n ${r} addr add fd00:3::1/64 dev rs nodad`,
        `ip -n ${s} addr add 10.3.0.2/24 dev s0`,
        `ip -n ${s} addr add fd00:3::2/64 dev s0 nodad`,
        `ip -n ${c} route add default via 10.2.0.1`,
        `ip -n ${c} -6 route add default via fd00:2::1`,
        `ip -n ${s} route add default via 10.3.0.1`,
        `ip -n ${s} -6 route add default via fd00:3::1`,
        `ip netns exec ${r} sysctl -qw net.ipv4.ip_forward=1`,
        `ip netns exec ${r} sysctl -qw net.ipv6.conf.all.forwarding=1`,
      ]);
      if (nat !== "") {
        await path.sh([
          `ip netns exec ${r} nft add table inet nat`,
          `ip netns exec ${r} nft add chain inet nat post '{ type nat hook postrouting priority 100; }'`,
          `ip netns exec ${r} nft add rule inet nat post oifname rs ${nat}`,
          // The conntrack sysctls exist once the rule loaded conntrack.
          `ip netns exec ${r} sysctl -qw net.netfilter.nf_conntrack_udp_timeout=${timeoutS}`,
          `ip netns exec ${r} sysctl -qw net.netfilter.nf_conntrack_udp_timeout_stream=${timeoutS}`,
        ]);
      }
    } catch (error) {
      await path.close();
      throw error;
    }
    return path;
  }

  async sh(lines: string[]): Promise<string> {
    const { success, stdout, stderr } = await run("sh", [
      "-ec",
      lines.join("\n"),
    ]);
    if (!success) throw new Error(`Cannot set up the namespaces: ${stderr}`);
    return stdout;
  }

  /** Runs checkNat in the client namespace against `host`:`port`. */
  async checkNat(
    host: string,
    port: number,
  ): Promise<{ result: Record<string, unknown>; progress: string }> {
    const script = `
      import { checkNat } from ${
      JSON.stringify(new URL("diagnose/nat.ts", ROOT).href)
    };
      const [host, port, natMax] = Deno.args;
      const result = await checkNat({
        hostname: host, port: Number(port), family: host.includes(":") ? 6 : 4,
        engine: false, stamp: true, signal: new AbortController().signal,
        progress: (text) => console.error(text), replyTimeoutMs: 1000,
        natMaxSeconds: Number(natMax),
      });
      console.log(JSON.stringify(result));
    `;
    const { stdout, stderr } = await run("ip", [
      "netns",
      "exec",
      this.client,
      Deno.execPath(),
      "run",
      "--unstable-net",
      "--allow-net",
      SYS,
      `--allow-read=${ROOT.pathname}`,
      "-",
      host,
      String(port),
      String(NAT_MAX_S),
    ], script);
    ok(stdout.startsWith("{"), stderr);
    return { result: JSON.parse(stdout), progress: stderr };
  }

  async close(): Promise<void> {
    for (const ns of [this.client, this.router, this.server]) {
      await run("ip", ["netns", "del", ns]);
    }
  }
}

/** Runs checkNat over a fresh path with `server.ts --stamp` on `io`. */
async function measure(
  nat: "" | "masquerade" | "masquerade random",
  options: { io: "socket" | "batch"; family: 4 | 6; timeoutS?: number },
): Promise<{ result: Record<string, unknown>; progress: string }> {
  const path = await Path.open(nat, options.timeoutS ?? 0);
  const host = options.family === 6 ? "fd00:3::2" : "10.3.0.2";
  const server = new NetnsServer(path.server, [
    "--stamp",
    "--io",
    options.io,
    "-H",
    host,
  ], []);
  try {
    const port = await server.port();
    return await path.checkNat(host, port);
  } finally {
    await server.stop();
    await path.close();
  }
}

/** Checks a bracket against the router's timeout, `timeoutS`. */
function checkBracket(
  found: { result: Record<string, unknown>; progress: string },
  label: string,
  timeoutS: number,
): void {
  const { result } = found;
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

Deno.test("compareSource: the address, the port, or neither", () => {
  const local = { addresses: ["127.0.0.1", "10.2.0.2", "fd00:2::2"], port: 9 };
  deepEqual(compareSource({ hostname: "10.2.0.2", port: 9 }, local), {
    address: false,
    port: false,
  });
  deepEqual(compareSource({ hostname: "::ffff:10.2.0.2", port: 9 }, local), {
    address: false,
    port: false,
  });
  deepEqual(compareSource({ hostname: "10.3.0.1", port: 10 }, local), {
    address: true,
    port: true,
  });
  deepEqual(
    compareSource({ hostname: "10.3.0.1", port: 9 }, {
      addresses: undefined,
      port: 9,
    }),
    { address: undefined, port: false },
  );
});

Deno.test({
  name: "nat: no masquerade is no NAT, on IPv4 and IPv6",
  ignore: NETNS_SKIP !== undefined,
  fn: async () => {
    for (const family of [4, 6] as const) {
      const { result } = await measure("", { io: "socket", family });
      equal(result.status, "ran", JSON.stringify(result));
      equal((result.data as { nat: boolean }).nat, false);
      ok((result.findings as string[])[0]!.startsWith("no NAT"));
    }
  },
});

Deno.test({
  name:
    "nat: masquerade (port kept) and masquerade random, IPv4 and IPv6, bracket the router's timeout",
  ignore: NETNS_SKIP !== undefined,
  fn: async () => {
    // Side by side: each search waits out idle delays, not the CPU.
    // The router's conntrack UDP timeouts, in seconds, are the truth.
    const runs = [
      ["masquerade", 4, "socket", 5],
      ["masquerade random", 4, "socket", 3],
      ["masquerade", 6, "socket", 8],
      ["masquerade", 4, "batch", 8],
      ["masquerade random", 6, "batch", 5],
    ] as const;
    const found = await Promise.all(
      runs.map(([nat, family, io, timeoutS]) =>
        measure(nat, { io, family, timeoutS })
      ),
    );
    found.forEach((one, k) => {
      const [nat, family, io, timeoutS] = runs[k]!;
      checkBracket(one, `${nat}, IPv${family}, ${io}, ${timeoutS} s`, timeoutS);
    });
    // Plain masquerade kept the port: only the address gave the NAT away.
    equal(
      (found[0]!.result.data as { port_rewritten: boolean }).port_rewritten,
      false,
    );
  },
});
