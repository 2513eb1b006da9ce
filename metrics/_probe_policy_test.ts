import { equal, match, throws } from "node:assert/strict";
import { parseProbeAllow, probeTargetRefusal } from "./_probe_policy.ts";
import { REFUSED_SERVICE_PORTS } from "../policy/policy.ts";

function iface(cidr: string): Deno.NetworkInterfaceInfo {
  const address = cidr.slice(0, cidr.indexOf("/"));
  return {
    family: address.includes(":") ? "IPv6" : "IPv4",
    name: "test0",
    address,
    netmask: "",
    scopeid: null,
    cidr,
    mac: "00:00:00:00:00:00",
  };
}

const INTERFACES = [
  iface("127.0.0.1/8"),
  iface("10.99.0.1/24"),
  iface("172.16.5.9/16"),
  iface("192.0.2.1/31"),
  iface("::1/128"),
  iface("fd99::1/64"),
];

function refusal(
  target: string,
  options: { allow?: string[]; interfaces?: Deno.NetworkInterfaceInfo[] } = {},
): string | undefined {
  const at = target.lastIndexOf(":");
  return probeTargetRefusal(
    {
      hostname: target.slice(0, at).replace(/^\[|\]$/g, ""),
      port: Number(target.slice(at + 1)),
    },
    {
      allow: (options.allow ?? []).map(parseProbeAllow),
      interfaces: "interfaces" in options ? options.interfaces : INTERFACES,
    },
  );
}

Deno.test("probeTargetRefusal() refuses group, unspecified, network and broadcast addresses", () => {
  const cases: [string, RegExp][] = [
    ["10.99.0.255:9999", /broadcast address of 10\.99\.0\.0\/24$/],
    ["10.99.0.0:7", /network address of 10\.99\.0\.0\/24$/],
    ["172.16.255.255:7", /broadcast address of 172\.16\.0\.0\/16$/],
    ["172.16.0.0:7", /network address of 172\.16\.0\.0\/16$/],
    ["127.255.255.255:7", /broadcast address of 127\.0\.0\.0\/8$/],
    ["[fd99::]:7", /network address of fd99::\/64$/],
    ["255.255.255.255:7", /broadcast or reserved/],
    ["240.0.0.1:7", /broadcast or reserved/],
    ["224.0.0.1:7", /multicast/],
    ["239.255.255.250:7", /multicast/],
    ["[ff02::1]:7", /multicast/],
    ["0.0.0.0:7", /unspecified/],
    ["[::]:7", /unspecified/],
    ["0.1.2.3:7", /0\.0\.0\.0\/8/],
  ];
  for (const [target, expected] of cases) {
    match(refusal(target) ?? "passed", expected, target);
  }
  // A /31 has no network or broadcast address (RFC 3021); nor has a host off every subnet.
  for (
    const target of [
      "192.0.2.0:7",
      "192.0.2.1:7",
      "10.99.0.2:7",
      "172.16.0.255:7",
      "198.51.100.255:7",
      "[fd99::2]:862",
      "127.0.0.1:10000",
      "[::1]:7",
    ]
  ) {
    equal(refusal(target), undefined, target);
  }
});

Deno.test("probeTargetRefusal() refuses low ports but echo and STAMP, and the service ports", () => {
  for (const port of [0, 1, 17, 19, 53, 123, 161, 389, 1023]) {
    match(
      refusal(`127.0.0.1:${port}`)!,
      /below 1024 and not echo \(7\) or STAMP \(862\)$/,
    );
  }
  for (const port of [...REFUSED_SERVICE_PORTS, 1900, 11211]) {
    match(refusal(`127.0.0.1:${port}`)!, /a UDP service that answers/);
  }
  for (const port of [7, 862, 1024, 10000, 65535]) {
    equal(refusal(`127.0.0.1:${port}`), undefined);
  }
});

Deno.test("probeTargetRefusal() without the interfaces passes loopback targets only", () => {
  const none = { interfaces: undefined };
  equal(refusal("127.0.0.1:7", none), undefined);
  equal(refusal("[::1]:7", none), undefined);
  match(
    refusal("127.255.255.255:7", none)!,
    /broadcast address of 127\.0\.0\.0\/8/,
  );
  match(refusal("10.99.0.2:7", none)!, /--allow-sys=networkInterfaces/);
});

Deno.test("--probe-allow makes an allow list; the refusals still apply", () => {
  const allow = [
    "10.99.0.0/24",
    "[127.0.0.1]:7",
    "127.0.0.2:862",
    "[fd99::/64]:7",
  ];
  equal(refusal("10.99.0.2:10000", { allow }), undefined);
  equal(refusal("127.0.0.1:7", { allow }), undefined);
  equal(refusal("127.0.0.2:862", { allow }), undefined);
  equal(refusal("[fd99::2]:7", { allow }), undefined);
  for (
    const target of [
      "127.0.0.1:862",
      "127.0.0.3:7",
      "[fd99::2]:862",
      "10.98.0.1:7",
    ]
  ) {
    equal(
      refusal(target, { allow }),
      "it matches no --probe-allow entry",
      target,
    );
  }
  match(refusal("10.99.0.255:7", { allow })!, /broadcast address/);
  match(refusal("10.99.0.2:53", { allow: ["10.99.0.0/24:53"] })!, /below 1024/);
});

Deno.test("parseProbeAllow() takes CIDR, CIDR:PORT and [CIDR]:PORT, and refuses the rest", () => {
  equal(parseProbeAllow("10.0.0.0/8").port, undefined);
  equal(parseProbeAllow("10.0.0.0/8:7").port, 7);
  equal(parseProbeAllow("[2001:db8::/32]:862").port, 862);
  equal(parseProbeAllow("2001:db8::/32").cidr.prefix, 32);
  equal(parseProbeAllow("192.0.2.7").cidr.prefix, 32);
  for (
    const text of [
      "",
      "x",
      "10.0.0.0/33",
      "2001:db8::/32:7",
      "[10.0.0.0/8]:x",
      "10.0.0.0/8:70000",
    ]
  ) {
    throws(
      () => parseProbeAllow(text),
      /^TypeError: Cannot use --probe-allow ".*": expected CIDR or \[CIDR\]:PORT/,
      text,
    );
  }
  throws(() => parseProbeAllow("10.0.0.1/8"), /host bits are set past \/8/);
  throws(() => parseProbeAllow("[::1]:0"), /port must be 1 to 65535/);
});
