/**
 * Host names resolved the way `Deno.listenDatagram` resolves them: through
 * the system resolver (`/etc/hosts` included), in its order.
 *
 * @example
 * ```ts
 * import { resolveTarget } from "./resolve.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal((await resolveTarget({ hostname: "127.0.0.1", port: 7 })).family, "IPv4");
 * ```
 *
 * @module
 */

import { lookup } from "node:dns/promises";
import {
  type AddressFamily,
  familyOf,
  type HostPort,
  isGroupAddress,
  isUnspecified,
  type ResolvedAddress,
  unmapped,
} from "./address.ts";
import { errorMessage } from "./errors.ts";

const RESOLVE_ERROR_REASONS: Record<string, string> = {
  ENOTFOUND: "no %FAMILY% address found",
  // What Deno's node:dns reports when net permission was not granted.
  EPERM: "network access not granted, run again with the --allow-net flag",
};

/** Options for {@linkcode resolveAddress}. */
export interface ResolveOptions {
  /** Accept only addresses of this family. */
  family?: AddressFamily;
}

/**
 * Resolves a host name to its first IP address in the system resolver's
 * order (`/etc/hosts` included), the address `Deno.listenDatagram` would
 * bind for the same name; see {@linkcode resolveAddresses} for literals and
 * errors.
 */
export async function resolveAddress(
  address: HostPort,
  options: ResolveOptions = {},
): Promise<ResolvedAddress> {
  return (await resolveAddresses(address, options))[0]!;
}

/**
 * Resolves a host name to every IP address it stands for, in the system
 * resolver's order (`/etc/hosts` included); an IP literal gives itself. An
 * IPv4-mapped IPv6 literal (`::ffff:127.0.0.1`) gives its IPv4 address, the
 * endpoint it names, so the IPv4 payload limit applies to it. Throws a
 * `TypeError` for a literal of the other family than `options.family`, and
 * an `Error` ("Cannot resolve NAME: reason") when the name does not resolve.
 *
 * @example
 * ```ts
 * import { resolveAddresses } from "./resolve.ts";
 * import { deepEqual } from "node:assert/strict";
 *
 * deepEqual(await resolveAddresses({ hostname: "::FFFF:127.0.0.1", port: 7 }), [
 *   { hostname: "127.0.0.1", port: 7, family: "IPv4" },
 * ]);
 * ```
 */
export async function resolveAddresses(
  address: HostPort,
  options: ResolveOptions = {},
): Promise<ResolvedAddress[]> {
  const { family } = options;
  const literal = familyOf(address.hostname);
  if (literal !== undefined) {
    const hostname = unmapped(address.hostname);
    const resolved: ResolvedAddress = {
      ...address,
      hostname,
      family: familyOf(hostname)!,
    };
    if (family !== undefined && resolved.family !== family) {
      throw new TypeError(
        `Cannot use ${address.hostname}: it is an ${resolved.family} address, not ${family}`,
      );
    }
    return [resolved];
  }
  try {
    // Verbatim keeps the resolver's order, the one listenDatagram binds by,
    // so client and server agree on "localhost" even where ::1 comes first.
    const found = await lookup(address.hostname, {
      family: family === undefined ? 0 : family === "IPv4" ? 4 : 6,
      verbatim: true,
      all: true,
    });
    if (found.length === 0) {
      throw Object.assign(new Error(), { code: "ENOTFOUND" });
    }
    return found.map((entry) => ({
      hostname: entry.address,
      port: address.port,
      family: entry.family === 6 ? "IPv6" : "IPv4",
    }));
  } catch (error) {
    throw new Error(
      `Cannot resolve ${address.hostname}: ${
        RESOLVE_ERROR_REASONS[(error as { code?: string }).code ?? ""] ??
          errorMessage(error)
      }`.replace("%FAMILY%", family ?? "IP"),
      { cause: error },
    );
  }
}

/**
 * Resolves an address to send datagrams to: a name to its first address in
 * the system resolver's order (`/etc/hosts` included), the one
 * `Deno.listenDatagram` would use for the same name; an IP literal to
 * itself, an IPv4-mapped IPv6 literal to its IPv4 address.
 *
 * @param address A host name or IP literal, and a port.
 * @param options `family`: the one family to accept; any by default.
 * @returns The IP literal, the port and the family.
 * @throws {RangeError} For the unspecified address, which names no host,
 * and for a broadcast or multicast one, which no echo comes from.
 * @throws {TypeError} For a literal of another family than `options.family`.
 * @throws {Error} "Cannot resolve NAME: reason" when the name does not
 * resolve.
 *
 * @example
 * ```ts
 * import { resolveTarget } from "./resolve.ts";
 * import { deepEqual, rejects } from "node:assert/strict";
 *
 * deepEqual(await resolveTarget({ hostname: "::ffff:127.0.0.1", port: 7 }), {
 *   hostname: "127.0.0.1",
 *   port: 7,
 *   family: "IPv4",
 * });
 * await rejects(resolveTarget({ hostname: "0.0.0.0", port: 7 }), RangeError);
 * ```
 */
export async function resolveTarget(
  address: HostPort,
  options: { family?: AddressFamily } = {},
): Promise<ResolvedAddress> {
  const resolved = await resolveAddress(address, options);
  if (isUnspecified(resolved.hostname)) {
    throw new RangeError(
      `Cannot send to ${resolved.hostname}: it is the unspecified address; use ${
        resolved.family === "IPv6" ? "::1" : "127.0.0.1"
      } for this machine`,
    );
  }
  if (isGroupAddress(resolved.hostname)) {
    throw new RangeError(
      `Cannot send to ${resolved.hostname}: it is a broadcast or multicast address, and an echo comes back from a unicast one`,
    );
  }
  return resolved;
}
