import { deepEqual, equal } from "node:assert/strict";
import { openSender, openSenderSockets } from "./sender.ts";
import { primeSockets } from "./_probe_warm_up.ts";

/** How long the target may take to show it got a datagram, in ms. */
const RECEIVE_WAIT_MS = 5000;

/**
 * A target that answers nothing and keeps the size of each datagram it
 * gets: priming must never reach it.
 */
function silentTarget() {
  const conn = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  return { conn, port: (conn.addr as Deno.NetAddr).port };
}

/**
 * `count` probe sockets bound to `bind` aimed at a silent target, and an
 * engine on them; `close` closes all three.
 */
function openProbes(count: number, bind = "0.0.0.0") {
  const target = silentTarget();
  const sockets = openSenderSockets({
    target: { hostname: "127.0.0.1", port: target.port, family: "IPv4" },
    bind: { hostname: bind, port: 0 },
    count,
  });
  const { engine, release } = openSender({
    fds: sockets.fds,
    target: sockets.target,
    size: 32,
  });
  return {
    target,
    sockets,
    engine,
    close() {
      release();
      sockets.close();
      target.conn.close();
    },
  };
}

for (const bind of ["0.0.0.0", "127.0.0.1"]) {
  Deno.test(`primeSockets() has each socket bound to ${bind} send itself empty datagrams and takes each back, none to the target`, async () => {
    const { target, sockets, engine, close } = openProbes(2, bind);
    try {
      const ignored = [0, 0];
      const fromSelf = [0, 0];
      const primed = primeSockets(engine, {
        fds: sockets.fds,
        selves: sockets.selves,
        ignored: (s) => ignored[s]!,
        unignore: (s) => ignored[s]!--,
        receiveAll: () => {
          let total = 0;
          for (let s = 0; s < sockets.fds.length; s++) {
            const n = engine.receive(s);
            for (let i = 0; i < n; i++) {
              if (engine.fromTarget(s, i)) continue;
              ignored[s]!++;
              if (engine.length(s, i) === 0) fromSelf[s]!++;
            }
            total += Math.max(n, 0);
          }
          return total;
        },
      });
      equal(primed, 8);
      deepEqual(fromSelf, [4, 4]);
      // Every primer was taken back: none is left to count as a stray.
      deepEqual(ignored, [0, 0]);
      equal(engine.receive(0), 0);
      equal(engine.receive(1), 0);
      // The first datagram the target ever gets is the probe sent after.
      engine.sendSlot(0).fill(9);
      equal(engine.send(0), 32);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const received = await Promise.race([
        target.conn.receive(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error("the target got nothing")),
            RECEIVE_WAIT_MS,
          );
        }),
      ]).finally(() => clearTimeout(timer));
      equal(received[0].length, 32);
      equal(received[0][0], 9);
    } finally {
      close();
    }
  });
}

Deno.test("primeSockets() stops at a socket with no address to reach itself by, sending nothing", () => {
  const { sockets, engine, close } = openProbes(1);
  try {
    let received = 0;
    const primed = primeSockets(engine, {
      fds: sockets.fds,
      selves: [new Uint8Array(0)],
      ignored: () => 0,
      unignore: () => {},
      receiveAll: () => {
        const n = engine.receive(0);
        received += Math.max(n, 0);
        return n;
      },
    });
    equal(primed, 0);
    equal(received, 0);
    equal(engine.receive(0), 0);
  } finally {
    close();
  }
});
