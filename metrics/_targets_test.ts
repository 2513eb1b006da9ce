import { deepEqual, equal, rejects, throws } from "node:assert/strict";
import {
  concernsFile,
  isServiceName,
  MAX_SOURCE_TARGETS,
  MAX_TARGETS_FILE_BYTES,
  parseTargetLine,
  parseTargetsText,
  readTargetsFile,
  resolveDnsTargets,
  TargetSources,
} from "./_targets.ts";
import { formatAddress } from "../net/address.ts";
import { waitUntil } from "../testing/wait.ts";
import { serveDns } from "../testing/dns_responder.ts";
import { scratchDir } from "../testing/metrics.ts";
import { run } from "../testing/command.ts";

Deno.test("parseTargetLine() takes HOST, HOST:PORT, [V6ADDR]:PORT and a bare IPv6 address", () => {
  deepEqual(parseTargetLine("10.0.0.1", 862), {
    hostname: "10.0.0.1",
    port: 862,
  });
  deepEqual(parseTargetLine("10.0.0.1:7", 862), {
    hostname: "10.0.0.1",
    port: 7,
  });
  deepEqual(parseTargetLine("node-1.mesh", 862), {
    hostname: "node-1.mesh",
    port: 862,
  });
  deepEqual(parseTargetLine("[fd00::1]:7", 862), {
    hostname: "fd00::1",
    port: 7,
  });
  deepEqual(parseTargetLine("fd00::1", 862), {
    hostname: "fd00::1",
    port: 862,
  });
  for (
    const bad of [
      "10.0.0.1:0",
      "10.0.0.1:70000",
      "a b",
      "x:y:z",
      "[10.0.0.1]:7",
      "1.2.3",
    ]
  ) {
    throws(() => parseTargetLine(bad, 862), bad);
  }
});

Deno.test("parseTargetsText() skips comments and blank lines, and names the first bad line", () => {
  deepEqual(
    parseTargetsText("# the mesh\n\n10.0.0.1\n  10.0.0.2:7  # a peer\r\n", 862),
    [{ hostname: "10.0.0.1", port: 862 }, { hostname: "10.0.0.2", port: 7 }],
  );
  deepEqual(parseTargetsText("", 862), []);
  throws(
    () => parseTargetsText("10.0.0.1\n\nnot a host!\n", 862),
    /^Error: line 3: /,
  );
  const many = Array.from(
    { length: MAX_SOURCE_TARGETS + 1 },
    (_, k) => `10.0.${k >> 8}.${k & 255}`,
  ).join("\n");
  throws(() => parseTargetsText(many, 862), /more than 4096 targets/);
});

Deno.test("readTargetsFile() refuses a file over its size bound", async () => {
  await using files = await scratchDir();
  await files.write("small", "10.0.0.1\n");
  equal(await readTargetsFile(`${files.dir}/small`), "10.0.0.1\n");
  const { success, stderr } = await run("sh", [
    "-ec",
    `head -c ${MAX_TARGETS_FILE_BYTES + 1} /dev/zero | tr '\\0' '#' > "$1"`,
    "sh",
    `${files.dir}/large`,
  ]);
  equal(success, true, stderr);
  await rejects(
    readTargetsFile(`${files.dir}/large`),
    /larger than 1048576 bytes/,
  );
});

Deno.test("isServiceName() tells _service._proto.NAME from a host name", () => {
  equal(isServiceName("_echo._udp.mesh.svc.cluster.local"), true);
  equal(isServiceName("echo.mesh.svc.cluster.local"), false);
  equal(isServiceName("_echo.mesh"), false);
});

Deno.test("resolveDnsTargets(): A and AAAA on the given port, SRV hosts on their ports, -4/-6, no records an empty set", async () => {
  const responder = serveDns("127.0.0.1", 0, () => ({
    "mesh.test": { A: ["10.0.0.1", "10.0.0.2"], AAAA: ["fd00::1"] },
    "v6.mesh.test": { AAAA: ["fd00::2"] },
    "_echo._udp.mesh.test": {
      SRV: [{ target: "v6.mesh.test.", port: 7 }, {
        target: "mesh.test.",
        port: 8,
      }],
    },
  }));
  const nameServer = { ipAddr: "127.0.0.1", port: responder.addr.port };
  try {
    deepEqual(await resolveDnsTargets("mesh.test", 862, { nameServer }), [
      { hostname: "10.0.0.1", port: 862, family: "IPv4" },
      { hostname: "10.0.0.2", port: 862, family: "IPv4" },
      { hostname: "fd00::1", port: 862, family: "IPv6" },
    ]);
    deepEqual(
      await resolveDnsTargets("mesh.test", 862, { nameServer, family: "IPv6" }),
      [{ hostname: "fd00::1", port: 862, family: "IPv6" }],
    );
    deepEqual(
      await resolveDnsTargets("_echo._udp.mesh.test", 862, { nameServer }),
      [
        { hostname: "fd00::2", port: 7, family: "IPv6" },
        { hostname: "10.0.0.1", port: 8, family: "IPv4" },
        { hostname: "10.0.0.2", port: 8, family: "IPv4" },
        { hostname: "fd00::1", port: 8, family: "IPv6" },
      ],
    );
    deepEqual(
      await resolveDnsTargets("gone.mesh.test", 862, { nameServer }),
      [],
    );
  } finally {
    await responder.close();
  }
  // Nobody answers: the lookup fails, and the last good set stays.
  await rejects(resolveDnsTargets("mesh.test", 862, { nameServer }));
});

Deno.test("concernsFile(): the file and a ConfigMap's `..` links, not the folder's other files", () => {
  equal(concernsFile(["/etc/mesh/targets"], "/etc/mesh/targets"), true);
  equal(concernsFile(["/etc/mesh/..data"], "/etc/mesh/targets"), true);
  equal(concernsFile(["/etc/mesh/..2026_12_07"], "/etc/mesh/targets"), true);
  equal(concernsFile(["/etc/mesh/targets.next"], "/etc/mesh/targets"), false);
  equal(concernsFile(["/etc/mesh/hosts"], "/etc/mesh/targets"), false);
  equal(concernsFile(["./targets"], "targets"), true);
});

Deno.test("TargetSources: a change of the file is read at once and asks DNS nothing", async () => {
  const responder = serveDns("127.0.0.1", 0, () => ({
    "mesh.test": { A: ["10.0.0.1"] },
  }));
  await using files = await scratchDir();
  await files.write("targets", "10.0.0.9\n");
  const seen: string[][] = [];
  const sources = new TargetSources({
    file: `${files.dir}/targets`,
    dns: "mesh.test",
    port: 862,
    family: "IPv4",
    // Only a change of the file can make a refresh within the test.
    refreshMs: 3_600_000,
    nameServer: { ipAddr: "127.0.0.1", port: responder.addr.port },
    ownAddresses: () => [],
    onChange: (targets) => seen.push(targets.map(formatAddress)),
    onError: (source, message) => {
      if (message !== undefined) throw new Error(`${source}: ${message}`);
    },
  });
  try {
    deepEqual(
      (await sources.start()).map(formatAddress),
      ["10.0.0.9:862", "10.0.0.1:862"],
    );
    const asked = responder.questions.length;
    // Other files of the folder change first: they wake nothing.
    for (let i = 0; i < 5; i++) await files.write("other", `${i}\n`);
    await files.write("targets", "10.0.0.8\n");
    await waitUntil(
      () => seen.length > 0,
      "the monitor reads the changed file",
    );
    deepEqual(seen, [["10.0.0.8:862", "10.0.0.1:862"]]);
    equal(responder.questions.length, asked, responder.questions.join(", "));
  } finally {
    await sources.stop();
    await responder.close();
  }
});
