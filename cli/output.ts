/**
 * The one writer of both scripts' lines: synchronous, complete writes to
 * standard output and error, the one-line `error:` form (bold red only on a
 * terminal and never with `NO_COLOR`), and a closed standard output that
 * ends in one `error:` line instead of a stack trace.
 *
 * @module
 */

import { errorMessage } from "../net/address.ts";

/** Where an {@linkcode Output} writes: `Deno.stdout` and `Deno.stderr` fit. */
export interface Sink {
  /** Writes some of `bytes`; returns how many were written. */
  writeSync(bytes: Uint8Array): number;
  /** Whether the sink is a terminal. */
  isTerminal(): boolean;
}

/** Everything a script prints goes through one of these. */
export interface Output {
  /** Writes `text` and a newline to standard output. */
  line(text: string): void;
  /** Writes `bytes` as they are to standard output. */
  raw(bytes: Uint8Array): void;
  /** Writes `error: <message>` as one line to standard error. */
  error(error: unknown): void;
  /** Writes `warning: <text>` as one line to standard error. */
  warn(text: string): void;
  /** Writes `text` as it is to standard error, as a live status line does. */
  status(text: string): void;
  /** Whether standard error is a terminal, where a status line may be drawn. */
  readonly stderrIsTerminal: boolean;
  /** Whether standard output was found closed; later writes to it are dropped. */
  readonly closed: boolean;
}

/** Options for {@linkcode createOutput}. */
export interface OutputOptions {
  /** Standard output; defaults to `Deno.stdout`. */
  stdout?: Sink;
  /** Standard error; defaults to `Deno.stderr`. */
  stderr?: Sink;
  /** Colour `error:`; defaults to whether stderr is a terminal and `NO_COLOR` is unset. */
  color?: boolean;
  /** Called once when standard output fails: a reader such as `head` left, or the disk is full. */
  onClosed?: () => void;
}

const ENCODER = new TextEncoder();

function writeAll(sink: Sink, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) {
    done += sink.writeSync(bytes.subarray(done));
  }
}

/**
 * Creates the writer of a script; it never throws. Standard output that
 * fails (closed, or a full disk) is reported once as `error: cannot write to
 * standard output: <reason>`, then `onClosed` is called and later writes to
 * it are dropped; a failing standard error is ignored, as nothing is left to
 * tell.
 */
export function createOutput(options: OutputOptions = {}): Output {
  const { stdout = Deno.stdout, stderr = Deno.stderr, onClosed } = options;
  const stderrIsTerminal = stderr.isTerminal();
  const color = options.color ?? (!Deno.noColor && stderrIsTerminal);
  let closed = false;
  const toStderr = (text: string) => {
    try {
      writeAll(stderr, ENCODER.encode(text));
    } catch {
      // Nothing is left to tell a failure of standard error to.
    }
  };
  const printError = (error: unknown) => {
    const prefix = color ? "\x1b[1;31merror\x1b[0m:" : "error:";
    toStderr(`${prefix} ${errorMessage(error)}\n`);
  };
  const toStdout = (bytes: Uint8Array) => {
    if (closed) return;
    try {
      writeAll(stdout, bytes);
    } catch (error) {
      // A reader that left or a full disk: either way, no line gets through.
      closed = true;
      printError(`cannot write to standard output: ${errorMessage(error)}`);
      onClosed?.();
    }
  };
  return {
    line: (text) => toStdout(ENCODER.encode(`${text}\n`)),
    raw: toStdout,
    error: printError,
    warn: (text) => toStderr(`warning: ${text}\n`),
    status: toStderr,
    stderrIsTerminal,
    get closed() {
      return closed;
    },
  };
}
