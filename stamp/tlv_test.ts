import { deepEqual, equal } from "node:assert/strict";
import {
  FLAG_U,
  readClassOfService,
  readTlvs,
  reflectTlvs,
  replyTos,
  SYNC_SOURCE,
  TIMESTAMP_METHOD,
  TLV_CLASS_OF_SERVICE,
  writeRequestTlvs,
} from "./tlv.ts";

const context = {
  seen: {
    source: { hostname: "192.0.2.1", port: 40000 },
    destination: { hostname: "192.0.2.2", port: 862 },
  },
  clock: {
    syncSource: SYNC_SOURCE.localFreeRunning,
    receiveMethod: TIMESTAMP_METHOD.softwareLocal,
    transmitMethod: TIMESTAMP_METHOD.softwareLocal,
  },
};

Deno.test("Class of Service TLV: the sender asks for DSCP1, the reflector writes DSCP2 and ECN as received, RP 0", () => {
  const bytes = new Uint8Array(8);
  writeRequestTlvs(bytes, 0, ["class-of-service"], { dscp1: 46 });
  const [tlv] = readTlvs(bytes, 0);
  equal(tlv!.type, TLV_CLASS_OF_SERVICE);
  equal(tlv!.flags, FLAG_U);
  deepEqual(readClassOfService(bytes, tlv!), {
    dscp1: 46,
    dscp2: 0,
    ecn: 0,
    rp: 0,
  });
  // Arrived as AF41 with CE: DSCP 34, ECN 3.
  const marks = reflectTlvs(bytes, 0, { ...context, tos: (34 << 2) | 3 });
  deepEqual(marks, { unrecognized: 0, malformed: 0 });
  equal(bytes[0], 0);
  deepEqual(readClassOfService(bytes, tlv!), {
    dscp1: 46,
    dscp2: 34,
    ecn: 3,
    rp: 0,
  });
  // The reply leaves with DSCP1 and the ECN received.
  equal(replyTos(bytes, 0), (46 << 2) | 3);
});

Deno.test("Class of Service TLV: a reflector that cannot read the marking returns it with U set, and marks nothing", () => {
  const bytes = new Uint8Array(8);
  writeRequestTlvs(bytes, 0, ["class-of-service"], { dscp1: 10 });
  const marks = reflectTlvs(bytes, 0, context);
  deepEqual(marks, { unrecognized: 1, malformed: 0 });
  equal(bytes[0], FLAG_U);
  equal(replyTos(bytes, 0), -1);
});
