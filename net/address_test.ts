import { deepEqual, equal, rejects } from "node:assert/strict";
import {
  isGroupAddress,
  parseAddress,
  sameEndpoint,
  sameHost,
  WORDS,
} from "./address.ts";
import { resolveTarget } from "./resolve.ts";

Deno.test("sameHost() matches every spelling of one IPv6 address", () => {
  for (const spelling of ["0:0:0:0:0:0:0:1", "0000::0001", "::0:1", "[::1]"]) {
    equal(sameHost(spelling, "::1"), true, spelling);
  }
  equal(sameHost("2001:DB8::A", "2001:db8:0:0::a"), true);
  equal(sameHost("::2", "::1"), false);
});

Deno.test("sameHost() matches an IPv4-mapped address to its IPv4 form", () => {
  equal(sameHost("::FFFF:127.0.0.1", "127.0.0.1"), true);
  equal(sameHost("127.0.0.1", "::ffff:7f00:1"), true);
  equal(sameHost("::ffff:127.0.0.2", "127.0.0.1"), false);
  // An IPv4-compatible (not mapped) address is another address.
  equal(sameHost("::127.0.0.1", "127.0.0.1"), false);
});

Deno.test("sameHost() ignores a zone only one side carries", () => {
  equal(sameHost("fe80::1%lo", "fe80::1"), true);
  equal(sameHost("[fe80::1%lo]", "fe80::1"), true);
  equal(sameHost("fe80::1%1", "fe80::1"), true);
  equal(sameHost("fe80::1%lo", "fe80::1%lo"), true);
  equal(sameHost("fe80::1%lo", "fe80::1%eth0"), false);
  equal(sameHost("fe80::1%lo", "fe80::2"), false);
});

Deno.test("sameHost() compares names without case and never as addresses", () => {
  equal(sameHost("LocalHost", "localhost"), true);
  equal(sameHost("localhost", "127.0.0.1"), false);
  equal(sameHost("1.2.3.4", "01.2.3.4"), false);
});

Deno.test("sameEndpoint() needs the same port too", () => {
  equal(
    sameEndpoint({ hostname: "::1", port: 9 }, { hostname: "0::1", port: 9 }),
    true,
  );
  equal(
    sameEndpoint({ hostname: "::1", port: 9 }, { hostname: "::1", port: 10 }),
    false,
  );
});

Deno.test("isGroupAddress() knows broadcast and multicast, IPv4-mapped too", () => {
  for (
    const group of [
      "224.0.0.1",
      "239.255.255.250",
      "255.255.255.255",
      "ff02::1",
      "::ffff:224.0.0.1",
    ]
  ) {
    equal(isGroupAddress(group), true, group);
  }
  for (const host of ["127.0.0.1", "223.255.255.255", "::1", "fe80::1"]) {
    equal(isGroupAddress(host), false, host);
  }
});

Deno.test("resolveTarget() refuses a broadcast or multicast target before any send", async () => {
  await rejects(resolveTarget({ hostname: "255.255.255.255", port: 7 }), {
    name: "RangeError",
    message:
      "Cannot send to 255.255.255.255: it is a broadcast or multicast address, and an echo comes back from a unicast one",
  });
  await rejects(resolveTarget({ hostname: "ff02::1", port: 7 }), RangeError);
});

Deno.test("parseAddress() gives the same words when it parses an address again", () => {
  const texts = ["10.0.0.1", "::1", "10.0.0.1", "10.0.0.1", "nope", "::1"];
  const parsed = texts.map((text) => [parseAddress(text), ...WORDS]);
  // What the words mean: the address in WORDS[0] for 4, all four for 6.
  equal(parsed[0]![0], 4);
  equal(parsed[0]![1], 0x0a000001);
  for (const k of [2, 3]) {
    equal(parsed[k]![0], 4);
    equal(parsed[k]![1], 0x0a000001);
  }
  equal(parsed[4]![0], 0);
  for (const k of [1, 5]) deepEqual(parsed[k], [6, 0, 0, 0, 1]);
  // A caller that overwrites the words still gets them right the next time.
  WORDS.fill(7);
  equal(parseAddress("::1"), 6);
  deepEqual([...WORDS], [0, 0, 0, 1]);
});
