import { deepEqual, equal } from "node:assert/strict";
import { createOutput, type Sink } from "./output.ts";

/** A sink that keeps what it is given, `chunk` bytes per write at most. */
function recorder(options: { chunk?: number; terminal?: boolean } = {}) {
  const { chunk = Infinity, terminal = false } = options;
  const bytes: number[] = [];
  const sink: Sink & { text(): string } = {
    writeSync(data) {
      const n = Math.min(chunk, data.length);
      bytes.push(...data.subarray(0, n));
      return n;
    },
    isTerminal: () => terminal,
    text: () => new TextDecoder().decode(new Uint8Array(bytes)),
  };
  return sink;
}

/** A sink whose every write throws `error`. */
function failing(error: Error): Sink {
  return {
    writeSync() {
      throw error;
    },
    isTerminal: () => false,
  };
}

Deno.test("createOutput() writes whole lines through short writes", () => {
  const stdout = recorder({ chunk: 1 });
  const out = createOutput({ stdout, stderr: recorder() });
  out.line("hello");
  out.raw(new Uint8Array([0x41, 0x0a]));
  equal(stdout.text(), "hello\nA\n");
});

Deno.test("createOutput() writes error lines in the one form", () => {
  const stderr = recorder();
  const out = createOutput({ stdout: recorder(), stderr });
  out.error(new Error("Cannot do it: no reason"));
  out.error("already lower case");
  out.warn("careful");
  equal(
    stderr.text(),
    "error: cannot do it: no reason\nerror: already lower case\nwarning: careful\n",
  );
});

Deno.test("createOutput() escapes controls in error and warning lines and cuts long ones", () => {
  const stderr = recorder();
  const out = createOutput({ stdout: recorder(), stderr });
  out.error(new Error('Cannot use --allow "10.0.0.0/8\x1b[31m\u202e"'));
  out.warn("a\u009b2Jb");
  out.error(`Cannot use --rate "${"x".repeat(5000)}"`);
  const [error, warning, long, end] = stderr.text().split("\n");
  equal(error, 'error: cannot use --allow "10.0.0.0/8\\u{1b}[31m\\u{202e}"');
  equal(warning, "warning: a\\u{9b}2Jb");
  equal(long!.length < 1100, true);
  equal(long!.endsWith("... (4020 more characters)"), true);
  equal(end, "");
});

Deno.test("createOutput() colours error: only when asked", () => {
  const plain = recorder({ terminal: true });
  createOutput({ stdout: recorder(), stderr: plain, color: false }).error("x");
  equal(plain.text(), "error: x\n");
  const coloured = recorder({ terminal: true });
  createOutput({ stdout: recorder(), stderr: coloured, color: true })
    .error("x");
  equal(coloured.text(), "\x1b[1;31merror\x1b[0m: x\n");
});

Deno.test("createOutput() never colours a stderr that is no terminal", () => {
  const stderr = recorder({ terminal: false });
  createOutput({ stdout: recorder(), stderr }).error("x");
  equal(stderr.text(), "error: x\n");
});

Deno.test("createOutput() reports a closed stdout once and drops the rest", () => {
  const stderr = recorder();
  const calls: string[] = [];
  const out = createOutput({
    stdout: failing(new Deno.errors.BrokenPipe("Broken pipe (os error 32)")),
    stderr,
    onClosed: () => calls.push("closed"),
  });
  equal(out.closed, false);
  out.line("one");
  out.line("two");
  out.raw(new Uint8Array([1]));
  equal(out.closed, true);
  deepEqual(calls, ["closed"]);
  equal(stderr.text(), "error: cannot write to standard output: broken pipe\n");
});

Deno.test("createOutput() ignores a closed stderr", () => {
  const out = createOutput({
    stdout: recorder(),
    stderr: failing(new Deno.errors.BrokenPipe("gone")),
  });
  out.error("nobody hears this");
  out.status("nor this");
});

Deno.test("createOutput() treats a full disk like a closed stdout, never throwing", () => {
  const stderr = recorder();
  const calls: string[] = [];
  const out = createOutput({
    stdout: failing(new Error("No space left on device (os error 28)")),
    stderr,
    onClosed: () => calls.push("closed"),
  });
  out.line("x");
  out.line("y");
  equal(out.closed, true);
  deepEqual(calls, ["closed"]);
  equal(
    stderr.text(),
    "error: cannot write to standard output: no space left on device\n",
  );
});

Deno.test("createOutput() counts the writes a failed stdout dropped", () => {
  const out = createOutput({
    stdout: failing(new Error("No space left on device (os error 28)")),
    stderr: recorder(),
  });
  out.line("x");
  out.line("y");
  out.raw(new Uint8Array([1]));
  equal(out.dropped, 3);
});

/** A sink whose asynchronous writes wait until `release()` is called. */
function stalled() {
  const written: Uint8Array[] = [];
  const pending: (() => void)[] = [];
  const sink: Sink & { release(): void; text(): string } = {
    writeSync: () => {
      throw new Error("unexpected synchronous write");
    },
    write(bytes) {
      written.push(bytes.slice());
      return new Promise((resolve) =>
        pending.push(() => resolve(bytes.length))
      );
    },
    isTerminal: () => false,
    release: () => {
      for (const resolve of pending.splice(0)) resolve();
    },
    text: () => written.map((b) => new TextDecoder().decode(b)).join(""),
  };
  return sink;
}

Deno.test("createOutput() with queueBytes drops and counts past the limit, warning once", async () => {
  const stdout = stalled();
  const stderr = recorder();
  const out = createOutput({ stdout, stderr, queueBytes: 16 });
  out.line("first"); // 6 bytes, counted until their write is done
  out.line("1234"); // 11
  out.line("5678"); // 16: full
  out.line("dropped");
  out.line("dropped too");
  equal(out.dropped, 2);
  equal(
    stderr.text(),
    "warning: standard output is not keeping up: dropping lines\n",
  );
  equal(await out.flush(20), false, "a stalled reader never drains");
  stdout.release();
  await new Promise((resolve) => setTimeout(resolve, 0));
  stdout.release();
  equal(await out.flush(1000), true);
  equal(stdout.text(), "first\n1234\n5678\n");
  equal(out.closed, false);
});

Deno.test("createOutput() with queueBytes reports a failing stdout once, never throwing", async () => {
  const stderr = recorder();
  const calls: string[] = [];
  const out = createOutput({
    stdout: {
      writeSync: () => 0,
      write: () =>
        Promise.reject(new Error("No space left on device (os error 28)")),
      isTerminal: () => false,
    },
    stderr,
    queueBytes: 1 << 20,
    onClosed: () => calls.push("closed"),
  });
  out.line("a");
  out.line("b");
  equal(await out.flush(1000), true);
  out.line("c");
  equal(out.closed, true);
  equal(out.dropped, 3);
  deepEqual(calls, ["closed"]);
  equal(
    stderr.text(),
    "error: cannot write to standard output: no space left on device\n",
  );
});
