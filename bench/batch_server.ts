/**
 * A bare batch echo server for benchmarks: `serveBatch()` in a Worker, or
 * (`--main`) the same engine on the main thread with nonblocking FFI receives,
 * to compare the two ways of keeping the event loop free.
 *
 * Usage: deno run --allow-ffi --allow-read --allow-net bench/batch_server.ts [--main | --hook] HOST
 * Prints `listening PORT`, serves until SIGTERM/SIGINT.
 *
 * @module
 */

import { serveBatch } from "../kernel/echo.ts";
import { bindSocket } from "../kernel/_bind.ts";
import { EchoEngine } from "../kernel/_echo_engine.ts";
import { LIBC_SYMBOLS, openLibc, releaseLibc } from "../kernel/_libc.ts";
import { COUNTER_SLOTS } from "../kernel/_echo_events.ts";

const NONBLOCKING_SYMBOLS = {
  recvmmsg: { ...LIBC_SYMBOLS.recvmmsg, nonblocking: true },
} as const;

function serveOnMainThread(
  hostname: string,
  signal: AbortSignal,
): { port: number; finished: Promise<unknown> } {
  const libc = openLibc();
  const nb = Deno.dlopen("libc.so.6", NONBLOCKING_SYMBOLS);
  const socket = bindSocket(libc, hostname, 0);
  const engine = new EchoEngine(libc, {
    fd: socket.fd,
    family: socket.family,
    localHostname: socket.addr.hostname,
    localPort: socket.addr.port,
    batchSize: 64,
    counts: new Float64Array(COUNTER_SLOTS),
  });
  let stopping = false;
  signal.addEventListener("abort", () => {
    stopping = true;
    libc.symbols.shutdown(socket.fd, 2);
  });
  const finished = (async () => {
    while (!stopping) {
      engine.prepareReceive();
      const n = await nb.symbols.recvmmsg(
        socket.fd,
        engine.receivePointer,
        engine.batchSize,
        0x10000,
        null,
      );
      if (n > 0 && !stopping) engine.echo(n);
    }
    // The receive above has returned: the kernel is done with the buffer.
    libc.symbols.close(socket.fd);
    releaseLibc();
    nb.close();
  })();
  return { port: socket.addr.port, finished };
}

if (import.meta.main) {
  const main = Deno.args.includes("--main");
  // --hook: call a decide hook per datagram (it reads the source address and
  // port, so the address cache and the call are measured too).
  const hook = Deno.args.includes("--hook");
  const hostname = Deno.args.find((arg) => !arg.startsWith("--")) ??
    "127.0.0.1";
  const controller = new AbortController();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => controller.abort());
  }
  const server = main
    ? serveOnMainThread(hostname, controller.signal)
    : (() => {
      const s = serveBatch({
        hostnames: [hostname],
        port: 0,
        signal: controller.signal,
        // Without --hook no decision at all: the bare engine is measured.
        decideModule: hook
          ? new URL("../testdata/decide_drop13.ts", import.meta.url).href
          : null,
        decideOptions: { size: 13 },
      });
      return { port: s.addr.port, finished: s.finished };
    })();
  console.log(`listening ${server.port}`);
  await server.finished;
  Deno.exit(0);
}
