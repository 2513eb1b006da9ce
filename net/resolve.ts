/**
 * Resolving host names through the system resolver (`/etc/hosts` included),
 * in the order `Deno.listenDatagram` binds by.
 *
 * @module
 */

import { lookup } from "node:dns/promises";
import {
  type AddressFamily,
  familyOf,
  type HostPort,
  isUnspecified,
  type ResolvedAddress,
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
 * bind for the same name; IP literals are returned as they are.
 */
export async function resolveAddress(
  address: HostPort,
  options: ResolveOptions = {},
): Promise<ResolvedAddress> {
  const { family } = options;
  const literal = familyOf(address.hostname);
  if (literal !== undefined) {
    if (family !== undefined && literal !== family) {
      throw new TypeError(
        `Cannot use ${address.hostname}: it is an ${literal} address, not ${family}`,
      );
    }
    return { ...address, family: literal };
  }
  try {
    // Verbatim keeps the resolver's order, the one listenDatagram binds by,
    // so client and server agree on "localhost" even where ::1 comes first.
    const found = await lookup(address.hostname, {
      family: family === undefined ? 0 : family === "IPv4" ? 4 : 6,
      verbatim: true,
    });
    return {
      hostname: found.address,
      port: address.port,
      family: found.family === 6 ? "IPv6" : "IPv4",
    };
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
 * Resolves an address to send datagrams to, as {@linkcode resolveAddress}
 * does, and throws a `RangeError` for the unspecified address, which names
 * no host.
 */
export async function resolveTarget(
  address: HostPort,
  options: ResolveOptions = {},
): Promise<ResolvedAddress> {
  const resolved = await resolveAddress(address, options);
  if (isUnspecified(resolved.hostname)) {
    throw new RangeError(
      `Cannot send to ${resolved.hostname}: it is the unspecified address; use ${
        resolved.family === "IPv6" ? "::1" : "127.0.0.1"
      } for this machine`,
    );
  }
  return resolved;
}
