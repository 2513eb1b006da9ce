import { equal, ok } from "node:assert/strict";
import { describeErrno, errnoError, openLibc, releaseLibc } from "./_libc.ts";

Deno.test("errnoError() gives the Deno.errors class an errno stands for", () => {
  const refused = errnoError(111, "connection refused");
  ok(refused instanceof Deno.errors.ConnectionRefused);
  equal(refused.message, "connection refused");
  ok(
    errnoError(1, "operation not permitted") instanceof
      Deno.errors.PermissionDenied,
  );
  ok(
    errnoError(13, "permission denied") instanceof
      Deno.errors.PermissionDenied,
  );
  ok(
    errnoError(98, "address already in use") instanceof
      Deno.errors.AddrInUse,
  );
  ok(
    errnoError(101, "network is unreachable") instanceof
      Deno.errors.NetworkUnreachable,
  );
});

Deno.test("errnoError() falls back to a plain Error for an errno without a class", () => {
  const error = errnoError(90, "message too long");
  equal(error.constructor, Error);
  equal(error.message, "message too long");
});

Deno.test("describeErrno() describes an errno in lower case", () => {
  const libc = openLibc();
  try {
    equal(describeErrno(libc, 111), "connection refused");
  } finally {
    releaseLibc();
  }
});
