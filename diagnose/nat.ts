/**
 * The `nat` check of `client.ts --diagnose`: is there a NAT on the way to
 * the reflector, and how long does it keep a UDP binding while idle?
 *
 * A NAT shows in the RFC 8972 Location TLV: the reflector returns the
 * source address and port it saw, and they are not this host's. Its
 * binding timeout is then measured from the inbound side, as RFC 5780
 * §4.6 does: the reflector is asked, with our Delayed Reply TLV
 * (`stamp/delayed.ts`), to answer only after an idle delay D, and a reply
 * that never comes means the binding expired before D. Watching the source
 * port instead is not enough: Linux masquerade keeps the port when it
 * makes a new binding. One request is outstanding at a time, since any
 * packet refreshes the binding. D doubles from 1 s until a reply is lost
 * or `--nat-max` (or the reflector's ceiling) is reached, then a binary
 * search narrows the bracket to within 1 s or a tenth of its top, whichever
 * is wider; a lost reply is asked again once before it counts, so a single
 * lost packet does not pass for an expiry.
 *
 * @module
 */

import { checkPath } from "../measure/_location.ts";
import {
  readReflectorPacket,
  SOFTWARE_SENDER_ERROR,
  STAMP_BASE_SIZE,
  writeSenderPacket,
} from "../stamp/packet.ts";
import {
  DELAYED_REPLY_TLV_SIZE,
  type DelayedReplySeen,
  readDelayedReply,
  writeDelayedReplyTlv,
} from "../stamp/delayed.ts";
import {
  FLAG_M,
  FLAG_U,
  readAddress,
  readTlvs,
  requestTlvSize,
  TLV_LOCATION,
  writeRequestTlvs,
} from "../stamp/tlv.ts";
import type { Check, CheckContext, CheckResult } from "./types.ts";

/** RFC 4787 REQ-5: a binding must not expire in less than this idle time. */
export const RFC4787_MIN_SECONDS = 120;

/** The first idle delay tried, ms. */
const FIRST_DELAY_MS = 1000;

/** The bracket is narrow enough at this width, ms, or a tenth of its top. */
const TOLERANCE_MS = 1000;

/** Delays are asked for in steps of this many ms. */
const STEP_MS = 100;

/** The size of each request: the base, the Delayed Reply and Location TLVs. */
const REQUEST_SIZE = STAMP_BASE_SIZE + DELAYED_REPLY_TLV_SIZE +
  requestTlvSize("location");

/** Where a packet came from, as this host or the reflector saw it. */
export interface Endpoint {
  /** The IP address. */
  hostname: string;
  /** The UDP port. */
  port: number;
}

/** What one request brought back. */
interface Answer {
  /** The source the reflector saw, when it returned the Location TLV. */
  source?: Endpoint;
  /** The reflector's Delayed Reply TLV. */
  delayed?: DelayedReplySeen;
}

/** A STAMP Session-Sender with one request outstanding at a time. */
class Prober {
  readonly #conn: Deno.DatagramConn;
  readonly #target: Deno.NetAddr;
  readonly #ssid = Math.floor(Math.random() * 0xffff) + 1;
  #seq = 0;
  #waiting: { seq: number; done: (answer: Answer) => void } | undefined;

  constructor(context: CheckContext) {
    this.#conn = Deno.listenDatagram({
      transport: "udp",
      hostname: context.family === 6 ? "::" : "0.0.0.0",
      port: 0,
    });
    this.#target = {
      transport: "udp",
      hostname: context.hostname,
      port: context.port,
    };
    this.#listen();
  }

  /** The socket's port. */
  get port(): number {
    return (this.#conn.addr as Deno.NetAddr).port;
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // Closed already.
    }
  }

  async #listen(): Promise<void> {
    const buffer = new Uint8Array(65_536);
    for (;;) {
      let data: Uint8Array;
      try {
        [data] = await this.#conn.receive(buffer);
      } catch {
        return;
      }
      const packet = readReflectorPacket(data);
      const waiting = this.#waiting;
      // A reply to an earlier request (one that came too late) is no answer.
      if (packet === undefined || waiting?.seq !== packet.senderSeq) continue;
      this.#waiting = undefined;
      waiting.done(readAnswer(data));
    }
  }

  /**
   * Sends one request asking for `delayMs` and waits up to `delayMs` and
   * `patienceMs` more for its reply; `undefined` when none came.
   */
  async ask(
    delayMs: number,
    patienceMs: number,
    signal: AbortSignal,
  ): Promise<Answer | undefined> {
    const seq = this.#seq++;
    const request = new Uint8Array(REQUEST_SIZE);
    writeSenderPacket(request, {
      seq,
      timestampMs: Date.now(),
      errorEstimate: SOFTWARE_SENDER_ERROR,
      ssid: this.#ssid,
    });
    const at = writeDelayedReplyTlv(request, STAMP_BASE_SIZE, delayMs);
    writeRequestTlvs(request, at, ["location"]);
    const { promise, resolve } = Promise.withResolvers<Answer | undefined>();
    this.#waiting = { seq, done: resolve };
    const timer = setTimeout(() => resolve(undefined), delayMs + patienceMs);
    const stop = () => resolve(undefined);
    signal.addEventListener("abort", stop, { once: true });
    try {
      await this.#conn.send(request, this.#target);
      return await promise;
    } catch {
      return undefined;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", stop);
      if (this.#waiting?.seq === seq) this.#waiting = undefined;
    }
  }
}

/** The Location and Delayed Reply TLVs of a reply. */
function readAnswer(data: Uint8Array): Answer {
  const answer: Answer = { delayed: readDelayedReply(data) };
  for (const tlv of readTlvs(data, STAMP_BASE_SIZE)) {
    if (tlv.type !== TLV_LOCATION || tlv.malformed || tlv.length < 4) continue;
    if (tlv.flags & (FLAG_U | FLAG_M)) continue;
    const port = new DataView(data.buffer, data.byteOffset).getUint16(
      tlv.offset + 2,
    );
    const value = data.subarray(0, tlv.offset + tlv.length);
    for (const sub of readTlvs(value, tlv.offset + 4)) {
      const address = readAddress(value, sub);
      if (address?.direction === "source") {
        answer.source = { hostname: address.hostname, port };
      }
    }
  }
  return answer;
}

/** Seconds for a finding: tenths below 10 s, whole seconds above. */
function seconds(ms: number): string {
  const s = ms / 1000;
  return s < 10 ? String(Math.round(s * 10) / 10) : String(Math.round(s));
}

/** What the binding-timeout search found. */
export interface Bracket {
  /** The longest idle delay whose reply came, ms (0: none did). */
  openMs: number;
  /** The shortest idle delay whose reply was lost, ms; `undefined`: none was. */
  expiredMs: number | undefined;
  /** The search was stopped before it ended. */
  stopped: boolean;
  /** The reflector would not hold a reply (busy), which stopped the search. */
  refused?: boolean;
}

/**
 * Searches the binding timeout: doubles the idle delay from 1 s until a
 * reply is lost or `ceilingMs` is reached, then halves the bracket.
 */
async function searchTimeout(
  prober: Prober,
  context: CheckContext,
  ceilingMs: number,
): Promise<Bracket> {
  const bracket: Bracket = { openMs: 0, expiredMs: undefined, stopped: false };
  const { signal } = context;
  const open = async (delayMs: number): Promise<boolean | undefined> => {
    const known = bracket.expiredMs === undefined
      ? `open after ${seconds(bracket.openMs)} s so far`
      : `between ${seconds(bracket.openMs)} and ${
        seconds(bracket.expiredMs)
      } s so far`;
    for (let attempt = 0; attempt < 2; attempt++) {
      if (signal.aborted) return undefined;
      context.progress(
        `nat: waiting ${seconds(delayMs)} s idle for the reply (${known})`,
      );
      const answer = await prober.ask(
        delayMs,
        context.replyTimeoutMs,
        signal,
      );
      if (answer?.delayed === undefined) continue;
      if (answer.delayed.delayMs === delayMs) return true;
      // Answered at once: the reflector's table of held replies is full.
      bracket.refused = true;
      return undefined;
    }
    return signal.aborted ? undefined : false;
  };
  let delayMs = Math.min(FIRST_DELAY_MS, ceilingMs);
  for (;;) {
    const result = await open(delayMs);
    if (result === undefined) return { ...bracket, stopped: true };
    if (!result) {
      bracket.expiredMs = delayMs;
      break;
    }
    bracket.openMs = delayMs;
    if (delayMs >= ceilingMs) return bracket;
    delayMs = Math.min(2 * delayMs, ceilingMs);
  }
  for (;;) {
    const low: number = bracket.openMs;
    const high: number = bracket.expiredMs!;
    if (high - low <= Math.max(TOLERANCE_MS, high / 10)) return bracket;
    const middle: number = Math.round((low + high) / 2 / STEP_MS) * STEP_MS;
    if (middle <= low || middle >= high) return bracket;
    const result = await open(middle);
    if (result === undefined) return { ...bracket, stopped: true };
    if (result) bracket.openMs = middle;
    else bracket.expiredMs = middle;
  }
}

/**
 * The findings and JSON of a bracket found with `ceilingMs` as the longest
 * delay the search could try.
 */
export function describeBracket(
  bracket: Bracket,
  ceilingMs: number,
): { findings: string[]; data: Record<string, unknown> } {
  const findings: string[] = [];
  const { openMs, expiredMs } = bracket;
  const min = RFC4787_MIN_SECONDS * 1000;
  let meets: boolean | undefined;
  if (expiredMs === undefined && openMs === 0) {
    // Stopped before any held reply came back: nothing to bracket.
    findings.push("binding timeout not measured: no delayed reply came back");
  } else if (expiredMs === undefined) {
    findings.push(
      `binding still open after ${seconds(openMs)} s idle (the longest tried)`,
    );
    meets = openMs >= min ? true : undefined;
  } else if (openMs === 0) {
    findings.push(`binding expires within ${seconds(expiredMs)} s idle`);
    meets = expiredMs > min ? undefined : false;
  } else {
    findings.push(
      `binding expires after ${seconds(openMs)}–${seconds(expiredMs)} s idle`,
    );
    meets = openMs >= min ? true : expiredMs <= min ? false : undefined;
  }
  // What was tried, not what could have been: a stopped search never
  // reached its ceiling.
  const longestMs = expiredMs ?? openMs;
  if (expiredMs !== undefined || openMs > 0) {
    findings.push(
      meets === true
        ? `meets RFC 4787's ${RFC4787_MIN_SECONDS} s minimum`
        : meets === false
        ? `shorter than RFC 4787's ${RFC4787_MIN_SECONDS} s minimum`
        : longestMs > min
        ? `cannot tell against RFC 4787's ${RFC4787_MIN_SECONDS} s minimum: the bracket contains it`
        : `not tried up to RFC 4787's ${RFC4787_MIN_SECONDS} s minimum (longest idle tried ${
          seconds(longestMs)
        } s)`,
    );
  }
  if (bracket.refused) {
    findings.push(
      "search stopped: the reflector would not hold a reply (too many held)",
    );
  } else if (bracket.stopped) findings.push("search stopped before it ended");
  return {
    findings,
    data: {
      binding_open_seconds: openMs / 1000,
      binding_expired_seconds: expiredMs === undefined
        ? null
        : expiredMs / 1000,
      ceiling_seconds: ceilingMs / 1000,
      meets_rfc4787: meets ?? null,
      stopped: bracket.stopped,
    },
  };
}

/**
 * The `nat` check: detects a NAT with the Location TLV and, when there is
 * one, brackets its UDP binding timeout with delayed replies. Needs
 * `server.ts --stamp` (the Location and Delayed Reply TLVs); against
 * another peer it is skipped with the reason.
 *
 * @param context The reflector, the signal, the progress line and `natMaxSeconds`.
 * @returns "ran" with "no NAT", or the NAT and its binding timeout bracket;
 * "skipped" when the peer or the permissions cannot support the check;
 * "failed" when the reflector did not answer.
 * @example Run against a STAMP reflector
 * ```ts ignore
 * import { checkNat } from "./nat.ts";
 *
 * const result = await checkNat({
 *   hostname: "192.0.2.1", port: 862, family: 4, engine: false, stamp: true,
 *   signal: AbortSignal.timeout(600_000), progress: console.error,
 *   replyTimeoutMs: 1000, natMaxSeconds: 300,
 * });
 * console.log(result.findings.join("\n"));
 * ```
 */
export const checkNat: Check = async (context) => {
  const failed = (reason: string): CheckResult => ({
    check: "nat",
    status: "failed",
    reason,
    findings: [],
    data: {},
  });
  // What the peer or the permissions cannot support is skipped: the
  // framework fails it when it was named.
  const skipped = (reason: string) => ({
    ...failed(reason),
    status: "skipped" as const,
  });
  if (!context.stamp) {
    return skipped(
      "needs a STAMP reflector that returns the Location TLV (server.ts --stamp)",
    );
  }
  const prober = new Prober(context);
  try {
    let first: Answer | undefined;
    for (let attempt = 0; attempt < 3 && first === undefined; attempt++) {
      if (context.signal.aborted) return failed("stopped");
      first = await prober.ask(0, context.replyTimeoutMs, context.signal);
    }
    if (first === undefined) return failed("no reply from the reflector");
    if (first.source === undefined) {
      return skipped(
        "the reflector did not return the Location TLV (server.ts --stamp does)",
      );
    }
    const path = checkPath(
      {
        source: first.source,
        destination: { hostname: "", port: context.port },
      },
      { hostname: context.family === 6 ? "::" : "0.0.0.0", port: prober.port },
      { hostname: context.hostname, port: context.port },
    );
    const rewrites = {
      address: path.sourceAddressRewritten,
      port: path.sourcePortRewritten,
    };
    const seen = `${first.source.hostname} port ${first.source.port}`;
    const data: Record<string, unknown> = {
      source_seen: first.source,
      local_port: prober.port,
      address_rewritten: rewrites.address ?? null,
      port_rewritten: rewrites.port,
    };
    if (!rewrites.port && rewrites.address === undefined) {
      return skipped(
        `cannot tell whether the address was rewritten: ${
          path.unknown ?? "the address this host sent from is not known"
        }`,
      );
    }
    if (!rewrites.port && !rewrites.address) {
      return {
        check: "nat",
        status: "ran",
        findings: [`no NAT: the reflector saw this host's ${seen}`],
        data: { ...data, nat: false },
      };
    }
    const what = [
      rewrites.address ? "address" : undefined,
      rewrites.port ? `port (was ${prober.port})` : undefined,
    ].filter((part) => part !== undefined).join(" and ");
    // A rewritten port with the address unknown must not read as "the
    // address was kept".
    const addressUnknown = rewrites.address === undefined
      ? "; whether the address was too cannot be told: this host's address on the route is not known (run with --allow-ffi)"
      : "";
    const findings = [
      `NAT: the reflector saw ${seen}; ${what} rewritten${addressUnknown}`,
    ];
    const delayed = first.delayed;
    if (delayed === undefined || delayed.unrecognized || delayed.maxMs === 0) {
      findings.push(
        "binding timeout not measured: the reflector does not grant delayed replies (server.ts --stamp does)",
      );
      return {
        check: "nat",
        status: "ran",
        findings,
        data: { ...data, nat: true, binding: null },
      };
    }
    const askedMs = Math.round(context.natMaxSeconds * 1000);
    const ceilingMs = Math.min(askedMs, delayed.maxMs);
    if (ceilingMs < askedMs) {
      findings.push(
        `the reflector holds a reply ${seconds(delayed.maxMs)} s at most`,
      );
    }
    const bracket = await searchTimeout(prober, context, ceilingMs);
    const described = describeBracket(bracket, ceilingMs);
    return {
      check: "nat",
      status: "ran",
      findings: [...findings, ...described.findings],
      data: { ...data, nat: true, binding: described.data },
    };
  } finally {
    prober.close();
  }
};
