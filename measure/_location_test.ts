import { deepEqual, equal, ok } from "node:assert/strict";
import { checkPath } from "./_location.ts";
import { routeSource } from "../kernel/_route.ts";

const target = { hostname: "127.0.0.1", port: 862 };
const seen = (source: string, port: number) => ({
  source: { hostname: source, port },
  destination: { hostname: "127.0.0.1", port: 862 },
});

Deno.test("routeSource() names the address the route picks", () => {
  equal(routeSource({ hostname: "127.0.0.1", port: 9 }), "127.0.0.1");
  equal(routeSource({ hostname: "::1", port: 9 }), "::1");
  equal(routeSource({ hostname: "127.0.0.7", port: 9 }), "127.0.0.1");
});

Deno.test("checkPath() holds a wildcard-bound socket's source as the route picks it against what the reflector saw", () => {
  const local = { hostname: "0.0.0.0", port: 40000 };
  const kept = checkPath(seen("127.0.0.1", 40000), local, target);
  deepEqual(
    [kept.rewritten, kept.sentFrom.hostname, kept.sentFromBy],
    [false, "127.0.0.1", "route"],
  );
  // Another address with the port kept: a source NAT.
  const nat = checkPath(seen("127.0.0.9", 40000), local, target);
  equal(nat.rewritten, true);
  // IPv4-mapped on one side is the same address.
  equal(
    checkPath(seen("::ffff:127.0.0.1", 40000), local, target).rewritten,
    false,
  );
});

Deno.test("checkPath() says unknown, never not rewritten, where it cannot compare", () => {
  // The reflector returned the port but no address.
  const local = { hostname: "127.0.0.1", port: 40000 };
  const blind = checkPath(seen("", 40000), local, target);
  equal(blind.rewritten, undefined);
  ok(blind.unknown?.includes("did not return"), blind.unknown);
  // A port that differs is a rewrite whatever else is unknown.
  equal(checkPath(seen("", 40001), local, target).rewritten, true);
  // A socket bound to an address compares with it, without the route.
  equal(
    checkPath(seen("127.0.0.1", 40000), local, target).sentFromBy,
    "socket",
  );
});

Deno.test("checkPath() tells a rewritten source address from a rewritten source port", () => {
  const local = { hostname: "0.0.0.0", port: 40000 };
  const masquerade = checkPath(seen("127.0.0.9", 40000), local, target);
  deepEqual(
    [masquerade.sourceAddressRewritten, masquerade.sourcePortRewritten],
    [true, false],
  );
  const portOnly = checkPath(seen("127.0.0.1", 40001), local, target);
  deepEqual(
    [portOnly.sourceAddressRewritten, portOnly.sourcePortRewritten],
    [false, true],
  );
  const blind = checkPath(seen("", 40000), local, target);
  equal(blind.sourceAddressRewritten, undefined);
});

Deno.test("checkPath() says unknown when the reflector saw no destination address (a wildcard socket)", () => {
  const local = { hostname: "127.0.0.1", port: 40000 };
  for (const destination of ["::", "0.0.0.0", ""]) {
    const path = checkPath(
      {
        source: { hostname: "127.0.0.1", port: 40000 },
        destination: { hostname: destination, port: 862 },
      },
      local,
      target,
    );
    equal(path.rewritten, undefined, destination);
    ok(path.unknown?.includes("which address"), path.unknown);
  }
  // A port it did see still tells a rewrite.
  const forwarded = checkPath(
    {
      source: { hostname: "127.0.0.1", port: 40000 },
      destination: { hostname: "::", port: 863 },
    },
    local,
    target,
  );
  equal(forwarded.rewritten, true);
});
