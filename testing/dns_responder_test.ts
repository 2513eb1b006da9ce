import { deepEqual, equal, rejects } from "node:assert/strict";
import { serveDns } from "./dns_responder.ts";

Deno.test("dns_responder answers Deno.resolveDns: A, AAAA and SRV from its table, NXDOMAIN and empty answers", async () => {
  const table = {
    "echo.mesh.test.": { A: ["10.1.0.1", "10.1.0.3"], AAAA: ["fd00:1::1"] },
    "_echo._udp.mesh.test": {
      SRV: [{ target: "echo.mesh.test.", port: 7, priority: 1, weight: 2 }],
    },
    "v4only.mesh.test": { A: ["10.1.0.9"] },
  };
  const responder = serveDns("127.0.0.1", 0, () => table);
  const nameServer = { ipAddr: "127.0.0.1", port: responder.addr.port };
  try {
    deepEqual(
      await Deno.resolveDns("echo.mesh.test", "A", { nameServer }),
      ["10.1.0.1", "10.1.0.3"],
    );
    deepEqual(
      await Deno.resolveDns("ECHO.mesh.test.", "AAAA", { nameServer }),
      ["fd00:1::1"],
    );
    deepEqual(
      await Deno.resolveDns("_echo._udp.mesh.test", "SRV", { nameServer }),
      [{ priority: 1, weight: 2, port: 7, target: "echo.mesh.test." }],
    );
    await rejects(
      Deno.resolveDns("v4only.mesh.test", "AAAA", { nameServer }),
      Deno.errors.NotFound,
    );
    await rejects(
      Deno.resolveDns("nobody.mesh.test", "A", { nameServer }),
      Deno.errors.NotFound,
    );
    equal(responder.questions[0], "A echo.mesh.test");
  } finally {
    await responder.close();
  }
});
