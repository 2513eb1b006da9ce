/**
 * Tests across a router in private network namespaces: a client, a router
 * and a server namespace joined by two veth pairs, IPv4 and IPv6 routed
 * through the router.
 *
 * ```
 * client 10.2.1.2 fd00:21::2  --near--  router 10.2.1.1 fd00:21::1
 *                                       router 10.2.2.1 fd00:22::1  --far--  server 10.2.2.2 fd00:22::2
 * ```
 *
 * The router forwards both families; its rules (`nft`), link MTUs and
 * sysctls are the test's to set with `sh()`. Needs root, `ip` and `nft`
 * (see `netns.ts`: {@linkcode routedTest} reports the test as skipped, and
 * why, where they are missing).
 *
 * @module
 */

import { namespaceId, NETNS_SKIP } from "./netns.ts";
import { loadNft, nftCounter, run, sh } from "./command.ts";
import { ROOT, runScript } from "./cli.ts";

/** Client, router and server namespaces; `close()` deletes them. */
export class RoutedLan {
  /** The client's namespace. */
  readonly client: string;
  /** The router's namespace. */
  readonly router: string;
  /** The server's namespace. */
  readonly server: string;
  /** The client's link (to the router). */
  readonly clientLink: string;
  /** The router's link to the client. */
  readonly routerNear: string;
  /** The router's link to the server. */
  readonly routerFar: string;
  /** The server's link (to the router). */
  readonly serverLink: string;
  /** The addresses, by family. */
  static readonly ADDRESSES = {
    4: {
      client: "10.2.1.2",
      routerNear: "10.2.1.1",
      routerFar: "10.2.2.1",
      server: "10.2.2.2",
    },
    6: {
      client: "fd00:21::2",
      routerNear: "fd00:21::1",
      routerFar: "fd00:22::1",
      server: "fd00:22::2",
    },
  } as const;

  private constructor(id: string) {
    this.client = `uerc${id}`;
    this.router = `uerr${id}`;
    this.server = `uers${id}`;
    this.clientLink = `uerc${id}`;
    this.routerNear = `uern${id}`;
    this.routerFar = `uerf${id}`;
    this.serverLink = `uers${id}`;
  }

  /** Makes the namespaces and routes; deletes what it made when a step fails. */
  static async open(): Promise<RoutedLan> {
    const lan = new RoutedLan(namespaceId());
    const { client: c, router: r, server: s } = lan;
    const a4 = RoutedLan.ADDRESSES[4];
    const a6 = RoutedLan.ADDRESSES[6];
    const links: [string, string][] = [
      [c, lan.clientLink],
      [r, lan.routerNear],
      [r, lan.routerFar],
      [s, lan.serverLink],
    ];
    try {
      await lan.sh([
        `ip netns add ${c}`,
        `ip netns add ${r}`,
        `ip netns add ${s}`,
        `ip link add ${lan.clientLink} netns ${c} type veth peer name ${lan.routerNear} netns ${r}`,
        `ip link add ${lan.routerFar} netns ${r} type veth peer name ${lan.serverLink} netns ${s}`,
        ...[c, r, s].map((ns) => `ip -n ${ns} link set lo up`),
        // No link-local addresses of the kernel's: DAD would hold them back.
        ...links.map(([ns, link]) =>
          `ip -n ${ns} link set ${link} addrgenmode none`
        ),
        `ip -n ${c} addr add ${a4.client}/24 dev ${lan.clientLink}`,
        `ip -n ${c} addr add ${a6.client}/64 dev ${lan.clientLink} nodad`,
        `ip -n ${r} addr add ${a4.routerNear}/24 dev ${lan.routerNear}`,
        `ip -n ${r} addr add ${a6.routerNear}/64 dev ${lan.routerNear} nodad`,
        `ip -n ${r} addr add ${a4.routerFar}/24 dev ${lan.routerFar}`,
        `ip -n ${r} addr add ${a6.routerFar}/64 dev ${lan.routerFar} nodad`,
        `ip -n ${s} addr add ${a4.server}/24 dev ${lan.serverLink}`,
        `ip -n ${s} addr add ${a6.server}/64 dev ${lan.serverLink} nodad`,
        // A router sends neighbour solicitations for forwarded packets
        // only from a link-local address: one each, made at once.
        ...links.map(([ns, link], i) =>
          `ip -n ${ns} addr add fe80::${i + 1}/64 dev ${link} nodad`
        ),
        ...links.map(([ns, link]) => `ip -n ${ns} link set ${link} up`),
        `ip -n ${c} route add default via ${a4.routerNear}`,
        `ip -n ${c} -6 route add default via ${a6.routerNear}`,
        `ip -n ${s} route add default via ${a4.routerFar}`,
        `ip -n ${s} -6 route add default via ${a6.routerFar}`,
        `ip netns exec ${r} sysctl -qw net.ipv4.ip_forward=1`,
        `ip netns exec ${r} sysctl -qw net.ipv6.conf.all.forwarding=1`,
      ]);
    } catch (error) {
      await lan.close();
      throw error;
    }
    return lan;
  }

  /** Runs shell lines (`sh -e`); throws with their stderr when one fails. */
  sh(lines: string[]): Promise<string> {
    return sh(lines);
  }

  /** Loads an nft ruleset (text of `nft -f`) into namespace `ns`. */
  nft(ns: string, ruleset: string): Promise<void> {
    return loadNft(ns, ruleset);
  }

  /** Packets counted by the one rule of namespace `ns` whose text includes `rule`. */
  counter(ns: string, rule: string): Promise<number> {
    return nftCounter(ns, rule);
  }

  /**
   * Runs `client.ts` with `args` in the client's namespace, with the
   * engine's permissions (`--allow-ffi`) and `flags` for Deno, to its end.
   */
  async runClient(
    args: string[],
    flags: string[] = [],
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    return await runScript("client.ts", args, {
      namespace: this.client,
      permissions: [
        "--allow-net",
        "--allow-ffi",
        `--allow-read=${ROOT.pathname}`,
        ...flags,
      ],
    });
  }

  /** Deletes the three namespaces, and with them everything in them. */
  async close(): Promise<void> {
    for (const ns of [this.client, this.router, this.server]) {
      await run("ip", ["netns", "del", ns]);
    }
  }
}

/**
 * A test given a fresh {@linkcode RoutedLan}, deleted after it; reported
 * as skipped, and why, where namespaces cannot be made.
 */
export function routedTest(
  name: string,
  fn: (lan: RoutedLan) => Promise<void>,
): void {
  Deno.test({
    name,
    ignore: NETNS_SKIP !== undefined,
    fn: async () => {
      const lan = await RoutedLan.open();
      try {
        await fn(lan);
      } finally {
        await lan.close();
      }
    },
  });
}
