import { deepEqual, equal, ok, throws } from "node:assert/strict";
import {
  DEFAULT_MAX_SOURCES,
  DEFAULT_RATE,
  defaultRate,
  DROP_REASONS,
  EchoPolicy,
  isLoopback,
  parseCidr,
  type PolicyOptions,
  REFUSED_SERVICE_PORTS,
  type Verdict,
} from "./policy.ts";

/** A policy with a clock the test moves by hand. */
function withClock(options: PolicyOptions = {}) {
  const clock = { now: 0 };
  const policy = new EchoPolicy({ ...options, clock: () => clock.now });
  return { policy, clock };
}

function verdictOf(
  policy: EchoPolicy,
  hostname: string,
  port = 40_000,
  size = 10,
): Verdict {
  return policy.decide({ hostname, port }, size);
}

Deno.test("EchoPolicy refuses source port 0 and every port below 1024", () => {
  const policy = new EchoPolicy();
  for (const port of [0, 1, 7, 19, 53, 123, 1023]) {
    equal(verdictOf(policy, "192.0.2.1", port), "low-port", `port ${port}`);
  }
  equal(verdictOf(policy, "192.0.2.1", 1024), "echo");
  equal(verdictOf(policy, "192.0.2.1", 65_535), "echo");
});

Deno.test("EchoPolicy refuses well-known service source ports", () => {
  const policy = new EchoPolicy();
  for (const port of [1900, 2049, 3702, 5353, 11211]) {
    ok(REFUSED_SERVICE_PORTS.includes(port), `port ${port} listed`);
  }
  for (const port of REFUSED_SERVICE_PORTS) {
    equal(verdictOf(policy, "192.0.2.1", port), "service-port", `${port}`);
    equal(verdictOf(policy, "192.0.2.1", port + 1), "echo", `${port + 1}`);
  }
});

Deno.test("EchoPolicy refuses a port outside 0-65535 as a bad source", () => {
  const policy = new EchoPolicy();
  equal(verdictOf(policy, "192.0.2.1", 65_536), "bad-source");
  equal(verdictOf(policy, "192.0.2.1", -1), "bad-source");
});

Deno.test("EchoPolicy refuses broadcast, multicast and unspecified sources", () => {
  const policy = new EchoPolicy({ broadcastAddresses: ["192.0.2.255"] });
  for (
    const hostname of [
      "0.0.0.0",
      "0.1.2.3",
      "255.255.255.255",
      "224.0.0.1",
      "239.255.255.250",
      "240.0.0.1",
      "192.0.2.255",
      "::",
      "ff02::1",
      "ff05::c",
      "FF0E::1",
      "::ffff:255.255.255.255",
      "::ffff:224.0.0.251",
      "::ffff:0.0.0.0",
      "::ffff:c000:2ff",
      "not-an-address",
      "1.2.3",
      "1.2.3.4.5",
      "01.2.3.4",
      "256.1.1.1",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "12345::1",
      ":1::2",
      "1::2:",
      "",
    ]
  ) {
    equal(verdictOf(policy, hostname), "bad-source", hostname);
  }
});

Deno.test("EchoPolicy echoes to unicast IPv4, IPv6 and IPv4-mapped sources", () => {
  const policy = new EchoPolicy();
  for (
    const hostname of [
      "127.0.0.1",
      "192.0.2.1",
      "223.255.255.254",
      "::1",
      "2001:db8::1",
      "2001:DB8:0:0:0:0:0:1",
      "fe80::1%eth0",
      "::ffff:192.0.2.1",
      "::ffff:127.0.0.1",
      "64:ff9b::192.0.2.1",
    ]
  ) {
    equal(verdictOf(policy, hostname), "echo", hostname);
  }
});

Deno.test("EchoPolicy drops a datagram from the server's own address and port", () => {
  const policy = new EchoPolicy({
    local: [{ hostname: "127.0.0.1", port: 5000 }, {
      hostname: "::1",
      port: 5001,
    }],
  });
  equal(verdictOf(policy, "127.0.0.1", 5000), "own-address");
  equal(verdictOf(policy, "::ffff:127.0.0.1", 5000), "own-address");
  equal(verdictOf(policy, "::1", 5001), "own-address");
  // Another socket of the server counts too, not just the receiving one.
  equal(verdictOf(policy, "127.0.0.1", 5000), "own-address");
  equal(verdictOf(policy, "127.0.0.2", 5000), "echo");
  equal(verdictOf(policy, "127.0.0.1", 5002), "echo");
  equal(verdictOf(policy, "::1", 5000), "echo");
  policy.addLocal({ hostname: "127.0.0.2", port: 5000 });
  equal(verdictOf(policy, "127.0.0.2", 5000), "own-address");
});

Deno.test("EchoPolicy treats a host address on a wildcard socket's port as the socket", () => {
  const policy = new EchoPolicy({
    local: [{ hostname: "0.0.0.0", port: 6000 }, {
      hostname: "::",
      port: 7000,
    }],
    interfaceAddresses: ["192.0.2.10", "2001:db8::10"],
  });
  equal(verdictOf(policy, "127.0.0.9", 6000), "own-address");
  equal(verdictOf(policy, "192.0.2.10", 6000), "own-address");
  equal(verdictOf(policy, "192.0.2.11", 6000), "echo");
  equal(verdictOf(policy, "::1", 7000), "own-address");
  equal(verdictOf(policy, "2001:db8::10", 7000), "own-address");
  equal(verdictOf(policy, "2001:db8::11", 7000), "echo");
});

Deno.test("EchoPolicy applies --allow and --deny, deny first, both families", () => {
  const policy = new EchoPolicy({
    allow: ["10.0.0.0/8", "2001:db8::/32", "[::1]"],
    deny: ["10.9.0.0/16", "::ffff:10.8.0.0/112"],
  });
  equal(verdictOf(policy, "10.1.2.3"), "echo");
  equal(verdictOf(policy, "::ffff:10.1.2.3"), "echo");
  equal(verdictOf(policy, "11.0.0.1"), "denied");
  equal(verdictOf(policy, "10.9.200.1"), "denied");
  equal(verdictOf(policy, "10.8.0.7"), "denied");
  equal(verdictOf(policy, "2001:db8:ffff::5"), "echo");
  equal(verdictOf(policy, "2001:db9::1"), "denied");
  equal(verdictOf(policy, "::1"), "echo");
  equal(verdictOf(policy, "::2"), "denied");
});

Deno.test("EchoPolicy with only --deny echoes to everyone else", () => {
  const policy = new EchoPolicy({ deny: ["127.0.0.2", "0.0.0.0/0"] });
  equal(verdictOf(policy, "127.0.0.2"), "denied");
  equal(verdictOf(policy, "192.0.2.1"), "denied");
  equal(verdictOf(policy, "::1"), "echo");
  const v6 = new EchoPolicy({ deny: ["::/0"] });
  equal(verdictOf(v6, "2001:db8::1"), "denied");
  equal(verdictOf(v6, "192.0.2.1"), "echo");
});

Deno.test("parseCidr() reads prefixes and refuses bad ones", () => {
  deepEqual(parseCidr("10.1.2.3/8"), {
    family: "IPv4",
    prefix: 8,
    network: "10.0.0.0/8",
    hostBits: true,
  });
  deepEqual(parseCidr("192.0.2.1"), {
    family: "IPv4",
    prefix: 32,
    network: "192.0.2.1/32",
    hostBits: false,
  });
  deepEqual(parseCidr("2001:db8::/32"), {
    family: "IPv6",
    prefix: 32,
    network: "2001:db8::/32",
    hostBits: false,
  });
  deepEqual(parseCidr("::ffff:10.0.0.0/104"), {
    family: "IPv4",
    prefix: 8,
    network: "10.0.0.0/8",
    hostBits: false,
  });
  equal(parseCidr("fe80::1:0:0:1/10").network, "fe80::/10");
  equal(parseCidr("1:0:0:2:0:0:0:3/128").network, "1:0:0:2::3/128");
  equal(parseCidr("::/0").network, "::/0");
  throws(() => parseCidr("10.0.0.0/33"), RangeError);
  throws(() => parseCidr("::/129"), RangeError);
  throws(() => parseCidr("::ffff:10.0.0.0/95"), RangeError);
  throws(() => parseCidr("10.0.0.0/"), TypeError);
  throws(() => parseCidr("10.0.0.0/x"), TypeError);
  throws(() => parseCidr("example.com/8"), {
    name: "TypeError",
    message: 'Cannot use CIDR "example.com": not an IP address',
  });
  throws(() => new EchoPolicy({ allow: ["010.0.0.1"] }), TypeError);
});

Deno.test("EchoPolicy drops a datagram longer than --max-size, not one at it", () => {
  const policy = new EchoPolicy({ maxSize: 100 });
  equal(verdictOf(policy, "192.0.2.1", 40_000, 100), "echo");
  equal(verdictOf(policy, "192.0.2.1", 40_000, 101), "too-large");
  const none = new EchoPolicy({ maxSize: 0 });
  equal(verdictOf(none, "192.0.2.1", 40_000, 0), "echo");
  equal(verdictOf(none, "192.0.2.1", 40_000, 1), "too-large");
});

Deno.test("EchoPolicy refuses bad options with a RangeError or TypeError", () => {
  throws(() => new EchoPolicy({ rate: -1 }), RangeError);
  throws(() => new EchoPolicy({ rate: NaN }), RangeError);
  throws(() => new EchoPolicy({ rate: Infinity }), RangeError);
  throws(() => new EchoPolicy({ rate: 10, burst: 0 }), RangeError);
  throws(() => new EchoPolicy({ rate: 10, burst: 1.5 }), RangeError);
  throws(() => new EchoPolicy({ maxSources: 0 }), RangeError);
  throws(() => new EchoPolicy({ rate: 1, maxSources: 2 ** 23 }), {
    name: "RangeError",
    message:
      "Cannot use max-sources 8388608: expected an integer from 1 to 4194304",
  });
  throws(() => new EchoPolicy({ maxSize: -1 }), RangeError);
  throws(() => new EchoPolicy({ local: [{ hostname: "x", port: 1 }] }), {
    name: "TypeError",
    message: 'Cannot use local address "x": not an IP address',
  });
});

Deno.test("EchoPolicy defaults: burst = rate, table of 65,536, no limit", () => {
  equal(new EchoPolicy({ rate: 5 }).burst, 5);
  equal(new EchoPolicy({ rate: 0.5 }).burst, 1);
  equal(new EchoPolicy({ rate: 5, burst: 2 }).burst, 2);
  equal(new EchoPolicy().maxSources, DEFAULT_MAX_SOURCES);
  equal(DEFAULT_MAX_SOURCES, 65_536);
  const off = new EchoPolicy();
  equal(off.rate, 0);
  equal(off.tableBytes, 0);
  for (let i = 0; i < 10_000; i++) {
    equal(off.decide({ hostname: "192.0.2.1", port: 40_000 }, 1, 0), "echo");
  }
});

Deno.test("defaultRate() is off for loopback binds only", () => {
  equal(defaultRate(["127.0.0.1"]), 0);
  equal(defaultRate(["127.0.0.1", "::1", "127.9.9.9"]), 0);
  equal(defaultRate(["::1", "192.0.2.1"]), DEFAULT_RATE);
  equal(defaultRate(["0.0.0.0"]), 1000);
  equal(defaultRate(["::"]), 1000);
  equal(defaultRate(["localhost"]), 1000, "names are not resolved here");
  ok(isLoopback("::ffff:127.1.2.3"));
  ok(!isLoopback("::2"));
});

Deno.test("EchoPolicy allows burst at once, then one datagram per 1/rate", () => {
  const { policy, clock } = withClock({ rate: 10, burst: 3 });
  const send = () => verdictOf(policy, "192.0.2.1");
  equal(send(), "echo");
  equal(send(), "echo");
  equal(send(), "echo");
  equal(send(), "rate-limited");
  clock.now = 99.9;
  equal(send(), "rate-limited");
  clock.now = 100;
  equal(send(), "echo");
  equal(send(), "rate-limited");
  clock.now = 1_000; // 900 ms idle refill 9 tokens, capped at the burst of 3
  equal(send(), "echo");
  equal(send(), "echo");
  equal(send(), "echo");
  equal(send(), "rate-limited");
  equal(policy.counts()["rate-limited"], 4);
  equal(policy.counts().echo, 7);
});

Deno.test("EchoPolicy holds a flood to rate x time + burst exactly", () => {
  const cases: [number, number][] = [[10, 3], [250, 100], [4, 1], [0.5, 1]];
  for (const [rate, burst] of cases) {
    const { policy, clock } = withClock({ rate, burst });
    let echoed = 0;
    // One datagram every millisecond for 10 s, both ends included.
    for (let t = 0; t <= 10_000; t++) {
      clock.now = t;
      if (verdictOf(policy, "192.0.2.1") === "echo") echoed++;
    }
    equal(echoed, burst + Math.floor(rate * 10), `rate ${rate} burst ${burst}`);
  }
  // A bucket of one cannot bank the part of a token a 1 ms tick leaves over:
  // at 3/s every echo comes 334 ms after the last, 30 in 10 s, not 31.
  const { policy, clock } = withClock({ rate: 3, burst: 1 });
  let echoed = 0;
  for (let t = 0; t <= 10_000; t++) {
    clock.now = t;
    if (verdictOf(policy, "192.0.2.1") === "echo") echoed++;
  }
  equal(echoed, 30);
});

Deno.test("EchoPolicy spends no token on a datagram another rule drops", () => {
  const { policy } = withClock({ rate: 1, burst: 1, maxSize: 10 });
  equal(verdictOf(policy, "192.0.2.1", 40_000, 11), "too-large");
  equal(verdictOf(policy, "192.0.2.1", 40_000, 10), "echo");
  equal(verdictOf(policy, "192.0.2.1", 40_000, 10), "rate-limited");
});

Deno.test("EchoPolicy keys IPv4 by address and IPv6 by /64", () => {
  const { policy } = withClock({ rate: 1, burst: 1 });
  equal(verdictOf(policy, "192.0.2.1"), "echo");
  equal(verdictOf(policy, "192.0.2.2"), "echo");
  equal(verdictOf(policy, "::ffff:192.0.2.1"), "rate-limited");
  equal(verdictOf(policy, "192.0.2.1", 50_000), "rate-limited", "any port");
  equal(verdictOf(policy, "2001:db8:0:1::1"), "echo");
  equal(verdictOf(policy, "2001:db8:0:1:ffff::2"), "rate-limited", "same /64");
  equal(verdictOf(policy, "2001:db8:0:2::1"), "echo");
  // An IPv6 /64 whose top bits equal an IPv4 address is another source.
  equal(verdictOf(policy, "c000:202::1"), "echo");
});

Deno.test("EchoPolicy: a flooding source leaves another unaffected", () => {
  const { policy, clock } = withClock({ rate: 100, burst: 10 });
  let flood = 0;
  let quiet = 0;
  for (let t = 0; t < 1_000; t++) {
    clock.now = t;
    for (let k = 0; k < 20; k++) {
      if (verdictOf(policy, "192.0.2.66") === "echo") flood++;
    }
    if (t % 20 === 0 && verdictOf(policy, "192.0.2.7") === "echo") quiet++;
  }
  equal(flood, 10 + 99);
  equal(quiet, 50);
});

Deno.test("EchoPolicy matches a plain token bucket while the table has room", () => {
  // A reference model: a Map of GCRA times, never evicted.
  const rate = 50;
  const burst = 4;
  const { policy, clock } = withClock({ rate, burst, maxSources: 40 });
  const model = new Map<number, number>();
  let state = 12345;
  const random = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0);
  for (let step = 0; step < 200_000; step++) {
    clock.now += (random() % 100) / 100;
    const host = random() % 40;
    const start = Math.max(model.get(host) ?? 0, clock.now);
    const expected = start - clock.now <= (burst - 1 + 1e-6) * 1000 / rate;
    if (expected) model.set(host, start + 1000 / rate);
    equal(
      verdictOf(policy, `10.0.${host >> 4}.${host & 15}`),
      expected ? "echo" : "rate-limited",
      `step ${step}`,
    );
    ok(policy.trackedSources <= 40);
  }
});

Deno.test("EchoPolicy keeps limiting a busy source while spoofed sources churn the table", () => {
  const { policy, clock } = withClock({ rate: 10, burst: 5, maxSources: 16 });
  let hot = 0;
  for (let i = 0; i < 100_000; i++) {
    clock.now = i / 100; // 100,000 datagrams in one second
    verdictOf(policy, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    if (i % 10 === 0 && verdictOf(policy, "192.0.2.1") === "echo") hot++;
    ok(policy.trackedSources <= 16);
  }
  equal(hot, 5 + 9);
});

// Measured in a child with a forced GC, so garbage the test itself makes and
// code not yet optimised do not count: only what the table keeps.
const MEMORY_PROBE = `
import { EchoPolicy } from ${
  JSON.stringify(import.meta.resolve("./policy.ts"))
};
const policy = new EchoPolicy({ rate: 1, burst: 1 });
const names = [];
for (let i = 0; i < 100_000; i++) {
  names.push(i % 2 === 0
    ? \`10.\${(i >> 16) & 255}.\${(i >> 8) & 255}.\${i & 255}\`
    : \`2001:db8:\${(i >> 16).toString(16)}:\${(i & 0xffff).toString(16)}::1\`);
}
const source = { hostname: "192.0.2.1", port: 40_000 };
let echoed = 0;
globalThis.gc();
globalThis.gc();
const before = Deno.memoryUsage();
for (let round = 0; round < 2; round++) {
  for (let i = 0; i < names.length; i++) {
    source.hostname = names[i];
    // All within 0.2 s at 1/s: no bucket is full again, so nothing is stale.
    const verdict = policy.decide(source, 1, round * 100 + i / 1_000);
    if (round === 0 && verdict === "echo") echoed++;
  }
}
globalThis.gc();
globalThis.gc();
const after = Deno.memoryUsage();
console.log(JSON.stringify({
  heap: after.heapUsed - before.heapUsed,
  external: after.external - before.external,
  tracked: policy.trackedSources,
  active: policy.activeSources(200),
  echoed,
  tableBytes: policy.tableBytes,
}));
`;

Deno.test("EchoPolicy caps the source table under 100,000 sources, memory flat", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--expose-gc", MEMORY_PROBE],
  }).output();
  equal(code, 0, new TextDecoder().decode(stderr));
  const probe = JSON.parse(new TextDecoder().decode(stdout));
  equal(probe.tracked, DEFAULT_MAX_SOURCES);
  equal(probe.active, DEFAULT_MAX_SOURCES);
  // A full table never refuses a new source: it evicts one.
  equal(probe.echoed, 100_000);
  ok(probe.external <= 4096, `external memory grew ${probe.external} bytes`);
  ok(probe.heap < 256 * 1024, `heap grew ${probe.heap} bytes`);
  ok(probe.tableBytes <= 17 * 2 * DEFAULT_MAX_SOURCES, `${probe.tableBytes}`);
});

Deno.test("EchoPolicy reuses the slots of sources whose bucket is full again", () => {
  const { policy, clock } = withClock({ rate: 1, burst: 1, maxSources: 4 });
  for (let i = 0; i < 4; i++) equal(verdictOf(policy, `192.0.2.${i}`), "echo");
  equal(policy.trackedSources, 4);
  clock.now = 1_000; // every bucket full again
  equal(policy.activeSources(), 0);
  for (let i = 4; i < 100; i++) {
    equal(verdictOf(policy, `192.0.2.${i}`), "echo");
    equal(verdictOf(policy, `192.0.2.${i}`), "rate-limited");
    clock.now += 1_000;
  }
  ok(policy.trackedSources <= 4);
});

Deno.test("EchoPolicy counts every verdict by its fixed name", () => {
  const policy = new EchoPolicy({ rate: 1, maxSize: 10, deny: ["10.0.0.0/8"] });
  const counts = policy.counts();
  deepEqual(Object.keys(counts), ["echo", ...DROP_REASONS]);
  ok(Object.values(counts).every((count) => count === 0));
  verdictOf(policy, "192.0.2.1", 40_000, 11);
  verdictOf(policy, "192.0.2.1", 53);
  verdictOf(policy, "192.0.2.1", 5353);
  verdictOf(policy, "224.0.0.1");
  verdictOf(policy, "10.0.0.1");
  verdictOf(policy, "192.0.2.1");
  verdictOf(policy, "192.0.2.1");
  deepEqual(policy.counts(), {
    "echo": 1,
    // Decided by the batch engine, which sees the destination and the
    // arrival interface, never here.
    "not-unicast": 0,
    "spoofed-local": 0,
    "too-large": 1,
    "low-port": 1,
    "service-port": 1,
    "bad-source": 1,
    "own-address": 0,
    "denied": 1,
    "rate-limited": 1,
  });
});
