/**
 * Datagrams this host's kernel dropped at one socket before the program
 * could read them: the `drops` column of the socket's line in
 * `/proc/net/udp` (`/proc/net/udp6` for IPv6), found by the socket's local
 * address and port. The kernel counts there what it counts in
 * `/proc/net/snmp`'s `RcvbufErrors` for the whole host, a full receive
 * buffer, and also the rarer drops at the socket for a bad checksum or a
 * socket filter: a drop at this host, never on the path.
 *
 * Deno guards `/proc/net/*`: reading it needs `--allow-all`, whatever
 * `--allow-read` says. Without it the count is unknown, with the reason.
 * The kernel engine reads the same counter of its own sockets with
 * `getsockopt(SO_MEMINFO)` instead, which needs no file at all.
 *
 * @module
 */

import { parseAddress, WORDS } from "./address.ts";

/** What a socket's drop count is: the count, or why it cannot be known. */
export type HostDrops =
  | { drops: number; unknown?: undefined }
  | { drops: null; unknown: string };

/** Why the socket backend's drops are unknown without full access. */
export const NEEDS_ALLOW_ALL =
  "needs --allow-all: Deno reads /proc/net/udp only with every permission";

/**
 * The permissions `--allow-all` grants, every one of which Deno wants for
 * `/proc/net`; `import` is among them, though its type does not list it.
 */
const ALL_PERMISSIONS: readonly string[] = [
  "read",
  "write",
  "net",
  "env",
  "sys",
  "run",
  "ffi",
  "import",
];

/**
 * Whether this process may read `/proc/net/udp`: only with every
 * permission granted. Asked without a prompt, so a terminal never stops
 * for it.
 */
export function mayReadProcNet(): boolean {
  try {
    return ALL_PERMISSIONS.every((name) =>
      Deno.permissions.querySync({ name } as Deno.PermissionDescriptor)
        .state === "granted"
    );
  } catch {
    return false;
  }
}

function swapBytes(word: number): number {
  return (((word & 0xff) << 24) | ((word & 0xff00) << 8) |
    ((word >>> 8) & 0xff00) | (word >>> 24)) >>> 0;
}

function hex8(word: number): string {
  return word.toString(16).toUpperCase().padStart(8, "0");
}

/**
 * A local address and port as the kernel writes them in `/proc/net/udp`:
 * each 32-bit word of the address in the host's byte order (little-endian
 * on the x86-64 and AArch64 Linux the engine runs on), then the port.
 * `undefined` when `hostname` is no IP literal.
 */
export function procLocalAddress(
  hostname: string,
  port: number,
): string | undefined {
  const family = parseAddress(hostname);
  if (family === 0) return undefined;
  const ipv6 = hostname.includes(":");
  let address: string;
  if (!ipv6) address = hex8(swapBytes(WORDS[0]!));
  else if (family === 4) {
    // An IPv4-mapped IPv6 address: ::ffff:a.b.c.d.
    address = hex8(0) + hex8(0) + hex8(swapBytes(0xffff)) +
      hex8(swapBytes(WORDS[0]!));
  } else address = [...WORDS].map((word) => hex8(swapBytes(word))).join("");
  return `${address}:${port.toString(16).toUpperCase().padStart(4, "0")}`;
}

/**
 * The drops of the socket bound to `hostname`:`port` in the text of
 * `/proc/net/udp` or `/proc/net/udp6`: the count, or why there is none
 * (no such line, or several sockets sharing the address, whose drops
 * cannot be told apart).
 */
export function dropsInTable(
  table: string,
  hostname: string,
  port: number,
): HostDrops {
  const local = procLocalAddress(hostname, port);
  if (local === undefined) {
    return { drops: null, unknown: `${hostname} is no IP address` };
  }
  const lines = table.split("\n");
  const header = lines[0]?.trim().split(/\s+/) ?? [];
  const dropsColumn = header.indexOf("drops");
  // The header names `tx_queue rx_queue` and `tr tm->when` as two columns
  // each, where the lines have one.
  const column = dropsColumn - 2;
  const found: number[] = [];
  for (const line of lines.slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] !== local) continue;
    const drops = Number(fields[column]);
    if (dropsColumn < 0 || !Number.isInteger(drops)) {
      return { drops: null, unknown: "cannot read the drops column" };
    }
    found.push(drops);
  }
  if (found.length === 0) {
    return { drops: null, unknown: "the socket is not in the kernel's table" };
  }
  if (found.length > 1) {
    return {
      drops: null,
      unknown: `${found.length} sockets share its address and port`,
    };
  }
  return { drops: found[0]! };
}

/**
 * Reads the drops of the UDP sockets bound to `locals` in this network
 * namespace from `/proc/net/udp{,6}`, each table read once; synchronous,
 * so it can be read right before the sockets close.
 *
 * @param locals The sockets' bound addresses (IP literals; a wildcard is
 * `0.0.0.0` or `::`) and ports.
 * @returns Each socket's count, or `drops: null` and what it would need, in
 * the order given.
 *
 * @example
 * ```ts ignore
 * import { readAllHostDrops } from "./host_drops.ts";
 *
 * const conn = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
 * const { port } = conn.addr as Deno.NetAddr;
 * console.log(readAllHostDrops([{ hostname: "127.0.0.1", port }]));
 * conn.close();
 * ```
 */
export function readAllHostDrops(
  locals: readonly { hostname: string; port: number }[],
): HostDrops[] {
  if (Deno.build.os !== "linux") {
    return locals.map(() => ({
      drops: null,
      unknown: "needs Linux's /proc/net/udp",
    }));
  }
  if (!mayReadProcNet()) {
    return locals.map(() => ({ drops: null, unknown: NEEDS_ALLOW_ALL }));
  }
  const tables = new Map<string, string | Error>();
  return locals.map(({ hostname, port }) => {
    const path = hostname.includes(":") ? "/proc/net/udp6" : "/proc/net/udp";
    if (!tables.has(path)) {
      try {
        tables.set(path, Deno.readTextFileSync(path));
      } catch (error) {
        tables.set(path, error as Error);
      }
    }
    const table = tables.get(path)!;
    if (table instanceof Error) {
      return { drops: null, unknown: `cannot read ${path}: ${table.message}` };
    }
    return dropsInTable(table, hostname, port);
  });
}

/**
 * The drops of a server's sockets since they were bound: read at
 * construction, and at each {@linkcode SocketDropCounter.read}, until
 * {@linkcode SocketDropCounter.freeze} (right before the sockets close)
 * takes the last reading.
 */
export class SocketDropCounter {
  #locals: readonly { hostname: string; port: number }[];
  #base: HostDrops[];
  #final: HostDrops[] | undefined;

  /** Takes the first reading of the sockets at `locals`. */
  constructor(locals: readonly { hostname: string; port: number }[]) {
    this.#locals = locals;
    this.#base = readAllHostDrops(locals);
  }

  /** Each socket's drops since construction, in the order given. */
  read(): HostDrops[] {
    if (this.#final !== undefined) return this.#final;
    const now = readAllHostDrops(this.#locals);
    return now.map((after, k) => dropsSince(this.#base[k]!, after));
  }

  /** Takes the last reading, which {@linkcode read} returns from now on. */
  freeze(): void {
    this.#final ??= this.read();
  }
}

/**
 * `after` less `before`: the drops between two readings, or the first
 * reading's reason when either is unknown.
 */
export function dropsSince(before: HostDrops, after: HostDrops): HostDrops {
  if (before.drops === null) return before;
  if (after.drops === null) return after;
  return { drops: after.drops - before.drops };
}
