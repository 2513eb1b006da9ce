import { deepEqual, equal, ok } from "node:assert/strict";
import { openSender, openSenderSockets } from "./sender.ts";
import { primeSockets } from "./_probe_warm_up.ts";
import type { SenderEngine } from "./sender.ts";

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

/**
 * A receive like the Worker's: an empty datagram from the socket's own
 * address is a primer, anything else not from the target is ignored.
 */
function countArrivals(engine: SenderEngine, selves: Uint8Array[]) {
  const primersBack = selves.map(() => 0);
  const ignored = selves.map(() => 0);
  const counts = { primersBack, ignored, receives: 0, receive, receiveAll };
  function receive(s: number): number {
    counts.receives++;
    const n = engine.receive(s);
    for (let i = 0; i < n; i++) {
      if (engine.fromTarget(s, i)) continue;
      if (
        engine.length(s, i) === 0 && engine.fromAddress(s, i, selves[s]!)
      ) primersBack[s]!++;
      else ignored[s]!++;
    }
    return Math.max(n, 0);
  }
  function receiveAll(): number {
    let total = 0;
    for (let s = 0; s < selves.length; s++) total += receive(s);
    return total;
  }
  return counts;
}

/** Primes `sockets` on `engine`, counting arrivals as the Worker does. */
function primeCounted(
  engine: SenderEngine,
  sockets: { fds: number[]; selves: Uint8Array[] },
) {
  const counts = countArrivals(engine, sockets.selves);
  const primed = primeSockets(engine, {
    fds: sockets.fds,
    selves: sockets.selves,
    primersBack: (s) => counts.primersBack[s]!,
    receive: counts.receive,
    receiveAll: counts.receiveAll,
  });
  return { primed, counts };
}

for (const bind of ["0.0.0.0", "127.0.0.1"]) {
  Deno.test(`primeSockets() has each socket bound to ${bind} send itself empty datagrams and takes each back, none to the target`, async () => {
    const { target, sockets, engine, close } = openProbes(2, bind);
    try {
      const { primed, counts } = primeCounted(engine, sockets);
      equal(primed, 8);
      deepEqual(counts.primersBack, [4, 4]);
      // Every primer was known for one: none is left to count as a stray.
      deepEqual(counts.ignored, [0, 0]);
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
      primersBack: () => 0,
      receive: () => 0,
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

Deno.test("primeSockets() never takes a stray for a primer: when its own datagrams do not come back, strays stay ignored", async () => {
  const { target, sockets, engine, close } = openProbes(1, "127.0.0.1");
  // Where the primers go instead of back: a socket nobody reads, as when a
  // firewall drops a socket's datagrams to itself.
  const sink = openSenderSockets({
    target: { hostname: "127.0.0.1", port: target.port, family: "IPv4" },
    bind: { hostname: "127.0.0.1", port: 0 },
    count: 1,
  });
  const stray = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  try {
    // On loopback each is queued on the socket before its send resolves.
    const to = { ...sockets.locals[0]!, transport: "udp" as const };
    await stray.send(new Uint8Array(0), to);
    await stray.send(new Uint8Array(5), to);
    const counts = countArrivals(engine, sockets.selves);
    const primed = primeSockets(engine, {
      fds: sockets.fds,
      selves: sink.selves,
      primersBack: (s) => counts.primersBack[s]!,
      receive: counts.receive,
      receiveAll: counts.receiveAll,
    });
    equal(primed, 0);
    deepEqual(counts.primersBack, [0]);
    deepEqual(counts.ignored, [2]);
  } finally {
    sink.close();
    stray.close();
    close();
  }
});

Deno.test("primeSockets() primes many sockets with a receive of each socket, not of every socket per datagram", () => {
  const { sockets, engine, close } = openProbes(64, "127.0.0.1");
  try {
    const { primed, counts } = primeCounted(engine, sockets);
    equal(primed, 64);
    deepEqual(counts.ignored, sockets.fds.map(() => 0));
    // On loopback each primer is queued before its send returns: one
    // receive finds it. Every socket's per primer would be 64 x 64.
    ok(counts.receives <= 4 * 64, `${counts.receives} receives`);
  } finally {
    close();
  }
});
