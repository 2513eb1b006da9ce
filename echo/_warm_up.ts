/**
 * The socket backend's start-up work, done before the server says it is
 * ready (`started`, which the `listening` line waits for): the echo loop
 * itself runs on a loopback socket of its own, with a policy, counters and
 * reflect hook of its own and no events, while a second socket of its own
 * sends it datagrams and waits for each echo. The first datagram a client
 * sends then meets the loop's code already compiled, instead of paying
 * for it inside the round trip it is being measured by. Three such loops
 * run in turn, each with a new reflect hook, so the compiled code is not
 * specialised to one hook's closures, which the server's own would undo.
 *
 * Nothing of it reaches the server's sockets, counters or events. A
 * failure (no loopback of the family, a policy refusing loopback) ends the
 * warm-up early and is not the server's.
 *
 * @module
 */

/** Datagrams each warm-up loop echoes. */
export const SOCKET_WARM_UP_ROUNDS = 64;
/** Loops, each with a reflect hook of its own, that warm up in turn. */
export const SOCKET_WARM_UP_LOOPS = 3;
/** The warm-up datagram: as long as a STAMP request without TLVs, and more. */
const WARM_UP_SIZE = 64;
/** How long an echo on loopback may take before the warm-up gives up, ms. */
const WARM_UP_TIMEOUT_MS = 200;

/**
 * Runs one echo loop, as the server's, on `conn` until `isClosed()`, with
 * a new reflect hook each time.
 */
export type WarmUpLoop = (
  conn: Deno.DatagramConn,
  isClosed: () => boolean,
) => Promise<void>;

/**
 * Runs {@linkcode SOCKET_WARM_UP_LOOPS} warm-up loops in turn on loopback
 * of `family`, until `stopped()` (the server closed); resolves with how
 * many echoes came back in all. Never rejects.
 */
export async function warmUpSocketLoop(
  family: "IPv4" | "IPv6",
  run: WarmUpLoop,
  stopped: () => boolean,
): Promise<number> {
  let echoed = 0;
  const hostname = family === "IPv6" ? "::1" : "127.0.0.1";
  for (let loop = 0; loop < SOCKET_WARM_UP_LOOPS && !stopped(); loop++) {
    echoed += await warmUpOnce(hostname, run, stopped);
  }
  return echoed;
}

async function warmUpOnce(
  hostname: string,
  run: WarmUpLoop,
  stopped: () => boolean,
): Promise<number> {
  const conns: Deno.DatagramConn[] = [];
  let closed = false;
  let running: Promise<void> | undefined;
  let echoed = 0;
  try {
    for (let k = 0; k < 2; k++) {
      conns.push(Deno.listenDatagram({ transport: "udp", hostname, port: 0 }));
    }
    const [server, peer] = conns as [Deno.DatagramConn, Deno.DatagramConn];
    running = run(server, () => closed).catch(() => {});
    const payload = new Uint8Array(WARM_UP_SIZE);
    const reply = new Uint8Array(WARM_UP_SIZE);
    for (let round = 0; round < SOCKET_WARM_UP_ROUNDS && !stopped(); round++) {
      await peer.send(payload, server.addr);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), WARM_UP_TIMEOUT_MS);
      });
      const got = await Promise.race([peer.receive(reply), late]);
      clearTimeout(timer);
      if (got === undefined) break;
      echoed++;
    }
  } catch {
    // No loopback of this family, say: the server runs unwarmed.
  } finally {
    closed = true;
    for (const conn of conns) conn.close();
    await running;
  }
  return echoed;
}
