import { deepEqual, equal, ok } from "node:assert/strict";
import { RoutedLan, routedTest } from "../testing/routed.ts";
import { NetnsServer, reportSkip, SYS } from "../testing/netns.ts";

reportSkip("the diagnose checks across a router");

/** The MTU of the router's link to the server (both ends): the path's limit. */
const FAR_MTU = 1400;

/** The check named `check` of a `--diagnose --json` document. */
function checkOf(
  stdout: string,
  check: string,
): { status: string; findings: string[]; details: Record<string, unknown> } {
  const document = JSON.parse(stdout);
  equal(document.schema, "udp-echo.diagnose/1");
  return document.checks.find((c: { check: string }) => c.check === check);
}

/**
 * Runs `fn` with the port of `server.ts --stamp` on the engine in the
 * server's namespace, both families; stops the server after it.
 */
async function withReflector(
  lan: RoutedLan,
  fn: (port: number) => Promise<void>,
): Promise<void> {
  const server = new NetnsServer(
    lan.server,
    ["-H", "::", "--stamp", "--io", "batch", "--rate", "0"],
    [SYS],
  );
  try {
    await fn(await server.port());
  } finally {
    await server.stop();
  }
}

/**
 * The `--diagnose CHECKS --json` document (as printed) of the client's
 * namespace against the reflector at `port` over IP `family`; fails, with
 * the client's stderr, unless the client exits 0.
 */
async function diagnose(
  lan: RoutedLan,
  family: 4 | 6,
  port: number,
  checks: string,
): Promise<string> {
  const { code, stdout, stderr } = await lan.runClient([
    "-H",
    RoutedLan.ADDRESSES[family].server,
    "-p",
    String(port),
    "-t",
    "800",
    "--diagnose",
    checks,
    "--json",
  ]);
  equal(code, 0, stderr);
  return stdout;
}

routedTest(
  "pmtu across a router: the MTU the path says, then the black hole where it drops ICMP, IPv4 and IPv6",
  async (lan) => {
    await lan.sh([
      `ip -n ${lan.router} link set ${lan.routerFar} mtu ${FAR_MTU}`,
      `ip -n ${lan.server} link set ${lan.serverLink} mtu ${FAR_MTU}`,
    ]);
    // Counted, not dropped: the router's "too big" messages, the truth of
    // "the path says so".
    await lan.nft(
      lan.router,
      `table inet t {
  chain sent {
    type filter hook output priority 0;
    icmp type destination-unreachable icmp code frag-needed counter
    icmpv6 type packet-too-big counter
  }
}`,
    );
    await withReflector(lan, async (port) => {
      for (const family of [4, 6] as const) {
        const stdout = await diagnose(lan, family, port, "pmtu");
        const pmtu = checkOf(stdout, "pmtu");
        equal(pmtu.status, "ran");
        equal(pmtu.details.path_mtu, FAR_MTU);
        deepEqual(pmtu.details.limit, {
          packet_bytes: FAR_MTU + 1,
          payload_bytes: FAR_MTU + 1 - (family === 4 ? 28 : 48),
          kind: "icmp",
          icmp_mtu: FAR_MTU,
          icmp_from: RoutedLan.ADDRESSES[family].routerNear,
          direction: "forward",
        });
      }
      ok(await lan.counter(lan.router, "frag-needed") > 0);
      ok(await lan.counter(lan.router, "packet-too-big") > 0);

      // Now the router drops its own "too big" messages, and the client
      // forgets what it learnt: a black hole at the same size.
      await lan.nft(
        lan.router,
        `flush table inet t
table inet t {
  chain sent {
    type filter hook output priority 0;
    icmp type destination-unreachable icmp code frag-needed counter drop
    icmpv6 type packet-too-big counter drop
  }
}`,
      );
      await lan.sh([
        `ip -n ${lan.client} route flush cache`,
        `ip -n ${lan.client} -6 route flush cache`,
      ]);
      for (const family of [4, 6] as const) {
        const stdout = await diagnose(lan, family, port, "pmtu");
        const pmtu = checkOf(stdout, "pmtu");
        equal(pmtu.details.path_mtu, FAR_MTU);
        const limit = pmtu.details.limit as Record<string, unknown>;
        equal(limit.kind, "black-hole");
        equal(limit.packet_bytes, FAR_MTU + 1);
        equal(limit.direction, "unknown");
        ok(pmtu.findings.some((line) => line.startsWith("black hole:")));
      }
      ok(await lan.counter(lan.router, "frag-needed") > 0);
      ok(await lan.counter(lan.router, "packet-too-big") > 0);
    });
  },
);

routedTest(
  "dscp and ecn across a router: bleached one way, CE-marked the other, IPv4 and IPv6",
  async (lan) => {
    const a4 = RoutedLan.ADDRESSES[4].server;
    const a6 = RoutedLan.ADDRESSES[6].server;
    await lan.nft(
      lan.router,
      `table inet t {
  chain routed {
    type filter hook forward priority 0;
    ip daddr ${a4} ip dscp set cs0 counter
    ip6 daddr ${a6} ip6 dscp set cs0 counter
    ip saddr ${a4} ip ecn set ce counter
    ip6 saddr ${a6} ip6 ecn set ce counter
  }
}`,
    );
    await withReflector(lan, async (port) => {
      for (const family of [4, 6] as const) {
        const stdout = await diagnose(lan, family, port, "dscp,ecn");
        const dscp = checkOf(stdout, "dscp");
        equal(dscp.details.view, "directional");
        equal(dscp.details.forward, "bleached");
        equal(dscp.details.return, "keeps");
        const probes = dscp.details.probes as Record<string, unknown>[];
        deepEqual(probes.map((p) => [p.name, p.arrived, p.returned]), [
          ["CS0", 0, 0],
          ["AF11", 0, 10],
          ["AF41", 0, 34],
          ["EF", 0, 46],
          ["CS6", 0, 48],
        ]);
        const ecn = checkOf(stdout, "ecn");
        equal(ecn.details.forward, "keeps");
        equal(ecn.details.return, "ce-marked");
        ok(
          ecn.findings.includes(
            "return path (server to client): CE-marks ECN (ECT(0) to CE, ECT(1) to CE)",
          ),
        );
      }
      for (
        const rule of [
          `ip daddr ${a4}`,
          `ip6 daddr ${a6}`,
          `ip saddr ${a4}`,
          `ip6 saddr ${a6}`,
        ]
      ) {
        ok(await lan.counter(lan.router, rule) > 0, rule);
      }
    });
  },
);
