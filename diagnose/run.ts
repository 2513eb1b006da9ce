/**
 * `client.ts --diagnose CHECKS` on the command line: reading the checks
 * asked for, finding out what the peer is (a STAMP Session-Reflector or an
 * echo server) and whether the engine's socket options are available,
 * running each check, and printing the findings as text or one JSON
 * document. `client.ts` imports this module only when `--diagnose` (or
 * `--nat-max`) is given.
 *
 * Exit status: 0 when every check asked for ran, whatever it found; 1 when
 * a named check could not run (no reply, or the peer or the permissions
 * cannot support it); 2 for a usage error. With `all`, a check that cannot
 * run here is listed as skipped and leaves the status alone.
 *
 * @module
 */

import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  parseNumber,
  UsageError,
} from "../cli/flags.ts";
import { createStatusLine, type Output } from "../cli/output.ts";
import { onStopSignals } from "../cli/signals.ts";
import { formatAddress, type HostPort } from "../net/address.ts";
import { checkUnstableNet, errorMessage } from "../net/errors.ts";
import { resolveTarget } from "../net/resolve.ts";
import { batchGap } from "../kernel/choice.ts";
import {
  OFFSET,
  SOFTWARE_SENDER_ERROR,
  STAMP_BASE_SIZE,
  writeSenderPacket,
} from "../stamp/packet.ts";
import { checkDscp, checkEcn } from "./marking.ts";
import { checkNat } from "./nat.ts";
import { checkPmtu } from "./pmtu.ts";
import {
  diagnoseJson,
  type DiagnoseRun,
  formatHeader,
  formatResult,
} from "./report.ts";
import type { Check, CheckContext, CheckName, CheckResult } from "./types.ts";

/** The checks, in the order `all` runs them. */
export const CHECKS: Readonly<Record<CheckName, Check>> = {
  pmtu: checkPmtu,
  dscp: checkDscp,
  ecn: checkEcn,
  nat: checkNat,
};

/** `--nat-max`: seconds, and its default. */
const NAT_MAX = { min: 1, max: 3600, unit: "seconds" } as const;
const DEFAULT_NAT_MAX_S = 300;

/** The measurement flags `--diagnose` has no use for. */
const REFUSED = [
  "count",
  "interval",
  "size",
  "duration",
  "wait",
  "window",
  "rate",
  "flows",
  "sweep",
  "bind",
  "ndjson",
  "max-loss",
  "io",
  "metrics",
  "probe-allow",
  "stamp",
  "stamp-tlv",
  "ssid",
] as const;

/** The flag values `--diagnose` reads. */
export type DiagnoseValues = {
  [flag: string]: string | boolean | string[] | undefined;
};

/** What `client.ts` passes besides the flags. */
export interface DiagnoseOptions {
  /** The server, as given. */
  target: HostPort;
  /** `-t`: how long to wait for one reply, in ms. */
  timeoutMs: number;
  /** `-q`: no opening line, no progress. */
  quiet: boolean;
  /** `--json`. */
  json: boolean;
  /** Where everything is printed. */
  output: Output;
}

/**
 * Reads `--diagnose` and `--nat-max`; throws a UsageError for an unknown
 * check, a flag `--diagnose` has no use for, or `--nat-max` without the
 * nat check.
 */
export function parseDiagnose(
  values: DiagnoseValues,
): { checks: CheckName[]; all: boolean; natMaxSeconds: number } {
  const text = values.diagnose;
  if (typeof text !== "string") {
    throw new UsageError("Cannot use --nat-max without --diagnose");
  }
  for (const flag of REFUSED) {
    if (values[flag] !== undefined && values[flag] !== false) {
      throw new UsageError(
        `Cannot combine --${flag} with --diagnose: the checks choose their own probes`,
      );
    }
  }
  const names = Object.keys(CHECKS) as CheckName[];
  const all = text === "all";
  const checks = all ? names : [
    ...new Set(text.split(",").map((name) => name.trim())),
  ] as CheckName[];
  for (const name of checks) {
    if (!names.includes(name)) {
      throw new UsageError(
        `Cannot run the check "${name}": expected all, or a comma-separated list of ${
          names.join(", ")
        }`,
      );
    }
  }
  const natMax = values["nat-max"];
  if (natMax !== undefined && !checks.includes("nat")) {
    throw new UsageError(
      "Cannot use --nat-max without the nat check: it bounds only the NAT binding search",
    );
  }
  return {
    checks,
    all,
    natMaxSeconds: typeof natMax === "string"
      ? parseNumber(natMax, "--nat-max", NAT_MAX)
      : DEFAULT_NAT_MAX_S,
  };
}

/**
 * Whether the peer is a STAMP Session-Reflector or an echo server: a
 * 44-byte Session-Sender packet comes back as it was from an echo server,
 * and with the sender's sequence number copied into its reflected fields
 * from a reflector. `null` when nothing answers in three tries.
 */
async function identifyPeer(
  target: HostPort & { family: "IPv4" | "IPv6" },
  timeoutMs: number,
  signal: AbortSignal,
): Promise<"stamp" | "echo" | null> {
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: target.family === "IPv6" ? "::" : "0.0.0.0",
    port: 0,
  });
  const request = new Uint8Array(STAMP_BASE_SIZE);
  const seq = crypto.getRandomValues(new Uint32Array(1))[0]!;
  writeSenderPacket(request, {
    seq,
    timestampMs: Date.now(),
    errorEstimate: SOFTWARE_SENDER_ERROR,
    ssid: 0,
  });
  const stop = () => socket.close();
  signal.addEventListener("abort", stop);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let pending: Promise<[Uint8Array, Deno.Addr]> | undefined;
  try {
    // One receive at a time: a late one carries over to the next try.
    pending = socket.receive();
    for (let attempt = 0; attempt < 3 && !signal.aborted; attempt++) {
      await socket.send(request, { transport: "udp", ...target });
      const timeout = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs);
      });
      for (;;) {
        const received = await Promise.race([pending, timeout]);
        if (received === undefined) break;
        pending = socket.receive();
        const [reply] = received;
        if (reply.length !== STAMP_BASE_SIZE) continue;
        if (reply.every((byte, i) => byte === request[i])) return "echo";
        const view = new DataView(reply.buffer, reply.byteOffset);
        if (view.getUint32(OFFSET.senderSeq) === seq) return "stamp";
      }
      clearTimeout(timer);
    }
    return null;
  } catch (error) {
    if (signal.aborted) return null;
    throw error;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", stop);
    // The receive still waiting ends with the socket: nobody reads it.
    pending?.catch(() => {});
    try {
      socket.close();
    } catch {
      // Closed by the signal.
    }
  }
}

/** Why this process cannot use the engine's socket options, or `undefined`. */
function engineRefusal(): string | undefined {
  const gap = batchGap();
  if (gap === "linux") return `not Linux: ${Deno.build.os}`;
  if (gap === "ffi") return "--allow-ffi not granted";
  return undefined;
}

/**
 * Runs the checks `--diagnose` asks for and prints what they found;
 * returns the exit status (see the module doc).
 *
 * @param values The flag values.
 * @param options The target and the output.
 * @returns 0, 1 or 2.
 */
export async function runDiagnose(
  values: DiagnoseValues,
  options: DiagnoseOptions,
): Promise<number> {
  const { output: out } = options;
  let asked: ReturnType<typeof parseDiagnose>;
  let target;
  try {
    asked = parseDiagnose(values);
    const family = values.ipv4 ? "IPv4" : values.ipv6 ? "IPv6" : undefined;
    target = await resolveTarget(options.target, { family });
    checkUnstableNet();
  } catch (error) {
    const usage = error instanceof UsageError || error instanceof RangeError ||
      error instanceof TypeError;
    out.error(error);
    return usage ? EXIT_USAGE : EXIT_FAILURE;
  }
  const controller = new AbortController();
  const removeSignals = onStopSignals(() => controller.abort());
  const status = createStatusLine(
    out,
    out.stderrIsTerminal && !options.json && !options.quiet,
  );
  const refusal = engineRefusal();
  const family = target.family === "IPv6" ? 6 : 4;
  try {
    const peer = await identifyPeer(
      target,
      options.timeoutMs,
      controller.signal,
    );
    const run: DiagnoseRun = {
      address: formatAddress(target),
      hostname: target.hostname,
      port: target.port,
      family,
      peer,
      engine: refusal === undefined
        ? { available: true }
        : { available: false, reason: refusal },
      asked: asked.all ? "all" : asked.checks.join(","),
      checks: [],
    };
    if (!options.json && !options.quiet) out.line(formatHeader(run));
    const context: CheckContext = {
      hostname: target.hostname,
      port: target.port,
      family,
      engine: refusal === undefined,
      stamp: peer === "stamp",
      signal: controller.signal,
      progress: (text) => status.show(text),
      replyTimeoutMs: options.timeoutMs,
      natMaxSeconds: asked.natMaxSeconds,
    };
    for (const name of asked.checks) {
      let result: CheckResult;
      if (peer === null) {
        result = {
          check: name,
          status: "failed",
          reason: `no reply from ${run.address}`,
          findings: [],
          data: {},
        };
      } else {
        try {
          result = await CHECKS[name](context);
        } catch (error) {
          result = {
            check: name,
            status: "failed",
            reason: errorMessage(error),
            findings: [],
            data: {},
          };
        }
      }
      // Only `all` may pass over a check: a named one that cannot run fails.
      if (result.status === "skipped" && !asked.all) result.status = "failed";
      run.checks.push(result);
      status.clear();
      if (!options.json) {
        for (const line of formatResult(result)) out.line(line);
      }
    }
    const code = run.checks.some((result) => result.status === "failed")
      ? EXIT_FAILURE
      : EXIT_OK;
    if (options.json) {
      out.line(JSON.stringify(diagnoseJson(run, code), null, 2));
    }
    return out.closed ? EXIT_FAILURE : code;
  } finally {
    status.clear();
    removeSignals();
  }
}
