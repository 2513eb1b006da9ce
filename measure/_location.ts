/**
 * Whether something on the path rewrote a probe's addresses: what a STAMP
 * reflector saw (its Location TLV, RFC 8972 §4.2) held against where the
 * probe really left from and where it was sent. A socket bound to a
 * wildcard does not know its source address; the route does (see
 * `kernel/_route.ts`), when `--allow-ffi` lets us ask it. What cannot be
 * compared leaves the answer unknown, never "not rewritten".
 *
 * @module
 */

import {
  familyOf,
  type HostPort,
  isUnspecified,
  sameHost,
} from "../net/address.ts";
import { routeSource } from "../kernel/_route.ts";

/** What the reflector saw: source and destination; an address is "" when not returned. */
export interface SeenPath {
  /** The source address and port the reflector saw. */
  source: HostPort;
  /** The destination address and port the reflector saw. */
  destination: HostPort;
}

/** What the Location TLV told about the path. */
export interface PathCheck {
  /** The source the reflector saw. */
  sourceSeen: HostPort;
  /** The destination the reflector saw. */
  destinationSeen: HostPort;
  /** Where this host sent from; the address "" when it is not known. */
  sentFrom: HostPort;
  /** How `sentFrom`'s address was learned: the socket's own, or the route's pick for a wildcard. */
  sentFromBy: "socket" | "route" | undefined;
  /**
   * Whether an address or port differs (a NAT or proxy rewrote the path);
   * `undefined` when nothing differs but something could not be compared.
   */
  rewritten: boolean | undefined;
  /** Whether the source address differs from `sentFrom`'s; `undefined` when either is not known. */
  sourceAddressRewritten: boolean | undefined;
  /** Whether the source port differs from the socket's. */
  sourcePortRewritten: boolean;
  /** Why `rewritten` is unknown. */
  unknown?: string;
}

/**
 * Holds what the reflector saw against the socket's local address `local`
 * (a wildcard is replaced by the route's pick towards `target`) and the
 * `target` the probes were sent to.
 *
 * @param seen What the Location TLV said.
 * @param local The sending socket's address.
 * @param target Where the probes went.
 * @returns The comparison; `rewritten` is `undefined` when it cannot tell.
 */
export function checkPath(
  seen: SeenPath,
  local: HostPort,
  target: HostPort,
): PathCheck {
  const from = sentFrom(local, target);
  const sourcePortRewritten = seen.source.port !== local.port;
  const portRewritten = sourcePortRewritten ||
    seen.destination.port !== target.port;
  const hostsDiffer = (a: string, b: string) =>
    a !== "" && !isUnspecified(a) && !sameHost(unmapped(a), unmapped(b));
  const sourceAddressRewritten =
    from.hostname === "" || seen.source.hostname === ""
      ? undefined
      : hostsDiffer(seen.source.hostname, from.hostname);
  const rewritten = portRewritten || sourceAddressRewritten === true ||
    hostsDiffer(seen.destination.hostname, target.hostname);
  let unknown: string | undefined;
  if (!rewritten && from.hostname === "") unknown = from.why;
  else if (!rewritten && seen.source.hostname === "") {
    unknown = "the reflector did not return the source address it saw";
  } else if (
    !rewritten && (seen.destination.hostname === "" ||
      isUnspecified(seen.destination.hostname))
  ) {
    unknown =
      "the reflector did not say which address the probes reached: its socket is bound to a wildcard";
  }
  return {
    sourceSeen: seen.source,
    destinationSeen: seen.destination,
    sentFrom: { hostname: from.hostname, port: local.port },
    sentFromBy: from.by,
    sourceAddressRewritten,
    sourcePortRewritten,
    rewritten: unknown === undefined ? rewritten : undefined,
    ...(unknown === undefined ? {} : { unknown }),
  };
}

/** The address the probes left from, or "" and why it is not known. */
function sentFrom(
  local: HostPort,
  target: HostPort,
): { hostname: string; by?: "socket" | "route"; why?: string } {
  if (!isUnspecified(local.hostname)) {
    return { hostname: local.hostname, by: "socket" };
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return {
      hostname: "",
      why:
        "the socket is bound to a wildcard and the address it sent from needs --allow-ffi to learn",
    };
  }
  try {
    return { hostname: routeSource(target), by: "route" };
  } catch (error) {
    return {
      hostname: "",
      why: `the socket is bound to a wildcard: ${
        error instanceof Error ? error.message : String(error)
      }`,
    };
  }
}

/** An IPv4-mapped IPv6 address as the IPv4 address it stands for. */
function unmapped(hostname: string): string {
  const lower = hostname.toLowerCase();
  return lower.startsWith("::ffff:") && familyOf(lower.slice(7)) === "IPv4"
    ? lower.slice(7)
    : hostname;
}
