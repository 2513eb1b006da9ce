/**
 * What the two I/O backends do alike: binding several sockets on one port,
 * working out the policy once, pausing after receive failures, and adding
 * up counters.
 *
 * @module
 */

import { formatAddress } from "../net/address.ts";
import { errorMessage } from "../net/errors.ts";
import type { HostDrops } from "../net/host_drops.ts";
import { refusedSources } from "./_interfaces.ts";
import {
  defaultRate,
  type EchoPolicy,
  type PolicyOptions,
} from "../policy/policy.ts";
import type {
  DropCause,
  DropCounts,
  EchoBackendOptions,
  EchoStats,
  ServerEvent,
  SocketStats,
} from "./types.ts";

/** Receive failures in a row after which a loop pauses between tries. */
export const RECEIVE_ERRORS_BEFORE_PAUSE = 3;

/** How long that pause lasts, in milliseconds: a socket that fails at once must not spin a core. */
export const RECEIVE_ERROR_PAUSE_MS = 50;

/** What {@linkcode serverPolicy} works the policy out from. */
export interface ServerSockets {
  /** Every bound socket. */
  addrs: readonly Deno.NetAddr[];
  /**
   * Per socket, the address the user asked for: the wildcard a socket was
   * expanded from, else the bound address.
   */
  asked: readonly string[];
  /** This host's interfaces, when they could be listed. */
  interfaces?: readonly Deno.NetworkInterfaceInfo[];
}

/**
 * The policy options a server runs with: the caller's, with every bound
 * socket as its own address, unless given the default rate for the
 * addresses asked for (a wildcard is not loopback, whatever it expanded
 * into), and, when the interfaces could be listed, their addresses (for
 * the own-address check of a wildcard socket) and directed broadcast and
 * network addresses (refused as sources). Worked out on the main thread, so a
 * batch Worker gets them without any permission of its own.
 */
export function serverPolicy(
  options: PolicyOptions | undefined,
  sockets: ServerSockets,
): PolicyOptions {
  const { addrs, asked, interfaces } = sockets;
  return {
    ...options,
    rate: options?.rate ?? defaultRate(asked),
    local: [
      ...(options?.local ?? []),
      ...addrs.map(({ hostname, port }) => ({ hostname, port })),
    ],
    ...(interfaces === undefined ? {} : {
      interfaceAddresses: [
        ...(options?.interfaceAddresses ?? []),
        ...interfaces.map(({ address }) => address),
      ],
      broadcastAddresses: [
        ...(options?.broadcastAddresses ?? []),
        ...refusedSources(interfaces),
      ],
    }),
  };
}

/** How {@linkcode bindAll} binds, reads the port of and closes one socket. */
export interface SocketHooks<T> {
  /** Binds one socket; throws as `Deno.listenDatagram` does. */
  bind(hostname: string, port: number): T;
  /** The port a bound socket got. */
  portOf(socket: T): number;
  /** Closes a bound socket. */
  close(socket: T): void;
}

/**
 * Binds one socket per host, all on one port (with port 0 the first picks
 * it). Closes those already bound and throws `Cannot bind HOST:PORT: reason`
 * (the cause kept) when one cannot be bound, unless `skip` says that host
 * may be left out (it is then reported to `skip` and skipped).
 */
export function bindAll<T>(
  options: Pick<EchoBackendOptions, "hostnames" | "port">,
  hooks: SocketHooks<T>,
  skip?: (hostname: string, error: unknown) => boolean,
): T[] {
  const sockets: T[] = [];
  let port = options.port;
  for (const hostname of options.hostnames) {
    try {
      const socket = hooks.bind(hostname, port);
      sockets.push(socket);
      port = hooks.portOf(socket);
    } catch (error) {
      if (skip?.(hostname, error)) continue;
      for (const socket of sockets) hooks.close(socket);
      throw new Error(
        `Cannot bind ${formatAddress({ hostname, port })}: ${
          errorMessage(error)
        }`,
        { cause: error },
      );
    }
  }
  return sockets;
}

/** The counters' fields for the kernel's drops `reading` gives (see `net/host_drops.ts`). */
export function hostDropFields(
  reading: HostDrops,
): Pick<Counters, "hostDrops" | "hostDropsUnknown"> {
  return reading.drops === null
    ? { hostDrops: null, hostDropsUnknown: reading.unknown }
    : { hostDrops: reading.drops };
}

/** Wraps `onEvent` so that an exception it throws (a broken log) cannot stop the echo. */
export function guardEvents(
  onEvent: ((event: ServerEvent) => void) | undefined,
): (event: ServerEvent) => void {
  return (event) => {
    try {
      onEvent?.(event);
    } catch {
      // A broken log (a closed stdout, say) must not stop the echo.
    }
  };
}

/** Counters of one socket or of a whole server, before `uptimeMs` is added. */
export type Counters = Omit<EchoStats, "uptimeMs">;

/** The part of `counters` that {@linkcode SocketStats} reports, for the socket at `local`. */
export function socketStats(
  local: Deno.NetAddr,
  counters: Counters,
): SocketStats {
  const { received, receivedBytes, echoed, echoedBytes, errorsBy } = counters;
  return {
    local: { ...local },
    received,
    receivedBytes,
    echoed,
    echoedBytes,
    errorsBy: { ...errorsBy },
    hostDrops: counters.hostDrops,
  };
}

/** Returns counters at zero. */
export function zeroCounters(): Counters {
  return {
    received: 0,
    receivedBytes: 0,
    echoed: 0,
    echoedBytes: 0,
    dropped: 0,
    droppedBy: {},
    errors: 0,
    errorsBy: { receive: 0, send: 0 },
    eventsDropped: 0,
    activeSources: 0,
    hostDrops: 0,
  };
}

/**
 * Adds `part` into `total`, drops and errors by reason included. `dropped`
 * and `errors` are worked out from `droppedBy` and `errorsBy`, so they
 * always agree and no loop keeps them by hand.
 */
export function addCounters(total: Counters, part: Counters): Counters {
  total.received += part.received;
  total.receivedBytes += part.receivedBytes;
  total.echoed += part.echoed;
  total.echoedBytes += part.echoedBytes;
  total.errorsBy.receive += part.errorsBy.receive;
  total.errorsBy.send += part.errorsBy.send;
  total.eventsDropped += part.eventsDropped;
  total.activeSources += part.activeSources;
  // One socket whose drops are unknown makes the server's unknown.
  if (total.hostDrops !== null) {
    if (part.hostDrops === null) {
      total.hostDrops = null;
      total.hostDropsUnknown = part.hostDropsUnknown;
    } else total.hostDrops += part.hostDrops;
  }
  for (const [reason, count] of Object.entries(part.droppedBy)) {
    const key = reason as DropCause;
    total.droppedBy[key] = (total.droppedBy[key] ?? 0) + count;
  }
  total.dropped = Object.values(total.droppedBy).reduce((a, b) => a + b, 0);
  total.errors = total.errorsBy.receive + total.errorsBy.send;
  return total;
}

/** A policy's drops by reason, only the reasons that occurred. */
export function dropCounts(policy: EchoPolicy): DropCounts {
  const counts: DropCounts = {};
  for (const [verdict, count] of Object.entries(policy.counts())) {
    if (verdict !== "echo" && count > 0) counts[verdict as DropCause] = count;
  }
  return counts;
}
