/**
 * This host's interface addresses, as far as the process may list them
 * (`--allow-sys=networkInterfaces`, asked without prompting), and what the
 * backends make of them: the directed broadcast and network addresses the
 * policy refuses as sources, the sockets a wildcard bind of the socket backend expands
 * into, and the one start-up warning when they cannot be listed.
 *
 * @module
 */

import { isUnspecified } from "../net/address.ts";
import { isLoopback } from "../policy/policy.ts";

/** The permission flag that lets the server list the interfaces. */
export const SYS_FLAG = "--allow-sys=networkInterfaces";

/**
 * This host's interface addresses, or `undefined` when the process may not
 * list them. Never prompts, never throws.
 */
export function listInterfaces(): Deno.NetworkInterfaceInfo[] | undefined {
  try {
    const { state } = Deno.permissions.querySync({
      name: "sys",
      kind: "networkInterfaces",
    });
    return state === "granted" ? Deno.networkInterfaces() : undefined;
  } catch {
    return undefined;
  }
}

function prefixLength(netmask: string): number {
  return netmask.split(".").reduce(
    (bits, octet) =>
      bits + (Number(octet) >>> 0).toString(2).replaceAll("0", "").length,
    0,
  );
}

/**
 * The sources no host sends from, for the policy: each IPv4 interface's
 * directed broadcast address and its subnet's network address (from its
 * address and netmask; a /31 or /32 has neither, RFC 3021),
 * 255.255.255.255 and 0.0.0.0. A reply to a network address may reach
 * every host of the subnet, as BSD hosts still take it for a broadcast.
 */
export function refusedSources(
  interfaces: readonly Deno.NetworkInterfaceInfo[],
): string[] {
  const found = new Set(["255.255.255.255", "0.0.0.0"]);
  for (const { family, address, netmask } of interfaces) {
    if (family !== "IPv4" || prefixLength(netmask) >= 31) continue;
    const octets = address.split(".").map(Number);
    const mask = netmask.split(".").map(Number);
    found.add(
      octets.map((octet, k) => (octet | (~mask[k]! & 255)) & 255).join("."),
    );
    found.add(octets.map((octet, k) => octet & mask[k]!).join("."));
  }
  return [...found];
}

/** One socket to bind: its address, and the host it was asked for. */
export interface PlannedSocket {
  /** What to bind: an IP literal, a link-local one with its `%zone`. */
  hostname: string;
  /** The host from `hostnames` it stands for. */
  requested: string;
  /** Whether it came from expanding a wildcard (so may be skipped if it cannot be bound). */
  expanded: boolean;
}

/**
 * Replaces each wildcard in `hostnames` by one socket per interface address
 * (`0.0.0.0`: the IPv4 ones; `::`, which also receives IPv4 on Linux:
 * all), link-local IPv6 ones with their zone; an address already planned is
 * not planned again. Without `interfaces`, or without an address of its
 * family, a wildcard stays.
 */
export function expandWildcards(
  hostnames: readonly string[],
  interfaces: readonly Deno.NetworkInterfaceInfo[] | undefined,
): PlannedSocket[] {
  const planned: PlannedSocket[] = [];
  const seen = new Set<string>();
  const add = (hostname: string, requested: string, expanded: boolean) => {
    if (seen.has(hostname)) return;
    seen.add(hostname);
    planned.push({ hostname, requested, expanded });
  };
  for (const requested of hostnames) {
    if (interfaces === undefined || !isUnspecified(requested)) {
      add(requested, requested, false);
      continue;
    }
    const ipv6 = requested.includes(":");
    const before = planned.length;
    for (const { family, address, name } of interfaces) {
      if (family === "IPv6" && !ipv6) continue;
      const linkLocal = family === "IPv6" && /^fe[89ab]/i.test(address);
      add(linkLocal ? `${address}%${name}` : address, requested, true);
    }
    // No address of that family at all: the wildcard is all there is.
    if (planned.length === before) add(requested, requested, false);
  }
  return planned;
}

/**
 * The one start-up warning about what the server cannot check, or
 * `undefined`: without the interfaces it cannot refuse datagrams forged
 * from a directed broadcast or network address (said when an address is
 * not loopback), the batch engine (`seesArrival`) cannot refuse those
 * forged from this host's own addresses, and the socket backend on a
 * wildcard cannot see where a datagram was sent (it may answer from
 * another address, and echo a subnet broadcast).
 */
export function interfaceWarning(
  hostnames: readonly string[],
  options: { listed: boolean; seesDestination: boolean; seesArrival?: boolean },
): string | undefined {
  if (options.listed || hostnames.every(isLoopback)) return undefined;
  const wildcards = hostnames.filter(isUnspecified);
  const cannot = [
    ...(!options.seesDestination && wildcards.length > 0
      ? [
        `see which address a datagram to ${
          wildcards.join(" or ")
        } was sent to (a reply may leave from another address, and subnet broadcasts are echoed)`,
      ]
      : []),
    "refuse datagrams forged from a directed broadcast or network address",
    ...(options.seesArrival
      ? ["refuse datagrams forged from this host's own addresses"]
      : []),
  ];
  const fix = !options.seesDestination && wildcards.length > 0
    ? `grant ${SYS_FLAG} to bind one socket per interface address instead`
    : `grant ${SYS_FLAG} to list them`;
  return `cannot list the network interfaces, so the server cannot ${
    cannot.join(", nor ")
  }: ${fix}`;
}
