/**
 * The one writer of both scripts' lines: complete writes to standard output
 * and error, the one-line `error:` form (bold red only on a terminal and
 * never with `NO_COLOR`), and a standard output that fails (closed, or a
 * full disk) ending in one `error:` line instead of a stack trace.
 *
 * Standard output is written synchronously unless `queueBytes` is given:
 * then lines go through a bounded queue written asynchronously, so a reader
 * that is slow or never reads cannot stop the event loop (and with it
 * signals and timers); lines that do not fit are dropped and counted.
 *
 * @module
 */

import { errorMessage } from "../net/errors.ts";
import { RECEIVE_BUFFER_SIZE } from "../net/payload.ts";

/** Where an {@linkcode Output} writes: `Deno.stdout` and `Deno.stderr` fit. */
export interface Sink {
  /** Writes some of `bytes`; returns how many were written. */
  writeSync(bytes: Uint8Array): number;
  /** Writes some of `bytes` without blocking the event loop (used with `queueBytes`). */
  write?(bytes: Uint8Array): Promise<number>;
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
  /**
   * Writes to standard output (`line` and `raw` calls) that did not get
   * through: after it failed, or, with `queueBytes`, when the queue was full.
   */
  readonly dropped: number;
  /**
   * Waits until the queue of standard output is empty (every queued write
   * done or failed) or `timeoutMs` milliseconds have passed; resolves
   * whether it is empty. Without `queueBytes` it is always empty.
   */
  flush(timeoutMs: number): Promise<boolean>;
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
  /**
   * Write standard output asynchronously through a queue of at most this
   * many bytes (the sink needs `write`); past it, writes are dropped and
   * counted in `dropped`, and the first drop is told once on stderr as
   * `warning: standard output is not keeping up: dropping lines`.
   */
  queueBytes?: number;
}

const ENCODER = new TextEncoder();

/** Characters a terminal acts on rather than shows (as `previewPayload` escapes them). */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;
/** The longest message an `error:` or `warning:` line shows, in characters. */
const MAX_MESSAGE = 1000;

/**
 * A message as one safe line: a value from the command line or a targets
 * file can hold escape sequences or be megabytes long, so controls become
 * `\u{X}` and a message past {@linkcode MAX_MESSAGE} characters is cut.
 */
function safeMessage(text: string): string {
  const escaped = text.replace(
    UNSAFE,
    (char) => `\\u{${char.codePointAt(0)!.toString(16)}}`,
  );
  if (escaped.length <= MAX_MESSAGE) return escaped;
  return `${escaped.slice(0, MAX_MESSAGE)}... (${
    escaped.length - MAX_MESSAGE
  } more characters)`;
}

function writeAll(sink: Sink, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) {
    done += sink.writeSync(bytes.subarray(done));
  }
}

async function writeAllAsync(
  write: (bytes: Uint8Array) => Promise<number>,
  bytes: Uint8Array,
): Promise<void> {
  for (let done = 0; done < bytes.length;) {
    done += await write(bytes.subarray(done));
  }
}

function concat(chunks: readonly Uint8Array[], length: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const all = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return all;
}

/**
 * Creates the writer of a script; it never throws. Standard output that
 * fails (closed, or a full disk) is reported once as `error: cannot write to
 * standard output: <reason>`, then `onClosed` is called and later writes to
 * it are dropped and counted; a failing standard error is ignored, as
 * nothing is left to tell.
 */
export function createOutput(options: OutputOptions = {}): Output {
  const { stdout = Deno.stdout, stderr = Deno.stderr, onClosed } = options;
  const stderrIsTerminal = stderr.isTerminal();
  const color = options.color ?? (!Deno.noColor && stderrIsTerminal);
  let closed = false;
  let dropped = 0;
  const toStderr = (text: string) => {
    try {
      writeAll(stderr, ENCODER.encode(text));
    } catch {
      // Nothing is left to tell a failure of standard error to.
    }
  };
  const printError = (error: unknown) => {
    const prefix = color ? "\x1b[1;31merror\x1b[0m:" : "error:";
    toStderr(`${prefix} ${safeMessage(errorMessage(error))}\n`);
  };
  const fail = (error: unknown) => {
    // A reader that left or a full disk: either way, no line gets through.
    closed = true;
    printError(`cannot write to standard output: ${errorMessage(error)}`);
    onClosed?.();
  };
  const writeSync = (bytes: Uint8Array) => {
    if (closed) {
      dropped++;
      return;
    }
    try {
      writeAll(stdout, bytes);
    } catch (error) {
      dropped++;
      fail(error);
    }
  };
  const queue = options.queueBytes === undefined || stdout.write === undefined
    ? undefined
    : createQueue(stdout.write.bind(stdout), options.queueBytes, {
      fail,
      drop: (count) => {
        if (dropped === 0 && !closed) {
          toStderr(
            "warning: standard output is not keeping up: dropping lines\n",
          );
        }
        dropped += count;
      },
      isClosed: () => closed,
    });
  const toStdout = queue?.push ?? writeSync;
  return {
    line: (text) => toStdout(ENCODER.encode(`${text}\n`)),
    raw: toStdout,
    error: printError,
    warn: (text) => toStderr(`warning: ${safeMessage(text)}\n`),
    status: toStderr,
    stderrIsTerminal,
    get closed() {
      return closed;
    },
    get dropped() {
      return dropped;
    },
    flush: (timeoutMs) => queue?.flush(timeoutMs) ?? Promise.resolve(true),
  };
}

interface QueueHooks {
  fail(error: unknown): void;
  drop(count: number): void;
  isClosed(): boolean;
}

/** A bounded queue of writes, drained by one asynchronous write at a time. */
function createQueue(
  write: (bytes: Uint8Array) => Promise<number>,
  limit: number,
  hooks: QueueHooks,
) {
  let chunks: Uint8Array[] = [];
  let queued = 0;
  let writing = false;
  const idle: (() => void)[] = [];
  const pump = async () => {
    writing = true;
    while (chunks.length > 0 && !hooks.isClosed()) {
      const batch = chunks;
      const length = queued;
      chunks = [];
      try {
        await writeAllAsync(write, concat(batch, length));
        queued -= length;
      } catch (error) {
        // Closed first, so the drops are not taken for a slow reader.
        hooks.fail(error);
        hooks.drop(batch.length + chunks.length);
        chunks = [];
        queued = 0;
      }
    }
    writing = false;
    for (const wake of idle.splice(0)) wake();
  };
  return {
    push(bytes: Uint8Array) {
      if (hooks.isClosed() || queued + bytes.length > limit) {
        hooks.drop(1);
        return;
      }
      chunks.push(bytes);
      queued += bytes.length;
      if (!writing) pump();
    },
    flush(timeoutMs: number): Promise<boolean> {
      if (!writing) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          idle.splice(idle.indexOf(done), 1);
          resolve(false);
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          resolve(true);
        };
        idle.push(done);
      });
    },
  };
}

/** The terminal width assumed when the terminal does not say, in columns. */
const DEFAULT_COLUMNS = 80;

/**
 * Fits a status line into `columns` terminal columns, one left free so the
 * cursor never wraps: whole comma-separated parts are dropped from the end
 * first, then the text is cut.
 */
export function fitStatus(text: string, columns: number): string {
  const width = Math.max(1, columns - 1);
  let fitted = text;
  while (fitted.length > width && fitted.includes(", ")) {
    fitted = fitted.slice(0, fitted.lastIndexOf(", "));
  }
  return fitted.slice(0, width);
}

/** The width of the terminal on standard error, in columns. */
function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns || DEFAULT_COLUMNS;
  } catch {
    // consoleSize asks stdout first and fails when no stream is a terminal.
    return DEFAULT_COLUMNS;
  }
}

/** A live status line, redrawn in place. */
export interface StatusLine {
  /** Draws `text`, fitted to the terminal's width. */
  show(text: string): void;
  /** Erases the line. */
  clear(): void;
}

/** A live status line on standard error; draws nothing unless `enabled` (a terminal). */
export function createStatusLine(output: Output, enabled: boolean): StatusLine {
  let last = "";
  return {
    show(text: string): void {
      if (!enabled) return;
      // Read each time: the terminal may have been resized.
      last = fitStatus(text, terminalColumns());
      output.status(`\r\x1b[K${last}`);
    },
    clear(): void {
      if (enabled && last !== "") output.status("\r\x1b[K");
      last = "";
    },
  };
}

/**
 * Yields each line of standard input, without its line ending, as bytes; a
 * line too long for any datagram is not kept, and yields only its length.
 */
export async function* stdinLines(): AsyncGenerator<Uint8Array | number> {
  let pieces: Uint8Array[] = [];
  let length = 0;
  const add = (piece: Uint8Array) => {
    length += piece.length;
    // Past any datagram's size only the count matters.
    if (length <= RECEIVE_BUFFER_SIZE) pieces.push(piece.slice());
  };
  const finish = (): Uint8Array | number => {
    let line: Uint8Array | number = length;
    if (length <= RECEIVE_BUFFER_SIZE) {
      const bytes = concat(pieces, length);
      line = bytes.at(-1) === 0x0d ? bytes.subarray(0, -1) : bytes;
    }
    pieces = [];
    length = 0;
    return line;
  };
  for await (const chunk of Deno.stdin.readable) {
    let start = 0;
    for (let end; (end = chunk.indexOf(0x0a, start)) !== -1; start = end + 1) {
      add(chunk.subarray(start, end));
      yield finish();
    }
    add(chunk.subarray(start));
  }
  if (length > 0) yield finish();
}
