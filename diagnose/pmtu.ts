/**
 * The pmtu check of `client.ts --diagnose`: the largest datagram that gets
 * through with don't-fragment set, found by binary search on the payload
 * (`kernel/path_socket.ts` sets DF and probes past any MTU the kernel has
 * learnt); whether the path said so, with an ICMP "fragmentation needed" or
 * "packet too big", or dropped larger datagrams silently (a black hole);
 * the route MTU the kernel reports before and after; and the largest
 * payload that comes back with fragmentation allowed (for an echo server,
 * the payload sweep of `measure/sweep.ts`).
 *
 * The reply is as long as the request, so the search finds the smaller of
 * the two directions' limits. Only an ICMP message reaching the client
 * names a direction (the forward path, client to server); a silent drop
 * could be either.
 *
 * @module
 */

import { PathSocket } from "../kernel/path_socket.ts";
import { maxPayload } from "../net/payload.ts";
import { sweepPayload } from "../measure/sweep.ts";
import { exchange, Requests, smallestRequest } from "./_exchange.ts";
import type { Check, CheckContext, CheckResult } from "./types.ts";

/** IP and UDP header bytes, by family: a packet is its payload plus these. */
export const HEADER_BYTES = { 4: 28, 6: 48 } as const;

/** Tries per size before a silent size counts as dropped. */
const TRIES = 2;

/** What became of one size. */
interface Outcome {
  /** Payload bytes. */
  size: number;
  /**
   * `passed` (a reply came), `icmp` (an ICMP "too big" came), `local` (the
   * kernel would not send it: larger than the route), `silent` (nothing
   * came, every try), `refused` (ICMP port unreachable).
   */
  result: "passed" | "icmp" | "local" | "silent" | "refused";
  /** The MTU the ICMP message or the route gave. */
  mtu?: number;
  /** Who sent the ICMP message. */
  from?: string;
}

/** The largest passing size between `lo` (passed) and `hi`, by bisection. */
async function largest(
  lo: number,
  hi: number,
  attempt: (size: number) => Promise<Outcome>,
  options: { header: number; signal: AbortSignal },
): Promise<{ passed: number; failure?: Outcome }> {
  let failure: Outcome | undefined;
  const top = await attempt(hi);
  if (top.result === "passed") return { passed: hi };
  failure = top;
  let hinted = false;
  while (failure.size - lo > 1 && !options.signal.aborted) {
    let mid = Math.floor((lo + failure.size) / 2);
    const hint = (failure.mtu ?? 0) - options.header;
    if (hinted) mid = lo + 1;
    else if (hint > lo && hint < failure.size) mid = hint;
    const outcome = await attempt(mid);
    hinted = mid === hint && outcome.result === "passed";
    if (outcome.result === "passed") lo = mid;
    else failure = outcome;
  }
  return { passed: lo, failure };
}

function describe(
  outcome: Outcome,
  header: number,
): Record<string, unknown> {
  return {
    packet_bytes: outcome.size + header,
    payload_bytes: outcome.size,
    kind: outcome.result === "silent"
      ? "black-hole"
      : outcome.result === "icmp"
      ? "icmp"
      : outcome.result,
    icmp_mtu: outcome.result === "icmp" ? outcome.mtu ?? null : null,
    icmp_from: outcome.from ?? null,
    direction: outcome.result === "icmp"
      ? "forward"
      : outcome.result === "local"
      ? "local"
      : "unknown",
  };
}

/**
 * The pmtu check (see the module doc).
 *
 * @param context What every check is given.
 * @returns The path MTU, how its limit showed, and the largest payload
 * with fragmentation allowed.
 * @example
 * ```ts ignore
 * import { checkPmtu } from "./pmtu.ts";
 * const result = await checkPmtu(context);
 * console.log(result.findings.join("\n"));
 * ```
 */
export const checkPmtu: Check = async (context) => {
  if (!context.engine) {
    return {
      check: "pmtu",
      status: "skipped",
      reason:
        "setting don't-fragment and reading ICMP errors needs the engine's socket options: run with --allow-ffi on Linux",
      findings: [],
      data: {},
    };
  }
  const socket = PathSocket.open(context);
  try {
    return await search(context, socket);
  } finally {
    socket.close();
  }
};

async function search(
  context: CheckContext,
  socket: PathSocket,
): Promise<CheckResult> {
  const header = HEADER_BYTES[context.family];
  const family = `IPv${context.family}`;
  const requests = new Requests(context.stamp);
  const { signal } = context;
  let tried = 0;
  const attempt = async (size: number): Promise<Outcome> => {
    context.progress(`pmtu: trying ${size + header}-byte packets`);
    for (let n = 1; n <= TRIES && !signal.aborted; n++) {
      tried++;
      const answer = await exchange(socket, requests, size, {
        timeoutMs: context.replyTimeoutMs,
        signal,
      });
      if (answer.kind === "reply") return { size, result: "passed" };
      if (answer.kind === "too-big") {
        return { size, result: "local", mtu: socket.routeMtu() };
      }
      if (answer.kind === "icmp") {
        return answer.error.errno === 90
          ? {
            size,
            result: "icmp",
            mtu: answer.error.info,
            from: answer.error.offender,
          }
          : { size, result: "refused", from: answer.error.offender };
      }
    }
    return { size, result: "silent" };
  };
  const routeBefore = socket.routeMtu();
  socket.setDontFragment(true);
  const small = smallestRequest(context.stamp);
  const first = await attempt(small);
  if (first.result !== "passed") {
    return {
      check: "pmtu",
      status: "failed",
      reason: first.result === "refused"
        ? `the port is unreachable (ICMP from ${first.from})`
        : `no reply to a ${small + header}-byte packet`,
      findings: [],
      data: { family: context.family },
    };
  }
  // The route's own MTU is the likeliest answer: try it first.
  const limit = maxPayload(context.family === 4 ? "IPv4" : "IPv6");
  const guess = Math.min(Math.max(routeBefore - header, small), limit);
  let found: { passed: number; failure?: Outcome };
  const atGuess = await attempt(guess);
  if (atGuess.result === "passed") {
    found = guess < limit
      ? await largest(guess, limit, attempt, { header, signal })
      : { passed: guess };
  } else {
    found = await largest(
      small,
      guess,
      async (size) => size === guess ? atGuess : await attempt(size),
      { header, signal },
    );
  }
  const routeAfter = socket.routeMtu();
  const pathMtu = found.passed + header;
  const failure = found.failure;
  const findings = [
    failure
      ? `path MTU ${pathMtu} bytes (${family}): ${found.passed}-byte payloads come back with don't-fragment set, ${failure.size}-byte ones do not`
      : `no limit found: the largest UDP datagram (${pathMtu}-byte ${family} packets) comes back with don't-fragment set`,
  ];
  if (failure?.result === "icmp") {
    findings.push(
      `the path says so: ${failure.from} sent ICMP "${
        context.family === 4 ? "fragmentation needed" : "packet too big"
      }" with MTU ${failure.mtu}, on the forward path (client to server)`,
    );
  } else if (failure?.result === "silent") {
    findings.push(
      `black hole: packets of ${
        failure.size + header
      } bytes and more vanish without an ICMP message; which direction drops them cannot be told`,
    );
  } else if (failure?.result === "local") {
    findings.push(
      `the local route is the limit (MTU ${failure.mtu}): the path carried every size the route allows`,
    );
  } else if (failure?.result === "refused") {
    findings.push(
      `larger packets were refused (ICMP port unreachable from ${failure.from})`,
    );
  }
  findings.push(
    routeAfter === routeBefore
      ? `route MTU (kernel): ${routeBefore} bytes`
      : `route MTU (kernel): ${routeBefore} bytes before, ${routeAfter} after what the path said`,
  );
  const fragmented = await withFragments(context, socket, {
    from: found.passed,
    limit,
    attempt,
  });
  findings.push(
    fragmented.largest > 0
      ? `with fragmentation allowed: payloads up to ${fragmented.largest} bytes come back`
      : "with fragmentation allowed: no payload came back",
  );
  if (signal.aborted) findings.push("stopped before the search ended");
  return {
    check: "pmtu",
    status: "ran",
    findings,
    data: {
      family: context.family,
      header_bytes: header,
      path_mtu: pathMtu,
      largest_payload_df: found.passed,
      limit: failure ? describe(failure, header) : null,
      route_mtu_before: routeBefore,
      route_mtu_after: routeAfter,
      fragmented: {
        largest_payload: fragmented.largest,
        method: fragmented.method,
      },
      tries: tried,
    },
  };
}

/**
 * The largest payload that comes back with fragmentation allowed: the
 * payload sweep against an echo server, else the same bisection as with
 * don't-fragment, on the same socket with it cleared.
 */
async function withFragments(
  context: CheckContext,
  socket: PathSocket,
  search: {
    from: number;
    limit: number;
    attempt: (size: number) => Promise<Outcome>;
  },
): Promise<{ largest: number; method: "sweep" | "search" }> {
  context.progress("pmtu: with fragmentation allowed");
  if (!context.stamp) {
    const result = await sweepPayload({
      target: {
        hostname: context.hostname,
        port: context.port,
        family: context.family === 4 ? "IPv4" : "IPv6",
      },
      timeoutMs: context.replyTimeoutMs,
      signal: context.signal,
    });
    return { largest: result.maxPayload, method: "sweep" };
  }
  socket.setDontFragment(false);
  const found = await largest(search.from, search.limit, search.attempt, {
    header: 0,
    signal: context.signal,
  });
  return { largest: found.passed, method: "search" };
}
