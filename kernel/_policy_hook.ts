/**
 * The echo policy (`policy/policy.ts`) as a decide module for the batch
 * engine: each Worker builds its own {@linkcode EchoPolicy} from the options
 * `serverPolicy()` worked out once on the main thread (every socket of the
 * server in `local`), and asks it once per datagram, with one `now`
 * per batch.
 *
 * @module
 */

import type { DecideHook } from "./_hooks.ts";
import { EchoPolicy, type PolicyOptions } from "../policy/policy.ts";

/** Builds the policy's decide hook for one batch socket. */
export function createDecideHook(
  options: PolicyOptions,
  local: Deno.NetAddr,
): DecideHook {
  const policy = new EchoPolicy(options);
  // Usually listed already; registered anyway, so no options can leave out
  // the socket itself.
  policy.addLocal(local);
  const hook: DecideHook = (facts) => {
    const verdict = policy.decide(facts, facts.size, facts.now);
    return verdict === "echo" ? undefined : verdict;
  };
  hook.activeSources = (now) => policy.rate > 0 ? policy.activeSources(now) : 0;
  return hook;
}
