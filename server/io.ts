/**
 * Starting the echo server on the backend `--io` stands for: the choice is
 * `kernel/choice.ts`'s, as for a measurement; with `auto`, a kernel engine
 * that cannot start gives way to Deno's sockets. The batch engine
 * (`recvmmsg`/`sendmmsg` through FFI) is faster under load
 * (docs/server.md, I/O backends; docs/performance.md), but it needs
 * `--allow-ffi`, which is full access to the process; so it is used only
 * where the permissions already allow it, and the server says which one
 * runs.
 *
 * @example Try the engine, fall back to sockets
 * ```ts
 * import { startEcho } from "./io.ts";
 *
 * const controller = new AbortController();
 * const { server, choice } = await startEcho({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   io: "auto",
 *   signal: controller.signal,
 * });
 * console.log(`io: ${choice.io} (${choice.reason})`);
 * controller.abort();
 * await server.finished;
 * ```
 *
 * @module
 */

import type { BatchServer } from "../kernel/echo.ts";
import {
  chooseIo,
  fallbackChoice,
  type IoChoice,
  type IoMode,
} from "../kernel/choice.ts";
import type { EchoServer } from "../echo/types.ts";
import { errorMessage } from "../net/errors.ts";
import { serveEcho, type ServeEchoOptions } from "./serve.ts";

/** Options for {@linkcode startEcho}: {@linkcode serveEcho}'s, with `auto`. */
export interface StartEchoOptions extends Omit<ServeEchoOptions, "io"> {
  /** The backend, or `auto` (the default) to let `chooseIo` pick. */
  io?: IoMode;
}

/** A started server and the backend it runs on. */
export interface StartedEcho {
  /** The server, bound and, with the batch backend, its Workers running. */
  server: EchoServer;
  /** The backend in use and why. */
  choice: IoChoice;
}

/**
 * Starts {@linkcode serveEcho} on the backend `options.io` stands for.
 * With `auto`, an engine that fails to start for any reason (the C library,
 * a socket option, a Worker that cannot load) is stopped and the socket
 * backend takes over, the failure named in the reason. With the batch
 * backend each socket keeps its own rate-limit table (one per Worker).
 * Throws as {@linkcode serveEcho} does when the backend it ends on cannot
 * bind; with an explicit `batch`, `server.finished` rejects when a Worker
 * fails, as before.
 */
export async function startEcho(
  options: StartEchoOptions = {},
): Promise<StartedEcho> {
  const { io = "auto", ...rest } = options;
  const choice = chooseIo(io);
  if (choice.io === "socket") {
    const server = serveEcho({ ...rest, io: "socket" });
    await server.started;
    return { server, choice };
  }
  const batchOptions: ServeEchoOptions = {
    ...rest,
    io: "batch",
    rateLimitScope: "socket",
  };
  if (io === "batch") {
    const server = serveEcho(batchOptions);
    // Ready once its Workers run and warmed up; a failure is `finished`'s.
    await server.started?.catch(() => {});
    return { server, choice };
  }
  // Stop a failed attempt without aborting the caller's signal.
  const attempt = new AbortController();
  const signal = options.signal === undefined
    ? attempt.signal
    : AbortSignal.any([options.signal, attempt.signal]);
  try {
    const server = serveEcho({ ...batchOptions, signal });
    try {
      await (server as BatchServer).started;
    } catch (error) {
      attempt.abort();
      await server.finished.catch(() => {});
      throw error;
    }
    return { server, choice };
  } catch (error) {
    const server = serveEcho({ ...rest, io: "socket" });
    await server.started;
    return { server, choice: fallbackChoice(errorMessage(error)) };
  }
}
