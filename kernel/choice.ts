/**
 * Which I/O carries the datagrams, and why: the one choice the echo server
 * (`server.ts --io`) and a measurement (`client.ts --io`) make alike.
 * `socket` is Deno's sockets; `batch` is the kernel engine, `recvmmsg(2)`
 * and `sendmmsg(2)` through FFI in a Worker (`echo.ts` for a server,
 * `probes.ts` for a measurement). The engine needs Linux, `--allow-ffi`
 * (which is full access to the process), read access to this folder (Deno
 * loads a Worker's modules only with it) and a net permission not scoped
 * to hosts, because it sends through libc, past Deno's per-send check; so
 * `auto` picks it only where the permissions already allow it, asked
 * without prompting, and says why it did not. An engine that `auto` picked
 * but that cannot start falls back to sockets, the failure named in the
 * reason ({@linkcode fallbackChoice}).
 *
 * @example Which backend `--io auto` stands for here
 * ```ts
 * import { chooseIo } from "./choice.ts";
 *
 * const choice = chooseIo("auto");
 * console.log(`io: ${choice.io} (${choice.reason})`);
 * ```
 *
 * @module
 */

import { formatAddress } from "../net/address.ts";

/** An I/O backend: Deno's sockets or the kernel engine through FFI. */
export type IoBackend = "socket" | "batch";

/** The backends, as `--io` names them. */
export const IO_BACKENDS: readonly IoBackend[] = ["socket", "batch"];

/** What `--io` accepts: a backend, or `auto` to pick one. */
export type IoMode = "auto" | IoBackend;

/** The names `--io` accepts, the default first. */
export const IO_MODES: readonly IoMode[] = ["auto", "socket", "batch"];

/** The backend in use and why, as the start-up `io:` line says. */
export interface IoChoice {
  /** The backend. */
  io: IoBackend;
  /** Why, in a few words: `recvmmsg/sendmmsg`, `--allow-ffi not granted`... */
  reason: string;
}

/** The reason the `io:` line gives for the kernel engine. */
const BATCH_REASONS = {
  echo: "recvmmsg/sendmmsg",
  probes: "sendmmsg/recvmmsg with kernel timestamps",
} as const;

/** This folder: the engine's Workers load their modules from it. */
const KERNEL_DIR = new URL(".", import.meta.url);

/**
 * The backend `mode` stands for in this process, asking the permissions
 * without prompting. `auto` picks `batch` on Linux with `--allow-ffi`, read
 * access to the engine's modules and a net permission not scoped to hosts,
 * else `socket`; an explicit backend is kept. Whether the engine then
 * starts is up to the caller. `options.carrying` says what the engine would
 * carry, for the reason given for `batch`: the echo server's datagrams
 * (`"echo"`, the default) or a measurement's probes (`"probes"`). Never
 * throws, unless `options.strict`: then a `batch` this process cannot run
 * is a TypeError (`Cannot use --io batch: reason`) rather than a failure
 * left to the engine's start.
 */
export function chooseIo(
  mode: IoMode,
  options: { carrying?: "echo" | "probes"; strict?: boolean } = {},
): IoChoice {
  const batch: IoChoice = {
    io: "batch",
    reason: BATCH_REASONS[options.carrying ?? "echo"],
  };
  if (mode === "socket") return { io: "socket", reason: "--io socket" };
  if (mode === "batch" && !options.strict) return batch;
  const refusal = batchRefusal();
  if (refusal === undefined) return batch;
  if (mode === "batch") {
    throw new TypeError(`Cannot use --io batch: ${refusal}`);
  }
  return { io: "socket", reason: refusal };
}

/**
 * Why `auto` would not pick the kernel engine in this process, in a few
 * words (`--allow-ffi not granted`); `undefined` when it would.
 */
export function batchRefusal(): string | undefined {
  switch (batchGap()) {
    case "linux":
      return `not Linux: ${Deno.build.os}`;
    case "ffi":
      return "--allow-ffi not granted";
    case "read":
      return `--allow-read does not cover ${batchModuleDir()}`;
  }
  const net = Deno.permissions.querySync({ name: "net" });
  if (net.state !== "granted") return "--allow-net is scoped to hosts";
  if (net.partial) return "--deny-net limits --allow-net";
  return undefined;
}

/**
 * The choice once the kernel engine `auto` picked could not start, `why`
 * saying what failed: sockets.
 */
export function fallbackChoice(why: string | undefined): IoChoice {
  return { io: "socket", reason: `the batch engine cannot start: ${why}` };
}

/** What this process lacks to run the kernel engine (see {@linkcode batchGap}). */
export type BatchGap = "linux" | "ffi" | "read";

/**
 * What keeps this process from running the kernel engine, asking the
 * permissions without prompting: `"linux"` (another OS: no recvmmsg),
 * `"ffi"` (no `--allow-ffi`) or `"read"` (no read access to this folder,
 * which Deno needs to load a Worker's modules, unless a compiled binary
 * carries them); `undefined` when nothing does. A read permission with
 * `--deny-read` holes counts as granted: whether the holes matter is found
 * out by starting the engine.
 */
export function batchGap(): BatchGap | undefined {
  if (Deno.build.os !== "linux") return "linux";
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return "ffi";
  }
  // A compiled binary carries the Worker's modules inside itself (`deno
  // compile --include`), at a path known only at run time.
  if (
    KERNEL_DIR.protocol === "file:" && !Deno.build.standalone &&
    Deno.permissions.querySync({ name: "read", path: KERNEL_DIR }).state !==
      "granted"
  ) {
    return "read";
  }
  return undefined;
}

/** The folder whose read access the kernel engine needs, as a path. */
export function batchModuleDir(): string {
  return KERNEL_DIR.protocol === "file:"
    ? decodeURIComponent(KERNEL_DIR.pathname)
    : KERNEL_DIR.href;
}

/**
 * Throws a `TypeError` ("Cannot use --io batch: ...") unless this process
 * can run the echo server's kernel engine: Linux, the `ffi` permission, and
 * read access to this folder.
 */
export function checkBatchSupport(): void {
  switch (batchGap()) {
    case "linux":
      throw new TypeError(
        `Cannot use --io batch: it needs Linux (recvmmsg), not ${Deno.build.os}`,
      );
    case "ffi":
      throw new TypeError(
        "Cannot use --io batch: it needs --allow-ffi (see deno task server:fast)",
      );
    case "read":
      throw new TypeError(
        `Cannot use --io batch: it needs --allow-read=${batchModuleDir()} to start its Worker`,
      );
  }
}

/**
 * Throws `Deno.errors.NotCapable` unless this process may use
 * `hostname:port`: sockets made through FFI bypass Deno's own check, so ask
 * what `Deno.listenDatagram` or a send would.
 */
export function checkNetPermission(hostname: string, port: number): void {
  const where = formatAddress({ hostname, port });
  if (
    Deno.permissions.querySync({ name: "net", host: where }).state !==
      "granted"
  ) {
    throw new Deno.errors.NotCapable(
      `Requires net access to "${where}", run again with the --allow-net flag`,
    );
  }
}
