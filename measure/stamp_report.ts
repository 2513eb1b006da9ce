/**
 * The STAMP part of a ping or load summary (`client.ts --stamp`): one-way
 * delays each way with their IPDV, the reflector's time, the clock offset
 * estimate, directional loss from a stateful reflector, the TTL and what
 * the Location TLV says of the path; as text lines and as the JSON fields
 * `one_way_ms`, `reflector_ms`, `offset_ms` and `stamp`.
 *
 * @module
 */

import { formatAddress, type HostPort } from "../net/address.ts";
import { checkPath, type PathCheck } from "./_location.ts";
import { formatMs } from "./report.ts";
import { summaryJson } from "./report_json.ts";
import type { EngineFormat } from "./run.ts";
import type { RunResult } from "./types.ts";
import { meanIpdv, summarize, type Summary } from "./stats.ts";
import {
  minimumStampSize,
  StampFlowLog,
  stampFormat,
  type StampReply,
} from "./stamp_probe.ts";
import type { ProbeFormat } from "./_common.ts";
import type { RequestTlv } from "../stamp/tlv.ts";
import { parseNumberFlag, UsageError } from "../cli/flags.ts";
import { REQUEST_TLVS } from "./stamp_probe.ts";

export { REQUEST_TLVS } from "./stamp_probe.ts";
export type { PathCheck } from "./_location.ts";

const STAMP_PROBE_URL = new URL("./stamp_probe.ts", import.meta.url).href;

/** Options of a STAMP run. */
export interface StampRunOptions {
  /** `--ssid`: the Session-Sender Identifier. */
  ssid: number;
  /** `--stamp-tlv`: TLVs to ask for. */
  tlvs: readonly RequestTlv[];
  /**
   * `--reflector-stateful`: the reflector keeps its own sequence numbers,
   * so replies that carry the sender's mean nothing was lost forward.
   */
  reflectorStateful?: boolean;
}

/** The STAMP figures of a run. */
export interface StampSummary {
  /** Forward delay T2 − T1, ms, and its mean IPDV. */
  forward: Summary & { ipdv: number };
  /** Backward delay T4 − T3, ms, and its mean IPDV. */
  backward: Summary & { ipdv: number };
  /** Reflector time T3 − T2, ms. */
  reflector: Summary;
  /** Clock offset estimate ((T2 − T1) + (T3 − T4)) / 2, ms. */
  offset: Summary;
  /**
   * Loss each way, and probes lost after the last reply, which either way
   * could have lost; `undefined` when it cannot be told (`lossUnknown` says why).
   */
  loss: { forward: number; backward: number; undetermined: number } | undefined;
  /** Why the loss each way is not known. */
  lossUnknown: string | undefined;
  /** Whether the reflector keeps its own sequence numbers: seen, or asserted by `--reflector-stateful`. */
  stateful: boolean;
  /**
   * Why the one-way, reflector and offset figures are unavailable (the
   * reflector's timestamps cannot be right), or `undefined`.
   */
  oneWayUnavailable: string | undefined;
  /** TTLs the reflector saw; `undefined` when it did not tell (0). */
  ttl: { min: number; max: number } | undefined;
  /** From the Location TLV, when asked and returned. */
  path: PathCheck | undefined;
  /** Timestamp Information TLV: sync source in, method in, sync source out, method out. */
  timestampInfo: number[] | undefined;
  /** TLVs and sub-TLVs returned with the U flag. */
  unrecognized: number;
  /** TLVs and sub-TLVs returned with the M flag. */
  malformed: number;
  /** Replies of another length than sent. */
  sizeMismatch: number;
  /** Replies with MBZ bytes set. */
  mbzNonzero: number;
  /** The reflector's timestamp format. */
  reflectorFormat: string | undefined;
  /** The reflector's error estimate, ms. */
  reflectorErrorMs: number;
  /** Replies that were the request unchanged: the target is a plain echo server. */
  plainEcho: number;
  /**
   * Intact first replies whose STAMP fields reached the figures above; fewer
   * than `received` when the engine's output fell behind and dropped some.
   */
  measured: number;
  /** Intact first replies in all, as the run counted them. */
  received: number;
}

/**
 * The STAMP sender of `--stamp`: `--ssid` (random when not given),
 * `--stamp-tlv` and `--reflector-stateful` checked, and the probe size
 * against the base packet and the TLVs asked for: `-s` (`values.size`)
 * when given, else `run.size` grows to fit them. Throws a UsageError.
 */
export function stampRunOf(
  values: {
    "stamp-tlv"?: string;
    ssid?: string;
    size?: string;
    "reflector-stateful"?: boolean;
  },
  run: { size?: number },
): StampRun {
  const text = values["stamp-tlv"];
  const tlvs = text === undefined ? [] : text.split(",");
  for (const [k, tlv] of tlvs.entries()) {
    if (!(REQUEST_TLVS as readonly string[]).includes(tlv)) {
      throw new UsageError(
        `Cannot use --stamp-tlv "${tlv}": expected ${
          REQUEST_TLVS.slice(0, -1).join(", ")
        } or ${REQUEST_TLVS.at(-1)}`,
      );
    }
    if (tlvs.indexOf(tlv) !== k) {
      throw new UsageError(
        `Cannot use --stamp-tlv "${text}": ${tlv} is given twice`,
      );
    }
  }
  const stamp = new StampRun({
    ssid: parseNumberFlag(values, "ssid", { ssid: { min: 0, max: 65535 } }) ??
      crypto.getRandomValues(new Uint16Array(1))[0]!,
    tlvs: tlvs as RequestTlv[],
    reflectorStateful: values["reflector-stateful"] === true,
  });
  const size = run.size ?? 0;
  if (values.size === undefined) {
    run.size = Math.max(size, stamp.minimumSize);
  } else if (size < stamp.minimumSize) {
    throw new UsageError(
      `Cannot send ${size}-byte STAMP packets${
        tlvs.length > 0 ? ` with ${tlvs.join(", ")}` : ""
      }: -s must be at least ${stamp.minimumSize}`,
    );
  }
  return stamp;
}

/** A STAMP run's formats (one per flow) and their logs. */
export class StampRun {
  readonly logs: StampFlowLog[] = [];
  readonly options: StampRunOptions;

  /** Throws RangeError for an SSID out of 0 to 65535. */
  constructor(options: StampRunOptions) {
    if (
      !Number.isInteger(options.ssid) || options.ssid < 0 ||
      options.ssid > 0xffff
    ) {
      throw new RangeError(
        `Cannot use SSID ${options.ssid}: expected 0 to 65535`,
      );
    }
    this.options = options;
  }

  /** The smallest probe size for the TLVs asked. */
  get minimumSize(): number {
    return minimumStampSize(this.options.tlvs);
  }

  /** The probe format of flow `flow`, for `FlowRunOptions.format`. */
  format = (flow: number, session: number): ProbeFormat => {
    const log = new StampFlowLog();
    this.logs[flow] = log;
    return stampFormat({ ...this.options, session, log });
  };

  /** The same for the kernel engine's Worker, for `FlowRunOptions.engineFormat`. */
  readonly engineFormat: EngineFormat = {
    module: STAMP_PROBE_URL,
    options: (flow: number, session: number) => {
      this.logs[flow] = new StampFlowLog();
      return { ...this.options, session };
    },
    onDetail: (flow: number, seq: number, detail: unknown) =>
      this.logs[flow]?.add(seq, detail as StampReply),
  };

  /** The per-reply text of probe `seq`: the one-way delays, or "" without them. */
  describe(flow: number, seq: number): string {
    const log = this.logs[flow];
    const forward = log?.forward[seq];
    if (log === undefined || forward === undefined) return "";
    return ` fwd=${formatMs(forward)} bwd=${
      formatMs(log.backward[seq]!)
    } refl=${formatMs(log.reflector[seq]!)} ms`;
  }

  /** The figures of the run. */
  summary(result: RunResult, target: HostPort): StampSummary {
    const all = (pick: (log: StampFlowLog) => number[]) =>
      this.logs.flatMap((log) => pick(log).filter((v) => v !== undefined));
    // A NaN between flows keeps IPDV pairs inside one flow.
    const bySeq = (pick: (log: StampFlowLog) => number[]) =>
      this.logs.flatMap((log, k) => [
        ...Array.from(
          { length: result.flows[k]?.sent ?? 0 },
          (_, seq) => pick(log)[seq] ?? NaN,
        ),
        NaN,
      ]);
    const stateful = this.options.reflectorStateful === true ||
      this.logs.some((log) => log.reflectorCounts);
    const split = directionalLoss(this.logs, result, stateful);
    const bad = this.logs.find((log) => log.badTimestamps > 0);
    const badCount = this.logs.reduce((sum, log) => sum + log.badTimestamps, 0);
    const oneWayUnavailable = bad === undefined
      ? undefined
      : `${bad.timestampProblem} in ${badCount} of ${
        this.logs.reduce((sum, log) => sum + log.replies, 0)
      } replies`;
    const ttls = this.logs.flatMap((log) => log.ttls);
    const first = this.logs.find((log) => log.reflectorFormat !== undefined);
    const located = this.logs.findIndex((log) => log.location !== undefined);
    return {
      forward: {
        ...summarize(all((log) => log.forward)),
        ipdv: meanIpdv(bySeq((log) => log.forward)),
      },
      backward: {
        ...summarize(all((log) => log.backward)),
        ipdv: meanIpdv(bySeq((log) => log.backward)),
      },
      reflector: summarize(all((log) => log.reflector)),
      offset: summarize(all((log) => log.offset)),
      loss: split.loss,
      lossUnknown: split.unknown,
      stateful,
      oneWayUnavailable,
      ttl: ttls.length === 0
        ? undefined
        : { min: Math.min(...ttls), max: Math.max(...ttls) },
      path: located < 0 ? undefined : checkPath(
        this.logs[located]!.location!,
        result.flows[located]!.local,
        target,
      ),
      timestampInfo: this.logs.find((log) => log.timestampInfo)?.timestampInfo,
      unrecognized: this.logs.reduce((sum, log) => sum + log.unrecognized, 0),
      malformed: this.logs.reduce((sum, log) => sum + log.malformed, 0),
      sizeMismatch: this.logs.reduce((sum, log) => sum + log.sizeMismatch, 0),
      mbzNonzero: this.logs.reduce((sum, log) => sum + log.mbzNonzero, 0),
      reflectorFormat: first?.reflectorFormat,
      reflectorErrorMs: first?.reflectorErrorMs ?? NaN,
      plainEcho: this.logs.reduce((sum, log) => sum + log.plainEchoes, 0),
      measured: this.logs.reduce((sum, log) => sum + log.replies, 0),
      received: result.received,
    };
  }
}

/**
 * Loss each way. With nothing lost there is nothing to split. A stateful
 * reflector (RFC 8762 §4.3.1) numbers the packets it received from 0, so
 * up to the last probe answered, `senderSeq − reflectorSeq` of them were
 * lost forward and the rest of the unanswered ones backward; probes after
 * the last reply could have been lost either way. A stateless reflector
 * copies the sender's numbers and tells nothing. Lost means no reply at
 * all, as the run counts it: a corrupted reply still came back.
 */
function directionalLoss(
  logs: StampFlowLog[],
  result: RunResult,
  stateful: boolean,
): { loss?: StampSummary["loss"]; unknown?: string } {
  if (result.lost === 0) {
    return { loss: { forward: 0, backward: 0, undetermined: 0 } };
  }
  if (logs.every((log) => log.replies === 0)) {
    return { unknown: "no reply came back intact to tell by" };
  }
  if (!stateful) {
    return {
      unknown:
        "every reply carried the sender's own sequence number, as a stateless reflector's does (and a stateful one's when nothing was lost forward; --reflector-stateful says it is one)",
    };
  }
  if (logs.some((log) => log.reflectorAhead > 0)) {
    return {
      unknown:
        "the reflector's sequence numbers ran ahead of the sender's: it counted requests this session did not send once (duplicated on the way, or a count that did not start at 0)",
    };
  }
  const loss = { forward: 0, backward: 0, undetermined: 0 };
  logs.forEach((log, k) => {
    const flow = result.flows[k];
    const lost = flow?.lost ?? 0;
    const answered = (flow?.sent ?? 0) - lost;
    const forward = Math.min(lost, log.maxSenderSeq - log.maxReflectorSeq);
    // The run's own count of probes answered: a reply whose fields were
    // dropped, or that came back corrupted, still came.
    const backward = Math.min(
      lost - forward,
      Math.max(0, log.maxReflectorSeq + 1 - answered),
    );
    loss.forward += forward;
    loss.backward += backward;
    loss.undetermined += lost - forward - backward;
  });
  return { loss };
}

const address = (at: HostPort) =>
  at.hostname === "" ? `port ${at.port}` : formatAddress(at);

function stats(summary: Summary): string {
  return `min ${formatMs(summary.min)} / mean ${formatMs(summary.mean)} / max ${
    formatMs(summary.max)
  }`;
}

/**
 * The warning, once per run, when replies were the requests unchanged: the
 * target is a plain echo server (RFC 862), not a Session-Reflector; `from`
 * names it. `undefined` when none were.
 */
export function stampWarning(
  summary: StampSummary,
  from: string,
): string | undefined {
  if (summary.plainEcho === 0) return undefined;
  return `Cannot measure one-way delays: ${from} echoed ${
    summary.forward.count === 0 ? "every" : `${summary.plainEcho}`
  } STAMP request unchanged; it is a plain echo server, not a STAMP Session-Reflector`;
}

/**
 * The summary's text lines, after the RTT lines; none when every reply was
 * a plain echo (see {@linkcode stampWarning}).
 */
export function formatStampSummary(summary: StampSummary): string[] {
  if (summary.plainEcho > 0 && summary.forward.count === 0) return [];
  const unavailable = summary.oneWayUnavailable;
  const lines = [
    ...(unavailable !== undefined
      ? [
        `one-way and reflector figures: unavailable: ${unavailable}; the round-trip figures stand`,
      ]
      : summary.measured === 0
      ? ["one-way and reflector figures: none (no reply came back intact)"]
      : [
        `one-way (ms): forward ${stats(summary.forward)}, ipdv ${
          formatMs(summary.forward.ipdv)
        }`,
        `              backward ${stats(summary.backward)}, ipdv ${
          formatMs(summary.backward.ipdv)
        }`,
        `reflector (ms): ${stats(summary.reflector)}; clock offset estimate ${
          formatMs(summary.offset.mean)
        } ms (one-way figures include it unless the clocks are synchronised)`,
      ]),
    summary.loss === undefined
      ? `directional loss: unknown: ${summary.lossUnknown}`
      : `directional loss: forward ${summary.loss.forward}, backward ${summary.loss.backward}${
        summary.loss.undetermined > 0
          ? `, ${summary.loss.undetermined} after the last reply either way`
          : ""
      }`,
    summary.ttl === undefined
      ? "ttl at the reflector: unknown"
      : `ttl at the reflector: ${summary.ttl.min}${
        summary.ttl.max !== summary.ttl.min ? `-${summary.ttl.max}` : ""
      }`,
  ];
  if (summary.measured < summary.received) {
    lines.push(
      `one-way and reflector figures cover ${summary.measured} of ${summary.received} replies (the output fell behind)`,
    );
  }
  const path = summary.path;
  if (path !== undefined) {
    lines.push(
      `location: the reflector saw ${address(path.sourceSeen)} -> ${
        address(path.destinationSeen)
      }; ${
        path.rewritten === undefined
          ? `rewritten or not: unknown (${path.unknown})`
          : path.rewritten
          ? `a NAT or proxy rewrote the path (sent from ${
            address(path.sentFrom)
          })`
          : `the addresses and ports sent (from ${address(path.sentFrom)})`
      }`,
    );
  }
  const odd = [
    summary.unrecognized > 0 && `${summary.unrecognized} unrecognised`,
    summary.malformed > 0 && `${summary.malformed} malformed`,
    summary.sizeMismatch > 0 && `${summary.sizeMismatch} of another size`,
    summary.mbzNonzero > 0 && `${summary.mbzNonzero} with MBZ set`,
  ].filter(Boolean);
  if (odd.length > 0) lines.push(`stamp replies: ${odd.join(", ")}`);
  return lines;
}

/** The summary's fields of the `--json` document (schema 1.2). */
export function stampJson(
  summary: StampSummary,
  options: StampRunOptions,
): Record<string, unknown> {
  const path = summary.path;
  const unavailable = summary.oneWayUnavailable !== undefined;
  return {
    one_way_ms: unavailable ? null : {
      forward: { ...summaryJson(summary.forward), ipdv: summary.forward.ipdv },
      backward: {
        ...summaryJson(summary.backward),
        ipdv: summary.backward.ipdv,
      },
    },
    reflector_ms: unavailable ? null : summaryJson(summary.reflector),
    offset_ms: unavailable ? null : summaryJson(summary.offset),
    stamp: {
      ssid: options.ssid,
      tlvs: options.tlvs,
      stateful: summary.stateful,
      directional_loss: summary.loss ?? null,
      directional_loss_unknown: summary.lossUnknown ?? null,
      one_way_unavailable: summary.oneWayUnavailable ?? null,
      replies_measured: summary.measured,
      ttl: summary.ttl ?? null,
      location: path === undefined ? null : {
        source_seen: address(path.sourceSeen),
        destination_seen: address(path.destinationSeen),
        sent_from: address(path.sentFrom),
        rewritten: path.rewritten ?? null,
        rewritten_unknown: path.unknown ?? null,
      },
      timestamp_info: summary.timestampInfo === undefined ? null : {
        sync_source_in: summary.timestampInfo[0],
        method_in: summary.timestampInfo[1],
        sync_source_out: summary.timestampInfo[2],
        method_out: summary.timestampInfo[3],
      },
      reflector_timestamps: summary.reflectorFormat ?? null,
      reflector_error_ms: summary.reflectorErrorMs,
      unrecognized_tlvs: summary.unrecognized,
      malformed_tlvs: summary.malformed,
      size_mismatch: summary.sizeMismatch,
      mbz_nonzero: summary.mbzNonzero,
      plain_echo: summary.plainEcho > 0,
    },
  };
}
