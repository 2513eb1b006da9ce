/**
 * The measurement modes of `client.ts` on the command line: checking their
 * flags against the ranges of `flags.ts`, and running one with text,
 * `--json` or `--ndjson` output and the `--max-loss` exit status.
 * `client.ts` adds `MEASURE_FLAGS` (from `flags.ts`) to its own flags and
 * imports this module only when `measurementMode` finds a mode.
 *
 * @module
 */

import {
  checkProbeSize,
  type Mode,
  type ProbeEvent,
  runFlows,
  SWEEP_TRIES,
  sweepPayload,
} from "./modes.ts";
import {
  eventJson,
  formatLost,
  formatReply,
  formatRunSummary,
  formatStatus,
  formatSweepStep,
  formatSweepSummary,
  JSON_SCHEMA,
  runJson,
  sweepJson,
  toJson,
} from "./report.ts";
import {
  familyOf,
  formatAddress,
  type HostPort,
  type ResolvedAddress,
} from "../net/address.ts";
import { resolveAddress, resolveTarget } from "../net/resolve.ts";
import { checkUnstableNet, errorMessage } from "../net/errors.ts";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from "../cli/flags.ts";
import { createStatusLine } from "../cli/output.ts";
import { STOP_SIGNALS, survivePeerStatsSignal } from "../cli/signals.ts";
import { lossPercent } from "./stats.ts";
import {
  batchModuleDir,
  batchRefusal,
  chooseIo,
  fallbackChoice,
  type IoChoice,
} from "../kernel/choice.ts";

import { PROBE_HEADER_SIZE } from "./probe.ts";
import type { StampRun } from "./stamp_report.ts";
import {
  asUsage,
  type MeasureOptions,
  type MeasureValues,
  type Plan,
  plan,
} from "./_plan.ts";

export {
  MEASURE_RANGES,
  type MeasureOptions,
  type MeasureValues,
} from "./_plan.ts";

const STATUS_INTERVAL_MS = 250;

/**
 * The `--json` document (or `--ndjson` line) of a run that failed before it
 * had a result, such as a name that does not resolve: the mode, the target
 * as given and the `error` line's message.
 */
export function failureJson(
  mode: Mode,
  target: HostPort,
  error: unknown,
): Record<string, unknown> {
  return {
    schema: JSON_SCHEMA,
    mode,
    target: {
      address: formatAddress(target),
      hostname: target.hostname,
      port: target.port,
      family: familyOf(target.hostname) ?? null,
    },
    error: errorMessage(error),
  };
}

/**
 * Refuses a local address of another family than the target (a UsageError)
 * and resolves a name given to `--bind` in the target's family.
 */
async function checkBind(
  bind: HostPort | undefined,
  target: ResolvedAddress,
): Promise<HostPort | undefined> {
  if (bind === undefined) return undefined;
  const family = familyOf(bind.hostname);
  if (family !== undefined && family !== target.family) {
    throw new UsageError(
      `Cannot send from ${bind.hostname} to ${target.hostname}: one is ${family}, the other ${target.family}`,
    );
  }
  if (family !== undefined) return bind;
  const { hostname, port } = await resolveAddress(bind, {
    family: target.family,
  });
  return { hostname, port };
}

/**
 * Runs the measurement the flags ask for and prints it; returns the exit
 * status: 0 when the share of probes without an intact reply stays within
 * `--max-loss` and an open loop kept up with its rate (a sweep: when any
 * size came back intact), 1 otherwise, 2 for a usage error.
 *
 * The first SIGINT, SIGTERM or SIGHUP stops sending and waits for the replies still
 * due (at most the timeout); a second ends the run at once, reporting the
 * probes still within their timeout as in flight. Either way the summary
 * (or JSON document) is printed and the status follows the results.
 */
export async function runMeasurement(
  mode: Mode,
  values: MeasureValues,
  options: MeasureOptions,
): Promise<number> {
  const { output: out, quiet } = options;
  const format = options.json ? "json" : values.ndjson ? "ndjson" : "text";
  // Usage errors print nothing on stdout; other failures print a document.
  const fail = (error: unknown): number => {
    const refused = asUsage(error);
    out.error(refused);
    if (refused instanceof UsageError) return EXIT_USAGE;
    const document = failureJson(mode, options.target, refused);
    if (format === "json") out.line(toJson(document, 2));
    if (format === "ndjson") out.line(toJson({ event: "error", ...document }));
    return EXIT_FAILURE;
  };
  let checked: Plan;
  let target;
  let stamp: StampRun | undefined;
  let io: IoChoice;
  try {
    checked = plan(mode, values, options);
    if (values.stamp) {
      const { stampRunOf } = await import("./stamp_report.ts");
      stamp = stampRunOf(values, checked.run);
    }
    target = await resolveTarget(options.target, { family: checked.family })
      .catch((error) => {
        throw asUsage(error);
      });
    checked.bind = await checkBind(checked.bind, target);
    if (checked.io === "batch" && mode === "sweep") {
      throw new UsageError(
        "Cannot use --io batch with --sweep: the sweep runs on sockets",
      );
    }
    // A batch that cannot run is refused here, as a usage error (exit 2).
    io = chooseIo(checked.io, { carrying: "probes", strict: true });
    try {
      if (mode !== "sweep") checkProbeSize(checked.run.size!, target);
      checkUnstableNet();
    } catch (error) {
      throw asUsage(error);
    }
  } catch (error) {
    return fail(error);
  }
  const from = formatAddress(target);
  const { output, run } = checked;
  const flows = run.flows ?? 1;
  const statusShown = mode === "load" && output === "text" && !quiet &&
    out.stderrIsTerminal;
  const status = createStatusLine(out, statusShown);
  // Who reads a reply's event: a line per event, a ping's line per reply,
  // or the live status. Without one, a load run does not make them.
  const replyEvents = output === "ndjson" ||
    (output === "text" && !quiet && mode === "ping") || statusShown;
  const print = (line: string) => {
    out.line(line);
    // Nobody reads the rest: stop probing.
    if (out.closed) controller.abort();
  };
  const live = { sent: 0, received: 0, lastRttMs: NaN, start: 0 };
  let sendFailed = false;
  const onEvent = (event: ProbeEvent) => {
    // Once: the summary counts them all (send_errors), the run goes on.
    if (event.type === "send_error" && !sendFailed) {
      sendFailed = true;
      out.error(new Error(`Cannot send to ${from}: ${event.reason}`));
    }
    if (output === "ndjson") print(toJson(eventJson(event)));
    else if (output === "text" && !quiet) {
      if (event.type === "reply" && mode === "ping") {
        const delays = event.check === "intact" && !event.duplicate
          ? stamp?.describe(event.flow, event.seq) ?? ""
          : "";
        print(formatReply(event, from, flows) + delays);
      } else if (event.type === "lost" && mode === "ping") {
        print(formatLost(event, from, flows));
      } else if (event.type === "sweep") {
        print(formatSweepStep(event, SWEEP_TRIES));
      }
    }
    if (
      event.type === "reply" && event.check === "intact" && !event.duplicate
    ) {
      live.received++;
      live.lastRttMs = event.rttMs;
    }
  };
  // `stop` ends the sending, `controller` the whole run.
  const stop = new AbortController();
  const controller = new AbortController();
  const onSignal = () => {
    // A sweep has one probe out at a time: nothing to wait for.
    if (stop.signal.aborted || mode === "sweep") controller.abort();
    stop.abort();
    status.clear();
  };
  for (const signal of STOP_SIGNALS) Deno.addSignalListener(signal, onSignal);
  const removeStatsListener = survivePeerStatsSignal();
  let ticker: ReturnType<typeof setInterval> | undefined;
  try {
    if (mode === "sweep") {
      if (output === "text" && !quiet) {
        print(
          `SWEEP ${from}: largest intact payload from ${PROBE_HEADER_SIZE} to the ${target.family} limit, up to ${SWEEP_TRIES} tries per size`,
        );
        print(`io: socket (the sweep runs on sockets)`);
      }
      const result = await sweepPayload({
        target,
        bind: checked.bind,
        timeoutMs: run.timeoutMs,
        waitMs: run.waitMs,
        signal: controller.signal,
        onEvent,
      });
      if (output === "text") {
        if (!quiet) print("");
        for (const line of formatSweepSummary(result)) print(line);
      } else {
        const document = sweepJson(result, {
          settings: { timeout_ms: run.timeoutMs, tries: SWEEP_TRIES },
        });
        print(
          output === "json"
            ? toJson(document, 2)
            : toJson({ event: "summary", ...document }),
        );
      }
      return result.maxPayload > 0 && !out.closed ? EXIT_OK : EXIT_FAILURE;
    }
    if (output === "text" && !quiet) {
      const pacing = run.window !== undefined
        ? `window ${run.window}`
        : run.intervalMs === 0
        ? "as fast as possible"
        : `every ${Number(run.intervalMs!.toFixed(3))} ms`;
      print(
        `${mode.toUpperCase()} ${from}: ${run.size}-byte probes, ${pacing}${
          flows > 1 ? `, ${flows} flows` : ""
        }`,
      );
    }
    live.start = performance.now();
    if (mode === "load") {
      let before = { at: live.start, received: 0 };
      ticker = setInterval(() => {
        if (stop.signal.aborted) return;
        const now = { at: performance.now(), received: live.received };
        status.show(formatStatus({
          sent: live.sent,
          received: live.received,
          elapsedMs: now.at - live.start,
          echoPps: (now.received - before.received) / (now.at - before.at) *
            1000,
          lastRttMs: live.lastRttMs,
        }));
        before = now;
      }, STATUS_INTERVAL_MS);
    }
    const result = await runFlows({
      target,
      bind: checked.bind,
      ...run,
      stop: stop.signal,
      signal: controller.signal,
      onEvent,
      replyEvents,
      onSend: () => live.sent++,
      io: io.io,
      fallback: checked.io === "auto",
      onIo: (backend, why) => {
        if (backend !== io.io) io = fallbackChoice(why);
        if (output === "text" && !quiet) {
          print(`io: ${io.io} (${io.reason})`);
        }
      },
      format: stamp?.format,
      engineFormat: stamp?.engineFormat,
    });
    if (ticker !== undefined) clearInterval(ticker);
    ticker = undefined;
    status.clear();
    const settings = run.window !== undefined
      ? { window: run.window, timeout_ms: run.timeoutMs }
      : { interval_ms: run.intervalMs, timeout_ms: run.timeoutMs };
    if (output === "text") {
      if (!quiet) print("");
      const advice = { pacingAdvice: pacingAdvice(io) };
      for (const line of formatRunSummary(result, mode, advice)) print(line);
      if (stamp) {
        const { formatStampSummary, stampWarning } = await import(
          "./stamp_report.ts"
        );
        const summary = stamp.summary(result, result.target);
        const warning = stampWarning(summary, from);
        if (warning !== undefined) out.error(new Error(warning));
        for (const line of formatStampSummary(summary)) print(line);
      }
    } else {
      const document = runJson(result, mode, {
        settings,
        io: { backend: io.io, reason: io.reason },
      });
      if (stamp) {
        const { stampJson } = await import("./stamp_report.ts");
        Object.assign(
          document,
          stampJson(stamp.summary(result, result.target), stamp.options),
        );
      }
      print(
        output === "json"
          ? toJson(document, 2)
          : toJson({ event: "summary", ...document }),
      );
    }
    const loss = lossPercent(result);
    return Number.isFinite(loss) && loss <= checked.maxLoss &&
        result.schedule?.short !== true && !out.closed
      ? EXIT_OK
      : EXIT_FAILURE;
  } catch (error) {
    status.clear();
    return fail(error);
  } finally {
    if (ticker !== undefined) clearInterval(ticker);
    for (const signal of STOP_SIGNALS) {
      Deno.removeSignalListener(signal, onSignal);
    }
    removeStatsListener();
  }
}

/**
 * The kernel engine, when it was available but sockets carried the run:
 * chosen with `--io socket`, or for lack of permissions (what grants them
 * said); `undefined` when the engine was used or cannot run here.
 */
function pacingAdvice(io: IoChoice): string | undefined {
  if (io.io !== "socket" || Deno.build.os !== "linux") return undefined;
  const lacking = batchRefusal();
  const engine =
    "sockets pace loosely; the kernel engine keeps to the schedule";
  const needs = `it needs --allow-ffi, --allow-read of ${batchModuleDir()} ` +
    `and --allow-net for every host (-A grants them); here ${lacking}`;
  if (io.reason === "--io socket") {
    return lacking === undefined
      ? `${engine}: leave out --io socket`
      : `${engine}: leave out --io socket; ${needs}`;
  }
  return io.reason === lacking ? `${engine}: ${needs}` : undefined;
}
