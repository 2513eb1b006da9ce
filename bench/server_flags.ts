/**
 * The V8 flags `deno task server` gives server.ts, read from deno.json so
 * the benches measure the server as it ships.
 *
 * @module
 */

import config from "../deno.json" with { type: "json" };

/** `--v8-flags=...` arguments of the `server` task, in order. */
export const SERVER_V8_FLAGS: string[] =
  config.tasks.server.split(" server.ts")[0]!.match(/--v8-flags=\S+/g) ?? [];
