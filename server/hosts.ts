/**
 * What the server binds: the hosts a user gave, resolved. (What a wildcard
 * stands for, and this host's interface and broadcast addresses, are the
 * backends' business: `echo/_interfaces.ts`.)
 *
 * @module
 */

import { sameHost } from "../net/address.ts";
import { resolveAddresses } from "../net/resolve.ts";

/** A host to bind: as the user gave it, and the IP address it stands for. */
export interface BindHost {
  /** The host as the user gave it. */
  name: string;
  /** The IP address it stands for, or the name when it does not resolve. */
  address: string;
}

/**
 * Resolves the hosts to bind: a name stands for every address it resolves
 * to (`localhost` with both `127.0.0.1` and `::1` in `/etc/hosts` binds
 * both). An address already in the list is dropped, however it is spelt
 * (`-H localhost -H 127.0.0.1` is one socket). A name that does not resolve
 * is kept as it is: binding it reports the error, and as no IP literal it
 * counts as not loopback for the default rate limit.
 */
export async function resolveHosts(hostnames: string[]): Promise<BindHost[]> {
  const hosts: BindHost[] = [];
  for (const name of hostnames) {
    const addresses = await resolveAddresses({ hostname: name, port: 0 })
      .then(
        (found) => found.map((resolved) => resolved.hostname),
        () => [name],
      );
    for (const address of addresses) {
      if (!hosts.some((host) => sameHost(host.address, address))) {
        hosts.push({ name, address });
      }
    }
  }
  return hosts;
}
