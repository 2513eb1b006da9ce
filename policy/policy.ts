/**
 * The echo server's reply policy: one synchronous decision per datagram that
 * says whether to echo it or drop it, and why. It refuses what turns an echo
 * service into a reflector or a loop (CERT CA-1996-01): privileged and
 * well-known service source ports, broadcast, multicast and unspecified
 * sources, the server's own address and port; it applies `--allow`/`--deny`
 * CIDR lists and `--max-size`, and holds each source (an IPv4 address or an
 * IPv6 /64) to a token bucket kept in a fixed-size table, so memory stays flat
 * under a flood of spoofed sources.
 *
 * The decision is synchronous and allocates nothing: addresses are parsed
 * into scratch typed arrays and the source table lives in typed arrays sized
 * once. A receive loop calls {@linkcode EchoPolicy.prototype.decide} once per
 * datagram; a batch backend in a Worker builds its own policy from the same
 * {@linkcode PolicyOptions} (all but `clock` survive `postMessage`),
 * registers its sockets with {@linkcode EchoPolicy.prototype.addLocal}, and
 * may pass one `now` for a whole batch.
 *
 * @example Refuse a reply to a privileged port, rate-limit a source
 * ```ts
 * import { EchoPolicy } from "./policy.ts";
 * import { equal } from "node:assert/strict";
 *
 * let now = 0;
 * const policy = new EchoPolicy({ rate: 10, burst: 2, clock: () => now });
 * equal(policy.decide({ hostname: "127.0.0.1", port: 53 }, 10), "low-port");
 * const client = { hostname: "192.0.2.7", port: 40000 };
 * equal(policy.decide(client, 10), "echo");
 * equal(policy.decide(client, 10), "echo");
 * equal(policy.decide(client, 10), "rate-limited");
 * now += 100; // one token back at 10/s
 * equal(policy.decide(client, 10), "echo");
 * equal(policy.counts()["rate-limited"], 1);
 * ```
 *
 * @module
 */

import { type HostPort, parseAddress, WORDS } from "../net/address.ts";
import {
  type Address,
  type Cidr,
  inCidr,
  isLoopbackParsed,
  isUnspecifiedParsed,
  sameAddress,
  toAddress,
  toCidr,
} from "./_cidr.ts";

export { parseCidr } from "./_cidr.ts";
import { RateLimiter } from "./_rate_limiter.ts";

export type { HostPort };

/**
 * Why a datagram got no reply:
 * - `not-unicast`: sent to a broadcast or multicast address (or any that is
 *   not one of this host's unicast addresses): an echo would answer for
 *   every host on the network. Only the batch engine sees a datagram's
 *   destination and checks this, before everything else; the socket
 *   backend binds one socket per interface address instead, which receives
 *   no broadcasts;
 * - `spoofed-local`: the source is one of this host's own addresses, but
 *   the datagram arrived on an interface other than loopback, where no
 *   datagram of this host comes from: forged, and an echo would go to a
 *   service on this host (two echo servers on one host would answer each
 *   other). Only the batch engine sees the arrival interface (its kernel
 *   sets such datagrams aside before everything else, `kernel/_spoof_guard.ts`);
 * - `too-large`: longer than `maxSize`;
 * - `low-port`: source port 0 or below 1024 (a system service, or forged);
 * - `service-port`: a source port in {@linkcode REFUSED_SERVICE_PORTS};
 * - `bad-source`: a broadcast, multicast, unspecified, reserved or
 *   unparsable source address, or the network address of one of this
 *   host's subnets;
 * - `own-address`: the source is one of the server's own sockets;
 * - `denied`: matched `deny`, or `allow` was given and did not match;
 * - `rate-limited`: the source spent its token bucket.
 */
export type DropReason =
  | "not-unicast"
  | "spoofed-local"
  | "too-large"
  | "low-port"
  | "service-port"
  | "bad-source"
  | "own-address"
  | "denied"
  | "rate-limited";

/** Every reason a datagram can be dropped for, in the order they are checked. */
export const DROP_REASONS: readonly DropReason[] = [
  "not-unicast",
  "spoofed-local",
  "too-large",
  "low-port",
  "service-port",
  "bad-source",
  "own-address",
  "denied",
  "rate-limited",
];

/** The outcome of {@linkcode EchoPolicy.prototype.decide}. */
export type Verdict = "echo" | DropReason;

/** How many datagrams got each verdict. */
export type VerdictCounts = Record<Verdict, number>;

const VERDICTS: readonly Verdict[] = ["echo", ...DROP_REASONS];
const ECHO = 0;
// 1 and 2 are not-unicast and spoofed-local, which the engine decides
// before the policy.
const TOO_LARGE = 3;
const LOW_PORT = 4;
const SERVICE_PORT = 5;
const BAD_SOURCE = 6;
const OWN_ADDRESS = 7;
const DENIED = 8;
const RATE_LIMITED = 9;

/**
 * Source ports above 1023 of UDP services that answer unsolicited datagrams,
 * so an echo to them starts a loop or feeds a reflection attack. Ports below
 * 1024 are refused as a whole.
 */
export const REFUSED_SERVICE_PORTS: readonly number[] = [
  1434, // Microsoft SQL Server resolution service
  1900, // SSDP (UPnP discovery)
  2049, // NFS
  3283, // Apple Remote Desktop
  3478, // STUN
  3702, // WS-Discovery
  5060, // SIP
  5353, // mDNS
  5683, // CoAP
  10001, // Ubiquiti discovery
  11211, // memcached
];

/** Datagrams per second per source when any bound address is not loopback. */
export const DEFAULT_RATE = 1_000;

/** The most sources the rate limiter tracks at once. */
export const DEFAULT_MAX_SOURCES = 65_536;

/** The largest `maxSources`: a table of about 140 MB. */
export const MAX_SOURCES_LIMIT = 4_194_304;

/**
 * The echo server's reply policy: which sources it refuses and the
 * per-source rate limit (the `policy` of `serveEcho`, and of `EchoPolicy`).
 */
export interface PolicyOptions {
  /**
   * Datagrams per second each source may have echoed; 0 (the default) turns
   * the limit off. `serveEcho` gives a missing rate its own default (see
   * `defaultRate`).
   */
  rate?: number;
  /** Datagrams a source may send at once before the rate applies. Defaults to `rate`, at least 1. */
  burst?: number;
  /** The most sources tracked at once. Defaults to `--max-sources`'s default (`DEFAULT_MAX_SOURCES`). */
  maxSources?: number;
  /** Drop datagrams longer than this many bytes. Defaults to no limit. */
  maxSize?: number;
  /** Echo only to sources in one of these CIDRs (`10.0.0.0/8`, `::1`). */
  allow?: readonly string[];
  /** Never echo to sources in any of these CIDRs; wins over `allow`. */
  deny?: readonly string[];
  /** The server's own sockets (IP literals); a datagram from one is a loop. */
  local?: readonly HostPort[];
  /**
   * Addresses of this host's interfaces: with a socket bound to a wildcard
   * address, a source at one of these on the socket's port is the socket
   * itself. Loopback addresses always count.
   */
  interfaceAddresses?: readonly string[];
  /**
   * Directed broadcast and network addresses of this host's networks,
   * refused as sources.
   */
  broadcastAddresses?: readonly string[];
  /** Milliseconds on a monotonic clock. Defaults to `performance.now`. */
  clock?: () => number;
  /** Seed for the source table's hash. Defaults to a random one. */
  seed?: number;
}

/**
 * Whether an IP literal is a loopback address (127.0.0.0/8, `::1`, or the
 * IPv4-mapped form of 127.0.0.0/8). Host names are not resolved: false.
 *
 * @example
 * ```ts
 * import { isLoopback } from "./policy.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(isLoopback("127.0.0.2"), true);
 * equal(isLoopback("::ffff:127.0.0.1"), true);
 * equal(isLoopback("0.0.0.0"), false);
 * ```
 */
export function isLoopback(hostname: string): boolean {
  const family = parseAddress(hostname);
  return family !== 0 && isLoopbackParsed(family);
}

/**
 * The server's default per-source rate for the addresses it was asked to
 * bind: no limit (0) when every one is loopback, else
 * {@linkcode DEFAULT_RATE}. A wildcard is not loopback, even where it
 * stands for loopback addresses only.
 *
 * @example
 * ```ts
 * import { defaultRate } from "./policy.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(defaultRate(["127.0.0.1", "::1"]), 0);
 * equal(defaultRate(["127.0.0.1", "0.0.0.0"]), 1000);
 * ```
 */
export function defaultRate(hostnames: readonly string[]): number {
  return hostnames.every(isLoopback) ? 0 : DEFAULT_RATE;
}

function checkCount(
  value: number,
  name: string,
  range: { min: number; max?: number },
): number {
  const { min, max = Number.MAX_SAFE_INTEGER } = range;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Cannot use ${name} ${value}: expected an integer from ${min} to ${max}`,
    );
  }
  return value;
}

/** The per-source rate limit a policy enforces. */
export interface RateLimit {
  /** Datagrams per second per source; 0 when there is no limit. */
  rate: number;
  /** Datagrams a source may send at once. */
  burst: number;
  /** The most sources tracked at once. */
  maxSources: number;
}

/**
 * The rate limit that {@linkcode PolicyOptions} ask for, defaults filled in.
 * Throws a `RangeError` for a negative or infinite rate, a burst below 1,
 * or `maxSources` outside 1 to {@linkcode MAX_SOURCES_LIMIT}.
 *
 * @example
 * ```ts
 * import { rateLimitOf } from "./policy.ts";
 * import { deepEqual } from "node:assert/strict";
 *
 * deepEqual(rateLimitOf({ rate: 2.5 }), { rate: 2.5, burst: 3, maxSources: 65_536 });
 * ```
 */
export function rateLimitOf(options: PolicyOptions): RateLimit {
  const rate = options.rate ?? 0;
  if (!(rate >= 0 && Number.isFinite(rate))) {
    throw new RangeError(
      `Cannot use rate ${rate}: expected a number of datagrams per second, 0 or more`,
    );
  }
  return {
    rate,
    burst: checkCount(
      options.burst ?? Math.max(1, Math.ceil(rate)),
      "burst",
      { min: 1 },
    ),
    maxSources: checkCount(
      options.maxSources ?? DEFAULT_MAX_SOURCES,
      "max-sources",
      { min: 1, max: MAX_SOURCES_LIMIT },
    ),
  };
}

/**
 * Decides, per datagram, whether the echo server replies. Rules are checked
 * cheapest first; only a datagram that passes every other rule spends a
 * token, so refused traffic never eats a source's budget.
 * The rate limit is the {@linkcode RateLimiter} of `_rate_limiter.ts`.
 */
export class EchoPolicy {
  readonly #maxSize: number;
  readonly #allow: Cidr[];
  readonly #deny: Cidr[];
  readonly #local: (Address & { port: number; wildcard: boolean })[] = [];
  readonly #interfaces: Address[];
  readonly #broadcast: Address[];
  readonly #clock: () => number;
  readonly #counts = new Float64Array(VERDICTS.length);
  readonly #refusedPorts = new Uint8Array(65_536);
  readonly #rate: number;
  readonly #burst: number;
  readonly #maxSources: number;
  readonly #limiter: RateLimiter | undefined;

  /** Builds a policy; throws a `TypeError`/`RangeError` on a bad option. */
  constructor(options: PolicyOptions = {}) {
    const { rate, burst, maxSources } = rateLimitOf(options);
    this.#rate = rate;
    this.#burst = burst;
    this.#maxSources = maxSources;
    this.#maxSize = options.maxSize === undefined
      ? Infinity
      : checkCount(options.maxSize, "max-size", { min: 0 });
    this.#allow = (options.allow ?? []).map(toCidr);
    this.#deny = (options.deny ?? []).map(toCidr);
    for (const local of options.local ?? []) this.addLocal(local);
    this.#interfaces = (options.interfaceAddresses ?? []).map((text) =>
      toAddress(text, "interface address")
    );
    this.#broadcast = (options.broadcastAddresses ?? []).map((text) =>
      toAddress(text, "broadcast address")
    );
    this.#clock = options.clock ?? (() => performance.now());
    for (let port = 0; port < 1024; port++) this.#refusedPorts[port] = LOW_PORT;
    for (const port of REFUSED_SERVICE_PORTS) {
      this.#refusedPorts[port] = SERVICE_PORT;
    }
    this.#limiter = rate > 0
      ? new RateLimiter({
        rate,
        burst,
        maxSources,
        seed: options.seed ?? crypto.getRandomValues(new Uint32Array(1))[0]!,
      })
      : undefined;
  }

  /**
   * Adds one of the server's own sockets (an IP literal and its port), so
   * that a datagram claiming to come from it is dropped, never echoed.
   */
  addLocal(address: HostPort): void {
    const parsed = toAddress(address.hostname, "local address");
    WORDS.set(parsed.words);
    this.#local.push({
      ...parsed,
      port: address.port,
      wildcard: isUnspecifiedParsed(parsed.family),
    });
  }

  /** Datagrams per second per source; 0 when there is no limit. */
  get rate(): number {
    return this.#rate;
  }

  /** Datagrams a source may send at once. */
  get burst(): number {
    return this.#burst;
  }

  /** The most sources tracked at once. */
  get maxSources(): number {
    return this.#maxSources;
  }

  /** Bytes held by the source table; fixed when the policy is built. */
  get tableBytes(): number {
    return this.#limiter?.tableBytes ?? 0;
  }

  /**
   * Decides whether to echo a datagram of `size` bytes from `source`, at
   * `now` milliseconds on the policy's clock (read only when the rate limit
   * needs it, if not given), and counts the verdict.
   */
  decide(source: HostPort, size: number, now?: number): Verdict {
    const code = this.#decide(source, size, now);
    this.#counts[code]!++;
    return VERDICTS[code]!;
  }

  #decide(source: HostPort, size: number, now: number | undefined): number {
    if (size > this.#maxSize) return TOO_LARGE;
    const port = source.port;
    const refused = this.#refusedPorts[port];
    if (refused === undefined) return BAD_SOURCE;
    if (refused !== 0) return refused;
    const family = parseAddress(source.hostname);
    if (family === 0) return BAD_SOURCE;
    if (family === 4) {
      const top = WORDS[0]! >>> 24;
      // 0/8 "this network", 224/4 multicast, 240/4 reserved and broadcast.
      if (top === 0 || top >= 224) return BAD_SOURCE;
    } else if (WORDS[0]! >>> 24 === 0xff || isUnspecifiedParsed(6)) {
      return BAD_SOURCE;
    }
    for (let k = 0; k < this.#broadcast.length; k++) {
      if (sameAddress(family, this.#broadcast[k]!)) return BAD_SOURCE;
    }
    for (let k = 0; k < this.#local.length; k++) {
      const local = this.#local[k]!;
      if (local.port !== port) continue;
      if (
        local.wildcard
          ? this.#isHostAddress(family)
          : sameAddress(family, local)
      ) {
        return OWN_ADDRESS;
      }
    }
    for (let k = 0; k < this.#deny.length; k++) {
      if (inCidr(family, this.#deny[k]!)) return DENIED;
    }
    if (this.#allow.length > 0) {
      let allowed = false;
      for (let k = 0; k < this.#allow.length && !allowed; k++) {
        allowed = inCidr(family, this.#allow[k]!);
      }
      if (!allowed) return DENIED;
    }
    const limiter = this.#limiter;
    if (limiter === undefined) return ECHO;
    // Key IPv6 by /64: one host may hold a whole /64 and rotate through it.
    // The clock is read here only: most datagrams never reach a rate check.
    return limiter.spend(
        family,
        WORDS[0]!,
        family === 4 ? 0 : WORDS[1]!,
        now ?? this.#clock(),
      )
      ? ECHO
      : RATE_LIMITED;
  }

  #isHostAddress(family: 4 | 6): boolean {
    if (isLoopbackParsed(family)) return true;
    for (let k = 0; k < this.#interfaces.length; k++) {
      if (sameAddress(family, this.#interfaces[k]!)) return true;
    }
    return false;
  }

  /** Sources whose bucket is not full at `now`: the ones being limited or recently seen. */
  activeSources(now: number = this.#clock()): number {
    return this.#limiter?.activeSources(now) ?? 0;
  }

  /** Entries in the source table, never more than `maxSources`. */
  get trackedSources(): number {
    return this.#limiter?.trackedSources ?? 0;
  }

  /** How many datagrams got each verdict so far. */
  counts(): VerdictCounts {
    const counts = {} as VerdictCounts;
    for (let k = 0; k < VERDICTS.length; k++) {
      counts[VERDICTS[k]!] = this.#counts[k]!;
    }
    return counts;
  }
}
