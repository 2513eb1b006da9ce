import { deepEqual, equal, throws } from "node:assert/strict";
import {
  decodeErrorEstimate,
  encodeErrorEstimate,
  errorEstimateFor,
  errorMs,
  readReflectorPacket,
  readSenderPacket,
  readTimestamp,
  STAMP_BASE_SIZE,
  writeSenderPacket,
  writeTimestamp,
} from "./packet.ts";

// 2023-11-14T22:13:20.250Z: 1700000000 s after 1970, 3908988800 s after 1900.
const T_MS = 1_700_000_000_250;

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("writeTimestamp() writes NTP seconds since 1900 and a binary fraction (RFC 5905 §6)", () => {
  const bytes = new Uint8Array(8);
  writeTimestamp(bytes, 0, T_MS, "ntp");
  // 0xe8fe6f80 = 3908988800 s; 0.25 s = 0x40000000 / 2^32.
  equal(hex(bytes), "e8fe6f8040000000");
  equal(readTimestamp(bytes, 0, "ntp"), T_MS);
});

Deno.test("writeTimestamp() writes PTPv2 truncated: seconds since 1970 and nanoseconds", () => {
  const bytes = new Uint8Array(8);
  writeTimestamp(bytes, 0, T_MS, "ptp");
  // 0x6553f100 = 1700000000 s; 0x0ee6b280 = 250000000 ns.
  equal(hex(bytes), "6553f1000ee6b280");
  equal(readTimestamp(bytes, 0, "ptp"), T_MS);
});

Deno.test("writeTimestamp() refuses a time before the NTP epoch", () => {
  throws(
    () => writeTimestamp(new Uint8Array(8), 0, -2_208_988_801_000, "ntp"),
    RangeError,
  );
});

Deno.test("encodeErrorEstimate() packs S, Z, Scale and Multiplier (RFC 4656 §4.1.2)", () => {
  // S=1 Z=0 Scale=15 Multiplier=132: 1000 1111 1000 0100.
  equal(
    encodeErrorEstimate({
      synchronized: true,
      format: "ntp",
      scale: 15,
      multiplier: 132,
    }),
    0x8f84,
  );
  // S=0 Z=1 (PTP, RFC 8186) Scale=0 Multiplier=1.
  equal(
    encodeErrorEstimate({
      synchronized: false,
      format: "ptp",
      scale: 0,
      multiplier: 1,
    }),
    0x4001,
  );
  deepEqual(decodeErrorEstimate(0xcf84), {
    synchronized: true,
    format: "ptp",
    scale: 15,
    multiplier: 132,
  });
  throws(
    () =>
      encodeErrorEstimate({
        synchronized: false,
        format: "ntp",
        scale: 0,
        multiplier: 0,
      }),
    RangeError,
  );
});

Deno.test("errorMs() is Multiplier x 2^(Scale - 32) seconds", () => {
  // 132 x 2^-17 s = 1.00708 ms.
  const ms = errorMs({
    synchronized: false,
    format: "ntp",
    scale: 15,
    multiplier: 132,
  });
  equal(ms, 132 / 131072 * 1000);
  // 1 ms needs 4294967.3 units of 2^-32 s: Scale 15, Multiplier ceil(131.07).
  deepEqual(errorEstimateFor(1, { synchronized: false, format: "ntp" }), {
    synchronized: false,
    format: "ntp",
    scale: 15,
    multiplier: 132,
  });
});

Deno.test("writeSenderPacket() lays out RFC 8762 §4.2.1 with the SSID of RFC 8972 §3", () => {
  const bytes = new Uint8Array(48).fill(0xaa);
  writeSenderPacket(bytes, {
    seq: 0x01020304,
    timestampMs: T_MS,
    errorEstimate: {
      synchronized: false,
      format: "ntp",
      scale: 0,
      multiplier: 1,
    },
    ssid: 0xbeef,
  });
  equal(
    hex(bytes.subarray(0, STAMP_BASE_SIZE)),
    "01020304" + "e8fe6f8040000000" + "0001" + "beef" + "00".repeat(28),
  );
  // What follows the base is left alone.
  equal(hex(bytes.subarray(44)), "aaaaaaaa");
  deepEqual(readSenderPacket(bytes)?.ssid, 0xbeef);
  equal(readSenderPacket(bytes.subarray(0, 43)), undefined);
  throws(
    () =>
      writeSenderPacket(new Uint8Array(43), {
        seq: 0,
        timestampMs: T_MS,
        errorEstimate: decodeErrorEstimate(1),
        ssid: 0,
      }),
    RangeError,
  );
});

Deno.test("readReflectorPacket() reads every field of RFC 8762 §4.3.1", () => {
  const bytes = new Uint8Array(44);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 9); // reflector seq
  view.setUint32(4, 0xe8fe6f81); // T3 = T + 1 s, + 0.5 s
  view.setUint32(8, 0x80000000);
  view.setUint16(12, 0x0f84); // S=0 Z=0 scale 15 mult 132
  view.setUint16(14, 0x1234); // SSID
  view.setUint32(16, 0xe8fe6f81); // T2 = T + 1 s, + 0 fraction
  view.setUint32(20, 0);
  view.setUint32(24, 11); // sender seq
  view.setUint32(28, 0x6553f100); // T1 in PTP: 1700000000 s
  view.setUint32(32, 250_000_000);
  view.setUint16(36, 0x4001); // sender error estimate, Z = 1
  bytes[40] = 64; // TTL
  deepEqual(readReflectorPacket(bytes), {
    seq: 9,
    timestampMs: 1_700_000_001_500,
    errorEstimate: {
      synchronized: false,
      format: "ntp",
      scale: 15,
      multiplier: 132,
    },
    ssid: 0x1234,
    receiveTimestampMs: 1_700_000_001_000,
    senderSeq: 11,
    senderTimestampMs: T_MS,
    senderErrorEstimate: {
      synchronized: false,
      format: "ptp",
      scale: 0,
      multiplier: 1,
    },
    senderTtl: 64,
    mbzZero: true,
  });
  bytes[42] = 1;
  equal(readReflectorPacket(bytes)?.mbzZero, false);
});
