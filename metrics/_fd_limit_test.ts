import { equal, match } from "node:assert/strict";
import {
  connectionCap,
  fileLimitWarning,
  MAX_HTTP_CONNECTIONS,
  RESERVED_DESCRIPTORS,
} from "./_fd_limit.ts";

Deno.test("connectionCap() leaves the reserve under the limit, within its bounds", () => {
  const enough = MAX_HTTP_CONNECTIONS + RESERVED_DESCRIPTORS;
  equal(connectionCap(undefined), MAX_HTTP_CONNECTIONS);
  equal(connectionCap(Infinity), MAX_HTTP_CONNECTIONS);
  equal(connectionCap(1024), MAX_HTTP_CONNECTIONS);
  equal(connectionCap(enough), MAX_HTTP_CONNECTIONS);
  equal(connectionCap(enough - 1), MAX_HTTP_CONNECTIONS - 1);
  equal(connectionCap(200), 200 - RESERVED_DESCRIPTORS);
  equal(connectionCap(20), 16);
});

Deno.test("fileLimitWarning() speaks of an unknown or low limit only", () => {
  equal(fileLimitWarning(1024, "it"), undefined);
  equal(fileLimitWarning(Infinity, "it"), undefined);
  match(
    fileLimitWarning(undefined, "it")!,
    /^the file descriptor limit is unknown \(reading it needs --allow-ffi\): it takes up to 256 connections at once, which needs a limit of at least 384 /,
  );
  match(
    fileLimitWarning(300, "it")!,
    /^the file descriptor limit is 300: it takes at most 172 connections at once instead of 256; give it a limit of at least 384 /,
  );
});
