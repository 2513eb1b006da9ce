/**
 * Which I/O a process may use, asked without prompting: the kernel engines
 * (`echo.ts` for a server, `sender.ts` for a measuring client) need Linux,
 * `--allow-ffi`, read access to this directory (for their Workers) and a net
 * permission not scoped to hosts, because they send through libc, past
 * Deno's per-send check. Server and client decide `--io auto` here alike.
 *
 * @example
 * ```ts
 * import { chooseIoBackend } from "./choice.ts";
 *
 * const choice = chooseIoBackend("auto", "recvmmsg/sendmmsg");
 * console.log(`io: ${choice.io} (${choice.reason})`);
 * ```
 *
 * @module
 */

import { formatAddress } from "../net/address.ts";
import { batchGap, batchModuleDir } from "./echo.ts";

/** An I/O backend: Deno's sockets or a kernel engine through FFI. */
export type IoKind = "socket" | "batch";

/** The backend in use and why, as a start-up `io:` line says. */
export interface IoKindChoice {
  /** The backend. */
  io: IoKind;
  /** Why, in a few words: `recvmmsg/sendmmsg`, `--allow-ffi not granted`... */
  reason: string;
}

/**
 * The backend `mode` stands for in this process. `auto` picks `batch` on
 * Linux with `--allow-ffi`, read access to the engines' modules and a net
 * permission not scoped to hosts, else `socket`; `batchReason` is the
 * reason given for `batch`. Whether an engine then starts is up to the
 * caller. Never throws.
 */
export function chooseIoBackend(
  mode: "auto" | IoKind,
  batchReason: string,
): IoKindChoice {
  if (mode === "socket") return { io: "socket", reason: "--io socket" };
  if (mode === "batch") return { io: "batch", reason: batchReason };
  switch (batchGap()) {
    case "linux":
      return { io: "socket", reason: `not Linux: ${Deno.build.os}` };
    case "ffi":
      return { io: "socket", reason: "--allow-ffi not granted" };
    case "read":
      return {
        io: "socket",
        reason: `--allow-read does not cover ${batchModuleDir()}`,
      };
  }
  const net = Deno.permissions.querySync({ name: "net" });
  if (net.state !== "granted") {
    return { io: "socket", reason: "--allow-net is scoped to hosts" };
  }
  if (net.partial) {
    return { io: "socket", reason: "--deny-net limits --allow-net" };
  }
  return { io: "batch", reason: batchReason };
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
