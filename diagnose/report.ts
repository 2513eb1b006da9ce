/**
 * The text and JSON reports of `client.ts --diagnose`: one line per
 * finding, or one JSON document with a versioned schema (`docs/json.md`).
 *
 * @module
 */

import type { CheckResult } from "./types.ts";

/** The schema of the `--diagnose --json` document. */
export const DIAGNOSE_SCHEMA = "udp-echo.diagnose/1";

/** What a run found out about its peer, for both reports. */
export interface DiagnoseRun {
  /** The reflector, as `host:port`. */
  address: string;
  /** Its address. */
  hostname: string;
  /** Its port. */
  port: number;
  /** 4 or 6. */
  family: 4 | 6;
  /** `stamp` (a Session-Reflector), `echo`, or `null` when it never answered. */
  peer: "stamp" | "echo" | null;
  /** Whether the engine's socket options were available, and if not why. */
  engine: { available: boolean; reason?: string };
  /** The checks asked for: `all` or the list. */
  asked: string;
  /** The results, in the order run. */
  checks: CheckResult[];
}

/** The opening line of the text report. */
export function formatHeader(run: Omit<DiagnoseRun, "checks">): string {
  const peer = run.peer === "stamp"
    ? "a STAMP reflector"
    : run.peer === "echo"
    ? "an echo server"
    : "no reply";
  const engine = run.engine.available
    ? "socket options: yes"
    : `socket options: no (${run.engine.reason})`;
  return `DIAGNOSE ${run.address} (IPv${run.family}): ${peer}; ${engine}`;
}

/** One line per finding, prefixed by its check; a line for each check that did not run. */
export function formatResult(result: CheckResult): string[] {
  if (result.status !== "ran") {
    return [`${result.check}: ${result.status}: ${result.reason ?? ""}`];
  }
  return result.findings.map((finding) => `${result.check}: ${finding}`);
}

/** The `--json` document. */
export function diagnoseJson(
  run: DiagnoseRun,
  exitCode: number,
): Record<string, unknown> {
  return {
    schema: DIAGNOSE_SCHEMA,
    target: {
      address: run.address,
      hostname: run.hostname,
      port: run.port,
      family: `IPv${run.family}`,
    },
    peer: run.peer,
    socket_options: {
      available: run.engine.available,
      reason: run.engine.reason ?? null,
    },
    asked: run.asked,
    checks: run.checks.map((result) => ({
      check: result.check,
      status: result.status,
      reason: result.reason ?? null,
      findings: result.findings,
      details: result.data,
    })),
    exit_code: exitCode,
  };
}
