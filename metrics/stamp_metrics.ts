/**
 * The monitor's STAMP metrics (`client.ts --metrics --stamp`), per `target`
 * and `flow` label: histograms of the forward (T2 − T1) and backward (T4 − T3)
 * one-way delay, and probes lost per direction. Each target's probes are
 * STAMP test packets of `measure/stamp_probe.ts`, whose log and checks
 * apply as in `client.ts --stamp`; the log here keeps only the latest
 * reply, so a monitor that runs for months holds fixed memory.
 *
 * Loss per direction needs a stateful reflector (`server.ts --stamp
 * --stamp-stateful`), whose sequence number counts the probes it
 * received. Between two replies, the sender's sequence numbers skipped are
 * the probes lost either way, and the reflector's skipped are the ones
 * lost on the way there: the rest were lost on the way back. They are
 * counted when the next reply shows them. A stateless reflector copies the
 * sender's number and tells nothing, and its replies would read as loss on
 * the way back alone: the monitor numbers its probes from 1 on the wire,
 * so a copied number (never a stateful reflector's count, which starts at
 * 0) shows such a reflector, and both counts then read 0.
 *
 * @module
 */

import { Counter, Histogram, type Registry } from "prom-client";
import type { ProbeFormat } from "../measure/_common.ts";
import type { ProbeHeader } from "../measure/probe.ts";
import {
  StampFlowLog,
  stampFormat,
  type StampFormatOptions,
  type StampReply,
} from "../measure/stamp_probe.ts";
import { RTT_BUCKETS_SECONDS } from "./probe.ts";

/** The two directions of a link, as the `direction` label spells them. */
export type Direction = "forward" | "backward";

/** What a monitor's STAMP sender sends. */
export interface StampMetricsOptions {
  /** The Session-Sender Identifier, 0 to 65535. */
  ssid: number;
  /** TLVs to ask for. */
  tlvs: StampFormatOptions["tlvs"];
  /**
   * Told once per target when its replies cannot give what the series
   * promise: a plain echo server's, or a stateless reflector's.
   */
  onNote?: (message: string) => void;
  /**
   * `--reflector-stateful`, accepted and not needed: the replies show
   * whether a reflector keeps its own sequence numbers.
   */
  reflectorStateful?: boolean;
}

/**
 * Splits loss by direction from the sequence numbers of successive
 * replies (see the module doc). Fixed memory: the latest reply's numbers.
 * The split means something only against a stateful reflector: until one
 * is asserted or seen (a reply whose number differs from the sender's),
 * both counts read 0.
 */
export class DirectionalLoss {
  #forward = 0;
  #backward = 0;
  #seen = false;
  #copies = false;
  #counted = false;
  #senderSeq = -1;
  #reflectorSeq = -1;

  /** `stateful`: the reflector is known to keep its own sequence numbers. */
  constructor(readonly asserted = false) {}

  /** Whether the reflector keeps its own sequence numbers: asserted, or seen. */
  get stateful(): boolean {
    return !this.#copies && (this.asserted || this.#seen);
  }

  /**
   * A reply carried the sender's own number as the reflector's, as a
   * stateless reflector's does: nothing is split, unless a reply has been
   * counted already (a stateful reflector's count can meet the sender's
   * number, and counters never go back).
   */
  copied(): void {
    if (!this.#counted) this.#copies = true;
  }

  /** Probes lost on the way to the reflector, so far. */
  get forward(): number {
    return this.stateful ? this.#forward : 0;
  }

  /** Probes lost on the way back, so far. */
  get backward(): number {
    return this.stateful ? this.#backward : 0;
  }

  /**
   * Counts what the reply to probe `senderSeq`, numbered `reflectorSeq` by
   * the reflector, shows. A reply older than the latest (reordered or late)
   * shows nothing. When the reflector's number does not fit (it restarted
   * or forgot the session), counting starts again from this reply.
   */
  reply(senderSeq: number, reflectorSeq: number): void {
    this.#counted = true;
    this.#copies = false;
    if (reflectorSeq !== senderSeq) this.#seen = true;
    if (senderSeq <= this.#senderSeq) return;
    const missing = senderSeq - this.#senderSeq - 1;
    const reached = reflectorSeq - this.#reflectorSeq - 1;
    if (reached >= 0 && reached <= missing) {
      this.#forward += missing - reached;
      this.#backward += reached;
    }
    this.#senderSeq = senderSeq;
    this.#reflectorSeq = reflectorSeq;
  }
}

/**
 * The labels of the series besides `direction`; `node` comes from the
 * registry's default labels, as on the monitor's other series.
 */
const LABELS = ["target", "flow"] as const;

/** The labels of flow `flow` of target `target`, as the RTT series carry them. */
function flowLabels(
  target: string,
  flow: number,
): Record<(typeof LABELS)[number], string> {
  return { target, flow: String(flow) };
}

/**
 * The STAMP metrics of a monitor, in `registry`, and the probe format of
 * each target. Throws RangeError for an SSID out of 0 to 65535 (as
 * `stampFormat` does).
 */
export class StampMetrics {
  readonly #delay: Histogram<(typeof LABELS)[number] | "direction">;
  readonly #options: StampMetricsOptions;
  /** Each target's flows' loss, by flow. */
  readonly #losses = new Map<string, DirectionalLoss[]>();
  /** Each target's flows' logs, by flow. */
  readonly #logs = new Map<string, StampFlowLog[]>();
  /** The targets told of with {@linkcode StampMetricsOptions.onNote}. */
  readonly #noted = new Set<string>();

  constructor(registry: Registry, options: StampMetricsOptions) {
    this.#options = options;
    const registers = [registry];
    const labelNames = [...LABELS, "direction"] as const;
    this.#delay = new Histogram({
      name: "udp_echo_stamp_one_way_delay_seconds",
      help:
        "One-way delay of STAMP probes answered intact: forward T2 - T1, backward T4 - T3 (includes the clock offset between the hosts).",
      labelNames,
      buckets: [...RTT_BUCKETS_SECONDS],
      registers,
    });
    const losses = this.#losses;
    const logs = this.#logs;
    new Counter({
      name: "udp_echo_stamp_bad_timestamps_total",
      help:
        "STAMP replies whose timestamps cannot be right (more than a day from this host's clock, or T3 before T2): no delay observed.",
      labelNames: LABELS,
      registers,
      collect() {
        this.reset();
        for (const [target, flows] of logs) {
          for (const [flow, log] of flows.entries()) {
            this.inc(flowLabels(target, flow), log.badTimestamps);
          }
        }
      },
    });
    new Counter({
      name: "udp_echo_stamp_lost_total",
      help:
        "STAMP probes lost on the way to the reflector (forward) or back (backward), counted when a later reply shows them; needs a stateful reflector.",
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const [target, flows] of losses) {
          for (const [flow, loss] of flows.entries()) {
            const labels = flowLabels(target, flow);
            this.inc({ ...labels, direction: "forward" }, loss.forward);
            this.inc({ ...labels, direction: "backward" }, loss.backward);
          }
        }
      },
    });
  }

  /**
   * The probe format of target `target` (its label), for
   * `FlowRunOptions.format`: each flow's series exist from its start, at
   * zero.
   */
  format(target: string): (flow: number, session: number) => ProbeFormat {
    const losses: DirectionalLoss[] = [];
    const logs: StampFlowLog[] = [];
    this.#losses.set(target, losses);
    this.#logs.set(target, logs);
    return (flow, session) => {
      // Numbered from 1 on the wire, each reply tells whether the
      // reflector keeps its own numbers: no need to be told.
      const loss = losses[flow] = new DirectionalLoss(true);
      const labels = flowLabels(target, flow);
      const forward = { ...labels, direction: "forward" };
      const backward = { ...labels, direction: "backward" };
      this.#delay.zero(forward);
      this.#delay.zero(backward);
      const observe = (seq: number, reply: StampReply, log: StampFlowLog) => {
        // A removed target's last replies must not bring its series back.
        if (this.#losses.get(target) !== losses) return;
        if (reply.plainEcho) {
          this.#note(
            target,
            `${target} answers as a plain echo server, not a STAMP reflector: no one-way delay or loss per direction for it`,
          );
          return;
        }
        // The delays the log kept: none when its checks refused the
        // reply's timestamps.
        const forwardMs = log.forward[seq];
        const backwardMs = log.backward[seq];
        if (forwardMs !== undefined && backwardMs !== undefined) {
          this.#delay.observe(forward, forwardMs / 1000);
          this.#delay.observe(backward, backwardMs / 1000);
        }
        if (reply.seq === reply.senderSeq) {
          loss.copied();
          if (!loss.stateful) {
            this.#note(
              target,
              `${target} is a stateless STAMP reflector (it copies the sender's sequence numbers): no loss per direction for it (run it with --stamp-stateful)`,
            );
          }
        } else loss.reply(seq, reply.seq);
      };
      const log = logs[flow] = new LatestLog(observe);
      return numberedFromOne(stampFormat({
        ssid: this.#options.ssid,
        tlvs: this.#options.tlvs,
        session,
        log,
      }));
    };
  }

  #note(target: string, message: string): void {
    if (this.#noted.has(target)) return;
    this.#noted.add(target);
    this.#options.onNote?.(message);
  }

  /** Drops target `target`'s series: a monitor's target that went away. */
  remove(target: string): void {
    this.#noted.delete(target);
    const flows = this.#losses.get(target)?.length ?? 0;
    this.#losses.delete(target);
    this.#logs.delete(target);
    for (let flow = 0; flow < flows; flow++) {
      for (const direction of ["forward", "backward"]) {
        this.#delay.remove({ ...flowLabels(target, flow), direction });
      }
    }
  }
}

/**
 * `format` with each probe's number one higher on the wire than the run's:
 * a stateless reflector copies it, a stateful one answers with its count
 * of the probes it received, from 0, so the two never give the same.
 */
export function numberedFromOne(format: ProbeFormat): ProbeFormat {
  const shift = (header: ProbeHeader) => ({ ...header, seq: header.seq + 1 });
  return {
    ...format,
    encode: (target, header) => format.encode(target, shift(header)),
    decode(data) {
      const found = format.decode(data);
      return found === undefined || found.seq === 0
        ? undefined
        : { ...found, seq: found.seq - 1 };
    },
    verify: (data, header, size) => format.verify(data, shift(header), size),
  };
}

/** The run's log and its checks, keeping the latest reply only. */
class LatestLog extends StampFlowLog {
  constructor(
    readonly onReply: (
      seq: number,
      reply: StampReply,
      log: StampFlowLog,
    ) => void,
  ) {
    super();
  }

  override add(seq: number, reply: StampReply): void {
    super.add(seq, reply);
    this.onReply(seq, reply, this);
    forgetHistory(this);
  }
}

/**
 * Empties the lists a log keeps per reply (delays by sequence number, TTLs
 * seen), keeping its counts and latest fields: a run's log grows with its
 * probes, and a monitor's runs until stopped.
 */
function forgetHistory(log: StampFlowLog): void {
  for (
    const list of [
      log.forward,
      log.backward,
      log.reflector,
      log.offset,
      log.ttls,
    ]
  ) list.length = 0;
}
