/**
 * The STAMP Session-Sender against reflectors that lie: each is written
 * here, answers `client.ts --stamp` on loopback and counts what it did,
 * which is the ground truth the client's verdict is held against.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { runScript } from "../testing/cli.ts";
import { StampReflector } from "../stamp/reflector.ts";
import { STAMP_BASE_SIZE } from "../stamp/packet.ts";

/** What `client.ts --io batch` needs besides the network. */
const ENGINE = ["--allow-net", "--allow-ffi", "--allow-read=."];
const IO_MODES = ["socket", "batch"] as const;

/** Turns a request into the bytes sent back; `reflect` makes a true STAMP reply of it. */
type Mangle = (
  request: Uint8Array,
  reflect: (request: Uint8Array) => Uint8Array,
) => Uint8Array;

/** A reflector on 127.0.0.1 that answers each request with `mangle`'s bytes. */
function hostileReflector(mangle: Mangle, reflector = new StampReflector()) {
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const reflect = (request: Uint8Array) => {
    const reply = new Uint8Array(request.length);
    reflector.reflect(request, reply, {
      from: { hostname: "127.0.0.1", port: 0 },
      local: { hostname: "127.0.0.1", port: 0 },
      receivedAtMs: performance.timeOrigin + performance.now(),
    });
    return reply;
  };
  let answered = 0;
  const loop = (async () => {
    try {
      for (;;) {
        const [data, from] = await socket.receive();
        await socket.send(mangle(data, reflect), from);
        answered++;
      }
    } catch {
      // Closed.
    }
  })();
  return {
    port: (socket.addr as Deno.NetAddr).port,
    get answered() {
      return answered;
    },
    async stop() {
      socket.close();
      await loop;
    },
  };
}

const flipLast = (bytes: Uint8Array) => {
  const out = bytes.slice();
  out[out.length - 1]! ^= 0xff;
  return out;
};
const randomTail = (bytes: Uint8Array) => {
  const out = bytes.slice();
  crypto.getRandomValues(out.subarray(STAMP_BASE_SIZE));
  return out;
};
const cut = (bytes: Uint8Array) => bytes.slice(0, bytes.length - 8);
const grow = (bytes: Uint8Array) => {
  const out = new Uint8Array(bytes.length + 8);
  out.set(bytes);
  return out;
};

/** Runs `client.ts --stamp --json` against `port`; its document and exit code. */
async function stampClient(
  port: number,
  io: string,
  extra: string[] = [],
): Promise<
  { code: number; document: ReturnType<typeof JSON.parse>; stderr: string }
> {
  const { code, stdout, stderr } = await runScript("client.ts", [
    "-H",
    "127.0.0.1",
    "-p",
    String(port),
    "--io",
    io,
    "--stamp",
    "-c",
    "5",
    "-i",
    "10",
    "-t",
    "500",
    "--json",
    ...extra,
  ], { permissions: io === "batch" ? ENGINE : ["--allow-net"] });
  ok(stdout.startsWith("{"), `${stdout}\n${stderr}`);
  return { code, document: JSON.parse(stdout), stderr };
}

/**
 * Each hostile reflector, what it does to a request, and the counts the
 * client must give for 5 probes: [received, corrupted, truncated,
 * size_mismatch]. A changed reply is never taken for a plain echo.
 */
const HOSTILE: [string, Mangle, number[]][] = [
  ["a plain echo that flips the last byte", (r) => flipLast(r), [0, 5, 0, 0]],
  // The run counts a truncated reply among the corrupted too.
  ["a plain echo that cuts 8 bytes off", (r) => cut(r), [0, 5, 5, 0]],
  ["a plain echo that adds 8 bytes", (r) => grow(r), [0, 5, 0, 0]],
  [
    "a plain echo that puts random bytes after the base packet",
    (r) => randomTail(r),
    [0, 5, 0, 0],
  ],
  [
    "a reflector that puts random bytes after the base packet",
    (r, reflect) => randomTail(reflect(r)),
    [0, 5, 0, 0],
  ],
  [
    "a reflector that flips the last byte (Extra Padding)",
    (r, reflect) => flipLast(reflect(r)),
    [0, 5, 0, 0],
  ],
  [
    "a reflector that changes the sender's timestamp it copies",
    (r, reflect) => {
      const reply = reflect(r);
      reply[35]! ^= 1;
      return reply;
    },
    [0, 5, 0, 0],
  ],
  [
    "a reflector that cuts the reply to the base packet",
    (r, reflect) => reflect(r).slice(0, STAMP_BASE_SIZE),
    [5, 0, 0, 5],
  ],
  [
    "a reflector that adds 8 bytes",
    (r, reflect) => grow(reflect(r)),
    [5, 0, 0, 5],
  ],
];

for (const io of IO_MODES) {
  for (const [name, mangle, expected] of HOSTILE) {
    Deno.test(`client.ts --stamp --io ${io} against ${name}`, async () => {
      const reflector = hostileReflector(mangle);
      try {
        const { code, document } = await stampClient(reflector.port, io);
        equal(reflector.answered, 5);
        deepEqual(
          [
            document.received,
            document.corrupted,
            document.truncated,
            document.stamp.size_mismatch,
          ],
          expected,
        );
        equal(document.stamp.plain_echo, false);
        equal(code, expected[0] === 5 ? 0 : 1);
      } finally {
        await reflector.stop();
      }
    });
  }

  Deno.test(`client.ts --stamp --io ${io} against a reflector sending random bytes counts no reply`, async () => {
    const reflector = hostileReflector((r) =>
      crypto.getRandomValues(new Uint8Array(r.length))
    );
    try {
      const { code, document } = await stampClient(reflector.port, io);
      equal(reflector.answered, 5);
      // Random bytes name no probe of this session (or, 2 in 65536, are
      // read as one and fail its check): none is taken as a reply.
      equal(document.received, 0);
      equal(document.stamp.plain_echo, false);
      equal(code, 1);
    } finally {
      await reflector.stop();
    }
  });
}

/** Sets the Z flag of the reflector's error estimate: its timestamps claim to be PTP. */
const claimPtp: Mangle = (r, reflect) => {
  const reply = reflect(r);
  reply[12]! |= 0x40;
  return reply;
};

/** Writes T3 a millisecond before T2: a negative reflector time. */
const transmitBeforeReceive: Mangle = (r, reflect) => {
  const reply = reflect(r);
  const view = new DataView(reply.buffer);
  view.setUint32(4, view.getUint32(16));
  view.setUint32(8, Math.max(0, view.getUint32(20) - 2 ** 32 / 1000));
  if (view.getUint32(20) < 2 ** 32 / 1000) {
    view.setUint32(4, view.getUint32(16) - 1);
  }
  return reply;
};

/** Writes T3 five seconds after T2: a reflector time longer than any round trip. */
const transmitLongAfterReceive: Mangle = (r, reflect) => {
  const reply = reflect(r);
  const view = new DataView(reply.buffer);
  view.setUint32(4, view.getUint32(16) + 5);
  view.setUint32(8, view.getUint32(20));
  return reply;
};

for (const io of IO_MODES) {
  for (
    const [name, mangle, problem] of [
      [
        "NTP-epoch seconds under a PTP flag",
        claimPtp,
        "more than a day",
      ],
      ["T3 before T2", transmitBeforeReceive, "before its receive time"],
      [
        "T3 five seconds after T2",
        transmitLongAfterReceive,
        "longer than the round trip",
      ],
    ] as const
  ) {
    Deno.test(`client.ts --stamp --io ${io} says once that one-way figures are unavailable with ${name}, and keeps the RTT`, async () => {
      const reflector = hostileReflector(mangle);
      try {
        const { code, document } = await stampClient(reflector.port, io);
        equal(code, 0);
        equal(document.received, 5);
        equal(typeof document.rtt_ms.mean, "number");
        equal(document.one_way_ms, null);
        equal(document.reflector_ms, null);
        ok(
          document.stamp.one_way_unavailable.includes(problem),
          document.stamp.one_way_unavailable,
        );
        const text = await runScript("client.ts", [
          "-H",
          "127.0.0.1",
          "-p",
          String(reflector.port),
          "--io",
          io,
          "--stamp",
          "-c",
          "3",
          "-i",
          "10",
        ], { permissions: io === "batch" ? ENGINE : ["--allow-net"] });
        const said = text.stdout.split("\n").filter((line) =>
          line.includes("unavailable")
        );
        equal(said.length, 1, text.stdout);
        ok(said[0]!.includes(problem), said[0]);
        ok(!/fwd=|one-way \(ms\)/.test(text.stdout), text.stdout);
        ok(/^rtt \(ms\)/m.test(text.stdout), text.stdout);
      } finally {
        await reflector.stop();
      }
    });
  }
}

Deno.test("client.ts --stamp --stamp-tlv location without -s grows the probe to fit the TLV", async () => {
  const reflector = hostileReflector((r, reflect) => reflect(r));
  try {
    const { code, document } = await stampClient(reflector.port, "socket", [
      "--stamp-tlv",
      "location,timestamp-info",
    ]);
    equal(code, 0);
    equal(document.size, 100);
    equal(document.stamp.size_mismatch, 0);
    ok(document.stamp.location !== null);
  } finally {
    await reflector.stop();
  }
});

Deno.test("client.ts --stamp --reflector-stateful names a duplicated request as a cause when the reflector's count runs ahead", async () => {
  // A stateful reflector that saw request 1 twice (duplicated on the way)
  // numbers every later one a step ahead; request 3's reply goes astray.
  const reflector = hostileReflector((request, reflect) => {
    const reply = reflect(request);
    const view = new DataView(reply.buffer);
    const seq = view.getUint32(0);
    if (seq >= 1) view.setUint32(0, seq + 1);
    if (seq === 3) view.setUint16(14, view.getUint16(14) ^ 0xffff);
    return reply;
  });
  try {
    const { document } = await stampClient(reflector.port, "socket", [
      "--reflector-stateful",
    ]);
    equal(document.lost, 1);
    equal(document.stamp.directional_loss, null);
    ok(
      document.stamp.directional_loss_unknown.includes("duplicated"),
      document.stamp.directional_loss_unknown,
    );
  } finally {
    await reflector.stop();
  }
});
