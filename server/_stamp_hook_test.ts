import { equal } from "node:assert/strict";
import { writeTimespec } from "./_stamp_hook.ts";

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// 1700000000 s = 0x6553f100; + 2208988800 (1900 to 1970) = 0xe8fe6f80;
// 250000000 ns = 0x0ee6b280 = a quarter second = NTP fraction 0x40000000.
Deno.test("writeTimespec() writes a kernel timespec as NTP (RFC 5905) and PTPv2 truncated", () => {
  const packet = new Uint8Array(12);
  writeTimespec(packet, 4, {
    seconds: 1_700_000_000,
    nanoseconds: 250_000_000,
    format: "ntp",
  });
  equal(hex(packet), "00000000" + "e8fe6f80" + "40000000");
  writeTimespec(packet, 4, {
    seconds: 1_700_000_000,
    nanoseconds: 250_000_000,
    format: "ptp",
  });
  equal(hex(packet), "00000000" + "6553f100" + "0ee6b280");
  // The last nanosecond of a second stays within the fraction.
  writeTimespec(packet, 4, {
    seconds: 1_700_000_000,
    nanoseconds: 999_999_999,
    format: "ntp",
  });
  equal(hex(packet.subarray(8)), "fffffffb");
});
