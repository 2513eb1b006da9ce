/**
 * The shapes every diagnose check shares: what a check is given, and what it
 * returns for the text and JSON reports.
 *
 * @module
 */

/** The names of the checks `client.ts --diagnose` runs. */
export type CheckName = "pmtu" | "dscp" | "ecn" | "nat";

/** What a check learns, in a form both reporters read. */
export interface CheckResult {
  /** Which check this is. */
  check: CheckName;
  /**
   * "ran": the check answered (whatever it found). "skipped": the peer or
   * the permissions cannot support it (only with `all`). "failed": a check
   * that was named could not run (no reply, or the peer cannot support it).
   */
  status: "ran" | "skipped" | "failed";
  /** Why it was skipped or failed, and what would let it run. */
  reason?: string;
  /** One human line per finding, for the text report. */
  findings: string[];
  /** The check's part of the JSON document, snake_case keys. */
  data: Record<string, unknown>;
}

/** What every check is given. */
export interface CheckContext {
  /** The reflector's address, resolved. */
  hostname: string;
  /** The reflector's UDP port. */
  port: number;
  /** 4 or 6, from the resolved address. */
  family: 4 | 6;
  /** Whether the engine's socket options (FFI) are available. */
  engine: boolean;
  /** Whether the peer answered STAMP (RFC 8762) rather than plain echo. */
  stamp: boolean;
  /** Stops the check; a stopped check returns what it has. */
  signal: AbortSignal;
  /** A live progress line (shown on a terminal only). */
  progress: (text: string) => void;
  /** How long to wait for one reply, in milliseconds. */
  replyTimeoutMs: number;
  /** `--nat-max`, in seconds (default 300). */
  natMaxSeconds: number;
}

/** A check: runs against the peer and returns its result. */
export type Check = (context: CheckContext) => Promise<CheckResult>;
