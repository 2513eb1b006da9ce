/**
 * A probe format other than the plain probe (`--stamp`) in the engine's
 * Worker: loaded by URL (`EngineFormatModule`), it writes each probe, then
 * its send time from the CLOCK_REALTIME read right before `sendto` that
 * the round trip also starts from, and
 * reports what each reply said with the next batch of events (never a
 * message per reply).
 *
 * @module
 */

import type { SenderEngine } from "./sender.ts";
import { loadModule } from "./_module.ts";
import type { ProbeHeader } from "../measure/probe.ts";
import type {
  EngineConfig,
  EngineFormatContext,
  EngineFormatModule,
  EngineProbeFormat,
} from "./probes.ts";

/** The factory of the run's probe format, when it has one. */
export type FormatFactory = (
  flow: number,
  context: EngineFormatContext,
) => EngineProbeFormat;

/** Imports the run's format module; `undefined` for the plain probe. */
export async function loadFormat(
  config: EngineConfig,
): Promise<FormatFactory | undefined> {
  if (config.format === undefined) return undefined;
  const { module, options } = config.format;
  const loaded = await loadModule<EngineFormatModule>(module);
  return (flow, context) => loaded.createEngineFormat(options[flow], context);
}

/** Each flow's format, its reply details handed to `report`. */
export function formatsOf(
  factory: FormatFactory | undefined,
  flows: number,
  sink: {
    report(flow: number, seq: number, detail: unknown): void;
    arrivalEpochMs(): number;
  },
): EngineProbeFormat[] | undefined {
  if (factory === undefined) return undefined;
  return Array.from({ length: flows }, (_, flow) =>
    factory(flow, {
      arrivalEpochMs: sink.arrivalEpochMs,
      report: (seq, detail) => sink.report(flow, seq, detail),
    }));
}

/**
 * Writes a probe of `format` into socket `s`'s first send slot and sends
 * it alone: the send time (T1) is the engine's CLOCK_REALTIME read right
 * before `sendto`, written into the probe after that read, so the packet's
 * T1 and the round trip's start are one reading. `flags` go to `sendto`
 * (`MSG_PROBE` in the warm-up: nothing leaves). Returns the send's result
 * (negative errno on failure) and T1 in ms since the epoch.
 */
export function sendFormatted(
  engine: SenderEngine,
  format: EngineProbeFormat,
  probe: { s: number; header: ProbeHeader },
  flags = 0,
): { result: number; epoch: number } {
  // A provisional time: the packet's own is written right before the send.
  const slot = engine.sendSlot(probe.s, 0);
  const provisional = engine.realEpochMs(engine.realNow());
  format.encode(slot, { ...probe.header, sentAt: provisional });
  // Written once more before T1: the first call of the format's writer on
  // a run's first probe is its slow one (the code it shares with `encode`
  // settles then), and it must not fall between T1 and the system call.
  format.writeSendTime(slot, provisional);
  const result = engine.send(probe.s, format.writeSendTime, flags);
  return { result, epoch: engine.realEpochMs(engine.sentReal) };
}
