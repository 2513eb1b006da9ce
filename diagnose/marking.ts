/**
 * The dscp and ecn checks of `client.ts --diagnose`: probes marked with a
 * set of codepoints (DSCP CS0, AF11, AF41, EF and CS6; ECN ECT(0), ECT(1)
 * and CE), each sent with that TOS or traffic class, and the marking each
 * reply came back with read from the socket (`kernel/path_socket.ts`).
 *
 * Against `server.ts --stamp` on the engine, each probe carries the Class
 * of Service TLV (RFC 8972 §4.7): the reflector writes the DSCP and ECN it
 * received, and marks its reply with the DSCP asked for (DSCP1) and the
 * ECN it received, so each direction is judged on its own. Against an echo
 * server, or a reflector that cannot read the marking (it returns the TLV
 * with U set), the reply carries the server's own marking: what came back
 * is reported as the round trip, and the directions cannot be told apart.
 *
 * @module
 */

import { type PathReply, PathSocket } from "../kernel/path_socket.ts";
import { STAMP_BASE_SIZE } from "../stamp/packet.ts";
import {
  type ClassOfService,
  FLAG_U,
  readClassOfService,
  readTlvs,
  TLV_CLASS_OF_SERVICE,
} from "../stamp/tlv.ts";
import { exchange, Requests } from "./_exchange.ts";
import type { Check, CheckContext, CheckResult } from "./types.ts";

/** The DSCPs the dscp check sends. */
export const DSCP_PROBES = [
  ["CS0", 0],
  ["AF11", 10],
  ["AF41", 34],
  ["EF", 46],
  ["CS6", 48],
] as const;

/** The ECN codepoints the ecn check sends (with DSCP CS0). */
export const ECN_PROBES = [["ECT(0)", 2], ["ECT(1)", 1], ["CE", 3]] as const;

const ECN_NAMES = ["Not-ECT", "ECT(1)", "ECT(0)", "CE"];

/** The name of a DSCP (`EF`, `AF41`, `CS6`), or its number. */
export function dscpName(dscp: number): string {
  if (dscp === 46) return "EF";
  if (dscp === 44) return "VA";
  if (dscp % 8 === 0) return `CS${dscp / 8}`;
  const drop = (dscp % 8) / 2;
  if (dscp % 2 === 0 && drop >= 1 && drop <= 3 && dscp < 40) {
    return `AF${Math.floor(dscp / 8)}${drop}`;
  }
  return `DSCP ${dscp}`;
}

type Kind = "dscp" | "ecn";

/** What a direction did to a codepoint. */
type Fate = "intact" | "bleached" | "ce-marked" | "rewritten" | "lost";

function fate(kind: Kind, sent: number, got: number | undefined): Fate {
  if (got === undefined) return "lost";
  if (got === sent) return "intact";
  if (kind === "ecn" && got === 3 && sent !== 0) return "ce-marked";
  if (got === 0) return "bleached";
  return "rewritten";
}

function nameOf(kind: Kind, value: number): string {
  return kind === "dscp" ? dscpName(value) : ECN_NAMES[value]!;
}

interface Probe {
  name: string;
  sent: number;
  /** What the reflector received (Class of Service TLV). */
  arrived?: number;
  /** What the reflector marked its reply with. */
  reflectorSent?: number;
  /** What came back. */
  returned?: number;
}

/** The Class of Service TLV of a reply; `"unsupported"` when returned with U. */
function classOfService(
  bytes: Uint8Array,
): ClassOfService | "unsupported" | undefined {
  for (const tlv of readTlvs(bytes, STAMP_BASE_SIZE)) {
    if (tlv.type !== TLV_CLASS_OF_SERVICE) continue;
    if (bytes[tlv.offset - 4]! & FLAG_U) return "unsupported";
    return readClassOfService(bytes, tlv);
  }
  return undefined;
}

/** What a direction did overall, in words: "keeps DSCP", "bleaches ECN (…)". */
function verdict(kind: Kind, pairs: [number, number | undefined][]): {
  summary: string;
  words: string;
} {
  const label = kind.toUpperCase();
  const changed = pairs.filter(([sent, got]) =>
    fate(kind, sent, got) !== "intact"
  );
  if (changed.length === 0) {
    return { summary: "keeps", words: `keeps ${label}` };
  }
  const fates = new Set(changed.map(([sent, got]) => fate(kind, sent, got)));
  const summary = fates.size === 1 ? [...fates][0]! : "rewritten";
  const word = summary === "bleached"
    ? "bleaches"
    : summary === "ce-marked"
    ? "CE-marks"
    : summary === "lost"
    ? "loses"
    : "rewrites";
  const list = changed.map(([sent, got]) =>
    `${nameOf(kind, sent)} to ${
      got === undefined ? "nothing" : nameOf(kind, got)
    }`
  ).join(", ");
  return { summary, words: `${word} ${label} (${list})` };
}

function makeCheck(kind: Kind): Check {
  return async (context) => {
    if (!context.engine) {
      return {
        check: kind,
        status: "skipped",
        reason:
          "setting and reading the TOS or traffic class needs the engine's socket options: run with --allow-ffi on Linux",
        findings: [],
        data: {},
      };
    }
    const socket = PathSocket.open(context);
    try {
      return await run(kind, context, socket);
    } finally {
      socket.close();
    }
  };
}

async function run(
  kind: Kind,
  context: CheckContext,
  socket: PathSocket,
): Promise<CheckResult> {
  const requests = new Requests(context.stamp);
  const size = context.stamp ? STAMP_BASE_SIZE + 8 : 64;
  const probes: Probe[] = [];
  let supported = context.stamp;
  for (const [name, value] of kind === "dscp" ? DSCP_PROBES : ECN_PROBES) {
    if (context.signal.aborted) break;
    context.progress(`${kind}: probing ${name}`);
    const tos = kind === "dscp" ? value << 2 : value;
    socket.setMarking(tos);
    let reply: PathReply | undefined;
    for (let n = 0; n < 3 && reply === undefined; n++) {
      const answer = await exchange(socket, requests, size, {
        timeoutMs: context.replyTimeoutMs,
        signal: context.signal,
        tlvs: context.stamp ? ["class-of-service"] : undefined,
        dscp1: tos >> 2,
      });
      if (answer.kind === "reply") reply = answer.reply;
    }
    const probe: Probe = { name, sent: value };
    if (reply !== undefined && reply.tos >= 0) {
      probe.returned = kind === "dscp" ? reply.tos >> 2 : reply.tos & 3;
    }
    const cos = reply && context.stamp
      ? classOfService(reply.bytes)
      : undefined;
    if (cos === "unsupported" || (reply && context.stamp && !cos)) {
      supported = false;
    } else if (cos !== undefined) {
      probe.arrived = kind === "dscp" ? cos.dscp2 : cos.ecn;
      if (kind === "ecn") probe.reflectorSent = cos.ecn;
      else if (cos.rp === 0) probe.reflectorSent = cos.dscp1;
    }
    probes.push(probe);
  }
  if (probes.every((probe) => probe.returned === undefined)) {
    return {
      check: kind,
      status: "failed",
      reason: "no reply to the marked probes",
      findings: [],
      data: {},
    };
  }
  const findings: string[] = [];
  const label = kind.toUpperCase();
  const show = (value: number | undefined) =>
    value === undefined ? "nothing" : nameOf(kind, value);
  let data: Record<string, unknown>;
  if (supported) {
    for (const probe of probes) {
      const forward = fate(kind, probe.sent, probe.arrived);
      const back = probe.reflectorSent === undefined
        ? "unknown"
        : fate(kind, probe.reflectorSent, probe.returned);
      findings.push(
        `${probe.name}: forward ${forward}${
          forward === "intact" ? "" : ` (${show(probe.arrived)} arrived)`
        }, return ${back}${
          back === "intact" || back === "unknown"
            ? ""
            : ` (${show(probe.reflectorSent)} sent, ${
              show(probe.returned)
            } came back)`
        }`,
      );
    }
    const forward = verdict(kind, probes.map((p) => [p.sent, p.arrived]));
    const back = verdict(
      kind,
      probes.filter((p) => p.reflectorSent !== undefined).map((
        p,
      ) => [p.reflectorSent!, p.returned]),
    );
    findings.push(`forward path (client to server): ${forward.words}`);
    findings.push(`return path (server to client): ${back.words}`);
    data = {
      view: "directional",
      forward: forward.summary,
      return: back.summary,
    };
  } else {
    for (const probe of probes) {
      const trip = fate(kind, probe.sent, probe.returned);
      findings.push(
        `${probe.name}: round trip ${trip}${
          trip === "intact" ? "" : ` (${show(probe.returned)} came back)`
        }`,
      );
    }
    findings.push(
      context.stamp
        ? `the reflector can neither read nor set the ${label} marking (server.ts --stamp on sockets; --io batch can): this is the round trip, and the directions cannot be told apart`
        : `an echo server's reply carries its own ${label} marking: this is the round trip, and the directions cannot be told apart`,
    );
    data = {
      view: "round-trip",
      round_trip: verdict(kind, probes.map((p) => [p.sent, p.returned]))
        .summary,
    };
  }
  data.probes = probes.map((probe) => ({
    name: probe.name,
    sent: probe.sent,
    arrived: probe.arrived ?? null,
    reflector_sent: probe.reflectorSent ?? null,
    returned: probe.returned ?? null,
  }));
  return { check: kind, status: "ran", findings, data };
}

/**
 * The dscp check (see the module doc).
 *
 * @param context What every check is given.
 * @returns Per codepoint, what arrived and what came back; per direction,
 * whether the marking was kept, bleached or rewritten.
 * @example
 * ```ts ignore
 * import { checkDscp } from "./marking.ts";
 * console.log((await checkDscp(context)).findings.join("\n"));
 * ```
 */
export const checkDscp: Check = makeCheck("dscp");

/**
 * The ecn check (see the module doc).
 *
 * @param context What every check is given.
 * @returns Per ECN codepoint, what arrived and what came back; per
 * direction, whether ECN was kept, bleached or CE-marked.
 * @example
 * ```ts ignore
 * import { checkEcn } from "./marking.ts";
 * console.log((await checkEcn(context)).findings.join("\n"));
 * ```
 */
export const checkEcn: Check = makeCheck("ecn");
