import { deepEqual, equal } from "node:assert/strict";
import { STAMP_TOO_SHORT, StampReflector } from "./reflector.ts";
import { readAddress, readTlvs } from "./tlv.ts";

// T2 = 1700000000.25 s after 1970 (NTP 0xe8fe6f80.40000000), T3 = T2 + 0.25 s.
const T2_MS = 1_700_000_000_250;
const T3_MS = 1_700_000_000_500;

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function bytesOf(text: string): Uint8Array {
  const clean = text.replaceAll(/\s+/g, "");
  return Uint8Array.from(
    { length: clean.length / 2 },
    (_, i) => parseInt(clean.slice(2 * i, 2 * i + 2), 16),
  );
}

// A Session-Sender packet written out by hand from RFC 8762 §4.2.1 and
// RFC 8972 §3, §4: seq 0x01020304, T1 NTP 0x11111111.22222222, error
// estimate S=1 Scale 1 Multiplier 2, SSID 0xbeef, 28 MBZ bytes.
const BASE_REQUEST = "01020304 1111111122222222 8102 beef" + "00".repeat(28);
const PADDING = "80 01 0004 deadbeef"; // Extra Padding, U set as sent
const LOCATION = "80 02 002c 0000 0000" + // Location: ports zero
  "80 07 0010" + "00".repeat(16) + // Source IP Address (generic)
  "80 04 0010" + "00".repeat(16); // Destination IP Address (generic)
const TIMESTAMP_INFO = "80 03 0004 00000000";
const UNKNOWN = "80 c8 0002 0909"; // type 200
const OVERRUN = "80 01 ffff 0000"; // claims 65535 bytes of value

const CONTEXT = {
  from: { hostname: "192.0.2.1", port: 40000 },
  local: { hostname: "192.0.2.2", port: 862 },
  receivedAtMs: T2_MS,
  ttl: 64,
};

Deno.test("reflect() fills the base reply of RFC 8762 §4.3.1, stateless", () => {
  const reflector = new StampReflector({ now: () => T3_MS });
  const request = bytesOf(BASE_REQUEST);
  const reply = new Uint8Array(44);
  equal(reflector.reflect(request, reply, CONTEXT), 44);
  equal(
    hex(reply),
    "01020304" + // sequence number: the sender's
      "e8fe6f80" + "80000000" + // T3
      "0f84" + // S=0 Z=0 Scale 15 Multiplier 132: about 1 ms
      "beef" + // SSID
      "e8fe6f80" + "40000000" + // T2
      "01020304" + // Session-Sender sequence number
      "1111111122222222" + // Session-Sender timestamp, as sent
      "8102" + // Session-Sender error estimate
      "0000" + // MBZ
      "40" + // Session-Sender TTL 64
      "000000", // MBZ
  );
});

Deno.test("reflect() with PTP timestamps sets Z in its error estimate", () => {
  const reflector = new StampReflector({ now: () => T3_MS, format: "ptp" });
  const reply = new Uint8Array(44);
  reflector.reflect(bytesOf(BASE_REQUEST), reply, { ...CONTEXT, ttl: 0 });
  equal(hex(reply.subarray(4, 12)), "6553f1001dcd6500"); // 1700000000 s, 500000000 ns
  equal(hex(reply.subarray(12, 14)), "4f84");
  equal(hex(reply.subarray(16, 24)), "6553f1000ee6b280"); // 250000000 ns
  equal(reply[40], 0); // TTL unknown
});

Deno.test("reflect() answers every RFC 8972 TLV: padding, Location, Timestamp Information, unknown, overrun", () => {
  const reflector = new StampReflector({ now: () => T3_MS });
  const request = bytesOf(
    BASE_REQUEST + PADDING + LOCATION + TIMESTAMP_INFO + UNKNOWN + OVERRUN,
  );
  const reply = new Uint8Array(request.length);
  equal(reflector.reflect(request, reply, CONTEXT), request.length);
  equal(
    hex(reply.subarray(44)),
    hex(bytesOf(
      "00 01 0004 deadbeef" + // padding reflected, U cleared
        "00 02 002c 035e 9c40" + // ports 862 and 40000
        "00 08 0010 c0000201" + "00".repeat(12) + // Source IPv4 192.0.2.1
        "00 05 0010 c0000202" + "00".repeat(12) + // Destination IPv4 192.0.2.2
        "00 03 0004 05 02 05 02" + // local free-running clock, software stamps
        "80 c8 0002 0909" + // unrecognised: U kept
        "40 01 ffff 0000", // malformed: M set, U cleared
    )),
  );
  deepEqual(reflector.counts(), {
    reflected: 1,
    tooShort: 0,
    unrecognized: 1,
    malformed: 1,
    sessions: 0,
    held: 0,
    heldNow: 0,
    holdRefused: 0,
  });
});

Deno.test("reflect() grants a Delayed Reply within its bounds, the first TLV only, and only to a caller that can hold", () => {
  const reflector = new StampReflector({
    now: () => T3_MS,
    maxDelayMs: 1000,
    maxHeld: 1,
  });
  const delayed = (ms: number) =>
    `80 f8 0008 ${ms.toString(16).padStart(8, "0")} 00000000`;
  const context = {
    from: { hostname: "192.0.2.1", port: 40000 },
    local: { hostname: "192.0.2.2", port: 862 },
    receivedAtMs: T2_MS,
    canHold: true,
    holdMs: 0,
  };
  const answer = (tlvs: string, canHold = true) => {
    const request = bytesOf(BASE_REQUEST + tlvs);
    context.canHold = canHold;
    reflector.reflect(request, request, context);
    return hex(request.subarray(44));
  };
  // Granted, the ceiling returned; a second TLV in the request gets 0.
  equal(
    answer(delayed(500) + delayed(500)),
    "00f80008000001f4000003e8" + "00f8000800000000000003e8",
  );
  equal(context.holdMs, 500);
  // The table (one reply) is full until that one is released.
  equal(answer(delayed(500)), "00f8000800000000000003e8");
  equal(context.holdMs, 0);
  reflector.release(64, "192.0.2.1");
  // Over the ceiling, or a caller that cannot hold: answered at once.
  equal(answer(delayed(1001)), "00f8000800000000000003e8");
  equal(answer(delayed(500), false), "00f8000800000000000003e8");
  // A wrong length is malformed.
  equal(answer("80 f8 0004 000001f4"), "40f80004000001f4");
  deepEqual(reflector.counts(), {
    reflected: 5,
    tooShort: 0,
    unrecognized: 0,
    malformed: 1,
    sessions: 0,
    held: 1,
    heldNow: 0,
    holdRefused: 3,
  });
});

Deno.test("reflect() holds at most maxHeldPerSource replies for one source, an IPv4 address or an IPv6 /64", () => {
  const reflector = new StampReflector({
    now: () => T3_MS,
    maxHeldPerSource: 2,
  });
  const granted = (hostname: string) => {
    const request = bytesOf(BASE_REQUEST + "80 f8 0008 000001f4 00000000");
    const context = {
      from: { hostname, port: 40000 },
      local: { hostname: "192.0.2.2", port: 862 },
      receivedAtMs: T2_MS,
      canHold: true,
      holdMs: 0,
    };
    reflector.reflect(request, request, context);
    return context.holdMs;
  };
  deepEqual(
    ["192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.9"].map(granted),
    [500, 500, 0, 500],
  );
  // One /64 is one source, however its addresses are spelt.
  deepEqual(
    [
      "2001:db8:0:1::1",
      "2001:DB8:0:1:ffff::2",
      "2001:db8:0:1::3",
      "2001:db8:0:2::1",
    ]
      .map(granted),
    [500, 500, 0, 500],
  );
  // Released, the source has room again; other sources keep theirs.
  reflector.release(64, "192.0.2.1");
  deepEqual(["192.0.2.1", "192.0.2.1"].map(granted), [500, 0]);
  equal(reflector.counts().heldNow, 6);
});

Deno.test("reflect() fills IPv6 Location sub-TLVs and marks MAC requests unrecognised", () => {
  const reflector = new StampReflector({ now: () => T3_MS });
  const request = bytesOf(
    BASE_REQUEST + "80 02 0024 0000 0000" +
      "80 07 0010" + "00".repeat(16) + // Source IP
      "80 01 0008" + "00".repeat(8), // Source MAC
  );
  reflector.reflect(request, request, {
    ...CONTEXT,
    from: { hostname: "2001:db8::1", port: 40000 },
    local: { hostname: "2001:db8::2", port: 10000 },
  });
  equal(
    hex(request.subarray(44)),
    hex(bytesOf(
      "00 02 0024 2710 9c40" +
        "00 09 0010 20010db8000000000000000000000001" +
        "80 01 0008" + "00".repeat(8),
    )),
  );
});

Deno.test("reflect() marks a Location sub-TLV of the wrong length malformed", () => {
  const reflector = new StampReflector({ now: () => T3_MS });
  const request = bytesOf(
    BASE_REQUEST + "80 02 000c 0000 0000" + "80 07 0004 00000000",
  );
  reflector.reflect(request, request, CONTEXT);
  equal(
    hex(request.subarray(44)),
    hex(bytesOf("40 02 000c 035e 9c40" + "40 07 0004 00000000")),
  );
});

Deno.test("reflect() marks a Timestamp Information TLV of the wrong length malformed", () => {
  const reflector = new StampReflector({ now: () => T3_MS });
  const request = bytesOf(BASE_REQUEST + "80 03 0002 0000" + "80");
  reflector.reflect(request, request, CONTEXT);
  // The lone byte after it is a header cut short: malformed too.
  equal(hex(request.subarray(44)), "4003000200004" + "0");
});

Deno.test("reflect() refuses a request under 44 bytes and never answers it", () => {
  const reflector = new StampReflector();
  const reply = new Uint8Array(44);
  equal(
    reflector.reflect(new Uint8Array(43), reply, CONTEXT),
    STAMP_TOO_SHORT,
  );
  equal(reflector.counts().tooShort, 1);
  deepEqual(reply, new Uint8Array(44));
});

Deno.test("reflect() stateful counts per sender address, port and SSID", () => {
  const reflector = new StampReflector({ stateful: true, now: () => T3_MS });
  const seqOf = (
    from: { hostname: string; port: number },
    ssid: number,
    senderSeq: number,
  ) => {
    const request = bytesOf(BASE_REQUEST);
    new DataView(request.buffer).setUint32(0, senderSeq);
    new DataView(request.buffer).setUint16(14, ssid);
    reflector.reflect(request, request, { ...CONTEXT, from });
    return new DataView(request.buffer).getUint32(0);
  };
  const a = { hostname: "192.0.2.1", port: 40000 };
  const b = { hostname: "192.0.2.1", port: 40001 };
  equal(seqOf(a, 1, 100), 0);
  equal(seqOf(a, 1, 105), 1); // the sender skipped: the reflector did not
  equal(seqOf(b, 1, 0), 0);
  equal(seqOf(a, 2, 0), 0);
  equal(seqOf(a, 1, 106), 2);
  equal(reflector.counts().sessions, 3);
});

Deno.test("reflect() stateful keeps at most maxSessions and lets idle ones go", () => {
  let now = 0;
  const reflector = new StampReflector({
    stateful: true,
    maxSessions: 2,
    sessionIdleMs: 1000,
  });
  const send = (port: number) => {
    const request = bytesOf(BASE_REQUEST);
    reflector.reflect(request, request, {
      ...CONTEXT,
      receivedAtMs: now,
      from: { hostname: "192.0.2.1", port },
    });
    return new DataView(request.buffer).getUint32(0);
  };
  send(1);
  send(2);
  equal(send(1), 1);
  send(3); // full: the least recently used (port 2) goes
  equal(reflector.counts().sessions, 2);
  equal(send(2), 0);
  now = 5000;
  send(4); // the others are idle by now
  equal(reflector.counts().sessions, 1);
});

Deno.test("readTlvs() never throws on random bytes", () => {
  const bytes = crypto.getRandomValues(new Uint8Array(4096));
  for (let start = 0; start < 64; start++) {
    const tlvs = readTlvs(bytes, start);
    for (const tlv of tlvs) equal(tlv.offset <= bytes.length + 4, true);
  }
  const reflector = new StampReflector();
  for (let i = 0; i < 200; i++) {
    const request = crypto.getRandomValues(new Uint8Array(44 + i));
    equal(reflector.reflect(request, request, CONTEXT), 44 + i);
  }
});

Deno.test("readAddress() gives a Location address in the form Deno prints", () => {
  // Source IPv6 (type 9) and destination IPv4 (type 5) sub-TLVs.
  const v6 = bytesOf("00 09 0010 20010db8000000000000000000000001");
  deepEqual(readAddress(v6, readTlvs(v6, 0)[0]!), {
    direction: "source",
    hostname: "2001:db8::1",
  });
  const v4 = bytesOf("00 05 0010 7f000001" + "00".repeat(12));
  deepEqual(readAddress(v4, readTlvs(v4, 0)[0]!), {
    direction: "destination",
    hostname: "127.0.0.1",
  });
});
