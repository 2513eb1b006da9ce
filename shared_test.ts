import { deepEqual, equal, rejects, throws } from "node:assert/strict";
import { checkPayloadSize, maxPayload } from "./shared.ts";
import {
  familyOf,
  formatAddress,
  isUnspecified,
  parseHost,
  parsePort,
} from "./net/address.ts";
import { resolveAddress } from "./net/resolve.ts";
import { errorMessage } from "./net/errors.ts";
import {
  MAX_IPV4_PAYLOAD,
  MAX_IPV6_PAYLOAD,
  previewPayload,
} from "./net/payload.ts";

const encode = (text: string) => new TextEncoder().encode(text);

Deno.test("maxPayload() gives 65507 for IPv4 and 65527 for IPv6", () => {
  equal(maxPayload("IPv4"), 65_507);
  equal(maxPayload("IPv6"), 65_527);
});

Deno.test("checkPayloadSize() accepts the limit and refuses one byte more", () => {
  checkPayloadSize(0, "IPv4");
  checkPayloadSize(MAX_IPV4_PAYLOAD, "IPv4");
  checkPayloadSize(MAX_IPV6_PAYLOAD, "IPv6");
  throws(() => checkPayloadSize(MAX_IPV4_PAYLOAD + 1, "IPv4"), {
    name: "RangeError",
    message: "Cannot send 65508 bytes: an IPv4 UDP payload holds at most 65507",
  });
  throws(() => checkPayloadSize(MAX_IPV6_PAYLOAD + 1, "IPv6"), {
    name: "RangeError",
    message: "Cannot send 65528 bytes: an IPv6 UDP payload holds at most 65527",
  });
});

Deno.test("parsePort() accepts 0 to 65535 and refuses anything else", () => {
  equal(parsePort("0"), 0);
  equal(parsePort("65535"), 65535);
  equal(parsePort("010"), 10);
  for (
    const bad of ["65536", "-1", "1.5", "", "80a", " 80", "0x50", "999999"]
  ) {
    throws(() => parsePort(bad), RangeError, bad);
  }
});

Deno.test("parseHost() accepts names and IP literals, unwraps [IPv6]", () => {
  equal(parseHost("localhost"), "localhost");
  equal(parseHost("echo.example.com."), "echo.example.com.");
  equal(parseHost("127.0.0.1"), "127.0.0.1");
  equal(parseHost("::1"), "::1");
  equal(parseHost("[::1]"), "::1");
  equal(parseHost("[::ffff:127.0.0.1]"), "::ffff:127.0.0.1");
  for (
    const bad of [
      "",
      "[127.0.0.1]",
      "256.1.1.1",
      "1.2.3",
      "-a.com",
      "a..b",
      "a b",
      "a_b",
      "[::1",
    ]
  ) {
    throws(() => parseHost(bad), TypeError, bad);
  }
});

Deno.test("familyOf() tells IPv4 and IPv6 literals from names", () => {
  equal(familyOf("10.0.0.1"), "IPv4");
  equal(familyOf("fe80::1"), "IPv6");
  equal(familyOf("localhost"), undefined);
});

Deno.test("formatAddress() brackets IPv6 literals", () => {
  equal(
    formatAddress({ hostname: "127.0.0.1", port: 10000 }),
    "127.0.0.1:10000",
  );
  equal(formatAddress({ hostname: "::1", port: 7 }), "[::1]:7");
  equal(formatAddress({ hostname: "localhost", port: 0 }), "localhost:0");
});

Deno.test("previewPayload() shows text, escapes the rest, cuts long payloads", () => {
  equal(previewPayload(new Uint8Array()), '""');
  equal(previewPayload(encode('say "hi"\\')), '"say \\"hi\\"\\\\"');
  equal(previewPayload(encode("tab\there\r\n")), '"tab\\there\\r\\n"');
  equal(
    previewPayload(new Uint8Array([0, 0x1b, 0x7f, 0x80, 0xc0, 0xaf])),
    '"\\x00\\x1b\\x7f\\x80\\xc0\\xaf"',
  );
  equal(previewPayload(encode("héllo ✓ 🙂")), '"héllo ✓ 🙂"');
  // An encoded surrogate (ED A0 80) is not valid UTF-8.
  equal(
    previewPayload(new Uint8Array([0xed, 0xa0, 0x80])),
    '"\\xed\\xa0\\x80"',
  );
  equal(
    previewPayload(new Uint8Array(1000).fill(0x61)),
    `"${"a".repeat(100)}"... (900 more bytes)`,
  );
  equal(
    previewPayload(encode("abc"), { maxBytes: 2 }),
    '"ab"... (1 more byte)',
  );
  // A multi-byte character cut by the limit is shown as escaped bytes.
  equal(
    previewPayload(encode("a✓"), { maxBytes: 2 }),
    '"a\\xe2"... (2 more bytes)',
  );
});

Deno.test("errorMessage() gives one lower-case line", () => {
  equal(
    errorMessage(
      new Deno.errors.AddrInUse("Address already in use (os error 98)"),
    ),
    "address already in use",
  );
  equal(
    errorMessage(new Error("Something broke (os error 5)\nat line 2")),
    "something broke",
  );
  equal(errorMessage(new RangeError("IPv4 only")), "IPv4 only");
  equal(errorMessage("plain"), "plain");
});

Deno.test("resolveAddress() resolves localhost and keeps literals", async () => {
  const local = await resolveAddress({ hostname: "localhost", port: 7 }, {
    family: "IPv4",
  });
  deepEqual(local, { hostname: "127.0.0.1", port: 7, family: "IPv4" });
  deepEqual(await resolveAddress({ hostname: "::1", port: 9 }), {
    hostname: "::1",
    port: 9,
    family: "IPv6",
  });
  await rejects(
    resolveAddress({ hostname: "::1", port: 9 }, { family: "IPv4" }),
    TypeError,
  );
});

Deno.test("resolveAddress() picks the address listenDatagram binds for localhost", async () => {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: "localhost",
    port: 0,
  });
  try {
    const resolved = await resolveAddress({ hostname: "localhost", port: 1 });
    equal(resolved.hostname, (conn.addr as Deno.NetAddr).hostname);
  } finally {
    conn.close();
  }
});

Deno.test("isUnspecified() knows 0.0.0.0 and :: in their spellings", () => {
  for (const host of ["0.0.0.0", "::", "0::0", "0:0:0:0:0:0:0:0"]) {
    equal(isUnspecified(host), true, host);
  }
  for (const host of ["127.0.0.1", "::1", "localhost", "0.0.0.1"]) {
    equal(isUnspecified(host), false, host);
  }
});
