/**
 * Where a `/probe` caller may send probes. The target comes from whoever
 * reaches the endpoint, so it is held to what the echo server itself
 * refuses to answer (policy/): no broadcast (the directed broadcast of each
 * local subnet included), network, multicast or unspecified address, and
 * no port of a UDP service that answers unsolicited datagrams, which would
 * make the monitor a reflector. Echo (7) and STAMP (862), what the monitor
 * probes, are allowed. `--probe-allow` entries narrow this to an allow
 * list. The operator's own `-H` targets are configuration, not checked.
 *
 * @module
 */

import { parseAddress, parsePort, WORDS } from "../net/address.ts";
import { parseCidr, REFUSED_SERVICE_PORTS } from "../policy/policy.ts";
import { type Cidr, toCidr } from "../policy/_cidr.ts";

/** Ports below 1024 a `/probe` may reach: echo (RFC 862) and STAMP (RFC 8762). */
export const PROBE_LOW_PORTS: readonly number[] = [7, 862];

/** One `--probe-allow` entry: a CIDR, and a port when one was given. */
export interface ProbeAllowEntry {
  /** The entry as given. */
  text: string;
  /** The network and its prefix length. */
  cidr: Cidr & { prefix: number };
  /** The only port allowed; any when absent. */
  port?: number;
}

/** What {@linkcode probeTargetRefusal} checks against. */
export interface ProbeTargetPolicy {
  /** When not empty, a target must match one entry. */
  allow: readonly ProbeAllowEntry[];
  /**
   * This host's interfaces, for the network and broadcast addresses of its
   * subnets; `undefined` when they cannot be listed, and then only
   * loopback targets pass.
   */
  interfaces: readonly Deno.NetworkInterfaceInfo[] | undefined;
}

const REFUSED_PORTS = new Set(REFUSED_SERVICE_PORTS);

/**
 * Parses a `--probe-allow` value: `CIDR` (`10.0.0.0/8`, `2001:db8::/32`, one
 * address), `CIDR:PORT` for IPv4, or `[CIDR]:PORT`. Throws a `TypeError` or
 * `RangeError` ("Cannot use --probe-allow "…": reason") for anything else.
 */
export function parseProbeAllow(text: string): ProbeAllowEntry {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(text) ??
    /^([^:[\]]+):(\d+)$/.exec(text);
  const range = match?.[1] ?? text;
  let cidr;
  let port: number | undefined;
  try {
    cidr = toCidr(range);
    if (match !== null) port = parsePort(match[2]!);
  } catch (error) {
    throw new TypeError(
      `Cannot use --probe-allow "${text}": expected CIDR or [CIDR]:PORT, such as 192.0.2.0/24 or [2001:db8::/32]:7`,
      { cause: error },
    );
  }
  if (cidr.hostBits) {
    throw new RangeError(
      `Cannot use --probe-allow "${text}": host bits are set past /${cidr.prefix}`,
    );
  }
  if (port === 0) {
    throw new RangeError(
      `Cannot use --probe-allow "${text}": the port must be 1 to 65535`,
    );
  }
  return { text, cidr, ...(port === undefined ? {} : { port }) };
}

/**
 * Why a `/probe` caller may not send to `target` (an IP literal and port),
 * as the end of "Cannot probe target …: "; `undefined` when it may.
 */
export function probeTargetRefusal(
  target: { hostname: string; port: number },
  policy: ProbeTargetPolicy,
): string | undefined {
  const { port } = target;
  const family = parseAddress(target.hostname);
  if (family === 0) return "not an IP address";
  // A copy: parsing the subnets below reuses WORDS.
  const words = WORDS.slice();
  const addressRefusal = refuseAddress(family, words, policy.interfaces);
  if (addressRefusal !== undefined) return addressRefusal;
  if (port < 1024 && !PROBE_LOW_PORTS.includes(port)) {
    return `port ${port} is below 1024 and not echo (7) or STAMP (862)`;
  }
  if (REFUSED_PORTS.has(port)) {
    return `port ${port} is a UDP service that answers unsolicited datagrams`;
  }
  if (
    policy.allow.length > 0 &&
    !policy.allow.some((entry) =>
      within(family, words, entry.cidr) &&
      (entry.port === undefined || entry.port === port)
    )
  ) {
    return "it matches no --probe-allow entry";
  }
  return undefined;
}

/** Whether the address `words` of `family` lies in `cidr`. */
function within(family: 4 | 6, words: Uint32Array, cidr: Cidr): boolean {
  if (cidr.family !== family) return false;
  for (let k = 0; k < (family === 4 ? 1 : 4); k++) {
    if (((words[k]! & cidr.mask[k]!) >>> 0) !== cidr.words[k]) return false;
  }
  return true;
}

function refuseAddress(
  family: 4 | 6,
  words: Uint32Array,
  interfaces: readonly Deno.NetworkInterfaceInfo[] | undefined,
): string | undefined {
  if (
    words[0] === 0 &&
    (family === 4 || (words[1] === 0 && words[2] === 0 && words[3] === 0))
  ) {
    return "it is the unspecified address";
  }
  if (family === 4) {
    const top = words[0]! >>> 24;
    if (top === 0) return "it is in 0.0.0.0/8, which names no host";
    if (top >= 240) return "it is a broadcast or reserved address";
    if (top >= 224) return "it is a multicast address";
  } else if (words[0]! >>> 24 === 0xff) {
    return "it is a multicast address";
  }
  const loopback = family === 4
    ? words[0]! >>> 24 === 127
    : words[0] === 0 && words[1] === 0 && words[2] === 0 && words[3] === 1;
  const subnets = interfaces?.map((info) => info.cidr) ??
    // Unlisted interfaces: the loopback subnet is all that is known.
    (loopback ? ["127.0.0.0/8"] : []);
  for (const subnet of subnets) {
    let cidr;
    try {
      cidr = toCidr(subnet.replace(/%[^/]*/, ""));
    } catch {
      continue;
    }
    if (!within(family, words, cidr)) continue;
    const hostBits = family === 4 ? 32 - cidr.prefix : 128 - cidr.prefix;
    // A /31 or /32 (RFC 3021), or an IPv6 /127 or /128, has no such address.
    if (hostBits < 2) continue;
    let network = true;
    let broadcast = true;
    for (let k = 0; k < (family === 4 ? 1 : 4); k++) {
      const host = (words[k]! & ~cidr.mask[k]!) >>> 0;
      if (host !== 0) network = false;
      if (host !== (~cidr.mask[k]! >>> 0)) broadcast = false;
    }
    const name = parseCidr(subnet.replace(/%[^/]*/, "")).network;
    if (network) return `it is the network address of ${name}`;
    if (broadcast && family === 4) {
      return `it is the broadcast address of ${name}`;
    }
  }
  if (interfaces === undefined && !loopback) {
    return "without --allow-sys=networkInterfaces the monitor cannot tell a local subnet's broadcast address, so it probes loopback only";
  }
  return undefined;
}
