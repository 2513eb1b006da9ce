import { deepEqual, equal, throws } from "node:assert/strict";
import {
  decodeProbe,
  encodeProbe,
  newSessionId,
  PROBE_HEADER_SIZE,
  verifyProbe,
} from "./probe.ts";

const PROBE = { session: 0xdeadbeef, seq: 41, sentAt: 1_763_780_000_123.25 };

Deno.test("encodeProbe() writes the header big-endian after the magic", () => {
  const bytes = encodeProbe(PROBE, PROBE_HEADER_SIZE);
  deepEqual(
    [...bytes.subarray(0, 12)],
    [0x55, 0x45, 0x50, 0x31, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 41],
  );
  deepEqual(decodeProbe(bytes), PROBE);
});

Deno.test("encodeProbe() fill depends on the sequence number only", () => {
  const a = encodeProbe(PROBE, 200);
  const b = encodeProbe({ ...PROBE, session: 1, sentAt: 0 }, 200);
  const c = encodeProbe({ ...PROBE, seq: 42 }, 200);
  deepEqual(a.subarray(PROBE_HEADER_SIZE), b.subarray(PROBE_HEADER_SIZE));
  equal(
    a.subarray(PROBE_HEADER_SIZE).every((byte, i) =>
      byte === c[PROBE_HEADER_SIZE + i]
    ),
    false,
  );
  // A shorter probe is a prefix of a longer one with the same header.
  deepEqual(encodeProbe(PROBE, 100), a.subarray(0, 100));
});

Deno.test("encodeProbe() gives a header prefix below the header size", () => {
  deepEqual(encodeProbe(PROBE, 5), encodeProbe(PROBE, 64).subarray(0, 5));
  equal(encodeProbe(PROBE, 0).length, 0);
});

Deno.test("encodeProbe() rejects values that do not fit the header", () => {
  throws(() => encodeProbe({ ...PROBE, seq: 2 ** 32 }, 64), RangeError);
  throws(() => encodeProbe({ ...PROBE, session: -1 }, 64), RangeError);
  throws(() => encodeProbe(PROBE, 1.5), RangeError);
});

Deno.test("decodeProbe() refuses short or foreign datagrams", () => {
  equal(decodeProbe(encodeProbe(PROBE, PROBE_HEADER_SIZE - 1)), undefined);
  const foreign = encodeProbe(PROBE, 64);
  foreign[0] = 0;
  equal(decodeProbe(foreign), undefined);
});

Deno.test("verifyProbe() tells intact, truncated and corrupted apart", () => {
  const sent = encodeProbe(PROBE, 1472);
  equal(verifyProbe(sent, PROBE, 1472), "intact");
  equal(verifyProbe(sent.subarray(0, 1000), PROBE, 1472), "truncated");
  equal(verifyProbe(sent.subarray(0, 3), PROBE, 1472), "truncated");
  equal(verifyProbe(new Uint8Array(0), PROBE, 1472), "truncated");
  equal(verifyProbe(sent, PROBE, 1000), "corrupted");
  for (const offset of [0, 5, 10, 15, 19, 20, 700, 1471]) {
    const bad = sent.slice();
    bad[offset] = bad[offset]! ^ 0x01;
    equal(verifyProbe(bad, PROBE, 1472), "corrupted", `offset ${offset}`);
  }
  equal(verifyProbe(sent, { ...PROBE, sentAt: 1 }, 1472), "corrupted");
});

Deno.test("newSessionId() returns 32-bit unsigned integers", () => {
  const ids = new Set(Array.from({ length: 64 }, newSessionId));
  for (const id of ids) equal(Number.isInteger(id) && id >= 0, true);
  equal(ids.size > 60, true);
});
